// examples/paper_results.hpp: what the seed papers' examples (vsquant_ptq, and the OCTAV and
// LNS-Madam ones of issue 17) share: the fp32 CNN they start from (trained per seed, cached in the
// output folder), their results file with the columns
//
//   experiment,method,bits,variant,seed,test_accuracy
//
// (bits: an integer, or W4A8 where weights and activations differ; fp32 rows have 32), the mean and
// standard deviation over seeds, and the accuracy plot (bars by bits and method, error bars over
// seeds, the fp32 line). lba_gradients takes its mean and standard deviation from here too.
#pragma once

#include "example_cli.hpp"
#include "fashion_mnist_cnn.hpp"
#include "gnuplot.hpp"

#include <lowbit/nn/optimizers.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace lowbit_examples {

struct summary {
    double mean = 0, std = 0;  // std: the sample standard deviation (0 for one value)
    int n = 0;
};

inline summary summarize(const std::vector<double>& v) {
    summary s;
    s.n = int(v.size());
    for (double x : v) s.mean += x / double(v.size());
    for (double x : v) s.std += (x - s.mean) * (x - s.mean);
    s.std = v.size() > 1 ? std::sqrt(s.std / double(v.size() - 1)) : 0.0;
    return s;
}

// The start of a run: the thread count set (0: OpenMP's default, all cores), the output folder
// made, Fashion-MNIST loaded (with a line saying from where).
inline nn::fashion_mnist_data start_run(int threads, const std::string& out, const std::string& data_dir) {
#if defined(_OPENMP)
    if (threads > 0) omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    examples::prepare_out(out);
    std::printf("Loading Fashion-MNIST from %s\n", data_dir.c_str());
    return nn::load_fashion_mnist(data_dir);
}

// A training schedule: Adam over `epochs` passes of the first train_limit images (0: all 60000),
// shuffled per epoch from the seed, the last epoch (of several) at a tenth of the rate unless
// constant_rate. The fp32 starting point uses the defaults.
struct training_schedule {
    int epochs = 2;
    int batch = 128;
    double learning_rate = 1e-3;
    std::size_t train_limit = 0;  // 0: all 60000
    bool constant_rate = false;
};

// Trains net on the schedule with a progress line labelled `label`; returns the mean wall time of
// one step (forward, backward, update) in seconds. `update`, when given, replaces the schedule's
// Adam step (it is called once per batch, after the backward pass).
inline double train(nn::network& net, const nn::fashion_mnist_data& data, const training_schedule& t,
                    std::uint64_t seed, const std::string& label, const std::function<void()>& update = {}) {
    const std::size_t n = t.train_limit == 0 ? data.train.size() : std::min(t.train_limit, data.train.size());
    const std::size_t per_epoch = n / std::size_t(t.batch);
    if (per_epoch == 0) throw std::invalid_argument("fewer training images than one batch");
    nn::adam opt(net.parameters(true), {.learning_rate = t.learning_rate});
    const auto started = clock_type::now();
    for (int e = 0; e < t.epochs; ++e) {
        if (e == t.epochs - 1 && t.epochs > 1 && !t.constant_rate) opt.set_learning_rate(t.learning_rate / 10);
        const std::vector<std::size_t> order = nn::shuffled_indices(n, seed * 1000003 + std::uint64_t(e));
        double loss_sum = 0;
        for (std::size_t b = 0; b < per_epoch; ++b) {
            const nn::labeled_images batch =
                nn::select(data.train, std::span(order.data() + b * std::size_t(t.batch), std::size_t(t.batch)));
            net.zero_grad();
            const nn::tensor y = net.forward({batch.images, {1, batch.rows, batch.cols}}, nn::pass::training);
            const nn::loss_and_gradient l = nn::softmax_cross_entropy(y.values, batch.labels);
            net.backward({l.gradient, y.shape});
            if (update)
                update();
            else
                opt.step();
            loss_sum += l.loss;
            if ((b + 1) % std::max<std::size_t>(1, per_epoch / 10) == 0 || b + 1 == per_epoch) {
                std::printf("\r  %s: epoch %d/%d  batch %5zu/%zu  loss %.4f  %6.1f s", label.c_str(), e + 1, t.epochs,
                            b + 1, per_epoch, loss_sum / double(b + 1), seconds_since(started));
                std::fflush(stdout);
            }
        }
        std::printf("\n");
    }
    return seconds_since(started) / double(std::size_t(t.epochs) * per_epoch);
}

// The flagship's CNN trained in fp32 from seed `seed`, or read from out/fp32_cnn_seed<S>_<E>ep<_N>.weights
// where an earlier run left it (retrain: train anyway); saved there after training.
inline nn::network fp32_cnn(const nn::fashion_mnist_data& data, const training_schedule& t, std::uint64_t seed,
                            const std::string& out, bool retrain) {
    nn::network net = make_cnn(seed);
    const std::string cache = out + "/fp32_cnn_seed" + std::to_string(seed) + "_" + std::to_string(t.epochs) + "ep" +
                              (t.train_limit ? "_" + std::to_string(t.train_limit) : std::string()) + ".weights";
    if (load_cached(net, cache, retrain)) return net;
    train(net, data, t, seed, "fp32 training, seed " + std::to_string(seed));
    net.save(cache);
    std::printf("  saved %s\n", cache.c_str());
    return net;
}

