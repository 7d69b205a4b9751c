// lowbit/rounding/modes.hpp: how a real number lands on a format.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace lowbit {

enum class rounding : std::uint8_t {
    nearest_even,     // ties to the even neighbour (IEEE default)
    nearest_away,     // ties away from zero
    toward_zero,      // truncation of the magnitude
    toward_positive,  // ceiling
    toward_negative,  // floor
    stochastic,       // up with probability (distance to the lower neighbour) / (grid spacing)
    odd,              // truncate, then set the last mantissa bit when inexact; never overflows
                      // to infinity
};

// What a result beyond the largest finite value becomes.
enum class overflow : std::uint8_t {
    infinity,  // IEEE 754 cast semantics: +-inf when rounding away from zero (NaN for fn
               // formats, the largest finite value for formats without specials), the largest
               // finite value when rounding toward zero
    saturate,  // the largest finite value of the right sign, in every mode
    infinity_always,  // +-inf in every mode but odd (NaN for fn formats, the largest finite value
                      // for formats without specials), truncation included: what NVIDIA's tensor
                      // cores do when their truncated fp32 result overflows
};

constexpr const char* to_string(rounding m) {
    switch (m) {
        case rounding::nearest_even: return "nearest_even";
        case rounding::nearest_away: return "nearest_away";
        case rounding::toward_zero: return "toward_zero";
        case rounding::toward_positive: return "toward_positive";
        case rounding::toward_negative: return "toward_negative";
        case rounding::stochastic: return "stochastic";
        case rounding::odd: return "odd";
    }
    return "?";
}

constexpr const char* to_string(overflow o) {
    switch (o) {
        case overflow::infinity: return "infinity";
        case overflow::saturate: return "saturate";
        case overflow::infinity_always: return "infinity_always";
    }
    return "?";
}

// Calls f(std::integral_constant<rounding, Mode>) for the runtime mode: the one place where a
// runtime mode becomes a compile-time one.
template <class F>
decltype(auto) dispatch_rounding(rounding mode, F&& f) {
    using R = rounding;
    switch (mode) {
        case R::nearest_even: return f(std::integral_constant<R, R::nearest_even>{});
        case R::nearest_away: return f(std::integral_constant<R, R::nearest_away>{});
        case R::toward_zero: return f(std::integral_constant<R, R::toward_zero>{});
        case R::toward_positive: return f(std::integral_constant<R, R::toward_positive>{});
        case R::toward_negative: return f(std::integral_constant<R, R::toward_negative>{});
        case R::stochastic: return f(std::integral_constant<R, R::stochastic>{});
        case R::odd: return f(std::integral_constant<R, R::odd>{});
    }
    throw std::invalid_argument("lowbit: rounding mode " + std::to_string(int(mode)) +
                                " is not a lowbit::rounding");
}


}  // namespace lowbit
