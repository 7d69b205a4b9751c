// Tests of lowbit/scaling/calibration.hpp: max and percentile on hand-built data, the MSE model
// and the empirical MSE on hand values, OCTAV against brute-force minima of both, OCTAV's
// convergence from any start, per-channel calibration, and the errors; quantize_clipped against
// MPFR.
//
// Why two kinds of samples for OCTAV against the brute-force minimum of the EMPIRICAL MSE: the
// empirical MSE of n random samples carries the rounding noise of each sample, a relative
// fluctuation of about 1/sqrt(n) (0.7% at n = 20000) that moves along s. Near the optimum the
// MSE is flat (it grows with the square of the relative distance from it), so that small
// fluctuation moves the brute-force argmin by 1-2% for random samples however fine the grid
// (measured; it shrinks only as n^(-1/4)). Stratified samples (the distribution's quantiles at
// (i + 1/2) / n) have no such noise and show OCTAV's own accuracy: within 1% for B >= 4. At B = 2
// and 3 OCTAV sits 1-3% above the minimum of the model J itself (and of the empirical MSE): its
// Newton step drops the derivative of the indicator in the noise term, c s^2 d/ds P(|X| <= s),
// which is large when s lies in the body of the distribution; the MSE it gives up there is
// below 0.5%. Random samples are then checked against the minimum of the model J (which has no
// rounding noise) at the same tolerances, and against the empirical minimum in MSE.
#include <lowbit/scaling/calibration.hpp>

#include <catch2/catch.hpp>
#include <mpfr.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using lowbit::signedness;
constexpr auto signed_values = signedness::signed_values;
constexpr auto unsigned_values = signedness::unsigned_values;

double relative_difference(double a, double b) { return std::fabs(a / b - 1.0); }

// The standard normal quantile by bisection on erfc (slow, exact to double; tests only).
double normal_quantile(double u) {
    double lo = -40, hi = 40;
    for (int i = 0; i < 200 && lo < hi; ++i) {
        const double mid = (lo + hi) / 2;
        if (mid == lo || mid == hi) break;
        (0.5 * std::erfc(-mid / std::sqrt(2.0)) < u ? lo : hi) = mid;
    }
    return (lo + hi) / 2;
}

enum class distribution { gaussian, laplace, half_normal, relu_gaussian };

const char* name(distribution d) {
    switch (d) {
        case distribution::gaussian: return "gaussian";
        case distribution::laplace: return "laplace";
        case distribution::half_normal: return "half_normal";
        case distribution::relu_gaussian: return "relu_gaussian";
    }
    return "?";
}

// n quantiles (i + 1/2) / n of the distribution (unit scale).
std::vector<float> stratified(distribution d, std::size_t n) {
    std::vector<float> x(n);
    for (std::size_t i = 0; i < n; ++i) {
        const double u = (double(i) + 0.5) / double(n);
        double v = 0;
        switch (d) {
            case distribution::gaussian: v = normal_quantile(u); break;
            case distribution::laplace: v = u < 0.5 ? std::log(2 * u) : -std::log(2 * (1 - u)); break;
            case distribution::half_normal: v = normal_quantile(0.5 + 0.5 * u); break;
            case distribution::relu_gaussian: v = std::max(0.0, normal_quantile(u)); break;
        }
        x[i] = float(v);
    }
    return x;
}

std::vector<float> random_samples(distribution d, std::size_t n, unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::exponential_distribution<float> exponential(1.0f);
    std::bernoulli_distribution coin(0.5);
    std::vector<float> x(n);
    for (float& v : x) {
        switch (d) {
            case distribution::gaussian: v = normal(gen); break;
            case distribution::laplace: v = (coin(gen) ? 1.0f : -1.0f) * exponential(gen); break;
            case distribution::half_normal: v = std::fabs(normal(gen)); break;
            case distribution::relu_gaussian: v = std::max(0.0f, normal(gen)); break;
        }
    }
    return x;
}

// Brute-force argmin of the model J on the same grid as calibrate_mse_sweep: s = m k / steps,
// then 2 steps - 1 points between the neighbours of the best one.
double model_argmin(std::span<const float> x, int bits, signedness sign, int steps) {
    const double m = lowbit::calibrate_max(x, sign);
    auto j = [&](double s) { return lowbit::clipping_mse(x, s, bits, sign); };
    double best_s = m, best = j(m);
    int best_k = steps;
    for (int k = 1; k < steps; ++k) {
        const double s = m * k / steps, v = j(s);
        if (v < best) best = v, best_s = s, best_k = k;
    }
    const double lo = m * (best_k - 1) / steps, hi = std::min(m, m * (best_k + 1) / steps);
    for (int i = 1; i < 2 * steps; ++i) {
        const double s = lo + (hi - lo) * i / (2 * steps), v = j(s);
        if (v < best) best = v, best_s = s;
    }
    return best_s;
}

