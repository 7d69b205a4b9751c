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

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace lowbit {

enum class int_overflow : std::uint8_t { wrap, saturate };

namespace detail {

// x rounded to an integer under the mode, deciding on the magnitude as the float formats do;
// exact: floor and the fraction are exact in double. `random`: its low random_bits bits are the
// uniform number of stochastic rounding, which rounds the magnitude up when
// floor(frac * 2^R) + u >= 2^R.
inline double round_to_integer(double x, rounding mode, std::uint32_t random, int random_bits) {
    const double magnitude = std::fabs(x);
    const double down = std::floor(magnitude);
    const double frac = magnitude - down;  // exact, in [0, 1)
    if (frac == 0.0 || !std::isfinite(x)) return x;
    const bool negative = x < 0;
    const bool odd_down = std::fmod(down, 2.0) != 0.0;
    bool up = false;
    switch (mode) {
        case rounding::nearest_even: up = frac > 0.5 || (frac == 0.5 && odd_down); break;
        case rounding::nearest_away: up = frac >= 0.5; break;
        case rounding::toward_zero: up = false; break;
        case rounding::toward_positive: up = !negative; break;
        case rounding::toward_negative: up = negative; break;
        case rounding::odd: up = !odd_down; break;
        case rounding::stochastic: {
            const double scale = std::ldexp(1.0, random_bits);
            const double u = double(random_bits == 32 ? random : random & ((std::uint32_t(1) << random_bits) - 1));
            up = std::floor(frac * scale) + u >= scale;  // frac * 2^R is exact
            break;
        }
    }
    return std::copysign(up ? down + 1.0 : down, x);
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

    // The same with explicit random bits.
    double round(double x, std::uint32_t random) const {
        if (std::isnan(x)) return x;
        const double scale = std::ldexp(1.0, fraction_bits);
        const double lo = format.min_value(), hi = format.max_value();
        if (std::isinf(x)) return (x < 0 ? lo : hi) / scale;
        const double n = detail::round_to_integer(x * scale, mode, random, random_bits);
        return overflow(n) / scale;
    }

    // An integer n (as double) brought into the format's range.
    double overflow(double n) const {
        const double lo = format.min_value(), hi = format.max_value();
        if (n >= lo && n <= hi) return n;
        if (on_overflow == int_overflow::saturate) return n < lo ? lo : hi;
        // wrap: n modulo 2^bits into [lo, lo + 2^bits)
        const double span = std::ldexp(1.0, format.bits);
        double r = std::fmod(n - lo, span);  // exact
        if (r < 0) r += span;
        return lo + r;
    }
};

}  // namespace lowbit
