// Tests of lowbit/nn/loss.hpp.
//  * softmax_cross_entropy: the loss against -log(exp(z_label) / sum_j exp(z_j)) evaluated
//    naively in long double (no shift: long double's exp reaches e^11356, so logits of a few
//    thousand are fine there while double's exp overflows past 709); huge logits (1e3 .. 3e3, and
//    shifted copies, where the loss is shift-invariant); the gradient against the naive
//    (softmax - one_hot) / batch and against central finite differences of the loss.
//  * correct_predictions against an argmax loop (first index on ties).
//  * Errors: label count and a label beyond the classes, with the numbers in the message.
#include <lowbit/nn/loss.hpp>

#include "support/exception_message.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

namespace {

using Catch::Contains;
using lowbit::nn::matrix;
using lowbit_test::message_of;

struct rng {
    std::mt19937_64 engine;
    explicit rng(std::uint64_t seed) : engine(seed) {}
    double uniform(double lo, double hi) { return lo + (hi - lo) * (double(engine() >> 11) * 0x1p-53); }
    std::uint8_t label(int classes) { return std::uint8_t(engine() % std::uint64_t(classes)); }
};

// The definition, naively, in long double.
long double naive_loss(const matrix& z, const std::vector<std::uint8_t>& labels) {
    long double total = 0;
    for (Eigen::Index i = 0; i < z.rows(); ++i) {
        long double sum = 0;
        for (Eigen::Index j = 0; j < z.cols(); ++j) sum += std::exp((long double)z(i, j));
        total += -std::log(std::exp((long double)z(i, labels[std::size_t(i)])) / sum);
    }
    return total / (long double)z.rows();
}

Eigen::MatrixXd naive_gradient(const matrix& z, const std::vector<std::uint8_t>& labels) {
    Eigen::MatrixXd g(z.rows(), z.cols());
    for (Eigen::Index i = 0; i < z.rows(); ++i) {
        long double sum = 0;
        for (Eigen::Index j = 0; j < z.cols(); ++j) sum += std::exp((long double)z(i, j));
        for (Eigen::Index j = 0; j < z.cols(); ++j)
            g(i, j) = double((std::exp((long double)z(i, j)) / sum - (j == labels[std::size_t(i)] ? 1 : 0)) /
                             (long double)z.rows());
    }
    return g;
}

}  // namespace

TEST_CASE("softmax_cross_entropy: loss and gradient equal the naive formulas") {
    rng r(91);
    for (const double scale : {1.0, 10.0, 60.0}) {
        CAPTURE(scale);
        const int batch = 7, classes = 10;
        matrix z(batch, classes);
        for (Eigen::Index i = 0; i < z.size(); ++i) z.data()[i] = float(r.uniform(-scale, scale));
        std::vector<std::uint8_t> labels(batch);
        for (auto& l : labels) l = r.label(classes);
        const auto out = lowbit::nn::softmax_cross_entropy(z, labels);
        CHECK(out.loss == Approx(double(naive_loss(z, labels))).epsilon(1e-12).margin(1e-12));
        REQUIRE(out.gradient.rows() == batch);
        REQUIRE(out.gradient.cols() == classes);
        // The gradient is a float rounding of its double value: within u of it (plus the float
        // subtraction of 1/batch at the label).
        const Eigen::MatrixXd expected = naive_gradient(z, labels);
        CHECK(((out.gradient.cast<double>() - expected).array().abs() <= 0x1p-23 * expected.array().abs() + 1e-9).all());
        // Each row of (softmax - one_hot) / batch sums to 0.
        for (int i = 0; i < batch; ++i) CHECK(std::fabs(out.gradient.row(i).cast<double>().sum()) < 1e-7);
    }
}

TEST_CASE("softmax_cross_entropy: huge logits do not overflow") {
    // exp(1000) overflows double (and float); long double holds it.
    matrix z(3, 4);
    z << 1000.0f, 1001.5f, 998.0f, 1000.25f,  //
        -3000.0f, 2000.0f, 1999.0f, 1995.5f,  //
        2500.0f, 2500.0f, 2500.0f, 2500.0f;
    const std::vector<std::uint8_t> labels = {0, 2, 3};
    REQUIRE(std::isinf(std::exp(double(z(0, 0)))));
    const auto out = lowbit::nn::softmax_cross_entropy(z, labels);
    REQUIRE(std::isfinite(out.loss));
    CHECK(out.loss == Approx(double(naive_loss(z, labels))).epsilon(1e-12));
    CHECK(out.gradient.allFinite());
    const Eigen::MatrixXd expected = naive_gradient(z, labels);
    CHECK(((out.gradient.cast<double>() - expected).array().abs() <= 0x1p-23 * expected.array().abs() + 1e-9).all());
    // Row 2: four equal logits: loss ln 4 for that sample. Row 1: sample 1's label logit is 1 below
    // the top and a -3000 logit contributes nothing.
    const double row2 = std::log(4.0);
    const double row1 = std::log(1 + std::exp(-1.0) + std::exp(-4.5)) + 1.0;
    const double row0 = std::log(std::exp(-1.5) + 1 + std::exp(-3.5) + std::exp(-1.25)) + 1.5;
    CHECK(out.loss == Approx((row0 + row1 + row2) / 3).epsilon(1e-12));

    // Shift invariance: the same logits minus a constant (exact in float) give the same loss.
    matrix shifted = z;
    shifted.row(0).array() -= 1000.0f;
    shifted.row(1).array() -= 2000.0f;
    shifted.row(2).array() -= 2500.0f;
    CHECK(lowbit::nn::softmax_cross_entropy(shifted, labels).loss == Approx(out.loss).epsilon(1e-14));
}

