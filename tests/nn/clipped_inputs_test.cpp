// Tests of lowbit/nn/clipped_inputs.hpp, the clipping of gemm_datapath.hpp and
// lowbit/nn/clipping_calibration.hpp.
//  * clip_operand: each rule's scale is the library's calibration of the tensor, or of each row
//    (per channel): lowbit::octav, calibrate_max, calibrate_percentile, or the fixed scales; the
//    values are quantize_clipped's (MPFR-checked in tests/scaling) and the factors the clip
//    estimators' (tests/scaling/clip_gradients_test.cpp); channels without a value get scale 0.
//  * A linear layer on clipped operands, trained one step: its per-step activation scale is
//    lowbit::octav() of the GEMM's operand (the inputs, transposed) and its weight scales those of
//    each row; its output, dL/dW and dL/dx against naive double loops written from the definitions
//    (Y = X_q W_q^T + b; dW = mad(W, s_w) * dY^T X_q; dX = pwl(X, s_x) * dY W_q).
//  * With a spec and a fine-grained gradient mode: the factors multiply lowbit::gemm_backward's
//    gradients of the kept operands.
//  * calibrate_clipping: fixed scales equal to the mean of the per-batch OCTAV scales.
//  * Every refusal names what was wrong.
#include <lowbit/nn/clipped_inputs.hpp>
#include <lowbit/nn/clipping_calibration.hpp>
#include <lowbit/nn/gemm_datapath.hpp>
#include <lowbit/nn/linear.hpp>
#include <lowbit/nn/network.hpp>
#include <lowbit/nn/relu.hpp>

#include "support/random_floats.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace nn = lowbit::nn;
using lowbit::clip_gradient;
using lowbit::signedness;
using nn::clip_quantizer;
using nn::clip_scale_rule;
using nn::matrix;

// Heavy-tailed values (a Student-t with 3 degrees of freedom), so that clipping matters, with
// some exact zeros.
matrix heavy_tailed(Eigen::Index rows, Eigen::Index cols, unsigned seed, bool non_negative = false) {
    std::mt19937_64 engine(seed);
    std::student_t_distribution<double> t(3);
    matrix m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) {
        const double v = i % 11 == 0 ? 0.0 : t(engine) * 0.1;
        m.data()[i] = float(non_negative ? std::fabs(v) : v);
    }
    return m;
}

std::span<const float> row_of(const matrix& m, Eigen::Index r) {
    return {m.data() + r * m.cols(), std::size_t(m.cols())};
}

std::string message_of(auto&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "no exception";
}

void check_values_and_factors(const matrix& m, const nn::clipped_operand& q, const clip_quantizer& c) {
    for (Eigen::Index r = 0; r < m.rows(); ++r) {
        const double s = q.scales[std::size_t(c.per_channel ? r : 0)];
        std::vector<float> want(std::size_t(m.cols()), 0.0f);
        if (s > 0) lowbit::quantize_clipped(row_of(m, r), s, c.bits, c.sign, want);
        for (Eigen::Index j = 0; j < m.cols(); ++j) {
            CAPTURE(r, j, s, m(r, j));
            REQUIRE(q.values(r, j) == want[std::size_t(j)]);
            const double x = m(r, j);
            const double factor = c.gradient == clip_gradient::ste   ? 1.0
                                  : std::fabs(x) <= s                ? 1.0
                                  : c.gradient == clip_gradient::pwl ? 0.0
                                                                     : s / std::fabs(x);
            if (c.gradient == clip_gradient::ste) REQUIRE(q.factors.size() == 0);
            else REQUIRE(q.factors(r, j) == float(factor));
        }
    }
}

}  // namespace

