// Tests of lowbit/nn/linear.hpp.
//  * Forward on the spec-less fp32 datapath against y = W x + b in double loops, within the float
//    error bound of a K-term dot product.
//  * With a low-precision spec (M7E4 products and accumulator toward zero, chunks of 16,
//    range-biased FP8 inputs) the output is lowbit::gemm(W, X^T, spec with the input quantizers that
//    range_biased_float resolves; gemm_datapath_test.cpp checks those against a brute force),
//    transposed, plus the bias, bit for bit; gemm_stats are those of lowbit::gemm and add up.
//  * Backward (dL/dx, dL/dW, dL/db) against central finite differences of L = sum R .* y, R fixed
//    random coefficients, on the spec-less fp32 datapath. L is affine in each variable, so the only
//    error of a difference quotient is the float rounding of the outputs, bounded here from the
//    magnitudes; with input quantizers the gradients are the straight-through ones of the quantized
//    operands (naive formulas in double). Gradients add up over backward calls.
//  * He-uniform initialisation: within +-sqrt(6 / inputs), by seed, with the variance of a uniform.
//  * Errors: constructor arguments, input shapes, backward without a training forward.
//  * bias_as_addend: a worked case where the bias swamps the products it starts the chain of, the
//    output bit for bit lowbit::gemm_add(W, X^T, b 1^T) (with skipped outputs: on the active
//    rows), the same events, the STE bias gradient, and the datapaths that refuse it.
#include <lowbit/nn/linear.hpp>

#include <lowbit/rounding/quantize.hpp>

#include "support/exception_message.hpp"
#include "support/finite_difference.hpp"
#include "support/random_floats.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using lowbit_test::rng;
using lowbit_test::random_matrix;
using lowbit_test::same_bits;

using Catch::Contains;
using lowbit::float_quantizer;
using lowbit::gemm_spec;
using lowbit::gemm_stats;
using lowbit::rounding;
using lowbit::nn::gemm_datapath;
using lowbit::nn::linear;
using lowbit::nn::matrix;
using lowbit::nn::pass;
using lowbit::nn::range_biased_float;
using lowbit::nn::shape3;
using lowbit::nn::tensor;
using lowbit_test::message_of;

constexpr double u = 0x1p-24;  // unit roundoff of float




tensor features(const matrix& values) { return {values, {int(values.cols()), 1, 1}}; }

gemm_spec low_precision_spec() {
    const float_quantizer q_prod{.format = lowbit::lba_m7e4_prod, .mode = rounding::toward_zero};
    const float_quantizer q_acc{.format = lowbit::lba_m7e4_acc, .mode = rounding::toward_zero};
    return {.product = q_prod, .accumulator = q_acc, .chunk = 16, .chunk_accumulator = q_acc};
}

// y = x W^T + b, in double.
Eigen::MatrixXd naive_forward(const matrix& x, const matrix& w, const matrix& b) {
    Eigen::MatrixXd y(x.rows(), w.rows());
    for (Eigen::Index n = 0; n < x.rows(); ++n)
        for (Eigen::Index o = 0; o < w.rows(); ++o) {
            double s = b(0, o);
            for (Eigen::Index i = 0; i < w.cols(); ++i) s += double(w(o, i)) * double(x(n, i));
            y(n, o) = s;
        }
    return y;
}

// Per output, the bound (K + 2) u (sum_i |W_oi x_ni| + |b_o|) on the error of the float forward
// (a K-term float dot product, then the bias added in float).
Eigen::MatrixXd forward_error_bound(const matrix& x, const matrix& w, const matrix& b) {
    Eigen::MatrixXd e(x.rows(), w.rows());
    for (Eigen::Index n = 0; n < x.rows(); ++n)
        for (Eigen::Index o = 0; o < w.rows(); ++o) {
            double s = std::fabs(double(b(0, o)));
            for (Eigen::Index i = 0; i < w.cols(); ++i) s += std::fabs(double(w(o, i)) * double(x(n, i)));
            e(n, o) = double(w.cols() + 2) * u * s;
        }
    return e;
}

double weighted_sum(const matrix& y, const matrix& r) {
    return (y.cast<double>().array() * r.cast<double>().array()).sum();
}

}  // namespace

