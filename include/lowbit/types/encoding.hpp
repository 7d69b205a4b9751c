// lowbit/types/encoding.hpp: the bit patterns (codes) of a float_format's values.
//
// A code is [sign bit, only if f.is_signed][exp_bits exponent field][man_bits mantissa], the
// mantissa in the low bits. What the fields mean (field = exponent field, m = mantissa):
//   - has_zero: field 0 holds +-0 (m = 0) and the subnormals 0.m x 2^emin; field >= 1 holds
//     1.m x 2^(field - bias).
//   - no zero (ue8m0): field 0 is an ordinary binade, 1.m x 2^(0 - bias).
//   - specials ieee: the top field holds +-infinity (m = 0) and NaN (m != 0; quiet when m's top
//     bit is set). fn: the top field is an ordinary binade except that its all-ones mantissa is
//     NaN. none: every code is a finite number. fnuz: every code is a finite number except the
//     negative-zero code (sign bit alone), which is NaN.
//
// Choices where the format leaves a question open:
//   - NaN encodes as the format's canonical NaN: ieee: top field, mantissa top bit set, sign 0
//     (a quiet NaN); fn: the all-ones code with sign 0 (fp8_e4m3: 0x7F, ue8m0: 0xFF); fnuz: its
//     only NaN code (0x80 for the 8-bit ones). A format
//     without a NaN code (specials none, and ieee with man_bits = 0, whose top field is only
//     infinity) encodes NaN as +0 (its smallest value when it has no zero): there is no better
//     code. (quantize keeps a NaN input NaN in every format; in a format without NaN only a NaN
//     input or an invalid operation such as 0/0 leads here.)
//   - Without subnormals (subnormals = false), field 0 with a non-zero mantissa is not a value of
//     the format: decode reads it as a zero of its sign (+0 in fnuz formats), as hardware that
//     treats denormal inputs as zero (DAZ) does; encode never produces it.
//   - NaN codes decode to a quiet double NaN (sign and payload are not kept).
//   - Unsigned formats encode -0.0 as +0 (what quantize makes of negative values), and so do fnuz
//     formats, whose -0 code is NaN.
// encode throws std::invalid_argument for a value that is not one of the format's (off the grid,
// out of range, infinity without infinities, a negative value in an unsigned format) and decode
// for a code with bits above bits(): round with lowbit::quantize first.
#pragma once

#include <lowbit/formats/float_format.hpp>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>

namespace lowbit {

// Whether the format has a code for NaN (the same as float_format::has_nan(), kept as a name for
// the code's point of view).
constexpr bool has_nan_code(const float_format& f) { return f.has_nan(); }

// The code NaN encodes to (see the top of this header).
constexpr std::uint64_t canonical_nan_code(const float_format& f) {
    const std::uint64_t top_field = (std::uint64_t(1) << f.exp_bits) - 1;
    if (f.specials == special_values::fn) return (top_field << f.man_bits) | ((std::uint64_t(1) << f.man_bits) - 1);
    if (f.specials == special_values::fnuz) return std::uint64_t(1) << (f.exp_bits + f.man_bits);  // "-0"
    if (has_nan_code(f)) return (top_field << f.man_bits) | (std::uint64_t(1) << (f.man_bits - 1));
    return 0;  // +0, or (no zero) the smallest value
}

// Everything encode and decode need about a format, derived once: code for one format many times
// through a code_layout (lowbit::minifloat keeps one per format as a compile-time constant).
struct code_layout {
    float_format format;
    int emin;                  // exponent of the smallest normal binade
    int bias;
    std::uint64_t man_mask;
    std::uint64_t field_mask;  // after shifting the mantissa out
    std::uint64_t sign_bit;    // 0 for unsigned formats
    std::uint64_t top_field;
    std::uint64_t nan_code;
    std::uint64_t infinity_code;  // 0 without infinity
    double max_finite;
    double subnormal_step;     // 2^(emin - man_bits): the weight of field 0's mantissa

