// Tests of lowbit/scaling/int_scaling.hpp: per-tensor and per-channel round trips on hand values,
// every rounding mode on ties (with a scale that is not a power of two), decisions on the exact
// quotient where the double quotient lands on a tie or an integer, every mode against an MPFR
// reference on random and near-tie quotients, narrow vs full range,
// unsigned, stochastic rounding (unbiased within 4 sigma, bit-identical to int_quantizer), and
// the errors.
#include <lowbit/scaling/int_scaling.hpp>

#include <lowbit/rounding/int_quantizer.hpp>

#include <catch2/catch.hpp>
#include <mpfr.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

using lowbit::int_scaling;
using lowbit::rounding;

namespace {

// codes and dequantized values of x with one scale
struct quantized {
    std::vector<std::int32_t> codes;
    std::vector<float> values;
};

quantized run(const std::vector<float>& x, double scale, const int_scaling& q) {
    quantized r{std::vector<std::int32_t>(x.size()), std::vector<float>(x.size())};
    lowbit::quantize_scaled(x, scale, q, r.values, r.codes);
    return r;
}

}  // namespace

TEST_CASE("int_scaling: code ranges and scale_for_max") {
    CHECK(int_scaling{}.max_code() == 127);
    CHECK(int_scaling{}.min_code() == -128);
    CHECK(int_scaling{.narrow_range = true}.min_code() == -127);
    CHECK(int_scaling{.bits = 4, .is_signed = false}.max_code() == 15);
    CHECK(int_scaling{.bits = 4, .is_signed = false, .narrow_range = true}.min_code() == 0);
    CHECK(int_scaling{.bits = 20}.max_code() == 524287);

    CHECK(lowbit::scale_for_max(127.0, int_scaling{}) == 1.0f);
    CHECK(lowbit::scale_for_max(127.0, int_scaling{.narrow_range = true}) == 1.0f);  // same s: amax -> 127
    CHECK(lowbit::scale_for_max(2.54, int_scaling{}) == float(2.54 / 127));
    CHECK(lowbit::scale_for_max(30.0, int_scaling{.bits = 4, .is_signed = false}) == 2.0f);
    CHECK(lowbit::scale_for_max(0.0, int_scaling{}) == 1.0f);  // all-zero tensor: any scale, 1 chosen
    CHECK(lowbit::scale_for_max(1e-300, int_scaling{}) == std::numeric_limits<float>::denorm_min());
}

TEST_CASE("int_scaling: per-tensor round trip on hand values") {
    const std::vector<float> x{0.0f, 1.4f, -1.6f, 2.5f, -2.5f, 127.0f, -128.0f, 200.0f, -200.0f, -0.0f};
    const double s = lowbit::scale_for_max(127.0, int_scaling{});  // 1
    const auto full = run(x, s, int_scaling{});
    CHECK(full.codes == std::vector<std::int32_t>{0, 1, -2, 2, -2, 127, -128, 127, -128, 0});
    CHECK(full.values == std::vector<float>{0, 1, -2, 2, -2, 127, -128, 127, -128, 0});
    CHECK(std::signbit(full.values[9]));  // -0 stays -0

    // A scale of 0.25: the codes are 4x and the values are back on the 0.25 grid.
    const std::vector<float> y{0.3f, -0.375f, 0.625f, 31.75f, 40.0f, -40.0f};
    const auto quarter = run(y, 0.25, int_scaling{});
    CHECK(quarter.codes == std::vector<std::int32_t>{1, -2, 2, 127, 127, -128});
    CHECK(quarter.values == std::vector<float>{0.25f, -0.5f, 0.5f, 31.75f, 31.75f, -32.0f});

    // Dequantizing the codes gives the same values; in place works.
    std::vector<float> back(y.size());
    lowbit::dequantize_scaled(quarter.codes, 0.25, back);
    CHECK(back == quarter.values);
    std::vector<float> in_place = y;
    lowbit::quantize_scaled(in_place, 0.25, int_scaling{}, in_place);
    CHECK(in_place == quarter.values);
}

