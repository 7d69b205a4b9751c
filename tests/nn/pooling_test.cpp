// Tests of lowbit/nn/pooling.hpp (max_pool2d, avg_pool2d over non-overlapping size x size windows).
//  * Forward against window maxima / means computed in double loops, on square and odd sizes
//    (the rows and columns that do not fill a window are dropped: changing them changes nothing
//    and their gradient is zero).
//  * Backward against central finite differences of L = sum R .* y: max pooling on inputs that are
//    distinct and spaced wider than the step (no ties, no switch of the winner), where y copies
//    inputs exactly, so the quotient is exact up to the double sums; average pooling with the
//    float rounding of the mean bounded.
//  * NaN wins max pooling (wherever it is in its window) and only its window; -inf is a value.
//  * Errors: window sizes, input shapes, backward without a training forward.
#include <lowbit/nn/pooling.hpp>

#include "support/exception_message.hpp"

#include "support/random_floats.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using lowbit_test::rng;
using lowbit_test::random_matrix;

using Catch::Contains;
using lowbit::nn::avg_pool2d;
using lowbit::nn::matrix;
using lowbit::nn::max_pool2d;
using lowbit::nn::pass;
using lowbit::nn::shape3;
using lowbit::nn::tensor;
using lowbit_test::message_of;

constexpr double u = 0x1p-24;



// Distinct values k / 16 (k a random permutation, centred on 0): any two differ by >= 1/16.
matrix distinct_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
    std::vector<int> k(std::size_t(rows * cols));
    std::iota(k.begin(), k.end(), 0);
    std::shuffle(k.begin(), k.end(), std::mt19937_64(seed));
    matrix m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = float(k[std::size_t(i)] - int(k.size() / 2)) / 16.0f;
    return m;
}

struct window_reference {
    Eigen::MatrixXd max, mean;
};

// Per output (c, oy, ox): the max and the mean of input rows oy*size .. oy*size + size - 1 and
// columns ox*size .. ox*size + size - 1 of channel c; outputs floor(H / size) x floor(W / size).
window_reference naive_pool(const matrix& x, shape3 in, int size) {
    const int oh = in.height / size, ow = in.width / size;
    window_reference r{Eigen::MatrixXd(x.rows(), in.channels * oh * ow), Eigen::MatrixXd(x.rows(), in.channels * oh * ow)};
    for (Eigen::Index n = 0; n < x.rows(); ++n)
        for (int c = 0; c < in.channels; ++c)
            for (int oy = 0; oy < oh; ++oy)
                for (int ox = 0; ox < ow; ++ox) {
                    double top = -std::numeric_limits<double>::infinity(), sum = 0;
                    for (int y = oy * size; y < oy * size + size; ++y)
                        for (int xx = ox * size; xx < ox * size + size; ++xx) {
                            const double v = x(n, (c * in.height + y) * in.width + xx);
                            top = std::max(top, v);
                            sum += v;
                        }
                    r.max(n, (c * oh + oy) * ow + ox) = top;
                    r.mean(n, (c * oh + oy) * ow + ox) = sum / (size * size);
                }
    return r;
}

struct pool_case {
    shape3 in;
    int size;
};

const std::vector<pool_case> cases = {
    {{2, 4, 6}, 2}, {{3, 5, 7}, 2}, {{1, 7, 8}, 3}, {{2, 3, 3}, 3}, {{1, 5, 4}, 1}, {{2, 6, 9}, 4},
};

}  // namespace