TEST_CASE("linear: forward on the fp32 datapath is W x + b") {
    rng r(31);
    for (const auto& [inputs, outputs, batch] : std::vector<std::array<int, 3>>{{13, 7, 5}, {1, 1, 1}, {64, 3, 9}}) {
        CAPTURE(inputs, outputs, batch);
        linear l(inputs, outputs, 3);
        l.bias().value = random_matrix(1, outputs, r);
        const matrix x = random_matrix(batch, inputs, r);
        for (const pass p : {pass::inference, pass::training}) {
            const tensor y = l.forward(features(x), p);
            CHECK(y.shape == shape3{outputs, 1, 1});
            REQUIRE(y.values.rows() == batch);
            REQUIRE(y.values.cols() == outputs);
            const Eigen::MatrixXd expected = naive_forward(x, l.weight().value, l.bias().value);
            const Eigen::MatrixXd bound = forward_error_bound(x, l.weight().value, l.bias().value);
            int outside = 0;
            for (int n = 0; n < batch; ++n)
                for (int o = 0; o < outputs; ++o) outside += std::fabs(double(y.values(n, o)) - expected(n, o)) > bound(n, o);
            CHECK(outside == 0);
        }
        CHECK(l.output_shape({inputs, 1, 1}) == shape3{outputs, 1, 1});
    }
}

TEST_CASE("linear: He-uniform initial weights, zero bias, fixed by the seed") {
    const linear a(300, 200, 7), b(300, 200, 7), c(300, 200, 8);
    linear ac = a, bc = b, cc = c;
    CHECK(same_bits(ac.weight().value, bc.weight().value));
    CHECK_FALSE(same_bits(ac.weight().value, cc.weight().value));
    CHECK(ac.bias().value.isZero());
    CHECK(ac.weight().grad.isZero());
    CHECK(ac.bias().grad.isZero());
    const matrix& w = ac.weight().value;
    REQUIRE(w.rows() == 200);
    REQUIRE(w.cols() == 300);
    const double limit = std::sqrt(6.0 / 300);
    CHECK(w.cwiseAbs().maxCoeff() <= limit);
    CHECK(w.cwiseAbs().maxCoeff() > 0.99 * limit);
    // Uniform on [-limit, limit]: mean 0, variance limit^2 / 3 = 2 / fan_in; 60000 samples put the
    // sample mean within 4 standard errors (4 limit / sqrt(3 * 60000)) and the variance within 2%.
    const double n = double(w.size());
    const double mean = w.cast<double>().sum() / n;
    const double var = (w.cast<double>().array() - mean).square().sum() / n;
    CHECK(std::fabs(mean) < 4 * limit / std::sqrt(3 * n));
    CHECK(var == Approx(limit * limit / 3).epsilon(0.02));
    CHECK(ac.parameters().size() == 2);
    CHECK(ac.parameters()[0]->name == "weight");
    CHECK(ac.parameters()[1]->name == "bias");
    CHECK(ac.describe() == "linear 300->200");
}

