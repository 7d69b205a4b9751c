// A vision transformer on the simulated datapath, and dynamic inference under a compute budget.
//
//  1. trains a tiny ViT on Fashion-MNIST in fp32 (patch 7: 4 x 4 tokens, width 64, 2 pre-LN blocks
//     of 4 heads and a Mix-FFN MLP of 128 hidden channels with a depth-wise 3 x 3 conv, mean
//     pooling; AdamW, one-cycle; cached: a second run loads the weights), on the training set less
//     a calibration split of 5,000 images;
//  2. the flagship's accumulator table on it (accumulator_formats.hpp): zero-shot test accuracy
//     with FP8 M4E3 weights and activations on MxEy products and accumulators, chunks of 16, event
//     rates, and the two-stage M7E4 fine-tune; more rows from --spec (any gemm_spec text);
//  3. dynamic inference under a budget (Sreedhar et al., papers.md section 2): channels are
//     skipped in groups of G (the vector width; 8 and 16): the heads' channels, the MLP's hidden
//     channels (fc1 outputs, their dwconv channels and fc2 inputs together) and the patch
//     embedding's outputs. Which groups go first is fixed once from the weights (L1 norms). A
//     greedy search on the calibration split fills a table of configurations (accuracy, and the
//     MACs the datapath executed, counted by it); for each budget (100% ... 40% of the dense
//     MACs) the most accurate configuration of the Pareto front that fits is chosen and tested.
//     Then the same after a short fine-tune of the alternative paths (each batch on a random
//     configuration of the front). The same for the flagship's CNN (groups of conv channels).
//  4. writes vit_budget.csv, vit_budget.png, vit_accumulators.csv in --out.
//
//   vit_fashion_mnist [--quick] [--out DIR] [--threads N] [--seed S] [--group 8,16]
//                     [--budgets 100,90,...,40] [--retrain] [--spec "product=fp16 accumulator=bf16 chunk=32"]
//                     ...   (--help for all)
#include <lowbit/lowbit.hpp>
#include <lowbit/nn/attention.hpp>
#include <lowbit/nn/budget.hpp>
#include <lowbit/nn/fashion_mnist.hpp>
#include <lowbit/nn/layer_norm.hpp>
#include <lowbit/nn/linear.hpp>
#include <lowbit/nn/loss.hpp>
#include <lowbit/nn/network.hpp>
#include <lowbit/nn/optimizers.hpp>
#include <lowbit/nn/patch_embedding.hpp>
#include <lowbit/nn/positional_embedding.hpp>
#include <lowbit/nn/residual.hpp>
#include <lowbit/nn/schedules.hpp>
#include <lowbit/nn/token_pooling.hpp>
#include <lowbit/nn/transformer_block.hpp>

#include "accumulator_formats.hpp"
#include "fashion_mnist_cnn.hpp"

#include "example_cli.hpp"
#include "gnuplot.hpp"
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

namespace nn = lowbit::nn;
using lowbit_examples::clock_type;
using lowbit_examples::images_of;
using lowbit_examples::seconds_since;

struct options {
    bool quick = false;
    std::string out = "results/";
    std::string data = lowbit::nn::fashion_mnist_default_dir;
    int threads = 1;  // the GEMMs are small: on 2 busy cores a second OpenMP thread made training 10x slower
    std::uint64_t seed = 1;
    std::vector<int> groups{8, 16};
    std::vector<int> budgets{100, 90, 80, 70, 60, 50, 40};
    bool retrain = false;
    int epochs = 8;
    int batch = 128;
    double learning_rate = 3e-3;  // one-cycle peak
    double weight_decay = 0.05;
    int cnn_epochs = 2;
    std::vector<std::string> formats{"m10e5", "m9e5", "m8e5", "m7e5", "m6e5", "m7e4"};
    std::vector<std::string> specs;  // --spec: more datapaths, as gemm_spec text, zero-shot only
    lowbit_examples::datapath_settings datapath;
    int stats_samples = 500;
    double stage1_epochs = 0.25, stage2_epochs = 0.1;
    double finetune_learning_rate = 1e-4, stage2_learning_rate = 1e-5;
    double budget_retrain_epochs = 0.5;
    double budget_retrain_learning_rate = 3e-4;
    std::size_t calibration = 5000;
    std::size_t train_limit = 0, test_limit = 0;  // 0: all
};

// ---------------------------------------------------------------------------------------------
// The models

// The ViT: 7 x 7 patches -> 16 tokens of 64 features (+ learned positions), two pre-LN blocks
// (4 heads; MLP 64 -> 128 -> depth-wise 3 x 3 -> GELU -> 64), layer norm, mean of the tokens,
// linear 64 -> 10.
nn::network make_vit(std::uint64_t seed) {
    nn::network net({1, 28, 28});
    net.add("embed", nn::patch_embedding({1, 28, 28}, 7, 64, seed));
    net.add("pos", nn::positional_embedding(nn::token_shape(4, 4, 64), seed + 1));
    nn::add_transformer_block(net, "block1", {.heads = 4, .mlp_hidden = 128, .seed = seed + 10});
    nn::add_transformer_block(net, "block2", {.heads = 4, .mlp_hidden = 128, .seed = seed + 20});
    net.add("ln", nn::layer_norm(64));
    net.add("pool", nn::token_mean_pool{});
    net.add("head", nn::linear(64, 10, seed + 30));
    return net;
}

std::size_t parameter_count(nn::network& net) {
    std::size_t n = 0;
    for (nn::parameter* p : net.parameters(true)) n += std::size_t(p->value.size());
    return n;
}

// ---------------------------------------------------------------------------------------------
// Training and evaluation

