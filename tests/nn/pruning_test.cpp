// Tests of lowbit/nn/pruning.hpp: hand-checked masks (largest magnitudes, ties to the lower index,
// pruned weights never return), the geometric schedule, exact densities, masks that hold through
// Adam training, and bad input.
#include <lowbit/nn/pruning.hpp>

#include <lowbit/nn/linear.hpp>
#include <lowbit/nn/loss.hpp>
#include <lowbit/nn/optimizers.hpp>
#include <lowbit/nn/relu.hpp>

#include <catch2/catch.hpp>

#include <support/exception_message.hpp>

#include <cstdint>
#include <random>
#include <vector>

namespace nn = lowbit::nn;
using lowbit_test::message_of;

namespace {
nn::matrix row(std::vector<float> v) {
    nn::matrix m(1, Eigen::Index(v.size()));
    for (std::size_t i = 0; i < v.size(); ++i) m(0, Eigen::Index(i)) = v[i];
    return m;
}
}  // namespace

TEST_CASE("magnitude masks keep the largest magnitudes") {
    CHECK(nn::magnitude_mask(row({3, -1, 0.5f, -4, 2}), 0.4) == row({1, 0, 0, 1, 0}));
    CHECK(nn::magnitude_mask(row({1, 1, 1, 1}), 0.5) == row({1, 1, 0, 0}));  // ties: lower index first
    CHECK(nn::magnitude_mask(row({1, 2}), 0.0) == row({0, 0}));
    CHECK(nn::magnitude_mask(row({1, 2}), 1.0) == row({1, 1}));
    const nn::matrix previous = row({0, 1, 1});
    CHECK(nn::magnitude_mask(row({5, 1, 2}), 2.0 / 3.0, &previous) == row({0, 1, 1}));  // 5 stays pruned
    CHECK(nn::magnitude_mask(row({5, 1, 2}), 1.0 / 3.0, &previous) == row({0, 0, 1}));
}

TEST_CASE("the pruning schedule is geometric and ends at the target") {
    CHECK(nn::pruning_density(0.25, 0, 2) == 1.0);
    CHECK(nn::pruning_density(0.25, 1, 2) == Approx(0.5));
    CHECK(nn::pruning_density(0.25, 2, 2) == Approx(0.25));
    CHECK(message_of([] { nn::pruning_density(0.0, 1, 2); }).find("target = 0") != std::string::npos);
    CHECK(message_of([] { nn::pruning_density(0.5, 3, 2); }).find("step = 3") != std::string::npos);
}

TEST_CASE("masks hold through training") {
    nn::network net({12, 1, 1});
    net.add("fc1", nn::linear(12, 10, 1));
    net.add("relu", nn::relu{});
    net.add("fc2", nn::linear(10, 3, 2));
    nn::magnitude_pruner pruner(net, {{"fc1", 0.3}, {"fc2", 0.5}});
    nn::adam opt(net.parameters(true), {.learning_rate = 1e-2});
    std::mt19937 gen(3);
    std::normal_distribution<float> normal;
    nn::matrix x(16, 12);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = normal(gen);
    std::vector<std::uint8_t> labels(16);
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = std::uint8_t(i % 3);
    const nn::matrix before = dynamic_cast<nn::gemm_layer&>(net.at("fc1")).weight().value;
    const int steps = 3;
    for (int step = 1; step <= steps; ++step) {
        pruner.prune_step(step, steps);
        // round(density x weights) weights survive: fc1 has 120, fc2 30
        CHECK(pruner.density(0) == Approx(std::llround(nn::pruning_density(0.3, step, steps) * 120) / 120.0));
        CHECK(pruner.density(1) == Approx(std::llround(nn::pruning_density(0.5, step, steps) * 30) / 30.0));
        for (int iteration = 0; iteration < 20; ++iteration) {
            net.zero_grad();
            const nn::tensor out = net.forward({x, {12, 1, 1}}, nn::pass::training);
            const auto l = nn::softmax_cross_entropy(out.values, labels);
            net.backward({l.gradient, out.shape});
            pruner.mask_gradients();
            opt.step();
            pruner.apply();
        }
        for (std::size_t i = 0; i < pruner.size(); ++i) {
            const nn::matrix& w = dynamic_cast<nn::gemm_layer&>(net.at(pruner.name(i))).weight().value;
            // zero exactly where the mask is 0
            CHECK(((w.array() != 0.0f).cast<float>() == pruner.mask(i).array()).all());
        }
    }
    CHECK(pruner.density(0) == Approx(36.0 / 120.0));
    CHECK(pruner.density(1) == Approx(15.0 / 30.0));
    // the survivors trained: they moved
    const nn::matrix& after = dynamic_cast<nn::gemm_layer&>(net.at("fc1")).weight().value;
    CHECK(((after - before).array().abs() * pruner.mask(0).array()).maxCoeff() > 0.0f);
}

TEST_CASE("pruner: bad targets are exceptions naming them") {
    nn::network net({4, 1, 1});
    net.add("fc", nn::linear(4, 2, 1));
    net.add("relu", nn::relu{});
    CHECK(message_of([&] { nn::magnitude_pruner(net, {{"relu", 0.5}}); }).find("'relu' is not a conv2d or linear") !=
          std::string::npos);
    CHECK(message_of([&] { nn::magnitude_pruner(net, {{"fc", 0.0}}); }).find("density = 0") != std::string::npos);
    CHECK_THROWS_AS(nn::magnitude_pruner(net, {{"nope", 0.5}}), std::out_of_range);
    CHECK(message_of([] { nn::magnitude_mask(row({1}), 1.5); }).find("density = 1.5") != std::string::npos);
}
