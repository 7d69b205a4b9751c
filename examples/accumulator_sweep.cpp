// How narrow can a dot product's accumulator be? Dot products of the lengths found in real CNNs
// (a 3x3 convolution over 32, 64, 256 and 512 channels: K = 288, 576, 2304, 4608), on N(0,1) and
// on heavy-tailed (Student t, 3 degrees of freedom) data, with FP8 e4m3 inputs and exact
// products, accumulated in each accumulator format with and without chunks of 16 (the chunk
// sums accumulated again in the same format). For each: the relative error of the results
// against fp64 accumulation of the same inputs, and the swamp rate (additions that lost the
// product entirely). Writes accumulator_sweep.csv and renders accumulator_sweep.png (gnuplot).
//
//   accumulator_sweep [--rounding nearest_even|toward_zero|...] [--outputs 16] [--out DIR]
#include <lowbit/lowbit.hpp>

#include "example_cli.hpp"
#include "gnuplot.hpp"
#include <CLI/CLI.hpp>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

struct accumulator_choice {
    std::string name;
    lowbit::float_format format;
};

// The paper's MxEy accumulators: IEEE-default biases except M7E4, which uses the paper's 10;
// no subnormals (underflow flushes), no special values (overflow saturates).
std::vector<accumulator_choice> accumulators() {
    std::vector<accumulator_choice> list;
    for (const auto& [m, e] : std::vector<std::pair<int, int>>{{10, 5}, {9, 5}, {8, 5}, {7, 5}, {6, 5}, {7, 4}, {5, 4}, {3, 4}}) {
        lowbit::float_format f{.exp_bits = e, .man_bits = m, .subnormals = false,
                               .specials = lowbit::special_values::none};
        if (m == 7 && e == 4) f.bias = 10;
        list.push_back({"M" + std::to_string(m) + "E" + std::to_string(e), f.validate()});
    }
    return list;
}

Eigen::MatrixXf sample(Eigen::Index rows, Eigen::Index cols, bool heavy_tailed, std::mt19937& gen) {
    std::normal_distribution<float> normal;
    std::student_t_distribution<float> student(3.0f);
    Eigen::MatrixXf m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = heavy_tailed ? student(gen) : normal(gen);
    return m;
}

}  // namespace

