// VS-Quant post-training quantization at 4-8 bits (Dai et al., MLSys 2021; ../shared/papers.md
// section 5): does one scale per vector of 16 beat one per channel at 4 bits, as the paper reports
// for ResNet-50 (W4A4 75.3% against 70.8%), and what does each scheme cost in bits per element?
//
// For each seed, the flagship's CNN is trained in fp32 (or read from the output folder, where an
// earlier run cached it), batch norm is folded into the convolutions, and the test set runs with
// the weights and activations of every GEMM (both convolutions and both linear layers) quantized:
//   per_tensor   N-bit integers, one scale per tensor (lowbit::per_tensor_int)
//   per_channel  one scale per output channel of W (amax, or OCTAV's clip), activations per tensor
//   vsquant      one M-bit integer scale per vector of V = 16 (M = 4, 6, 8) times a float per
//                output channel (W) or per tensor (activations): lowbit::vsquant, with each
//                vector's amax or OCTAV's clip (lowbit::vector_clip)
//   mxfp4, nvfp4 the OCP MX and NVFP4 4-bit formats (W4A4 only)
// at W4A4, W4A8, W8A4 and W6A6 (integers symmetric and signed, as in the paper). Weights are
// scaled once, activations afresh per batch (the paper's dynamic max). Every GEMM runs on
// lowbit::block_scaled_gemm: exact integer block dots times the product of the vector scales,
// summed in a 48-bit integer register for the integer formats (the paper's integer accumulation;
// it never wraps here: the sums need at most 2N + 2M + log2 K = 44 bits, at W8A8 with 8-bit
// scales) or in fp32 for MX and NVFP4, the coarse scales applied once at the end.
//
// Writes vsquant.csv (experiment,method,bits,variant,seed,test_accuracy), a summary table with
// the bits per element each scheme stores (scales included), and vsquant.png.
//
//   vsquant_ptq [--quick] [--out DIR] [--seeds N] [--bits W4A4,W6A6] [--scale-bits 4,6,8]
//               [--test-images N] [--epochs E] [--threads N] [--retrain] [--data DIR]
#include <lowbit/datapath/block_scaled_gemm.hpp>
#include <lowbit/nn/network.hpp>
#include <lowbit/scaling/block_scaling.hpp>

#include "example_cli.hpp"
#include "fashion_mnist_cnn.hpp"
#include "paper_results.hpp"
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>


namespace {

namespace nn = lowbit::nn;
using lowbit_examples::clock_type;
using lowbit_examples::seconds_since;

struct options {
    bool quick = false, retrain = false;
    std::string out = "results";
    std::string data = lowbit::nn::fashion_mnist_default_dir;
    int seeds = 3;
    std::vector<std::string> bits{"W4A4", "W4A8", "W8A4", "W6A6"};
    std::vector<int> scale_bits{4, 6, 8};
    int vector = 16;
    lowbit_examples::training_schedule training{};
    std::size_t test_limit = 2000;  // 114 evaluations: about 10 minutes on 2 cores
    int threads = 0;
};

// "W4A8" -> {4, 8}; an error that names the spelling otherwise.
std::pair<int, int> weight_and_activation_bits(const std::string& s) {
    int w = 0, a = 0;
    char tail = 0;
    if (std::sscanf(s.c_str(), "W%dA%d%c", &w, &a, &tail) != 2 || w < 2 || w > 8 || a < 2 || a > 8)
        throw std::invalid_argument("--bits " + s + ": write WxAy with x and y in 2..8 (e.g. W4A4)");
    return {w, a};
}

// The results file's bits: "4" where weights and activations agree, else "W4A8".
std::string bits_column(int w, int a) { return w == a ? std::to_string(w) : "W" + std::to_string(w) + "A" + std::to_string(a); }

// One quantization scheme of the table.
struct scheme {
    std::string method, variant;
    lowbit::block_format weights, activations;
    bool float_terms;       // MX, NVFP4: terms are floats, summed in fp32 (else in a 48-bit integer register)
    double weight_bits;     // bits stored per weight element, scales included (for the CNN's fc1: K = 3136)
};

std::vector<scheme> schemes_for(int w, int a, const options& o) {
    const auto clip_name = [](lowbit::vector_clip c) { return c == lowbit::vector_clip::max ? "max" : "octav"; };
    const double K = 3136;  // fc1's depth: per-channel scales cost 32 / K bits per weight
    std::vector<scheme> s;
    s.push_back({"per_tensor", "max", lowbit::per_tensor_int(w), lowbit::per_tensor_int(a), false, double(w)});
    for (const auto clip : {lowbit::vector_clip::max, lowbit::vector_clip::octav})
        s.push_back({"per_channel", clip_name(clip), lowbit::per_channel_int(w, clip), lowbit::per_tensor_int(a), false,
                     w + 32 / K});
    for (const int m : o.scale_bits)
        for (const auto clip : {lowbit::vector_clip::max, lowbit::vector_clip::octav})
            s.push_back({"vsquant", "v" + std::to_string(o.vector) + "_s" + std::to_string(m) + "_" + clip_name(clip),
                         lowbit::vsquant(w, m, o.vector, lowbit::coarse_scope::per_line, clip),
                         lowbit::vsquant(a, m, o.vector, lowbit::coarse_scope::per_tensor, clip), false,
                         w + double(m) / o.vector + 32 / K});
    if (w == 4 && a == 4) {
        s.push_back({"mxfp4", "v32_e8m0", lowbit::mxfp4, lowbit::mxfp4, true, 4 + 8.0 / 32});
        s.push_back({"nvfp4", "v16_ue4m3", lowbit::nvfp4, lowbit::nvfp4, true, 4 + 8.0 / 16 + 32 / (K * 128)});
    }
    return s;
}

}  // namespace

