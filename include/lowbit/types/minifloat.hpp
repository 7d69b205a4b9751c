// lowbit/types/minifloat.hpp: lowbit::minifloat<F>, a number stored in the bits of format F.
//
//   using e4m3 = lowbit::minifloat<lowbit::fp8_e4m3>;   // one byte
//   e4m3 a{1.3}, b = e4m3::from_bits(0x38);              // 1.3 rounds to 1.25; 0x38 is 1.0
//   e4m3 c = a * b + a;                                  // each operation rounds once to F
//   double d = double(c);                                // exact
//
// The storage is the smallest unsigned integer that holds F.bits() bits (uint8_t, uint16_t,
// uint32_t), the code laid out as in encoding.hpp. Semantics:
//   - from double, float or an integer: rounded to nearest, ties to even, overflow as IEEE casts
//     (lowbit::quantize with overflow::infinity: +-inf, NaN for fn formats, the largest finite
//     value for formats without specials). Explicit, because it rounds.
//   - to double: exact; to float: exact when F fits float, else rounded to nearest. Explicit, so
//     that mixed expressions such as `a + 1.0` do not silently leave the format.
//   - + - * /: the exact result rounded once to F (computed as the double round-to-odd result,
//     then rounded to F: exact by the theorem in rounding/exact_ops.hpp, as F has <= 31 mantissa
//     bits); IEEE results for infinities, NaN and zeros.
//   - unary minus flips the sign bit (NaN included); in an unsigned format -x is -x rounded: 0
//     (the smallest value in a format without zero); in an fnuz format, whose sign bit alone is
//     NaN, -0 is +0 and -NaN is NaN (abs likewise keeps NaN).
//   - comparisons as IEEE: NaN is unordered and unequal to itself, -0 == +0.
//   - default construction gives code 0: +0 (in a format without zero, its smallest value).
//   - NaN results are the format's canonical NaN code; a format without NaN code stores them as
//     +0 (see encoding.hpp: only 0/0-like operations produce them there). Where that loss must
//     not pass unseen, convert with a nan_policy: minifloat<F>::from(x, nan_policy::raise)
//     throws, and lowbit::convert(in, out) over arrays returns how many NaN became +0.
// std::numeric_limits is specialized below; Eigen::NumTraits in minifloat_eigen.hpp.
#pragma once

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/exact_ops.hpp>
#include <lowbit/rounding/modes.hpp>
#include <lowbit/rounding/rounding_plan.hpp>
#include <lowbit/types/encoding.hpp>

#include <algorithm>
#include <compare>
#include <concepts>
#include <cstdint>
#include <iosfwd>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace lowbit {

namespace detail {

// The smallest unsigned integer of at least `bits` bits (64 only for formats minifloat rejects,
// so that its static_assert is the one error reported).
template <int Bits>
using storage_for =
    std::conditional_t<(Bits <= 8), std::uint8_t,
                       std::conditional_t<(Bits <= 16), std::uint16_t,
                                          std::conditional_t<(Bits <= 32), std::uint32_t, std::uint64_t>>>;

// An integer as the double round-to-odd of its value (exact for up to 53 bits; wider ones as the
// round-to-odd sum of their exact high and low halves), so that rounding it to a format once more
// is correctly rounded (exact_ops.hpp).
template <std::integral I>
double integer_round_odd(I i) {
    if constexpr (sizeof(I) <= 4) {
        return double(i);
    } else {
        static_assert(sizeof(I) == 8, "lowbit::minifloat converts integers of at most 64 bits");
        const I high = i >> 32;  // arithmetic shift for signed I: i = high * 2^32 + low exactly
        const auto low = std::uint32_t(std::uint64_t(i) & 0xFFFFFFFFu);
        return add_round_odd(double(high) * 0x1p32, double(low));
    }
}

// floor(log10(x)) for a positive finite x, in long double: exact unless x lies within about
// 10^-18 (relative) of a power of ten, which no power of two or largest finite value of a
// format does (checked against float, bfloat16 and IEEE half in the tests).
constexpr int floor_log10(double x) {
    const long double v = x;
    long double p = 1;
    int n = 0;
    if (v >= 1) {
        while (p * 10 <= v) p *= 10, ++n;
    } else {
        while (v * p < 1) p *= 10, --n;  // p = 10^-n; stop at the first 10^n <= v
    }
    return n;
}

}  // namespace detail

