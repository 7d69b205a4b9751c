// int_quantizer (rounding/int_quantizer.hpp): scalar and array roundings against an independent
// reference in long double and i128 (exact for these inputs), every mode, wrap and saturate,
// signed and unsigned, fixed point, specials; the array path equals the scalar one element by
// element, stochastic rounding included.
#include <lowbit/rounding/int_quantizer.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace {

using lowbit::int_overflow;
using lowbit::int_quantizer;
using lowbit::rounding;
__extension__ typedef __int128 i128;  // (a GNU extension: holds every integer the reference needs)

// The documented rule, written apart: n = round(x * 2^f) by the mode (on the magnitude), then
// wrapped modulo 2^bits into the range or clamped; +-inf saturate, NaN stays.
double reference(double x, const int_quantizer& q, std::uint32_t random) {
    if (std::isnan(x)) return x;
    const i128 span = i128(1) << q.format.bits;
    const i128 lo = q.format.is_signed ? -(span / 2) : 0, hi = q.format.is_signed ? span / 2 - 1 : span - 1;
    if (std::isinf(x)) return std::ldexp(double(x < 0 ? lo : hi), -q.fraction_bits);
    const long double v = std::ldexp(static_cast<long double>(x), q.fraction_bits);  // exact
    const long double m = std::fabs(v), down = std::floor(m), frac = m - down;
    bool up = false;
    const bool odd = std::fmod(down, 2.0L) != 0;
    switch (q.mode) {
        case rounding::nearest_even: up = frac > 0.5L || (frac == 0.5L && odd); break;
        case rounding::nearest_away: up = frac >= 0.5L; break;
        case rounding::toward_zero: break;
        case rounding::toward_positive: up = frac > 0 && v > 0; break;
        case rounding::toward_negative: up = frac > 0 && v < 0; break;
        case rounding::odd: up = frac > 0 && !odd; break;
        case rounding::stochastic: {
            const long double r = std::ldexp(1.0L, q.random_bits);
            const std::uint32_t u = q.random_bits == 32 ? random : random & ((1u << q.random_bits) - 1);
            up = std::floor(frac * r) + u >= r;
            break;
        }
    }
    const long double whole = down + (up ? 1 : 0);
    if (whole == 0) return std::copysign(0.0, x);
    // beyond every range: only the residue modulo 2^bits matters (fmodl is exact), and the sign
    const bool huge = whole > 0x1p100L;
    i128 n = i128(huge ? std::fmod(whole, std::ldexp(1.0L, q.format.bits)) : whole);
    if (v < 0) n = -n;
    if (huge && q.on_overflow == int_overflow::saturate) n = v < 0 ? lo : hi;
    if (n < lo || n > hi) {
        if (q.on_overflow == int_overflow::saturate) n = n < lo ? lo : hi;
        else n = lo + (((n - lo) % span) + span) % span;
    }
    return std::ldexp(double(n), -q.fraction_bits);
}

bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b); }

}  // namespace

