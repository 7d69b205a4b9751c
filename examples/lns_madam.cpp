// LNS-Madam: 8-bit logarithmic training of the Fashion-MNIST CNN (Zhao et al., IEEE TC 2022;
// ../shared/papers.md section 4). The paper's claims to check: 8-bit LNS training with the
// multiplicative Madam update matches full precision, and the quantization error of the weight
// update hurts additive optimizers (Adam, SGD) on the same grid far more.
//
// The flagship's CNN trains from scratch with all four GEMMs (conv1, conv2, fc1, fc2), forward and
// both backward products, on lowbit's LNS datapath (nn::lns_inputs, lowbit::lns_gemm): weights,
// activations and dL/dC encoded as 8-bit LNS (sign + 7-bit exponent k, value 2^(k / gamma), a
// per-tensor scale, nearest in the log domain), products exact (k adds), the paper's bucketed
// accumulation into exact integer buckets, the buckets converted by the exact table (or Mitchell's
// 1 + r / gamma) and summed once into float. Methods (the method column):
//   adam           fp32 Adam, fp32 GEMMs: the baseline
//   madam          fp32 Madam (learning rate 1/128), fp32 GEMMs
//   sgd            fp32 SGD with momentum 0.9 (rate 0.02), fp32 GEMMs: sgd_rounded's baseline
//   lns_madam      the weights held as 8-bit LNS codes on their layer's grid of base 2^(1/gamma)
//                  (scaled so that its top code holds 3 RMS of the initial weights: Madam's clamp),
//                  moved by Madam's integer steps of 1/gamma (learning rate 1/gamma, g_hat rounded):
//                  k changes by an integer, the weight never leaves its grid
//   lns_madam_sr   the weights held as lns_madam's 8-bit codes, moved by Madam's integer steps of 1/128
//                  (papers.md's default rate: 1/16 of a code of base 2^(1/8) per unit of g_hat),
//                  rounded to the grid stochastically (madam_options::grid_rounding): k moves by the
//                  floor or ceiling of the step, by the step on average
//   lns_madam_w16  the weights held as 16-bit LNS codes of base 2^(1/128) (the same scaling), moved by
//                  Madam's integer steps of 1/128 (papers.md's default rate); each GEMM encodes them
//                  to 8-bit LNS of base 2^(1/gamma) as it does the activations
//   adam_rounded   Adam, the weights rounded to lns_madam's 8-bit grid after every step
//   sgd_rounded    SGD with momentum 0.9, the same rounding
// The LNS methods run on the LNS datapath; biases and batch norm (whose parameters start at zero,
// where a multiplicative update cannot move them) are trained by Adam in every method. Every method
// keeps its rate for the whole run (Madam's integer steps have no smaller rate on the same grid).
// The variant column of the LNS rows says the datapath: g<gamma>_<conversion>_grad<bits> (8-bit
// gradients share the operands' grid base; 5-bit ones are sign + 4-bit k of base 2^(1/2), refined
// onto the operands' base exactly). Every LNS method runs g8_table_grad8; the method of --sweep
// (lns_madam_w16, whose update does not depend on gamma) also runs the other gammas, conversions and
// gradient bits, one change at a time.
//
// Writes lns_madam.csv (experiment,method,bits,variant,seed,test_accuracy), lns_madam_step_times.csv
// (method,variant,seconds_per_step) and lns_madam.png.
//
//   lns_madam [--quick] [--out DIR] [--seeds N] [--methods ...] [--sweep lns_madam_w16] [--gammas 8,4,16]
//             [--conversions table,mitchell] [--gradient-bits 8,5] [--epochs N] [--train-images N]
//             [--test-images N] [--madam-rate R] [--sgd-rate R] [--threads N] [--data DIR]
#include <lowbit/datapath/lns_gemm.hpp>
#include <lowbit/nn/gemm_layer.hpp>
#include <lowbit/nn/network.hpp>
#include <lowbit/nn/optimizers.hpp>

#include "example_cli.hpp"
#include "fashion_mnist_cnn.hpp"
#include "paper_results.hpp"
#include <CLI/CLI.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace nn = lowbit::nn;
using lowbit_examples::clock_type;
using lowbit_examples::seconds_since;

const std::vector<std::string> all_methods{"adam",          "madam",         "sgd",          "lns_madam",
                                           "lns_madam_sr",  "lns_madam_w16", "adam_rounded", "sgd_rounded"};
const std::vector<std::string> gemm_layers{"conv1", "conv2", "fc1", "fc2"};