// Accuracy (%) of the network on a set, quietly (the budget search runs hundreds of these).
double accuracy(nn::network& net, const nn::labeled_images& set, std::size_t limit = 0) {
    const std::size_t n = limit == 0 ? set.size() : std::min(limit, set.size());
    std::size_t correct = 0;
    for (std::size_t begin = 0; begin < n; begin += 500) {
        const std::size_t end = std::min(n, begin + 500);
        const nn::tensor out = net.forward(images_of(set, begin, end), nn::pass::inference);
        correct += nn::correct_predictions(out.values, std::span(set.labels).subspan(begin, end - begin));
    }
    return 100.0 * double(correct) / double(n);
}

// A fixed number per stage name (FNV-1a), so each stage shuffles differently on every platform.
std::uint64_t salt(const std::string& stage) {
    std::uint64_t h = 14695981039346656037ull;
    for (const char c : stage) h = (h ^ std::uint8_t(c)) * 1099511628211ull;
    return h % 1000;
}

// Trains for `epochs` (fractional allowed) over shuffled `set`, the learning rate of each step from
// `rate(step, steps)`, `before_batch(step)` called first (the budget fine-tune picks a
// configuration there); progress ten times an epoch. Returns the seconds per epoch.
template <class Rate>
double train(nn::network& net, nn::adam& opt, const nn::labeled_images& set, const options& o, double epochs,
             const std::string& stage, Rate&& rate, const std::function<void(std::size_t)>& before_batch = {}) {
    const std::size_t n = o.train_limit == 0 ? set.size() : std::min(o.train_limit, set.size());
    const std::size_t per_epoch = n / std::size_t(o.batch);
    const std::size_t total = std::max<std::size_t>(2, std::size_t(epochs * double(per_epoch) + 0.5));
    const std::size_t report_every = std::max<std::size_t>(1, per_epoch / 10);
    const auto started = clock_type::now();
    double loss_sum = 0;
    std::size_t correct = 0, seen = 0;
    std::vector<std::size_t> order;
    for (std::size_t step = 0; step < total; ++step) {
        const std::size_t in_epoch = step % per_epoch;
        if (in_epoch == 0) order = nn::shuffled_indices(n, o.seed * 7919 + salt(stage) + step);
        if (before_batch) before_batch(step);
        opt.set_learning_rate(rate(step, total));
        const nn::labeled_images batch =
            nn::select(set, std::span<const std::size_t>(order.data() + in_epoch * std::size_t(o.batch), std::size_t(o.batch)));
        net.zero_grad();
        const nn::tensor out = net.forward({batch.images, {1, batch.rows, batch.cols}}, nn::pass::training);
        const nn::loss_and_gradient l = nn::softmax_cross_entropy(out.values, batch.labels);
        net.backward({l.gradient, out.shape});
        opt.step();
        loss_sum += l.loss * double(o.batch);
        correct += nn::correct_predictions(out.values, batch.labels);
        seen += std::size_t(o.batch);
        if ((step + 1) % report_every == 0 || step + 1 == total) {
            const double elapsed = seconds_since(started);
            std::printf("  %-12s epoch %5.2f  batch %5zu/%zu  lr %.2e  loss %.4f  train acc %6.2f%%  %6.1f s  (%.0f images/s)\n",
                        stage.c_str(), double(step + 1) / double(per_epoch), step + 1, total, rate(step, total),
                        loss_sum / double(seen), 100.0 * double(correct) / double(seen), elapsed,
                        double((step + 1) * std::size_t(o.batch)) / elapsed);
            std::fflush(stdout);
            loss_sum = 0, correct = 0, seen = 0;
        }
    }
    return seconds_since(started) / (double(total) / double(per_epoch));
}

// ---------------------------------------------------------------------------------------------
// Structured skipping

// A model's skippable units (the patch embedding, each block's heads and MLP; the CNN's convs):
// the groups of each, least important first, and how a configuration (groups skipped per unit)
// is applied to the network.
struct skipping {
    std::vector<std::string> units;
    std::vector<std::vector<std::vector<int>>> groups;  // per unit, channel_groups's order
    std::vector<int> channels;                          // per unit
    std::function<void(nn::network&, const std::vector<std::vector<int>>&)> apply;  // kept channels per unit ({}: all)

    void set(nn::network& net, const std::vector<int>& skipped) const {
        std::vector<std::vector<int>> kept;
        for (std::size_t u = 0; u < units.size(); ++u)
            kept.push_back(skipped[u] == 0 ? std::vector<int>{} : nn::kept_channels(groups[u], skipped[u], channels[u]));
        apply(net, kept);
    }
    // "embed=8/8 block1_attn=6/8 ...": groups kept of each unit
    std::string describe(const std::vector<int>& skipped) const {
        std::string s;
        for (std::size_t u = 0; u < units.size(); ++u)
            s += (u ? " " : "") + units[u] + "=" + std::to_string(int(groups[u].size()) - skipped[u]) + "/" +
                 std::to_string(groups[u].size());
        return s;
    }
};

double l1(const auto& block) { return double(block.cwiseAbs().sum()); }

template <class Layer>
Layer& layer_at(nn::network& net, const std::string& path) {  // "block1_mlp/fc1"
    const auto slash = path.find('/');
    if (slash == std::string::npos) return dynamic_cast<Layer&>(net.at(path));
    auto& block = dynamic_cast<nn::residual&>(net.at(path.substr(0, slash)));
    return dynamic_cast<Layer&>(block.body().at(path.substr(slash + 1)));
}