// How close OCTAV must come to the brute-force argmin: see the file comment.
double scale_tolerance(int bits) { return bits >= 4 ? 0.01 : bits == 3 ? 0.015 : 0.04; }

struct case_spec {
    distribution dist;
    signedness sign;
};
constexpr case_spec cases[] = {{distribution::gaussian, signed_values},
                               {distribution::laplace, signed_values},
                               {distribution::half_normal, signed_values},
                               {distribution::half_normal, unsigned_values},
                               {distribution::relu_gaussian, unsigned_values}};

constexpr int sweep_steps = 250;

}  // namespace

TEST_CASE("calibrate_max and calibrate_percentile on hand-built data") {
    const std::vector<float> x{0.5f, -3.0f, 2.0f, 0.0f, -0.25f};
    CHECK(lowbit::calibrate_max(x) == 3.0);
    CHECK(lowbit::calibrate_max(x, unsigned_values) == 2.0);
    const std::vector<float> negative{-1.0f, -2.0f};
    CHECK(lowbit::calibrate_max(negative, unsigned_values) == 0.0);  // negatives clamp to 0
    CHECK(lowbit::calibrate_max(std::vector<float>{0.0f, 0.0f}) == 0.0);

    // 1..1000 with alternating signs: nearest rank, ceil(p / 100 * n).
    std::vector<float> ramp(1000);
    for (int i = 0; i < 1000; ++i) ramp[std::size_t(i)] = float((i % 2 ? -1 : 1) * (i + 1));
    std::shuffle(ramp.begin(), ramp.end(), std::mt19937(5));
    CHECK(lowbit::calibrate_percentile(ramp, 100) == 1000.0);
    CHECK(lowbit::calibrate_percentile(ramp, 99.9) == 999.0);  // 99.9% of 1000 is the 999th
    CHECK(lowbit::calibrate_percentile(ramp, 99.95) == 1000.0);
    CHECK(lowbit::calibrate_percentile(ramp, 50) == 500.0);
    CHECK(lowbit::calibrate_percentile(ramp, 12.34) == 124.0);
    CHECK(lowbit::calibrate_percentile(ramp, 0.1) == 1.0);
    CHECK(lowbit::calibrate_percentile(ramp, 0.01) == 1.0);  // any percentile above 0 names an element
    // Unsigned: the odd values are negative and count as 0.
    CHECK(lowbit::calibrate_percentile(ramp, 50, unsigned_values) == 0.0);
    CHECK(lowbit::calibrate_percentile(ramp, 100, unsigned_values) == 999.0);
    CHECK(lowbit::calibrate_percentile(ramp, 75, unsigned_values) == 499.0);
    CHECK(lowbit::calibrate_percentile(x, 100) == lowbit::calibrate_max(x));
    CHECK(lowbit::calibrate_percentile(std::vector<float>{7.0f}, 0.5) == 7.0);
}

TEST_CASE("clipping_mse and empirical_mse on hand values") {
    // Signed B = 2, s = 1: levels -1, -0.5, 0, 0.5, 1; model noise 4^-2 / 3 = 1/48 per element in
    // (0, s], (|x| - s)^2 beyond, 0 for zeros.
    const std::vector<float> x{0.3f, -0.5f, 1.5f, 0.0f};
    const double x0 = double(0.3f);
    CHECK(lowbit::empirical_mse(x, 1.0, 2, signed_values) == Approx(((x0 - 0.5) * (x0 - 0.5) + 0.25) / 4).epsilon(1e-15));
    CHECK(lowbit::clipping_mse(x, 1.0, 2, signed_values) == Approx((2.0 / 48 + 0.25) / 4).epsilon(1e-15));
    // Unsigned B = 2, s = 1: levels 0, 0.25, 0.5, 0.75, 1; noise 4^-2 / 12 = 1/192; a negative
    // value lands on 0 (error x^2, in both).
    CHECK(lowbit::empirical_mse(x, 1.0, 2, unsigned_values) ==
          Approx(((x0 - 0.25) * (x0 - 0.25) + 0.25 + 0.25) / 4).epsilon(1e-15));
    CHECK(lowbit::clipping_mse(x, 1.0, 2, unsigned_values) == Approx((1.0 / 192 + 0.25 + 0.25) / 4).epsilon(1e-15));

    // Ties round to even, decided on the exact quotient x * 2^(B-1) / s even where the rounded
    // quotient misses the midpoint (2.25 * (2/3 rounded) is not 1.5 in double).
    const std::vector<float> ties{0.75f};  // 0.75 * 2 / 3 = 0.5 -> 0
    CHECK(lowbit::empirical_mse(ties, 3.0, 2, signed_values) == 0.5625);
    const std::vector<float> ties_up{2.25f};  // 2.25 * 2 / 3 = 1.5 -> 2 -> 3.0
    CHECK(lowbit::empirical_mse(ties_up, 3.0, 2, signed_values) == 0.5625);
    const std::vector<float> ties_neg{-2.25f};
    CHECK(lowbit::empirical_mse(ties_neg, 3.0, 2, signed_values) == 0.5625);
    const std::vector<float> near_tie{std::nextafter(2.25f, 0.0f)};  // just below: 1
    CHECK(lowbit::empirical_mse(near_tie, 3.0, 2, signed_values) ==
          Approx((double(near_tie[0]) - 1.5) * (double(near_tie[0]) - 1.5)).epsilon(1e-15));
    // Every grid point is reproduced exactly, and s itself (the top level) too.
    std::vector<float> grid;
    for (int k = -4; k <= 4; ++k) grid.push_back(float(k) * 0.375f);  // s = 1.5, B = 3: step 0.375
    CHECK(lowbit::empirical_mse(grid, 1.5, 3, signed_values) == 0.0);
}