TEST_CASE("clip_operand: each rule's scale is the library's calibration of the tensor or of each channel") {
    const matrix w = heavy_tailed(6, 300, 1);
    for (const bool per_channel : {false, true})
        for (const int bits : {2, 4, 8})
            for (const clip_scale_rule rule : {clip_scale_rule::octav, clip_scale_rule::max, clip_scale_rule::percentile})
                for (const clip_gradient g : {clip_gradient::ste, clip_gradient::pwl, clip_gradient::mad}) {
                    const clip_quantizer c{.bits = bits, .per_channel = per_channel, .rule = rule, .percentile = 99.0,
                                           .gradient = g};
                    CAPTURE(per_channel, bits, nn::to_string(rule), lowbit::to_string(g));
                    const nn::clipped_operand q = nn::clip_operand(w, c, true, "w");
                    REQUIRE(q.scales.size() == std::size_t(per_channel ? w.rows() : 1));
                    for (std::size_t i = 0; i < q.scales.size(); ++i) {
                        const std::span<const float> x =
                            per_channel ? row_of(w, Eigen::Index(i)) : std::span<const float>(w.data(), std::size_t(w.size()));
                        const double want = rule == clip_scale_rule::octav ? lowbit::octav(x, bits, c.sign).scale
                                            : rule == clip_scale_rule::max ? lowbit::calibrate_max(x)
                                                                           : lowbit::calibrate_percentile(x, 99.0);
                        CHECK(q.scales[i] == want);
                    }
                    check_values_and_factors(w, q, c);
                }
    // the paper's Newton step and the iteration count reach lowbit::octav as given
    const clip_quantizer paper{.bits = 3, .iterations = 4, .step = lowbit::octav_step::paper};
    CHECK(nn::clip_operand(w, paper, false, "w").scales[0] ==
          lowbit::octav(std::span<const float>(w.data(), std::size_t(w.size())), 3, signedness::signed_values, 4, 0,
                        lowbit::octav_step::paper)
              .scale);
    // fixed: the given scales; without factors when not asked for
    const clip_quantizer fixed{.bits = 4, .per_channel = true, .rule = clip_scale_rule::fixed,
                               .scales = {0.1, 0.2, 0.05, 1.0, 0.3, 0.01}, .gradient = clip_gradient::mad};
    const nn::clipped_operand q = nn::clip_operand(w, fixed, true, "w");
    CHECK(q.scales == fixed.scales);
    check_values_and_factors(w, q, fixed);
    CHECK(nn::clip_operand(w, fixed, false, "w").factors.size() == 0);
}

TEST_CASE("clip_operand: a channel without a value to calibrate on has scale 0 and quantizes to zeros") {
    matrix w = heavy_tailed(3, 50, 2);
    w.row(1).setZero();
    for (const clip_scale_rule rule : {clip_scale_rule::octav, clip_scale_rule::max, clip_scale_rule::percentile}) {
        const clip_quantizer c{.bits = 4, .per_channel = true, .rule = rule, .gradient = clip_gradient::pwl};
        const nn::clipped_operand q = nn::clip_operand(w, c, true, "w");
        CHECK(q.scales[1] == 0);
        CHECK(q.scales[0] > 0);
        check_values_and_factors(w, q, c);
    }
    // unsigned, with no positive value: every value lands on 0, and pwl passes no gradient to a negative one
    matrix negative = -heavy_tailed(2, 40, 3, true);
    const clip_quantizer u{.bits = 4, .sign = signedness::unsigned_values, .gradient = clip_gradient::pwl};
    const nn::clipped_operand q = nn::clip_operand(negative, u, true, "x");
    CHECK(q.scales[0] == 0);
    CHECK(q.values.isZero());
    CHECK(q.factors.minCoeff() == 0);
}

