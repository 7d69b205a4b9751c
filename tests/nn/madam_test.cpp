// Tests of lowbit/nn/madam.hpp: the first step against the formula by hand, convergence on a
// convex quadratic, LNS-Madam staying on the lns8 grid bit for bit (clamp included), the clamp
// to w_max, skipped NaN gradients, and errors that name the argument.
#include <lowbit/nn/madam.hpp>

#include <lowbit/formats/lns_format.hpp>
#include <lowbit/rounding/lns_quantize.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

double sign_of(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

// The message of the std::invalid_argument that f throws ("" if none).
template <class F>
std::string error_of(F f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

// w rounded to lns8 as the library's float quantizer does it (correctly rounded float of
// 2^(k/8)), for the bitwise grid checks.
float on_lns8(float w) { return lowbit::lns_quantizer{.format = lowbit::lns8}(w); }

}  // namespace

TEST_CASE("madam: the first step is w * 2^(-lr sign(g) sign(w))") {
    // At t = 1, v = (1 - beta) g^2 and v_hat = v / (1 - beta) = g^2, so g_hat = g / |g| = sign(g)
    // (clamping does nothing); g = 0 gives v_hat = 0 and no update; w = 0 cannot move.
    const std::vector<float> w0 = {0.5f, -2.0f, 1.0f, -0.25f, 0.0f, 3.0f, 1.75f, -0.0f};
    const std::vector<float> g = {0.3f, 0.7f, -1e-3f, -5.0f, 1.0f, 0.0f, 1e20f, -2.0f};
    for (const bool integer_steps : {false, true}) {
        CAPTURE(integer_steps);
        lowbit::madam_options o;
        o.learning_rate = 1.0 / 128;
        o.integer_steps = integer_steps;
        o.max_weight_factor = 100;  // no clamping here
        lowbit::madam opt(w0, o);
        std::vector<float> w = w0;
        opt.step(w, g);
        CHECK(opt.steps() == 1);
        for (std::size_t i = 0; i < w.size(); ++i) {
            CAPTURE(i);
            const double expected =
                double(w0[i]) * std::exp2(-o.learning_rate * sign_of(g[i]) * sign_of(w0[i]));
            // Exact: with integer_steps g_hat is exactly +-1 by construction; without, g / sqrt(v_hat)
            // is +-1 to within an ulp or so, which the rounding to float absorbs for these values.
            CHECK(std::bit_cast<std::uint32_t>(w[i]) == std::bit_cast<std::uint32_t>(float(expected)));
            CHECK(opt.second_moments()[i] == Approx((1 - o.beta) * double(g[i]) * g[i]).epsilon(1e-14));
        }
        CHECK(w[4] == 0.0f);  // zero stays zero even with a nonzero gradient
    }
}

TEST_CASE("madam: the second step follows the formula (bias correction, clamp of g_hat)") {
    lowbit::madam_options o;
    o.max_weight_factor = 100;
    const std::vector<float> w0 = {1.0f, -1.0f, 2.0f};
    lowbit::madam opt(w0, o);
    std::vector<float> w = w0;
    const std::vector<float> g1 = {1.0f, 1.0f, 1e-6f};
    const std::vector<float> g2 = {0.5f, -3.0f, 1.0f};
    opt.step(w, g1);
    std::vector<float> w1 = w;
    opt.step(w, g2);
    for (std::size_t i = 0; i < w.size(); ++i) {
        CAPTURE(i);
        const double b = o.beta;
        const double v = b * (1 - b) * double(g1[i]) * g1[i] + (1 - b) * double(g2[i]) * g2[i];
        const double v_hat = v / (1 - b * b);
        const double g_hat = std::clamp(g2[i] / std::sqrt(v_hat), -o.max_step, o.max_step);
        const double expected = double(w1[i]) * std::exp2(-o.learning_rate * g_hat * sign_of(w1[i]));
        CHECK(w[i] == Approx(expected).epsilon(1e-6));
    }
}

TEST_CASE("madam: g_hat is clamped to max_step") {
    // After 200 tiny gradients a jump to g = 1 gives g / sqrt(v_hat) ~ sqrt((1 - beta^201) /
    // (1 - beta)) ~ 13.5 > 10: log2 w moves by -10 / 128 exactly (up to float rounding).
    lowbit::madam_options o;
    o.max_weight_factor = 100;
    const std::vector<float> w0 = {2.0f};
    lowbit::madam opt(w0, o);
    std::vector<float> w = w0;
    for (int s = 0; s < 200; ++s) opt.step(w, std::vector<float>{1e-6f});
    const float before = w[0];
    opt.step(w, std::vector<float>{1.0f});
    CHECK(std::log2(double(w[0]) / double(before)) == Approx(-10.0 / 128).epsilon(1e-5));
}

TEST_CASE("madam: minimizes a convex quadratic") {
    // f(w) = sum a_i (w_i - c_i)^2 from a start with the signs of c (a multiplicative update cannot
    // cross zero). w_max = 3 RMS(w0) = 3.3 leaves every c_i reachable.
    const std::vector<double> a = {1.0, 0.5, 2.0, 4.0, 10.0};
    const std::vector<double> c = {1.5, -0.75, 3.0, -0.2, 0.05};
    const std::vector<float> w0 = {0.5f, -2.0f, 1.0f, -0.8f, 0.4f};
    const auto loss = [&](const std::vector<float>& w) {
        double s = 0;
        for (std::size_t i = 0; i < w.size(); ++i) s += a[i] * (w[i] - c[i]) * (w[i] - c[i]);
        return s;
    };
    lowbit::madam opt(w0);
    REQUIRE(opt.max_weight() == Approx(3.3).epsilon(1e-6));
    std::vector<float> w = w0, g(w.size());
    const double start = loss(w);
    for (int s = 0; s < 3000; ++s) {
        for (std::size_t i = 0; i < w.size(); ++i) g[i] = float(2 * a[i] * (w[i] - c[i]));
        opt.step(w, g);
    }
    CHECK(opt.steps() == 3000);
    CHECK(loss(w) < 0.01 * start);
    for (std::size_t i = 0; i < w.size(); ++i) {
        CAPTURE(i, w[i], c[i]);
        CHECK(std::fabs(w[i] - c[i]) <= 0.03 * std::fabs(c[i]));
    }
}

TEST_CASE("LNS-Madam keeps every weight on the lns8 grid, bit for bit") {
    // Sanity of the comparison itself: for lns8 the float quantizer's values are the doubles of
    // lns_quantize rounded to float (no double-rounding surprise), so both checks below agree.
    for (int k = lowbit::lns8.k_min(); k <= lowbit::lns8.k_max(); ++k) {
        CAPTURE(k);
        REQUIRE(lowbit::lns_magnitude_float(k, lowbit::lns8) == float(lowbit::lns8.magnitude(k)));
    }

    std::mt19937 rng(12345);
    std::normal_distribution<double> normal(0.0, 1.0);
    const std::size_t n = 256;
    std::vector<float> w0(n);
    for (auto& x : w0) x = on_lns8(float(normal(rng)));
    w0[7] = 0.0f;  // a zero weight, which must stay zero
    for (const float x : w0) REQUIRE(on_lns8(x) == x);

    lowbit::madam_options o;
    o.learning_rate = 1.0 / lowbit::lns8.gamma();
    o.integer_steps = true;
    o.lns_grid = lowbit::lns8;
    lowbit::madam opt(w0, o);

    // The clamp bound itself is a grid value, at most 3 RMS and less than one grid step below.
    double rms = 0;
    for (const float x : w0) rms += double(x) * x;
    rms = std::sqrt(rms / double(n));
    const double w_max = opt.max_weight();
    CHECK(lowbit::lns_quantize(w_max, lowbit::lns8) == w_max);
    CHECK(w_max <= 3 * rms);
    CHECK(w_max * lowbit::lns8.base() > 3 * rms);
    const float w_max_float = float(w_max);

    std::vector<float> w = w0, g(n), before(n);
    std::size_t clamped = 0, moved = 0;
    for (int s = 0; s < 200; ++s) {
        // Gradients over many scales, so g_hat takes many integer values and hits +-max_step.
        for (auto& x : g) x = float(normal(rng) * std::exp2(3 * normal(rng)));
        before = w;
        opt.step(w, g);
        for (std::size_t i = 0; i < n; ++i) {
            CAPTURE(s, i, w[i]);
            REQUIRE(std::bit_cast<std::uint32_t>(w[i]) == std::bit_cast<std::uint32_t>(on_lns8(w[i])));
            REQUIRE(std::bit_cast<std::uint32_t>(w[i]) ==
                    std::bit_cast<std::uint32_t>(float(lowbit::lns_quantize(double(w[i]), lowbit::lns8))));
            REQUIRE(std::fabs(w[i]) <= w_max_float);
            REQUIRE(std::signbit(w[i]) == std::signbit(before[i]));
            if (i != 7) REQUIRE(w[i] != 0.0f);  // below k_min saturates, never to zero
            if (std::fabs(w[i]) == w_max_float) ++clamped;
            if (w[i] != before[i]) ++moved;
        }
        REQUIRE(w[7] == 0.0f);
    }
    CHECK(clamped > 0);  // the clamp case was exercised (and stayed on the grid)
    CHECK(moved > 0);
}

TEST_CASE("LNS-Madam without lns_grid: k moves by integers, the float only approximately on the grid") {
    // Documented in the header: without the grid option the log of every weight still moves by
    // whole grid steps, but the stored float is only within float rounding of 2^(k/8).
    std::mt19937 rng(7);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<float> w0(64);
    for (auto& x : w0) x = on_lns8(float(normal(rng)));
    lowbit::madam_options o;
    o.learning_rate = 1.0 / 8;
    o.integer_steps = true;
    o.max_weight_factor = 1e6;  // no clamp: it would move weights off the grid
    lowbit::madam opt(w0, o);
    std::vector<float> w = w0, g(w.size());
    for (int s = 0; s < 200; ++s) {
        for (auto& x : g) x = float(normal(rng));
        opt.step(w, g);
        for (const float x : w) {
            const double k = 8 * std::log2(std::fabs(double(x)));
            REQUIRE(std::fabs(k - std::round(k)) < 1e-4);
        }
    }
}

TEST_CASE("madam: clamps to w_max = factor * RMS(initial weights)") {
    const std::vector<float> w0 = {1.0f, -1.0f, 1.0f, -1.0f};  // RMS 1
    lowbit::madam_options o;
    o.max_weight_factor = 1.5;
    o.learning_rate = 1.0 / 4;
    lowbit::madam opt(w0, o);
    CHECK(opt.max_weight() == 1.5);
    std::vector<float> w = w0;
    // Negative gradient on a positive weight grows it (and vice versa for negative weights).
    const std::vector<float> g = {-1.0f, 1.0f, 1.0f, -1.0f};
    for (int s = 0; s < 10; ++s) opt.step(w, g);
    CHECK(w[0] == 1.5f);
    CHECK(w[1] == -1.5f);
    CHECK(w[2] < 1.0f);
    CHECK(w[3] > -1.0f);
    CHECK(w[2] > 0.0f);
    CHECK(w[3] < 0.0f);

    // All-zero initial weights: w_max = 0, everything stays zero.
    const std::vector<float> zeros(3, 0.0f);
    lowbit::madam zero_opt(zeros);
    CHECK(zero_opt.max_weight() == 0.0);
    std::vector<float> wz = zeros;
    zero_opt.step(wz, std::vector<float>{1.0f, -1.0f, 0.5f});
    CHECK((wz[0] == 0.0f && wz[1] == 0.0f && wz[2] == 0.0f));
}

TEST_CASE("madam: a NaN or infinite gradient leaves the weight and its v unchanged") {
    const std::vector<float> w0 = {1.0f, 2.0f, -0.5f};
    lowbit::madam_options o;
    o.max_weight_factor = 10;
    lowbit::madam opt(w0, o);
    std::vector<float> w = w0;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    opt.step(w, std::vector<float>{nan, inf, 1.0f});
    CHECK(w[0] == 1.0f);
    CHECK(w[1] == 2.0f);
    CHECK(w[2] != -0.5f);  // the finite one moved
    CHECK(opt.second_moments()[0] == 0.0);
    CHECK(opt.second_moments()[1] == 0.0);
    // The weights are not frozen: a finite gradient afterwards updates them.
    opt.step(w, std::vector<float>{1.0f, -1.0f, 1.0f});
    CHECK(w[0] < 1.0f);
    CHECK(w[1] > 2.0f);
    CHECK(std::isfinite(opt.second_moments()[0]));
    CHECK(std::isfinite(opt.second_moments()[1]));
}

TEST_CASE("madam: bad input throws std::invalid_argument naming the argument") {
    const std::vector<float> w0 = {1.0f, 2.0f};
    const auto with = [&](auto set) {
        return error_of([&] {
            lowbit::madam_options o;
            set(o);
            lowbit::madam opt(w0, o);
        });
    };
    CHECK_THAT(with([](auto& o) { o.learning_rate = 0; }), Catch::Contains("learning_rate"));
    CHECK_THAT(with([](auto& o) { o.learning_rate = -1; }), Catch::Contains("learning_rate"));
    CHECK_THAT(with([](auto& o) { o.learning_rate = std::nan(""); }), Catch::Contains("learning_rate"));
    CHECK_THAT(with([](auto& o) { o.beta = 0; }), Catch::Contains("beta"));
    CHECK_THAT(with([](auto& o) { o.beta = 1; }), Catch::Contains("beta"));
    CHECK_THAT(with([](auto& o) { o.beta = 1.5; }), Catch::Contains("beta"));
    CHECK_THAT(with([](auto& o) { o.max_step = 0; }), Catch::Contains("max_step"));
    CHECK_THAT(with([](auto& o) { o.max_weight_factor = -3; }), Catch::Contains("max_weight_factor"));
    CHECK_THAT(with([](auto& o) { o.lns_grid = lowbit::lns_format{1, 3, 0}; }), Catch::Contains("lns_grid"));
    CHECK(with([](auto&) {}).empty());

    CHECK_THAT(error_of([] {
                   const std::vector<float> bad = {1.0f, std::numeric_limits<float>::infinity()};
                   lowbit::madam opt(bad);
               }),
               Catch::Contains("initial_weights"));

    lowbit::madam opt(w0);
    std::vector<float> w3 = {1, 2, 3}, w2 = w0;
    const std::vector<float> g2 = {1, 1}, g3 = {1, 1, 1};
    CHECK_THAT(error_of([&] { opt.step(w3, g3); }), Catch::Contains("weights has 3"));
    CHECK_THAT(error_of([&] { opt.step(w2, g3); }), Catch::Contains("gradients"));
    CHECK(opt.steps() == 0);  // nothing happened
    CHECK(w2 == w0);
    CHECK(error_of([&] { opt.step(w2, g2); }).empty());
    CHECK(opt.steps() == 1);
}

// Stochastic grid rounding: with learning_rate = 3/128 the first step (g_hat = sign(g) exactly,
// since v_hat = g^2) moves every k of an lns8 weight by 3/16 of a code. Rounded to nearest, that
// update is lost for every weight; rounded stochastically, k becomes floor(t) + 1 exactly when
// floor(frac(t) 2^32) + u >= 2^32 (u = random_bits_at(seed, i): the rule of lns_quantize.hpp, written
// out here), the weight stays on the grid, and about 3/16 of the weights move.
TEST_CASE("LNS-Madam with stochastic grid rounding: sub-code steps are kept on average, on the grid") {
    std::mt19937 rng(99);
    std::uniform_int_distribution<int> code(-40, 30);
    const std::size_t n = 4096;
    std::vector<int> k0(n);
    std::vector<float> w0(n), g(n);
    for (std::size_t i = 0; i < n; ++i) {
        k0[i] = code(rng);
        w0[i] = (i % 3 == 0 ? -1.0f : 1.0f) * lowbit::lns_magnitude_float(k0[i], lowbit::lns8);
        g[i] = (i % 5 < 2 ? -1.0f : 1.0f) * float(std::exp2(double(code(rng)) / 4));
    }
    lowbit::madam_options o{.learning_rate = 3.0 / 128, .max_weight_factor = 1e3, .integer_steps = true,
                            .lns_grid = lowbit::lns8};
    // to nearest: every update is lost (3/16 of a code)
    std::vector<float> nearest = w0;
    lowbit::madam(w0, o).step(nearest, g);
    CHECK(nearest == w0);

    o.grid_rounding = lowbit::lns_rounding::stochastic_log;
    o.seed = 2024;
    std::vector<float> w = w0;
    lowbit::madam(w0, o).step(w, g);
    std::size_t moved = 0;
    const std::uint64_t fraction_down = 13ull << 28, fraction_up = 3ull << 28;  // 13/16, 3/16 of 2^32
    for (std::size_t i = 0; i < n; ++i) {
        CAPTURE(i, k0[i], w0[i], g[i]);
        // log2|w| moves by -lr sign(g) sign(w): t = k0 - 3/16 (down) or k0 + 3/16 (up)
        const bool down = (g[i] > 0) == (w0[i] > 0);
        const std::uint64_t u = lowbit::random_bits_at(2024, i);
        const int expected = down ? (fraction_down + u >= (1ull << 32) ? k0[i] : k0[i] - 1)
                                  : (fraction_up + u >= (1ull << 32) ? k0[i] + 1 : k0[i]);
        const float expected_w = std::copysign(lowbit::lns_magnitude_float(expected, lowbit::lns8), w0[i]);
        REQUIRE(std::bit_cast<std::uint32_t>(w[i]) == std::bit_cast<std::uint32_t>(expected_w));
        moved += w[i] != w0[i];
    }
    // about 3/16 of them move (binomial standard deviation 0.006 of n)
    CHECK(std::fabs(double(moved) / double(n) - 3.0 / 16) < 0.025);
    // the same seed repeats, another one differs
    std::vector<float> again = w0, other = w0;
    lowbit::madam(w0, o).step(again, g);
    CHECK(again == w);
    o.seed = 2025;
    lowbit::madam(w0, o).step(other, g);
    CHECK(other != w);
    CHECK_THAT(error_of([&] {
                   o.grid_rounding = lowbit::lns_rounding(9);
                   lowbit::madam bad(w0, o);
               }),
               Catch::Contains("grid_rounding = 9"));
}
