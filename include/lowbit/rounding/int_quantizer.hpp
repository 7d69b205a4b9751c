// lowbit/rounding/int_quantizer.hpp: rounding to an integer or fixed-point format whose overflow
// wraps (two's complement) or saturates, e.g. the P-bit accumulator of an integer dot product.
//
//   value = n * 2^-fraction_bits,  n an integer of `format`
//   q(x) = overflow(round(x * 2^fraction_bits)) * 2^-fraction_bits
// round: the rounding mode to an integer (exact for every double); overflow: wrap keeps n modulo
// 2^bits in the format's range, saturate clamps it. NaN stays NaN; +-inf saturates (wrap has no
// meaning for infinity, so it saturates too).
#pragma once

#include <lowbit/formats/int_format.hpp>
#include <lowbit/rounding/modes.hpp>
#include <lowbit/rounding/random_bits.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <stdexcept>
#include <string>

namespace lowbit {

enum class int_overflow : std::uint8_t { wrap, saturate };

namespace detail {

// y rounded toward zero to an integer: below 2^52 through int64 (a conversion that truncates
// whatever the FP environment's rounding mode), at and above it y itself (already an integer);
// the sign kept (-0.5 gives -0), infinities and NaN as they are. Exact, and no libm call. (GCC 12
// still does not vectorize the loops that use it: under -ftrapping-math it sinks the conversion
// into a branch.)
[[gnu::always_inline]] inline double trunc_to_integer(double y) {
    const double m = std::fabs(y);
    const bool small = m < 0x1p52;
    // (the conversion runs on every value, clamped into range: a conditional one is a branch)
    const double t = double(std::int64_t(small ? m : 0x1p52));
    return std::copysign(small ? t : m, y);
}
[[gnu::always_inline]] inline double floor_to_integer(double y) {
    const double t = trunc_to_integer(y);
    return t > y ? t - 1.0 : t;
}

// x rounded to an integer under Mode, deciding on the magnitude as the float formats do; exact:
// floor and the fraction are exact in double, and so is halving the integer part to tell it odd.
// `random`: its low random_bits bits are the uniform number of stochastic rounding, which rounds
// the magnitude up when floor(frac * 2^R) + u >= 2^R. Integers, infinities and NaN stay as they
// are. Written without short-circuits or libm calls (about 20 ns an element in arrays; GCC 12
// does not vectorize it, see trunc_to_integer).
// Small: |x| < 2^31 (and finite), where the truncations go through int32 and the loop vectorizes.
template <rounding Mode, bool Small = false>
[[gnu::always_inline]] inline double round_to_integer_as(double x, std::uint32_t random, int random_bits) {
    const double magnitude = std::fabs(x);
    // (Small: one conversion, whose result every path uses; a conversion used on one path only
    // is sunk into a branch there, and the loop is not vectorized)
    const std::int32_t down_small = Small ? std::int32_t(magnitude) : 0;
    const double down = Small ? double(down_small) : trunc_to_integer(magnitude);
    const double frac = magnitude - down;  // exact, in [0, 1)
    const bool negative = x < 0;
    const bool odd_down = Small ? (down_small & 1) != 0 : down * 0.5 != trunc_to_integer(down * 0.5);
    bool up = false;
    // (& and | rather than && and ||: under -ftrapping-math a comparison may not be speculated,
    // so short-circuits would stay branches)
    if constexpr (Mode == rounding::nearest_even && Small)  // frac > 1/2 is frac >= 1/2 + 2^-53
        up = frac >= (0.5 + 0x1p-53) - 0x1p-53 * double(down_small & 1);  // (arithmetic: g++ vectorizes it)
    else if constexpr (Mode == rounding::nearest_even) up = (frac > 0.5) | ((frac == 0.5) & odd_down);
    else if constexpr (Mode == rounding::nearest_away) up = frac >= 0.5;
    else if constexpr (Mode == rounding::toward_zero) up = false;
    else if constexpr (Mode == rounding::toward_positive) up = !negative;
    else if constexpr (Mode == rounding::toward_negative) up = negative;
    else if constexpr (Mode == rounding::odd) up = !odd_down;
    else {
        const double scale = std::ldexp(1.0, random_bits);
        const double u = double(random_bits == 32 ? random : random & ((std::uint32_t(1) << random_bits) - 1));
        up = (Small ? std::floor(frac * scale) : trunc_to_integer(frac * scale)) + u >= scale;  // frac * 2^R is exact
    }
    const double rounded = std::copysign(down + (up ? 1.0 : 0.0), x);
    return ((frac == 0.0) | !std::isfinite(x)) ? x : rounded;
}

inline double round_to_integer(double x, rounding mode, std::uint32_t random, int random_bits) {
    return dispatch_rounding(mode, [&](auto m) { return round_to_integer_as<m()>(x, random, random_bits); });
}

}  // namespace detail

struct int_quantizer {
    int_format format{};
    rounding mode = rounding::nearest_even;
    int_overflow on_overflow = int_overflow::wrap;
    int fraction_bits = 0;  // fixed point: the value of the integer n is n * 2^-fraction_bits
    std::uint64_t seed = 0;
    int random_bits = 32;

