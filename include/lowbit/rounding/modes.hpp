// lowbit/rounding/modes.hpp: how a real number lands on a format.
#pragma once

#include <cstdint>

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

constexpr const char* to_string(overflow o) { return o == overflow::infinity ? "infinity" : "saturate"; }

}  // namespace lowbit
