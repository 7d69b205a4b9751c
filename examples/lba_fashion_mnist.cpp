// The flagship: does a CNN keep its accuracy on hardware whose accumulators are 12-bit floats,
// and can fine-tuning win back what it loses? The central claim of Blumenfeld, Hubara and Soudry,
// "Towards Cheaper Inference in Deep Networks with Lower Bit-Width Accumulators" (ICLR 2024;
// ../shared/papers.md section 1), at small scale on Fashion-MNIST:
//
//  1. trains a small CNN in fp32 (cached: a second run loads the weights);
//  2. folds batch norm into the convolutions (as inference hardware runs it) and evaluates the test
//     set zero-shot with FP8 M4E3 weights and activations (per-tensor exponent bias) and, as
//     product and accumulator formats, M10E5 ... M4E5 and M7E4 ... M3E4, chunks of 16: the paper's
//     Table 8 extended downwards until the damage is large, with the swamp, underflow and overflow
//     rates of each;
//  3. fine-tunes the lower rows (M7E4, M5E5, M4E5, M5E4, M4E4, M3E4) with their datapath in the
//     forward pass, stage 1 with underflow disabled, stage 2 with the real format, once with
//     straight-through gradients (the paper's recipe) and once with gradients through the
//     quantized accumulation (recursive: lowbit/datapath/gemm_backward.hpp);
//  4. prints the table and writes results.csv, fine_tuning.csv, training.csv and two gnuplot PNGs.
//
//   lba_fashion_mnist [--quick] [--out DIR] [--epochs N] [--rounding toward_zero|nearest_even|...]
//                     [--formats m10e5,m7e4,...] [--chunk 16] [--threads N] ...   (--help for all)
#include <lowbit/lowbit.hpp>
#include <lowbit/nn/batch_norm.hpp>
#include <lowbit/nn/conv2d.hpp>
#include <lowbit/nn/fashion_mnist.hpp>
#include <lowbit/nn/flatten.hpp>
#include <lowbit/nn/linear.hpp>
#include <lowbit/nn/loss.hpp>
#include <lowbit/nn/network.hpp>
#include <lowbit/nn/optimizers.hpp>
#include <lowbit/nn/pooling.hpp>
#include <lowbit/nn/relu.hpp>

#include "accumulator_formats.hpp"
#include "fashion_mnist_cnn.hpp"

#include "example_cli.hpp"
#include "gnuplot.hpp"
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

namespace nn = lowbit::nn;
using lowbit_examples::clock_type;
using lowbit_examples::datapath_row;
using lowbit_examples::event_rates;
using lowbit_examples::measure_events;
using lowbit_examples::paper_name;
using lowbit_examples::without_underflow;
using lowbit_examples::evaluate;
using lowbit_examples::images_of;
using lowbit_examples::load_cached;
using lowbit_examples::make_cnn;
using lowbit_examples::seconds_since;
struct options {
    bool quick = false;
    std::string out = "results";
    std::string data = lowbit::nn::fashion_mnist_default_dir;
    int epochs = 4;
    int batch = 64;
    double learning_rate = 1e-3;
    std::uint64_t seed = 1;
    bool retrain = false;
    std::vector<std::string> formats{"m10e5", "m9e5", "m8e5", "m7e5", "m6e5", "m5e5",
                                     "m4e5",  "m7e4", "m5e4", "m4e4", "m3e4"};
    // the rows fine-tuned, each once per gradient mode (the first: the paper's straight-through
    // recipe, which results.csv's fine_tuned_accuracy reports)
    std::vector<std::string> finetune{"m7e4", "m5e5", "m4e5", "m5e4", "m4e4", "m3e4"};
    std::vector<std::string> finetune_gradients{"ste", "recursive"};
    int chunk = 16;
    std::string rounding = "toward_zero";
    int m7e4_product_bias = 12, m7e4_accumulator_bias = 10;
    int e5_product_bias = 28, e5_accumulator_bias = 26;
    bool subnormals = false;
    int stats_samples = 1000;  // about 3 s a format: the vectorized path counts events
    double stage1_epochs = 0.25, stage2_epochs = 0.1;
    double finetune_learning_rate = 1e-4;
    double stage2_learning_rate = 1e-5;  // "a little more" fine-tuning: a tenth of stage 1's rate
    int threads = 0;
    std::vector<std::string> specs;  // --spec: more datapaths, as gemm_spec text, zero-shot only
    std::size_t train_limit = 0, test_limit = 0;  // 0: all
};

// A fixed number per stage name (FNV-1a), so each stage shuffles differently on every platform.
std::uint64_t stage_salt(const std::string& stage) {
    std::uint64_t h = 14695981039346656037ull;
    for (const char c : stage) h = (h ^ std::uint8_t(c)) * 1099511628211ull;
    return h % 1000;
}