TEST_CASE("pooling: forward equals window maxima and means, odd remainders dropped") {
    rng r(51);
    for (const pool_case& pc : cases) {
        CAPTURE(pc.in.to_string(), pc.size);
        const shape3 out{pc.in.channels, pc.in.height / pc.size, pc.in.width / pc.size};
        max_pool2d mp(pc.in, pc.size);
        avg_pool2d ap(pc.in, pc.size);
        CHECK(mp.output_shape(pc.in) == out);
        CHECK(ap.output_shape(pc.in) == out);
        const matrix x = random_matrix(3, pc.in.size(), r);
        const window_reference ref = naive_pool(x, pc.in, pc.size);
        for (const pass p : {pass::inference, pass::training}) {
            const tensor ym = mp.forward({x, pc.in}, p), ya = ap.forward({x, pc.in}, p);
            CHECK(ym.shape == out);
            CHECK(ya.shape == out);
            REQUIRE(ym.values.cols() == out.size());
            REQUIRE(ya.values.cols() == out.size());
            CHECK(ym.values.cast<double>() == ref.max);  // a max is one of the inputs: exact
            // The mean: a float sum of size^2 values times 1/size^2 (rounded): within (size^2 + 1) u.
            const double bound = double(pc.size * pc.size + 1) * u;
            CHECK(((ya.values.cast<double>() - ref.mean).array().abs() <= bound).all());
        }
        // What does not fill a window does not matter.
        matrix changed = x;
        for (int c = 0; c < pc.in.channels; ++c)
            for (int y = 0; y < pc.in.height; ++y)
                for (int xx = 0; xx < pc.in.width; ++xx)
                    if (y >= out.height * pc.size || xx >= out.width * pc.size)
                        changed(0, (c * pc.in.height + y) * pc.in.width + xx) = 100.0f;
        CHECK(mp.forward({changed, pc.in}, pass::inference).values == mp.forward({x, pc.in}, pass::inference).values);
        CHECK(ap.forward({changed, pc.in}, pass::inference).values == ap.forward({x, pc.in}, pass::inference).values);
    }
}

TEST_CASE("pooling: backward matches central finite differences") {
    rng r(52);
    std::uint64_t seed = 1;
    for (const pool_case& pc : cases) {
        CAPTURE(pc.in.to_string(), pc.size);
        const Eigen::Index batch = 2;
        const shape3 out{pc.in.channels, pc.in.height / pc.size, pc.in.width / pc.size};
        const matrix coeff = random_matrix(batch, out.size(), r);

        // Max: inputs spaced 1/16 apart, step 2^-8: the winner of each window never changes.
        {
            max_pool2d mp(pc.in, pc.size);
            matrix x = distinct_matrix(batch, pc.in.size(), seed++);
            (void)mp.forward({x, pc.in}, pass::training);
            const tensor dx = mp.backward({coeff, out});
            CHECK(dx.shape == pc.in);
            REQUIRE(dx.values.cols() == pc.in.size());
            const auto loss = [&] {
                return (mp.forward({x, pc.in}, pass::inference).values.cast<double>().array() *
                        coeff.cast<double>().array()).sum();
            };
            int outside = 0;
            for (Eigen::Index i = 0; i < x.size(); ++i) {
                const float saved = x.data()[i];
                x.data()[i] = saved + 0x1p-8f;
                const double up = loss();
                x.data()[i] = saved - 0x1p-8f;
                const double down = loss();
                x.data()[i] = saved;
                const double fd = (up - down) / 0x1p-7;  // both steps exact: values are multiples of 2^-8
                outside += std::fabs(fd - double(dx.values.data()[i])) > 1e-12;
            }
            CHECK(outside == 0);
            // Exactly one input of each window receives its output's gradient: the column sums match.
            CHECK(dx.values.cast<double>().sum() == Approx(coeff.cast<double>().sum()).margin(1e-9));
        }
        // Average: y = (sum of the window) / size^2; the float rounding of L bounded by
        // (size^2 + 1) u sum |R| |window sum|, at most (size^2 + 1) u sum |R| (|x| <= 1 + step).
        {
            avg_pool2d ap(pc.in, pc.size);
            matrix x = random_matrix(batch, pc.in.size(), r);
            (void)ap.forward({x, pc.in}, pass::training);
            const tensor dx = ap.backward({coeff, out});
            CHECK(dx.shape == pc.in);
            const auto loss = [&] {
                return (ap.forward({x, pc.in}, pass::inference).values.cast<double>().array() *
                        coeff.cast<double>().array()).sum();
            };
            const double loss_error = double(pc.size * pc.size + 1) * u * 1.1 * coeff.cast<double>().cwiseAbs().sum();
            int outside = 0;
            for (Eigen::Index i = 0; i < x.size(); ++i) {
                const float saved = x.data()[i];
                x.data()[i] = saved + 0.0625f;
                const double up = loss();
                const float v_up = x.data()[i];
                x.data()[i] = saved - 0.0625f;
                const double down = loss();
                const double step = double(v_up) - double(x.data()[i]);
                x.data()[i] = saved;
                const double fd = (up - down) / step;
                outside += std::fabs(fd - double(dx.values.data()[i])) > 2 * loss_error / step + 4 * u;
            }
            CHECK(outside == 0);
        }
    }
}

