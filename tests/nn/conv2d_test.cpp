// Tests of lowbit/nn/conv2d.hpp.
//  * Forward on the spec-less fp32 datapath against a direct convolution in double loops
//    (zero padding, stride), plus bias, within the float error bound of a K-term dot product.
//  * With a low-precision spec (M7E4 products and accumulator toward zero, chunks of 16,
//    range-biased FP8 inputs) the output is lowbit::gemm(W, im2col(x), spec with the input
//    quantizers that range_biased_float resolves for W and for the im2col matrix; their brute-force
//    check is in gemm_datapath_test.cpp), laid out as batch x (filters, OH, OW), plus the bias, bit
//    for bit; gemm_stats are those of lowbit::gemm and add up.
//  * Backward (dL/dx, dL/dW, dL/db) against central finite differences of L = sum R .* y on the
//    spec-less fp32 datapath; L is affine in each variable, so the tolerance is the float rounding
//    of the outputs, bounded from the magnitudes.
//  * Errors: constructor arguments, input shapes, backward without a training forward.
#include <lowbit/nn/conv2d.hpp>

#include "support/exception_message.hpp"
#include "support/finite_difference.hpp"
#include "support/random_floats.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <bit>
#include <cmath>
#include <cstdint>
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
using lowbit::conv_geometry;
using lowbit::float_quantizer;
using lowbit::gemm_spec;
using lowbit::gemm_stats;
using lowbit::rounding;
using lowbit::nn::conv2d;
using lowbit::nn::gemm_datapath;
using lowbit::nn::matrix;
using lowbit::nn::pass;
using lowbit::nn::range_biased_float;
using lowbit::nn::shape3;
using lowbit::nn::tensor;
using lowbit_test::message_of;

constexpr double u = 0x1p-24;  // unit roundoff of float




tensor images(const matrix& values, const conv_geometry& g) { return {values, {g.channels, g.height, g.width}}; }

gemm_spec low_precision_spec() {
    const float_quantizer q_prod{.format = lowbit::lba_m7e4_prod, .mode = rounding::toward_zero};
    const float_quantizer q_acc{.format = lowbit::lba_m7e4_acc, .mode = rounding::toward_zero};
    return {.product = q_prod, .accumulator = q_acc, .chunk = 16, .chunk_accumulator = q_acc};
}

// The direct convolution in double: out(n, (f, oy, ox)) = b_f + sum_{c,i,j} W(f, (c,i,j)) *
// x(n, c, oy*stride + i - padding, ox*stride + j - padding), zero outside the image; `bound`
// receives (K + 2) u (sum |terms| + |b_f|), the error bound of the float layer.
Eigen::MatrixXd direct_convolution(const matrix& x, const matrix& w, const matrix& b, const conv_geometry& g,
                                   Eigen::MatrixXd* bound = nullptr) {
    const int filters = int(w.rows()), k = g.kernel;
    int oh = 0, ow = 0;
    while (oh * g.stride + k <= g.height + 2 * g.padding) ++oh;
    while (ow * g.stride + k <= g.width + 2 * g.padding) ++ow;
    Eigen::MatrixXd out(x.rows(), filters * oh * ow);
    if (bound != nullptr) bound->resize(x.rows(), filters * oh * ow);
    for (Eigen::Index n = 0; n < x.rows(); ++n)
        for (int f = 0; f < filters; ++f)
            for (int oy = 0; oy < oh; ++oy)
                for (int ox = 0; ox < ow; ++ox) {
                    double sum = b(0, f), magnitude = std::fabs(double(b(0, f)));
                    for (int c = 0; c < g.channels; ++c)
                        for (int i = 0; i < k; ++i)
                            for (int j = 0; j < k; ++j) {
                                const int y = oy * g.stride + i - g.padding, xx = ox * g.stride + j - g.padding;
                                if (y < 0 || y >= g.height || xx < 0 || xx >= g.width) continue;
                                const double term = double(w(f, (c * k + i) * k + j)) *
                                                    double(x(n, (c * g.height + y) * g.width + xx));
                                sum += term;
                                magnitude += std::fabs(term);
                            }
                    const Eigen::Index at = (Eigen::Index(f) * oh + oy) * ow + ox;
                    out(n, at) = sum;
                    if (bound != nullptr) (*bound)(n, at) = double(g.patch() + 2) * u * magnitude;
                }
    return out;
}

