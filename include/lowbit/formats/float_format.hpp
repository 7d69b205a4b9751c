// lowbit/formats/float_format.hpp: what values a binary floating-point format has.
//
// One `float_format` value describes a format completely. It is a structural literal type, so the
// same value configures a runtime quantizer and is a template argument of a storage type
// (`lowbit::minifloat<lowbit::fp8_e4m3>`). Needs only the standard library.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lowbit {

// Which codes of the top exponent field are special.
enum class special_values : std::uint8_t {
    ieee,  // IEEE 754: the top exponent field holds +-infinity (mantissa 0) and NaN (others)
    fn,    // OCP E4M3 ("finite, NaN"): the top binade is normal except the all-ones code (NaN)
    none,  // every code is a finite number: no infinity, no NaN (OCP FP6/FP4)
    fnuz,  // "finite, NaN, unsigned zero" (AMD / Graphcore FP8, ml_dtypes' *fnuz): every code is a
           // finite number except the negative-zero code, which is the only NaN; there is no -0
           // (a negative result that rounds to zero is +0) and no infinity
};

namespace detail {

// 2^k as a double, exact for every k in [-1074, 1023]; constexpr (std::ldexp is not).
constexpr double pow2(int k) {
    if (k >= -1022) return std::bit_cast<double>(std::uint64_t(k + 1023) << 52);
    return std::bit_cast<double>(std::uint64_t(1) << (k + 1074));
}

}  // namespace detail

struct float_format {
    // `bias` left at this value means the IEEE default 2^(exp_bits-1) - 1.
    static constexpr int ieee_bias = std::numeric_limits<int>::min();

    int exp_bits = 8;
    int man_bits = 23;
    int bias = ieee_bias;
    bool subnormals = true;  // false: results below the smallest normal flush to zero
    special_values specials = special_values::ieee;
    bool is_signed = true;   // false: no sign bit (scale formats such as ue8m0, ue4m3)
    bool has_zero = true;    // false: exponent field 0 is an ordinary binade and there is no zero
                             // (OCP E8M0); needs subnormals = false

    // ---- derived constants (valid for a format that passes validate()) ----
    constexpr int exponent_bias() const { return bias == ieee_bias ? (1 << (exp_bits - 1)) - 1 : bias; }
    constexpr int bits() const { return int(is_signed) + exp_bits + man_bits; }
    constexpr bool has_infinity() const { return specials == special_values::ieee; }
    // A NaN code exists: fn formats' all-ones code, fnuz formats' negative-zero code; IEEE needs a
    // mantissa bit to tell NaN from inf.
    constexpr bool has_nan() const {
        return specials == special_values::fn || specials == special_values::fnuz ||
               (specials == special_values::ieee && man_bits > 0);
    }
    // Whether -0 is a value (its code is NaN in fnuz formats).
    constexpr bool has_negative_zero() const { return is_signed && has_zero && specials != special_values::fnuz; }
    // Number of bit patterns (codes) of the format: 2^bits(), as a double because a 64-bit
    // format has 2^64 of them.
    constexpr double codes() const { return detail::pow2(bits()); }
    // Exponent of the smallest normal binade.
    constexpr int emin() const { return (has_zero ? 1 : 0) - exponent_bias(); }
    // Exponent field of the largest finite value.
    constexpr int top_finite_field() const {
        const int top_field = (1 << exp_bits) - 1;
        const bool top_is_finite = specials == special_values::none || specials == special_values::fnuz ||
                                   (specials == special_values::fn && man_bits > 0);
        return top_is_finite ? top_field : top_field - 1;
    }
    // Whether any exponent field holds normal numbers (false only for tiny curiosities such as
    // an IEEE e1m2, whose finite values are all subnormal).
    constexpr bool has_normals() const { return top_finite_field() >= (has_zero ? 1 : 0); }
    // Exponent of the binade that holds the largest finite value.
    constexpr int emax() const { return has_normals() ? top_finite_field() - exponent_bias() : emin() - 1; }
    constexpr double max_finite() const {
        if (!has_normals()) return (1.0 - detail::pow2(-man_bits)) * detail::pow2(emin());
        // fn formats lose the all-ones mantissa of the top binade to NaN.
        const bool lost = specials == special_values::fn && man_bits > 0;
        return (2.0 - (lost ? 2.0 : 1.0) * detail::pow2(-man_bits)) * detail::pow2(emax());
    }
    constexpr double min_normal() const { return detail::pow2(emin()); }
    constexpr double min_subnormal() const {
        return (subnormals && man_bits > 0) ? detail::pow2(emin() - man_bits) : min_normal();
    }
    // The smallest positive value of the format.
    constexpr double min_positive() const { return min_subnormal(); }
    // Distance from 1 to the next larger value.
    constexpr double epsilon() const { return detail::pow2(-man_bits); }