    constexpr explicit code_layout(const float_format& f)
        : format(f),
          emin(f.emin()),
          bias(f.exponent_bias()),
          man_mask((std::uint64_t(1) << f.man_bits) - 1),
          field_mask((std::uint64_t(1) << f.exp_bits) - 1),
          sign_bit(f.is_signed ? std::uint64_t(1) << (f.exp_bits + f.man_bits) : 0),
          top_field((std::uint64_t(1) << f.exp_bits) - 1),
          nan_code(canonical_nan_code(f)),
          infinity_code(f.has_infinity() ? top_field << f.man_bits : 0),
          max_finite(f.max_finite()),
          subnormal_step(detail::pow2(f.emin() - f.man_bits)) {}  // >= 2^-1074: emin >= -1022
};

namespace detail {

[[noreturn]] inline void not_a_value(const float_format& f, double value, const char* why) {
    char text[64];
    std::snprintf(text, sizeof text, "%.17g", value);
    throw std::invalid_argument("lowbit::encode: " + std::string(text) + " is not a value of " +
                                to_string(f) + ": " + why +
                                " (round it with lowbit::quantize first)");
}

[[noreturn]] inline void not_a_code(const float_format& f, std::uint64_t code) {
    throw std::invalid_argument("lowbit::decode: code " + std::to_string(code) + " has more than " +
                                std::to_string(f.bits()) + " bits, the width of " + to_string(f));
}

}  // namespace detail

// The code of `value`, which must be a value of the format (for instance the result of
// lowbit::quantize).
constexpr std::uint64_t encode(const code_layout& l, double value) {
    const float_format& f = l.format;
    if (value != value) return l.nan_code;
    const std::uint64_t bits = std::bit_cast<std::uint64_t>(value);
    const bool negative = (bits >> 63) != 0;
    const std::uint64_t magnitude_bits = bits & ~(std::uint64_t(1) << 63);
    if (negative && !f.is_signed && magnitude_bits != 0)
        detail::not_a_value(f, value, "the format is unsigned");
    const std::uint64_t sign = negative ? l.sign_bit : 0;

    if (magnitude_bits == 0) {
        if (!f.has_zero) detail::not_a_value(f, value, "the format has no zero");
        return f.has_negative_zero() ? sign : 0;
    }
    if (magnitude_bits == std::bit_cast<std::uint64_t>(std::numeric_limits<double>::infinity())) {
        if (!f.has_infinity()) detail::not_a_value(f, value, "the format has no infinity");
        return sign | l.infinity_code;
    }

    // |value| = sig * 2^(e - 52) with sig in [2^52, 2^53) (double subnormals normalized).
    const int raw_field = int(magnitude_bits >> 52);
    std::uint64_t sig = magnitude_bits & ((std::uint64_t(1) << 52) - 1);
    int e = raw_field - 1023;
    if (raw_field == 0) {
        const int width = std::bit_width(sig);
        sig <<= 53 - width;
        e = -1074 + width - 1;
    } else {
        sig |= std::uint64_t(1) << 52;
    }

    // The format's spacing at |value| is 2^(max(e, emin) - M); the bits of sig below it must be 0.
    const bool subnormal = f.has_zero && e < l.emin;
    const int drop = 52 - f.man_bits + (subnormal ? l.emin - e : 0);
    if (drop > 53 || (sig & ((std::uint64_t(1) << drop) - 1)) != 0)
        detail::not_a_value(f, value, "it is not on the format's grid");
    const std::uint64_t kept = sig >> drop;  // 1.m as an integer (normal), 0.m (subnormal)
    if (subnormal) {
        if (!f.subnormals) detail::not_a_value(f, value, "it is below the smallest normal");
        return sign | kept;
    }
    if (e < l.emin) detail::not_a_value(f, value, "it is below the smallest value");
    if (std::bit_cast<double>(magnitude_bits) > l.max_finite)
        detail::not_a_value(f, value, "it is above the largest finite value");
    return sign | (std::uint64_t(e + l.bias) << f.man_bits) | (kept & l.man_mask);
}

// The value of `code` (exact).
constexpr double decode(const code_layout& l, std::uint64_t code) {
    const float_format& f = l.format;
    if (f.bits() < 64 && (code >> f.bits()) != 0) detail::not_a_code(f, code);
    const bool negative = (code & l.sign_bit) != 0;
    const std::uint64_t field = (code >> f.man_bits) & l.field_mask;
    const std::uint64_t m = code & l.man_mask;

    double magnitude = 0;
    if (field == l.top_field && f.specials == special_values::ieee) {
        if (m != 0) return std::numeric_limits<double>::quiet_NaN();
        magnitude = std::numeric_limits<double>::infinity();
    } else if (field == l.top_field && f.specials == special_values::fn && m == l.man_mask) {
        return std::numeric_limits<double>::quiet_NaN();
    } else if (f.specials == special_values::fnuz && code == l.sign_bit) {
        return std::numeric_limits<double>::quiet_NaN();
    } else if (field == 0 && f.has_zero) {
        // 0.m x 2^emin = m x 2^(emin - M), exact. Without subnormals a non-zero m reads as zero
        // (DAZ).
        magnitude = f.subnormals ? double(m) * l.subnormal_step : 0.0;
    } else {
        // 1.m x 2^(field - bias) = (2^M + m) x 2^(field - bias - M): both factors exact, and so
        // is the product, a normal double (field - bias >= emin >= -1022, field - bias - M >=
        // -1074).
        const int e = int(field) - l.bias;
        magnitude = double((std::uint64_t(1) << f.man_bits) | m) * detail::pow2(e - f.man_bits);
    }
    return negative && (magnitude != 0 || f.has_negative_zero()) ? -magnitude : magnitude;
}

// The same for a format given directly (derives its code_layout on each call).
constexpr std::uint64_t encode(const float_format& f, double value) { return encode(code_layout(f), value); }
constexpr double decode(const float_format& f, std::uint64_t code) { return decode(code_layout(f), code); }

}  // namespace lowbit
