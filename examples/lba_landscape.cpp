// Loss landscapes of low bit-width accumulators, in the spirit of Figure 2 of Blumenfeld, Hubara
// and Soudry (../shared/papers.md section 1): around the flagship CNN fine-tuned on M7E4, how
// does the training loss vary along two random directions, and how much of its roughness comes
// from underflow, how much from the short mantissa (swamping)? Experiment 2 of issue 16.
//
// Starts from the weights lba_fashion_mnist writes after fine-tuning on M7E4 (batch norm folded
// into the convolutions). Two Gaussian directions, filter-normalized as Li et al. (NeurIPS 2018)
// do: each filter of a direction (a row of a weight matrix: one output channel or neuron) is
// scaled to the norm of the same filter of the weights; biases are not perturbed (they hold the
// folded batch norm's shift, which the issue asks to leave alone). The same directions for every
// panel. The loss is the mean cross-entropy over a fixed subset of the training images (the
// first 2000), in batches of 50 (the per-tensor exponent bias of the activations is chosen per
// batch, as in training), on a grid over [-1, 1]^2. Panels:
//   (a) m7e4:              FP8 M4E3 inputs, M7E4 products and accumulator, chunk 16 (the flagship's);
//   (b) m7e4_no_underflow: the same with the exponent range unbounded below (no product or sum
//                          underflows; the flagship's stage-1 datapath);
//   (c) m7e4_more_mantissa: M7E4 with more mantissa bits: the same range, far less swamping. The
//                          paper adds 16; 14 by default here (M21E4, 22 significant bits: the
//                          widest that lowbit's vectorized path carries exactly; --extra-bits 16
//                          runs on the exact path, about 100 times slower);
//   (d) fp32:              the network in plain fp32, for reference.
// Writes landscape.csv (panel,alpha,beta,loss), landscape_roughness.csv and landscape.png.
//
//   lba_landscape [--quick] [--weights FILE] [--out DIR] [--grid N] [--images N] [--threads N] ...
#include <lowbit/lowbit.hpp>

#include "accumulator_formats.hpp"
#include "example_cli.hpp"
#include "fashion_mnist_cnn.hpp"
#include "gnuplot.hpp"
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
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
    std::string weights;  // default: <out>/cnn_m7e4_finetuned.weights
    int grid = 41;
    double radius = 1;
    std::size_t images = 2000;
    std::size_t batch = 50;  // (a few MB of im2col columns: 500 images at once run 1.7 times slower)
    std::uint64_t seed = 1;   // the directions
    std::uint64_t network_seed = 1;  // the flagship's --seed (only the layer shapes matter: the weights are loaded)
    std::vector<std::string> panels{"m7e4", "m7e4_no_underflow", "m7e4_more_mantissa", "fp32"};
    int extra_bits = 14;  // panel (c): the widest M7E4 extension the vectorized path carries
    int threads = 0;
};

// The panel's datapath: the flagship's M7E4 settings (accumulator_formats.hpp), one thread per
// GEMM (the grid points run in parallel instead).
nn::gemm_datapath panel_datapath(const std::string& panel, int extra_bits) {
    lowbit_examples::datapath_settings settings;
    settings.threads = 1;
    const lowbit_examples::datapath_row m7e4 = lowbit_examples::row_for("m7e4", settings);
    if (panel == "m7e4") return lowbit_examples::datapath_for(m7e4.product, m7e4.accumulator, settings);
    if (panel == "m7e4_no_underflow")
        return lowbit_examples::datapath_for(lowbit_examples::without_underflow(m7e4.product),
                                             lowbit_examples::without_underflow(m7e4.accumulator), settings);
    if (panel == "m7e4_more_mantissa") {
        const auto wider = [&](lowbit::float_format f) {
            f.man_bits += extra_bits;
            return f.validate();
        };
        return lowbit_examples::datapath_for(wider(m7e4.product), wider(m7e4.accumulator), settings);
    }
    return {.spec = std::nullopt, .weights = {}, .activations = {}, .stats = nullptr};  // fp32
}

std::string panel_title(const std::string& panel, int extra_bits) {
    if (panel == "m7e4") return "(a) M7E4 (as fine-tuned)";
    if (panel == "m7e4_no_underflow") return "(b) M7E4, no underflow";
    if (panel == "m7e4_more_mantissa") return "(c) M7E4 + " + std::to_string(extra_bits) + " mantissa bits";
    return "(d) fp32";
}