TEST_CASE("int_quantizer equals the reference, scalar and array, every mode and overflow rule") {
    std::mt19937_64 gen(3);
    std::normal_distribution<double> normal;
    std::uniform_int_distribution<int> shift(-6, 70);
    const rounding modes[] = {rounding::nearest_even, rounding::nearest_away, rounding::toward_zero,
                              rounding::toward_positive, rounding::toward_negative, rounding::odd,
                              rounding::stochastic};
    int checked = 0;
    for (const int bits : {2, 8, 16, 30, 32, 53})
        for (const bool is_signed : {true, false})
            for (const int_overflow o : {int_overflow::wrap, int_overflow::saturate})
                for (const int fraction : {-3, 0, 5})
                    for (const rounding mode : modes) {
                        if (is_signed && bits < 2) continue;
                        const int_quantizer q{.format = {.bits = bits, .is_signed = is_signed}, .mode = mode,
                                              .on_overflow = o, .fraction_bits = fraction, .seed = 9,
                                              .random_bits = mode == rounding::stochastic ? 5 : 32};
                        // floats: N(0,1) scaled far beyond every range, ties, integers, zeros, specials
                        std::vector<float> x;
                        for (int t = 0; t < 400; ++t) x.push_back(float(std::ldexp(normal(gen), shift(gen) - fraction)));
                        for (const double h : {0.5, 1.5, 2.5, -0.5, -2.5, 127.5, -128.5, 3.0, -7.0})
                            x.push_back(float(std::ldexp(h, -fraction)));
                        for (const float s : {0.0f, -0.0f, std::numeric_limits<float>::infinity(),
                                              -std::numeric_limits<float>::infinity(),
                                              std::numeric_limits<float>::quiet_NaN(), 3.0e38f, -3.0e38f})
                            x.push_back(s);
                        // Arrays without specials whose x 2^f stay below 2^30 take the vectorized
                        // loop (formats of up to 30 bits): ties, both zeros, the range's edges and
                        // beyond (wrapping negative multiples of 2^bits to +0).
                        std::vector<float> small;
                        for (int t = 0; t < 300; ++t)
                            small.push_back(float(std::ldexp(normal(gen), std::min(shift(gen), 26) - fraction)));
                        for (const double h : {0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.25, -0.75, 3.0, -7.0})
                            small.push_back(float(std::ldexp(h, -fraction)));
                        for (const double edge : {std::ldexp(1.0, bits - 1), std::ldexp(1.0, bits)})
                            for (const double d : {-1.0, -0.5, 0.0, 0.5, 1.0})
                                for (const double sign : {1.0, -1.0})
                                    if (std::fabs(edge + d) < 0x1p29) small.push_back(float(std::ldexp(sign * (edge + d), -fraction)));
                        small.push_back(0.0f);
                        small.push_back(-0.0f);
                        x.insert(x.begin(), small.begin(), small.end());
                        for (const std::size_t length : {small.size(), x.size()}) {
                        std::vector<float> array(x.begin(), x.begin() + std::ptrdiff_t(length));
                        q(std::span<float>(array), 1000);
                        for (std::size_t e = 0; e < length; ++e) {
                            const std::uint64_t index = 1000 + e;
                            const std::uint32_t random =
                                mode == rounding::stochastic ? lowbit::random_bits_at(q.seed, index) : 0u;
                            const double expected = reference(double(x[e]), q, random);
                            const double scalar = q(double(x[e]), index);
                            INFO("bits " << bits << (is_signed ? " signed " : " unsigned ")
                                         << (o == int_overflow::wrap ? "wrap" : "saturate") << " fraction " << fraction
                                         << " " << lowbit::to_string(mode) << " x = " << x[e]);
                            CHECK(same(scalar, expected));
                            CHECK(same(double(array[e]), double(float(expected))));
                            ++checked;
                        }
                        }
                    }
    CHECK(checked > 100000);
}

TEST_CASE("int_quantizer at the ends of fraction_bits, where x 2^f leaves double's range") {
    // (Found by the quantize_diff fuzz target: with fraction_bits = 1000 a large x made x 2^f
    // infinite, which wrapped to NaN instead of 0; with fraction_bits = -1000 a small x made it 0,
    // which rounded to 0 instead of 1 toward +infinity, and to an even 0 instead of an odd 1.)
    const rounding modes[] = {rounding::nearest_even, rounding::nearest_away, rounding::toward_zero,
                              rounding::toward_positive, rounding::toward_negative, rounding::odd,
                              rounding::stochastic};
    const double xs[] = {3.0e38, -3.0e38, 1.0, -1.5, 0x1p-100, -0x1p-100, 0x1p-149, -0x1p-1074, 0x1p1023, 0.0, -0.0};
    for (const int fraction : {-1000, -980, 980, 1000})
        for (const int bits : {8, 53})
            for (const bool is_signed : {true, false})
                for (const int_overflow o : {int_overflow::wrap, int_overflow::saturate})
                    for (const rounding mode : modes)
                        for (const double x : xs) {
                            const int_quantizer q{.format = {.bits = bits, .is_signed = is_signed}, .mode = mode,
                                                  .on_overflow = o, .fraction_bits = fraction, .seed = 5};
                            const std::uint32_t random =
                                mode == rounding::stochastic ? lowbit::random_bits_at(q.seed, 7) : 0u;
                            INFO("bits " << bits << (is_signed ? " signed " : " unsigned ")
                                         << (o == int_overflow::wrap ? "wrap" : "saturate") << " fraction " << fraction
                                         << " " << lowbit::to_string(mode) << " x = " << x);
                            CHECK(same(q(x, 7), reference(x, q, random)));
                        }
}
