// Tests of lowbit/nn/optimizers.hpp (sgd, adam) against their formulas evaluated by hand in double:
//   SGD:  v = momentum v + g + weight_decay w;  w -= learning_rate v
//   Adam: m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//         w -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// over three steps with different gradients, for every parameter handed over (and only those).
// The optimizers compute in float: SGD is compared within a few float roundings; Adam's update
// within 3e-5 relative, because float(0.999) is 1.3e-5 away from 0.999 (the float 1 - b2 is off by
// that much, relatively). Option validation names the option and the value.
#include <lowbit/nn/optimizers.hpp>

#include "support/exception_message.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

namespace {

using Catch::Contains;
using lowbit::nn::adam;
using lowbit::nn::adam_options;
using lowbit::nn::matrix;
using lowbit::nn::parameter;
using lowbit::nn::sgd;
using lowbit::nn::sgd_options;
using lowbit_test::message_of;

constexpr double u = 0x1p-24;

parameter make_parameter(const char* name, Eigen::Index rows, Eigen::Index cols, std::mt19937_64& engine) {
    parameter p{name, matrix(rows, cols), matrix::Zero(rows, cols)};
    for (Eigen::Index i = 0; i < p.value.size(); ++i) p.value.data()[i] = float(double(engine() >> 11) * 0x1p-53 * 4 - 2);
    return p;
}

matrix gradient_like(const matrix& m, std::mt19937_64& engine, double scale) {
    matrix g(m.rows(), m.cols());
    for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = float((double(engine() >> 11) * 0x1p-53 * 2 - 1) * scale);
    return g;
}

}  // namespace

TEST_CASE("sgd: three steps follow v = momentum v + g + weight_decay w, w -= lr v") {
    std::mt19937_64 engine(101);
    for (const sgd_options o : {sgd_options{.learning_rate = 0.1, .momentum = 0.9, .weight_decay = 0.0},
                                sgd_options{.learning_rate = 0.05, .momentum = 0.5, .weight_decay = 0.01},
                                sgd_options{.learning_rate = 0.2, .momentum = 0.0, .weight_decay = 0.1}}) {
        CAPTURE(o.learning_rate, o.momentum, o.weight_decay);
        parameter a = make_parameter("a", 2, 3, engine), b = make_parameter("b", 1, 4, engine);
        parameter untouched = make_parameter("c", 1, 2, engine);
        const matrix untouched_value = untouched.value;
        sgd opt({&a, &b}, o);
        std::vector<Eigen::MatrixXd> w = {a.value.cast<double>(), b.value.cast<double>()};
        std::vector<Eigen::MatrixXd> v = {Eigen::MatrixXd::Zero(2, 3), Eigen::MatrixXd::Zero(1, 4)};
        for (int step = 0; step < 3; ++step) {
            CAPTURE(step);
            parameter* ps[] = {&a, &b};
            for (std::size_t i = 0; i < 2; ++i) {
                ps[i]->grad = gradient_like(ps[i]->value, engine, 1.0 + step);
                untouched.grad = gradient_like(untouched.value, engine, 1.0);
            }
            opt.step();
            for (std::size_t i = 0; i < 2; ++i) {
                v[i] = o.momentum * v[i] + ps[i]->grad.cast<double>() + o.weight_decay * w[i];
                w[i] = w[i] - o.learning_rate * v[i];
                // Float arithmetic: a few roundings of |w| and of lr |v| per step, accumulated.
                const Eigen::ArrayXXd tolerance = 16 * u * (w[i].array().abs() + o.learning_rate * v[i].array().abs() + 1);
                CHECK(((ps[i]->value.cast<double>() - w[i]).array().abs() <= tolerance).all());
            }
        }
        CHECK(untouched.value == untouched_value);
    }

    // set_learning_rate applies from the next step: a zero-momentum step of a unit gradient moves by it.
    parameter p{"p", matrix::Zero(1, 1), matrix::Ones(1, 1)};
    sgd opt({&p}, {.learning_rate = 0.5, .momentum = 0.0});
    opt.set_learning_rate(0.25);
    opt.step();
    CHECK(p.value(0, 0) == -0.25f);
}