TEST_CASE("int_scaling: every rounding mode on ties, non-ties and exact quotients") {
    // scale 3 (not a power of two): x / 3 = +-2.5, +-3.5, +-2.25, 3 exactly.
    const std::vector<float> x{7.5f, -7.5f, 10.5f, -10.5f, 6.75f, -6.75f, 9.0f};
    struct row {
        rounding mode;
        std::vector<std::int32_t> codes;
    };
    const row rows[] = {
        {rounding::nearest_even, {2, -2, 4, -4, 2, -2, 3}},
        {rounding::nearest_away, {3, -3, 4, -4, 2, -2, 3}},
        {rounding::toward_zero, {2, -2, 3, -3, 2, -2, 3}},
        {rounding::toward_positive, {3, -2, 4, -3, 3, -2, 3}},
        {rounding::toward_negative, {2, -3, 3, -4, 2, -3, 3}},
        {rounding::odd, {3, -3, 3, -3, 3, -3, 3}},
    };
    for (const row& r : rows) {
        INFO(lowbit::to_string(r.mode));
        const auto q = run(x, 3.0, int_scaling{.mode = r.mode});
        CHECK(q.codes == r.codes);
        for (std::size_t i = 0; i < x.size(); ++i) CHECK(q.values[i] == float(3.0 * r.codes[i]));
    }
    // Next to the tie: the neighbours of 7.5 decide by which side they are on.
    const std::vector<float> near{std::nextafter(7.5f, 8.0f), std::nextafter(7.5f, 7.0f)};
    CHECK(run(near, 3.0, int_scaling{}).codes == std::vector<std::int32_t>{3, 2});
    CHECK(run(near, 3.0, int_scaling{.mode = rounding::nearest_away}).codes == std::vector<std::int32_t>{3, 2});
}

TEST_CASE("int_scaling: decisions are taken on the exact quotient, not the double one") {
    // 0.4 in double is 0.4000000000000000222..., so 1 / 0.4 = 2.4999999999999998612... and
    // 2 / 0.4 = 4.99999999999999972..., which double division rounds to 2.5 and 5 exactly.
    REQUIRE(1.0 / 0.4 == 2.5);
    REQUIRE(2.0 / 0.4 == 5.0);
    const std::vector<float> x{1.0f, 2.0f, -2.0f};
    CHECK(run(x, 0.4, int_scaling{.mode = rounding::nearest_away}).codes == std::vector<std::int32_t>{2, 5, -5});
    CHECK(run(x, 0.4, int_scaling{.mode = rounding::nearest_even}).codes == std::vector<std::int32_t>{2, 5, -5});
    CHECK(run(x, 0.4, int_scaling{.mode = rounding::toward_zero}).codes == std::vector<std::int32_t>{2, 4, -4});
    CHECK(run(x, 0.4, int_scaling{.mode = rounding::toward_positive}).codes == std::vector<std::int32_t>{3, 5, -4});
    CHECK(run(x, 0.4, int_scaling{.mode = rounding::odd}).codes == std::vector<std::int32_t>{3, 5, -5});
}

namespace {

// The code of x / s under the mode, from the definition, with the quotient in 256-bit MPFR (the
// floor, tie and stochastic decisions need far fewer bits than that for a float x and double s).
double reference_code(float x, double s, rounding mode, std::uint32_t random, int random_bits,
                      const int_scaling& q) {
    mpfr_t quotient, floor, frac;
    mpfr_inits2(256, quotient, floor, frac, static_cast<mpfr_ptr>(nullptr));
    mpfr_set_d(quotient, std::fabs(double(x)), MPFR_RNDN);
    mpfr_div_d(quotient, quotient, s, MPFR_RNDN);
    mpfr_floor(floor, quotient);
    mpfr_sub(frac, quotient, floor, MPFR_RNDN);  // exact
    const double n = mpfr_get_d(floor, MPFR_RNDN);
    const bool negative = std::signbit(x);
    const bool odd = std::fmod(n, 2.0) != 0;
    const int half = mpfr_cmp_d(frac, 0.5);
    bool up = false;
    if (mpfr_zero_p(frac) == 0) {
        switch (mode) {
            case rounding::nearest_even: up = half > 0 || (half == 0 && odd); break;
            case rounding::nearest_away: up = half >= 0; break;
            case rounding::toward_zero: up = false; break;
            case rounding::toward_positive: up = !negative; break;
            case rounding::toward_negative: up = negative; break;
            case rounding::odd: up = !odd; break;
            case rounding::stochastic: {
                mpfr_mul_2si(frac, frac, random_bits, MPFR_RNDN);
                mpfr_floor(frac, frac);
                const double scaled = mpfr_get_d(frac, MPFR_RNDN);
                const double u = double(random_bits == 32 ? random : random & ((1u << random_bits) - 1));
                up = scaled + u >= std::ldexp(1.0, random_bits);
                break;
            }
        }
    }
    mpfr_clears(quotient, floor, frac, static_cast<mpfr_ptr>(nullptr));
    const double k = up ? n + 1 : n;
    return std::clamp(negative ? -k : k, q.min_code(), q.max_code());
}

}  // namespace