TEST_CASE("the model J(s) agrees with the empirical MSE for B >= 4") {
    for (const auto d : {distribution::gaussian, distribution::laplace}) {
        const auto x = random_samples(d, 20000, 11);
        for (int bits = 4; bits <= 8; ++bits) {
            const double s_opt = lowbit::octav(x, bits, signed_values, 50, 0, lowbit::octav_step::paper).scale;
            for (const double f : {0.5, 0.8, 1.0, 1.25}) {
                CAPTURE(name(d), bits, f);
                const double model = lowbit::clipping_mse(x, f * s_opt, bits, signed_values);
                const double actual = lowbit::empirical_mse(x, f * s_opt, bits, signed_values);
                CHECK(relative_difference(model, actual) < 0.03);
            }
        }
    }
}

TEST_CASE("OCTAV finds the MSE-optimal clipping scalar on stratified samples") {
    for (const auto& c : cases) {
        const auto x = stratified(c.dist, 20000);
        for (int bits = 2; bits <= 8; ++bits) {
            CAPTURE(name(c.dist), lowbit::to_string(c.sign), bits);
            const double s_octav = lowbit::octav(x, bits, c.sign, 50, 0, lowbit::octav_step::paper).scale;  // converged
            const double s_sweep = lowbit::calibrate_mse_sweep(x, bits, c.sign, sweep_steps);
            const double s_model = model_argmin(x, bits, c.sign, sweep_steps);
            CAPTURE(s_octav, s_sweep, s_model);
            CHECK(relative_difference(s_octav, s_sweep) <= scale_tolerance(bits));
            CHECK(relative_difference(s_octav, s_model) <= scale_tolerance(bits));
            // What the low-bit offset costs in MSE.
            CHECK(lowbit::empirical_mse(x, s_octav, bits, c.sign) <=
                  1.005 * lowbit::empirical_mse(x, s_sweep, bits, c.sign));
        }
    }
}

TEST_CASE("OCTAV finds the MSE-optimal clipping scalar on random samples") {
    unsigned seed = 20220;
    for (const auto& c : cases) {
        const auto x = random_samples(c.dist, 20000, ++seed);
        for (int bits = 2; bits <= 8; ++bits) {
            CAPTURE(name(c.dist), lowbit::to_string(c.sign), bits);
            const double s_octav = lowbit::octav(x, bits, c.sign, 50, 0, lowbit::octav_step::paper).scale;
            const double s_sweep = lowbit::calibrate_mse_sweep(x, bits, c.sign, sweep_steps);
            const double s_model = model_argmin(x, bits, c.sign, sweep_steps);
            CAPTURE(s_octav, s_sweep, s_model);
            CHECK(relative_difference(s_octav, s_model) <= scale_tolerance(bits));
            // The empirical argmin moves with the samples' rounding noise (file comment), and the
            // sweep's minimum is the lowest of those fluctuations: the scale within 3.5%, its MSE
            // within 3% of the brute-force minimum.
            CHECK(relative_difference(s_octav, s_sweep) <= 0.035);
            CHECK(lowbit::empirical_mse(x, s_octav, bits, c.sign) <=
                  1.03 * lowbit::empirical_mse(x, s_sweep, bits, c.sign));
        }
    }
}