TEST_CASE("a linear layer on clipped operands: per-step OCTAV scales, output and gradients against naive loops") {
    const int inputs = 40, outputs = 5, batch = 30;
    nn::linear l(inputs, outputs, 7);
    l.bias().value.setRandom();
    const clip_quantizer weights{.bits = 4, .per_channel = true, .gradient = clip_gradient::mad};
    const clip_quantizer activations{.bits = 2, .sign = signedness::unsigned_values, .gradient = clip_gradient::pwl};
    l.datapath.clipping = nn::clipped_inputs{.weights = weights, .activations = activations};
    // inputs with negatives, so that pwl's cut of the unsigned quantizer's zeros shows too
    const matrix x = heavy_tailed(batch, inputs, 4) * 10;
    const nn::tensor y = l.forward({x, {inputs, 1, 1}}, nn::pass::training);

    // the scales of this step: OCTAV of the GEMM's operands (X is the inputs transposed, K x N)
    const matrix xt = x.transpose();
    const matrix& w = l.weight().value;
    const nn::clip_scales& s = l.last_clip_scales();
    REQUIRE(s.activations.size() == 1);
    CHECK(s.activations[0] ==
          lowbit::octav(std::span<const float>(xt.data(), std::size_t(xt.size())), 2, signedness::unsigned_values).scale);
    REQUIRE(s.weights.size() == std::size_t(outputs));
    for (int o = 0; o < outputs; ++o) CHECK(s.weights[std::size_t(o)] == lowbit::octav(row_of(w, o), 4, signedness::signed_values).scale);

    // quantized operands from the scales, independently of the layer (quantize_clipped is MPFR-checked)
    matrix wq(outputs, inputs), xq(batch, inputs);
    for (int o = 0; o < outputs; ++o)
        lowbit::quantize_clipped(row_of(w, o), s.weights[std::size_t(o)], 4, signedness::signed_values,
                                 std::span<float>(wq.data() + o * inputs, inputs));
    lowbit::quantize_clipped(std::span<const float>(x.data(), std::size_t(x.size())), s.activations[0], 2,
                             signedness::unsigned_values, std::span<float>(xq.data(), std::size_t(xq.size())));
    for (int n = 0; n < batch; ++n)
        for (int o = 0; o < outputs; ++o) {
            double sum = l.bias().value(0, o);
            for (int k = 0; k < inputs; ++k) sum += double(xq(n, k)) * double(wq(o, k));
            CHECK(y.values(n, o) == Approx(sum).margin(1e-5));
        }

    matrix dy(batch, outputs);
    dy.setRandom();
    l.weight().grad.setZero();
    std::size_t attenuated = 0;
    const nn::tensor dx = l.backward({dy, y.shape});
    for (int o = 0; o < outputs; ++o)
        for (int k = 0; k < inputs; ++k) {
            const double sw = s.weights[std::size_t(o)], a = std::fabs(double(w(o, k)));
            double sum = 0;
            for (int n = 0; n < batch; ++n) sum += double(dy(n, o)) * double(xq(n, k));
            const double mad = a <= sw ? 1.0 : sw / a;
            attenuated += a > sw;
            CHECK(l.weight().grad(o, k) == Approx(mad * sum).margin(1e-5));
        }
    CHECK(attenuated >= 1);  // and clipped weights
    std::size_t cut = 0;
    for (int n = 0; n < batch; ++n)
        for (int k = 0; k < inputs; ++k) {
            double sum = 0;
            for (int o = 0; o < outputs; ++o) sum += double(dy(n, o)) * double(wq(o, k));
            const bool inside = std::fabs(double(x(n, k))) <= s.activations[0];
            cut += !inside;
            CHECK(dx.values(n, k) == Approx(inside ? sum : 0.0).margin(1e-5));
        }
    CHECK(cut >= 5);  // the test saw clipped activations (7 of 1200)
}