// The ViT's units. Importance of a channel: the L1 norms of the weights that make it times those
// that read it (a channel made or read by small weights matters little):
//   patch embedding output c: |W_embed[c]|;  head channel c: |Wq[c]| |Wk[c]| + |Wv[c]| |Wproj[:, c]|;
//   MLP channel j: |W_fc1[j]| |W_dw[j]| |W_fc2[:, j]|.
// Head channels are grouped within their head (a group never spans two heads).
skipping vit_skipping(nn::network& net, int g) {
    skipping s;
    {
        auto& embed = layer_at<nn::gemm_layer>(net, "embed");
        std::vector<double> importance;
        for (int c = 0; c < 64; ++c) importance.push_back(l1(embed.weight().value.row(c)));
        s.units.push_back("embed");
        s.groups.push_back(nn::channel_groups(importance, g));
        s.channels.push_back(64);
    }
    for (const std::string block : {"block1", "block2"}) {
        auto& attn = layer_at<nn::multi_head_attention>(net, block + "_attn/attn");
        const nn::matrix& w = attn.qkv().weight().value;
        const nn::matrix& wo = attn.proj().weight().value;
        std::vector<double> importance;
        for (int c = 0; c < 64; ++c)
            importance.push_back(l1(w.row(c)) * l1(w.row(64 + c)) + l1(w.row(128 + c)) * l1(wo.col(c)));
        s.units.push_back(block + "_attn");
        s.groups.push_back(nn::channel_groups(importance, std::min(g, attn.head_dim()), attn.head_dim()));
        s.channels.push_back(64);
        auto& fc1 = layer_at<nn::gemm_layer>(net, block + "_mlp/fc1");
        auto& dw = layer_at<nn::gemm_layer>(net, block + "_mlp/dwconv");
        auto& fc2 = layer_at<nn::gemm_layer>(net, block + "_mlp/fc2");
        std::vector<double> mlp;
        for (int j = 0; j < 128; ++j)
            mlp.push_back(l1(fc1.weight().value.row(j)) * l1(dw.weight().value.row(j)) * l1(fc2.weight().value.col(j)));
        s.units.push_back(block + "_mlp");
        s.groups.push_back(nn::channel_groups(mlp, g));
        s.channels.push_back(128);
    }
    s.apply = [](nn::network& net, const std::vector<std::vector<int>>& kept) {
        layer_at<nn::gemm_layer>(net, "embed").set_active(kept[0], {});
        for (int b = 0; b < 2; ++b) {
            const std::string block = "block" + std::to_string(b + 1);
            layer_at<nn::multi_head_attention>(net, block + "_attn/attn").set_active_channels(kept[std::size_t(1 + 2 * b)]);
            const auto& mlp = kept[std::size_t(2 + 2 * b)];
            layer_at<nn::gemm_layer>(net, block + "_mlp/fc1").set_active(mlp, {});
            layer_at<nn::gemm_layer>(net, block + "_mlp/dwconv").set_active(mlp, {});
            layer_at<nn::gemm_layer>(net, block + "_mlp/fc2").set_active({}, mlp);
        }
    };
    return s;
}

// The CNN's units (batch norm folded): conv1's and conv2's output channels. A skipped channel is
// 0, so after ReLU and pooling the next layer skips it as an input too (conv2's taps of a conv1
// channel, fc1's 49 features of a conv2 channel): the same result with fewer MACs.
// Importance: |W_conv[c]| times the L1 norm of the next layer's weights that read channel c.
skipping cnn_skipping(nn::network& net, int g) {
    auto& conv1 = dynamic_cast<nn::conv2d&>(net.at("conv1"));
    auto& conv2 = dynamic_cast<nn::conv2d&>(net.at("conv2"));
    auto& fc1 = dynamic_cast<nn::gemm_layer&>(net.at("fc1"));
    skipping s;
    std::vector<double> i1, i2;
    for (int c = 0; c < 32; ++c) i1.push_back(l1(conv1.weight().value.row(c)) * l1(conv2.weight().value.middleCols(c * 9, 9)));
    for (int c = 0; c < 64; ++c) i2.push_back(l1(conv2.weight().value.row(c)) * l1(fc1.weight().value.middleCols(c * 49, 49)));
    s.units = {"conv1", "conv2"};
    s.groups = {nn::channel_groups(i1, g), nn::channel_groups(i2, g)};
    s.channels = {32, 64};
    s.apply = [](nn::network& net, const std::vector<std::vector<int>>& kept) {
        auto& conv1 = dynamic_cast<nn::conv2d&>(net.at("conv1"));
        auto& conv2 = dynamic_cast<nn::conv2d&>(net.at("conv2"));
        conv1.set_active(kept[0], {});
        conv2.set_active(kept[1], conv2.channel_columns(kept[0]));
        std::vector<int> features;
        for (const int c : kept[1])
            for (int i = 0; i < 49; ++i) features.push_back(c * 49 + i);
        dynamic_cast<nn::gemm_layer&>(net.at("fc1")).set_active({}, features);
    };
    return s;
}

// MACs per image that the datapath executes in this configuration: one image through an
// exact-fp32 datapath that counts (the network is left on the plain fp32 path).
double counted_macs(nn::network& net, const nn::labeled_images& set) {
    lowbit::gemm_stats stats;
    const lowbit::float_quantizer fp32{.format = lowbit::fp32};
    net.set_datapath({.spec = lowbit::gemm_spec{.product = fp32, .accumulator = fp32}, .stats = &stats});
    net.forward(images_of(set, 0, 1), nn::pass::inference);
    net.set_datapath({});
    return double(stats.macs);
}

struct measured {
    std::vector<int> skipped;
    double macs = 0, accuracy = 0;
};