TEST_CASE("linear: with a low-precision spec the output is lowbit::gemm(W, X^T) + b, bit for bit") {
    rng r(32);
    const int inputs = 40, outputs = 6, batch = 7;
    for (const rounding mode : {rounding::nearest_even, rounding::stochastic}) {
        CAPTURE(int(mode));
        linear l(inputs, outputs, 11);
        l.bias().value = random_matrix(1, outputs, r, -0.5, 0.5);
        const range_biased_float qw{.mode = mode, .seed = 1};
        const range_biased_float qx{.exp_bits = 4, .man_bits = 3, .mode = mode, .seed = 2};
        l.datapath = gemm_datapath{.spec = low_precision_spec(), .weights = qw, .activations = qx};
        matrix x = random_matrix(batch, inputs, r, -0.5, 2.5);
        x = x.cwiseMax(0.0f);  // post-ReLU activations, with zeros

        const matrix& w = l.weight().value;
        const matrix xt = x.transpose();
        gemm_spec spec = low_precision_spec();
        spec.input_a = qw.for_tensor(std::span<const float>(w.data(), std::size_t(w.size())));
        spec.input_b = qx.for_tensor(std::span<const float>(xt.data(), std::size_t(xt.size())));
        gemm_stats reference_stats;
        const Eigen::MatrixXf c = lowbit::gemm(w, xt, spec, &reference_stats);  // outputs x batch
        matrix expected(batch, outputs);
        for (int n = 0; n < batch; ++n)
            for (int o = 0; o < outputs; ++o) expected(n, o) = c(o, n) + l.bias().value(0, o);  // float add

        for (const pass p : {pass::inference, pass::training}) CHECK(same_bits(l.forward(features(x), p).values, expected));
        // The low-precision datapath really differs from fp32 here.
        const Eigen::MatrixXd fp = naive_forward(x, w, l.bias().value);
        CHECK((fp - expected.cast<double>()).cwiseAbs().maxCoeff() > 1e-3);

        gemm_stats stats;
        l.datapath.stats = &stats;
        CHECK(same_bits(l.forward(features(x), pass::training).values, expected));  // exact path, same values
        CHECK(stats.macs == std::uint64_t(inputs) * outputs * batch);
        CHECK(stats.macs == reference_stats.macs);
        CHECK(stats.zero_operand == reference_stats.zero_operand);
        CHECK(stats.zero_operand > 0);
        CHECK(stats.swamps == reference_stats.swamps);
        CHECK(stats.inexact_additions == reference_stats.inexact_additions);
        CHECK(stats.product_underflows == reference_stats.product_underflows);
        (void)l.forward(features(x), pass::inference);
        CHECK(stats.macs == 2 * reference_stats.macs);
        CHECK(stats.inexact_additions == 2 * reference_stats.inexact_additions);
    }
}

TEST_CASE("linear: backward matches central finite differences of sum R .* y") {
    rng r(33);
    const int inputs = 9, outputs = 5, batch = 4;
    linear l(inputs, outputs, 5);
    l.bias().value = random_matrix(1, outputs, r);
    const matrix x = random_matrix(batch, inputs, r);
    const matrix coeff = random_matrix(batch, outputs, r);  // R: dL/dy

    (void)l.forward(features(x), pass::training);
    const tensor dx = l.backward(features(coeff));
    CHECK(dx.shape == shape3{inputs, 1, 1});
    REQUIRE(dx.values.rows() == batch);
    REQUIRE(dx.values.cols() == inputs);
    const matrix dw = l.weight().grad, db = l.bias().grad;

    // L(theta) and the bound on its rounding error (every output within its forward bound).
    matrix xv = x;
    const auto loss = [&] { return weighted_sum(l.forward(features(xv), pass::inference).values, coeff); };
    const auto loss_error = [&] {
        return (forward_error_bound(xv, l.weight().value, l.bias().value).array() * coeff.cast<double>().array().abs()).sum();
    };
    lowbit_test::central_difference_check check_variable{loss, loss_error};
    for (Eigen::Index i = 0; i < xv.size(); ++i) check_variable(xv.data()[i], dx.values.data()[i], "dx", i);
    for (Eigen::Index i = 0; i < dw.size(); ++i) check_variable(l.weight().value.data()[i], dw.data()[i], "dW", i);
    for (Eigen::Index i = 0; i < db.size(); ++i) check_variable(l.bias().value.data()[i], db.data()[i], "db", i);
    CHECK(check_variable.checked == batch * inputs + outputs * inputs + outputs);
    CHECK(check_variable.outside == 0);

    // Gradients add up over backward calls (network::zero_grad clears them).
    (void)l.forward(features(x), pass::training);
    (void)l.backward(features(coeff));
    CHECK((l.weight().grad - 2 * dw).cwiseAbs().maxCoeff() <= 4 * u * dw.cwiseAbs().maxCoeff());
    CHECK((l.bias().grad - 2 * db).cwiseAbs().maxCoeff() <= 4 * u * db.cwiseAbs().maxCoeff());
}

