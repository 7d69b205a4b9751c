// Training at ~8-bit accumulation: do gradients through the quantized accumulation beat the
// straight-through estimator? Experiment 1 of issue 16, after Blumenfeld, Hubara and Soudry
// (../shared/papers.md section 1), who report that with ~8-bit floating-point accumulators,
// networks trained with "fine-grained" gradients (immediate, recursive) reach accuracies that the
// straight-through estimator does not.
//
// Trains the flagship's CNN and a 2-layer MLP from scratch on Fashion-MNIST with FP8 M4E3
// weights and activations (per-tensor exponent bias) and products and accumulators in one MxEy
// format (M3E4, M4E3 and the M7E4 reference by default; chunks of 16, toward_zero, flush to zero,
// saturating: the flagship's datapaths), once per gradient mode (lowbit::gradient_mode: ste,
// overflow_only, immediate, recursive) and seed; an FP8-input fp32-accumulator row as the
// baseline. Writes results/gradients.csv (one row per run, written as each run ends), a summary
// table (mean and standard deviation over the seeds) and gradients.png.
//
//   lba_gradients [--quick] [--out DIR] [--seeds N] [--epochs E] [--models cnn,mlp]
//                 [--accumulators m3e4,m4e3,m7e4] [--gradients ste,immediate,...] [--threads N] ...
#include <lowbit/lowbit.hpp>
#include <lowbit/nn/optimizers.hpp>

#include "accumulator_formats.hpp"
#include "example_cli.hpp"
#include "fashion_mnist_cnn.hpp"
#include "gnuplot.hpp"
#include "paper_results.hpp"
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

namespace nn = lowbit::nn;
using lowbit_examples::clock_type;
using lowbit_examples::seconds_since;

struct options {
    bool quick = false;
    std::string out = "results";
    std::string data = lowbit::nn::fashion_mnist_default_dir;
    std::vector<std::string> models{"cnn", "mlp"};
    std::vector<std::string> accumulators{"fp32", "m7e4", "m4e3", "m3e4"};
    std::vector<std::string> gradients{"ste", "overflow_only", "immediate", "recursive"};
    int seeds = 3;
    double epochs = 1;
    int batch = 64;
    double learning_rate = 1e-3;
    int chunk = 16;
    std::string rounding = "toward_zero";
    bool subnormals = false;
    int e3_product_bias = 8, e3_accumulator_bias = 6;
    int threads = 0;
    std::size_t train_limit = 0, test_limit = 0;  // 0: all
};

// The 2-layer MLP, closer to the paper's MNIST setting: 784 -> 256 (K = 784) -> 10.
nn::network make_mlp(std::uint64_t seed) {
    nn::network net({1, 28, 28});
    net.add("flatten", nn::flatten{});
    net.add("fc1", nn::linear(28 * 28, 256, seed));
    net.add("relu1", nn::relu{});
    net.add("fc2", nn::linear(256, 10, seed + 1));
    return net;
}

// "fp32" or an MxEy row's name ("M3E4").
std::string row_name(const std::string& spelling) {
    return spelling == "fp32" ? "fp32" : lowbit_examples::row_for(spelling, {}).name;
}

// One training run's outcome.
struct outcome {
    double test_accuracy, train_loss, seconds;
};