bool on_lns_datapath(const std::string& method) { return method != "adam" && method != "madam" && method != "sgd"; }

// The LNS datapath of one row.
struct lns_config {
    int gamma = 8;
    lowbit::lns_conversion conversion = lowbit::lns_conversion::table;
    int gradient_bits = 8;

    std::string variant() const {
        return "g" + std::to_string(gamma) + "_" + lowbit::to_string(conversion) + "_grad" + std::to_string(gradient_bits);
    }
    // 8-bit LNS of base 2^(1/gamma): sign + 7-bit k
    lowbit::lns_format operands() const { return {.log_bits = 7, .frac_bits = std::countr_zero(unsigned(gamma))}; }
    lowbit::lns_format gradients() const {
        return gradient_bits == 8 ? operands() : lowbit::lns_format{.log_bits = 4, .frac_bits = 1};
    }
    nn::gemm_datapath datapath() const {
        lowbit::lns_gemm_spec spec;
        spec.input_a.quantizer.format = spec.input_b.quantizer.format = operands();
        spec.conversion.method = conversion;
        spec.accumulation = lowbit::lns_accumulation::bucketed;  // exact integer buckets, one rounding into float
        spec.datapath.threads = 0;                               // all threads (--threads)
        nn::gemm_datapath d;
        d.lns = nn::lns_inputs{.spec = spec, .gradients = {.quantizer = {.format = gradients()}}};
        return d;
    }
};

struct options {
    bool quick = false;
    std::string out = "results";
    std::string data = lowbit::nn::fashion_mnist_default_dir;
    int seeds = 3;
    std::vector<std::string> methods = all_methods;
    std::string sweep = "lns_madam_w16";
    std::vector<int> gammas{8, 4, 16};
    std::vector<std::string> conversions{"table", "mitchell"};
    std::vector<int> gradient_bits{8, 5};
    // about 50 minutes on 2 cores: 62 steps of ~1.8 s per LNS run, 9 LNS runs per seed
    lowbit_examples::training_schedule schedule{.epochs = 2, .train_limit = 4000, .constant_rate = true};
    std::size_t test_limit = 2000;
    double sgd_rate = 0.02;
    double madam_rate = 1.0 / 128;  // madam, lns_madam_sr, lns_madam_w16
    int threads = 0;
};

lowbit::lns_conversion conversion_named(const std::string& s) {
    if (s == "table") return lowbit::lns_conversion::table;
    if (s == "mitchell") return lowbit::lns_conversion::mitchell;
    throw std::invalid_argument("--conversions: '" + s + "' is not table or mitchell");
}

// The weights of the four GEMM layers, and every other trainable parameter.
struct parameter_split {
    std::vector<nn::parameter*> weights, others;
};
parameter_split split(nn::network& net) {
    parameter_split s;
    for (auto& [name, p] : net.named_parameters()) {
        if (!p->trainable) continue;
        const bool weight = std::any_of(gemm_layers.begin(), gemm_layers.end(),
                                        [&](const std::string& l) { return name == l + ".weight"; });
        (weight ? s.weights : s.others).push_back(p);
    }
    if (s.weights.size() != gemm_layers.size()) throw std::logic_error("lns_madam: the CNN's weights were not found");
    return s;
}

// A layer's grid: `f` scaled so that its top code (or the one below it) holds Madam's clamp,
// 3 RMS of the layer's initial weights.
lowbit::lns_format layer_grid(const nn::parameter& w, const lowbit::lns_format& f) {
    const double rms = std::sqrt(double(w.value.squaredNorm()) / double(w.value.size()));
    return f.scaled(lowbit::lns_scale_exponent_for_max(3 * rms, f));
}

// Every element of w rounded to the grid (nearest in the log domain; below the smallest
// magnitude: the smallest (Madam cannot move a zero) or zero (the additive optimizers can)).
void round_to_grid(nn::parameter& w, const lowbit::lns_format& grid, lowbit::lns_underflow underflow) {
    const lowbit::lns_quantizer q{.format = grid, .on_underflow = underflow};
    for (Eigen::Index i = 0; i < w.value.size(); ++i) w.value.data()[i] = q(w.value.data()[i]);
}

