// Tests of lowbit/nn/relu.hpp: y = max(x, 0) elementwise against the definition (NaN passes
// through, -0 and negatives give +0, +-inf), shapes kept; backward against central finite
// differences of L = sum R .* y (inputs at least the step away from the kink at 0, where the
// quotient is exact) and against the definition "dL/dy where x > 0, else 0" (at 0 too); backward
// without a training forward throws.
#include <lowbit/nn/relu.hpp>

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>

namespace {

using Catch::Contains;
using lowbit::nn::matrix;
using lowbit::nn::pass;
using lowbit::nn::relu;
using lowbit::nn::shape3;
using lowbit::nn::tensor;

}  // namespace

TEST_CASE("relu: forward is max(x, 0), NaN passes through") {
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const float tiny = std::numeric_limits<float>::denorm_min();
    matrix x(2, 6);
    x << -1.5f, 0.0f, -0.0f, 2.25f, nan, -inf,  //
        inf, tiny, -tiny, -3e38f, 3e38f, 1.0f;
    relu r;
    const shape3 shape{3, 2, 1};
    for (const pass p : {pass::inference, pass::training}) {
        const tensor y = r.forward({x, shape}, p);
        CHECK(y.shape == shape);
        REQUIRE(y.values.rows() == 2);
        REQUIRE(y.values.cols() == 6);
        for (Eigen::Index i = 0; i < x.size(); ++i) {
            const float v = x.data()[i], out = y.values.data()[i];
            CAPTURE(i, v, out);
            if (std::isnan(v)) {
                CHECK(std::isnan(out));
            } else if (v > 0) {
                CHECK(std::bit_cast<std::uint32_t>(out) == std::bit_cast<std::uint32_t>(v));
            } else {
                CHECK(std::bit_cast<std::uint32_t>(out) == 0u);  // +0, also for -0 and -inf
            }
        }
    }
    CHECK(r.output_shape({4, 5, 6}) == shape3{4, 5, 6});
    CHECK(r.describe() == "relu");
}

TEST_CASE("relu: backward is dL/dy where x > 0 and matches finite differences") {
    std::mt19937_64 engine(61);
    const auto uniform = [&] { return double(engine() >> 11) * 0x1p-53; };
    const shape3 shape{2, 3, 4};
    matrix x(3, shape.size()), coeff(3, shape.size());
    for (Eigen::Index i = 0; i < x.size(); ++i) {
        // |x| >= 0.125 (the step is 2^-6): the sign never changes across a difference.
        const double magnitude = 0.125 + uniform();
        x.data()[i] = float(uniform() < 0.5 ? -magnitude : magnitude);
        coeff.data()[i] = float(2 * uniform() - 1);
    }
    x(0, 0) = 0.0f;  // at the kink the gradient is 0 (x > 0 is false)
    relu r;
    (void)r.forward({x, shape}, pass::training);
    const tensor dx = r.backward({coeff, shape});
    CHECK(dx.shape == shape);
    for (Eigen::Index i = 0; i < x.size(); ++i) {
        CAPTURE(i);
        CHECK(dx.values.data()[i] == (x.data()[i] > 0 ? coeff.data()[i] : 0.0f));
    }
    // Finite differences (skipping the kink): y copies x, so the quotient is exact.
    matrix xv = x;
    const auto loss = [&] {
        return (r.forward({xv, shape}, pass::inference).values.cast<double>().array() * coeff.cast<double>().array()).sum();
    };
    int outside = 0;
    for (Eigen::Index i = 1; i < xv.size(); ++i) {
        const float saved = xv.data()[i];
        xv.data()[i] = saved + 0x1p-6f;
        const double up = loss();
        const float v_up = xv.data()[i];
        xv.data()[i] = saved - 0x1p-6f;
        const double down = loss();
        const double step = double(v_up) - double(xv.data()[i]);
        xv.data()[i] = saved;
        outside += std::fabs((up - down) / step - double(dx.values.data()[i])) > 1e-9;
    }
    CHECK(outside == 0);
}

TEST_CASE("relu: backward needs a training forward") {
    relu r;
    const tensor t{matrix::Ones(1, 3), {3, 1, 1}};
    REQUIRE_THROWS_AS(r.backward(t), std::logic_error);
    REQUIRE_THROWS_WITH(r.backward(t), Contains("relu: backward without a forward(x, pass::training)"));
    (void)r.forward(t, pass::inference);
    CHECK_THROWS_WITH(r.backward(t), Contains("backward without a forward"));
    (void)r.forward(t, pass::training);
    CHECK(r.backward(t).values == matrix::Ones(1, 3));
}