struct curve_point {
    std::string stage;  // fp32, stage1, stage2
    std::string run;    // fp32, or the fine-tuning's format and gradient mode: "M7E4 ste"
    double epoch;       // fractional epochs since the stage began
    double train_loss;  // mean over the batches since the previous point
    double train_accuracy;
    double test_accuracy;  // NaN where not measured
};

// Trains for `epochs` (fractional: part of an epoch) over shuffled training data; a progress line
// ten times an epoch; test accuracy at each epoch's end (and at the stage's end). Returns the
// training time per epoch.
template <class Optimizer>
double train(nn::network& net, Optimizer& opt, const nn::fashion_mnist_data& data, const options& o, double epochs,
             const std::string& stage, const std::string& run, std::vector<curve_point>& curve) {
    const std::size_t n = o.train_limit == 0 ? data.train.size() : std::min(o.train_limit, data.train.size());
    const std::size_t batches_per_epoch = n / std::size_t(o.batch);
    const std::size_t total = std::max<std::size_t>(1, std::size_t(epochs * double(batches_per_epoch) + 0.5));
    // ten points an epoch, and at least ten a stage (a short stage is a curve, not a jump)
    const std::size_t report_every = std::max<std::size_t>(1, std::min(batches_per_epoch, total) / 10);
    const auto started = clock_type::now();
    double loss_sum = 0, evaluation_seconds = 0;
    std::size_t correct = 0, seen = 0;
    std::vector<std::size_t> order;
    for (std::size_t step = 0; step < total; ++step) {
        const std::size_t in_epoch = step % batches_per_epoch;
        if (in_epoch == 0) {
            order = nn::shuffled_indices(n, o.seed * 1000003 + stage_salt(stage) + step / batches_per_epoch);
        }
        const std::span<const std::size_t> pick(order.data() + in_epoch * std::size_t(o.batch), std::size_t(o.batch));
        const nn::labeled_images batch = nn::select(data.train, pick);
        net.zero_grad();
        const nn::tensor out = net.forward({batch.images, {1, batch.rows, batch.cols}}, nn::pass::training);
        const nn::loss_and_gradient l = nn::softmax_cross_entropy(out.values, batch.labels);
        net.backward({l.gradient, out.shape});
        opt.step();
        loss_sum += l.loss * double(o.batch);
        correct += nn::correct_predictions(out.values, batch.labels);
        seen += std::size_t(o.batch);
        const bool epoch_end = in_epoch + 1 == batches_per_epoch || step + 1 == total;
        // A regular point a few batches before an epoch's or the stage's end is left out, so the
        // end's point does not stand for a handful of batches (a jump in the curve).
        const std::size_t to_end = std::min(batches_per_epoch - (in_epoch + 1), total - (step + 1));
        if (((step + 1) % report_every == 0 && to_end >= report_every / 2) || epoch_end) {
            const double elapsed = seconds_since(started);
            std::printf("  %-9s %-14s epoch %5.2f  batch %5zu/%zu  loss %.4f  train acc %6.2f%%  %6.1f s  (%.0f images/s)\n",
                        stage.c_str(), run.c_str(), double(step + 1) / double(batches_per_epoch), step + 1, total,
                        loss_sum / double(seen), 100.0 * double(correct) / double(seen), elapsed,
                        double((step + 1) * std::size_t(o.batch)) / (elapsed - evaluation_seconds));
            std::fflush(stdout);
            double test_accuracy = std::nan("");
            if (epoch_end) {
                const auto evaluation_started = clock_type::now();
                test_accuracy = evaluate(net, data.test, o.test_limit, run + " " + stage + " test");
                evaluation_seconds += seconds_since(evaluation_started);
            }
            curve.push_back({stage, run, double(step + 1) / double(batches_per_epoch), loss_sum / double(seen),
                             100.0 * double(correct) / double(seen), test_accuracy});
            loss_sum = 0, correct = 0, seen = 0;
        }
    }
    // seconds per epoch of training (the test evaluations left out)
    return (seconds_since(started) - evaluation_seconds) / (double(total) / double(batches_per_epoch));
}

// The table's datapaths (accumulator_formats.hpp, shared with vit_fashion_mnist) from the options.
lowbit_examples::datapath_settings settings_of(const options& o) {
    return {.chunk = o.chunk, .rounding = o.rounding, .m7e4_product_bias = o.m7e4_product_bias,
            .m7e4_accumulator_bias = o.m7e4_accumulator_bias, .e5_product_bias = o.e5_product_bias,
            .e5_accumulator_bias = o.e5_accumulator_bias, .subnormals = o.subnormals, .seed = o.seed,
            .threads = o.threads};
}
datapath_row row_for(const std::string& spelling, const options& o) { return lowbit_examples::row_for(spelling, settings_of(o)); }
nn::gemm_datapath datapath_for(const lowbit::float_format& product, const lowbit::float_format& accumulator,
                               const options& o) {
    return lowbit_examples::datapath_for(product, accumulator, settings_of(o));
}

