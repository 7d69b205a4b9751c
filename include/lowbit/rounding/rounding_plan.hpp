// lowbit/rounding/rounding_plan.hpp: the one rounding core of lowbit.
//
// round_with_plan<Mode>(x, plan, random) returns the value of a float_format nearest to x under
// the rounding mode, exactly as if x were rounded with infinite precision. A `rounding_plan`
// holds everything that depends on the format and overflow policy, computed once, so that the
// per-element code is a short, branch-free sequence of integer operations that compilers
// vectorize (the array paths call it on blocks of 16).
//
// The method works on the bits of x (float or double). Let sig be x's integer significand and
// 2^ulp_exp the weight of its last bit, so |x| = sig * 2^ulp_exp. The format's grid spacing at
// |x| is 2^quantum_exp with quantum_exp = max(floor(log2|x|), emin) - man_bits (the max gives the
// evenly spaced subnormal grid). Dropping the low `quantum_exp - ulp_exp` bits of sig with the
// mode's rule gives an integer r, and r * 2^quantum_exp is the rounded magnitude, still without
// an upper exponent limit. Then, in this order:
//   - overflow: a result above the largest finite value becomes +-inf, NaN (fn formats) or the
//     largest finite value, per the mode and the overflow policy (see modes.hpp);
//   - underflow: without subnormals, a result below the smallest normal (that is, x rounded to
//     the grid as if subnormals existed) flushes to a zero of x's sign;
//   - specials: NaN stays NaN; +-inf stays +-inf, or becomes NaN (fn), or saturates;
//   - unsigned formats: a negative x becomes the format's value nearest to it, zero (or the
//     smallest value of a format without zero, like ue8m0, which also takes every x below it).
// Stochastic rounding with R random bits rounds up when the top R dropped bits plus the random
// number carry out, as hardware that adds random bits below the kept ones does: probability
// floor(2^R * rest / quantum) / 2^R, exactly rest / quantum when at most R bits are dropped.
#pragma once

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/modes.hpp>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace lowbit {

namespace detail {

// The IEEE binary layout of the value types the simulation runs in.
template <class T>
struct binary_layout;
template <>
struct binary_layout<float> {
    using bits = std::uint32_t;
    using exp_int = std::int32_t;  // same width as bits, so that vectorized lanes line up
    static constexpr int man_bits = 23, bias = 127, top_field = 255;
};
template <>
struct binary_layout<double> {
    using bits = std::uint64_t;
    using exp_int = std::int64_t;
    static constexpr int man_bits = 52, bias = 1023, top_field = 2047;
};

// Whether every value of the format, and every rounding step on the way to it, is representable
// in T: then T's own bits carry the computation. float covers formats with up to 23 mantissa bits
// inside float's exponent range; double covers every valid format.
template <class T>
constexpr bool format_fits(const float_format& f) {
    using L = binary_layout<T>;
    return f.man_bits <= L::man_bits && f.emin() >= 1 - L::bias && f.emax() <= L::bias;
}

// 2^e as T for e in [1 - bias - man_bits, bias], built from bits (vectorizes; no libm call).
template <class T>
inline T pow2_of(typename binary_layout<T>::exp_int e) {
    using L = binary_layout<T>;
    using U = typename L::bits;
    using S = typename L::exp_int;
    const U normal = U(e + L::bias) << L::man_bits;
    const U subnormal = U(1) << std::clamp<S>(e + L::bias + L::man_bits - 1, 0, L::man_bits - 1);
    return std::bit_cast<T>(e >= 1 - L::bias ? normal : subnormal);
}

}  // namespace detail

// Everything about (format, overflow policy, random bits) that rounding one element needs.
template <class T>
struct rounding_plan {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "lowbit rounds float or double values: convert other types first");
    using bits_type = typename detail::binary_layout<T>::bits;
    using exp_type = typename detail::binary_layout<T>::exp_int;

    exp_type emin = 0;          // exponent of the smallest normal binade
    exp_type man_bits = 0;      // mantissa bits of the format
    T max_finite = 0;           // largest finite magnitude
    T overflow_away = 0;        // magnitude of an overflow that rounds away from zero
    T flush_below = 0;          // rounded magnitudes below this ...
    T flush_to = 0;             // ... become this (no subnormals; formats without zero)
    bits_type sign_keep = 0;    // sign bit mask, 0 for unsigned formats
    T negative_result = 0;      // what a negative x becomes in an unsigned format
    bits_type random_mask = 0;  // 2^random_bits - 1
    exp_type random_bits = 32;

    // Throws std::invalid_argument for an invalid format, or random_bits outside [1, 32], or a
    // format that T cannot hold (only float, for formats beyond float: see format_fits).
    static rounding_plan make(const float_format& f, overflow on_overflow, int random_bits = 32) {
        f.validate();
        if (random_bits < 1 || random_bits > 32)
            throw std::invalid_argument("lowbit: random_bits = " + std::to_string(random_bits) +
                                        " must be in [1, 32]");
        if (!detail::format_fits<T>(f))
            throw std::invalid_argument("lowbit: format " + to_string(f) +
                                        " does not fit this value type's exponent range and "
                                        "precision: round double values instead");
        rounding_plan p;
        p.emin = exp_type(f.emin());
        p.man_bits = exp_type(f.man_bits);
        p.max_finite = T(f.max_finite());  // exact: the format fits T
        const bool saturates = on_overflow == overflow::saturate || f.specials == special_values::none;
        p.overflow_away = saturates ? p.max_finite
                          : f.specials == special_values::ieee ? std::numeric_limits<T>::infinity()
                                                               : std::numeric_limits<T>::quiet_NaN();
        p.flush_below = f.subnormals ? T(0) : T(f.min_normal());
        p.flush_to = f.has_zero ? T(0) : T(f.min_normal());
        p.sign_keep = f.is_signed ? bits_type(bits_type(1) << (sizeof(T) * 8 - 1)) : 0;
        p.negative_result = p.flush_to;
        p.random_bits = exp_type(random_bits);
        p.random_mask = bits_type(std::uint32_t(0xFFFFFFFFu) >> (32 - random_bits));
        return p;
    }
};

