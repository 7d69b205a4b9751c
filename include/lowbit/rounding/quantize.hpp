// lowbit/rounding/quantize.hpp: round one value to a format (lowbit::quantize).
// Needs only the standard library. For arrays, and for rounding with a fixed configuration many
// times, use lowbit::float_quantizer (float_quantizer.hpp).
#pragma once

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/modes.hpp>
#include <lowbit/rounding/rounding_plan.hpp>

#include <cstdint>

namespace lowbit {

namespace detail {

template <class T>
T quantize_value(T x, const float_format& f, rounding mode, overflow on_overflow,
                 std::uint32_t random, int random_bits) {
    f.validate();
    if constexpr (std::is_same_v<T, float>) {
        // Formats beyond float's range or precision go through double: the result, x's nearest
        // format value, is then a float again (a format finer than float keeps x; a coarser one
        // lands on a multiple of a float quantum), except beyond FLT_MAX, where it becomes inf.
        if (!format_fits<float>(f))
            return float(quantize_value<double>(double(x), f, mode, on_overflow, random, random_bits));
    }
    const auto plan = rounding_plan<T>::make(f, on_overflow, random_bits);
    return dispatch_rounding(mode, [&](auto m) { return round_with_plan<m()>(x, plan, random); });
}

}  // namespace detail

// x rounded to the format under the mode; stochastic rounding here draws its random bits as 0
// (it rounds down): pass them with the overload below.
inline float quantize(float x, const float_format& f, rounding mode = rounding::nearest_even,
                      overflow on_overflow = overflow::infinity) {
    return detail::quantize_value(x, f, mode, on_overflow, 0, 32);
}
inline double quantize(double x, const float_format& f, rounding mode = rounding::nearest_even,
                       overflow on_overflow = overflow::infinity) {
    return detail::quantize_value(x, f, mode, on_overflow, 0, 32);
}

// The same with explicit random bits for stochastic rounding: the low `random_bits` bits of
// `random` (1..32) are the uniform random number.
inline float quantize(float x, const float_format& f, rounding mode, overflow on_overflow,
                      std::uint32_t random, int random_bits = 32) {
    return detail::quantize_value(x, f, mode, on_overflow, random, random_bits);
}
inline double quantize(double x, const float_format& f, rounding mode, overflow on_overflow,
                       std::uint32_t random, int random_bits = 32) {
    return detail::quantize_value(x, f, mode, on_overflow, random, random_bits);
}

}  // namespace lowbit