double weighted_sum(const matrix& y, const matrix& r) {
    return (y.cast<double>().array() * r.cast<double>().array()).sum();
}

}  // namespace

TEST_CASE("conv2d: forward on the fp32 datapath is the direct convolution plus bias") {
    rng r(41);
    const std::vector<std::pair<conv_geometry, int>> cases = {
        {{.channels = 1, .height = 6, .width = 6, .kernel = 3, .stride = 1, .padding = 1}, 4},
        {{.channels = 3, .height = 7, .width = 5, .kernel = 5, .stride = 2, .padding = 2}, 2},
        {{.channels = 2, .height = 4, .width = 9, .kernel = 1, .stride = 2, .padding = 0}, 3},
        {{.channels = 3, .height = 8, .width = 6, .kernel = 3, .stride = 2, .padding = 0}, 5},
    };
    for (const auto& [g, filters] : cases) {
        CAPTURE(g.channels, g.height, g.width, g.kernel, g.stride, g.padding, filters);
        conv2d layer(g, filters, 17);
        layer.bias().value = random_matrix(1, filters, r);
        const matrix x = random_matrix(3, g.input_size(), r);
        Eigen::MatrixXd bound;
        const Eigen::MatrixXd expected = direct_convolution(x, layer.weight().value, layer.bias().value, g, &bound);
        for (const pass p : {pass::inference, pass::training}) {
            const tensor y = layer.forward(images(x, g), p);
            CHECK(y.shape == shape3{filters, g.out_height(), g.out_width()});
            REQUIRE(y.values.rows() == expected.rows());
            REQUIRE(y.values.cols() == expected.cols());
            int outside = 0;
            for (Eigen::Index n = 0; n < y.values.rows(); ++n)
                for (Eigen::Index e = 0; e < y.values.cols(); ++e)
                    outside += std::fabs(double(y.values(n, e)) - expected(n, e)) > bound(n, e);
            CHECK(outside == 0);
        }
        CHECK(layer.output_shape({g.channels, g.height, g.width}) == shape3{filters, g.out_height(), g.out_width()});
        // He-uniform weights over the patch, fixed by the seed.
        CHECK(layer.weight().value.cwiseAbs().maxCoeff() <= std::sqrt(6.0 / g.patch()));
        CHECK(same_bits(conv2d(g, filters, 17).weight().value, layer.weight().value));
        CHECK_FALSE(same_bits(conv2d(g, filters, 18).weight().value, layer.weight().value));
    }
}