    // Throws std::invalid_argument naming the field and the value when the format is impossible.
    constexpr const float_format& validate() const;
    constexpr bool is_valid() const noexcept;

    // A copy with bias spelled out (so that equal formats compare member-wise equal).
    constexpr float_format normalized() const {
        float_format f = *this;
        f.bias = exponent_bias();
        return f;
    }

    // Formats are equal when they have the same values and codes (an IEEE-default bias equals the
    // same bias spelled out).
    friend constexpr bool operator==(const float_format& a, const float_format& b) {
        return a.exp_bits == b.exp_bits && a.man_bits == b.man_bits &&
               a.exponent_bias() == b.exponent_bias() && a.subnormals == b.subnormals &&
               a.specials == b.specials && a.is_signed == b.is_signed && a.has_zero == b.has_zero;
    }

    // Reads "e4m3", "fp8_e4m3", "m7e4" (the MxEy spelling), "bf16", "e5m10", ... with optional
    // suffixes ",bias=10", ",subnormals=off", ",specials=none|fn|ieee", ",unsigned", ",nozero".
    // Defined in format_names.hpp (included at the end of this header).
    static float_format parse(std::string_view text);
};

// Spelling that float_format::parse reads back (defined in format_names.hpp).
std::string to_string(const float_format& f);

namespace detail {

[[noreturn]] inline void invalid_field(const char* field, const std::string& value,
                                       const std::string& why) {
    throw std::invalid_argument(std::string("lowbit::float_format: ") + field + " = " + value +
                                ": " + why);
}

// What is wrong with a format (field == nullptr: nothing); constexpr so that is_valid() works
// at compile time.
struct format_problem {
    const char* field = nullptr;
    long long value = 0;
    const char* why = nullptr;
};

constexpr format_problem find_problem(const float_format& f) {
    if (f.exp_bits < 1 || f.exp_bits > 11)
        return {"exp_bits", f.exp_bits, "must be in [1, 11]"};
    if (f.man_bits < 0 || f.man_bits > 52)
        return {"man_bits", f.man_bits, "must be in [0, 52]"};
    if (f.specials != special_values::ieee && f.specials != special_values::fn &&
        f.specials != special_values::none && f.specials != special_values::fnuz)
        return {"specials", static_cast<long long>(f.specials), "is not a special_values"};
    if (f.specials == special_values::fnuz && (!f.is_signed || !f.has_zero))
        return {"specials", static_cast<long long>(f.specials),
                "fnuz puts NaN at the negative-zero code, which needs a signed format with zero"};
    if (!f.has_zero && f.subnormals)
        return {"has_zero", 0, "a format without zero cannot have subnormals: set subnormals = false"};
    if (f.bias != float_format::ieee_bias) {
        // Keep the arithmetic below free of overflow before checking the range.
        if (f.bias < -4096 || f.bias > 4096)
            return {"bias", f.bias, "puts the format outside double's exponent range"};
    }
    if (f.emin() < -1022)
        return {"bias", f.exponent_bias(),
                "puts the smallest normal below double's (emin must be >= -1022)"};
    if (f.emax() > 1023)
        return {"bias", f.exponent_bias(),
                "puts the largest finite value above double's (emax must be <= 1023)"};
    // Every format must hold some finite non-zero value.
    if (!f.has_normals() && !(f.subnormals && f.man_bits > 0))
        return {"exp_bits", f.exp_bits,
                "leaves no finite non-zero value with these specials, subnormals and man_bits"};
    return {};
}

}  // namespace detail