TEST_CASE("softmax_cross_entropy: the gradient matches central finite differences of the loss") {
    rng r(92);
    const int batch = 5, classes = 6;
    matrix z(batch, classes);
    for (Eigen::Index i = 0; i < z.size(); ++i) z.data()[i] = float(r.uniform(-3, 3));
    std::vector<std::uint8_t> labels(batch);
    for (auto& l : labels) l = r.label(classes);
    const matrix g = lowbit::nn::softmax_cross_entropy(z, labels).gradient;
    // The loss is computed in double from float logits: its rounding is ~1e-16, the truncation
    // error of the central quotient at h = 2^-10 is below h^2 max|f'''| / 6 < 1e-7.
    int outside = 0;
    for (Eigen::Index i = 0; i < z.size(); ++i) {
        const float saved = z.data()[i];
        z.data()[i] = saved + 0x1p-10f;
        const double up = lowbit::nn::softmax_cross_entropy(z, labels).loss;
        const float v_up = z.data()[i];
        z.data()[i] = saved - 0x1p-10f;
        const double down = lowbit::nn::softmax_cross_entropy(z, labels).loss;
        const double step = double(v_up) - double(z.data()[i]);
        z.data()[i] = saved;
        const double fd = (up - down) / step;
        outside += std::fabs(fd - double(g.data()[i])) > 1e-7 + 0x1p-23 * std::fabs(fd);
    }
    CHECK(outside == 0);
}

TEST_CASE("correct_predictions: argmax against the label, first index on ties") {
    rng r(93);
    const int batch = 50, classes = 5;
    matrix z(batch, classes);
    for (Eigen::Index i = 0; i < z.size(); ++i) z.data()[i] = float(int(r.uniform(0, 4)));  // many ties
    std::vector<std::uint8_t> labels(batch);
    for (auto& l : labels) l = r.label(classes);
    std::size_t expected = 0;
    for (int i = 0; i < batch; ++i) {
        int best = 0;
        for (int j = 1; j < classes; ++j)
            if (z(i, j) > z(i, best)) best = j;
        expected += best == labels[std::size_t(i)];
    }
    REQUIRE(expected > 5);
    CHECK(lowbit::nn::correct_predictions(z, labels) == expected);

    matrix tie(2, 3);
    tie << 1, 5, 5,  //
        2, 2, 2;
    CHECK(lowbit::nn::correct_predictions(tie, std::vector<std::uint8_t>{1, 0}) == 2);
    CHECK(lowbit::nn::correct_predictions(tie, std::vector<std::uint8_t>{2, 1}) == 0);
}

TEST_CASE("loss: labels that do not fit the logits are rejected with the numbers") {
    const matrix z = matrix::Zero(3, 4);
    CHECK_THAT(message_of([&] { (void)lowbit::nn::softmax_cross_entropy(z, std::vector<std::uint8_t>{0, 1}); }),
               Contains("lowbit::nn::softmax_cross_entropy: 3 rows of logits but 2 labels"));
    CHECK_THAT(message_of([&] { (void)lowbit::nn::softmax_cross_entropy(z, std::vector<std::uint8_t>{0, 4, 1}); }),
               Contains("label 4 of sample 1 is not below the 4 classes"));
    CHECK_THAT(message_of([&] { (void)lowbit::nn::correct_predictions(z, std::vector<std::uint8_t>{0, 1, 2, 3}); }),
               Contains("lowbit::nn::correct_predictions: 3 rows of logits but 4 labels"));
    CHECK_THAT(message_of([&] { (void)lowbit::nn::correct_predictions(z, std::vector<std::uint8_t>{0, 1, 200}); }),
               Contains("label 200 of sample 2 is not below the 4 classes"));
    CHECK(message_of([&] { (void)lowbit::nn::softmax_cross_entropy(z, std::vector<std::uint8_t>{3, 3, 3}); }).empty());
}