TEST_CASE("conv2d: with a low-precision spec the output is lowbit::gemm(W, im2col(x)) + b, bit for bit") {
    rng r(42);
    const std::vector<std::pair<conv_geometry, int>> cases = {
        {{.channels = 3, .height = 7, .width = 6, .kernel = 3, .stride = 1, .padding = 1}, 5},  // K = 27: 2 chunks
        {{.channels = 4, .height = 6, .width = 6, .kernel = 3, .stride = 2, .padding = 1}, 3},  // K = 36: 3 chunks
    };
    for (const auto& [g, filters] : cases)
        for (const rounding mode : {rounding::nearest_even, rounding::stochastic}) {
            CAPTURE(g.channels, g.stride, int(mode));
            const Eigen::Index batch = 3;
            conv2d layer(g, filters, 23);
            layer.bias().value = random_matrix(1, filters, r, -0.5, 0.5);
            const range_biased_float qw{.mode = mode, .seed = 3};
            const range_biased_float qx{.exp_bits = 4, .man_bits = 3, .mode = mode, .seed = 4};
            layer.datapath = gemm_datapath{.spec = low_precision_spec(), .weights = qw, .activations = qx};
            const matrix x = random_matrix(batch, g.input_size(), r, -0.5, 2.5).cwiseMax(0.0f);

            const matrix& w = layer.weight().value;
            const matrix cols = lowbit::im2col(x, g);
            gemm_spec spec = low_precision_spec();
            spec.input_a = qw.for_tensor(std::span<const float>(w.data(), std::size_t(w.size())));
            spec.input_b = qx.for_tensor(std::span<const float>(cols.data(), std::size_t(cols.size())));
            gemm_stats reference_stats;
            const Eigen::MatrixXf c = lowbit::gemm(w, cols, spec, &reference_stats);  // filters x batch*P
            const Eigen::Index positions = Eigen::Index(g.out_height()) * g.out_width();
            matrix expected(batch, filters * positions);
            for (Eigen::Index n = 0; n < batch; ++n)
                for (int f = 0; f < filters; ++f)
                    for (Eigen::Index p = 0; p < positions; ++p)
                        expected(n, f * positions + p) = c(f, n * positions + p) + layer.bias().value(0, f);

            for (const pass p : {pass::inference, pass::training})
                CHECK(same_bits(layer.forward(images(x, g), p).values, expected));
            const Eigen::MatrixXd fp = direct_convolution(x, w, layer.bias().value, g);
            CHECK((fp - expected.cast<double>()).cwiseAbs().maxCoeff() > 1e-3);  // not fp32

            gemm_stats stats;
            layer.datapath.stats = &stats;
            CHECK(same_bits(layer.forward(images(x, g), pass::training).values, expected));
            CHECK(stats.macs == std::uint64_t(filters) * std::uint64_t(batch * positions) * std::uint64_t(g.patch()));
            CHECK(stats.macs == reference_stats.macs);
            CHECK(stats.zero_operand == reference_stats.zero_operand);
            CHECK(stats.zero_operand > 0);  // the zero padding and the zeros of x
            CHECK(stats.swamps == reference_stats.swamps);
            CHECK(stats.inexact_additions == reference_stats.inexact_additions);
            CHECK(stats.product_underflows == reference_stats.product_underflows);
            (void)layer.forward(images(x, g), pass::inference);
            CHECK(stats.macs == 2 * reference_stats.macs);
            CHECK(stats.inexact_additions == 2 * reference_stats.inexact_additions);

            // The bias as the GEMM's addend: the accumulation of output (f, column) starts from b(f).
            layer.datapath.stats = nullptr;
            layer.datapath.bias_as_addend = true;
            const matrix bias_columns = layer.bias().value.transpose().replicate(1, cols.cols());
            const Eigen::MatrixXf d = lowbit::gemm_add(w, cols, bias_columns, spec);
            matrix expected_addend(batch, filters * positions);
            for (Eigen::Index n = 0; n < batch; ++n)
                for (int f = 0; f < filters; ++f)
                    for (Eigen::Index p = 0; p < positions; ++p) expected_addend(n, f * positions + p) = d(f, n * positions + p);
            for (const pass p : {pass::inference, pass::training})
                CHECK(same_bits(layer.forward(images(x, g), p).values, expected_addend));
            CHECK(!same_bits(expected_addend, expected));  // where the bias enters matters on this datapath
        }
}