TEST_CASE("OCTAV converges to one fixed point from any positive start") {
    // What is checked about the history: it ends in an exact repeat, a fixed point (the last two
    // entries equal) or a 2-cycle (the last equals the one two before), because the update
    // depends on s only through which elements lie above s; every start gives the same scale;
    // and the distance to the limit (the fixed point, or the interval a 2-cycle spans) never
    // grows from one iterate to the next until it is below 1e-6 relative, except for the first
    // step from a start at or above max|x|, which clips nothing and goes to 0. The iterates are
    // not monotone at low B: they overshoot a little and come back.
    for (const auto& c : cases) {
        const auto x = random_samples(c.dist, 20000, 77);
        const double m = lowbit::calibrate_max(x, c.sign);
        for (const int bits : {1, 2, 3, 4, 6, 8, 12, 16}) {
            const auto reference = lowbit::octav(x, bits, c.sign, 50, 0, lowbit::octav_step::paper);
            const double fixed = reference.scale;
            const auto& h = reference.history;
            CAPTURE(name(c.dist), lowbit::to_string(c.sign), bits);
            REQUIRE(reference.iterations < 50);
            CHECK((h.end()[-1] == h.end()[-2] || (h.size() >= 3 && h.end()[-1] == h.end()[-3])));
            // Distance to the limit: to the interval between the two values of a 2-cycle.
            const double lo = std::min(h.end()[-1], h.end()[-2]), hi = std::max(h.end()[-1], h.end()[-2]);
            CHECK(fixed == lo);
            auto distance = [&](double v) { return v < lo ? lo - v : v > hi ? v - hi : 0.0; };
            // The paper's 10 iterations: at the fixed point for small B; short of it by a few
            // percent at high B, where the steps from the default start (about mean|x|) shrink.
            // (Unsigned B bits have the step of signed B + 1.)
            const int effective_bits = bits + (c.sign == unsigned_values ? 1 : 0);
            const double ten = relative_difference(lowbit::octav(x, bits, c.sign, 10, 0, lowbit::octav_step::paper).scale, fixed);
            if (effective_bits <= 6) CHECK(ten < 1e-3);
            else if (effective_bits <= 9) CHECK(ten < 0.05);
            for (const double f : {1e-3, 1e-2, 0.1, 0.5, 1.0, 2.0, 100.0}) {
                CAPTURE(f);
                const auto r = lowbit::octav(x, bits, c.sign, 50, f * m, lowbit::octav_step::paper);
                CHECK(r.history.front() == f * m);
                CHECK(relative_difference(r.scale, fixed) <= 1e-6);
                for (std::size_t i = 1; i < r.history.size(); ++i) {
                    const double before = distance(r.history[i - 1]), after = distance(r.history[i]);
                    CAPTURE(i, r.history[i - 1], r.history[i]);
                    const bool clips_nothing = i == 1 && r.history[0] >= m;  // s_2 = 0 (documented)
                    if (before > 1e-6 * fixed && !clips_nothing) CHECK(after <= before);
                }
            }
        }
    }
}

TEST_CASE("OCTAV's result layout and its fixed-point equation") {
    const auto x = random_samples(distribution::laplace, 5000, 3);
    const auto r = lowbit::octav(x, 4, signed_values, 10, 0, lowbit::octav_step::paper);
    REQUIRE(r.history.size() == std::size_t(r.iterations) + 1);
    CHECK(r.scale == r.history.back());
    double sum_abs = 0;
    std::size_t nonzero = 0;
    for (const float v : x) sum_abs += std::fabs(double(v)), nonzero += v != 0;
    CHECK(r.history.front() == Approx(sum_abs / double(nonzero)).epsilon(1e-12));  // s_1
    // s_2 by hand.
    const double s1 = r.history[0];
    double above = 0;
    std::size_t inside = 0, clipped = 0;
    for (const float v : x) {
        const double a = std::fabs(double(v));
        if (a > s1) above += a, ++clipped;
        else inside += a > 0;
    }
    CHECK(r.history[1] == Approx(above / (std::ldexp(1.0, -8) / 3 * double(inside) + double(clipped))).epsilon(1e-12));
    // Zero iterations: the start itself.
    const auto none = lowbit::octav(x, 4, signed_values, 0, 2.5, lowbit::octav_step::paper);
    CHECK(none.iterations == 0);
    CHECK(none.scale == 2.5);
}

