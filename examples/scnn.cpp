// SCNN's cycle model on one convolution layer of given weight and activation densities (uniform
// random zeros, seeded): the PT-IS-CP-sparse dataflow of Parashar et al. (ISCA 2017; papers.md
// section 6) beside a dense accelerator of the same 1,024 multipliers and the oracle. Prints a CSV
// header and one row:
//
//   scnn --layer K,C,H,W,R,S,stride,pad[,groups] --weight-density D --activation-density D --seed N
//
// --alexnet instead models AlexNet's five convolutions at the paper's densities, prints one row
// each with the paper's speed-up and utilization beside, and writes <out>/scnn_alexnet.csv.
// The machine's parameters (--kc, --bank-queue, ...) default to the paper's (and the model's
// assumptions: include/lowbit/analysis/scnn_model.hpp).
#include <lowbit/analysis/scnn_model.hpp>
#include <lowbit/sparse/conv_shape.hpp>

#include "example_cli.hpp"
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

const char* const header =
    "layer,dense_cycles,scnn_cycles,oracle_cycles,multiplies,dense_multiplies,multiplier_utilization,barrier_idle,"
    "speedup,oracle_speedup";

std::string row(const std::string& name, const lowbit::scnn_result& r) {
    std::ostringstream s;
    s.precision(6);
    s << name << ',' << r.dense_cycles << ',' << r.scnn_cycles << ',' << r.oracle_cycles << ',' << r.multiplies << ','
      << r.dense_multiplies << ',' << r.multiplier_utilization() << ',' << r.barrier_idle() << ',' << r.speedup() << ','
      << r.oracle_speedup();
    return s.str();
}

struct alexnet_layer {
    const char* name;
    lowbit::sparse::conv_shape shape;
    double activation_density, weight_density;
    double paper_speedup, paper_utilization;  // read off the paper's Figures 9 and 10
};

// AlexNet's convolutions (Krizhevsky et al. 2012, with its two groups) and the paper's densities.
const std::vector<alexnet_layer>& alexnet() {
    static const std::vector<alexnet_layer> layers{
        {"conv1", {96, 3, 227, 227, 11, 11, 4, 0, 1}, 1.00, 0.84, 1.4, 0.97},
        {"conv2", {256, 96, 27, 27, 5, 5, 1, 2, 2}, 0.93, 0.38, 2.4, 0.95},
        {"conv3", {384, 256, 13, 13, 3, 3, 1, 1, 1}, 0.53, 0.35, 2.9, 0.62},
        {"conv4", {384, 384, 13, 13, 3, 3, 1, 1, 2}, 0.39, 0.37, 2.9, 0.53},
        {"conv5", {256, 384, 13, 13, 3, 3, 1, 1, 2}, 0.43, 0.37, 2.9, 0.53}};
    return layers;
}

}  // namespace

int run_example(int argc, char** argv) {
    CLI::App app{"SCNN cycle model of one convolution layer (PT-IS-CP-sparse vs dense vs oracle)"};
    std::string layer_text, name = "layer", out = "results";
    double weight_density = 1.0, activation_density = 1.0;
    std::uint64_t seed = 1;
    bool run_alexnet = false;
    lowbit::scnn_config config;
    auto* layer_option = app.add_option("--layer", layer_text, "K,C,H,W,R,S,stride,pad[,groups]");
    app.add_option("--weight-density", weight_density, "fraction of non-zero weights")->check(examples::finite)->check(CLI::Range(0.0, 1.0));
    app.add_option("--activation-density", activation_density, "fraction of non-zero activations")
        ->check(examples::finite)->check(CLI::Range(0.0, 1.0));
    app.add_option("--seed", seed, "seed of the random zeros");
    app.add_option("--name", name, "the layer column's text");
    CLI::Option* alexnet_option =
        app.add_flag("--alexnet", run_alexnet, "model AlexNet's five convolutions at the paper's densities")
            ->excludes(layer_option);
    examples::add_out_option(app, out, "scnn_alexnet.csv (with --alexnet)")->needs(alexnet_option);
    app.add_option("--pe-rows", config.pe_rows, "PE grid rows")->check(CLI::Range(1, 1024));
    app.add_option("--pe-cols", config.pe_cols, "PE grid columns")->check(CLI::Range(1, 1024));
    app.add_option("--F", config.F, "weights per vector")->check(CLI::Range(1, 1024));
    app.add_option("--I", config.I, "activations per vector")->check(CLI::Range(1, 1024));
    app.add_option("--banks", config.banks, "accumulator banks per PE")->check(CLI::Range(1, 1 << 16));
    app.add_option("--kc", config.kc, "output channels per group")->check(CLI::Range(1, 1 << 16));
    app.add_option("--bank-queue", config.bank_queue, "products that may wait in front of each bank")
        ->check(CLI::Range(0, 1 << 20));
    CLI11_PARSE(app, argc, argv);
    if (name.find_first_of(",\"\n") != std::string::npos) {
        std::fprintf(stderr, "scnn: --name '%s' must not contain a comma, quote or newline (it is a CSV field)\n",
                     name.c_str());
        return 2;
    }
    try {
        if (run_alexnet) {
            examples::prepare_out(out);
            const std::string path = out + "/scnn_alexnet.csv";
            std::ofstream csv(path);
            const char* extra = ",active_utilization,fragmentation,bank_stall,paper_speedup,paper_multiplier_utilization";
            csv << header << extra << '\n';
            std::printf("%s%s\n", header, extra);
            const auto started = std::chrono::steady_clock::now();
            for (const auto& l : alexnet()) {
                const lowbit::scnn_result r =
                    lowbit::scnn_model_synthetic(l.shape, l.weight_density, l.activation_density, seed, config);
                std::ostringstream line;
                // bank_stall: the fraction of PE-cycles in which a PE waited for its accumulator banks
                line << row(l.name, r) << ',' << r.active_utilization() << ',' << r.fragmentation() << ','
                     << double(r.bank_stall_cycles) / (double(r.scnn_cycles) * r.pes) << ',' << l.paper_speedup << ','
                     << l.paper_utilization;
                std::printf("%s\n", line.str().c_str());
                std::fflush(stdout);
                csv << line.str() << '\n';
            }
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            std::fprintf(stderr, "5 layers in %.2f s (%.2f layers per second); wrote %s\n", seconds, 5 / seconds,
                         path.c_str());
            return 0;
        }
        if (layer_text.empty()) {
            std::fprintf(stderr, "scnn: --layer K,C,H,W,R,S,stride,pad[,groups] is required (or --alexnet)\n");
            return 2;
        }
        const lowbit::sparse::conv_shape shape = lowbit::sparse::parse_conv_shape(layer_text);
        const lowbit::scnn_result r =
            lowbit::scnn_model_synthetic(shape, weight_density, activation_density, seed, config);
        std::printf("%s\n%s\n", header, row(name, r).c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "scnn: %s\n", e.what());
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("scnn", [&] { return run_example(argc, argv); });
}