// What a conversion does with NaN where the format has no NaN code (specials none, or an ieee
// format without mantissa bits).
enum class nan_policy : std::uint8_t {
    zero,   // store +0 (its smallest value without zero), as the constructor does
    raise,  // throw std::domain_error
};

template <float_format F>
class minifloat {
    static_assert(F.is_valid(),
                  "lowbit::minifloat<F>: F is not a valid lowbit::float_format (call F.validate() "
                  "at run time: its exception names the field to fix)");
    static_assert(F.bits() <= 32,
                  "lowbit::minifloat<F> stores at most 32 bits: for formats wider than 32 bits, "
                  "keep the values in double and round them with lowbit::quantize(x, F)");

public:
    using storage_type = detail::storage_for<F.bits()>;
    static constexpr float_format format = F;

    constexpr minifloat() = default;

    // Rounded to F (nearest, ties to even; IEEE cast overflow).
    explicit minifloat(double x) : code_(storage_type(encode(layout, round(x)))) {}
    explicit minifloat(float x) : minifloat(double(x)) {}
    template <std::integral I>
        requires(sizeof(I) <= 8)
    explicit minifloat(I i) : minifloat(detail::integer_round_odd(i)) {}

    // x rounded to F as the constructor does, NaN as `policy` says (above).
    static minifloat from(double x, nan_policy policy) {
        if (policy == nan_policy::raise && !has_nan_code(F) && x != x)
            throw std::domain_error("lowbit::minifloat: NaN has no code in this format (" + std::to_string(F.bits()) +
                                    " bits, no NaN): it would be stored as " + (F.has_zero ? "+0" : "its smallest value"));
        return minifloat(x);
    }

    // The number whose code is `code`; throws std::invalid_argument if it has bits above bits().
    static constexpr minifloat from_bits(storage_type code) {
        if ((std::uint64_t(code) >> F.bits()) != 0)
            throw std::invalid_argument("lowbit::minifloat::from_bits: code " + std::to_string(code) +
                                        " has more than " + std::to_string(F.bits()) + " bits");
        minifloat m;
        m.code_ = code;
        return m;
    }
    constexpr storage_type bits() const { return code_; }

    explicit constexpr operator double() const { return decode(layout, code_); }
    explicit constexpr operator float() const { return float(decode(layout, code_)); }

    friend minifloat operator+(minifloat a, minifloat b) { return minifloat(add_round_odd(double(a), double(b))); }
    friend minifloat operator-(minifloat a, minifloat b) { return minifloat(sub_round_odd(double(a), double(b))); }
    friend minifloat operator*(minifloat a, minifloat b) { return minifloat(mul_round_odd(double(a), double(b))); }
    friend minifloat operator/(minifloat a, minifloat b) { return minifloat(div_round_odd(double(a), double(b))); }
    minifloat& operator+=(minifloat b) { return *this = *this + b; }
    minifloat& operator-=(minifloat b) { return *this = *this - b; }
    minifloat& operator*=(minifloat b) { return *this = *this * b; }
    minifloat& operator/=(minifloat b) { return *this = *this / b; }

    constexpr minifloat operator+() const { return *this; }
    minifloat operator-() const {
        if constexpr (F.specials == special_values::fnuz)
            if (code_ == 0 || code_ == sign_bit) return *this;  // +0 and NaN: no -0 code
        if constexpr (F.is_signed) return from_code(code_ ^ sign_bit);
        else return minifloat(-double(*this));
    }

    friend constexpr bool operator==(minifloat a, minifloat b) { return double(a) == double(b); }
    friend constexpr std::partial_ordering operator<=>(minifloat a, minifloat b) {
        return double(a) <=> double(b);
    }

