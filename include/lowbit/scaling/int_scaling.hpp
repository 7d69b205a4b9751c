// lowbit/scaling/int_scaling.hpp: integer quantization with a scale, per tensor or per channel.
//
//   code = clamp(round(x / scale), min_code, max_code)        dequantized value = code * scale
//
// `int_scaling` says what the integer is and how x / scale lands on it:
//   - bits, is_signed: the code range. Signed, full range: [-2^(b-1), 2^(b-1) - 1] (two's
//     complement); signed, narrow_range: [-(2^(b-1) - 1), 2^(b-1) - 1], symmetric, so that
//     clipping treats both signs alike (what most symmetric-quantization recipes use); unsigned:
//     [0, 2^b - 1] (narrow_range has no effect).
//   - mode: any lowbit::rounding. As for the float formats, the decision is taken on the
//     magnitude |x / scale| (toward_positive rounds a negative quotient's magnitude down).
//     stochastic rounds the magnitude up when floor(frac * 2^R) + u >= 2^R, u the low R =
//     random_bits bits of random_bits_at(seed, index), index the element's position in the
//     tensor: the rule of int_quantizer (detail::round_to_integer), so both agree bit for bit.
//   - Out-of-range codes saturate (clamp) in every mode: a scaled integer format has no wrap.
//
// Every rounding decision is taken on the exact quotient x / scale, not on its double rounding:
// std::fma(-c, scale, |x|) has the exact sign of |x| - c * scale for any candidate c, which is
// all that floor, tie and stochastic decisions need. (x / scale in double could land exactly on a
// tie, or on an integer, that the exact quotient misses.) This is why bits is limited to 20:
// the stochastic threshold n + 1 - u * 2^-R (n the floor of the quotient) must be exact in double
// for R = 32.
//
// scale_for_max: s = amax / max_code, the scale that maps the largest magnitude on the largest
// positive code (the same for narrow and full range: the extra negative code of full range is
// only reached by clipping), rounded to float because scales are stored as fp32. amax = 0 gives
// s = 1: every scale represents an all-zero tensor exactly, and a positive scale keeps
// quantize_scaled's precondition.
//
// NaN: the dequantized value of a NaN element is NaN (as int_quantizer keeps NaN), but an integer
// code has no NaN, so asking for codes of a NaN element throws. +-infinity saturates.
//
// Per channel: a row-major rows x cols matrix; `axis` names the dimension reduced over, as in
// calibration.hpp (and NumPy): axis 0 gives one scale per column, axis 1 one scale per row.
// Stochastic rounding uses the element's row-major index r * cols + c.
#pragma once

#include <lowbit/rounding/modes.hpp>
#include <lowbit/rounding/random_bits.hpp>
#include <lowbit/scaling/calibration.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit {

struct int_scaling {
    int bits = 8;                  // [2, 20] signed, [1, 20] unsigned
    bool is_signed = true;
    bool narrow_range = false;     // signed only: drop -2^(b-1), so that the range is symmetric
    rounding mode = rounding::nearest_even;
    std::uint64_t seed = 0;        // stochastic rounding: the random stream
    int random_bits = 32;          // stochastic rounding: R in [1, 32]

    // The code range (exact in double and in int32).
    constexpr double max_code() const {
        return is_signed ? double(std::int64_t(1) << (bits - 1)) - 1.0 : double(std::int64_t(1) << bits) - 1.0;
    }
    constexpr double min_code() const {
        if (!is_signed) return 0.0;
        return narrow_range ? -max_code() : -double(std::int64_t(1) << (bits - 1));
    }

    // std::invalid_argument naming the field and the value.
    const int_scaling& validate() const {
        const int lowest = is_signed ? 2 : 1;
        if (bits < lowest || bits > 20)
            throw std::invalid_argument("lowbit::int_scaling: bits = " + std::to_string(bits) + " must be in [" +
                                        std::to_string(lowest) + ", 20] for " +
                                        (is_signed ? "a signed" : "an unsigned") + " integer");
        if (random_bits < 1 || random_bits > 32)
            throw std::invalid_argument("lowbit::int_scaling: random_bits = " + std::to_string(random_bits) +
                                        " must be in [1, 32]");
        if (mode != rounding::nearest_even && mode != rounding::nearest_away && mode != rounding::toward_zero &&
            mode != rounding::toward_positive && mode != rounding::toward_negative &&
            mode != rounding::stochastic && mode != rounding::odd)
            throw std::invalid_argument("lowbit::int_scaling: mode = " + std::to_string(int(mode)) +
                                        " is not a lowbit::rounding");
        return *this;
    }
};