TEST_CASE("zeros and (for unsigned) negatives do not move OCTAV; unsigned B is signed B+1 on |x|") {
    const auto dense = random_samples(distribution::half_normal, 4000, 9);
    std::vector<float> sparse = dense;  // dense with zeros and negatives interleaved
    for (std::size_t i = 0; i < dense.size(); ++i) sparse.insert(sparse.end(), {0.0f, -dense[i]});
    for (int bits = 2; bits <= 8; ++bits) {
        CAPTURE(bits);
        const double s = lowbit::octav(dense, bits, unsigned_values, 10, 0, lowbit::octav_step::paper).scale;
        CHECK(lowbit::octav(sparse, bits, unsigned_values, 10, 0, lowbit::octav_step::paper).scale == s);
        // Unsigned B-bit on [0, s] has the step of signed (B+1)-bit on [-s, s]: the same J.
        CHECK(lowbit::octav(dense, bits + 1, signed_values, 10, 0, lowbit::octav_step::paper).scale == s);
        // The zeros add nothing to the empirical error, so the brute-force argmin is the same.
        std::vector<float> with_zeros = dense;
        with_zeros.resize(3 * dense.size(), 0.0f);
        CHECK(lowbit::calibrate_mse_sweep(with_zeros, bits, unsigned_values, 100) ==
              lowbit::calibrate_mse_sweep(dense, bits, unsigned_values, 100));
    }
}

TEST_CASE("per-channel calibration equals per-tensor calibration of each channel") {
    constexpr std::size_t rows = 50, cols = 7;
    std::mt19937 gen(4);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> data(rows * cols);
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c) data[r * cols + c] = float(c + 1) * normal(gen) + (r == 3 ? 9.0f : 0.0f);
    for (std::size_t r = 0; r < rows; ++r) data[r * cols] = std::fabs(data[r * cols]);  // every row has a positive value
    for (const auto sign : {signed_values, unsigned_values}) {
        const auto per_column = lowbit::octav_per_channel(data.data(), rows, cols, 0, 4, sign);
        const auto max_column = lowbit::calibrate_max_per_channel(data.data(), rows, cols, 0, sign);
        REQUIRE(per_column.size() == cols);
        REQUIRE(max_column.size() == cols);
        for (std::size_t c = 0; c < cols; ++c) {
            std::vector<float> column(rows);
            for (std::size_t r = 0; r < rows; ++r) column[r] = data[r * cols + c];
            CHECK(per_column[c] == lowbit::octav(column, 4, sign).scale);
            CHECK(max_column[c] == lowbit::calibrate_max(column, sign));
        }
        const auto per_row = lowbit::octav_per_channel(data.data(), rows, cols, 1, 3, sign, 20);
        const auto max_row = lowbit::calibrate_max_per_channel(data.data(), rows, cols, 1, sign);
        REQUIRE(per_row.size() == rows);
        REQUIRE(max_row.size() == rows);
        for (std::size_t r = 0; r < rows; ++r) {
            const std::span<const float> row(data.data() + r * cols, cols);
            CHECK(per_row[r] == lowbit::octav(row, 3, sign, 20).scale);
            CHECK(max_row[r] == lowbit::calibrate_max(row, sign));
        }
    }
    // A 2 x 3 matrix by hand: columns {1, -4}, {-2, 5}, {3, -6}; rows {1, -2, 3}, {-4, 5, -6}.
    const std::vector<float> small{1, -2, 3, -4, 5, -6};
    CHECK(lowbit::calibrate_max_per_channel(small.data(), 2, 3, 0) == std::vector<double>{4, 5, 6});
    CHECK(lowbit::calibrate_max_per_channel(small.data(), 2, 3, 1) == std::vector<double>{3, 6});
    CHECK(lowbit::calibrate_max_per_channel(small.data(), 2, 3, 1, unsigned_values) == std::vector<double>{3, 5});
}

TEST_CASE("octav_options name the settings of the positional overloads") {
    std::mt19937 gen(8);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(4000);
    for (float& v : x) v = normal(gen);
    const auto paper = lowbit::octav(x, {.bits = 3, .sign = unsigned_values, .iterations = 7, .start = 0.5,
                                         .step = lowbit::octav_step::paper});
    const auto positional = lowbit::octav(x, 3, unsigned_values, 7, 0.5, lowbit::octav_step::paper);
    CHECK(paper.scale == positional.scale);
    CHECK(paper.history == positional.history);
    // defaults: 4 bits, signed, 10 iterations, the default start, the density step
    CHECK(lowbit::octav(x, {}).history == lowbit::octav(x, 4, signed_values).history);
    // per channel: every channel from the given start
    const std::size_t rows = 100, cols = 4;
    const auto per_row = lowbit::octav_per_channel(x.data(), rows, cols, 0, {.bits = 5, .iterations = 3, .start = 2.0});
    for (std::size_t c = 0; c < cols; ++c) {
        std::vector<float> column(rows);
        for (std::size_t r = 0; r < rows; ++r) column[r] = x[r * cols + c];
        CHECK(per_row[c] == lowbit::octav(column, 5, signed_values, 3, 2.0).scale);
    }
    CHECK(lowbit::octav_per_channel(x.data(), rows, cols, 1, {.bits = 2}) ==
          lowbit::octav_per_channel(x.data(), rows, cols, 1, 2, signed_values));
    CHECK_THROWS_WITH(lowbit::octav(x, {.bits = 0}), Catch::Contains("bits"));
    CHECK_THROWS_WITH(lowbit::octav_per_channel(x.data(), rows, cols, 0, {.start = -1}), Catch::Contains("start"));
}