TEST_CASE("adam: three steps follow the bias-corrected formula") {
    std::mt19937_64 engine(102);
    for (const adam_options o : {adam_options{}, adam_options{.learning_rate = 0.01, .beta1 = 0.5, .beta2 = 0.75, .eps = 1e-3}}) {
        CAPTURE(o.learning_rate, o.beta1, o.beta2, o.eps);
        parameter a = make_parameter("a", 3, 2, engine), b = make_parameter("b", 1, 3, engine);
        adam opt({&a, &b}, o);
        std::vector<Eigen::MatrixXd> w = {a.value.cast<double>(), b.value.cast<double>()};
        std::vector<Eigen::MatrixXd> m = {Eigen::MatrixXd::Zero(3, 2), Eigen::MatrixXd::Zero(1, 3)};
        std::vector<Eigen::MatrixXd> v = m;
        parameter* ps[] = {&a, &b};
        for (int t = 1; t <= 3; ++t) {
            CAPTURE(t);
            for (std::size_t i = 0; i < 2; ++i) {
                // Gradients over six decades, and an exact zero (no move at all).
                ps[i]->grad = gradient_like(ps[i]->value, engine, std::pow(10.0, 3 - 2 * t));
                ps[i]->grad(0, 0) = 0.0f;
            }
            b.grad(0, 1) = t == 1 ? 0.0f : b.grad(0, 1);
            std::vector<matrix> before = {a.value, b.value};
            opt.step();
            for (std::size_t i = 0; i < 2; ++i) {
                const Eigen::MatrixXd g = ps[i]->grad.cast<double>();
                m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
                v[i] = o.beta2 * v[i] + (1 - o.beta2) * g.cwiseProduct(g);
                const Eigen::ArrayXXd update = o.learning_rate * (m[i].array() / (1 - std::pow(o.beta1, t))) /
                                               ((v[i].array() / (1 - std::pow(o.beta2, t))).sqrt() + o.eps);
                w[i] = w[i] - update.matrix();
                const Eigen::ArrayXXd moved = before[i].cast<double>().array() - ps[i]->value.cast<double>().array();
                // The update within 3e-5 relative, plus the rounding of w to float.
                const Eigen::ArrayXXd tolerance = 3e-5 * update.abs() + 2 * u * before[i].cast<double>().array().abs();
                CHECK(((moved - update).abs() <= tolerance).all());
                CHECK(((ps[i]->value.cast<double>() - w[i]).array().abs() <= 1e-5 * o.learning_rate * t + 8 * u * w[i].array().abs()).all());
            }
            if (t == 1) {
                // A first step moves a parameter by lr |g| / (|g| + eps) against the gradient's sign
                // (|m_hat| = sqrt(v_hat) = |g|), whatever the gradient's size; zero gradients do not move.
                CHECK(a.value(0, 0) == before[0](0, 0));
                CHECK(b.value(0, 1) == before[1](0, 1));
                const double g11 = a.grad(1, 1);
                CHECK(double(before[0](1, 1)) - a.value(1, 1) ==
                      Approx(o.learning_rate * g11 / (std::fabs(g11) + o.eps)).epsilon(3e-5));
            }
        }
    }
}