TEST_CASE("int_scaling: every mode agrees with an MPFR reference on random and near-tie quotients") {
    std::mt19937_64 engine(7);
    std::uniform_real_distribution<double> unit(1.0, 2.0);
    std::uniform_int_distribution<int> exponent(-30, 30), code(-600000, 600000), offset(-3, 3);
    const std::size_t n = 4000;
    for (const rounding mode : {rounding::nearest_even, rounding::nearest_away, rounding::toward_zero,
                                rounding::toward_positive, rounding::toward_negative, rounding::odd,
                                rounding::stochastic}) {
        for (const int random_bits : {32, 3}) {
            if (mode != rounding::stochastic && random_bits != 32) continue;
            const int_scaling q{.bits = 20, .mode = mode, .seed = 5, .random_bits = random_bits};
            for (int trial = 0; trial < 20; ++trial) {
                // A scale with a full 53-bit significand (or a float one), and x near k s and
                // (k + 1/2) s: a few floats either side of the products.
                // Trials 2 mod 4 use a 12-bit significand and 3 mod 4 a power of two, where small
                // half-integer codes give exact ties.
                double s = std::ldexp(unit(engine), exponent(engine));
                if (trial % 4 == 1) s = double(float(s));
                if (trial % 4 == 2) s = std::ldexp(std::round(std::ldexp(s, 11 - std::ilogb(s))), std::ilogb(s) - 11);
                if (trial % 4 == 3) s = std::ldexp(1.0, std::ilogb(s));
                // Every fifth trial: s = a / b rounded to double, x = a j / 2 exactly, so that the
                // exact quotient b j / 2 (1 - eps) sits within 2^-53 of an integer or a tie, where
                // the double quotient often lands exactly on it (the 0.4 case above).
                const bool ratio = trial % 5 == 4;
                const double a = double(1 + code(engine) % 50 + 50), b = double(2 * (std::abs(code(engine)) % 40) + 3);
                if (ratio) s = a / b;
                std::vector<float> x(n);
                for (std::size_t i = 0; i < n; ++i) {
                    if (ratio) {
                        x[i] = float(a * double(code(engine) % 4000) / 2);
                        continue;
                    }
                    const double k = i % 4 == 3 ? double(code(engine) % 200) / 2
                                                : code(engine) / (i % 4 == 0 ? 1.0 : i % 4 == 1 ? 2.0 : 1000.0);
                    float v = float(k * s);
                    for (int step = offset(engine); step != 0; step += step > 0 ? -1 : 1)
                        v = std::nextafter(v, step > 0 ? 1e38f : -1e38f);
                    x[i] = v;
                }
                std::vector<float> values(n);
                std::vector<std::int32_t> codes(n);
                lowbit::quantize_scaled(x, s, q, values, codes);
                for (std::size_t i = 0; i < n; ++i) {
                    const std::uint32_t random = lowbit::random_bits_at(q.seed, i);
                    INFO(lowbit::to_string(mode) << ", R = " << random_bits << ", x = " << x[i] << ", s = " << s);
                    REQUIRE(codes[i] == reference_code(x[i], s, mode, random, random_bits, q));
                    REQUIRE(values[i] == float(codes[i] * s));
                }
            }
        }
    }
}

