// OCTAV quantization-aware training at 4 and 3 bits (Sakr et al., ICML 2022; ../shared/papers.md
// section 3): does the MSE-optimal clipping scale, recomputed in every training step, beat max
// scaling (ResNet-50 at 4 bits: 75.2% against 72.7%), and does recomputing it ("dynamic") beat
// computing it once ("static") on a small model?
//
// The flagship's CNN (two convolutions with batch norm, two linear layers) trains with the
// weights and activations of all four GEMMs through OCTAV's clipped uniform quantizer
// (lowbit::nn::clipped_inputs): B bits for conv2 and fc1, 8 bits for the first convolution and the
// last linear layer; conv weights with one scale per output channel, linear weights and all
// activations with one per tensor (activations unsigned: every GEMM here reads post-ReLU values
// or pixels); scales in double precision; the GEMMs themselves in fp32. Methods:
//   max_ste        scale = max |x| every step, straight-through gradients (the paper's baseline)
//   percentile     99.99th percentile, calibrated once (pretrained or initial weights, 5 training
//                  batches), straight-through gradients
//   octav_static   OCTAV calibrated once the same way, MAD gradients for weights, PWL for activations
//   octav_dynamic  OCTAV (10 Newton-Raphson steps from the paper's start) on every tensor in every
//                  training step and test batch, MAD / PWL gradients (the paper's recipe)
// from two start points (the variant column): "checkpoint", the fp32 network (2 epochs over the 60000
// images, cached in the output folder) retrained for one epoch over --retrain-images at a tenth of
// its learning rate, and "scratch", the fp32 network's initial weights trained quantized on its
// schedule (2 epochs, the last at a tenth of the rate) over --scratch-images. fp32 rows: the
// checkpoint, and an fp32 network trained on the scratch runs' schedule (the baseline of those).
//
// Writes octav.csv (experiment,method,bits,variant,seed,test_accuracy), octav_step_times.csv (the
// wall time of one training step per method and bits), and octav.png.
//
//   octav_qat [--quick] [--out DIR] [--seeds N] [--bits 4,3] [--methods ...] [--starts checkpoint,scratch]
//             [--retrain-images N] [--scratch-images N] [--test-images N] [--threads N] [--retrain] [--data DIR]
#include <lowbit/nn/clipped_inputs.hpp>
#include <lowbit/nn/clipping_calibration.hpp>
#include <lowbit/nn/network.hpp>

#include "example_cli.hpp"
#include "fashion_mnist_cnn.hpp"
#include "octav_methods.hpp"
#include "paper_results.hpp"
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>


namespace {

namespace nn = lowbit::nn;
using lowbit_examples::clock_type;
using lowbit_examples::method;
using lowbit_examples::seconds_since;

struct options {
    bool quick = false, retrain = false;
    std::string out = "results";
    std::string data = lowbit::nn::fashion_mnist_default_dir;
    int seeds = 3;
    std::vector<int> bits{4, 3};
    std::vector<std::string> methods{"max_ste", "percentile", "octav_static", "octav_dynamic"};
    std::vector<std::string> starts{"checkpoint", "scratch"};
    lowbit_examples::training_schedule fp32{};
    std::size_t retrain_images = 10000;  // checkpoint runs: one epoch over these, at a tenth of the rate
    std::size_t scratch_images = 10000;  // scratch runs: fp32's schedule (2 epochs) over these
    std::size_t test_limit = 5000;  // about 15 minutes on 2 cores in all
    int calibration_batches = 5;
    double percentile = 99.99;
    int threads = 0;
};

}  // namespace

