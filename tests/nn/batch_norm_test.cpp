// Tests of lowbit/nn/batch_norm.hpp, against formulas written here in double:
//  * training forward: per channel (over the batch and the positions) the output is
//    gamma (x - mean) / sqrt(var + eps) + beta with the batch's mean and biased variance, so
//    (y - beta) / gamma has mean 0 and variance var / (var + eps) (1 up to eps);
//  * running statistics: running = (1 - momentum) running + momentum batch, the variance unbiased
//    (count / (count - 1)), step after step, from mean 0 and variance 1;
//  * inference uses the running statistics (per sample, whatever the batch) and changes nothing;
//  * backward (dL/dx, dL/dgamma, dL/dbeta) against central finite differences of L = sum R .* y
//    through the training-mode forward; the tolerance is the rounding of L to float outputs
//    (bounded) plus the truncation error, estimated from the difference of quotients at h and 2h;
//  * a batch cut into micro-batches (static forward/backward over copies, as a network training
//    in micro-batches runs it): outputs, running statistics, input gradients and the gradients of
//    gamma and beta are the bits of the batch joined;
//  * errors: channels, momentum, eps, the input's channels, training with one value per channel,
//    backward without a training forward.
#include <lowbit/nn/batch_norm.hpp>

#include "support/exception_message.hpp"

#include "support/random_floats.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using lowbit_test::rng;

using Catch::Contains;
using lowbit::nn::batch_norm;
using lowbit::nn::matrix;
using lowbit::nn::pass;
using lowbit::nn::shape3;
using lowbit::nn::tensor;
using lowbit_test::message_of;

constexpr double u = 0x1p-24;


// Channel c of every sample uniform around centre[c] with half-width spread[c].
matrix channel_data(Eigen::Index batch, shape3 s, const std::vector<double>& centre, const std::vector<double>& spread,
                    rng& r) {
    const int positions = s.height * s.width;
    matrix m(batch, s.size());
    for (Eigen::Index n = 0; n < batch; ++n)
        for (int c = 0; c < s.channels; ++c)
            for (int p = 0; p < positions; ++p)
                m(n, c * positions + p) = float(centre[std::size_t(c)] + spread[std::size_t(c)] * r.uniform(-1, 1));
    return m;
}

struct moments {
    double mean, biased_var, count;
};

moments channel_moments(const matrix& x, shape3 s, int c) {
    const int positions = s.height * s.width;
    double sum = 0, count = double(x.rows()) * positions;
    for (Eigen::Index n = 0; n < x.rows(); ++n)
        for (int p = 0; p < positions; ++p) sum += x(n, c * positions + p);
    const double mean = sum / count;
    double sq = 0;
    for (Eigen::Index n = 0; n < x.rows(); ++n)
        for (int p = 0; p < positions; ++p) sq += (x(n, c * positions + p) - mean) * (x(n, c * positions + p) - mean);
    return {mean, sq / count, count};
}

void set_row(matrix& m, const std::vector<double>& v) {
    for (std::size_t i = 0; i < v.size(); ++i) m(0, Eigen::Index(i)) = float(v[i]);
}

// bn.gamma() etc. are const views: the parameters are reached through parameters().
void set_affine(batch_norm& bn, const std::vector<double>& gamma, const std::vector<double>& beta) {
    set_row(bn.parameters()[0]->value, gamma);
    set_row(bn.parameters()[1]->value, beta);
}

}  // namespace