TEST_CASE("conv2d: backward matches central finite differences of sum R .* y") {
    rng r(43);
    const std::vector<std::pair<conv_geometry, int>> cases = {
        {{.channels = 2, .height = 5, .width = 6, .kernel = 3, .stride = 2, .padding = 1}, 3},
        {{.channels = 1, .height = 4, .width = 4, .kernel = 3, .stride = 1, .padding = 0}, 2},
    };
    for (const auto& [g, filters] : cases) {
        CAPTURE(g.channels, g.height, g.width, g.stride, g.padding);
        const Eigen::Index batch = 2;
        conv2d layer(g, filters, 29);
        layer.bias().value = random_matrix(1, filters, r);
        const matrix x0 = random_matrix(batch, g.input_size(), r);
        const Eigen::Index outputs = Eigen::Index(filters) * g.out_height() * g.out_width();
        const matrix coeff = random_matrix(batch, outputs, r);

        (void)layer.forward(images(x0, g), pass::training);
        const tensor dx = layer.backward(tensor{coeff, {filters, g.out_height(), g.out_width()}});
        CHECK(dx.shape == shape3{g.channels, g.height, g.width});
        REQUIRE(dx.values.rows() == batch);
        REQUIRE(dx.values.cols() == g.input_size());
        const matrix dw = layer.weight().grad, db = layer.bias().grad;

        matrix x = x0;
        const auto loss = [&] { return weighted_sum(layer.forward(images(x, g), pass::inference).values, coeff); };
        const auto loss_error = [&] {
            Eigen::MatrixXd bound;
            (void)direct_convolution(x, layer.weight().value, layer.bias().value, g, &bound);
            return (bound.array() * coeff.cast<double>().array().abs()).sum();
        };
        lowbit_test::central_difference_check check_variable{loss, loss_error};
        for (Eigen::Index i = 0; i < x.size(); ++i) check_variable(x.data()[i], dx.values.data()[i], "dx", i);
        for (Eigen::Index i = 0; i < dw.size(); ++i) check_variable(layer.weight().value.data()[i], dw.data()[i], "dW", i);
        for (Eigen::Index i = 0; i < db.size(); ++i) check_variable(layer.bias().value.data()[i], db.data()[i], "db", i);
        CHECK(check_variable.checked == batch * g.input_size() + filters * g.patch() + filters);
        CHECK(check_variable.outside == 0);
        // Some input gradients are zero only where a pixel is in no window; here every pixel of
        // the first case's stride-2 windows is used, so the input gradient is non-trivial.
        CHECK(dx.values.cwiseAbs().maxCoeff() > 0.1f);
    }
}

TEST_CASE("conv2d: bad arguments and shapes are rejected with messages") {
    const conv_geometry g{.channels = 2, .height = 5, .width = 6, .kernel = 3, .stride = 2, .padding = 1};
    CHECK_THAT(message_of([&] { conv2d(g, 0); }), Contains("lowbit::nn::conv2d: filters = 0 must be >= 1"));
    conv_geometry bad = g;
    bad.kernel = 9;
    CHECK_THAT(message_of([&] { conv2d(bad, 4); }), Contains("kernel = 9 is larger than the padded input"));
    bad = g;
    bad.padding = -1;
    CHECK_THAT(message_of([&] { conv2d(bad, 4); }), Contains("padding = -1 must be >= 0"));

    conv2d layer(g, 4);
    CHECK(layer.describe() == "conv2d 2->4 3x3 stride 2 pad 1 on 2 x 5 x 6");
    CHECK_THAT(message_of([&] { (void)layer.output_shape({2, 6, 5}); }),
               Contains("conv2d 2->4 3x3 stride 2 pad 1 on 2 x 5 x 6: input shape 2 x 6 x 5 does not match"));
    CHECK_THAT(message_of([&] { (void)layer.forward(tensor{matrix::Zero(1, 60), {2, 6, 5}}, pass::inference); }),
               Contains("input is 2 x 6 x 5") && Contains("expects 2 x 5 x 6"));
    CHECK_THAT(message_of([&] { (void)layer.forward(tensor{matrix::Zero(1, 59), {2, 5, 6}}, pass::inference); }),
               Contains("(59 values per sample)"));

    const tensor dy{matrix::Zero(1, 4 * 3 * 3), {4, 3, 3}};
    REQUIRE_THROWS_AS(layer.backward(dy), std::logic_error);
    REQUIRE_THROWS_WITH(layer.backward(dy), Contains("backward without a forward(x, pass::training)"));
    (void)layer.forward(tensor{matrix::Zero(1, 60), {2, 5, 6}}, pass::training);
    CHECK_NOTHROW(layer.backward(dy));
}