namespace detail {

// round(x / s) to an integer (as double) under `mode`, decided on the exact quotient; s > 0 and
// finite. A double quotient of magnitude 2^20 or more (and inf, NaN) comes back as it is: the
// exact quotient is then at least 2^20 (1 - 2^-53), which every mode takes to a magnitude of at
// least 2^20 - 1, the largest code of a <= 20-bit integer, so the caller's clamp gives the same
// code as exact rounding would.
inline double round_quotient(double x, double s, rounding mode, std::uint32_t random, int random_bits) {
    const double a = std::fabs(x);
    const double t = a / s;
    if (!(t < 0x1p20)) return std::copysign(t, x);
    if (mode == rounding::nearest_even || mode == rounding::nearest_away) {
        // t is within 2^-33 of a / s: where it is not within 2^-30 of a half-integer, the exact
        // quotient has the same nearest integer, and the tests below are needed only near a tie.
        const double nearest = std::floor(t + 0.5);
        if (std::fabs(std::fabs(t - nearest) - 0.5) > 0x1p-30) return std::copysign(nearest, x);
    }
    // t is within 2^-33 of a / s, so floor(t) is the exact floor or one off; the fma tests fix it.
    double n = std::floor(t);
    if (std::fma(-n, s, a) < 0) n -= 1;
    else if (std::fma(-(n + 1), s, a) >= 0) n += 1;
    if (std::fma(-n, s, a) == 0) return std::copysign(n, x);  // exact: no rounding
    const bool negative = std::signbit(x);
    const bool odd_down = (std::int64_t(n) & 1) != 0;  // (n < 2^20: exact as an integer)
    const auto half = [&] { return std::fma(-(n + 0.5), s, a); };  // sign of |x| - (n + 1/2) s
    bool up = false;
    switch (mode) {
        case rounding::nearest_even: {
            const double h = half();
            up = h > 0 || (h == 0 && odd_down);
            break;
        }
        case rounding::nearest_away: up = half() >= 0; break;
        case rounding::toward_zero: up = false; break;
        case rounding::toward_positive: up = !negative; break;
        case rounding::toward_negative: up = negative; break;
        case rounding::odd: up = !odd_down; break;
        case rounding::stochastic: {
            // floor(frac * 2^R) + u >= 2^R  <=>  frac >= 1 - u 2^-R  <=>  |x| >= (n + 1 - u 2^-R) s,
            // the threshold exact in double because it is below 2^21 and R <= 32.
            const std::uint32_t u = random_bits == 32 ? random : random & ((std::uint32_t(1) << random_bits) - 1);
            const double threshold = n + 1.0 - std::ldexp(double(u), -random_bits);
            up = std::fma(-threshold, s, a) >= 0;
            break;
        }
    }
    return std::copysign(up ? n + 1.0 : n, x);
}

inline std::string scaling_number(double v) { return calibration_number(v); }

inline void check_scale(double scale, const char* function, const std::string& name) {
    if (!(scale > 0) || !std::isfinite(scale))
        throw std::invalid_argument(std::string("lowbit::") + function + ": " + name + " = " + scaling_number(scale) +
                                    " must be positive and finite");
}

inline void check_size(std::size_t got, std::size_t want, const char* function, const char* name) {
    if (got != want)
        throw std::invalid_argument(std::string("lowbit::") + function + ": " + name + " has " + std::to_string(got) +
                                    " elements, expected " + std::to_string(want));
}

// One element: the code as double (NaN for a NaN x).
inline double scaled_code(float x, double scale, const int_scaling& q, std::uint64_t index) {
    if (std::isnan(x)) return x;
    const std::uint32_t random = q.mode == rounding::stochastic ? random_bits_at(q.seed, index) : 0u;
    const double k = round_quotient(double(x), scale, q.mode, random, q.random_bits);
    return std::clamp(k, q.min_code(), q.max_code());
}

inline void store_code(double k, std::size_t i, std::span<std::int32_t> codes, const char* function) {
    if (codes.empty()) return;
    if (std::isnan(k))
        throw std::invalid_argument(std::string("lowbit::") + function + ": x[" + std::to_string(i) +
                                    "] is NaN, which has no integer code");
    codes[i] = std::int32_t(k);
}

}  // namespace detail

// s = amax / max_code as float; amax = 0 gives 1 (see the header comment). amax negative, NaN or
// infinite: std::invalid_argument.
inline float scale_for_max(double amax, const int_scaling& q) {
    q.validate();
    if (!(amax >= 0) || !std::isfinite(amax))
        throw std::invalid_argument("lowbit::scale_for_max: amax = " + detail::scaling_number(amax) +
                                    " must be non-negative and finite");
    if (amax == 0) return 1.0f;
    const float s = float(amax / q.max_code());
    // amax tiny enough to make s underflow float: the smallest positive float still gives the
    // largest code to every element that the format can tell from zero.
    return s > 0 ? s : std::numeric_limits<float>::denorm_min();
}