constexpr bool float_format::is_valid() const noexcept { return detail::find_problem(*this).field == nullptr; }

constexpr const float_format& float_format::validate() const {
    const detail::format_problem p = detail::find_problem(*this);
    if (p.field != nullptr) detail::invalid_field(p.field, std::to_string(p.value), p.why);
    return *this;
}

// ---- presets: the OCP and IEEE formats, and the paper formats of Blumenfeld et al. ----
inline constexpr float_format fp32{.exp_bits = 8, .man_bits = 23};
inline constexpr float_format tf32{.exp_bits = 8, .man_bits = 10};
inline constexpr float_format bf16{.exp_bits = 8, .man_bits = 7};
inline constexpr float_format fp16{.exp_bits = 5, .man_bits = 10};
inline constexpr float_format fp8_e4m3{.exp_bits = 4, .man_bits = 3, .specials = special_values::fn};
inline constexpr float_format fp8_e5m2{.exp_bits = 5, .man_bits = 2};
inline constexpr float_format fp6_e2m3{.exp_bits = 2, .man_bits = 3, .specials = special_values::none};
inline constexpr float_format fp6_e3m2{.exp_bits = 3, .man_bits = 2, .specials = special_values::none};
inline constexpr float_format fp4_e2m1{.exp_bits = 2, .man_bits = 1, .specials = special_values::none};
// OCP MX scale: 2^(field - 127), fields 0..254, 0xFF is NaN; no sign, no zero.
inline constexpr float_format ue8m0{.exp_bits = 8, .man_bits = 0, .bias = 127, .subnormals = false,
                                    .specials = special_values::fn, .is_signed = false,
                                    .has_zero = false};
// NVFP4 block scale: the non-negative half of fp8_e4m3.
inline constexpr float_format ue4m3{.exp_bits = 4, .man_bits = 3, .specials = special_values::fn,
                                    .is_signed = false};
// The fnuz FP8 formats of AMD's and Graphcore's hardware, as ml_dtypes defines them: the bias one
// above IEEE's (eleven for b11), every exponent field finite, NaN at 0x80, no -0, no infinity.
inline constexpr float_format fp8_e4m3fnuz{.exp_bits = 4, .man_bits = 3, .bias = 8, .specials = special_values::fnuz};
inline constexpr float_format fp8_e5m2fnuz{.exp_bits = 5, .man_bits = 2, .bias = 16, .specials = special_values::fnuz};
inline constexpr float_format fp8_e4m3b11fnuz{.exp_bits = 4, .man_bits = 3, .bias = 11,
                                              .specials = special_values::fnuz};
// Low bit-width accumulators (Blumenfeld et al.): 12-bit M7E4 with the paper's fixed biases,
// no subnormals (underflow flushes) and no special values (every code is finite).
inline constexpr float_format lba_m7e4_acc{.exp_bits = 4, .man_bits = 7, .bias = 10,
                                           .subnormals = false, .specials = special_values::none};
inline constexpr float_format lba_m7e4_prod{.exp_bits = 4, .man_bits = 7, .bias = 12,
                                            .subnormals = false, .specials = special_values::none};

static_assert(fp8_e4m3.max_finite() == 448.0 && fp8_e5m2.max_finite() == 57344.0);
static_assert(fp6_e2m3.max_finite() == 7.5 && fp6_e3m2.max_finite() == 28.0 &&
              fp4_e2m1.max_finite() == 6.0);
static_assert(fp8_e4m3fnuz.max_finite() == 240.0 && fp8_e4m3fnuz.min_positive() == detail::pow2(-10) &&
              fp8_e5m2fnuz.max_finite() == 57344.0 && fp8_e5m2fnuz.min_positive() == detail::pow2(-17) &&
              fp8_e4m3b11fnuz.max_finite() == 30.0 && fp8_e4m3b11fnuz.min_positive() == detail::pow2(-13));
static_assert(ue8m0.min_positive() == detail::pow2(-127) && ue8m0.max_finite() == detail::pow2(127));

}  // namespace lowbit

#include <lowbit/formats/format_names.hpp>