// The optimizer of a method, as the update step of lowbit_examples::train (empty: the schedule's Adam).
std::function<void()> make_update(const std::string& method, nn::network& net, const lns_config& c, const options& o,
                                  std::uint64_t seed) {
    if (method == "adam") return {};
    const parameter_split p = split(net);
    if (method == "madam" || method.starts_with("lns_madam")) {
        auto others = std::make_shared<nn::adam>(p.others, nn::adam_options{.learning_rate = o.schedule.learning_rate});
        std::vector<lowbit::madam_options> per;
        for (nn::parameter* w : p.weights) {
            if (method == "madam") {
                per.push_back({.learning_rate = o.madam_rate});
                continue;
            }
            const bool w16 = method == "lns_madam_w16";
            const lowbit::lns_format held =
                layer_grid(*w, w16 ? lowbit::lns_format{.log_bits = 15, .frac_bits = 7} : c.operands());
            round_to_grid(*w, held, lowbit::lns_underflow::smallest);
            lowbit::madam_options m{.learning_rate = w16 ? o.madam_rate : 1.0 / held.gamma(), .integer_steps = true,
                                    .lns_grid = held};
            if (method == "lns_madam_sr") {
                m.learning_rate = o.madam_rate;
                m.grid_rounding = lowbit::lns_rounding::stochastic_log;
                m.seed = seed * 1000 + per.size();
            }
            per.push_back(m);
        }
        auto madam = std::make_shared<nn::madam_optimizer>(nn::madam_optimizer::per_parameter(p.weights, per));
        return [madam, others] {
            madam->step();
            others->step();
        };
    }
    if (method == "sgd") {
        auto sgd = std::make_shared<nn::sgd>(net.parameters(true), nn::sgd_options{.learning_rate = o.sgd_rate, .momentum = 0.9});
        return [sgd] { sgd->step(); };
    }
    // adam_rounded, sgd_rounded: every trainable parameter by the additive optimizer, then the
    // weights back onto lns_madam's grids
    std::vector<lowbit::lns_format> grids;
    for (nn::parameter* w : p.weights) {
        grids.push_back(layer_grid(*w, c.operands()));
        round_to_grid(*w, grids.back(), lowbit::lns_underflow::zero);
    }
    std::function<void()> additive;
    if (method == "adam_rounded") {
        auto adam = std::make_shared<nn::adam>(net.parameters(true), nn::adam_options{.learning_rate = o.schedule.learning_rate});
        additive = [adam] { adam->step(); };
    } else {
        auto sgd = std::make_shared<nn::sgd>(net.parameters(true), nn::sgd_options{.learning_rate = o.sgd_rate, .momentum = 0.9});
        additive = [sgd] { sgd->step(); };
    }
    const std::vector<nn::parameter*> weights = p.weights;
    return [additive, weights, grids] {
        additive();
        for (std::size_t i = 0; i < weights.size(); ++i) round_to_grid(*weights[i], grids[i], lowbit::lns_underflow::zero);
    };
}

// The rows to run: every method at the headline datapath, the --sweep method also at every other
// gamma, conversion and gradient width (one change at a time).
struct run_spec {
    std::string method;
    std::optional<lns_config> lns;  // unset: fp32 GEMMs
};
std::vector<run_spec> runs_of(const options& o) {
    const lns_config headline{o.gammas.front(), conversion_named(o.conversions.front()), o.gradient_bits.front()};
    std::vector<run_spec> runs;
    for (const std::string& m : o.methods) {
        if (!on_lns_datapath(m)) {
            runs.push_back({m, std::nullopt});
            continue;
        }
        runs.push_back({m, headline});
        if (m != o.sweep) continue;
        for (std::size_t i = 1; i < o.gammas.size(); ++i) runs.push_back({m, lns_config{o.gammas[i], headline.conversion, headline.gradient_bits}});
        for (std::size_t i = 1; i < o.conversions.size(); ++i)
            runs.push_back({m, lns_config{headline.gamma, conversion_named(o.conversions[i]), headline.gradient_bits}});
        for (std::size_t i = 1; i < o.gradient_bits.size(); ++i)
            runs.push_back({m, lns_config{headline.gamma, headline.conversion, o.gradient_bits[i]}});
    }
    return runs;
}

}  // namespace