// The greedy search: from the dense network, each step skips one more group in the unit where it
// costs the least calibration accuracy per MAC saved, until the MACs are below the smallest
// budget. Every configuration tried goes into the table.
std::vector<measured> search(nn::network& net, const skipping& s, const nn::labeled_images& calibration,
                             double smallest_budget, const std::string& label) {
    std::vector<measured> tried;
    std::vector<int> current(s.units.size(), 0);
    const auto measure = [&](const std::vector<int>& skipped) {
        s.set(net, skipped);
        measured m{skipped, counted_macs(net, calibration), accuracy(net, calibration)};
        tried.push_back(m);
        return m;
    };
    measured now = measure(current);
    const double dense = now.macs;
    const auto started = clock_type::now();
    while (now.macs > smallest_budget * dense) {
        std::optional<measured> best;
        double best_cost = 0;
        for (std::size_t u = 0; u < s.units.size(); ++u) {
            if (current[u] + 1 >= int(s.groups[u].size())) continue;
            std::vector<int> next = current;
            ++next[u];
            const measured m = measure(next);
            const double cost = (now.accuracy - m.accuracy) / std::max(1.0, now.macs - m.macs);
            if (!best || cost < best_cost) best = m, best_cost = cost;
        }
        if (!best) break;
        current = best->skipped, now = *best;
        std::printf("\r  %-22s %3zu configurations  now %5.1f%% of the MACs, calibration accuracy %6.2f%%  %5.1f s", label.c_str(),
                    tried.size(), 100 * now.macs / dense, now.accuracy, seconds_since(started));
        std::fflush(stdout);
    }
    std::printf("\n");
    s.set(net, std::vector<int>(s.units.size(), 0));
    return tried;
}

nn::budget_table table_of(const std::vector<measured>& tried, const skipping& s) {
    nn::budget_table t;
    for (const auto& m : tried) t.add({s.describe(m.skipped), m.macs, m.accuracy});
    return t;
}

struct budget_row {
    std::string model;
    int group = 0, budget = 0;
    std::optional<nn::budget_entry> chosen;
    double macs_fraction = 0, test_accuracy = 0;
    bool retrained = false;
};

// For each budget: the configuration chosen from the table, and its test accuracy.
// (`tried` begins with the dense configuration.)
std::vector<budget_row> choose_and_test(nn::network& net, const skipping& s, const std::vector<measured>& tried,
                                        const nn::labeled_images& test, const options& o, const std::string& model,
                                        int g, bool retrained) {
    const nn::budget_table table = table_of(tried, s);
    const double dense = tried.front().macs;
    std::vector<budget_row> rows;
    for (const int b : o.budgets) {
        budget_row r{model, g, b, table.choose(dense * b / 100.0), 0, 0, retrained};
        if (r.chosen) {
            const auto it = std::find_if(tried.begin(), tried.end(),
                                         [&](const measured& m) { return s.describe(m.skipped) == r.chosen->configuration; });
            s.set(net, it->skipped);
            r.macs_fraction = r.chosen->macs / dense;
            r.test_accuracy = accuracy(net, test, o.test_limit);
        }
        std::printf("  %-4s G=%-2d budget %3d%%%s: %s\n", model.c_str(), g, b, retrained ? " (retrained)" : "",
                    r.chosen ? (std::to_string(r.chosen->macs / 1e6).substr(0, 5) + " M MACs (" +
                                std::to_string(100 * r.macs_fraction).substr(0, 4) + "%), calibration " +
                                std::to_string(r.chosen->accuracy).substr(0, 5) + "%, test " +
                                std::to_string(r.test_accuracy).substr(0, 5) + "%  [" + r.chosen->configuration + "]")
                                   .c_str()
                              : "nothing fits");
        rows.push_back(r);
    }
    s.set(net, std::vector<int>(s.units.size(), 0));
    return rows;
}

// The budget experiment of one model and group size: search, choose, test; then the short
// fine-tune of the alternative paths (each batch on a random configuration of the Pareto front,
// the dense one included), the front measured again, choose, test.
std::vector<budget_row> budget_experiment(const nn::network& trained, const std::function<skipping(nn::network&, int)>& make,
                                          const std::string& model, int g, const nn::labeled_images& train_set,
                                          const nn::labeled_images& calibration, const nn::labeled_images& test,
                                          const options& o) {
    nn::network net(trained);
    const skipping s = make(net, g);
    const int smallest = *std::min_element(o.budgets.begin(), o.budgets.end());
    std::printf("\n  %s, groups of %d: search on %zu calibration images\n", model.c_str(), g, calibration.size());
    const std::vector<measured> tried = search(net, s, calibration, smallest / 100.0, model + " G=" + std::to_string(g));
    std::vector<budget_row> rows = choose_and_test(net, s, tried, test, o, model, g, false);
    if (o.budget_retrain_epochs <= 0) return rows;

    // the dense network and the Pareto front as alternative paths
    const nn::budget_table table = table_of(tried, s);
    std::vector<measured> paths{tried.front()};
    for (const auto& e : table.pareto_front())
        for (std::size_t i = 1; i < tried.size(); ++i)
            if (s.describe(tried[i].skipped) == e.configuration) {
                paths.push_back(tried[i]);
                break;
            }
    std::printf("  fine-tuning %s on %zu alternative paths for %.2f epochs (AdamW %.0e, cosine)\n", model.c_str(),
                paths.size(), o.budget_retrain_epochs, o.budget_retrain_learning_rate);
    nn::adam opt(net.parameters(true), {.learning_rate = o.budget_retrain_learning_rate, .weight_decay = o.weight_decay});
    std::mt19937_64 pick(o.seed * 31 + std::uint64_t(g));
    const auto rate = [&](std::size_t step, std::size_t steps) {
        return nn::cosine_schedule{.max = o.budget_retrain_learning_rate, .steps = int(steps)}(int(step));
    };
    train(net, opt, train_set, o, o.budget_retrain_epochs, model + " paths", rate,
          [&](std::size_t) { s.set(net, paths[std::size_t(pick() % paths.size())].skipped); });
    std::vector<measured> again;
    for (const auto& m : paths) {
        s.set(net, m.skipped);
        again.push_back({m.skipped, m.macs, accuracy(net, calibration)});
    }
    // (the MACs of a configuration do not change with the weights; the dense one stays first)
    const auto more = choose_and_test(net, s, again, test, o, model, g, true);
    rows.insert(rows.end(), more.begin(), more.end());
    return rows;
}