// Trains `net` on its datapath from scratch for o.epochs (fractional: part of an epoch; Adam,
// the last fifth of the steps at a tenth of the rate) and evaluates it on the same datapath.
// train_loss: the mean over the last epoch's batches (or all of them, if less than one).
outcome train_and_test(nn::network& net, const nn::fashion_mnist_data& data, const options& o, std::uint64_t seed,
                       const std::string& label) {
    const std::size_t n = o.train_limit == 0 ? data.train.size() : std::min(o.train_limit, data.train.size());
    const std::size_t per_epoch = n / std::size_t(o.batch);
    const std::size_t total = std::max<std::size_t>(1, std::size_t(o.epochs * double(per_epoch) + 0.5));
    const std::size_t last_epoch_from = total > per_epoch ? total - per_epoch : 0;
    const std::size_t report_every = std::max<std::size_t>(1, total / 10);
    nn::adam opt(net.parameters(true), {.learning_rate = o.learning_rate});
    const auto started = clock_type::now();
    double loss_sum = 0;
    std::vector<std::size_t> order;
    for (std::size_t step = 0; step < total; ++step) {
        if (step == total - total / 5) opt.set_learning_rate(o.learning_rate / 10);
        const std::size_t in_epoch = step % per_epoch;
        if (in_epoch == 0) order = nn::shuffled_indices(n, seed * 1000003 + step / per_epoch);
        const std::span<const std::size_t> pick(order.data() + in_epoch * std::size_t(o.batch), std::size_t(o.batch));
        const nn::labeled_images batch = nn::select(data.train, pick);
        net.zero_grad();
        const nn::tensor out = net.forward({batch.images, {1, batch.rows, batch.cols}}, nn::pass::training);
        const nn::loss_and_gradient l = nn::softmax_cross_entropy(out.values, batch.labels);
        if (!std::isfinite(l.loss)) throw std::runtime_error(label + ": the training loss is not finite at step " + std::to_string(step));
        net.backward({l.gradient, out.shape});
        opt.step();
        if (step >= last_epoch_from) loss_sum += l.loss;
        if ((step + 1) % report_every == 0 || step + 1 == total) {
            std::printf("\r  %-40s step %5zu/%zu  loss %.4f  %6.1f s", label.c_str(), step + 1, total, l.loss,
                        seconds_since(started));
            std::fflush(stdout);
        }
    }
    std::printf("\n");
    const double seconds = seconds_since(started);
    const double accuracy = lowbit_examples::evaluate(net, data.test, o.test_limit, label + " test");
    return {accuracy, loss_sum / double(total - last_epoch_from), seconds};
}

struct run_row {
    std::string model, accumulator, gradient;
    int chunk;
    std::uint64_t seed;
    outcome result;
};

using lowbit_examples::summarize;
using lowbit_examples::summary;

// gradients.png: one panel per model; per accumulator a group of bars, one per gradient mode,
// at the mean test accuracy over the seeds with +-1 standard deviation as error bars.
void write_plot(const options& o, const lowbit_examples::datapath_settings& settings, const std::vector<run_row>& rows,
                std::size_t test_images) {
    const std::string dat = o.out + "/gradients.dat";
    std::ofstream d(dat);
    double low = 100, high = 0;
    for (const auto& model : o.models) {
        // one block per model: accumulator, then mean and std per gradient mode (NaN where not run)
        for (const auto& acc : o.accumulators) {
            d << row_name(acc);
            for (const auto& g : o.gradients) {
                std::vector<double> v;
                for (const auto& r : rows)
                    if (r.model == model && r.accumulator == row_name(acc) && r.gradient == g)
                        v.push_back(r.result.test_accuracy);
                if (v.empty()) {
                    d << " NaN NaN";
                    continue;
                }
                const summary s = summarize(v);
                low = std::min(low, s.mean - s.std), high = std::max(high, s.mean + s.std);
                d << " " << s.mean << " " << s.std;
            }
            d << "\n";
        }
        d << "\n\n";
    }
    d.close();
    // the exponent biases of each format (products / accumulator), which decide what underflows
    std::string biases = "exponent biases (products / accumulator):";
    for (const auto& acc : o.accumulators)
        if (acc != "fp32") {
            const lowbit_examples::datapath_row f = lowbit_examples::row_for(acc, settings);
            biases += " " + f.name + " " + std::to_string(f.product.exponent_bias()) + " / " +
                      std::to_string(f.accumulator.exponent_bias());
        }
    const double y_low = std::max(0.0, std::floor(low) - 3), y_high = std::min(100.0, std::ceil(high) + 1);
    std::ofstream gp(o.out + "/gradients.gp");
    gp << "set terminal pngcairo size " << std::max<std::size_t>(1150, 650 * o.models.size() + 100) << ",600 font 'Sans,11' noenhanced\n"
       << "set output '" << o.out << "/gradients.png'\n"
       << "set multiplot layout 1," << o.models.size()
       << " title \"Training from scratch with FP8 M4E3 inputs and MxEy products and accumulators, per gradient mode\\n"
       << o.epochs << " epoch(s), " << (o.train_limit ? std::to_string(o.train_limit) : std::string("60000"))
       << " training and " << test_images << " test images" << (o.quick ? " (--quick run)" : "") << ", chunk "
       << o.chunk << ", " << o.rounding << ", " << (o.subnormals ? "subnormals" : "flush to zero")
       << "; bars: mean over " << o.seeds << " seed(s), error bars +-1 standard deviation\\n" << biases
       << "\"\n"
       << "set style data histograms\nset style histogram errorbars gap 1 lw 1\n"
       << "set style fill solid 0.8 border -1\nset boxwidth 0.9\nset key outside bottom center horizontal\n"
       << "set grid ytics\nset ylabel 'test accuracy (%)'\nset xlabel 'products and accumulator'\n"
       << "set yrange [" << y_low << ":" << y_high << "]\n";
    for (std::size_t m = 0; m < o.models.size(); ++m) {
        gp << "set title '" << o.models[m] << "'\nplot ";
        for (std::size_t g = 0; g < o.gradients.size(); ++g)
            gp << (g ? ", " : "") << "'" << dat << "' index " << m << " using " << 2 + 2 * g << ":" << 3 + 2 * g
               << (g == 0 ? ":xtic(1)" : "") << " title '" << o.gradients[g] << "'";
        gp << "\n";
    }
    gp << "unset multiplot\n";
    gp.close();
    examples::render_plots(o.out + "/gradients.gp", o.out);
}

}  // namespace