    const int_quantizer& validate() const {
        format.validate();
        if (fraction_bits < -1000 || fraction_bits > 1000)
            throw std::invalid_argument("lowbit::int_quantizer: fraction_bits = " + std::to_string(fraction_bits) +
                                        " must be in [-1000, 1000]");
        if (random_bits < 1 || random_bits > 32)
            throw std::invalid_argument("lowbit::int_quantizer: random_bits = " + std::to_string(random_bits) +
                                        " must be in [1, 32]");
        return *this;
    }

    // x rounded and wrapped/saturated; `index` picks the random bits of stochastic rounding.
    double operator()(double x, std::uint64_t index = 0) const {
        const std::uint32_t random = mode == rounding::stochastic ? random_bits_at(seed, index) : 0u;
        return round(x, random);
    }
    float operator()(float x, std::uint64_t index = 0) const { return float((*this)(double(x), index)); }

    // Every element of an array, element e with index first_index + e (as q(x, index) gives it:
    // any split of an array gives the same values). The loop is scalar (see trunc_to_integer).
    void operator()(std::span<float> data, std::uint64_t first_index = 0) const {
        const constants c = constants_of();
        const std::uint64_t key = seed;
        float* const x = data.data();
        const std::size_t n = data.size();
        // Where every x 2^f is finite and below 2^30 (and the format's 2^bits at most 2^30), the
        // truncations go through int32, and the loop vectorizes (about 20x faster).
        std::uint32_t largest = 0;  // the largest magnitude's bits (on the bits: a max that vectorizes)
        for (std::size_t e = 0; e < n; ++e) largest = std::max(largest, std::bit_cast<std::uint32_t>(x[e]) & 0x7FFFFFFFu);
        const bool small = largest < 0x7F800000u /* no infinity or NaN */ &&
                           double(std::bit_cast<float>(largest)) * c.scale < 0x1p30 && c.span <= 0x1p30 &&
                           c.scale >= 0x1p-900;
        const auto loop = [&](auto m, auto saturate, auto is_small) {
            for (std::size_t e = 0; e < n; ++e) {
                std::uint32_t random = 0;
                if constexpr (m() == rounding::stochastic) random = random_bits_at(key, first_index + std::uint64_t(e));
                x[e] = float(round_as<m(), saturate(), is_small()>(double(x[e]), random, c));
            }
        };
        dispatch_rounding(mode, [&](auto m) {
            if (small) {
                if (c.saturate) loop(m, std::true_type{}, std::true_type{});
                else loop(m, std::false_type{}, std::true_type{});
            } else {
                if (c.saturate) loop(m, std::true_type{}, std::false_type{});
                else loop(m, std::false_type{}, std::false_type{});
            }
        });
    }

    // The same with explicit random bits.
    double round(double x, std::uint32_t random) const {
        const constants c = constants_of();
        return dispatch_rounding(mode, [&](auto m) {
            return c.saturate ? round_as<m(), true>(x, random, c) : round_as<m(), false>(x, random, c);
        });
    }