TEST_CASE("int_scaling: narrow vs full range, and unsigned") {
    const std::vector<float> x{-9.0f, -8.0f, -7.4f, 7.0f, 7.6f, 100.0f};
    CHECK(run(x, 1.0, int_scaling{.bits = 4}).codes == std::vector<std::int32_t>{-8, -8, -7, 7, 7, 7});
    CHECK(run(x, 1.0, int_scaling{.bits = 4, .narrow_range = true}).codes ==
          std::vector<std::int32_t>{-7, -7, -7, 7, 7, 7});
    CHECK(run(x, 1.0, int_scaling{.bits = 4, .is_signed = false}).codes ==
          std::vector<std::int32_t>{0, 0, 0, 7, 8, 15});
    // Saturation holds in every mode, infinities included.
    const float inf = std::numeric_limits<float>::infinity();
    for (const rounding mode : {rounding::nearest_even, rounding::toward_zero, rounding::toward_positive,
                                rounding::toward_negative, rounding::odd, rounding::stochastic}) {
        INFO(lowbit::to_string(mode));
        CHECK(run({inf, -inf, 1e30f, -1e30f}, 1.0, int_scaling{.bits = 4, .mode = mode}).codes ==
              std::vector<std::int32_t>{7, -8, 7, -8});
    }
}

TEST_CASE("int_scaling: stochastic rounding is unbiased and matches int_quantizer") {
    // x / s = 2.3 (s = 0.5): codes are 2 or 3, mean 2.3; 4 sigma of the mean of n draws.
    const std::size_t n = 20000;
    const int_scaling q{.mode = rounding::stochastic, .seed = 1234};
    for (const float v : {1.15f, -1.15f, 0.0625f}) {
        const std::vector<float> x(n, v);
        const auto r = run(x, 0.5, q);
        const double exact = double(v) / 0.5;
        const double p = exact - std::floor(exact);
        double sum = 0;
        for (const auto c : r.codes) {
            REQUIRE((c == std::floor(exact) || c == std::floor(exact) + 1));
            sum += c;
        }
        const double mean = sum / double(n);
        const double sigma = std::sqrt(p * (1 - p) / double(n));
        INFO("v = " << v << ", mean = " << mean << ", 4 sigma = " << 4 * sigma);
        CHECK(std::fabs(mean - exact) < 4 * sigma);
    }
    // Same random bits, same rule: a power-of-two scale makes x / s exact, so int_quantizer on
    // x / s must agree code for code. A few R values too.
    for (const int bits : {32, 8, 1}) {
        const int_scaling qs{.bits = 8, .mode = rounding::stochastic, .seed = 99, .random_bits = bits};
        const lowbit::int_quantizer iq{.format = {.bits = 8, .is_signed = true},
                                       .mode = rounding::stochastic,
                                       .on_overflow = lowbit::int_overflow::saturate,
                                       .seed = 99,
                                       .random_bits = bits};
        std::vector<float> x(1000);
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = float((double(i) - 500.0) * 0.0371);
        const auto r = run(x, 0.125, qs);
        for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(r.codes[i] == iq(double(x[i]) / 0.125, i));
    }
    // first_index: a tensor in two pieces gets the same codes as in one call.
    std::vector<float> x(300);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(i) * 0.01f;
    const auto whole = run(x, 0.03, q);
    std::vector<float> part(200);
    std::vector<std::int32_t> codes(200);
    lowbit::quantize_scaled(std::span<const float>(x).subspan(100), 0.03, q, part, codes, 100);
    CHECK(std::vector<std::int32_t>(whole.codes.begin() + 100, whole.codes.end()) == codes);
}

TEST_CASE("int_scaling: per-channel along either axis on hand values") {
    // rows: [1.5, -3, 0.75] (amax 3) and [0.375, 0.1875, -0.25] (amax 0.375); 3-bit signed, qmax 3.
    const std::vector<float> m{1.5f, -3.0f, 0.75f, 0.375f, 0.1875f, -0.25f};
    const int_scaling q{.bits = 3, .narrow_range = true};

    // axis 1: one scale per row: 1 and 0.125.
    const auto row_scales = lowbit::scales_per_channel(m, 2, 3, 1, q);
    CHECK(row_scales == std::vector<float>{1.0f, 0.125f});
    std::vector<float> out(6);
    std::vector<std::int32_t> codes(6);
    lowbit::quantize_per_channel(m, 2, 3, 1, row_scales, q, out, codes);
    CHECK(codes == std::vector<std::int32_t>{2, -3, 1, 3, 2, -2});  // 1.5 and 1.5 tie to even 2
    CHECK(out == std::vector<float>{2.0f, -3.0f, 1.0f, 0.375f, 0.25f, -0.25f});
    std::vector<float> back(6);
    lowbit::dequantize_per_channel(codes, 2, 3, 1, row_scales, back);
    CHECK(back == out);

    // axis 0: one scale per column: amax 1.5, 3, 0.75 -> 0.5, 1, 0.25.
    const auto col_scales = lowbit::scales_per_channel(m, 2, 3, 0, q);
    CHECK(col_scales == std::vector<float>{0.5f, 1.0f, 0.25f});
    lowbit::quantize_per_channel(m, 2, 3, 0, col_scales, q, out, codes);
    CHECK(codes == std::vector<std::int32_t>{3, -3, 3, 1, 0, -1});
    CHECK(out == std::vector<float>{1.5f, -3.0f, 0.75f, 0.5f, 0.0f, -0.25f});
    lowbit::dequantize_per_channel(codes, 2, 3, 0, col_scales, back);
    CHECK(back == out);

    // The largest element of each channel comes back exactly.
    const auto rs = lowbit::scales_per_channel(m, 2, 3, 1, int_scaling{});
    lowbit::quantize_per_channel(m, 2, 3, 1, rs, int_scaling{}, out);
    CHECK(out[1] == -3.0f);
    CHECK(out[3] == 0.375f);
}