TEST_CASE("pooling: gradients of the dropped rows and columns are zero") {
    const shape3 in{1, 5, 7};
    max_pool2d mp(in, 2);
    avg_pool2d ap(in, 2);
    const matrix x = distinct_matrix(1, in.size(), 9);
    const matrix ones = matrix::Ones(1, 1 * 2 * 3);
    (void)mp.forward({x, in}, pass::training);
    (void)ap.forward({x, in}, pass::training);
    const matrix dm = mp.backward({ones, {1, 2, 3}}).values, da = ap.backward({ones, {1, 2, 3}}).values;
    for (int y = 0; y < 5; ++y)
        for (int xx = 0; xx < 7; ++xx) {
            CAPTURE(y, xx);
            const bool dropped = y >= 4 || xx >= 6;
            if (dropped) {
                CHECK(dm(0, y * 7 + xx) == 0.0f);
                CHECK(da(0, y * 7 + xx) == 0.0f);
            } else {
                CHECK(da(0, y * 7 + xx) == 0.25f);
            }
        }
    CHECK(dm.sum() == 6.0f);  // one winner per window
}

TEST_CASE("pooling: NaN wins max pooling, only in its own window") {
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const shape3 in{1, 2, 8};  // four 2x2 windows side by side
    max_pool2d mp(in, 2);
    // Window 0: NaN first; window 1: NaN last; window 2: NaN among larger values; window 3: -inf only.
    matrix x(1, 16);
    x << nan, 1, 2, 3, 9, 9, -inf, -inf,  //
        1, 2, 4, nan, 5, nan, -inf, -inf;
    const tensor y = mp.forward({x, in}, pass::training);
    REQUIRE(y.values.cols() == 4);
    CHECK(std::isnan(y.values(0, 0)));
    CHECK(std::isnan(y.values(0, 1)));
    CHECK(std::isnan(y.values(0, 2)));
    CHECK(y.values(0, 3) == -inf);
    // The gradient goes to the NaN (the value that was output).
    const matrix dx = mp.backward({matrix::Ones(1, 4), {1, 1, 4}}).values;
    CHECK(dx(0, 0) == 1.0f);   // the NaN of window 0
    CHECK(dx(0, 11) == 1.0f);  // the NaN of window 1
    CHECK(dx(0, 13) == 1.0f);  // the NaN of window 2
    CHECK(dx.sum() == 4.0f);

    // Average pooling propagates NaN arithmetically.
    avg_pool2d ap(in, 2);
    const tensor ya = ap.forward({x, in}, pass::inference);
    CHECK(std::isnan(ya.values(0, 0)));
    CHECK(ya.values(0, 3) == -inf);
}

TEST_CASE("pooling: bad sizes and shapes are rejected with messages") {
    CHECK_THAT(message_of([] { max_pool2d({1, 4, 4}, 0); }),
               Contains("lowbit::nn::pool2d: size = 0 must be in [1, min(height, width)] of the input 1 x 4 x 4"));
    CHECK_THAT(message_of([] { avg_pool2d({2, 6, 3}, 4); }), Contains("size = 4") && Contains("2 x 6 x 3"));
    CHECK(message_of([] { avg_pool2d({2, 6, 3}, 3); }).empty());

    max_pool2d mp({2, 4, 6}, 2);
    CHECK(mp.describe() == "max_pool 2x2 on 2 x 4 x 6");
    CHECK(avg_pool2d({2, 4, 6}, 2).describe() == "avg_pool 2x2 on 2 x 4 x 6");
    CHECK_THAT(message_of([&] { (void)mp.output_shape({2, 6, 4}); }),
               Contains("max_pool 2x2 on 2 x 4 x 6: input shape 2 x 6 x 4 does not match"));
    CHECK_THAT(message_of([&] { (void)mp.forward({matrix::Zero(1, 48), {2, 6, 4}}, pass::inference); }),
               Contains("input is 2 x 6 x 4") && Contains("expects 2 x 4 x 6"));
    const tensor dy{matrix::Zero(1, 12), {2, 2, 3}};
    CHECK_THROWS_WITH(mp.backward(dy), Contains("max_pool 2x2 on 2 x 4 x 6: backward without a forward"));
    (void)mp.forward({matrix::Zero(1, 48), {2, 4, 6}}, pass::inference);
    CHECK_THROWS_AS(mp.backward(dy), std::logic_error);
}

