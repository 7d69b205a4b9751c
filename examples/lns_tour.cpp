// A tour of the logarithmic number system (LNS) in lowbit: how well 8-bit LNS represents data,
// and what its datapath does to a GEMM.
//
// 1. Quantization: the relative RMS error ||Q(x) - x|| / ||x|| of lns8 (gamma = 8), FP8 e4m3 and
//    INT8, each with a per-tensor scale from max|x| (lns8: a power of 2^(1/8); e4m3: a power of
//    two that puts max|x| at or below 448; int8: max|x| / 127, symmetric, nearest), on N(0,1),
//    Laplace(0, 1) and log-normal data (exp(N(0,1)) magnitudes with random signs).
// 2. GEMM: C = A B with lns8 inputs (M = N = 64, K = --depth), against fp64 on the original
//    (unquantized) data: the LNS values multiplied exactly (the input quantization alone), then
//    the datapath: exact table or Mitchell conversion, per-product accumulation (fp32, or bf16
//    in chunks of 16) or bucketed accumulation (8 exact buckets, or P-bit integer buckets that
//    wrap: wide enough never to overflow, and 28 bits, which do).
// Writes lns_tour_quantization.csv, lns_tour_gemm.csv and renders lns_tour.png (gnuplot).
//
//   lns_tour [--samples 65536] [--depth 256] [--out DIR]
#include <lowbit/lowbit.hpp>

#include "example_cli.hpp"
#include "gnuplot.hpp"
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

enum class distribution { normal, laplace, log_normal };
const char* name_of(distribution d) {
    return d == distribution::normal ? "normal" : d == distribution::laplace ? "laplace" : "log_normal";
}

Eigen::MatrixXf sample(Eigen::Index rows, Eigen::Index cols, distribution d, std::mt19937& gen) {
    std::normal_distribution<float> normal;
    std::exponential_distribution<float> exponential(1.0f);
    std::bernoulli_distribution coin;
    Eigen::MatrixXf m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) {
        const float sign = coin(gen) ? -1.0f : 1.0f;
        switch (d) {
            case distribution::normal: m.data()[i] = normal(gen); break;
            case distribution::laplace: m.data()[i] = sign * exponential(gen); break;
            case distribution::log_normal: m.data()[i] = sign * std::exp(normal(gen)); break;
        }
    }
    return m;
}

// The three 8-bit formats, each scaled per tensor from max|x|.
Eigen::MatrixXd quantize_lns8(const Eigen::MatrixXf& x) {
    return lowbit::lns_encode(x, lowbit::lns_quantizer{.format = lowbit::lns8}, lowbit::lns_input_scale::per_tensor_max)
        .values();
}

Eigen::MatrixXd quantize_e4m3(const Eigen::MatrixXf& x) {
    const double amax = x.cwiseAbs().maxCoeff();
    const int j = int(std::floor(std::log2(lowbit::fp8_e4m3.max_finite() / amax)));  // amax 2^j <= 448
    Eigen::MatrixXd q(x.rows(), x.cols());
    for (Eigen::Index i = 0; i < x.size(); ++i)
        q.data()[i] = std::ldexp(lowbit::quantize(std::ldexp(double(x.data()[i]), j), lowbit::fp8_e4m3), -j);
    return q;
}

Eigen::MatrixXd quantize_int8(const Eigen::MatrixXf& x) {
    const double scale = x.cwiseAbs().maxCoeff() / 127.0;
    const lowbit::int_quantizer q8{.format = {.bits = 8}, .on_overflow = lowbit::int_overflow::saturate};
    Eigen::MatrixXd q(x.rows(), x.cols());
    for (Eigen::Index i = 0; i < x.size(); ++i) q.data()[i] = q8(double(x.data()[i]) / scale) * scale;
    return q;
}

double relative_error(const Eigen::MatrixXd& approx, const Eigen::MatrixXd& exact) {
    return (approx - exact).norm() / exact.norm();
}