TEST_CASE("linear: with input quantizers, backward uses the quantized operands (straight-through)") {
    rng r(34);
    const int inputs = 12, outputs = 4, batch = 3;
    linear l(inputs, outputs, 9);
    const range_biased_float q{.exp_bits = 2, .man_bits = 1};  // coarse: W_q and X_q differ from W, X
    l.datapath = gemm_datapath{.spec = std::nullopt, .weights = q, .activations = q};
    const matrix x = random_matrix(batch, inputs, r);
    const matrix coeff = random_matrix(batch, outputs, r);
    const matrix w = l.weight().value;
    const auto quantized = [](const matrix& m, const range_biased_float& rb) {
        const lowbit::float_format f = rb.format_for(double(m.cwiseAbs().maxCoeff()));
        matrix out(m.rows(), m.cols());
        for (Eigen::Index i = 0; i < m.size(); ++i)
            out.data()[i] = lowbit::quantize(m.data()[i], f, rb.mode, lowbit::overflow::saturate);
        return out;
    };
    const matrix wq = quantized(w, q), xq = quantized(x, q);
    REQUIRE((wq - w).cwiseAbs().maxCoeff() > 0.01f);
    REQUIRE((xq - x).cwiseAbs().maxCoeff() > 0.01f);

    (void)l.forward(features(x), pass::training);
    const tensor dx = l.backward(features(coeff));
    // dL/dx = R W_q, dL/dW = R^T X_q, dL/db = column sums of R, in double; float results within
    // (terms + 1) u of the sum of magnitudes.
    const auto check = [](const matrix& got, const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
        const Eigen::MatrixXd exact = a * b;
        const Eigen::MatrixXd magnitude = a.cwiseAbs() * b.cwiseAbs();
        int outside = 0;
        for (Eigen::Index i = 0; i < exact.rows(); ++i)
            for (Eigen::Index j = 0; j < exact.cols(); ++j)
                outside += std::fabs(double(got(i, j)) - exact(i, j)) > double(a.cols() + 1) * u * magnitude(i, j);
        return outside;
    };
    CHECK(check(dx.values, coeff.cast<double>(), wq.cast<double>()) == 0);
    CHECK(check(l.weight().grad, coeff.cast<double>().transpose(), xq.cast<double>()) == 0);
    CHECK(check(l.bias().grad, Eigen::MatrixXd::Ones(1, batch), coeff.cast<double>()) == 0);
    // ... and not those of the unquantized operands.
    CHECK(check(dx.values, coeff.cast<double>(), w.cast<double>()) > 0);
}

TEST_CASE("linear: bad arguments and shapes are rejected with messages") {
    CHECK_THAT(message_of([] { linear(0, 3); }), Contains("lowbit::nn::linear: inputs = 0, outputs = 3"));
    CHECK_THAT(message_of([] { linear(4, -1); }), Contains("outputs = -1: both must be >= 1"));

    linear l(6, 2);
    CHECK_THAT(message_of([&] { (void)l.output_shape({2, 3, 1}); }),
               Contains("linear 6->2: input shape 2 x 3 x 1 is not 6 x 1 x 1") && Contains("flatten"));
    CHECK_THAT(message_of([&] { (void)l.forward(tensor{matrix::Zero(2, 6), {2, 3, 1}}, pass::inference); }),
               Contains("linear 6->2: input is 2 x 3 x 1") && Contains("expects 6 x 1 x 1"));
    CHECK_THAT(message_of([&] { (void)l.forward(tensor{matrix::Zero(2, 5), {6, 1, 1}}, pass::inference); }),
               Contains("(5 values per sample)"));

    // backward needs a training forward before it.
    linear fresh(6, 2);
    REQUIRE_THROWS_AS(fresh.backward(features(matrix::Zero(1, 2))), std::logic_error);
    REQUIRE_THROWS_WITH(fresh.backward(features(matrix::Zero(1, 2))),
                        Contains("linear 6->2: backward without a forward(x, pass::training)"));
    (void)fresh.forward(features(matrix::Zero(1, 6)), pass::training);
    CHECK_NOTHROW(fresh.backward(features(matrix::Zero(1, 2))));
    (void)fresh.forward(features(matrix::Zero(1, 6)), pass::inference);
    CHECK_THROWS_WITH(fresh.backward(features(matrix::Zero(1, 2))), Contains("backward without a forward"));
}

