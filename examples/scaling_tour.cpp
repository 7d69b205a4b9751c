// How much does the granularity of the scale matter at 4 and 8 bits? Real weights (with
// --weights: a tensor of a lowbit weights file, such as the Fashion-MNIST CNN that
// lba_fashion_mnist trains and caches; otherwise heavy-tailed synthetic weights, a Student t with
// 3 degrees of freedom) and heavy-tailed activations, quantized with one
// scale per tensor, one per channel, one per vector of 16 (VS-Quant, two-level integer scales),
// one per block of 32 (OCP MX: E8M0 scales) and per block of 16 (NVFP4: ue4m3 scales times an
// fp32 scale per tensor). For each: the relative RMS error of the quantized weights and
// activations, and of the GEMM W X computed from them on an fp32 accumulator (block-scaled
// formats through lowbit::block_scaled_gemm; per-tensor and per-channel integers through
// lowbit::gemm on their dequantized values, which is what an integer GEMM followed by its float
// rescale computes, up to the fp32 accumulation), all against the exact product of the
// unquantized data. Writes scaling_tour.csv and renders scaling_tour.png (gnuplot).
//
//   scaling_tour [--weights FILE --tensor fc1.weight] [--rows 256] [--depth 1024] [--batch 64]
//                [--seed 1] [--out DIR]
#include <lowbit/lowbit.hpp>
#include <lowbit/nn/weights_file.hpp>

#include "example_cli.hpp"
#include "gnuplot.hpp"
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

row_major student_t(Eigen::Index rows, Eigen::Index cols, double scale, std::mt19937_64& gen) {
    std::student_t_distribution<double> t3(3.0);
    row_major m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = float(scale * t3(gen));
    return m;
}

double relative_error(const Eigen::MatrixXd& exact, const Eigen::MatrixXd& approx) {
    return (approx - exact).norm() / exact.norm();
}

double relative_error(const row_major& exact, const row_major& approx) {
    return relative_error(Eigen::MatrixXd(exact.cast<double>()), Eigen::MatrixXd(approx.cast<double>()));
}

row_major dequantized(const lowbit::block_scaled_matrix& m) {
    row_major out(Eigen::Index(m.rows), Eigen::Index(m.cols));
    lowbit::dequantize(m, out.data());
    return out;
}

// Integers of `bits` with one scale (amax / max_code) per tensor (axis < 0) or per line: axis 1,
// one per row (the output channels of W); axis 0, one per column (the samples of X).
row_major integer_quantized(const row_major& x, int bits, int axis) {
    const lowbit::int_scaling q{.bits = bits, .narrow_range = true};
    const std::span<const float> data(x.data(), std::size_t(x.size()));
    row_major out(x.rows(), x.cols());
    const std::span<float> result(out.data(), std::size_t(out.size()));
    if (axis < 0) {
        lowbit::quantize_scaled(data, lowbit::scale_for_max(x.cwiseAbs().maxCoeff(), q), q, result);
    } else {
        const auto scales = lowbit::scales_per_channel(data, std::size_t(x.rows()), std::size_t(x.cols()), axis, q);
        lowbit::quantize_per_channel(data, std::size_t(x.rows()), std::size_t(x.cols()), axis, scales, q, result);
    }
    return out;
}

struct result_row {
    std::string scheme;
    int bits;
    double weights, activations, gemm;
};

}  // namespace