// A direction: for every weight matrix, a Gaussian matrix whose rows (filters) have the norms of
// the weights' rows; nothing for biases (1-row parameters named *.bias).
std::vector<nn::matrix> filter_normalized_direction(nn::network& net, std::mt19937_64& rng) {
    std::vector<nn::matrix> direction;
    std::normal_distribution<double> gauss;
    for (const auto& [name, p] : net.named_parameters()) {
        nn::matrix d = nn::matrix::Zero(p->value.rows(), p->value.cols());
        if (name.ends_with(".weight")) {
            for (Eigen::Index r = 0; r < d.rows(); ++r) {
                for (Eigen::Index c = 0; c < d.cols(); ++c) d(r, c) = float(gauss(rng));
                const double norm = d.row(r).norm();
                if (norm > 0) d.row(r) *= float(p->value.row(r).norm() / norm);
            }
        }
        direction.push_back(std::move(d));
    }
    return direction;
}

// How rough a grid of losses is: the mean absolute discrete Laplacian over the interior points
// (in loss units; the grid's own spacing), and the loss range within a radius of the centre.
struct roughness {
    double laplacian = 0, range_near = 0, centre = 0, minimum = 0;
};

roughness roughness_of(const std::vector<double>& loss, int n, const std::vector<double>& axis, double radius) {
    roughness r;
    const auto at = [&](int i, int j) { return loss[std::size_t(i * n + j)]; };
    int count = 0;
    for (int i = 1; i + 1 < n; ++i)
        for (int j = 1; j + 1 < n; ++j, ++count)
            r.laplacian += std::abs(at(i + 1, j) + at(i - 1, j) + at(i, j + 1) + at(i, j - 1) - 4 * at(i, j));
    r.laplacian /= std::max(1, count);
    double low = INFINITY, high = -INFINITY;
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j)
            if (std::hypot(axis[std::size_t(i)], axis[std::size_t(j)]) <= radius + 1e-12)
                low = std::min(low, at(i, j)), high = std::max(high, at(i, j));
    r.range_near = high - low;
    r.centre = at(n / 2, n / 2);
    r.minimum = *std::min_element(loss.begin(), loss.end());
    return r;
}

}  // namespace