TEST_CASE("batch_norm: training forward normalizes each channel by the batch's statistics") {
    rng r(81);
    const std::vector<double> centre = {5.0, -2.0, 0.25}, spread = {3.0, 0.5, 0.01};
    const std::vector<double> gamma = {1.5, -0.75, 2.0}, beta = {0.5, 1.0, -3.0};
    for (const shape3 s : {shape3{3, 4, 5}, shape3{3, 1, 1}}) {
        CAPTURE(s.to_string());
        const Eigen::Index batch = s.height == 1 ? 40 : 6;
        const matrix x = channel_data(batch, s, centre, spread, r);
        batch_norm bn(3);
        set_affine(bn, gamma, beta);
        const tensor y = bn.forward({x, s}, pass::training);
        CHECK(y.shape == s);
        REQUIRE(y.values.rows() == batch);
        REQUIRE(y.values.cols() == s.size());
        const int positions = s.height * s.width;
        for (int c = 0; c < 3; ++c) {
            CAPTURE(c);
            const moments m = channel_moments(x, s, c);
            const double inv_std = 1 / std::sqrt(m.biased_var + double(bn.eps()));
            // Element by element: the formula in double, then one rounding to float (and the double
            // arithmetic of the layer): within 2 u |y| + a few u of the normalized magnitude.
            double worst = 0;
            for (Eigen::Index n = 0; n < batch; ++n)
                for (int p = 0; p < positions; ++p) {
                    const double xhat = (x(n, c * positions + p) - m.mean) * inv_std;
                    const double expected = float(gamma[std::size_t(c)]) * xhat + float(beta[std::size_t(c)]);
                    const double error = std::fabs(y.values(n, c * positions + p) - expected);
                    worst = std::max(worst, error / (2 * u * std::fabs(expected) + 8 * u * std::fabs(gamma[std::size_t(c)] * xhat) + 1e-300));
                }
            CHECK(worst <= 1.0);
            // (y - beta) / gamma: mean 0, biased variance var / (var + eps).
            matrix z(batch, positions);
            for (Eigen::Index n = 0; n < batch; ++n)
                for (int p = 0; p < positions; ++p)
                    z(n, p) = float((double(y.values(n, c * positions + p)) - float(beta[std::size_t(c)])) /
                                    float(gamma[std::size_t(c)]));
            const moments mz = channel_moments(z, {1, s.height, s.width}, 0);
            CHECK(std::fabs(mz.mean) < 1e-5);
            CHECK(mz.biased_var == Approx(m.biased_var / (m.biased_var + double(bn.eps()))).epsilon(1e-5));
        }
    }
}

TEST_CASE("batch_norm: running statistics follow the momentum update with the unbiased variance") {
    rng r(82);
    const shape3 s{2, 3, 3};
    for (const float momentum : {0.1f, 0.3f, 1.0f, 0.0f}) {
        CAPTURE(momentum);
        batch_norm bn(2, momentum);
        CHECK(bn.running_mean() == matrix::Zero(1, 2));
        CHECK(bn.running_var() == matrix::Ones(1, 2));
        std::vector<double> mean = {0, 0}, var = {1, 1};
        for (int step = 0; step < 4; ++step) {
            const matrix x = channel_data(5, s, {1.0 + step, -4.0}, {2.0, 0.5 + step}, r);
            (void)bn.forward({x, s}, pass::training);
            for (int c = 0; c < 2; ++c) {
                const moments m = channel_moments(x, s, c);
                mean[std::size_t(c)] = (1 - double(momentum)) * mean[std::size_t(c)] + double(momentum) * m.mean;
                var[std::size_t(c)] = (1 - double(momentum)) * var[std::size_t(c)] +
                                      double(momentum) * m.biased_var * m.count / (m.count - 1);
                CAPTURE(step, c);
                // The layer keeps float state and computes in double: a few float roundings per step.
                CHECK(bn.running_mean()(0, c) == Approx(mean[std::size_t(c)]).epsilon(1e-6).margin(1e-6));
                CHECK(bn.running_var()(0, c) == Approx(var[std::size_t(c)]).epsilon(1e-6));
            }
        }
    }
}

TEST_CASE("batch_norm: inference uses the running statistics and changes nothing") {
    rng r(83);
    const shape3 s{2, 2, 3};
    batch_norm bn(2, 0.5f, 1e-3f);
    set_affine(bn, {0.5, 3.0}, {-1.0, 0.25});
    for (int step = 0; step < 3; ++step) (void)bn.forward({channel_data(4, s, {3.0, -1.0}, {1.0, 2.0}, r), s}, pass::training);
    const matrix mean = bn.running_mean(), var = bn.running_var();
    REQUIRE(std::fabs(mean(0, 0)) > 0.5f);  // non-trivial statistics
    REQUIRE(std::fabs(var(0, 1) - 1.0f) > 0.2f);

    const matrix x = channel_data(3, s, {0.0, 0.0}, {4.0, 4.0}, r);
    const tensor y = bn.forward({x, s}, pass::inference);
    CHECK(bn.running_mean() == mean);  // unchanged
    CHECK(bn.running_var() == var);
    const std::vector<double> gamma = {0.5, 3.0}, beta = {-1.0, 0.25};
    for (Eigen::Index n = 0; n < 3; ++n)
        for (int c = 0; c < 2; ++c)
            for (int p = 0; p < 6; ++p) {
                const double expected = gamma[std::size_t(c)] * (x(n, c * 6 + p) - double(mean(0, c))) /
                                            std::sqrt(double(var(0, c)) + double(1e-3f)) +
                                        beta[std::size_t(c)];
                CHECK(y.values(n, c * 6 + p) == Approx(expected).epsilon(4 * u).margin(8 * u * (std::fabs(expected) + 10)));
            }
    // Per sample: one sample alone gives its row of the batch (one value per channel is fine here).
    const tensor one = bn.forward({x.row(1), s}, pass::inference);
    CHECK(one.values == y.values.row(1));
}