struct datapath_choice {
    std::string name;
    lowbit::lns_gemm_spec spec;
};

std::vector<datapath_choice> datapaths(int depth) {
    using lowbit::lns_accumulation;
    using lowbit::lns_conversion;
    std::vector<datapath_choice> list;
    // lns8 products span 32 binades, and K of them add log2(K) bits: P = 32 + log2(K) + 2 never
    // overflows. 28 bits hold only the products 2^28 times the smallest one: the largest
    // products of per-tensor scaled data (up to 2^31 units) wrap.
    const int safe_bits = 34 + int(std::ceil(std::log2(double(depth))));
    for (const lns_conversion method : {lns_conversion::table, lns_conversion::mitchell}) {
        const std::string conversion = method == lns_conversion::table ? "table" : "mitchell";
        const lowbit::lns_converter converter{.method = method};
        list.push_back({conversion + " per_product fp32", {.conversion = converter, .datapath = {.accumulator = lowbit::fp32}}});
        list.push_back({conversion + " per_product bf16 chunk16",
                        {.conversion = converter,
                         .datapath = {.accumulator = lowbit::bf16, .chunk = 16, .chunk_accumulator = lowbit::fp32}}});
        list.push_back({conversion + " bucketed exact", {.conversion = converter, .accumulation = lns_accumulation::bucketed}});
        for (const int P : {safe_bits, 28})
            list.push_back({conversion + " bucketed int" + std::to_string(P) + " wrap",
                            {.conversion = converter,
                             .accumulation = lns_accumulation::bucketed,
                             .datapath = {.accumulator = lowbit::int_quantizer{.format = {.bits = P},
                                                                               .on_overflow = lowbit::int_overflow::wrap}}}});
    }
    return list;
}

}  // namespace