// ---------------------------------------------------------------------------------------------
// Output

// The run's conditions, the last columns of every CSV row: quick (0/1), the test images the test
// accuracies are over, the calibration images, the seed.
std::string conditions_of(const options& o, std::size_t test_images) {
    return std::to_string(int(o.quick)) + ',' + std::to_string(test_images) + ',' + std::to_string(o.calibration) + ',' +
           std::to_string(o.seed);
}
constexpr const char* conditions_header = "quick,test_images,calibration_images,seed";

void write_budget_outputs(const std::string& out, const std::vector<budget_row>& rows, const options& o,
                          std::size_t test_images) {
    const std::string conditions = conditions_of(o, test_images);
    {
        std::ofstream csv(out + "/vit_budget.csv");
        csv << "model,group,budget,macs,macs_fraction,calibration_accuracy,test_accuracy,retrained,configuration,"
            << conditions_header << "\n";
        for (const auto& r : rows) {
            csv << r.model << ',' << r.group << ',' << r.budget << ',';
            if (r.chosen)
                csv << std::llround(r.chosen->macs) << ',' << r.macs_fraction << ',' << r.chosen->accuracy << ','
                    << r.test_accuracy;
            else
                csv << ",,,";
            csv << ',' << int(r.retrained) << ',' << (r.chosen ? r.chosen->configuration : "none fits") << ','
                << conditions << '\n';
        }
    }
    // one data block per (model, group, retrained)
    std::ofstream dat(out + "/vit_budget.dat");
    std::vector<std::string> titles;
    for (std::size_t i = 0; i < rows.size();) {
        std::size_t j = i;
        while (j < rows.size() && rows[j].model == rows[i].model && rows[j].group == rows[i].group &&
               rows[j].retrained == rows[i].retrained)
            ++j;
        if (!titles.empty()) dat << "\n\n";
        for (std::size_t k = i; k < j; ++k)
            if (rows[k].chosen)
                dat << rows[k].macs_fraction << ' ' << rows[k].test_accuracy << ' '
                    << lowbit_examples::standard_error(rows[k].test_accuracy, test_images) << '\n';
        titles.push_back((rows[i].model == "vit" ? std::string("ViT") : std::string("CNN")) + ", G = " +
                         std::to_string(rows[i].group) + (rows[i].retrained ? ", fine-tuned paths" : ", no retraining"));
        i = j;
    }
    dat.close();
    std::ofstream gp(out + "/vit_budget.gp");
    gp << "set terminal pngcairo size 1000,620 font 'Sans,11' noenhanced\n"
       << "set output '" << out << "/vit_budget.png'\n"
       // (double quotes: gnuplot reads \n as a line break only inside them)
       << "set title \"Fashion-MNIST under a compute budget: structured skipping in groups of G channels\\n"
       << test_images << " test images" << (o.quick ? " (--quick run)" : "") << ", " << o.calibration
       << " calibration images, seed " << o.seed << "; error bars: +-1 standard error\"\n"
       << "set xlabel 'MACs executed (fraction of the dense network, counted by the datapath)'\n"
       << "set ylabel 'test accuracy (%)'\nset grid\nset key bottom right\nset xrange [0.2:1.02]\n"
       << "plot ";
    for (std::size_t b = 0; b < titles.size(); ++b) {
        const bool vit = titles[b].rfind("ViT", 0) == 0, tuned = titles[b].find("fine-tuned") != std::string::npos;
        const bool g16 = titles[b].find("G = 16") != std::string::npos;
        gp << (b ? ", " : "") << "'" << out << "/vit_budget.dat' index " << b << " using 1:2:3 with yerrorlines lw 2 pt "
           << (g16 ? 7 : 5) << " dt " << (tuned ? 1 : 2) << " lc rgb '" << (vit ? (g16 ? "#1f77b4" : "#17becf") : (g16 ? "#d62728" : "#ff7f0e"))
           << "' title '" << titles[b] << "'";
    }
    gp << "\n";
    gp.close();
    examples::render_plots(out + "/vit_budget.gp", out);
}

}  // namespace