TEST_CASE("batch_norm: backward matches central finite differences of the training forward") {
    rng r(84);
    const shape3 s{2, 2, 3};
    const Eigen::Index batch = 4;
    batch_norm bn(2);
    const std::vector<double> gamma = {1.25, -0.5}, beta = {0.3, -0.7};
    set_affine(bn, gamma, beta);
    matrix x = channel_data(batch, s, {0.5, -1.0}, {1.0, 0.6}, r);
    matrix coeff(batch, s.size());
    for (Eigen::Index i = 0; i < coeff.size(); ++i) coeff.data()[i] = float(r.uniform(-1, 1));

    (void)bn.forward({x, s}, pass::training);
    const tensor dx = bn.backward({coeff, s});
    CHECK(dx.shape == s);
    REQUIRE(dx.values.rows() == batch);
    REQUIRE(dx.values.cols() == s.size());
    const matrix dgamma = bn.parameters()[0]->grad, dbeta = bn.parameters()[1]->grad;

    // L and a bound on its rounding: every y is a double result rounded to float (u |y|, and a few
    // more u for the double arithmetic of the layer, far below).
    const auto loss = [&](double& error) {
        const matrix y = bn.forward({x, s}, pass::training).values;
        error = 1.5 * u * (y.cast<double>().array().abs() * coeff.cast<double>().array().abs()).sum();
        return (y.cast<double>().array() * coeff.cast<double>().array()).sum();
    };
    // The central quotient at step h, with its rounding bound.
    const auto quotient = [&](float& v, float h, double& rounding) {
        const float saved = v;
        double e_up = 0, e_down = 0;
        v = saved + h;
        const double up = loss(e_up);
        const float v_up = v;
        v = saved - h;
        const double down = loss(e_down);
        const double step = double(v_up) - double(v);
        v = saved;
        rounding = (e_up + e_down) / step;
        return (up - down) / step;
    };
    int checked = 0, outside = 0;
    double worst_truncation = 0;
    const auto check_variable = [&](float& v, double analytic, const char* what, Eigen::Index index) {
        const float h = 0x1p-8f;
        double rounding_h = 0, rounding_2h = 0;
        const double fd = quotient(v, h, rounding_h), fd2 = quotient(v, 2 * h, rounding_2h);
        // Truncation c h^2 at h is a third of |fd(2h) - fd(h)| (up to the roundings of both).
        const double truncation = std::fabs(fd2 - fd);
        worst_truncation = std::max(worst_truncation, truncation);
        // The layer's own float rounding of its gradient (xhat kept in float): a few u of the terms.
        const double tolerance = rounding_h + rounding_2h + truncation + 16 * u * (std::fabs(analytic) + 1);
        ++checked;
        if (std::fabs(fd - analytic) > tolerance) {
            ++outside;
            UNSCOPED_INFO(what << "[" << index << "]: backward " << analytic << ", finite difference " << fd
                               << ", tolerance " << tolerance);
        }
    };
    for (Eigen::Index i = 0; i < x.size(); ++i) check_variable(x.data()[i], dx.values.data()[i], "dx", i);
    for (Eigen::Index c = 0; c < 2; ++c) check_variable(bn.parameters()[0]->value.data()[c], dgamma.data()[c], "dgamma", c);
    for (Eigen::Index c = 0; c < 2; ++c) check_variable(bn.parameters()[1]->value.data()[c], dbeta.data()[c], "dbeta", c);
    CHECK(checked == x.size() + 4);
    CHECK(outside == 0);
    CHECK(worst_truncation < 1e-3);  // the tolerance is not made loose by the truncation estimate
    CHECK(dx.values.cwiseAbs().maxCoeff() > 0.1f);
}