int run_example(int argc, char** argv) {
    CLI::App app{"LNS tour: 8-bit LNS against FP8 and INT8, and the LNS GEMM datapath"};
    int samples = 1 << 16;
    int depth = 256;
    std::string out_dir = "results";
    app.add_option("--samples", samples, "values per distribution for the quantization error")->check(CLI::Range(16, 1 << 24));
    app.add_option("--depth", depth, "K of the 64 x K by K x 64 GEMMs")->check(CLI::Range(1, 1 << 16));
    examples::add_out_option(app, out_dir, "the CSV files and lns_tour.png");
    CLI11_PARSE(app, argc, argv);
    examples::prepare_out(out_dir);

    const std::vector<distribution> distributions{distribution::normal, distribution::laplace, distribution::log_normal};
    const std::string quant_csv = out_dir + "/lns_tour_quantization.csv", gemm_csv = out_dir + "/lns_tour_gemm.csv";
    std::ofstream qcsv(quant_csv), gcsv(gemm_csv);
    qcsv << "data,format,relative_rms_error\n";
    gcsv << "data,datapath,relative_error\n";
    std::ofstream qdat(out_dir + "/lns_tour_quantization.dat"), gdat(out_dir + "/lns_tour_gemm.dat");

    std::printf("1. Quantization error (relative RMS, per-tensor scale)\n%-12s %10s %10s %10s\n", "data", "lns8", "e4m3",
                "int8");
    for (const distribution d : distributions) {
        std::mt19937 gen(1 + unsigned(d));
        const Eigen::MatrixXf x = sample(samples, 1, d, gen);
        const Eigen::MatrixXd exact = x.cast<double>();
        const double e[3] = {relative_error(quantize_lns8(x), exact), relative_error(quantize_e4m3(x), exact),
                             relative_error(quantize_int8(x), exact)};
        const char* formats[3] = {"lns8", "e4m3", "int8"};
        for (int f = 0; f < 3; ++f) qcsv << name_of(d) << ',' << formats[f] << ',' << e[f] << '\n';
        qdat << name_of(d) << ' ' << e[0] << ' ' << e[1] << ' ' << e[2] << '\n';
        std::printf("%-12s %10.4f %10.4f %10.4f\n", name_of(d), e[0], e[1], e[2]);
    }

    std::printf("\n2. GEMM 64 x %d x 64 with lns8 inputs: relative error against fp64 of the original data\n", depth);
    const auto choices = datapaths(depth);
    std::printf("%-34s", "datapath");
    for (const distribution d : distributions) std::printf(" %12s", name_of(d));
    std::printf("\n");
    std::vector<std::vector<double>> errors(choices.size() + 1);
    gdat << "datapath";
    for (const distribution d : distributions) gdat << ' ' << name_of(d);
    gdat << '\n';
    for (const distribution d : distributions) {
        std::mt19937 gen(100 + unsigned(d));
        const Eigen::MatrixXf A = sample(64, depth, d, gen), B = sample(depth, 64, d, gen);
        const Eigen::MatrixXd exact = A.cast<double>() * B.cast<double>();
        const lowbit::lns_quantizer q{.format = lowbit::lns8};
        const lowbit::lns_matrix a = lowbit::lns_encode(A, q, lowbit::lns_input_scale::per_tensor_max);
        const lowbit::lns_matrix b = lowbit::lns_encode(B, q, lowbit::lns_input_scale::per_tensor_max);
        // The input quantization alone: the LNS values multiplied and added in fp64.
        errors[0].push_back(relative_error(a.values() * b.values(), exact));
        for (std::size_t c = 0; c < choices.size(); ++c)
            errors[c + 1].push_back(relative_error(lowbit::lns_gemm(a, b, choices[c].spec).cast<double>(), exact));
    }
    for (std::size_t c = 0; c <= choices.size(); ++c) {
        const std::string name = c == 0 ? "inputs only (exact arithmetic)" : choices[c - 1].name;
        std::printf("%-34s", name.c_str());
        std::string label = name;
        for (char& ch : label)
            if (ch == ' ') ch = '_';
        gdat << label;
        for (std::size_t d = 0; d < distributions.size(); ++d) {
            std::printf(" %12.4e", errors[c][d]);
            gcsv << name_of(distributions[d]) << ',' << name << ',' << errors[c][d] << '\n';
            gdat << ' ' << errors[c][d];
        }
        std::printf("\n");
        gdat << '\n';
    }
    qcsv.close();
    gcsv.close();
    qdat.close();
    gdat.close();

    const std::string script = out_dir + "/lns_tour.gp";
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 1400,600 font 'Sans,10' noenhanced\n"
       << "set output '" << out_dir << "/lns_tour.png'\n"
       << "set multiplot layout 1,2 title 'lns8 (gamma = 8) against FP8 e4m3 and INT8, and the LNS GEMM datapath'\n"
       << "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
       << "set logscale y\nset grid ytics\nset key top left\n"
       << "set title 'Quantization error (relative RMS, per-tensor scale)'\nset ylabel 'relative RMS error'\n"
       << "set yrange [0.005:0.2]\n"
       << "plot '" << out_dir << "/lns_tour_quantization.dat' using 2:xtic(1) title 'lns8', '' using 3 title 'e4m3', "
       << "'' using 4 title 'int8'\n"
       << "set title 'GEMM 64 x " << depth << " x 64 with lns8 inputs: error against fp64'\n"
       << "set ylabel 'relative error (Frobenius)'\nset autoscale y\nset xtics rotate by 35 right\nset bmargin 12\n"
       << "plot '" << out_dir << "/lns_tour_gemm.dat' using 2:xtic(1) title columnheader(2), '' using 3 title "
       << "columnheader(3), '' using 4 title columnheader(4)\n"
       << "unset multiplot\n";
    gp.close();
    if (!examples::render_plots(script, quant_csv + " and " + gemm_csv)) return 1;
    std::printf("\nwrote %s, %s and %s/lns_tour.png\n", quant_csv.c_str(), gemm_csv.c_str(), out_dir.c_str());
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("lns_tour", [&] { return run_example(argc, argv); });
}