int run_example(int argc, char** argv) {
    options o;
    CLI::App app{"Training from scratch on ~8-bit accumulators, with each gradient mode (straight-through or "
                 "through the quantized accumulation)"};
    app.add_flag("--quick", o.quick,
                 "a short run (for CI): 1000 training and 500 test images, one seed");
    examples::add_out_option(app, o.out, "gradients.csv and gradients.png");
    examples::add_data_option(app, o.data);
    app.add_option("--models", o.models, "models to train: cnn (the flagship's), mlp (784-256-10)")
        ->delimiter(',')
        ->check(CLI::IsMember({"cnn", "mlp"}));
    app.add_option("--accumulators", o.accumulators,
                   "product and accumulator formats (MxEy, the flagship's biases and options), and fp32 (FP8 inputs, "
                   "exact accumulation: the baseline, trained with ste only)")
        ->delimiter(',');
    app.add_option("--gradients", o.gradients, "gradient modes: ste, overflow_only, immediate, recursive")
        ->delimiter(',')
        ->check(CLI::IsMember({"ste", "overflow_only", "immediate", "recursive"}));
    app.add_option("--seeds", o.seeds, "seeds per configuration (1, 2, ... N)")->check(CLI::Range(1, 100));
    app.add_option("--epochs", o.epochs, "training epochs (fractional: part of one)")
        ->check(examples::finite_positive)
        ->check(CLI::Range(0.0, 100.0));
    app.add_option("--batch", o.batch, "mini-batch size")->check(CLI::Range(1, 4096));
    app.add_option("--lr", o.learning_rate, "learning rate (Adam; the last fifth of the steps at a tenth)")
        ->check(examples::finite_positive);
    app.add_option("--chunk", o.chunk, "chunk size of the accumulation (0: no chunks)")->check(CLI::Range(0, 1 << 20));
    app.add_option("--rounding", o.rounding, "rounding of products and accumulators")
        ->check(CLI::IsMember({"toward_zero", "nearest_even", "nearest_away", "toward_positive", "toward_negative",
                               "stochastic", "odd"}));
    app.add_flag("--subnormals", o.subnormals, "keep subnormals in products and accumulators (default: flush to zero)");
    app.add_option("--e3-product-bias", o.e3_product_bias, "exponent bias of MxE3 products (M4E3)");
    app.add_option("--e3-acc-bias", o.e3_accumulator_bias, "exponent bias of MxE3 accumulators (M4E3)");
    app.add_option("--threads", o.threads, "threads (0: all cores)")->check(CLI::Range(0, 1024));
    app.add_option("--train-images", o.train_limit, "training images used (0: all 60000)");
    app.add_option("--test-images", o.test_limit, "test images evaluated (0: all 10000)");
    CLI11_PARSE(app, argc, argv);
    if (o.quick) {
        if (app.count("--train-images") == 0) o.train_limit = 1000;
        if (app.count("--test-images") == 0) o.test_limit = 500;
        if (app.count("--seeds") == 0) o.seeds = 1;
    }
#if defined(_OPENMP)
    if (o.threads > 0) omp_set_num_threads(o.threads);
#endif
    const auto run_started = clock_type::now();
    examples::prepare_out(o.out);
    const lowbit_examples::datapath_settings settings{.chunk = o.chunk, .rounding = o.rounding,
                                                      .e3_product_bias = o.e3_product_bias,
                                                      .e3_accumulator_bias = o.e3_accumulator_bias,
                                                      .subnormals = o.subnormals, .threads = o.threads};
    // (the formats parsed before any work: a malformed one is reported at once)
    for (const auto& a : o.accumulators)
        if (a != "fp32") (void)lowbit_examples::row_for(a, settings);

    std::printf("Loading Fashion-MNIST from %s\n", o.data.c_str());
    const nn::fashion_mnist_data data = nn::load_fashion_mnist(o.data);
    const std::size_t test_images = o.test_limit ? std::min(o.test_limit, data.test.size()) : data.test.size();

    std::ofstream csv(o.out + "/gradients.csv");
    csv << "model,accumulator,chunk,gradient,seed,epochs,test_accuracy,train_loss\n";
    std::vector<run_row> rows;
    std::size_t runs = 0, done = 0;
    for (const auto& a : o.accumulators) runs += a == "fp32" ? 1 : o.gradients.size();
    runs *= o.models.size() * std::size_t(o.seeds);
    for (const auto& model : o.models) {
        for (const auto& a : o.accumulators) {
            for (const auto& g : o.gradients) {
                if (a == "fp32" && g != o.gradients.front()) continue;  // one baseline row per seed
                const std::string gradient = a == "fp32" ? "ste" : g;
                for (int s = 1; s <= o.seeds; ++s) {
                    const std::uint64_t seed = std::uint64_t(s);
                    nn::network net = model == "cnn" ? lowbit_examples::make_cnn(seed) : make_mlp(seed);
                    nn::gemm_datapath d{.spec = std::nullopt, .weights = nn::range_biased_float{},
                                        .activations = nn::range_biased_float{}, .stats = nullptr};
                    std::string name = "fp32";
                    if (a != "fp32") {
                        lowbit_examples::datapath_settings seeded = settings;
                        seeded.seed = seed;
                        const lowbit_examples::datapath_row f = lowbit_examples::row_for(a, seeded);
                        d = lowbit_examples::datapath_for(f.product, f.accumulator, seeded);
                        d.gradient = lowbit::parse_gradient_mode(gradient);
                        name = f.name;
                    }
                    net.set_datapath(d);
                    const std::string label = model + " " + name + " " + gradient + " seed " + std::to_string(seed);
                    std::printf("[%zu/%zu] %s\n", ++done, runs, label.c_str());
                    const outcome r = train_and_test(net, data, o, seed, label);
                    rows.push_back({model, name, gradient, o.chunk, seed, r});
                    csv << model << ',' << name << ',' << (a == "fp32" ? 0 : o.chunk) << ',' << gradient << ','
                        << seed << ',' << o.epochs << ',' << r.test_accuracy << ',' << r.train_loss << '\n';
                    csv.flush();
                }
            }
        }
    }
    csv.close();

    std::printf("\nTest accuracy (%%) on %zu test images after %g epoch(s), mean +- standard deviation over %d "
                "seed(s); the binomial standard error of one accuracy near 85%% is %.2f points\n",
                test_images, o.epochs, o.seeds, lowbit_examples::standard_error(85, test_images));
    std::printf("%-5s %-6s", "model", "acc");
    for (const auto& g : o.gradients) std::printf(" %17s", g.c_str());
    std::printf("\n");
    for (const auto& model : o.models)
        for (const auto& a : o.accumulators) {
            std::printf("%-5s %-6s", model.c_str(), row_name(a).c_str());
            for (const auto& g : o.gradients) {
                std::vector<double> v;
                for (const auto& r : rows)
                    if (r.model == model && r.accumulator == row_name(a) &&
                        r.gradient == (a == "fp32" ? "ste" : g))
                        v.push_back(r.result.test_accuracy);
                const summary s = summarize(v);
                if (a == "fp32" && g != o.gradients.front()) std::printf(" %17s", "");
                else std::printf(" %8.2f +- %5.2f", s.mean, s.std);
            }
            std::printf("\n");
        }
    double seconds = 0;
    for (const auto& r : rows) seconds += r.result.seconds;
    std::printf("\nTraining time per run (mean): %.1f s\n", seconds / double(std::max<std::size_t>(1, rows.size())));
    write_plot(o, settings, rows, test_images);
    std::printf("Wrote %s/gradients.csv and gradients.png. Total time %.1f s\n", o.out.c_str(), seconds_since(run_started));
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("lba_gradients", [&] { return run_example(argc, argv); });
}