TEST_CASE("linear: fine-grained gradients are lowbit::gemm_backward of the forward's operands and spec") {
    rng r(35);
    const int inputs = 70, outputs = 5, batch = 67;  // (a ragged second block of 64 columns)
    // An 8-bit-ish accumulator (M3E4, flush and saturate) that swamps often.
    const lowbit::float_format m3e4{.exp_bits = 4, .man_bits = 3, .bias = 7, .subnormals = false,
                                    .specials = lowbit::special_values::none};
    const float_quantizer q_acc{.format = m3e4, .on_overflow = lowbit::overflow::saturate};
    const gemm_spec spec{.product = float_quantizer{.format = lowbit::lba_m7e4_prod}, .accumulator = q_acc,
                         .chunk = 16, .chunk_accumulator = q_acc};
    const range_biased_float qw{}, qx{.exp_bits = 4, .man_bits = 3};
    const matrix x = random_matrix(batch, inputs, r, -0.5, 2.5).cwiseMax(0.0f);
    const matrix dy = random_matrix(batch, outputs, r);
    for (const lowbit::gradient_mode mode : {lowbit::gradient_mode::overflow_only, lowbit::gradient_mode::immediate,
                                             lowbit::gradient_mode::recursive}) {
        CAPTURE(to_string(mode));
        linear l(inputs, outputs, 11);
        l.weight().value *= 64.0f;  // sums beyond M3E4's largest value (480): saturations too
        l.datapath = gemm_datapath{.spec = spec, .weights = qw, .activations = qx, .gradient = mode};
        (void)l.forward(features(x), pass::training);
        const tensor dx = l.backward(features(dy));

        // The forward's operands and spec, resolved independently of the layer.
        const matrix& w = l.weight().value;
        const matrix xt = x.transpose();
        gemm_spec resolved = spec;
        resolved.input_a = qw.for_tensor(std::span<const float>(w.data(), std::size_t(w.size())));
        resolved.input_b = qx.for_tensor(std::span<const float>(xt.data(), std::size_t(xt.size())));
        const Eigen::MatrixXf dc = dy.transpose();  // outputs x batch
        const lowbit::gemm_gradients g = lowbit::gemm_backward(w, xt, dc, resolved, mode);
        CHECK(same_bits(matrix(l.weight().grad), matrix(g.a)));
        CHECK(same_bits(dx.values, matrix(g.b.transpose())));
        const matrix db = dy.colwise().sum();
        CHECK((l.bias().grad - db).cwiseAbs().maxCoeff() <= 1e-5f * dy.cwiseAbs().colwise().sum().maxCoeff());

        // The masks matter here (the test would not notice a layer that ignored the mode).
        const lowbit::gemm_gradients ste = lowbit::gemm_backward(w, xt, dc, resolved, lowbit::gradient_mode::ste);
        CHECK((ste.a - g.a).cwiseAbs().maxCoeff() > 1e-3);
        CHECK((ste.b - g.b).cwiseAbs().maxCoeff() > 1e-3);
    }
}

TEST_CASE("linear: fine-grained gradients need a spec and every output and input active") {
    linear l(8, 3, 1);
    l.datapath.gradient = lowbit::gradient_mode::immediate;
    const matrix x = matrix::Ones(2, 8);
    CHECK_THROWS_WITH(l.forward(features(x), pass::training), Contains("set a spec (or gradient = ste)"));
    l.datapath.spec = low_precision_spec();
    l.set_active({0, 2}, {});
    CHECK_THROWS_WITH(l.forward(features(x), pass::training), Contains("with skipped work (set_active) is not supported"));
    CHECK_NOTHROW(l.forward(features(x), pass::inference));
    l.set_all_active();
    CHECK_NOTHROW(l.forward(features(x), pass::training));
}