struct result_row {
    std::string name;
    std::string product, accumulator;
    lowbit::gemm_spec spec;  // the datapath, written to results.csv as gemm_spec text
    double zero_shot = 0;
    event_rates events;
    struct tuning {
        std::string gradient;
        std::optional<double> stage1, fine_tuned;
    };
    std::vector<tuning> tunings;  // one per gradient mode, in --finetune-gradients order
    // the first fine-tuning's accuracies (the straight-through recipe by default), or none
    std::optional<double> stage1() const { return tunings.empty() ? std::nullopt : tunings.front().stage1; }
    std::optional<double> fine_tuned() const { return tunings.empty() ? std::nullopt : tunings.front().fine_tuned; }
};

// What a plot's caption says about the run, and how wide its accuracies' error bars are.
struct run_conditions {
    bool quick;
    std::size_t test_images, event_samples;
    std::uint64_t seed;
    int chunk;
    std::string rounding;
    bool subnormals;

    std::string caption() const {
        return std::to_string(test_images) + " test images" + (quick ? " (--quick run)" : "") + ", chunk " +
               std::to_string(chunk) + ", " + rounding + ", " + (subnormals ? "subnormals" : "flush to zero") +
               ", seed " + std::to_string(seed) + "; error bars: +-1 standard error";
    }
};