int run_example(int argc, char** argv) {
    options o;
    CLI::App app{"VS-Quant post-training quantization of the Fashion-MNIST CNN: per-vector against per-channel and "
                 "per-tensor scales, MXFP4 and NVFP4"};
    app.add_flag("--quick", o.quick, "a short run (for CI): 2000 training images, 300 test images, one seed, W4A4");
    examples::add_out_option(app, o.out, "vsquant.csv, vsquant.png and the fp32 networks");
    examples::add_data_option(app, o.data);
    app.add_option("--seeds", o.seeds, "fp32 networks (seeds 1..N), each quantized every way")->check(CLI::Range(1, 100));
    app.add_option("--bits", o.bits, "weight and activation bits, WxAy")->delimiter(',');
    app.add_option("--scale-bits", o.scale_bits, "VS-Quant's integer vector scale bits M")
        ->delimiter(',')
        ->check(CLI::Range(1, 16));
    app.add_option("--vector", o.vector, "VS-Quant's vector length V")->check(CLI::Range(1, 4096));
    app.add_option("--epochs", o.training.epochs, "fp32 training epochs")->check(CLI::Range(1, 100));
    app.add_option("--train-images", o.training.train_limit, "training images used (0: all 60000)");
    app.add_option("--test-images", o.test_limit, "test images evaluated (0: all 10000; default 2000)");
    app.add_option("--threads", o.threads, "threads (0: all cores)")->check(CLI::Range(0, 1024));
    app.add_flag("--retrain", o.retrain, "train the fp32 networks even where the output folder has them");
    CLI11_PARSE(app, argc, argv);
    if (o.quick) {
        if (app.count("--train-images") == 0) o.training.train_limit = 2000;
        if (app.count("--test-images") == 0) o.test_limit = 300;
        if (app.count("--seeds") == 0) o.seeds = 1;
        if (app.count("--bits") == 0) o.bits = {"W4A4"};
        if (app.count("--scale-bits") == 0) o.scale_bits = {4};
        if (app.count("--epochs") == 0) o.training.epochs = 1;
    }
    for (const auto& b : o.bits) (void)weight_and_activation_bits(b);  // a bad spelling before any work
    const auto run_started = clock_type::now();
    const nn::fashion_mnist_data data = lowbit_examples::start_run(o.threads, o.out, o.data);
    const std::size_t test_images = o.test_limit ? std::min(o.test_limit, data.test.size()) : data.test.size();

    lowbit_examples::results_file results(o.out + "/vsquant.csv");
    std::vector<std::string> bits_order;
    std::vector<lowbit_examples::plot_series> series;
    std::vector<std::pair<std::string, double>> storage;  // (method variant, bits per weight) for the table
    const auto add_series = [&](const scheme& s) {
        for (const auto& x : series)
            if (x.method == s.method && x.variant == s.variant) return;
        series.push_back({s.method, s.variant, s.method + " " + s.variant});
    };
    const lowbit::gemm_spec integer_register{.accumulator = lowbit::int_quantizer{.format = {.bits = 48}},
                                             .threads = o.threads};
    const lowbit::gemm_spec fp32_sum{.accumulator = lowbit::fp32, .threads = o.threads};
    for (int seed = 1; seed <= o.seeds; ++seed) {
        std::printf("\nSeed %d of %d\n", seed, o.seeds);
        const nn::network trained = lowbit_examples::fp32_cnn(data, o.training, std::uint64_t(seed), o.out, o.retrain);
        nn::network folded = nn::fold_batch_norm(trained);
        const double fp32 = lowbit_examples::evaluate(folded, data.test, o.test_limit, "fp32");
        results.add({"ptq", "fp32", "32", "-", std::uint64_t(seed), fp32});
        for (const auto& spelling : o.bits) {
            const auto [w, a] = weight_and_activation_bits(spelling);
            const std::string bits = bits_column(w, a);
            if (seed == 1) bits_order.push_back(bits);
            for (const scheme& s : schemes_for(w, a, o)) {
                if (seed == 1) {
                    add_series(s);
                    if (w == a) storage.emplace_back(s.method + " " + s.variant + " W" + bits, s.weight_bits);
                }
                folded.set_datapath({.spec = s.float_terms ? fp32_sum : integer_register,
                                     .blocks = nn::block_scaled_inputs{.weights = s.weights,
                                                                       .activations = s.activations}});
                const double accuracy =
                    lowbit_examples::evaluate(folded, data.test, o.test_limit, bits + " " + s.method + " " + s.variant);
                results.add({"ptq", s.method, bits, s.variant, std::uint64_t(seed), accuracy});
            }
        }
    }

    // The table: mean +- std over seeds per scheme and bits.
    const lowbit_examples::summary fp32 = lowbit_examples::summarize(results.accuracies("fp32", "32", "-"));
    std::printf("\nTest accuracy (%%) on %zu test images, mean +- standard deviation over %d seed(s) (fp32 %.2f +- "
                "%.2f; the binomial standard error of one accuracy near 88%% is %.2f points)\n",
                test_images, o.seeds, fp32.mean, fp32.std, lowbit_examples::standard_error(88, test_images));
    std::printf("%-28s", "scheme");
    for (const auto& b : bits_order) std::printf(" %16s", b.c_str());
    std::printf("\n");
    for (const auto& s : series) {
        std::printf("%-28s", s.title.c_str());
        for (const auto& b : bits_order) {
            const std::vector<double> v = results.accuracies(s.method, b, s.variant);
            if (v.empty()) {
                std::printf(" %16s", "");
                continue;
            }
            const lowbit_examples::summary m = lowbit_examples::summarize(v);
            std::printf(" %7.2f +- %5.2f", m.mean, m.std);
        }
        std::printf("\n");
    }
    std::printf("\nBits stored per weight, scales included (fc1, K = 3136; activations alike but per tensor):\n");
    for (const auto& [name, b] : storage) std::printf("  %-34s %.3f\n", name.c_str(), b);

    char title[400];
    std::snprintf(title, sizeof title,
                  "Post-training quantization of the Fashion-MNIST CNN (all four GEMMs; %zu test images, %d seed(s)%s)\\n"
                  "bars: mean over seeds, error bars +-1 standard deviation; dashed: fp32 %.2f%%",
                  test_images, o.seeds, o.quick ? ", --quick run" : "", fp32.mean);
    lowbit_examples::accuracy_plot(results, o.out, "vsquant", title, bits_order, series, fp32.mean);
    std::printf("Wrote %s and %s/vsquant.png. Total time %.1f s\n", results.path().c_str(), o.out.c_str(),
                seconds_since(run_started));
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("vsquant_ptq", [&] { return run_example(argc, argv); });
}