int run_example(int argc, char** argv) {
    options o;
    CLI::App app{"OCTAV quantization-aware training of the Fashion-MNIST CNN at 4 and 3 bits against max scaling, "
                 "percentile calibration and static OCTAV"};
    app.add_flag("--quick", o.quick,
                 "a short run (for CI): 1000 training images, 500 test images, one seed, 4 bits, every method");
    examples::add_out_option(app, o.out, "octav.csv, octav_step_times.csv, octav.png and the fp32 networks");
    examples::add_data_option(app, o.data);
    app.add_option("--seeds", o.seeds, "seeds 1..N (initial weights, shuffling)")->check(CLI::Range(1, 100));
    app.add_option("--bits", o.bits, "bits of conv2 and fc1 (conv1 and fc2: 8)")->delimiter(',')->check(CLI::Range(2, 8));
    app.add_option("--methods", o.methods, "max_ste, percentile, octav_static, octav_dynamic")->delimiter(',');
    app.add_option("--starts", o.starts, "checkpoint (retrain the fp32 network), scratch")->delimiter(',');
    app.add_option("--epochs", o.fp32.epochs, "epochs of the fp32 network and of the scratch runs")->check(CLI::Range(1, 100));
    app.add_option("--retrain-images", o.retrain_images, "images of the checkpoint runs' one epoch")
        ->check(CLI::Range(std::size_t(128), std::size_t(60000)));
    app.add_option("--scratch-images", o.scratch_images, "images per epoch of the scratch runs")
        ->check(CLI::Range(std::size_t(128), std::size_t(60000)));
    app.add_option("--train-images", o.fp32.train_limit, "images per epoch of the fp32 network (0: all 60000)");
    app.add_option("--test-images", o.test_limit, "test images evaluated (0: all 10000; default 5000)");
    app.add_option("--percentile", o.percentile, "the percentile method's percentile")
        ->check(examples::finite)
        ->check(CLI::Range(50.0, 100.0));
    app.add_option("--threads", o.threads, "threads (0: all cores)")->check(CLI::Range(0, 1024));
    app.add_flag("--retrain", o.retrain, "train the fp32 networks even where the output folder has them");
    CLI11_PARSE(app, argc, argv);
    if (o.quick) {
        if (app.count("--train-images") == 0) o.fp32.train_limit = 1000;
        if (app.count("--epochs") == 0) o.fp32.epochs = 1;
        if (app.count("--retrain-images") == 0) o.retrain_images = 1000;
        if (app.count("--scratch-images") == 0) o.scratch_images = 1000;
        if (app.count("--test-images") == 0) o.test_limit = 500;
        if (app.count("--seeds") == 0) o.seeds = 1;
        if (app.count("--bits") == 0) o.bits = {4};
    }
    std::vector<method> methods;
    for (const auto& name : o.methods) methods.push_back(lowbit_examples::method_named(name));  // a bad name before any work
    for (const auto& s : o.starts)
        if (s != "checkpoint" && s != "scratch")
            throw std::invalid_argument("--starts: '" + s + "' is not checkpoint or scratch");
    const auto run_started = clock_type::now();
    const nn::fashion_mnist_data data = lowbit_examples::start_run(o.threads, o.out, o.data);
    const std::size_t test_images = o.test_limit ? std::min(o.test_limit, data.test.size()) : data.test.size();

    lowbit_examples::results_file results(o.out + "/octav.csv");
    std::map<std::string, std::vector<double>> step_times;  // "method bits" -> seconds per step
    for (int seed = 1; seed <= o.seeds; ++seed) {
        std::printf("\nSeed %d of %d\n", seed, o.seeds);
        const nn::network checkpoint = lowbit_examples::fp32_cnn(data, o.fp32, std::uint64_t(seed), o.out, o.retrain);
        {
            nn::network n = checkpoint;
            const double fp32 = lowbit_examples::evaluate(n, data.test, o.test_limit, "fp32 checkpoint");
            results.add({"qat", "fp32", "32", "checkpoint", std::uint64_t(seed), fp32});
        }
        lowbit_examples::training_schedule scratch = o.fp32;
        scratch.train_limit = o.scratch_images;
        if (std::find(o.starts.begin(), o.starts.end(), "scratch") != o.starts.end()) {
            // fp32 on the scratch runs' schedule: their baseline
            nn::network net = lowbit_examples::make_cnn(std::uint64_t(seed));
            lowbit_examples::train(net, data, scratch, std::uint64_t(seed), "fp32 from scratch");
            const double fp32 = lowbit_examples::evaluate(net, data.test, o.test_limit, "fp32 from scratch");
            results.add({"qat", "fp32", "32", "scratch", std::uint64_t(seed), fp32});
        }
        for (const std::string& start : o.starts)
            for (const int bits : o.bits)
                for (const method& m : methods) {
                    const std::string label = std::to_string(bits) + " bits " + m.name + " from " + start;
                    nn::network net = start == "checkpoint" ? checkpoint : lowbit_examples::make_cnn(std::uint64_t(seed));
                    lowbit_examples::quantize(net, m, bits, o.percentile);
                    if (m.calibrated_once) {  // on the start's weights and the first batches of the training order
                        const std::vector<std::size_t> order = nn::shuffled_indices(data.train.size(), 7919 * std::uint64_t(seed));
                        std::vector<nn::tensor> batches;
                        for (int b = 0; b < o.calibration_batches; ++b) {
                            const nn::labeled_images batch = nn::select(
                                data.train, std::span(order.data() + std::size_t(b) * 128, std::size_t(128)));
                            batches.push_back({batch.images, {1, batch.rows, batch.cols}});
                        }
                        nn::calibrate_clipping(net, batches);
                    }
                    const lowbit_examples::training_schedule retrain{
                        .epochs = 1, .learning_rate = o.fp32.learning_rate / 10, .train_limit = o.retrain_images};
                    const bool from_checkpoint = start == "checkpoint";
                    const double step =
                        lowbit_examples::train(net, data, from_checkpoint ? retrain : scratch,
                                               std::uint64_t(seed) + (from_checkpoint ? 100 : 0), label);
                    step_times[m.name + " " + std::to_string(bits)].push_back(step);
                    const double accuracy = lowbit_examples::evaluate(net, data.test, o.test_limit, label);
                    results.add({"qat", m.name, std::to_string(bits), start, std::uint64_t(seed), accuracy});
                }
    }

    // The table: mean +- std over seeds.
    const lowbit_examples::summary fp32 = lowbit_examples::summarize(results.accuracies("fp32", "32", "checkpoint"));
    std::printf("\nTest accuracy (%%) on %zu test images, mean +- standard deviation over %d seed(s); fp32 %.2f +- %.2f "
                "(binomial standard error of one accuracy near 88%%: %.2f points)\n",
                test_images, o.seeds, fp32.mean, fp32.std, lowbit_examples::standard_error(88, test_images));
    std::vector<std::string> bits_order;
    for (const int b : o.bits) bits_order.push_back(std::to_string(b));
    std::vector<lowbit_examples::plot_series> series;
    const lowbit_examples::summary fp32_scratch =
        lowbit_examples::summarize(results.accuracies("fp32", "32", "scratch"));
    if (fp32_scratch.n > 0)
        std::printf("fp32 on the scratch runs' schedule: %.2f +- %.2f\n", fp32_scratch.mean, fp32_scratch.std);
    std::printf("%-16s %-11s", "method", "start");
    for (const auto& b : bits_order) std::printf(" %14s", (b + " bits").c_str());
    std::printf("\n");
    for (const std::string& start : o.starts)
        for (const method& m : methods) {
            series.push_back({m.name, start, m.name + " from " + start});
            std::printf("%-16s %-11s", m.name.c_str(), start.c_str());
            for (const auto& b : bits_order) {
                const lowbit_examples::summary s = lowbit_examples::summarize(results.accuracies(m.name, b, start));
                std::printf(" %6.2f +- %4.2f", s.mean, s.std);
            }
            std::printf("\n");
        }

    std::ofstream times(o.out + "/octav_step_times.csv");
    times << "method,bits,seconds_per_step\n";
    std::printf("\nWall time of one training step (batch 128; forward, backward, Adam), mean over runs:\n");
    for (const int b : o.bits)
        for (const method& m : methods) {
            const lowbit_examples::summary s = lowbit_examples::summarize(step_times[m.name + " " + std::to_string(b)]);
            times << m.name << ',' << b << ',' << s.mean << '\n';
            std::printf("  %-16s %d bits  %7.1f ms\n", m.name.c_str(), b, 1000 * s.mean);
        }

    char title[400];
    std::snprintf(title, sizeof title,
                  "Quantization-aware training of the Fashion-MNIST CNN (conv1, fc2 at 8 bits; %zu test images, %d "
                  "seed(s)%s)\\nbars: mean over seeds, error bars +-1 standard deviation; dashed: fp32 checkpoint %.2f%%",
                  test_images, o.seeds, o.quick ? ", --quick run" : "", fp32.mean);
    std::vector<lowbit_examples::reference_line> more_lines;
    if (fp32_scratch.n > 0) more_lines.push_back({"fp32 on the scratch schedule", fp32_scratch.mean});
    lowbit_examples::accuracy_plot(results, o.out, "octav", title, bits_order, series, fp32.mean, more_lines);
    std::printf("Wrote %s, %s/octav_step_times.csv and %s/octav.png. Total time %.1f s\n", results.path().c_str(),
                o.out.c_str(), o.out.c_str(), seconds_since(run_started));
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("octav_qat", [&] { return run_example(argc, argv); });
}