void write_plots(const std::string& out, const std::vector<result_row>& rows, double fp32, double fp8,
                 const std::vector<curve_point>& curve, const std::vector<std::string>& gradients,
                 const run_conditions& run) {
    const auto error = [&](double accuracy) { return lowbit_examples::standard_error(accuracy, run.test_images); };
    const auto number = [](std::optional<double> v) { return v ? std::to_string(*v) : std::string("NaN"); };
    const auto error_of = [&](std::optional<double> v) { return v ? std::optional(error(*v)) : std::nullopt; };
    // accuracy.dat: one line per format: index, name, zero-shot and its standard error, then per
    // gradient mode the fine-tuned accuracy and its standard error (NaN where not fine-tuned), then
    // the swamp, underflow and overflow rates (% of multiply-accumulates).
    {
        std::ofstream dat(out + "/accuracy.dat");
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const result_row& r = rows[i];
            dat << i << " " << r.name << " " << r.zero_shot << " " << error(r.zero_shot);
            for (const auto& g : gradients) {
                std::optional<double> tuned;
                for (const auto& t : r.tunings)
                    if (t.gradient == g) tuned = t.fine_tuned;
                dat << " " << number(tuned) << " " << number(error_of(tuned));
            }
            dat << " " << 100 * r.events.swamp << " " << 100 * r.events.underflow << " " << 100 * r.events.overflow
                << "\n";
        }
    }
    // training.dat: one block per run (fp32 training, then each fine-tuning: stage 2's points
    // continue stage 1's epochs). Columns: epoch, loss, train accuracy, test accuracy (or NaN) and
    // its standard error.
    std::vector<std::string> runs;
    double stage1_end = 0;
    {
        std::ofstream dat(out + "/training.dat");
        double offset = 0, last = 0;
        std::string stage;
        for (const auto& p : curve) {
            if (runs.empty() || p.run != runs.back()) {
                if (!runs.empty()) dat << "\n\n";
                runs.push_back(p.run), offset = 0, last = 0;
            }
            if (p.stage != stage && p.stage == "stage2") offset = last, stage1_end = last;
            stage = p.stage;
            last = offset + p.epoch;
            const std::optional<double> test =
                std::isnan(p.test_accuracy) ? std::nullopt : std::optional(p.test_accuracy);
            dat << last << " " << p.train_loss << " " << p.train_accuracy << " " << number(test) << " "
                << number(error_of(test)) << "\n";
        }
    }
    const std::size_t events_column = 5 + 2 * gradients.size();
    // The y axis spans the accuracies and their error bars (bars from 0 would hide differences of a
    // point).
    double low = std::min(fp32, fp8), high = std::max(fp32, fp8);
    const auto span = [&](std::optional<double> a) {
        if (a) low = std::min(low, *a - error(*a)), high = std::max(high, *a + error(*a));
    };
    for (const auto& r : rows) {
        span(r.zero_shot);
        for (const auto& t : r.tunings) span(t.fine_tuned);
    }
    const double y_low = std::max(0.0, std::floor(low) - 2), y_high = std::min(100.0, std::ceil(high) + 1);
    std::ofstream gp(out + "/plots.gp");
    // accuracy.png: the accuracies (zero-shot, then fine-tuned with each gradient mode) beside the
    // event rates that explain them.
    gp << "set terminal pngcairo size 1700,650 font 'Sans,11' noenhanced\n"
       << "set output '" << out << "/accuracy.png'\n"
       << "set multiplot layout 1,2 title \"Fashion-MNIST CNN, FP8 M4E3 weights and activations, per accumulator "
          "format (products in the same format): zero-shot and fine-tuned\\n"
       << run.caption() << "\"\n"
       << "set style data histograms\nset style fill solid 0.8 border -1\nset boxwidth 0.9\n"
       << "set key outside bottom center horizontal\nset grid ytics\nset xtics rotate by 0\n"
       << "set title 'test accuracy'\nset ylabel 'test accuracy (%)'\n"
       << "set style histogram errorbars gap 1 lw 1\nset yrange [" << y_low << ":" << y_high << "]\n"
       << "plot '" << out << "/accuracy.dat' using 3:4:xtic(2) title 'zero-shot'";
    for (std::size_t g = 0; g < gradients.size(); ++g)
        gp << ", '' using " << 5 + 2 * g << ":" << 6 + 2 * g << " title 'fine-tuned, " << gradients[g] << " gradients'";
    gp << ", " << fp32 << " with lines lw 2 lc rgb 'black' title 'fp32 (" << fp32 << "%)', " << fp8
       << " with lines lw 2 dt 2 lc rgb 'gray40' title 'FP8 inputs, exact accumulation (" << fp8 << "%)'\n"
       << "set title 'events per multiply-accumulate, zero-shot (first " << run.event_samples << " test images)'\n"
       << "set ylabel 'events (% of multiply-accumulates)'\nset style histogram clustered gap 1\n"
       << "set yrange [0:*]\n"
       << "plot '" << out << "/accuracy.dat' using " << events_column << ":xtic(2) title 'swamps', '' using "
       << events_column + 1 << " title 'underflows', '' using " << events_column + 2 << " title 'overflows'\n"
       << "unset multiplot\n";
    // training.png: a row of panels (loss, accuracy) for fp32 training (when it ran), then one per
    // gradient mode with every format's fine-tuning in its own colour: training loss and accuracy
    // as curves through both stages (a dashed line where stage 2 begins), the test accuracy at each
    // stage's end, the zero-shot accuracy at 0, and fp32's for reference.
    const bool has_fp32 = !runs.empty() && runs.front() == "fp32";
    std::vector<std::string> tuned_gradients;
    for (const auto& g : gradients)
        for (const auto& r : rows)
            for (const auto& t : r.tunings)
                if (t.gradient == g && std::find(tuned_gradients.begin(), tuned_gradients.end(), g) == tuned_gradients.end())
                    tuned_gradients.push_back(g);
    const int panel_rows = int(has_fp32) + int(tuned_gradients.size());
    if (panel_rows > 0) {
        gp << "set output '" << out << "/training.png'\n"
           << "set terminal pngcairo size 1400," << 80 + 420 * panel_rows << " font 'Sans,11' noenhanced\n"
           << "set multiplot layout " << panel_rows << ",2 title \"Training curves: training loss and accuracy "
              "(mean over the batches since the previous point), test accuracy at each stage's end\\n"
           << run.caption() << "\"\n"
           << "unset style\nset style data linespoints\nset autoscale y\nset yrange [*:*]\n"
           << "set key outside right top\nset grid\n";
        const auto index_of = [&](const std::string& name) {
            return std::size_t(std::find(runs.begin(), runs.end(), name) - runs.begin());
        };
        if (has_fp32) {
            gp << "set xlabel 'epoch'\nset title 'fp32 training: training loss'\nset ylabel 'loss'\nset logscale y\n"
               << "plot '" << out << "/training.dat' index 0 using 1:2 pt 6 title 'fp32'\nunset logscale y\n"
               << "set title 'fp32 training: accuracy'\nset ylabel 'accuracy (%)'\n"
               << "plot '" << out << "/training.dat' index 0 using 1:3 pt 6 title 'train', '' index 0 using 1:4:5 "
               << "with yerrorbars pt 7 ps 1.4 title 'test'\n";
        }
        for (const auto& g : tuned_gradients) {
            gp << "set xlabel 'epochs of fine-tuning'\n";
            if (stage1_end > 0)
                gp << "set arrow 1 from " << stage1_end << ", graph 0 to " << stage1_end
                   << ", graph 1 nohead dt 2 lc rgb 'gray50'\n";
            std::string loss = "plot ", accuracy = "plot ";
            int colour = 0;
            for (const auto& r : rows)
                for (const auto& t : r.tunings) {
                    if (t.gradient != g) continue;
                    const std::size_t k = index_of(r.name + " " + g);
                    if (k == runs.size()) continue;
                    ++colour;
                    const std::string from = "'" + out + "/training.dat' index " + std::to_string(k);
                    const std::string lc = " lc " + std::to_string(colour);
                    loss += (colour > 1 ? ", " : "") + from + " using 1:2 pt 6" + lc + " title '" + r.name + "'";
                    accuracy += std::string(colour > 1 ? ", " : "") + from + " using 1:3 pt 6 ps 0.6" + lc +
                                " title '" + r.name + " train', " + from + " using 1:4:5 with yerrorbars pt 7 ps 1.3" +
                                lc + " notitle, '+' using (0):(" + std::to_string(r.zero_shot) + "):(" +
                                std::to_string(error(r.zero_shot)) + ") every ::0::0 with yerrorbars pt 5 ps 1.3" +
                                lc + " notitle";
                }
            gp << "set title 'fine-tuning, " << g << " gradients: training loss (dashed: stage 2 begins)'\n"
               << "set ylabel 'loss'\nset logscale y\n" << loss << "\nunset logscale y\n"
               << "set title 'fine-tuning, " << g
               << " gradients: accuracy (squares: zero-shot, dots: test)'\n"
               << "set ylabel 'accuracy (%)'\n" << accuracy << ", " << fp32 << " with lines lw 2 lc rgb 'black' "
               << "title 'fp32 test'\nunset arrow 1\n";
        }
        gp << "unset multiplot\n";
    }
    gp.close();
    examples::render_plots(out + "/plots.gp", out);
}

}  // namespace