TEST_CASE("batch_norm: a batch cut into micro-batches gives the bits of the batch joined") {
    const shape3 shape{3, 5, 7};  // 35 positions: runs of eight lanes and a remainder
    matrix x(23, shape.size()), dy(23, shape.size());
    rng r(84);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(r.uniform(-2, 3)), dy.data()[i] = float(r.uniform(-2, 3));
    batch_norm joined(3), first(3);
    joined.parameters()[0]->value << 1.5f, -0.5f, 2.0f;  // gamma
    joined.parameters()[1]->value << 0.25f, 1.0f, -3.0f;  // beta
    for (int k = 0; k < 2; ++k) first.parameters()[k]->value = joined.parameters()[k]->value;
    batch_norm second = first, third = first;
    const tensor y = joined.forward({x, shape}, pass::training);
    const tensor dx = joined.backward({dy, shape});

    const std::vector<Eigen::Index> rows = {9, 1, 13};
    std::vector<tensor> xs, dys;
    for (Eigen::Index b = 0, begin = 0; b < 3; begin += rows[std::size_t(b)], ++b) {
        xs.push_back({x.middleRows(begin, rows[std::size_t(b)]), shape});
        dys.push_back({dy.middleRows(begin, rows[std::size_t(b)]), shape});
    }
    batch_norm* const layers[] = {&first, &second, &third};
    const tensor* const in[] = {&xs[0], &xs[1], &xs[2]};
    const tensor* const grads[] = {&dys[0], &dys[1], &dys[2]};
    const std::vector<tensor> ys = batch_norm::forward(layers, in, pass::training);
    const std::vector<tensor> dxs = batch_norm::backward(layers, grads);
    matrix y_cut(23, shape.size()), dx_cut(23, shape.size());
    for (Eigen::Index b = 0, begin = 0; b < 3; begin += rows[std::size_t(b)], ++b) {
        y_cut.middleRows(begin, rows[std::size_t(b)]) = ys[std::size_t(b)].values;
        dx_cut.middleRows(begin, rows[std::size_t(b)]) = dxs[std::size_t(b)].values;
    }
    const auto same = [](const matrix& a, const matrix& b) { return lowbit_test::same_bits(a, b); };
    CHECK(same(y_cut, y.values));
    CHECK(same(dx_cut, dx.values));
    for (int k = 0; k < 4; ++k) {  // gamma, beta (gradients), running mean and variance
        CHECK(same(first.parameters()[std::size_t(k)]->value, joined.parameters()[std::size_t(k)]->value));
        CHECK(same(first.parameters()[std::size_t(k)]->grad, joined.parameters()[std::size_t(k)]->grad));
    }
    CHECK(second.parameters()[0]->grad.isZero());  // the copies' gamma and beta take no gradient
}

TEST_CASE("batch_norm: parameters, names and errors") {
    batch_norm bn(3);
    CHECK(bn.describe() == "batch_norm 3");
    CHECK(bn.channels() == 3);
    const auto params = bn.parameters();
    REQUIRE(params.size() == 4);
    CHECK(params[0]->name == "gamma");
    CHECK(params[1]->name == "beta");
    CHECK(params[2]->name == "running_mean");
    CHECK(params[3]->name == "running_var");
    CHECK(params[0]->trainable);
    CHECK(params[1]->trainable);
    CHECK_FALSE(params[2]->trainable);
    CHECK_FALSE(params[3]->trainable);
    CHECK(bn.gamma() == matrix::Ones(1, 3));
    CHECK(bn.beta() == matrix::Zero(1, 3));

    const float nan = std::numeric_limits<float>::quiet_NaN();
    CHECK_THAT(message_of([] { batch_norm(0); }), Contains("lowbit::nn::batch_norm: channels = 0 must be >= 1"));
    CHECK_THAT(message_of([] { batch_norm(2, -0.1f); }), Contains("momentum = -0.1") && Contains("must be in [0, 1]"));
    CHECK_THAT(message_of([] { batch_norm(2, 1.5f); }), Contains("momentum = 1.5"));
    CHECK_THAT(message_of([&] { batch_norm(2, nan); }), Contains("momentum = "));
    CHECK_THAT(message_of([] { batch_norm(2, 0.1f, 0.0f); }), Contains("eps = 0") && Contains("must be > 0"));
    CHECK_THAT(message_of([] { batch_norm(2, 0.1f, -1e-5f); }), Contains("eps = -"));

    CHECK_THAT(message_of([&] { (void)bn.output_shape({4, 2, 2}); }),
               Contains("batch_norm 3: input shape 4 x 2 x 2 has 4 channels"));
    CHECK_THAT(message_of([&] { (void)bn.forward({matrix::Zero(2, 16), {4, 2, 2}}, pass::training); }),
               Contains("has 4 channels"));
    CHECK_THAT(message_of([&] { (void)bn.forward({matrix::Zero(2, 11), {3, 2, 2}}, pass::training); }),
               Contains("(11 values per sample)"));
    CHECK_THAT(message_of([&] { (void)bn.forward({matrix::Zero(1, 3), {3, 1, 1}}, pass::training); }),
               Contains("batch_norm 3: training needs more than one value per channel"));
    CHECK(message_of([&] { (void)bn.forward({matrix::Zero(1, 3), {3, 1, 1}}, pass::inference); }).empty());

    batch_norm fresh(2);
    const tensor dy{matrix::Zero(2, 2), {2, 1, 1}};
    REQUIRE_THROWS_AS(fresh.backward(dy), std::logic_error);
    REQUIRE_THROWS_WITH(fresh.backward(dy), Contains("batch_norm 2: backward without a forward(x, pass::training)"));
}