TEST_CASE("calibration errors name the argument") {
    using Catch::Matchers::Contains;
    const std::vector<float> x{1.0f, -2.0f, 0.5f};
    const std::vector<float> empty;
    const std::vector<float> zeros{0.0f, 0.0f};
    const std::vector<float> with_nan{1.0f, std::nanf("")};

    CHECK_THROWS_WITH(lowbit::calibrate_max(empty), Contains("x is empty"));
    CHECK_THROWS_WITH(lowbit::calibrate_max(with_nan), Contains("x[1]") && Contains("not finite"));
    CHECK_THROWS_WITH(lowbit::calibrate_percentile(x, 0), Contains("percentile = 0"));
    CHECK_THROWS_WITH(lowbit::calibrate_percentile(x, 100.5), Contains("percentile = 100.5"));
    CHECK_THROWS_WITH(lowbit::calibrate_percentile(x, -1), Contains("percentile"));
    CHECK_THROWS_WITH(lowbit::calibrate_percentile(x, std::nan("")), Contains("percentile"));
    CHECK_THROWS_WITH(lowbit::calibrate_percentile(empty, 50), Contains("x is empty"));

    CHECK_THROWS_WITH(lowbit::clipping_mse(x, 0.0, 4, signed_values), Contains("s = 0"));
    CHECK_THROWS_WITH(lowbit::clipping_mse(x, -1.0, 4, signed_values), Contains("s = -1"));
    CHECK_THROWS_WITH(lowbit::empirical_mse(x, 1.0, 0, signed_values), Contains("bits = 0"));
    CHECK_THROWS_WITH(lowbit::empirical_mse(empty, 1.0, 4, signed_values), Contains("x is empty"));
    CHECK_THROWS_WITH(lowbit::calibrate_mse_sweep(x, 4, signed_values, 0), Contains("steps = 0"));
    CHECK_THROWS_WITH(lowbit::calibrate_mse_sweep(zeros, 4, signed_values), Contains("x has no non-zero value"));

    CHECK_THROWS_WITH(lowbit::octav(empty, 4, signed_values), Contains("x is empty"));
    CHECK_THROWS_WITH(lowbit::octav(zeros, 4, signed_values), Contains("x has no non-zero value"));
    const std::vector<float> negatives{-1.0f, 0.0f};
    CHECK_THROWS_WITH(lowbit::octav(negatives, 4, unsigned_values), Contains("x has no positive value"));
    CHECK_THROWS_WITH(lowbit::octav(x, 4, signed_values, 10, -1.0), Contains("start = -1"));
    CHECK_THROWS_WITH(lowbit::octav(x, 4, signed_values, 10, std::nan("")), Contains("start"));
    CHECK_THROWS_WITH(lowbit::octav(x, 4, signed_values, -1), Contains("iterations = -1"));
    CHECK_THROWS_WITH(lowbit::octav(x, 33, signed_values), Contains("bits = 33"));
    CHECK_THROWS_WITH(lowbit::octav(with_nan, 4, signed_values), Contains("x[1]"));

    const std::vector<float> m{1, 0, 2, 0};  // 2 x 2: column 1 is all zeros
    CHECK_THROWS_WITH(lowbit::octav_per_channel(m.data(), 2, 2, 0, 4, signed_values),
                      Contains("channel 1 (column)"));
    CHECK_THROWS_WITH(lowbit::octav_per_channel(m.data(), 2, 2, 2, 4, signed_values), Contains("axis = 2"));
    CHECK_THROWS_WITH(lowbit::octav_per_channel(m.data(), 0, 2, 0, 4, signed_values), Contains("rows = 0"));
    CHECK_THROWS_WITH(lowbit::octav_per_channel(nullptr, 2, 2, 0, 4, signed_values), Contains("data is null"));
    CHECK_THROWS_WITH(lowbit::calibrate_max_per_channel(m.data(), 2, 0, 1), Contains("cols = 0"));
    const std::vector<float> m_nan{1, 0, std::nanf(""), 0};
    CHECK_THROWS_WITH(lowbit::calibrate_max_per_channel(m_nan.data(), 2, 2, 1), Contains("data[2]"));
    CHECK_THROWS_WITH(lowbit::octav_per_channel(m_nan.data(), 2, 2, 1, 4, signed_values), Contains("data[2]"));
    CHECK(lowbit::calibrate_max_per_channel(m.data(), 2, 2, 0) == std::vector<double>{2, 0});  // a dead channel is 0
}