int run_example(int argc, char** argv) {
    options o;
    std::string budgets_text;
    CLI::App app{"A vision transformer on Fashion-MNIST: fp32 training, the accumulator table on the simulated "
                 "datapath, and dynamic inference under a compute budget (ViT and CNN)"};
    app.add_flag("--quick", o.quick, "a small subset and short runs (for CI)");
    examples::add_out_option(app, o.out, "the weights cache, CSV files and plots");
    examples::add_data_option(app, o.data);
    app.add_option("--threads", o.threads, "threads (0: all cores; default 1: the GEMMs are small)")->check(CLI::Range(0, 1024));
    app.add_option("--seed", o.seed, "seed of initialisation, shuffling, the calibration split and the path sampling");
    app.add_option("--group", o.groups, "group sizes G (the vector width), comma separated")
        ->delimiter(',')
        ->check(CLI::IsMember({1, 2, 4, 8, 16}));
    app.add_option("--budgets", o.budgets, "budgets in % of the dense MACs, comma separated")
        ->delimiter(',')
        ->check(CLI::Range(1, 100));
    app.add_flag("--retrain", o.retrain, "train even if cached weights exist");
    app.add_option("--epochs", o.epochs, "ViT fp32 training epochs")->check(CLI::Range(1, 100));
    app.add_option("--batch", o.batch, "mini-batch size")->check(CLI::Range(1, 4096));
    app.add_option("--lr", o.learning_rate, "one-cycle peak learning rate (AdamW)")->check(examples::finite_positive);
    app.add_option("--weight-decay", o.weight_decay, "AdamW's decoupled weight decay")->check(examples::finite)->check(CLI::Range(0.0, 1.0));
    app.add_option("--cnn-epochs", o.cnn_epochs, "CNN fp32 training epochs (for the budget comparison)")->check(CLI::Range(0, 100));
    app.add_option("--formats", o.formats, "accumulator formats (MxEy), comma separated")->delimiter(',');
    app.add_option("--chunk", o.datapath.chunk, "chunk size of the accumulation (0: no chunks)")->check(CLI::Range(0, 1 << 20));
    app.add_option("--stats-samples", o.stats_samples, "test images on which events are counted")->check(CLI::Range(0, 10000));
    app.add_option("--stage1-epochs", o.stage1_epochs, "M7E4 fine-tuning stage 1 (no underflow), in epochs")->check(examples::finite)->check(CLI::Range(0.0, 100.0));
    app.add_option("--stage2-epochs", o.stage2_epochs, "M7E4 fine-tuning stage 2 (real M7E4), in epochs")->check(examples::finite)->check(CLI::Range(0.0, 100.0));
    app.add_option("--budget-retrain-epochs", o.budget_retrain_epochs, "fine-tuning of the alternative paths, in epochs (0: none)")
        ->check(examples::finite)->check(CLI::Range(0.0, 100.0));
    app.add_option("--spec", o.specs,
                   "one more datapath for the accumulator table, as gemm_spec text, e.g. \"product=fp16 "
                   "accumulator=bf16:toward_zero chunk=32\" (repeatable; the FP8 range-biased weights and "
                   "activations are applied first)");
    CLI11_PARSE(app, argc, argv);
    o.datapath.seed = o.seed, o.datapath.threads = o.threads;
    // (parsed before any work: a malformed --spec is reported at once, naming the field)
    std::vector<nn::gemm_datapath> specs;
    for (const auto& text : o.specs) specs.push_back(lowbit_examples::datapath_of_spec(text, o.threads));
    if (o.quick) {
        o.train_limit = 4000, o.test_limit = 1000, o.calibration = 500;
        if (app.count("--epochs") == 0) o.epochs = 2;
        if (app.count("--cnn-epochs") == 0) o.cnn_epochs = 1;
        if (app.count("--stats-samples") == 0) o.stats_samples = 20;
        if (app.count("--stage1-epochs") == 0) o.stage1_epochs = 0.1;
        if (app.count("--stage2-epochs") == 0) o.stage2_epochs = 0.05;
        if (app.count("--budget-retrain-epochs") == 0) o.budget_retrain_epochs = 0.1;
        if (app.count("--group") == 0) o.groups = {16};
        if (app.count("--budgets") == 0) o.budgets = {100, 70, 40};
    }
#if defined(_OPENMP)
    if (o.threads > 0) omp_set_num_threads(o.threads);
#endif
    const auto run_started = clock_type::now();
    examples::prepare_out(o.out);

    std::printf("Loading Fashion-MNIST from %s\n", o.data.c_str());
    const nn::fashion_mnist_data data = nn::load_fashion_mnist(o.data);
    // The calibration split: 5,000 training images never trained on (nor the test set used for it).
    const std::vector<std::size_t> order = nn::shuffled_indices(data.train.size(), o.seed * 104729 + 17);
    const std::size_t held = std::min(o.calibration, data.train.size() / 2);
    const nn::labeled_images calibration = nn::select(data.train, std::span(order).first(held));
    const nn::labeled_images train_set = nn::select(data.train, std::span(order).subspan(held));
    std::printf("  %zu training images (%zu held out for calibration), %zu test images%s\n", data.train.size(),
                calibration.size(), data.test.size(),
                o.quick ? " (--quick: 4000 training and 1000 test images are used)" : "");

    // 1. fp32 training of the ViT
    nn::network vit = make_vit(o.seed);
    std::printf("\nThe ViT (%zu parameters):\n%s", parameter_count(vit), vit.describe().c_str());
    const std::string tag = std::to_string(o.epochs) + "ep_seed" + std::to_string(o.seed) + (o.quick ? "_quick" : "");
    const std::string cache = o.out + "/vit_fp32_" + tag + ".weights";
    double epoch_seconds = std::nan("");
    if (!lowbit_examples::load_cached(vit, cache, o.retrain)) {
        std::printf("\n1. fp32 training: %d epochs, AdamW (weight decay %g), one-cycle to %g, batches of %d\n", o.epochs,
                    o.weight_decay, o.learning_rate, o.batch);
        nn::adam opt(vit.parameters(true), {.learning_rate = o.learning_rate, .weight_decay = o.weight_decay});
        const auto rate = [&](std::size_t step, std::size_t steps) {
            return nn::one_cycle{.max = o.learning_rate, .steps = int(steps)}(int(step));
        };
        epoch_seconds = train(vit, opt, train_set, o, o.epochs, "fp32", rate);
        vit.save(cache);
        std::printf("  saved %s (%.1f s per epoch)\n", cache.c_str(), epoch_seconds);
    }
    const double dense_macs = counted_macs(vit, data.test);
    std::printf("  %.3f M MACs per image (counted by the datapath)\n", dense_macs / 1e6);

    // 2. the accumulator table
    const double fp32_accuracy = lowbit_examples::evaluate(vit, data.test, o.test_limit, "fp32");
    vit.set_datapath({.spec = std::nullopt, .weights = nn::range_biased_float{}, .activations = nn::range_biased_float{}});
    const double fp8_accuracy = lowbit_examples::evaluate(vit, data.test, o.test_limit, "FP8 inputs, exact accumulation");
    std::printf("\n2. Zero-shot: FP8 M4E3 weights and activations (Q K^T and P V: activations on both sides), products "
                "and accumulators MxEy, chunk %d, %s, flush to zero, saturating\n",
                o.datapath.chunk, o.datapath.rounding.c_str());
    struct table_row {
        lowbit_examples::datapath_row formats;  // (only the name for a --spec row)
        std::string product, accumulator;
        lowbit::gemm_spec spec;
        double zero_shot = 0;
        lowbit_examples::event_rates events;
        std::optional<double> stage1, fine_tuned;
    };
    std::vector<table_row> table;
    for (const auto& f : o.formats) {
        const lowbit_examples::datapath_row formats = lowbit_examples::row_for(f, o.datapath);
        const nn::gemm_datapath d = lowbit_examples::datapath_for(formats.product, formats.accumulator, o.datapath);
        table.push_back({formats, lowbit_examples::paper_name(formats.product),
                         lowbit_examples::paper_name(formats.accumulator), *d.spec, 0, {}, {}, {}});
        vit.set_datapath(d);
        table.back().zero_shot = lowbit_examples::evaluate(vit, data.test, o.test_limit, formats.name + " zero-shot");
        if (o.stats_samples > 0) table.back().events = lowbit_examples::measure_events(vit, data.test, d, o.stats_samples);
    }
    for (std::size_t i = 0; i < specs.size(); ++i) {
        const nn::gemm_datapath& d = specs[i];
        const std::string name = "spec" + std::to_string(i + 1);
        std::printf("   %s: %s\n", name.c_str(), lowbit::to_string(*d.spec).c_str());
        table.push_back({{name, {}, {}}, lowbit::to_string(d.spec->product), lowbit::to_string(d.spec->accumulator),
                         *d.spec, 0, {}, {}, {}});
        vit.set_datapath(d);
        table.back().zero_shot = lowbit_examples::evaluate(vit, data.test, o.test_limit, name + " zero-shot");
        if (o.stats_samples > 0) table.back().events = lowbit_examples::measure_events(vit, data.test, d, o.stats_samples);
    }
    double finetune_seconds = std::nan("");
    for (auto& r : table) {
        if (r.formats.name != "M7E4") continue;
        nn::network tuned(vit);
        nn::adam opt(tuned.parameters(true), {.learning_rate = o.finetune_learning_rate});
        const nn::gemm_datapath real = lowbit_examples::datapath_for(r.formats.product, r.formats.accumulator, o.datapath);
        const nn::gemm_datapath stage1 = lowbit_examples::datapath_for(
            lowbit_examples::without_underflow(r.formats.product), lowbit_examples::without_underflow(r.formats.accumulator),
            o.datapath);
        if (o.stage1_epochs > 0) {
            std::printf("\n   Fine-tuning on M7E4: stage 1 without underflow, %.2f epochs, Adam %g\n", o.stage1_epochs,
                        o.finetune_learning_rate);
            tuned.set_datapath(stage1);
            finetune_seconds = train(tuned, opt, train_set, o, o.stage1_epochs, "M7E4 stage1",
                                     [&](std::size_t, std::size_t) { return o.finetune_learning_rate; });
            tuned.set_datapath(real);
            r.stage1 = lowbit_examples::evaluate(tuned, data.test, o.test_limit, "after stage 1, on real M7E4");
        }
        if (o.stage2_epochs > 0) {
            std::printf("   Stage 2: the real M7E4 datapath, %.2f epochs, Adam %g\n", o.stage2_epochs,
                        o.stage2_learning_rate);
            tuned.set_datapath(real);
            train(tuned, opt, train_set, o, o.stage2_epochs, "M7E4 stage2",
                  [&](std::size_t, std::size_t) { return o.stage2_learning_rate; });
            r.fine_tuned = lowbit_examples::evaluate(tuned, data.test, o.test_limit, "after stage 2, on real M7E4");
        }
    }
    vit.set_datapath({});
    const std::size_t test_images = o.test_limit ? std::min(o.test_limit, data.test.size()) : data.test.size();
    {
        std::ofstream csv(o.out + "/vit_accumulators.csv");
        csv << "format,product,accumulator,chunk,rounding,fp32_accuracy,fp8_accuracy,zero_shot_accuracy,swamp_rate,"
               "underflow_rate,overflow_rate,stage1_accuracy,fine_tuned_accuracy,"
            << conditions_header << ",event_samples,datapath\n";
        const auto opt_text = [](const std::optional<double>& v) { return v ? std::to_string(*v) : std::string(); };
        for (const auto& r : table)
            csv << r.formats.name << ',' << r.product << ',' << r.accumulator << ',' << r.spec.chunk << ','
                << lowbit_examples::rounding_text(r.spec) << ',' << fp32_accuracy << ',' << fp8_accuracy << ',' << r.zero_shot << ','
                << r.events.swamp << ',' << r.events.underflow << ',' << r.events.overflow << ',' << opt_text(r.stage1)
                << ',' << opt_text(r.fine_tuned) << ',' << conditions_of(o, test_images) << ','
                << std::min<std::size_t>(std::size_t(o.stats_samples), data.test.size()) << ",\""
                << lowbit_examples::datapath_text(r.spec) << "\"\n";
    }

    // 3. budgets: the ViT, then the CNN trained on the same split
    std::printf("\n3. Dynamic inference under a budget: dense %.3f M MACs per image, test accuracy %.2f%%\n",
                dense_macs / 1e6, fp32_accuracy);
    std::vector<budget_row> rows;
    for (const int g : o.groups) {
        const auto more = budget_experiment(vit, vit_skipping, "vit", g, train_set, calibration, data.test, o);
        rows.insert(rows.end(), more.begin(), more.end());
    }
    double cnn_accuracy = std::nan("");
    if (o.cnn_epochs > 0) {
        nn::network cnn = lowbit_examples::make_cnn(o.seed);
        const std::string cnn_cache = o.out + "/cnn_fp32_" + std::to_string(o.cnn_epochs) + "ep_seed" +
                                      std::to_string(o.seed) + (o.quick ? "_quick" : "") + "_calibration_held_out.weights";
        if (!lowbit_examples::load_cached(cnn, cnn_cache, o.retrain)) {
            std::printf("\n   The flagship's CNN, fp32: %d epochs (Adam 1e-3, the last at 1e-4) on the same split\n",
                        o.cnn_epochs);
            nn::adam opt(cnn.parameters(true), {.learning_rate = 1e-3});
            const int epochs = o.cnn_epochs;
            options cnn_options = o;
            cnn_options.batch = 64;
            train(cnn, opt, train_set, cnn_options, epochs, "CNN fp32", [&](std::size_t step, std::size_t steps) {
                return epochs > 1 && step >= steps * std::size_t(epochs - 1) / std::size_t(epochs) ? 1e-4 : 1e-3;
            });
            cnn.save(cnn_cache);
        }
        nn::network folded = nn::fold_batch_norm(cnn);
        std::printf("   CNN: %.3f M MACs per image (counted by the datapath)\n", counted_macs(folded, data.test) / 1e6);
        cnn_accuracy = lowbit_examples::evaluate(folded, data.test, o.test_limit, "CNN fp32");
        for (const int g : o.groups) {
            const auto more = budget_experiment(folded, cnn_skipping, "cnn", g, train_set, calibration, data.test, o);
            rows.insert(rows.end(), more.begin(), more.end());
        }
    }
    write_budget_outputs(o.out, rows, o, test_images);

    // 4. summary
    std::printf("\nViT test accuracy (%s%zu images): fp32 %.2f%%, FP8 M4E3 inputs with exact accumulation %.2f%%\n",
                o.test_limit ? "first " : "", o.test_limit ? o.test_limit : data.test.size(), fp32_accuracy, fp8_accuracy);
    std::printf("%-6s %-15s %-15s %9s %10s %10s %10s %9s %10s\n", "acc", "product", "accumulator", "zero-shot", "swamps",
                "underflow", "overflow", "stage 1", "fine-tuned");
    for (const auto& r : table)
        std::printf("%-6s %-15s %-15s %8.2f%% %9.3f%% %9.3f%% %9.4f%% %8s%% %9s%%\n", r.formats.name.c_str(),
                    r.product.c_str(), r.accumulator.c_str(), r.zero_shot, 100 * r.events.swamp,
                    100 * r.events.underflow, 100 * r.events.overflow,
                    r.stage1 ? std::to_string(*r.stage1).substr(0, 5).c_str() : "-",
                    r.fine_tuned ? std::to_string(*r.fine_tuned).substr(0, 5).c_str() : "-");
    const double standard_error = lowbit_examples::standard_error(fp32_accuracy, test_images);
    std::printf("(%zu test images: the standard error of each accuracy is about %.2f points; differences below "
                "%.1f points are within noise)\n",
                test_images, standard_error, 2 * standard_error);
    std::printf("\nBudgets (test accuracy; dense: ViT %.2f%%, CNN %.2f%%):\n", fp32_accuracy, cnn_accuracy);
    std::printf("%-5s %3s %7s %10s %8s %11s %9s %s\n", "model", "G", "budget", "MACs", "fraction", "calibration", "test",
                "retrained");
    for (const auto& r : rows)
        if (r.chosen)
            std::printf("%-5s %3d %6d%% %10.0f %7.1f%% %10.2f%% %8.2f%% %s\n", r.model.c_str(), r.group, r.budget,
                        r.chosen->macs, 100 * r.macs_fraction, r.chosen->accuracy, r.test_accuracy,
                        r.retrained ? "yes" : "no");
        else
            std::printf("%-5s %3d %6d%% nothing fits %s\n", r.model.c_str(), r.group, r.budget, r.retrained ? "yes" : "no");
    if (!std::isnan(epoch_seconds))
        std::printf("ViT fp32 training: %.1f s per epoch of %zu images\n", epoch_seconds,
                    o.train_limit ? std::min(o.train_limit, train_set.size()) : train_set.size());
    if (!std::isnan(finetune_seconds)) std::printf("ViT M7E4 fine-tuning stage 1: %.1f s per epoch\n", finetune_seconds);
    std::printf("Wrote %s/vit_budget.csv, vit_budget.png, vit_accumulators.csv. Total time %.1f s\n", o.out.c_str(),
                seconds_since(run_started));
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("vit_fashion_mnist", [&] { return run_example(argc, argv); });
}