TEST_CASE("optimizers: options are validated with their names and values") {
    parameter p{"p", matrix::Zero(1, 1), matrix::Zero(1, 1)};
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    const auto sgd_error = [&](sgd_options o) { return message_of([&] { sgd({&p}, o); }); };
    CHECK_THAT(sgd_error({.learning_rate = 0}), Contains("lowbit::nn::sgd: learning_rate = 0") && Contains("must be a positive number"));
    CHECK_THAT(sgd_error({.learning_rate = -1}), Contains("learning_rate = -1"));
    CHECK_THAT(sgd_error({.learning_rate = nan}), Contains("learning_rate = "));
    CHECK_THAT(sgd_error({.learning_rate = inf}), Contains("learning_rate = inf"));
    CHECK_THAT(sgd_error({.momentum = 1.0}), Contains("lowbit::nn::sgd: momentum = 1") && Contains("must be in [0, 1)"));
    CHECK_THAT(sgd_error({.momentum = -0.5}), Contains("momentum = -0.5"));
    CHECK_THAT(sgd_error({.weight_decay = -0.1}), Contains("weight_decay = -0.1") && Contains("must be >= 0"));
    CHECK_THAT(sgd_error({.weight_decay = nan}), Contains("weight_decay"));
    CHECK(sgd_error({.learning_rate = 1e-3, .momentum = 0.0, .weight_decay = 0.0}).empty());

    const auto adam_error = [&](adam_options o) { return message_of([&] { adam({&p}, o); }); };
    CHECK_THAT(adam_error({.learning_rate = 0}), Contains("lowbit::nn::adam: learning_rate = 0"));
    CHECK_THAT(adam_error({.beta1 = 1.0}), Contains("adam: beta1 = 1") && Contains("must be in [0, 1)"));
    CHECK_THAT(adam_error({.beta2 = -0.1}), Contains("adam: beta2 = -0.1"));
    CHECK_THAT(adam_error({.beta2 = nan}), Contains("beta2 = "));
    CHECK_THAT(adam_error({.eps = 0}), Contains("adam: eps = 0") && Contains("must be a positive number"));
    CHECK(adam_error({.beta1 = 0.0}).empty());

    sgd s({&p});
    CHECK_THAT(message_of([&] { s.set_learning_rate(-2); }), Contains("sgd: learning_rate = -2"));
    adam a({&p});
    CHECK_THAT(message_of([&] { a.set_learning_rate(0); }), Contains("adam: learning_rate = 0"));
}

// madam_optimizer: each parameter stepped by its own lowbit::madam (whose formula madam_test.cpp
// checks), so over three steps it must equal lowbit::madam run by hand on copies, bit for bit,
// with per_parameter's options going to the right parameter (here: an LNS grid and integer steps
// for one, plain Madam for the other, and a different learning rate).
TEST_CASE("madam_optimizer: one lowbit::madam per parameter, per_parameter options in order") {
    std::mt19937_64 engine(11);
    parameter w = make_parameter("conv.weight", 4, 6, engine), b = make_parameter("conv.bias", 4, 1, engine);
    const lowbit::madam_options grid{.learning_rate = 1.0 / 8, .integer_steps = true, .lns_grid = lowbit::lns8};
    const lowbit::madam_options plain{.learning_rate = 1.0 / 64};
    std::vector<float> w_ref(w.value.data(), w.value.data() + w.value.size()),
        b_ref(b.value.data(), b.value.data() + b.value.size());
    lowbit::madam mw(w_ref, grid), mb(b_ref, plain);
    auto opt = lowbit::nn::madam_optimizer::per_parameter({&w, &b}, {grid, plain});
    parameter w2 = w;  // the one-options constructor, on a copy of w
    lowbit::nn::madam_optimizer opt2({&w2}, grid);
    for (int step = 0; step < 3; ++step) {
        for (parameter* p : {&w, &b, &w2})
            for (Eigen::Index i = 0; i < p->grad.size(); ++i) p->grad.data()[i] = float(double(engine() >> 11) * 0x1p-53 - 0.5);
        w2.grad = w.grad;
        const std::vector<float> gw(w.grad.data(), w.grad.data() + w.grad.size()),
            gb(b.grad.data(), b.grad.data() + b.grad.size());
        mw.step(w_ref, gw);
        mb.step(b_ref, gb);
        opt.step();
        opt2.step();
        for (Eigen::Index i = 0; i < w.value.size(); ++i) {
            CHECK(w.value.data()[i] == w_ref[std::size_t(i)]);
            CHECK(w2.value.data()[i] == w_ref[std::size_t(i)]);
        }
        for (Eigen::Index i = 0; i < b.value.size(); ++i) CHECK(b.value.data()[i] == b_ref[std::size_t(i)]);
    }
    CHECK_THAT(message_of([&] { (void)lowbit::nn::madam_optimizer::per_parameter({&w, &b}, {grid}); }),
               Contains("1 options for 2 parameters"));
    CHECK_THAT(message_of([&] {
                   (void)lowbit::nn::madam_optimizer::per_parameter({&w, &b}, {grid, {.learning_rate = -1}});
               }),
               Contains("parameter 1 ('conv.bias')") && Contains("learning_rate"));
}