int run_example(int argc, char** argv) {
    options o;
    CLI::App app{"Loss landscapes of the M7E4-fine-tuned flagship CNN: M7E4, without underflow, with 16 more "
                 "mantissa bits, and fp32, along the same two filter-normalized random directions"};
    app.add_flag("--quick", o.quick, "a 21 x 21 grid (for CI: with --grid and --images smaller still)");
    examples::add_out_option(app, o.out, "landscape.csv, landscape_roughness.csv and landscape.png");
    examples::add_data_option(app, o.data);
    app.add_option("--weights", o.weights,
                   "the M7E4-fine-tuned weights that lba_fashion_mnist writes (default: <out>/cnn_m7e4_finetuned.weights)");
    app.add_option("--grid", o.grid, "grid points per axis (odd: the centre is on the grid)")->check(CLI::Range(3, 401));
    app.add_option("--radius", o.radius, "the grid spans [-radius, radius]^2 (in units of the filter-normalized directions)")
        ->check(examples::finite_positive);
    app.add_option("--images", o.images, "training images the loss is averaged over (the first ones)")
        ->check(CLI::Range(1, 60000));
    app.add_option("--batch", o.batch, "images per forward pass (the activations' exponent bias is chosen per batch)")
        ->check(CLI::Range(1, 60000));
    app.add_option("--seed", o.seed, "seed of the two random directions");
    app.add_option("--extra-bits", o.extra_bits,
                   "mantissa bits added to M7E4 in panel (c) (up to 14 the vectorized path runs it; 15 and 16, "
                   "wider than fp32 can carry, run on the exact path, about 100 times slower)")
        ->check(CLI::Range(1, 16));
    app.add_option("--network-seed", o.network_seed, "the flagship run's --seed (names nothing in the weights file)");
    app.add_option("--panels", o.panels, "panels: m7e4, m7e4_no_underflow, m7e4_more_mantissa, fp32")
        ->delimiter(',')
        ->check(CLI::IsMember({"m7e4", "m7e4_no_underflow", "m7e4_more_mantissa", "fp32"}));
    app.add_option("--threads", o.threads, "threads, each evaluating its own grid points (0: all cores)")
        ->check(CLI::Range(0, 1024));
    CLI11_PARSE(app, argc, argv);
    if (o.quick && app.count("--grid") == 0) o.grid = 21;
    if (o.grid % 2 == 0) throw std::invalid_argument("--grid " + std::to_string(o.grid) + ": give an odd number, so that the centre is on the grid");
    if (o.weights.empty()) o.weights = o.out + "/cnn_m7e4_finetuned.weights";
    examples::prepare_out(o.out);
    if (!std::filesystem::exists(o.weights))
        throw std::invalid_argument("--weights '" + o.weights + "': no such file; run lba_fashion_mnist first (with the same "
                                    "--out: it writes cnn_m7e4_finetuned.weights) or name the file");
#if defined(_OPENMP)
    const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
#else
    const int threads = 1;
#endif
    const auto run_started = clock_type::now();

    // One network per thread, all with the fine-tuned weights (a malformed file is reported here).
    const auto make = [&] {
        nn::network net = nn::fold_batch_norm(lowbit_examples::make_cnn(o.network_seed));
        net.load(o.weights);
        return net;
    };
    std::vector<nn::network> nets;
    for (int t = 0; t < threads; ++t) nets.push_back(make());
    std::vector<nn::matrix> centre;
    for (const auto& [name, p] : nets.front().named_parameters()) centre.push_back(p->value);
    std::mt19937_64 rng(o.seed);
    const std::vector<nn::matrix> d1 = filter_normalized_direction(nets.front(), rng);
    const std::vector<nn::matrix> d2 = filter_normalized_direction(nets.front(), rng);

    std::printf("Loading Fashion-MNIST from %s\n", o.data.c_str());
    const nn::fashion_mnist_data data = nn::load_fashion_mnist(o.data);
    const std::size_t images = std::min(o.images, data.train.size());
    std::vector<double> axis(std::size_t(o.grid));
    for (int i = 0; i < o.grid; ++i) axis[std::size_t(i)] = o.radius * (2.0 * i / (o.grid - 1) - 1);
    std::printf("Weights %s; a %d x %d grid over [-%g, %g]^2, loss over the first %zu training images in batches of "
                "%zu, %d thread(s)\n",
                o.weights.c_str(), o.grid, o.grid, o.radius, o.radius, images, o.batch, threads);

    std::ofstream csv(o.out + "/landscape.csv");
    csv << "panel,alpha,beta,loss\n";
    // landscape.dat: the same losses as gnuplot's grid (a blank line after each alpha, two after
    // each panel), and the range of the colour scale
    std::ofstream dat(o.out + "/landscape.dat");
    double low = INFINITY, high = -INFINITY;
    std::vector<roughness> rough;
    std::vector<double> seconds;
    for (const auto& panel : o.panels) {
        const nn::gemm_datapath d = panel_datapath(panel, o.extra_bits);
        for (auto& net : nets) net.set_datapath(d);
        const std::size_t points = std::size_t(o.grid) * std::size_t(o.grid);
        std::vector<double> loss(points);
        std::atomic<std::size_t> done{0};
        const auto started = clock_type::now();
        // Each thread takes grid points in turn, with its own network; a point's loss does not
        // depend on which thread computes it (the datapath's bits do not depend on threads).
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (std::size_t k = 0; k < points; ++k) {
#if defined(_OPENMP)
            nn::network& net = nets[std::size_t(omp_get_thread_num())];
#else
            nn::network& net = nets.front();
#endif
            const double alpha = axis[k / std::size_t(o.grid)], beta = axis[k % std::size_t(o.grid)];
            std::size_t i = 0;
            for (const auto& [name, p] : net.named_parameters()) {
                p->value = centre[i] + float(alpha) * d1[i] + float(beta) * d2[i];
                ++i;
            }
            double sum = 0;
            for (std::size_t begin = 0; begin < images; begin += o.batch) {
                const std::size_t end = std::min(images, begin + o.batch);
                const nn::tensor out = net.forward(lowbit_examples::images_of(data.train, begin, end), nn::pass::inference);
                sum += nn::softmax_cross_entropy(out.values, std::span(data.train.labels).subspan(begin, end - begin)).loss *
                       double(end - begin);
            }
            loss[k] = sum / double(images);
            const std::size_t n = ++done;
#if defined(_OPENMP)
            if (omp_get_thread_num() == 0)
#endif
            {
                const double elapsed = seconds_since(started);
                std::printf("\r  %-18s %5zu/%zu points  %6.1f s  (about %.0f s left)", panel.c_str(), n, points, elapsed,
                            elapsed / double(n) * double(points - n));
                std::fflush(stdout);
            }
        }
        seconds.push_back(seconds_since(started));
        std::printf("\r  %-18s %5zu/%zu points  %6.1f s%24s\n", panel.c_str(), points, points, seconds.back(), "");
        for (std::size_t k = 0; k < points; ++k) {
            const double alpha = axis[k / std::size_t(o.grid)], beta = axis[k % std::size_t(o.grid)];
            csv << panel << ',' << alpha << ',' << beta << ',' << loss[k] << '\n';
            dat << alpha << ' ' << beta << ' ' << loss[k] << '\n';
            if ((k + 1) % std::size_t(o.grid) == 0) dat << '\n';
            low = std::min(low, loss[k]), high = std::max(high, loss[k]);
        }
        dat << "\n";
        rough.push_back(roughness_of(loss, o.grid, axis, 0.25 * o.radius));
    }
    csv.close();

    std::ofstream r(o.out + "/landscape_roughness.csv");
    r << "panel,mean_abs_laplacian,loss_range_within_quarter_radius,centre_loss,min_loss,grid,images,seconds\n";
    std::printf("\nRoughness (mean |discrete Laplacian| over the grid's interior; loss range within radius %g):\n",
                0.25 * o.radius);
    std::printf("%-18s %12s %12s %12s %12s %9s\n", "panel", "|laplacian|", "range r/4", "centre loss", "min loss", "seconds");
    for (std::size_t p = 0; p < o.panels.size(); ++p) {
        const roughness& x = rough[p];
        std::printf("%-18s %12.5f %12.5f %12.5f %12.5f %9.1f\n", o.panels[p].c_str(), x.laplacian, x.range_near,
                    x.centre, x.minimum, seconds[p]);
        r << o.panels[p] << ',' << x.laplacian << ',' << x.range_near << ',' << x.centre << ',' << x.minimum << ','
          << o.grid << ',' << images << ',' << seconds[p] << '\n';
    }
    r.close();

    // landscape.png: the panels side by side, a shared logarithmic colour scale, contour lines at
    // the same levels in every panel.
    dat.close();
    std::ofstream gp(o.out + "/landscape.gp");
    const std::size_t n = o.panels.size();
    gp << "set terminal pngcairo size " << 430 * n + 120 << ",520 font 'Sans,11' noenhanced\n"
       << "set output '" << o.out << "/landscape.png'\n"
       << "set multiplot layout 1," << n << " title \"Training loss of the M7E4-fine-tuned CNN around its weights, "
       << "along two filter-normalized random directions (seed " << o.seed << ")\\n" << images
       << " training images, " << o.grid << " x " << o.grid << " grid; shared logarithmic colour scale\"\n"
       << "set view map\nset size ratio 1\nset xlabel 'alpha'\nset ylabel 'beta'\nunset key\n"
       << "set logscale cb\nset cbrange [" << low << ":" << high << "]\nset palette rgbformulae 33,13,10\n"
       << "set xrange [" << -o.radius << ":" << o.radius << "]\nset yrange [" << -o.radius << ":" << o.radius << "]\n"
       << "set contour base\nset cntrparam levels discrete ";
    for (int k = 0; k < 8; ++k) gp << (k ? "," : "") << low * std::pow(high / low, (k + 0.5) / 8);
    gp << "\nunset clabel\nunset surface\nset pm3d at b\n";
    for (std::size_t p = 0; p < n; ++p) {
        char numbers[160];
        std::snprintf(numbers, sizeof numbers, "mean |Laplacian| %.3f, loss range within r = %g: %.3f",
                      rough[p].laplacian, 0.25 * o.radius, rough[p].range_near);
        gp << "set title \"" << panel_title(o.panels[p], o.extra_bits) << "\\n" << numbers << "\"\n"
           << (p + 1 < n ? "unset colorbox\n" : "set colorbox\n")
           << "splot '" << o.out << "/landscape.dat' index " << p << " using 1:2:3 with pm3d notitle, '' index " << p
           << " using 1:2:3 with lines lc rgb 'black' notitle\n";
    }
    gp << "unset multiplot\n";
    gp.close();
    examples::render_plots(o.out + "/landscape.gp", o.out);
    std::printf("Wrote %s/landscape.csv, landscape_roughness.csv, landscape.png. Total time %.1f s\n", o.out.c_str(),
                seconds_since(run_started));
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("lba_landscape", [&] { return run_example(argc, argv); });
}