int run_example(int argc, char** argv) {
    options o;
    CLI::App app{"LNS-Madam: 8-bit logarithmic training of the Fashion-MNIST CNN against fp32 Adam and Madam and "
                 "against Adam and SGD on the same 8-bit LNS grid"};
    app.add_flag("--quick", o.quick,
                 "a short run (for CI): one seed, one epoch of 640 training images (5 steps), 300 test images, the headline "
                 "datapath only (gamma 8, table, 8-bit gradients)");
    examples::add_out_option(app, o.out, "lns_madam.csv, lns_madam_step_times.csv and lns_madam.png");
    examples::add_data_option(app, o.data);
    app.add_option("--seeds", o.seeds, "seeds 1..N (initial weights, shuffling)")->check(CLI::Range(1, 100));
    app.add_option("--methods", o.methods, "adam, madam, sgd, lns_madam, lns_madam_sr, lns_madam_w16, adam_rounded, sgd_rounded")->delimiter(',');
    app.add_option("--sweep", o.sweep, "the LNS method also run at the other gammas, conversions and gradient bits");
    app.add_option("--gammas", o.gammas, "base factors gamma (4, 8, 16, ...: 2^(1/gamma) between neighbouring codes); "
                                         "the first is the headline's")
        ->delimiter(',')
        ->check(CLI::IsMember({1, 2, 4, 8, 16, 32, 64}));
    app.add_option("--conversions", o.conversions, "table, mitchell (the first is the headline's)")->delimiter(',');
    app.add_option("--gradient-bits", o.gradient_bits, "8 (the operands' grid) or 5 (sign + 4-bit k, base 2^(1/2)); "
                                                       "the first is the headline's")
        ->delimiter(',')
        ->check(CLI::IsMember({8, 5}));
    app.add_option("--epochs", o.schedule.epochs, "epochs")->check(CLI::Range(1, 100));
    app.add_option("--train-images", o.schedule.train_limit, "training images per epoch (0: all 60000)")
        ->check(CLI::Range(std::size_t(0), std::size_t(60000)));
    app.add_option("--test-images", o.test_limit, "test images evaluated (0: all 10000)");
    app.add_option("--learning-rate", o.schedule.learning_rate, "Adam's rate (every method's biases and batch norm too)")
        ->check(examples::finite_positive);
    app.add_option("--madam-rate", o.madam_rate,
                   "Madam's rate of madam, lns_madam_sr and lns_madam_w16 (log2|w| moves by rate * g_hat; w16's grid "
                   "steps are 1/128: give multiples of it)")
        ->check(examples::finite_positive);
    app.add_option("--sgd-rate", o.sgd_rate, "the rate of sgd and sgd_rounded (momentum 0.9)")->check(examples::finite_positive);
    app.add_option("--threads", o.threads, "threads (0: all cores)")->check(CLI::Range(0, 1024));
    CLI11_PARSE(app, argc, argv);
    if (o.quick) {
        if (app.count("--train-images") == 0) o.schedule.train_limit = 640;
        if (app.count("--epochs") == 0) o.schedule.epochs = 1;
        if (app.count("--test-images") == 0) o.test_limit = 300;
        if (app.count("--seeds") == 0) o.seeds = 1;
        if (app.count("--gammas") == 0) o.gammas = {8};
        if (app.count("--conversions") == 0) o.conversions = {"table"};
        if (app.count("--gradient-bits") == 0) o.gradient_bits = {8};
    }
    // every bad name before any work
    for (const auto& m : o.methods)
        if (std::find(all_methods.begin(), all_methods.end(), m) == all_methods.end())
            throw std::invalid_argument("--methods: '" + m + "' is not one of adam, madam, sgd, lns_madam, lns_madam_sr, "
                                        "lns_madam_w16, adam_rounded, sgd_rounded");
    if (o.methods.empty() || o.gammas.empty() || o.conversions.empty() || o.gradient_bits.empty())
        throw std::invalid_argument("--methods, --gammas, --conversions and --gradient-bits need at least one value");
    for (const auto& c : o.conversions) (void)conversion_named(c);
    if (!on_lns_datapath(o.sweep)) throw std::invalid_argument("--sweep: '" + o.sweep + "' is not an LNS method");
    if (std::find(o.gradient_bits.begin(), o.gradient_bits.end(), 5) != o.gradient_bits.end() &&
        std::find(o.gammas.begin(), o.gammas.end(), 1) != o.gammas.end())
        throw std::invalid_argument("--gradient-bits 5 (base 2^(1/2)) needs gammas of 2 or more: gamma 1's grid is coarser");
    const std::vector<run_spec> runs = runs_of(o);

    const auto run_started = clock_type::now();
    const nn::fashion_mnist_data data = lowbit_examples::start_run(o.threads, o.out, o.data);
    const std::size_t test_images = o.test_limit ? std::min(o.test_limit, data.test.size()) : data.test.size();
    lowbit_examples::results_file results(o.out + "/lns_madam.csv");
    std::map<std::string, std::vector<double>> step_times;  // "method variant" -> seconds per step
    std::printf("%zu runs per seed, %d epoch(s) over %zu training images each, batch %d\n", runs.size(),
                o.schedule.epochs, o.schedule.train_limit ? o.schedule.train_limit : data.train.size(), o.schedule.batch);
    for (int seed = 1; seed <= o.seeds; ++seed) {
        std::printf("\nSeed %d of %d\n", seed, o.seeds);
        for (const run_spec& r : runs) {
            const std::string variant = r.lns ? r.lns->variant() : "fp32";
            const std::string label = r.method + " " + variant;
            nn::network net = lowbit_examples::make_cnn(std::uint64_t(seed));
            if (r.lns)
                for (const std::string& layer : gemm_layers)
                    dynamic_cast<nn::gemm_layer&>(net.at(layer)).datapath = r.lns->datapath();
            const std::function<void()> update = make_update(r.method, net, r.lns.value_or(lns_config{}), o, std::uint64_t(seed));
            const double step = lowbit_examples::train(net, data, o.schedule, std::uint64_t(seed), label, update);
            step_times[r.method + " " + variant].push_back(step);
            const double accuracy = lowbit_examples::evaluate(net, data.test, o.test_limit, label);
            results.add({"training", r.method, r.lns ? "8" : "32", variant, std::uint64_t(seed), accuracy});
        }
    }

    // The table: mean +- std over seeds, and the gap to fp32 Adam.
    const lowbit_examples::summary adam = lowbit_examples::summarize(results.accuracies("adam", "32", "fp32"));
    std::printf("\nTest accuracy (%%) on %zu test images, mean +- standard deviation over %d seed(s) (binomial standard "
                "error of one accuracy near 88%%: %.2f points)\n",
                test_images, o.seeds, lowbit_examples::standard_error(88, test_images));
    std::printf("%-15s %-22s %16s %16s %12s\n", "method", "datapath", "accuracy", "minus fp32 Adam", "ms per step");
    std::vector<lowbit_examples::plot_series> series;
    std::ofstream times(o.out + "/lns_madam_step_times.csv");
    times << "method,variant,seconds_per_step\n";
    for (const run_spec& r : runs) {
        const std::string variant = r.lns ? r.lns->variant() : "fp32";
        const lowbit_examples::summary s = lowbit_examples::summarize(results.accuracies(r.method, r.lns ? "8" : "32", variant));
        const lowbit_examples::summary t = lowbit_examples::summarize(step_times[r.method + " " + variant]);
        std::printf("%-15s %-22s %7.2f +- %5.2f %16.2f %12.1f\n", r.method.c_str(), variant.c_str(), s.mean, s.std,
                    adam.n ? s.mean - adam.mean : std::nan(""), 1000 * t.mean);
        times << r.method << ',' << variant << ',' << t.mean << '\n';
        if (r.lns) series.push_back({r.method, variant, r.method + " " + variant});
    }
    times.close();

    std::vector<lowbit_examples::reference_line> more_lines;
    const lowbit_examples::summary madam = lowbit_examples::summarize(results.accuracies("madam", "32", "fp32"));
    if (madam.n > 0) more_lines.push_back({"fp32 Madam", madam.mean});
    const lowbit_examples::summary sgd = lowbit_examples::summarize(results.accuracies("sgd", "32", "fp32"));
    if (sgd.n > 0) more_lines.push_back({"fp32 SGD", sgd.mean});
    char title[400];
    std::snprintf(title, sizeof title,
                  "8-bit LNS training of the Fashion-MNIST CNN from scratch (%d epoch(s) over %zu images, %zu test "
                  "images, %d seed(s)%s)\\nbars: mean over seeds, error bars +-1 standard deviation; dashed: fp32 "
                  "Adam %.2f%%",
                  o.schedule.epochs, o.schedule.train_limit ? o.schedule.train_limit : data.train.size(), test_images,
                  o.seeds, o.quick ? ", --quick run" : "", adam.mean);
    if (!series.empty() && adam.n > 0)
        lowbit_examples::accuracy_plot(results, o.out, "lns_madam", title, {"8"}, series, adam.mean, more_lines,
                                       "fp32 Adam");
    else
        std::printf("(no plot: it needs adam and at least one LNS method)\n");
    std::printf("Wrote %s, %s/lns_madam_step_times.csv and %s/lns_madam.png. Total time %.1f s\n", results.path().c_str(),
                o.out.c_str(), o.out.c_str(), seconds_since(run_started));
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("lns_madam", [&] { return run_example(argc, argv); });
}