// out_dequantized[i] = float(code_i * scale), codes[i] = code_i (codes may be empty: then only
// the dequantized values are written). first_index: the stream index of x[0] for stochastic
// rounding (the element i uses first_index + i), so that a tensor quantized in pieces gets the
// same bits as in one call. out_dequantized may alias x.
inline void quantize_scaled(std::span<const float> x, double scale, const int_scaling& q,
                            std::span<float> out_dequantized, std::span<std::int32_t> codes = {},
                            std::uint64_t first_index = 0) {
    q.validate();
    detail::check_scale(scale, "quantize_scaled", "scale");
    detail::check_size(out_dequantized.size(), x.size(), "quantize_scaled", "out_dequantized");
    if (!codes.empty()) detail::check_size(codes.size(), x.size(), "quantize_scaled", "codes");
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double k = detail::scaled_code(x[i], scale, q, first_index + i);
        detail::store_code(k, i, codes, "quantize_scaled");
        out_dequantized[i] = float(k * scale);
    }
}

// out[i] = float(codes[i] * scale).
inline void dequantize_scaled(std::span<const std::int32_t> codes, double scale, std::span<float> out) {
    detail::check_scale(scale, "dequantize_scaled", "scale");
    detail::check_size(out.size(), codes.size(), "dequantize_scaled", "out");
    for (std::size_t i = 0; i < codes.size(); ++i) out[i] = float(double(codes[i]) * scale);
}

// ---- per channel ----

namespace detail {

inline void check_channels(std::size_t data_size, std::size_t rows, std::size_t cols, int axis,
                           std::size_t scales, const char* function, const char* data_name = "data") {
    if (rows == 0 || cols == 0)
        throw std::invalid_argument(std::string("lowbit::") + function + ": rows = " + std::to_string(rows) +
                                    ", cols = " + std::to_string(cols) + ": both must be positive");
    if (axis != 0 && axis != 1)
        throw std::invalid_argument(std::string("lowbit::") + function + ": axis = " + std::to_string(axis) +
                                    " must be 0 (one scale per column) or 1 (one scale per row)");
    check_size(data_size, rows * cols, function, data_name);
    check_size(scales, axis == 0 ? cols : rows, function, "scales");
}

}  // namespace detail

// One scale per channel: scale_for_max of the channel's max |x| (calibrate_max_per_channel).
inline std::vector<float> scales_per_channel(std::span<const float> data, std::size_t rows, std::size_t cols,
                                             int axis, const int_scaling& q) {
    q.validate();
    detail::check_channels(data.size(), rows, cols, axis, axis == 0 ? cols : rows, "scales_per_channel");
    const std::vector<double> amax = calibrate_max_per_channel(data.data(), rows, cols, axis);
    std::vector<float> scales(amax.size());
    for (std::size_t c = 0; c < amax.size(); ++c) scales[c] = scale_for_max(amax[c], q);
    return scales;
}

// Element (r, c) quantized with scales[axis == 0 ? c : r]; out_dequantized and codes (optional)
// row-major like data.
inline void quantize_per_channel(std::span<const float> data, std::size_t rows, std::size_t cols, int axis,
                                 std::span<const float> scales, const int_scaling& q,
                                 std::span<float> out_dequantized, std::span<std::int32_t> codes = {}) {
    q.validate();
    detail::check_channels(data.size(), rows, cols, axis, scales.size(), "quantize_per_channel");
    for (std::size_t c = 0; c < scales.size(); ++c)
        detail::check_scale(scales[c], "quantize_per_channel", "scales[" + std::to_string(c) + "]");
    detail::check_size(out_dequantized.size(), data.size(), "quantize_per_channel", "out_dequantized");
    if (!codes.empty()) detail::check_size(codes.size(), data.size(), "quantize_per_channel", "codes");
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c) {
            const std::size_t i = r * cols + c;
            const double scale = scales[axis == 0 ? c : r];
            const double k = detail::scaled_code(data[i], scale, q, i);
            detail::store_code(k, i, codes, "quantize_per_channel");
            out_dequantized[i] = float(k * scale);
        }
}

inline void dequantize_per_channel(std::span<const std::int32_t> codes, std::size_t rows, std::size_t cols,
                                   int axis, std::span<const float> scales, std::span<float> out) {
    detail::check_channels(codes.size(), rows, cols, axis, scales.size(), "dequantize_per_channel", "codes");
    for (std::size_t c = 0; c < scales.size(); ++c)
        detail::check_scale(scales[c], "dequantize_per_channel", "scales[" + std::to_string(c) + "]");
    detail::check_size(out.size(), codes.size(), "dequantize_per_channel", "out");
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c)
            out[r * cols + c] = float(double(codes[r * cols + c]) * double(scales[axis == 0 ? c : r]));
}

}  // namespace lowbit