TEST_CASE("clip factors multiply the fine-grained gradients of a spec's accumulation") {
    const matrix w = heavy_tailed(4, 64, 5), x = heavy_tailed(64, 6, 6, true);
    const lowbit::quantizer fp16 =
        lowbit::float_quantizer{.format = lowbit::float_format{.exp_bits = 5, .man_bits = 4}};
    nn::gemm_datapath d{.spec = lowbit::gemm_spec{.accumulator = fp16, .chunk = 8, .chunk_accumulator = fp16},
                        .gradient = lowbit::gradient_mode::immediate};
    d.clipping = nn::clipped_inputs{.weights = {.bits = 4, .per_channel = true, .gradient = clip_gradient::mad},
                                    .activations = {.bits = 4, .sign = signedness::unsigned_values,
                                                    .rule = clip_scale_rule::max, .gradient = clip_gradient::pwl}};
    nn::gemm_operands kept;
    nn::clip_scales scales;
    const matrix c = nn::datapath_gemm(w, x, d, &kept, &scales);
    // the GEMM ran on the clipped operands with the spec
    const nn::clipped_operand qw = nn::clip_operand(w, d.clipping->weights, true, "w");
    const nn::clipped_operand qx = nn::clip_operand(x, d.clipping->activations, true, "x");
    CHECK(kept.weights == qw.values);
    CHECK(kept.activations == qx.values);
    matrix direct(4, 6);
    lowbit::gemm(qw.values, qx.values, direct, *d.spec);
    CHECK(c == direct);
    matrix dc(4, 6);
    dc.setRandom();
    const auto g = nn::operand_gradients(kept, dc, d);
    REQUIRE(g);
    const lowbit::gemm_gradients fine = lowbit::gemm_backward(qw.values, qx.values, dc, *d.spec, d.gradient);
    CHECK(g->a == matrix(fine.a.array() * qw.factors.array()));
    CHECK(g->b == matrix(fine.b.array() * qx.factors.array()));
    CHECK(qw.factors.minCoeff() < 1);  // mad did attenuate something
}

TEST_CASE("calibrate_clipping fixes each layer's scales at the mean of the per-batch scales") {
    nn::network net({20, 1, 1});
    net.add("fc1", nn::linear(20, 8, 1));
    net.add("relu", nn::relu{});
    net.add("fc2", nn::linear(8, 3, 2));
    nn::gemm_datapath d;
    d.clipping = nn::clipped_inputs{.weights = {.bits = 4, .per_channel = true},
                                    .activations = {.bits = 4, .sign = signedness::unsigned_values}};
    net.set_datapath(d);
    const std::vector<nn::tensor> batches{{heavy_tailed(16, 20, 8, true), {20, 1, 1}},
                                          {heavy_tailed(16, 20, 9, true) * 3, {20, 1, 1}}};
    auto& fc1 = dynamic_cast<nn::linear&>(net.at("fc1"));
    std::vector<double> per_batch;
    for (const nn::tensor& b : batches) {
        const matrix xt = b.values.transpose();
        per_batch.push_back(
            lowbit::octav(std::span<const float>(xt.data(), std::size_t(xt.size())), 4, signedness::unsigned_values).scale);
    }
    nn::calibrate_clipping(net, batches);
    const nn::clipped_inputs& c = *fc1.datapath.clipping;
    CHECK(c.activations.rule == clip_scale_rule::fixed);
    REQUIRE(c.activations.scales.size() == 1);
    CHECK(c.activations.scales[0] == Approx((per_batch[0] + per_batch[1]) / 2).epsilon(1e-15));
    CHECK(c.weights.rule == clip_scale_rule::fixed);
    REQUIRE(c.weights.scales.size() == 8);
    for (int o = 0; o < 8; ++o)
        CHECK(c.weights.scales[std::size_t(o)] == lowbit::octav(row_of(fc1.weight().value, o), 4, signedness::signed_values).scale);
    CHECK(dynamic_cast<nn::linear&>(net.at("fc2")).datapath.clipping->activations.rule == clip_scale_rule::fixed);
    // a fixed layer now quantizes with those scales, whatever the batch
    (void)net.forward(batches[1], nn::pass::inference);
    CHECK(fc1.last_clip_scales().activations == c.activations.scales);

    nn::network plain({20, 1, 1});
    plain.add("fc", nn::linear(20, 3, 1));
    CHECK(message_of([&] { nn::calibrate_clipping(plain, batches); }) ==
          "lowbit::nn::calibrate_clipping: no conv2d or linear layer of the network has datapath.clipping set");
    CHECK(message_of([&] { nn::calibrate_clipping(net, std::span<const nn::tensor>()); }) ==
          "lowbit::nn::calibrate_clipping: no batch to calibrate on");
}