TEST_CASE("int_scaling: NaN, and errors name the argument") {
    using Catch::Matchers::Contains;
    const std::vector<float> x{1.0f, std::numeric_limits<float>::quiet_NaN()};
    std::vector<float> out(2);
    std::vector<std::int32_t> codes(2);
    lowbit::quantize_scaled(x, 1.0, int_scaling{}, out);  // values only: NaN stays NaN
    CHECK(out[0] == 1.0f);
    CHECK(std::isnan(out[1]));
    CHECK_THROWS_WITH(lowbit::quantize_scaled(x, 1.0, int_scaling{}, out, codes), Contains("x[1] is NaN"));

    const std::vector<float> y{1.0f, 2.0f};
    CHECK_THROWS_WITH(lowbit::quantize_scaled(y, 1.0, int_scaling{.bits = 1}, out), Contains("bits = 1"));
    CHECK_THROWS_WITH(lowbit::quantize_scaled(y, 1.0, int_scaling{.bits = 21}, out), Contains("bits = 21"));
    CHECK_NOTHROW(lowbit::quantize_scaled(y, 1.0, int_scaling{.bits = 1, .is_signed = false}, out));
    CHECK_THROWS_WITH(lowbit::quantize_scaled(y, 1.0, int_scaling{.random_bits = 0}, out),
                      Contains("random_bits = 0"));
    for (const double bad : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(),
                             std::numeric_limits<double>::infinity()})
        CHECK_THROWS_WITH(lowbit::quantize_scaled(y, bad, int_scaling{}, out), Contains("scale ="));
    std::vector<float> short_out(1);
    CHECK_THROWS_WITH(lowbit::quantize_scaled(y, 1.0, int_scaling{}, short_out), Contains("out_dequantized has 1"));
    std::vector<std::int32_t> short_codes(3);
    CHECK_THROWS_WITH(lowbit::quantize_scaled(y, 1.0, int_scaling{}, out, short_codes), Contains("codes has 3"));
    CHECK_THROWS_WITH(lowbit::scale_for_max(-1.0, int_scaling{}), Contains("amax = -1"));
    CHECK_THROWS_WITH(lowbit::scale_for_max(std::nan(""), int_scaling{}), Contains("amax = nan"));

    const std::vector<float> m(6, 1.0f);
    std::vector<float> mo(6);
    CHECK_THROWS_WITH(lowbit::scales_per_channel(m, 2, 3, 2, int_scaling{}), Contains("axis = 2"));
    CHECK_THROWS_WITH(lowbit::scales_per_channel(m, 3, 3, 1, int_scaling{}), Contains("data has 6"));
    CHECK_THROWS_WITH(lowbit::quantize_per_channel(m, 2, 3, 1, std::vector<float>{1, 1, 1}, int_scaling{}, mo),
                      Contains("scales has 3"));
    CHECK_THROWS_WITH(lowbit::quantize_per_channel(m, 2, 3, 1, std::vector<float>{1, 0}, int_scaling{}, mo),
                      Contains("scales[1] = 0"));
    CHECK_THROWS_WITH(lowbit::dequantize_per_channel(std::vector<std::int32_t>(5), 2, 3, 1,
                                                     std::vector<float>{1, 1}, mo),
                      Contains("codes has 5"));
}