    // An integer n (as double) brought into the format's range.
    double overflow(double n) const {
        const constants c = constants_of();
        return c.saturate ? overflow<true>(n, c) : overflow<false>(n, c);
    }

private:
    // The settings as values of their own (loops over arrays then read nothing through `this`,
    // which leaves the compiler nothing to reload).
    struct constants {
        double scale, unscale, lo, hi, span;  // 2^f, 2^-f, the range, 2^bits
        bool saturate;
        int random_bits;
        std::uint32_t small_lo = 0, small_mask = 0;  // lo and 2^bits - 1 as integers, for 2^bits <= 2^30
    };
    constants constants_of() const {
        constants c{std::ldexp(1.0, fraction_bits), std::ldexp(1.0, -fraction_bits), format.min_value(),
                    format.max_value(), std::ldexp(1.0, format.bits), on_overflow == int_overflow::saturate, random_bits};
        if (c.span <= 0x1p30) c.small_lo = std::uint32_t(std::int32_t(c.lo)), c.small_mask = std::uint32_t(c.span) - 1u;
        return c;
    }

    // Small: x finite and |x| 2^f < 2^30, 2^bits <= 2^30, 2^f >= 2^-900 (exact, never zero for x != 0).
    template <rounding Mode, bool Saturate, bool Small = false>
    [[gnu::always_inline]] static double round_as(double x, std::uint32_t random, const constants& c) {
        // x 2^f can leave double's range (|f| up to 1000). Below it, a non-zero product is below
        // 1/2, where every mode decides by its sign alone: the smallest subnormal of that sign
        // stands for it. Above it, the exact product is an integer multiple of 2^bits: it wraps
        // to 0 (and saturates as the infinity does).
        const double y = x * c.scale;
        if constexpr (Small)  // (finite, and never zero for x != 0: none of the cases below)
            return overflow<Saturate, true>(detail::round_to_integer_as<Mode, true>(y, random, c.random_bits), c) *
                   c.unscale;
        const double scaled = ((y == 0) & (x != 0)) ? std::copysign(std::numeric_limits<double>::denorm_min(), x) : y;
        const double n = overflow<Saturate>(detail::round_to_integer_as<Mode>(scaled, random, c.random_bits), c);
        const double wrapped = !Saturate && std::isinf(y) ? 0.0 : n;
        const double special = std::isnan(x) ? x : x < 0 ? c.lo : c.hi;  // +-inf saturates
        return (std::isfinite(x) ? wrapped : special) * c.unscale;
    }

    // (wrap: n modulo 2^bits into [lo, lo + 2^bits): n - 2^bits trunc(n / 2^bits) is exact for
    // every n (its low bits), and then small; a value in range is kept as it is, -0 included)
    // (Small: |n| <= 2^30 and 2^bits <= 2^30, so every quotient below is under 2^31)
    template <bool Saturate, bool Small = false>
    [[gnu::always_inline]] static double overflow(double n, const constants& c) {
        if constexpr (Saturate) return ((n >= c.lo) & (n <= c.hi)) ? n : n < c.lo ? c.lo : c.hi;
        if constexpr (Small) {  // (the low bits of n, in two's complement; see above for the conversion)
            const double wrapped =
                double(std::int32_t((std::uint32_t(std::int32_t(n)) - c.small_lo) & c.small_mask) + std::int32_t(c.small_lo));
            // a zero keeps its sign (in range, n is its own wrap), on the bits: used on every
            // path, the conversion above stays out of branches
            const std::uint64_t zero_sign = std::bit_cast<std::uint64_t>(n) & (std::uint64_t(n == 0) << 63);
            return std::bit_cast<double>(std::bit_cast<std::uint64_t>(wrapped) | zero_sign);
        }
        const bool in_range = (n >= c.lo) & (n <= c.hi);
        const double r = (n - c.span * detail::trunc_to_integer(n / c.span)) - c.lo;
        return in_range ? n : c.lo + (r - c.span * detail::floor_to_integer(r / c.span));
    }
};

}  // namespace lowbit