TEST_CASE("clipped operands: every refusal names what was wrong") {
    const matrix w = heavy_tailed(3, 8, 10), x = heavy_tailed(8, 4, 11);
    const auto run = [&](const nn::gemm_datapath& d, const matrix& xs) {
        return message_of([&] { (void)nn::datapath_gemm(w, xs, d); });
    };
    nn::gemm_datapath d;
    d.clipping = nn::clipped_inputs{};
    matrix bad = x;
    bad(2, 3) = NAN;
    CHECK(run(d, bad) == "lowbit::nn: gemm_datapath: clipping.activations: the value at row 2, column 3 is nan: "
                         "a clipping scale needs finite values");
    nn::gemm_datapath both = d;
    both.blocks = nn::block_scaled_inputs{};
    CHECK(run(both, x) == "lowbit::nn::gemm_datapath: blocks and clipping are both set: choose one way to quantize "
                          "the operands");
    nn::gemm_datapath quantized = d;
    quantized.weights = lowbit::nn::range_biased_float{};
    CHECK(run(quantized, x).starts_with("lowbit::nn::gemm_datapath: clipping and weights/activations are both set"));
    nn::gemm_datapath in_spec = d;
    in_spec.spec = lowbit::gemm_spec{.input_a = lowbit::float_quantizer{.format = lowbit::float_format{}}};
    CHECK(run(in_spec, x).starts_with("lowbit::nn::gemm_datapath: clipping and spec.input_a/input_b are both set"));
    nn::gemm_datapath per_channel = d;
    per_channel.clipping->activations.per_channel = true;
    CHECK(run(per_channel, x).starts_with("lowbit::nn::gemm_datapath: clipping.activations.per_channel is set"));
    const auto field = [&](clip_quantizer q) {
        nn::gemm_datapath e = d;
        e.clipping->weights = std::move(q);
        return run(e, x);
    };
    CHECK(field({.bits = 0}) == "lowbit::nn: gemm_datapath: clipping.weights.bits = 0 must be in [1, 32]");
    CHECK(field({.rule = clip_scale_rule::percentile, .percentile = 0}) ==
          "lowbit::nn: gemm_datapath: clipping.weights.percentile = 0 must be in (0, 100]");
    CHECK(field({.iterations = -1}) == "lowbit::nn: gemm_datapath: clipping.weights.iterations = -1 must be at least 0");
    CHECK(field({.rule = clip_scale_rule::fixed}) ==
          "lowbit::nn: gemm_datapath: clipping.weights.scales is empty: rule = fixed needs the scales (one, or one "
          "per output channel)");
    CHECK(field({.scales = {1.0}}) ==
          "lowbit::nn: gemm_datapath: clipping.weights.scales is set but rule = octav: set rule = fixed to use them");
    CHECK(field({.rule = clip_scale_rule::fixed, .scales = {-1.0}}) ==
          "lowbit::nn: gemm_datapath: clipping.weights.scales[0] = -1 must be finite and not negative");
    CHECK(field({.per_channel = true, .rule = clip_scale_rule::fixed, .scales = {1.0, 2.0}}) ==
          "lowbit::nn: gemm_datapath: clipping.weights.scales has 2 scales for 3 output channels");

    nn::linear l(8, 3);
    l.datapath = d;
    l.set_active({0, 2}, {});
    CHECK(message_of([&] { (void)l.forward({x.transpose(), {8, 1, 1}}, nn::pass::training); })
              .find("training clipped operands with skipped work (set_active) is not supported") != std::string::npos);
}