int run_example(int argc, char** argv) {
    CLI::App app{"Scale granularity at 4 and 8 bits: quantization and GEMM error of heavy-tailed data"};
    int rows = 256, depth = 1024, batch = 64;
    unsigned seed = 1;
    std::string out_dir = "results";
    app.add_option("--rows", rows, "output channels of W (rows)")->check(CLI::Range(1, 4096));
    app.add_option("--depth", depth, "K, the reduction length")->check(CLI::Range(16, 16384));
    app.add_option("--batch", batch, "columns of X")->check(CLI::Range(1, 4096));
    app.add_option("--seed", seed, "random seed of the data");
    examples::add_out_option(app, out_dir, "scaling_tour.csv and .png");
    std::string weights_file, tensor_name = "fc1.weight";
    CLI::Option* weights_option = app.add_option("--weights", weights_file,
                   "a lowbit weights file (e.g. lba_fashion_mnist's cnn_fp32_*.weights) to take W from")
        ->check(CLI::ExistingFile);
    app.add_option("--tensor", tensor_name, "the tensor of --weights (rows: output channels, columns: K)")
        ->needs(weights_option);
    CLI11_PARSE(app, argc, argv);
    examples::prepare_out(out_dir);

    std::mt19937_64 gen(seed);
    row_major W;  // M x K, K along each row
    std::string w_source = "Student t (3 dof)";
    if (weights_file.empty()) {
        W = student_t(rows, depth, 0.02, gen);
    } else {
        std::vector<lowbit::nn::named_tensor> tensors = lowbit::nn::read_weights(weights_file);
        const auto found = std::find_if(tensors.begin(), tensors.end(), [&](const auto& t) { return t.name == tensor_name; });
        if (found == tensors.end() || found->shape.size() != 2) {
            std::fprintf(stderr, "%s has no two-dimensional tensor named '%s'; it has:", weights_file.c_str(),
                         tensor_name.c_str());
            for (const auto& t : tensors) std::fprintf(stderr, " %s", t.name.c_str());
            std::fprintf(stderr, "\n");
            return 1;
        }
        rows = int(found->shape[0]), depth = int(found->shape[1]);
        W = Eigen::Map<const row_major>(found->values.data(), rows, depth);
        w_source = tensor_name + " of the trained CNN";
    }
    const row_major X = student_t(depth, batch, 1.0, gen);  // K x N, K down each column
    const Eigen::MatrixXd exact = W.cast<double>() * X.cast<double>();
    const auto M = std::size_t(rows), K = std::size_t(depth), N = std::size_t(batch);

    const lowbit::gemm_spec fp32_datapath{.accumulator = lowbit::fp32};
    std::vector<result_row> results;
    const auto integer_row = [&](const char* scheme, int bits, int w_axis, int x_axis) {
        const row_major w = integer_quantized(W, bits, w_axis), x = integer_quantized(X, bits, x_axis);
        const Eigen::MatrixXf C = lowbit::gemm(w, x, fp32_datapath);
        results.push_back({scheme, bits, relative_error(W, w), relative_error(X, x),
                           relative_error(exact, C.cast<double>())});
    };
    const auto block_row = [&](const char* scheme, int bits, const lowbit::block_format& wf,
                               const lowbit::block_format& xf) {
        const auto w = lowbit::quantize_blocks(W.data(), M, K, wf, 1);
        const auto x = lowbit::quantize_blocks(X.data(), K, N, xf, 0);
        const Eigen::MatrixXf C = lowbit::block_scaled_gemm(w, x, fp32_datapath);
        results.push_back({scheme, bits, relative_error(W, dequantized(w)), relative_error(X, dequantized(x)),
                           relative_error(exact, C.cast<double>())});
    };
    // NVFP4's recipe with e4m3 elements stands in for an 8-bit NVFP4 (there is no such preset).
    const lowbit::block_format nv_e4m3{.element = lowbit::fp8_e4m3, .block_size = 16,
                                       .scale = lowbit::block_scale_kind::float_two_level};
    for (const int bits : {4, 8}) {
        integer_row("per-tensor", bits, -1, -1);
        integer_row("per-channel", bits, 1, 0);
        // VS-Quant: gamma per output channel for W, per tensor for X (the paper's choice), 6-bit
        // integer vector scales.
        block_row("per-vector", bits, lowbit::vsquant(bits, 6, 16),
                  lowbit::vsquant(bits, 6, 16, lowbit::coarse_scope::per_tensor));
        block_row("MX", bits, bits == 4 ? lowbit::mxfp4 : lowbit::mxfp8_e4m3, bits == 4 ? lowbit::mxfp4 : lowbit::mxfp8_e4m3);
        block_row("NVFP4", bits, bits == 4 ? lowbit::nvfp4 : nv_e4m3, bits == 4 ? lowbit::nvfp4 : nv_e4m3);
    }

    std::printf("W %d x %d (%s) and X %d x %d (Student t, 3 dof); relative RMS error against the unquantized data\n",
                rows, depth, w_source.c_str(), depth, batch);
    std::printf("(per-vector: VS-Quant N-bit codes, V = 16, 6-bit scales; MX: %s; NVFP4 at 8 bits: e4m3 elements)\n\n",
                "MXFP4 / MXFP8 e4m3, V = 32");
    std::printf("%-12s %5s %12s %12s %12s\n", "scheme", "bits", "weights", "activations", "GEMM");
    const std::string csv_path = out_dir + "/scaling_tour.csv";
    std::ofstream csv(csv_path);
    csv << "scheme,bits,weights_error,activations_error,gemm_error\n";
    for (const auto& r : results) {
        std::printf("%-12s %5d %12.4f %12.4f %12.4f\n", r.scheme.c_str(), r.bits, r.weights, r.activations, r.gemm);
        csv << r.scheme << ',' << r.bits << ',' << r.weights << ',' << r.activations << ',' << r.gemm << '\n';
    }
    csv.close();

    // The plot: one panel for the weights' error and one for the GEMM's, bars of 4 and 8 bits per
    // scheme, on a log scale (8-bit errors are about 16 times smaller).
    const std::string data_path = out_dir + "/scaling_tour.dat", script_path = out_dir + "/scaling_tour.gp";
    std::ofstream dat(data_path);
    const std::size_t schemes = results.size() / 2;
    for (std::size_t s = 0; s < schemes; ++s) {
        const result_row &four = results[s], &eight = results[s + schemes];
        dat << '"' << four.scheme << "\" " << four.weights << ' ' << eight.weights << ' ' << four.gemm << ' '
            << eight.gemm << '\n';
    }
    dat.close();
    std::ofstream gp(script_path);
    gp << "set terminal pngcairo size 1200,500 font 'Sans,10' noenhanced\n"
       << "set output '" << out_dir << "/scaling_tour.png'\n"
       << "set multiplot layout 1,2 title 'W: " << w_source << ", X: Student t (3 dof): relative RMS error by scale granularity'\n"
       << "set style data histogram\nset style histogram cluster gap 1\nset style fill solid 0.8 border -1\n"
       << "set boxwidth 0.9\nset logscale y\nset grid ytics\nset ylabel 'relative RMS error'\nset key top right\n"
       << "set title 'weights W (" << rows << " x " << depth << ")'\n"
       << "plot '" << data_path << "' using 2:xtic(1) title '4 bits', '' using 3 title '8 bits'\n"
       << "set title 'GEMM W X (fp32 accumulator)'\n"
       << "plot '" << data_path << "' using 4:xtic(1) title '4 bits', '' using 5 title '8 bits'\n"
       << "unset multiplot\n";
    gp.close();
    if (!examples::render_plots(script_path, csv_path)) return 1;
    std::printf("\nwrote %s and %s/scaling_tour.png\n", csv_path.c_str(), out_dir.c_str());
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("scaling_tour", [&] { return run_example(argc, argv); });
}