    // Classification, found by argument-dependent lookup (as Eigen's numext functions look).
    friend constexpr bool isnan(minifloat a) { const double d(a); return d != d; }
    friend constexpr bool isinf(minifloat a) {
        const double d(a);
        return d == std::numeric_limits<double>::infinity() || d == -std::numeric_limits<double>::infinity();
    }
    friend constexpr bool isfinite(minifloat a) { return !isnan(a) && !isinf(a); }
    friend constexpr bool signbit(minifloat a) { return (a.code_ & sign_bit) != 0; }
    friend minifloat abs(minifloat a) {
        if constexpr (F.specials == special_values::fnuz)
            if (a.code_ == sign_bit) return a;  // NaN
        if constexpr (F.is_signed) return from_code(a.code_ & ~sign_bit);
        else return a;
    }

    // Writes the value as a double (a template, so that only <iosfwd> is needed here).
    template <class Char, class Traits>
    friend std::basic_ostream<Char, Traits>& operator<<(std::basic_ostream<Char, Traits>& out, minifloat a) {
        return out << double(a);
    }

private:
    static constexpr code_layout layout{F};
    static constexpr storage_type sign_bit =
        F.is_signed ? storage_type(std::uint64_t(1) << (F.bits() - 1)) : storage_type(0);

    static constexpr minifloat from_code(std::uint64_t code) {
        minifloat m;
        m.code_ = storage_type(code);
        return m;
    }

    // x rounded to F, through lowbit's one rounding core with a plan made once per format.
    static double round(double x) {
        static const rounding_plan<double> plan = rounding_plan<double>::make(F, overflow::infinity);
        return round_with_plan<rounding::nearest_even>(x, plan);
    }

    storage_type code_ = 0;
};

template <class T>
inline constexpr bool is_minifloat = false;
template <float_format F>
inline constexpr bool is_minifloat<minifloat<F>> = true;

// out[i] = minifloat<F>(in[i]) for contiguous arrays (std::vector, std::array, std::span, ...)
// of float or double into minifloat<F>, NaN as `policy` says (raise: a std::domain_error naming
// the first NaN's index, before anything is written). Returns the number of NaN stored as +0
// (always 0 where F has a NaN code).
template <class In, class Out>
    requires requires(const In& in, Out& out) {
        { std::span(in) };
        { std::span(out) };
    }
std::size_t convert(const In& in, Out&& out, nan_policy policy = nan_policy::zero) {
    const auto from = std::span(in);
    const auto to = std::span(out);
    using T = std::remove_cv_t<typename decltype(from)::element_type>;
    using M = std::remove_cv_t<typename decltype(to)::element_type>;
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "lowbit::convert: the input holds float or double values");
    static_assert(is_minifloat<M> && !std::is_const_v<typename decltype(to)::element_type>,
                  "lowbit::convert: the output is a writable array of lowbit::minifloat<F>");
    if (from.size() != to.size())
        throw std::invalid_argument("lowbit::convert: output size " + std::to_string(to.size()) + " != input size " +
                                    std::to_string(from.size()));
    std::size_t lost = 0;
    if constexpr (!has_nan_code(M::format)) {
        for (std::size_t i = 0; i < from.size(); ++i)
            if (from[i] != from[i]) {
                if (policy == nan_policy::raise)
                    throw std::domain_error("lowbit::convert: in[" + std::to_string(i) +
                                            "] is NaN, which has no code in the output's format (no NaN)");
                ++lost;
            }
    }
    for (std::size_t i = 0; i < from.size(); ++i) to[i] = M(from[i]);
    return lost;
}

}  // namespace lowbit

namespace std {

template <lowbit::float_format F>
struct numeric_limits<lowbit::minifloat<F>> {
private:
    using T = lowbit::minifloat<F>;
    using storage = typename T::storage_type;