TEST_CASE("OCTAV (default: with the density term) is within 1% of the brute-force MSE minimum for B = 2..8") {
    // The paper's step drops c s^2 f(s) (file comment); with it, the fixed point is J's minimum.
    // Against the empirical MSE: J's uniform-noise model itself misplaces the minimum of Laplace
    // data at B = 2 and 3 (by 3.0% and 1.1% on these samples: the model's argmin is there too).
    for (const auto& c : cases) {
        const auto x = stratified(c.dist, 20000);
        for (int bits = 2; bits <= 8; ++bits) {
            CAPTURE(name(c.dist), lowbit::to_string(c.sign), bits);
            const double s_octav = lowbit::octav(x, bits, c.sign, 100).scale;
            const double s_sweep = lowbit::calibrate_mse_sweep(x, bits, c.sign, sweep_steps);
            const double s_model = model_argmin(x, bits, c.sign, sweep_steps);
            CAPTURE(s_octav, s_sweep, s_model);
            const bool model_off = c.dist == distribution::laplace && bits <= 3;
            CHECK(relative_difference(s_octav, s_sweep) <= (model_off ? 0.035 : 0.01));
            CHECK(relative_difference(s_octav, s_model) <= 0.01);
        }
    }
    unsigned seed = 777;
    for (const auto& c : cases) {
        const auto x = random_samples(c.dist, 20000, ++seed);
        for (int bits = 2; bits <= 8; ++bits) {
            CAPTURE(name(c.dist), lowbit::to_string(c.sign), bits);
            const double s_octav = lowbit::octav(x, bits, c.sign, 100, 0, lowbit::octav_step::with_density).scale;
            const double s_model = model_argmin(x, bits, c.sign, sweep_steps);
            CAPTURE(s_octav, s_model);
            CHECK(relative_difference(s_octav, s_model) <= 0.01);
            // and from starts far above and far below: the same fixed point
            for (const double start : {10 * s_model, 0.01 * s_model}) {
                const double from = lowbit::octav(x, bits, c.sign, 300, start).scale;
                CAPTURE(start, from);
                CHECK(relative_difference(from, s_octav) <= 1e-3);
            }
        }
    }
}