// The rounded value of x (see the top of this header). `random` is used by stochastic rounding
// only: its low plan.random_bits bits.
template <rounding Mode, class T>
inline T round_with_plan(T x, const rounding_plan<T>& p, std::uint32_t random = 0) {
    using L = detail::binary_layout<T>;
    using U = typename L::bits;
    using S = typename L::exp_int;
    constexpr U sign_mask = U(1) << (sizeof(T) * 8 - 1);
    constexpr U frac_mask = (U(1) << L::man_bits) - 1;
    constexpr S max_shift = L::man_bits + 2;  // dropping more bits: sig is below half a quantum

    const U bits = std::bit_cast<U>(x);
    const U sign = bits & sign_mask;
    const U mag = bits ^ sign;
    const S field = S(mag >> L::man_bits);
    const S field_or_1 = std::max(field, S(1));  // subnormal inputs share the lowest binade
    const U sig = (mag & frac_mask) | (U(field != 0) << L::man_bits);
    const S ulp_exp = field_or_1 - (L::bias + L::man_bits);
    // The format's emin is at least T's (format_fits), so for a subnormal x the max picks emin.
    const S quantum_exp = std::max(S(field_or_1 - L::bias), p.emin) - p.man_bits;
    const S scale_exp = std::max(quantum_exp, ulp_exp);  // x already on the grid: keep every bit
    const S drop = scale_exp - ulp_exp;
    const S shift = std::min(drop, max_shift);
    const U kept = sig >> shift;
    const U rest = sig & ((U(1) << shift) - 1);
    const U half = (U(1) << shift) >> 1;  // 0 when nothing is dropped

    U r;
    if constexpr (Mode == rounding::nearest_even)
        r = kept + (U(rest > half) | (U(rest == half) & U(half != 0) & kept & 1));
    else if constexpr (Mode == rounding::nearest_away)
        r = kept + (U(rest >= half) & U(rest != 0));
    else if constexpr (Mode == rounding::toward_zero)
        r = kept;
    else if constexpr (Mode == rounding::toward_positive)
        r = kept + (U(rest != 0) & U(sign == 0));
    else if constexpr (Mode == rounding::toward_negative)
        r = kept + (U(rest != 0) & U(sign != 0));
    else if constexpr (Mode == rounding::odd)
        r = kept | U(rest != 0);
    else {
        static_assert(Mode == rounding::stochastic);
        // rest scaled to random_bits bits: floor(rest * 2^R / 2^drop); below R dropped bits the
        // left shift is exact. Round up when scaled + random carries out of R bits.
        const S right = std::min(S(drop - p.random_bits), max_shift);
        const S left = std::min(S(p.random_bits - drop), S(sizeof(U) * 8 - 1));
        const U scaled = drop >= p.random_bits ? rest >> std::max(right, S(0))
                                               : rest << std::max(left, S(0));
        r = kept + U((U(random) & p.random_mask) > p.random_mask - scaled);
    }
    // Exact: r has at most man_bits(T) + 1 significant bits and scale_exp is at least T's
    // smallest subnormal exponent, so the product is a T (or overflows to inf, caught below).
    T y = T(S(r)) * detail::pow2_of<T>(scale_exp);

    const T overflow_result = [&] {
        if constexpr (Mode == rounding::toward_zero || Mode == rounding::odd)
            return p.max_finite;
        else if constexpr (Mode == rounding::toward_positive)
            return sign ? p.max_finite : p.overflow_away;
        else if constexpr (Mode == rounding::toward_negative)
            return sign ? p.overflow_away : p.max_finite;
        else
            return p.overflow_away;
    }();
    y = y > p.max_finite ? overflow_result : y;
    y = y < p.flush_below ? p.flush_to : y;
    const bool special = field == L::top_field;
    const bool is_nan = special & ((mag & frac_mask) != 0);
    y = special ? (is_nan ? std::bit_cast<T>(mag) : p.overflow_away) : y;
    const U out = std::bit_cast<U>(y) | (sign & p.sign_keep);
    // Unsigned formats: a negative x (not NaN) lands on the format's value nearest to it.
    const bool negative_unsigned = (sign & ~p.sign_keep) != 0 && !is_nan;
    return negative_unsigned ? p.negative_result : std::bit_cast<T>(out);
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