// One row of a results file.
struct paper_result {
    std::string experiment, method, bits, variant;
    std::uint64_t seed = 0;
    double test_accuracy = 0;
};

// The results file, written row by row as runs end (a long run's finished rows survive a stop).
class results_file {
public:
    explicit results_file(const std::string& path) : path_(path), csv_(path) {
        if (!csv_) throw std::runtime_error("cannot write " + path);
        csv_ << "experiment,method,bits,variant,seed,test_accuracy\n";
    }
    void add(const paper_result& r) {
        rows_.push_back(r);
        csv_ << r.experiment << ',' << r.method << ',' << r.bits << ',' << r.variant << ',' << r.seed << ','
             << r.test_accuracy << '\n';
        csv_.flush();
    }
    const std::vector<paper_result>& rows() const { return rows_; }
    const std::string& path() const { return path_; }

    // The accuracies of every seed of one configuration.
    std::vector<double> accuracies(const std::string& method, const std::string& bits, const std::string& variant) const {
        std::vector<double> v;
        for (const auto& r : rows_)
            if (r.method == method && r.bits == bits && r.variant == variant) v.push_back(r.test_accuracy);
        return v;
    }

private:
    std::string path_;
    std::ofstream csv_;
    std::vector<paper_result> rows_;
};

// <stem>.png: one group of bars per bits value (in the order given), one bar per series (a
// method and variant, in the order given; NaN where a series has no such bits), at the mean over
// the seeds with +-1 standard deviation as error bars, the fp32 mean as a line, and any further
// reference lines (another baseline's mean, with its title).
struct plot_series {
    std::string method, variant, title;
};
struct reference_line {
    std::string title;
    double accuracy = 0;
};
inline void accuracy_plot(const results_file& results, const std::string& out, const std::string& stem,
                          const std::string& title, const std::vector<std::string>& bits,
                          const std::vector<plot_series>& series, double fp32_accuracy,
                          const std::vector<reference_line>& more_lines = {}, const std::string& fp32_title = "fp32") {
    const std::string dat = out + "/" + stem + ".dat";
    std::ofstream d(dat);
    double low = fp32_accuracy, high = fp32_accuracy;
    for (const auto& line : more_lines) low = std::min(low, line.accuracy), high = std::max(high, line.accuracy);
    for (const auto& b : bits) {
        d << b;
        for (const auto& s : series) {
            const std::vector<double> v = results.accuracies(s.method, b, s.variant);
            if (v.empty()) {
                d << " NaN NaN";
                continue;
            }
            const summary m = summarize(v);
            low = std::min(low, m.mean - m.std), high = std::max(high, m.mean + m.std);
            d << ' ' << m.mean << ' ' << m.std;
        }
        d << '\n';
    }
    d.close();
    const double y_low = std::max(0.0, std::floor(low) - 2), y_high = std::min(100.0, std::ceil(high) + 1);
    std::ofstream gp(out + "/" + stem + ".gp");
    gp << "set terminal pngcairo size 1400,650 font 'Sans,11' noenhanced\n"
       << "set output '" << out << "/" << stem << ".png'\n"
       << "set title \"" << title << "\"\n"
       << "set style data histograms\nset style histogram errorbars gap 2 lw 1\n"
       << "set style fill solid 0.85 border -1\nset boxwidth 0.9\nset key outside right top vertical\n"
       << "set grid ytics\nset ylabel 'test accuracy (%)'\nset xlabel 'bits (weights and activations, or WxAy)'\n"
       << "set yrange [" << y_low << ":" << y_high << "]\n"
       << "plot ";
    for (std::size_t i = 0; i < series.size(); ++i)
        gp << (i ? ", " : "") << "'" << dat << "' using " << 2 + 2 * i << ":" << 3 + 2 * i << (i == 0 ? ":xtic(1)" : "")
           << " title '" << series[i].title << "'"
           // (gnuplot cycles 8 colours: patterns tell neighbours, and a ninth bar from the first, apart)
           << (i % 2 ? " fillstyle pattern 2 border -1" : i >= 8 ? " fillstyle pattern 4 border -1" : "");
    gp << ", " << fp32_accuracy << " with lines lw 2 dt 2 lc rgb 'black' title '" << fp32_title << "'";
    for (std::size_t i = 0; i < more_lines.size(); ++i)  // (dash patterns tell them apart without colour)
        gp << ", " << more_lines[i].accuracy << " with lines lw 2 dt " << 3 + i << " lc rgb 'grey40' title '"
           << more_lines[i].title << "'";
    gp << "\n";
    gp.close();
    examples::render_plots(out + "/" + stem + ".gp", out);
}

}  // namespace lowbit_examples