// quantize_clipped against MPFR, from the header's definition: the code round(x L / s) (L = 2^(B-1)
// signed, 2^B unsigned; to nearest, ties to even, on the exact quotient), clamped to [-L, L] or
// [0, L], and the value code * s / L rounded once to float. The quotient of two doubles at 300 bits
// is a half-integer only when the exact quotient is one, so MPFR's rint at that precision decides
// ties as the definition does. Data: random values over many binades, values on the grid's
// midpoints (scales that are powers of two times small odd numbers make them floats), values at
// and beyond +-s, negatives under the unsigned quantizer, and scales with long significands
// (code * step then needs more than float's bits: the final rounding is a real one). Zeros: a
// signed quantizer keeps the sign of a value that rounds to 0 (as IEEE rounding does), an unsigned
// one gives +0.
TEST_CASE("quantize_clipped equals the clipped quantizer computed with MPFR") {
    std::mt19937_64 engine(2026);
    std::uniform_real_distribution<double> unit(0, 1);
    mpfr_t q, k;
    mpfr_inits2(300, q, k, static_cast<mpfr_ptr>(nullptr));
    const auto reference = [&](float x, double s, int bits, signedness sign) {
        const double levels = std::ldexp(1.0, sign == signed_values ? bits - 1 : bits);
        mpfr_set_flt(q, x, MPFR_RNDN);
        mpfr_mul_d(q, q, levels, MPFR_RNDN);  // exact: levels is a power of two
        mpfr_div_d(q, q, s, MPFR_RNDN);
        mpfr_rint(k, q, MPFR_RNDN);           // ties to even
        const double lowest = sign == signed_values ? -levels : 0.0;
        if (mpfr_cmp_d(k, levels) > 0) mpfr_set_d(k, levels, MPFR_RNDN);
        if (mpfr_cmp_d(k, lowest) < 0) mpfr_set_d(k, lowest, MPFR_RNDN);
        if (sign == unsigned_values && mpfr_zero_p(k)) mpfr_set_zero(k, 1);  // an unsigned code has no sign
        mpfr_mul_d(k, k, s, MPFR_RNDN);       // exact at 300 bits
        mpfr_div_d(k, k, levels, MPFR_RNDN);  // exact
        return mpfr_get_flt(k, MPFR_RNDN);
    };
    std::size_t checked = 0, ties = 0;
    for (int trial = 0; trial < 400; ++trial) {
        const int bits = 1 + trial % 8;
        const signedness sign = trial % 3 == 0 ? unsigned_values : signed_values;
        const double levels = std::ldexp(1.0, sign == signed_values ? bits - 1 : bits);
        // every fourth scale has a 53-bit significand; the others are a small odd number times 2^e
        const double s = trial % 4 == 0 ? std::ldexp(1 + unit(engine), int(unit(engine) * 40) - 20)
                                         : std::ldexp(double(1 + 2 * int(unit(engine) * 8)), int(unit(engine) * 30) - 15);
        std::vector<float> x;
        for (int i = 0; i < 200; ++i) {
            const double sign_of = unit(engine) < 0.5 ? -1 : 1;
            x.push_back(float(sign_of * s * std::ldexp(unit(engine), int(unit(engine) * 12) - 10) * 1.5));
            const double tie = (std::floor(unit(engine) * 2 * levels) - levels + 0.5) * s / levels;  // a midpoint
            x.push_back(float(tie));
        }
        for (const double edge : {s, -s, 1.5 * s, -1.5 * s, s * (1 - 1e-9), 0.0})
            x.push_back(float(edge));
        std::vector<float> out(x.size());
        lowbit::quantize_clipped(x, s, bits, sign, out);
        for (std::size_t i = 0; i < x.size(); ++i) {
            const float want = reference(x[i], s, bits, sign);
            CAPTURE(bits, lowbit::to_string(sign), s, x[i], want, out[i]);
            REQUIRE(std::bit_cast<std::uint32_t>(out[i]) == std::bit_cast<std::uint32_t>(want));
            ties += double(x[i]) * levels / s - std::floor(double(x[i]) * levels / s) == 0.5;
            ++checked;
        }
    }
    // Scales built so that code 3's value 3 s / L lies within a few double ulps of a float midpoint:
    // there the double product k * step is often exactly the midpoint while the exact value is
    // not, and rounding the double to float would err (double rounding).
    std::size_t double_rounding_traps = 0;
    for (int trial = 0; trial < 4000; ++trial) {
        const int bits = 4;
        const double levels = 8;
        const double midpoint = 1 + std::floor(unit(engine) * 0x1p23) * 0x1p-23 + 0x1p-24;
        double s = midpoint * levels / 3;
        for (int u = trial % 7 - 3; u != 0; u += u > 0 ? -1 : 1) s = std::nextafter(s, u > 0 ? 10.0 : 0.0);
        const double step = s / levels, hi = 3 * step;
        double_rounding_traps += hi == midpoint && std::fma(3, step, -hi) != 0;
        const std::vector<float> x{float(hi), -float(hi)};
        std::vector<float> out(2);
        lowbit::quantize_clipped(x, s, bits, signed_values, out);
        for (std::size_t i = 0; i < 2; ++i) {
            const float want = reference(x[i], s, bits, signed_values);
            CAPTURE(s, x[i], want, out[i]);
            REQUIRE(std::bit_cast<std::uint32_t>(out[i]) == std::bit_cast<std::uint32_t>(want));
        }
    }
    CHECK(double_rounding_traps > 100);
    mpfr_clears(q, k, static_cast<mpfr_ptr>(nullptr));
    CHECK(checked > 150000);
    CHECK(ties > 20000);  // the midpoints did land on floats: ties were decided
}

TEST_CASE("quantize_clipped: in place, empty input, and its errors") {
    std::vector<float> x{0.3f, -2.0f, 0.26f};
    lowbit::quantize_clipped(x, 1.0, 2, signed_values, x);  // step 0.5: 0.5, -1 (clipped), 0.5
    CHECK(x == std::vector<float>{0.5f, -1.0f, 0.5f});
    std::vector<float> none;
    lowbit::quantize_clipped(none, 1.0, 4, signed_values, none);
    std::vector<float> out(2);
    const auto message = [](auto&& f) {
        try {
            f();
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("no exception");
    };
    CHECK(message([&] { lowbit::quantize_clipped(x, 1.0, 4, signed_values, out); }) ==
          "lowbit::quantize_clipped: out has 2 elements, x has 3");
    CHECK(message([&] { lowbit::quantize_clipped(x, 0.0, 4, signed_values, x); }) ==
          "lowbit::quantize_clipped: s = 0 must be positive and finite");
    CHECK(message([&] { lowbit::quantize_clipped(x, 1.0, 0, signed_values, x); }) ==
          "lowbit::quantize_clipped: bits = 0 must be in [1, 32]");
    x[1] = NAN;
    CHECK(message([&] { lowbit::quantize_clipped(x, 1.0, 4, signed_values, x); }) ==
          "lowbit::quantize_clipped: x[1] = nan is not finite");
}