TEST_CASE("linear: bias_as_addend starts each output's accumulation from its bias (gemm_add)") {
    // Worked case: four products 1 * 1 into an fp16 accumulator (nearest_even), bias 2048. After the
    // datapath, the fp16 sum 4 plus 2048 in fp32 is 2052. As the addend, 2048 + 1 = 2049 lies halfway
    // between fp16's neighbours 2048 and 2050 (spacing 2 in [2048, 4096)): the even significand,
    // 2048; so every step, and the output is 2048.
    {
        linear l(4, 1, 1);
        l.weight().value.setOnes();
        l.bias().value(0, 0) = 2048;
        l.datapath.spec = gemm_spec{.accumulator = float_quantizer{.format = lowbit::fp16}};
        const matrix x = matrix::Ones(1, 4);
        CHECK(l.forward(features(x), pass::inference).values(0, 0) == 2052.0f);
        l.datapath.bias_as_addend = true;
        CHECK(l.forward(features(x), pass::inference).values(0, 0) == 2048.0f);
    }
    rng r(36);
    const int inputs = 40, outputs = 6, batch = 7;
    linear l(inputs, outputs, 12);
    l.bias().value = random_matrix(1, outputs, r, -4, 4);
    const range_biased_float qw{.seed = 1};
    const range_biased_float qx{.exp_bits = 4, .man_bits = 3, .seed = 2};
    const float_quantizer q_acc{.format = lowbit::lba_m7e4_acc};  // nearest_even
    const gemm_spec base{.product = float_quantizer{.format = lowbit::lba_m7e4_prod}, .accumulator = q_acc, .chunk = 16,
                         .chunk_accumulator = q_acc};
    l.datapath = gemm_datapath{.spec = base, .weights = qw, .activations = qx, .bias_as_addend = true};
    const matrix x = random_matrix(batch, inputs, r, -0.5, 2.5).cwiseMax(0.0f);
    const matrix& w = l.weight().value;
    const matrix xt = x.transpose();
    gemm_spec spec = base;
    spec.input_a = qw.for_tensor(std::span<const float>(w.data(), std::size_t(w.size())));
    spec.input_b = qx.for_tensor(std::span<const float>(xt.data(), std::size_t(xt.size())));
    const matrix b = l.bias().value.transpose().replicate(1, batch);  // outputs x batch
    gemm_stats reference_stats;
    const matrix d = lowbit::gemm_add(w, xt, b, spec, &reference_stats);
    const matrix after = lowbit::gemm(w, xt, spec) + b;  // the bias added after the datapath
    CHECK(!same_bits(d, after));                       // these data tell the two apart

    gemm_stats stats;
    l.datapath.stats = &stats;
    for (const pass p : {pass::inference, pass::training}) CHECK(same_bits(l.forward(features(x), p).values, matrix(d.transpose())));
    CHECK(stats.macs == 2 * reference_stats.macs);
    CHECK(stats.swamps == 2 * reference_stats.swamps);
    CHECK(stats.inexact_additions == 2 * reference_stats.inexact_additions);
    l.datapath.stats = nullptr;

    // Straight-through gradients: dL/db is the sum of dL/dy over the batch, as without the addend.
    const matrix dy = random_matrix(batch, outputs, r);
    l.bias().grad.setZero();
    (void)l.forward(features(x), pass::training);
    (void)l.backward(features(dy));
    for (int o = 0; o < outputs; ++o) {
        double s = 0;
        for (int n = 0; n < batch; ++n) s += double(dy(n, o));
        CHECK(std::fabs(double(l.bias().grad(0, o)) - s) <= 1e-5 * (1 + std::fabs(s)));
    }

    // Skipped outputs: the active rows start from their own biases, the others are 0.
    const std::vector<int> rows = {0, 2, 5};
    l.set_active(rows, {});
    const matrix small = lowbit::gemm_add(matrix(w(rows, Eigen::all)), xt, matrix(b(rows, Eigen::all)), spec);
    matrix expected = matrix::Zero(batch, outputs);
    for (std::size_t i = 0; i < rows.size(); ++i) expected.col(rows[i]) = small.row(Eigen::Index(i)).transpose();
    CHECK(same_bits(l.forward(features(x), pass::inference).values, expected));
}

TEST_CASE("linear: bias_as_addend needs a spec's accumulation and straight-through gradients") {
    linear l(8, 3, 1);
    l.datapath.bias_as_addend = true;
    const matrix x = matrix::Ones(2, 8);
    CHECK_THROWS_WITH(l.forward(features(x), pass::inference), Contains("has no spec (the plain fp32 product)"));
    l.datapath.spec = low_precision_spec();
    l.datapath.gradient = lowbit::gradient_mode::recursive;
    CHECK_THROWS_WITH(l.forward(features(x), pass::training),
                      Contains("gradient = recursive with an addend (bias_as_addend)"));
    l.datapath.gradient = lowbit::gradient_mode::ste;
    l.datapath.blocks = lowbit::nn::block_scaled_inputs{};
    CHECK_THROWS_WITH(l.forward(features(x), pass::inference), Contains("has blocks set (block_scaled_gemm takes no addend)"));
    l.datapath.blocks.reset();
    CHECK_NOTHROW(l.forward(features(x), pass::training));
}