int run_example(int argc, char** argv) {
    CLI::App app{"Accumulator width sweep: error and swamping of low-precision dot products"};
    std::string rounding_name = "nearest_even";
    int outputs = 16;
    std::string out_dir = "results";
    app.add_option("--rounding", rounding_name, "accumulator rounding: nearest_even, toward_zero, ...")
        ->check(CLI::IsMember({"nearest_even", "nearest_away", "toward_zero", "toward_positive", "toward_negative",
                               "odd", "stochastic"}));
    app.add_option("--outputs", outputs, "dot products per configuration are outputs x outputs")->check(CLI::Range(1, 256));
    examples::add_out_option(app, out_dir, "accumulator_sweep.csv and .png");
    CLI11_PARSE(app, argc, argv);
    examples::prepare_out(out_dir);

    const std::map<std::string, lowbit::rounding> modes{
        {"nearest_even", lowbit::rounding::nearest_even}, {"nearest_away", lowbit::rounding::nearest_away},
        {"toward_zero", lowbit::rounding::toward_zero},   {"toward_positive", lowbit::rounding::toward_positive},
        {"toward_negative", lowbit::rounding::toward_negative}, {"odd", lowbit::rounding::odd},
        {"stochastic", lowbit::rounding::stochastic}};
    const lowbit::rounding mode = modes.at(rounding_name);
    const std::vector<int> lengths{288, 576, 2304, 4608};
    const auto formats = accumulators();
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};

    const std::string csv_path = out_dir + "/accumulator_sweep.csv";
    std::ofstream csv(csv_path);
    // (the run's conditions last in every row: the accumulator's rounding and how many dot products
    // each error and swamp rate is over)
    csv << "data,K,accumulator,chunk,relative_error,swamp_rate,rounding,dot_products\n";
    std::printf("%-12s %5s %-6s %12s %12s %12s %12s\n", "data", "K", "acc", "err", "err chunk16", "swamps",
                "swamps ch16");
    // error[data][accumulator][chunked] over the lengths, for the plot
    std::map<std::string, std::map<std::string, std::array<std::vector<double>, 2>>> series;
    const auto started = std::chrono::steady_clock::now();
    const int total = int(2 * lengths.size() * formats.size());
    int done = 0;
    for (const bool heavy : {false, true}) {
        const char* data_name = heavy ? "student_t3" : "normal";
        for (const int K : lengths) {
            std::mt19937 gen(unsigned(K) + (heavy ? 1000u : 0u));
            // The FP8 inputs, and their products accumulated in double (exactly enough to serve
            // as the reference: the error of double accumulation is ~1e-16 relative).
            Eigen::MatrixXf A = sample(outputs, K, heavy, gen), B = sample(K, outputs, heavy, gen);
            e4m3(std::span<float>(A.data(), std::size_t(A.size())));
            e4m3(std::span<float>(B.data(), std::size_t(B.size())));
            Eigen::MatrixXd reference(outputs, outputs);
            for (int i = 0; i < outputs; ++i)
                for (int j = 0; j < outputs; ++j) {
                    double sum = 0;
                    for (int k = 0; k < K; ++k) sum += double(A(i, k)) * double(B(k, j));
                    reference(i, j) = sum;
                }
            for (const auto& [name, format] : formats) {
                double error[2], swamp_rate[2];
                for (const int chunk : {0, 16}) {
                    const lowbit::float_quantizer acc{.format = format, .mode = mode, .seed = 1};
                    const lowbit::gemm_spec spec{.accumulator = acc, .chunk = chunk, .chunk_accumulator = acc};
                    lowbit::gemm_stats stats;
                    const Eigen::MatrixXf C = lowbit::gemm(A, B, spec, &stats);
                    const int slot = chunk == 0 ? 0 : 1;
                    error[slot] = (C.cast<double>() - reference).norm() / reference.norm();
                    swamp_rate[slot] = double(stats.swamps) / double(stats.macs);
                    csv << data_name << ',' << K << ',' << name << ',' << chunk << ',' << error[slot] << ','
                        << swamp_rate[slot] << ',' << rounding_name << ',' << outputs * outputs << '\n';
                    series[data_name][name][std::size_t(slot)].push_back(error[slot]);
                }
                ++done;
                const double elapsed =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
                std::printf("%-12s %5d %-6s %12.3e %12.3e %11.2f%% %11.2f%%   [%d/%d, %.0f s]\n", data_name, K,
                            name.c_str(), error[0], error[1], 100 * swamp_rate[0], 100 * swamp_rate[1], done, total,
                            elapsed);
                std::fflush(stdout);
            }
        }
    }
    csv.close();

    // The plot: relative error against K, one line per accumulator, solid without chunks and
    // dashed with chunks of 16; one panel per data distribution. Each accumulator has its own point
    // shape as well as its colour, so the legend reads in grey too. gnuplot reads one data block
    // (separated by two blank lines) per line.
    const std::string data_path = out_dir + "/accumulator_sweep.dat";
    const std::string script_path = out_dir + "/accumulator_sweep.gp";
    std::ofstream dat(data_path);
    std::ofstream gp(script_path);
    gp << "set terminal pngcairo size 1400,600 font 'Sans,10' noenhanced\n"
       << "set output '" << out_dir << "/accumulator_sweep.png'\n"
       << "set multiplot layout 1,2 title 'Dot products with FP8 e4m3 inputs: relative error against fp64 ("
       << rounding_name << " accumulator, flush to zero, saturating; dashed: chunks of 16)'\n"
       << "set logscale xy\nset xlabel 'K (dot product length)'\n"
       << "set ylabel 'relative error ||C - C_fp64||_F / ||C_fp64||_F over " << outputs * outputs
       << " dot products'\n"
       << "set xtics (288, 576, 2304, 4608)\nset xrange [200:6500]\nset key outside right\nset grid\n";
    int block = 0;
    for (const char* data_name : {"normal", "student_t3"}) {
        gp << "set title '" << (std::string(data_name) == "normal" ? "N(0,1) data" : "Student t (3 dof) data") << "'\n";
        gp << "plot ";
        for (std::size_t f = 0; f < formats.size(); ++f) {
            const auto& name = formats[f].name;
            for (const int slot : {0, 1}) {
                for (std::size_t k = 0; k < lengths.size(); ++k)
                    dat << lengths[k] << ' ' << series[data_name][name][std::size_t(slot)][k] << '\n';
                dat << "\n\n";
                static constexpr int shapes[] = {4, 6, 8, 10, 12, 14, 1, 2};  // open square, circle, triangles, ...
                gp << "'" << data_path << "' index " << block++ << " using 1:2 with linespoints lc " << f + 1
                   << " dt " << (slot == 0 ? 1 : 2) << " pt " << shapes[f % 8] << " ps 1.1 title '" << name
                   << (slot == 0 ? "" : " chunk16") << "'";
                gp << ((f + 1 == formats.size() && slot == 1) ? "\n" : ", ");
            }
        }
    }
    gp << "unset multiplot\n";
    gp.close();
    dat.close();
    if (!examples::render_plots(script_path, csv_path)) return 1;
    std::printf("\nwrote %s and %s/accumulator_sweep.png\n", csv_path.c_str(), out_dir.c_str());
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("accumulator_sweep", [&] { return run_example(argc, argv); });
}