int run_example(int argc, char** argv) {
    options o;
    CLI::App app{"Low bit-width accumulators on Fashion-MNIST: fp32 training, zero-shot evaluation on MxEy "
                 "accumulators, fine-tuning on them"};
    app.add_flag("--quick", o.quick, "a small subset and short training (for CI): 6000 training and 1000 test images");
    examples::add_out_option(app, o.out, "the weights cache, CSV files and plots")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // scripts/demo.sh gives a default
    examples::add_data_option(app, o.data);
    app.add_option("--epochs", o.epochs, "fp32 training epochs")->check(CLI::Range(1, 100));
    app.add_option("--batch", o.batch, "mini-batch size")->check(CLI::Range(1, 4096));
    app.add_option("--lr", o.learning_rate, "fp32 training learning rate (Adam)")->check(examples::finite_positive);
    app.add_option("--seed", o.seed, "seed of initialisation, shuffling and stochastic rounding");
    app.add_flag("--retrain", o.retrain, "train even if cached weights exist");
    app.add_option("--formats", o.formats, "accumulator formats (MxEy), comma separated")->delimiter(',');
    app.add_option("--finetune", o.finetune,
                   "formats fine-tuned (those of --formats; none: 'none'), comma separated (--quick: m7e4,m3e4)")
        ->delimiter(',');
    app.add_option("--finetune-gradients", o.finetune_gradients,
                   "gradient modes of the fine-tuning, each a run of its own (ste, overflow_only, immediate, recursive); "
                   "the first is results.csv's fine_tuned_accuracy")
        ->delimiter(',')
        ->check(CLI::IsMember({"ste", "overflow_only", "immediate", "recursive"}));
    app.add_option("--chunk", o.chunk, "chunk size of the accumulation (0: no chunks)")->check(CLI::Range(0, 1 << 20));
    app.add_option("--rounding", o.rounding, "rounding of products and accumulators")
        ->check(CLI::IsMember({"toward_zero", "nearest_even", "nearest_away", "toward_positive", "toward_negative",
                               "stochastic", "odd"}));
    app.add_option("--m7e4-product-bias", o.m7e4_product_bias, "exponent bias of M7E4 products (paper: 12)");
    app.add_option("--m7e4-acc-bias", o.m7e4_accumulator_bias, "exponent bias of the M7E4 accumulator (paper: 10)");
    app.add_option("--e5-product-bias", o.e5_product_bias, "exponent bias of MxE5 products");
    app.add_option("--e5-acc-bias", o.e5_accumulator_bias, "exponent bias of MxE5 accumulators");
    app.add_flag("--subnormals", o.subnormals, "keep subnormals in products and accumulators (default: flush to zero)");
    app.add_option("--stats-samples", o.stats_samples, "test images on which events are counted")->check(CLI::Range(0, 10000));
    app.add_option("--stage1-epochs", o.stage1_epochs, "fine-tuning stage 1 (no underflow), in epochs")->check(examples::finite)->check(CLI::Range(0.0, 100.0));
    app.add_option("--stage2-epochs", o.stage2_epochs, "fine-tuning stage 2 (the real format), in epochs")->check(examples::finite)->check(CLI::Range(0.0, 100.0));
    app.add_option("--finetune-lr", o.finetune_learning_rate, "fine-tuning stage 1 learning rate (Adam)")->check(examples::finite_positive);
    app.add_option("--stage2-lr", o.stage2_learning_rate, "fine-tuning stage 2 learning rate (Adam)")->check(examples::finite_positive);
    app.add_option("--threads", o.threads, "threads (0: all cores)")->check(CLI::Range(0, 1024));
    app.add_option("--spec", o.specs,
                   "one more datapath for the zero-shot table, as gemm_spec text, e.g. \"product=fp16 "
                   "accumulator=bf16:toward_zero chunk=32\" (repeatable; the FP8 range-biased weights and "
                   "activations are applied first)");
    CLI11_PARSE(app, argc, argv);
    if (o.quick) {
        o.train_limit = 6000, o.test_limit = 1000;
        if (app.count("--epochs") == 0) o.epochs = 2;
        if (app.count("--stats-samples") == 0) o.stats_samples = 10;
        if (app.count("--finetune") == 0) o.finetune = {"m7e4", "m3e4"};
    }
    if (o.finetune == std::vector<std::string>{"none"}) o.finetune.clear();
#if defined(_OPENMP)
    if (o.threads > 0) omp_set_num_threads(o.threads);  // Eigen's fp32 GEMM follows OpenMP
#endif
    const auto run_started = clock_type::now();
    examples::prepare_out(o.out);

    std::vector<datapath_row> formats;
    for (const auto& f : o.formats) formats.push_back(row_for(f, o));
    std::vector<std::string> finetune;  // row names ("M7E4")
    for (const auto& f : o.finetune) {
        const std::string name = row_for(f, o).name;
        if (std::none_of(formats.begin(), formats.end(), [&](const datapath_row& r) { return r.name == name; }))
            throw std::invalid_argument("--finetune " + f + ": not among --formats");
        finetune.push_back(name);
    }
    // (parsed before any work: a malformed --spec is reported at once, naming the field)
    std::vector<nn::gemm_datapath> specs;
    for (const auto& text : o.specs) specs.push_back(lowbit_examples::datapath_of_spec(text, o.threads));

    std::printf("Loading Fashion-MNIST from %s\n", o.data.c_str());
    const nn::fashion_mnist_data data = nn::load_fashion_mnist(o.data);
    std::printf("  %zu training and %zu test images%s\n", data.train.size(), data.test.size(),
                o.quick ? " (--quick: 6000 and 1000 of them are used)" : "");

    // 1. fp32 training, or the cached weights.
    nn::network net = make_cnn(o.seed);
    std::printf("\nThe CNN:\n%s", net.describe().c_str());
    const std::string cache = o.out + "/cnn_fp32_" + std::to_string(o.epochs) + "ep_seed" + std::to_string(o.seed) +
                              (o.quick ? "_quick" : "") + ".weights";
    std::vector<curve_point> curve;
    double fp32_epoch_seconds = std::nan("");
    if (!load_cached(net, cache, o.retrain)) {
        std::printf("\n1. fp32 training: %d epochs, Adam, learning rate %g, batches of %d\n", o.epochs, o.learning_rate,
                    o.batch);
        nn::adam opt(net.parameters(true), {.learning_rate = o.learning_rate});
        fp32_epoch_seconds = 0;
        for (int e = 0; e < o.epochs; ++e) {
            // a step decay: the last epoch at a tenth of the rate
            if (e == o.epochs - 1 && o.epochs > 1) opt.set_learning_rate(o.learning_rate / 10);
            std::vector<curve_point> epoch_curve;
            fp32_epoch_seconds += train(net, opt, data, o, 1.0, "fp32", "fp32", epoch_curve);
            for (auto& p : epoch_curve) p.epoch += e, curve.push_back(p);
        }
        fp32_epoch_seconds /= o.epochs;
        net.save(cache);
        std::printf("  saved %s (%.1f s per epoch)\n", cache.c_str(), fp32_epoch_seconds);
    }

    // 2. zero-shot on the datapaths
    nn::network folded = nn::fold_batch_norm(net);
    std::printf("\n2. Inference network (batch norm folded into the convolutions):\n%s", folded.describe().c_str());
    const double fp32_accuracy = evaluate(folded, data.test, o.test_limit, "fp32");
    folded.set_datapath({.spec = std::nullopt, .weights = nn::range_biased_float{}, .activations = nn::range_biased_float{}, .stats = nullptr});
    const double fp8_accuracy = evaluate(folded, data.test, o.test_limit, "FP8 inputs, fp32 accumulation");
    std::printf("\n   Zero-shot: FP8 M4E3 weights and activations, products and accumulators MxEy, chunk %d, %s, %s, "
                "saturating\n",
                o.chunk, o.rounding.c_str(), o.subnormals ? "subnormals" : "flush to zero");
    std::vector<result_row> rows;
    for (const auto& f : formats) {
        const nn::gemm_datapath d = datapath_for(f.product, f.accumulator, o);
        result_row row{f.name, paper_name(f.product), paper_name(f.accumulator), *d.spec, 0.0, {}, {}};
        folded.set_datapath(d);
        row.zero_shot = evaluate(folded, data.test, o.test_limit, f.name + " zero-shot");
        if (o.stats_samples > 0) row.events = measure_events(folded, data.test, d, o.stats_samples);
        rows.push_back(row);
    }
    for (std::size_t i = 0; i < specs.size(); ++i) {
        const std::string name = "spec" + std::to_string(i + 1);
        const nn::gemm_datapath& d = specs[i];
        std::printf("   %s: %s\n", name.c_str(), lowbit::to_string(*d.spec).c_str());
        result_row row{name, lowbit::to_string(d.spec->product), lowbit::to_string(d.spec->accumulator), *d.spec,
                       0.0, {}, {}};
        folded.set_datapath(d);
        row.zero_shot = evaluate(folded, data.test, o.test_limit, name + " zero-shot");
        if (o.stats_samples > 0) row.events = measure_events(folded, data.test, d, o.stats_samples);
        rows.push_back(row);
    }

    // 3. fine-tuning: each row of --finetune once per gradient mode, from the fp32 weights
    double finetune_seconds = 0, finetune_epochs = 0;
    for (std::size_t r = 0; r < formats.size(); ++r) {
        if (std::find(finetune.begin(), finetune.end(), rows[r].name) == finetune.end()) continue;
        const datapath_row& f = formats[r];
        for (const auto& g : o.finetune_gradients) {
            const lowbit::gradient_mode mode = lowbit::parse_gradient_mode(g);
            const std::string run = f.name + " " + g;
            result_row::tuning t{g, {}, {}};
            nn::network tuned = nn::fold_batch_norm(net);
            nn::adam opt(tuned.parameters(true), {.learning_rate = o.finetune_learning_rate});
            nn::gemm_datapath real = datapath_for(f.product, f.accumulator, o);
            real.gradient = mode;
            if (o.stage1_epochs > 0) {
                std::printf("\n3. Fine-tuning on %s with %s gradients, stage 1: underflow disabled (%s / %s), %.2f "
                            "epochs, Adam %g\n",
                            f.name.c_str(), g.c_str(), lowbit::to_string(without_underflow(f.product)).c_str(),
                            lowbit::to_string(without_underflow(f.accumulator)).c_str(), o.stage1_epochs,
                            o.finetune_learning_rate);
                nn::gemm_datapath stage1 = datapath_for(without_underflow(f.product), without_underflow(f.accumulator), o);
                stage1.gradient = mode;
                if (o.stats_samples > 0 && g == o.finetune_gradients.front()) {
                    const event_rates e = measure_events(tuned, data.test, stage1, o.stats_samples);
                    std::printf("   stage-1 datapath on the test images: underflow rate %.6f%%, swamp rate %.3f%%\n",
                                100 * e.underflow, 100 * e.swamp);
                }
                tuned.set_datapath(stage1);
                finetune_seconds += train(tuned, opt, data, o, o.stage1_epochs, "stage1", run, curve) * o.stage1_epochs;
                finetune_epochs += o.stage1_epochs;
                tuned.set_datapath(real);
                t.stage1 = evaluate(tuned, data.test, o.test_limit, "after stage 1, on real " + f.name);
            }
            if (o.stage2_epochs > 0) {
                std::printf("\n   Stage 2 (%s, %s gradients): the real format, %.2f epochs, Adam %g\n", f.name.c_str(),
                            g.c_str(), o.stage2_epochs, o.stage2_learning_rate);
                tuned.set_datapath(real);
                opt.set_learning_rate(o.stage2_learning_rate);
                finetune_seconds += train(tuned, opt, data, o, o.stage2_epochs, "stage2", run, curve) * o.stage2_epochs;
                finetune_epochs += o.stage2_epochs;
                t.fine_tuned = curve.back().test_accuracy;  // measured at the stage's end, on the real format
            } else {
                t.fine_tuned = t.stage1;
            }
            rows[r].tunings.push_back(t);
            // (the weights of M7E4's first fine-tuning are those the landscape example starts from)
            if (f.name == "M7E4" && g == o.finetune_gradients.front()) tuned.save(o.out + "/cnn_m7e4_finetuned.weights");
        }
    }

    // 4. the table, the CSV, the plots
    std::printf("\nTest accuracy (%s%zu images): fp32 %.2f%%, FP8 M4E3 inputs with exact accumulation %.2f%%\n",
                o.test_limit ? "first " : "", o.test_limit ? o.test_limit : data.test.size(), fp32_accuracy,
                fp8_accuracy);
    std::printf("%-6s %-15s %-15s %9s %10s %10s %10s", "acc", "product", "accumulator", "zero-shot", "swamps",
                "underflow", "overflow");
    for (const auto& g : o.finetune_gradients) std::printf(" %22s", ("stage 1 / tuned " + g).c_str());
    std::printf("\n");
    std::ofstream csv(o.out + "/results.csv");
    // (datapath: the row's whole gemm_spec as text, which gemm_spec::parse and --spec read back;
    // quoted, as it holds commas. chunk and rounding: the spec's chunk and its accumulator's mode.)
    // The run's conditions in every row: quick (0/1), the test images the accuracies are over, the
    // seed, and the test images the event rates are counted on.
    csv << "format,product,accumulator,chunk,rounding,fp32_accuracy,fp8_accuracy,zero_shot_accuracy,swamp_rate,"
           "underflow_rate,overflow_rate,stage1_accuracy,fine_tuned_accuracy,quick,test_images,seed,event_samples,"
           "datapath\n";
    const std::size_t test_images = o.test_limit ? std::min(o.test_limit, data.test.size()) : data.test.size();
    // (every number as the stream writes it: the optional ones as the others)
    const auto opt_text = [](const std::optional<double>& v) {
        std::ostringstream text;
        if (v) text << *v;
        return text.str();
    };
    const auto percent = [](const std::optional<double>& v) {
        char text[16] = "-";
        if (v) std::snprintf(text, sizeof text, "%.2f%%", *v);
        return std::string(text);
    };
    for (const auto& r : rows) {
        std::printf("%-6s %-15s %-15s %8.2f%% %9.3f%% %9.3f%% %9.4f%%", r.name.c_str(), r.product.c_str(),
                    r.accumulator.c_str(), r.zero_shot, 100 * r.events.swamp, 100 * r.events.underflow,
                    100 * r.events.overflow);
        for (const auto& g : o.finetune_gradients) {
            std::string cell = "-";
            for (const auto& t : r.tunings)
                if (t.gradient == g) cell = percent(t.stage1) + " / " + percent(t.fine_tuned);
            std::printf(" %22s", cell.c_str());
        }
        std::printf("\n");
        csv << r.name << ',' << r.product << ',' << r.accumulator << ',' << r.spec.chunk << ','
            << lowbit_examples::rounding_text(r.spec) << ','
            << fp32_accuracy << ',' << fp8_accuracy << ',' << r.zero_shot << ',' << r.events.swamp << ','
            << r.events.underflow << ',' << r.events.overflow << ',' << opt_text(r.stage1()) << ','
            << opt_text(r.fine_tuned()) << ',' << int(o.quick) << ',' << test_images << ',' << o.seed << ','
            << std::min<std::size_t>(std::size_t(o.stats_samples), data.test.size()) << ",\""
            << lowbit_examples::datapath_text(r.spec) << "\"\n";
    }
    csv.close();
    // fine_tuning.csv: every fine-tuning, one row per format and gradient mode.
    {
        std::ofstream tuning(o.out + "/fine_tuning.csv");
        tuning << "format,gradient,zero_shot_accuracy,stage1_accuracy,fine_tuned_accuracy,stage1_epochs,stage2_epochs,"
                  "quick,test_images,seed\n";
        for (const auto& r : rows)
            for (const auto& t : r.tunings)
                tuning << r.name << ',' << t.gradient << ',' << r.zero_shot << ',' << opt_text(t.stage1) << ','
                       << opt_text(t.fine_tuned) << ',' << o.stage1_epochs << ',' << o.stage2_epochs << ','
                       << int(o.quick) << ',' << test_images << ',' << o.seed << '\n';
    }
    // The binomial standard error of an accuracy near fp32's over these images: differences below
    // about two of it are noise (the quick run's 1000 images: about 1.1 points each).
    const double standard_error = lowbit_examples::standard_error(fp32_accuracy, test_images);
    std::printf("(%zu test images: the standard error of each accuracy is about %.2f points; differences below "
                "%.1f points are within noise)\n",
                test_images, standard_error, 2 * standard_error);
    {
        std::ofstream training(o.out + "/training.csv");
        // (run: fp32, or the fine-tuning's format and gradient mode, "M7E4 ste")
        training << "stage,epoch,train_loss,train_accuracy,test_accuracy,run\n";
        for (const auto& p : curve)
            training << p.stage << ',' << p.epoch << ',' << p.train_loss << ',' << p.train_accuracy << ','
                     << (std::isnan(p.test_accuracy) ? std::string() : std::to_string(p.test_accuracy)) << ','
                     << p.run << '\n';
    }
    write_plots(o.out, rows, fp32_accuracy, fp8_accuracy, curve, o.finetune_gradients,
                {.quick = o.quick, .test_images = test_images,
                 .event_samples = std::min<std::size_t>(std::size_t(o.stats_samples), data.test.size()),
                 .seed = o.seed, .chunk = o.chunk, .rounding = o.rounding, .subnormals = o.subnormals});
    std::printf("\nEvent rates per multiply-accumulate, counted on the first %d test images.\n", o.stats_samples);
    if (!std::isnan(fp32_epoch_seconds)) std::printf("fp32 training: %.1f s per epoch\n", fp32_epoch_seconds);
    if (finetune_epochs > 0)
        std::printf("fine-tuning: %.1f s per epoch (mean over the formats and gradient modes)\n",
                    finetune_seconds / finetune_epochs);
    std::printf("Wrote %s/results.csv, fine_tuning.csv, training.csv, accuracy.png, training.png. Total time %.1f s\n", o.out.c_str(),
                seconds_since(run_started));
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("lba_fashion_mnist", [&] { return run_example(argc, argv); });
}