TEST_CASE("backward rejects a gradient whose shape or batch differs from the forward's output") {
    lowbit::nn::max_pool2d pool({2, 4, 4}, 2);
    lowbit::nn::tensor x{lowbit::nn::matrix::Random(3, 32), {2, 4, 4}};
    pool.forward(x, lowbit::nn::pass::training);
    const lowbit::nn::tensor wrong_batch{lowbit::nn::matrix::Zero(2, 8), {2, 2, 2}};
    REQUIRE_THROWS_WITH(pool.backward(wrong_batch), Catch::Contains("backward got a gradient of 2 x 2 x 2 x 2") &&
                                                        Catch::Contains("the forward made 3 x 2 x 2 x 2"));
    const lowbit::nn::tensor wrong_shape{lowbit::nn::matrix::Zero(3, 8), {8, 1, 1}};
    REQUIRE_THROWS_WITH(pool.backward(wrong_shape), Catch::Contains("backward got a gradient of 3 x 8 x 1 x 1"));
}

TEST_CASE("pooling: on ties the first maximum in window order wins, the first NaN over everything") {
    // Values from {-1, 0, 1, NaN} (and -0 beside 0): most windows have ties; even and odd widths
    // and heights, so that both the 2 x 2 path for even widths and the general path are checked.
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float values[] = {-1.0f, 0.0f, -0.0f, 1.0f, 1.0f, nan};
    for (const pool_case pc : {pool_case{{3, 6, 8}, 2}, pool_case{{2, 5, 8}, 2}, pool_case{{2, 6, 7}, 2},
                               pool_case{{2, 6, 6}, 3}}) {
        const shape3 in = pc.in;
        const int size = pc.size, oh = in.height / size, ow = in.width / size;
        std::mt19937_64 engine(11 + std::uint64_t(in.width) * 7 + std::uint64_t(in.height));
        matrix x(3, in.size());
        for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = values[engine() % 6];
        max_pool2d pool(in, size);
        for (const pass p : {pass::inference, pass::training}) {
            const tensor y = pool.forward({x, in}, p);
            CAPTURE(in.to_string(), size);
            for (Eigen::Index n = 0; n < x.rows(); ++n)
                for (int c = 0; c < in.channels; ++c)
                    for (int oy = 0; oy < oh; ++oy)
                        for (int ox = 0; ox < ow; ++ox) {
                            // The winner: the first NaN, else the first maximum, in row-major window order.
                            int winner = -1;
                            for (int i = 0; i < size; ++i)
                                for (int j = 0; j < size; ++j) {
                                    const int at = (c * in.height + oy * size + i) * in.width + ox * size + j;
                                    const float v = x(n, at);
                                    if (winner < 0) winner = at;
                                    else if (!std::isnan(x(n, winner)) && (std::isnan(v) || v > x(n, winner))) winner = at;
                                }
                            const int o = (c * oh + oy) * ow + ox;
                            CHECK(std::bit_cast<std::uint32_t>(y.values(n, o)) == std::bit_cast<std::uint32_t>(x(n, winner)));
                            if (p == pass::training) {
                                // The gradient of output o reaches its winner only.
                                matrix dy = matrix::Zero(x.rows(), y.values.cols());
                                dy(n, o) = 1;
                                const tensor dx = pool.backward({dy, y.shape});
                                CHECK(dx.values(n, winner) == 1.0f);
                                CHECK(dx.values.cwiseAbs().sum() == 1.0f);
                            }
                        }
        }
    }
}