    static constexpr T code(std::uint64_t c) { return T::from_bits(storage(c)); }
    static constexpr T value(double v) { return code(lowbit::encode(F, v)); }
    // 2^k clamped into F's range: for the members that are powers of two (epsilon, round_error),
    // so that they exist in the odd formats that lack them.
    static constexpr T power_of_two_in_range(int k) {
        const int lowest = F.emin() - ((F.subnormals && F.man_bits > 0 && F.has_zero) ? F.man_bits : 0);
        return value(lowbit::detail::pow2(std::clamp(k, lowest, F.emax())));
    }
    // log10(2) as a fraction, for digits10 and max_digits10 (exact for p <= 53).
    static constexpr int log10_2_times(int p) { return int(std::int64_t(p) * 30103 / 100000); }
    static constexpr std::uint64_t top_field_code() {
        return ((std::uint64_t(1) << F.exp_bits) - 1) << F.man_bits;
    }
    static constexpr double smallest_normal() { return F.has_normals() ? F.min_normal() : F.min_positive(); }

public:
    static constexpr bool is_specialized = true;
    static constexpr bool is_signed = F.is_signed;
    static constexpr bool is_integer = false;
    static constexpr bool is_exact = false;
    static constexpr bool has_infinity = F.has_infinity();
    static constexpr bool has_quiet_NaN = lowbit::has_nan_code(F);
    // An ieee format with two or more mantissa bits has codes for signaling NaNs (mantissa top
    // bit clear); minifloat keeps them as bits but, like most hardware, computes with them as
    // with any NaN.
    static constexpr bool has_signaling_NaN = F.specials == lowbit::special_values::ieee && F.man_bits >= 2;
    static constexpr float_denorm_style has_denorm =
        (F.subnormals && F.has_zero && F.man_bits > 0) ? denorm_present : denorm_absent;
    static constexpr bool has_denorm_loss = false;
    static constexpr float_round_style round_style = round_to_nearest;
    // IEEE 754's binary formats: ieee specials, subnormals, the IEEE bias, a sign; all of their
    // operations here are correctly rounded as IEEE requires.
    static constexpr bool is_iec559 = F.specials == lowbit::special_values::ieee && F.subnormals &&
                                      F.has_zero && F.is_signed && F.exp_bits >= 2 && F.man_bits >= 2 &&
                                      F.exponent_bias() == (1 << (F.exp_bits - 1)) - 1;
    static constexpr bool is_bounded = true;
    static constexpr bool is_modulo = false;
    static constexpr int digits = F.man_bits + (F.has_normals() ? 1 : 0);
    static constexpr int digits10 = log10_2_times(digits - 1);
    static constexpr int max_digits10 = 2 + log10_2_times(digits);
    static constexpr int radix = 2;
    static constexpr int min_exponent = F.emin() + 1;
    static constexpr int max_exponent = F.emax() + 1;
    // The smallest n with 10^n >= the smallest normal (which is a power of two, a power of ten
    // only when it is 1), and the largest n with 10^n <= the largest finite value.
    static constexpr int min_exponent10 =
        lowbit::detail::floor_log10(smallest_normal()) + (smallest_normal() == 1.0 ? 0 : 1);
    static constexpr int max_exponent10 = lowbit::detail::floor_log10(F.max_finite());
    static constexpr bool traps = false;
    static constexpr bool tinyness_before = false;

    static constexpr T min() noexcept { return value(smallest_normal()); }
    static constexpr T max() noexcept { return value(F.max_finite()); }
    static constexpr T lowest() noexcept {
        return value(F.is_signed ? -F.max_finite() : F.has_zero ? 0.0 : F.min_positive());
    }
    // 2^-M and 1/2, clamped into the format's range in the odd formats that lack them.
    static constexpr T epsilon() noexcept { return power_of_two_in_range(-F.man_bits); }
    static constexpr T round_error() noexcept { return power_of_two_in_range(-1); }
    static constexpr T denorm_min() noexcept { return value(F.min_positive()); }
    static constexpr T infinity() noexcept { return has_infinity ? code(top_field_code()) : T(); }
    static constexpr T quiet_NaN() noexcept {
        return has_quiet_NaN ? code(lowbit::canonical_nan_code(F)) : T();
    }
    static constexpr T signaling_NaN() noexcept {
        return has_signaling_NaN ? code(top_field_code() | 1) : T();
    }
};

}  // namespace std
