// lowbit/rounding/rounding_plan.hpp: the one rounding core of lowbit.
//
// round_with_plan<Mode>(x, plan, random) returns the value of a float_format nearest to x under
// the rounding mode, exactly as if x were rounded with infinite precision. A `rounding_plan`
// holds everything that depends on the format and overflow policy, computed once, so that the
// per-element code is a short, branch-free sequence of integer operations that compilers
// vectorize (the array paths call it on blocks of 16).
//
// The method works on the bits of x (float or double), whose magnitude bits increase with |x|.
// The format's grid spacing at |x| is 2^(max(floor(log2|x|), emin) - man_bits) (the max gives the
// evenly spaced subnormal grid), so rounding |x| to the grid drops the low
// `shift = man_bits(T) - man_bits + max(emin - floor(log2|x|), 0)` bits of its significand.
// While shift <= man_bits(T) the dropped bits are fraction bits, and rounding the magnitude's bit
// pattern itself is exact: a carry out of the fraction increments the exponent field, which is
// the next binade's first value. Beyond that |x| is below the format's smallest grid step
// q = 2^(emin - man_bits), and the result is 0 or q. This gives the rounded magnitude without an
// upper exponent limit. Then, in this order:
// Ties to even and round to odd look at the last bit of the kept significand (the parity of the
// result in units of the grid spacing); for man_bits = 0 that is the implicit 1 of every non-zero
// value, so ties go to the larger neighbour and round to odd truncates, as MPFR does at
// precision 1.
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

    exp_type emin = 0;          // the format's smallest normal exponent
    exp_type man_bits = 0;      // the format's mantissa bits
    exp_type base_shift = 0;    // man_bits(T) - man_bits: bits dropped from a normal x
    exp_type shift_offset = 0;  // shift = min(max(shift_offset - field, base_shift), max_shift)
    exp_type max_shift = 0;
    exp_type tiny_field = 0;    // x whose exponent field is below this are below the smallest step
    exp_type emin_field = 0;    // T's exponent field of the format's smallest normal binade
    bits_type min_step = 0;     // bits of q = 2^(emin - man_bits), the smallest grid step
    T half_step = 0;            // q / 2 (when tiny x exist, so that it is a T)
    // Tiny x always flush (the format flushes, and has man_bits >= 4: see make), so no kernel
    // needs a tiny step for them.
    bool tiny_flushed = false;
    // x needs the full kernel when |x|'s bits - 1 (unsigned) is below this (needs_full_kernel)
    bits_type full_kernel_keys[2] = {0, 0};  // [0]: kernels that take tiny x, [1]: the others
    T max_finite = 0;           // largest finite magnitude
    T overflow_away = 0;        // magnitude of an overflow that rounds away from zero
    T overflow_toward = 0;      // ... and toward zero: max_finite, or overflow_away under
                                // overflow::infinity_always
    T flush_below = 0;          // rounded magnitudes below this ...
    T flush_to = 0;             // ... become this (no subnormals; formats without zero)
    T lowest_input = 0;         // inputs below this (negative x for unsigned formats) become 0
    bits_type sign_keep = 0;    // sign bit mask, 0 for unsigned formats
    bits_type zero_sign_keep = 0;  // the same for zero results: 0 also where -0 is not a value (fnuz)
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
        using L = detail::binary_layout<T>;
        // The bits dropped from x with exponent field e >= 1 (see round_with_plan) are
        //   drop = base + max(emin_field - max(e, 1), 0) = max(base, min(C - e, C - 1)),
        // C = base + emin_field, that is min(max(C - e, base), max(base, C - 1)) for the x that
        // are not tiny, clamped to man_bits(T) + 2 so that shifts stay defined for tiny ones.
        p.emin = exp_type(f.emin());
        p.man_bits = exp_type(f.man_bits);
        p.base_shift = exp_type(L::man_bits - f.man_bits);
        p.emin_field = exp_type(f.emin() + L::bias);
        p.shift_offset = p.base_shift + p.emin_field;
        p.max_shift = std::min(std::max(p.base_shift, exp_type(p.shift_offset - 1)), exp_type(L::man_bits + 2));
        // drop > man_bits(T)  <=>  max(e, 1) < emin_field - man_bits
        p.tiny_field = p.emin_field - f.man_bits > 1 ? exp_type(p.emin_field - f.man_bits) : 0;
        p.min_step = std::bit_cast<bits_type>(T(detail::pow2(f.emin() - f.man_bits)));
        p.half_step = p.tiny_field > 0 ? T(detail::pow2(f.emin() - f.man_bits - 1)) : T(0);
        // A tiny x rounds to 0 or q < min_normal when man_bits >= 1, so a flushing format sends it
        // to flush_to. A kernel without the tiny step gets the same: it rounds |x|'s bits up by at
        // most 2^shift <= 2^(man_bits(T) + 2), which raises the exponent field by at most 4 from
        // below q's, so to below 16 q <= min_normal when man_bits >= 4; and that is flushed.
        p.tiny_flushed = !f.subnormals && f.man_bits >= 4;
        // The short kernels cannot take subnormals of T that are not tiny (their implicit bit is
        // 0); those without the tiny step cannot take tiny x either, unless they flush.
        const bits_type subnormal_keys = p.tiny_field > 0 ? 0 : (bits_type(1) << L::man_bits) - 1;
        p.full_kernel_keys[0] = subnormal_keys;
        p.full_kernel_keys[1] = p.tiny_field > 0 && !p.tiny_flushed ? (bits_type(p.tiny_field) << L::man_bits) - 1
                                                                    : subnormal_keys;
        p.max_finite = T(f.max_finite());  // exact: the format fits T
        const bool saturates = on_overflow == overflow::saturate || f.specials == special_values::none;
        p.overflow_away = saturates ? p.max_finite
                          : f.specials == special_values::ieee ? std::numeric_limits<T>::infinity()
                                                               : std::numeric_limits<T>::quiet_NaN();
        p.overflow_toward = on_overflow == overflow::infinity_always ? p.overflow_away : p.max_finite;
        p.flush_below = f.subnormals ? T(0) : T(f.min_normal());
        p.flush_to = f.has_zero ? T(0) : T(f.min_normal());
        p.sign_keep = f.is_signed ? bits_type(bits_type(1) << (sizeof(T) * 8 - 1)) : 0;
        p.zero_sign_keep = f.has_negative_zero() ? p.sign_keep : 0;
        p.lowest_input = f.is_signed ? -std::numeric_limits<T>::infinity() : T(0);
        p.random_bits = exp_type(random_bits);
        p.random_mask = bits_type(std::uint32_t(0xFFFFFFFFu) >> (32 - random_bits));
        return p;
    }
};

// The inputs and formats a rounding kernel must be ready for. Each costs a few instructions per
// element, which memory-bound array loops feel, so they use kernels without the ones the plan
// rules out (and handle rare inputs by the full kernel: needs_full_kernel).
struct kernel_inputs {
    bool subnormals_of_T = true;   // x below T's smallest normal whose implicit bit is 0
    bool tiny = true;              // x below the format's smallest grid step
    bool negative_to_zero = true;  // unsigned formats: negative x round like 0
    bool flush = true;             // formats without subnormals or without zero
    bool unsigned_zero = true;     // formats without -0 (fnuz): a zero result is +0
};

// The rounded value of x (see the top of this header). `random` is used by stochastic rounding
// only: its low plan.random_bits bits.
// Always inlined: array loops and GEMM inner loops vectorize only with the body in view.
// `In` says which inputs and formats the kernel must be ready for; the array paths use shorter
// kernels where the plan allows (dispatch_short_kernel below).
template <rounding Mode, class T, kernel_inputs In = kernel_inputs{}>
[[gnu::always_inline]] inline T round_with_plan(T x, const rounding_plan<T>& p, std::uint32_t random = 0) {
    using L = detail::binary_layout<T>;
    using U = typename L::bits;
    using S = typename L::exp_int;
    constexpr U sign_mask = U(1) << (sizeof(T) * 8 - 1);
    constexpr U frac_mask = (U(1) << L::man_bits) - 1;
    // (Written with arithmetic and selects rather than bool logic, which g++ does not vectorize;
    // plan fields are read unconditionally, since a conditional load also stops it.)
    const T max_finite = p.max_finite, overflow_away = p.overflow_away;
    const T flush_below = p.flush_below, flush_to = p.flush_to, lowest = p.lowest_input;
    const U sign_keep = p.sign_keep;

    // Unsigned formats: a negative x rounds like 0, to the format's value nearest to it (one
    // max instruction: NaN passes through).
    if constexpr (In.negative_to_zero) x = lowest > x ? lowest : x;
    const U bits = std::bit_cast<U>(x);
    const U sign = bits & sign_mask;
    const U mag = bits ^ sign;
    const T abs_x = std::bit_cast<T>(mag);
    const S field = S(mag >> L::man_bits);
    const S shift = std::min(std::max(S(p.shift_offset - field), S(p.base_shift)), S(p.max_shift));
    const U below = (U(1) << shift) - 1;  // the dropped bits
    const bool tiny = In.tiny && field < p.tiny_field;
    // The kept significand's last bit (ties to even, round to odd): when every fraction bit is
    // dropped it is the implicit bit, which the bit pattern holds as the exponent field.
    const U implicit_bit = In.subnormals_of_T ? U(std::min(field, S(1))) << L::man_bits : U(1) << L::man_bits;
    const U kept_lsb = ((mag | implicit_bit) >> shift) & below & 1;  // 0: none dropped

    U rounded;
    bool tiny_up;  // a tiny x rounds to one smallest step (else to 0)
    if constexpr (Mode == rounding::nearest_even) {
        // + half - 1, + 1 more when the kept lsb is odd
        rounded = (mag + (below >> 1) + kept_lsb) & ~below;
        tiny_up = abs_x > p.half_step;
    } else if constexpr (Mode == rounding::nearest_away) {
        rounded = (mag + ((below + 1) >> 1)) & ~below;
        tiny_up = abs_x >= p.half_step;
    } else if constexpr (Mode == rounding::toward_zero) {
        rounded = mag & ~below;
        tiny_up = false;
    } else if constexpr (Mode == rounding::toward_positive) {
        rounded = (mag + (below & (U(0) - U(sign == 0)))) & ~below;
        tiny_up = x > T(0);
    } else if constexpr (Mode == rounding::toward_negative) {
        rounded = (mag + (below & (U(0) - U(sign != 0)))) & ~below;
        tiny_up = x < T(0);
    } else if constexpr (Mode == rounding::odd) {
        // truncate, then make the last kept bit odd when anything was dropped
        rounded = (mag & ~below) + ((below + 1) & (U(0) - (U(std::min(mag & below, U(1))) & (kept_lsb ^ 1))));
        tiny_up = abs_x > T(0);
    } else {
        static_assert(Mode == rounding::stochastic);
        // Add the R random bits aligned just below the kept bits, then truncate: this carries
        // into the kept bits exactly when floor(rest * 2^R / 2^shift) + u >= 2^R.
        // u * 2^(shift - R) rounded down: u moved to the top of the word (which also drops any
        // bits above R), then down to end just below the kept bits.
        constexpr S width = sizeof(U) * 8;
        const U aligned = ((U(random) << (width - p.random_bits)) >> 1) >> (width - 1 - shift);
        rounded = (mag + aligned) & ~below;
        tiny_up = false;
        if constexpr (In.tiny) {
            // A tiny x: its integer significand sig with all `drop` dropped bits counted,
            // scaled to R bits, floor(sig * 2^R / 2^drop) (exact when drop < R: sig < 2^24 and
            // drop >= 24 here); up when scaled + u carries out of R bits.
            const S drop = p.base_shift + std::max(S(p.emin_field - std::max(field, S(1))), S(0));
            const U sig = (mag & frac_mask) | (U(std::min(field, S(1))) << L::man_bits);
            const S right = std::min(S(drop - p.random_bits), S(L::man_bits + 2));
            const U scaled = right >= 0 ? sig >> right : sig << std::min(S(-right), S(sizeof(U) * 8 - 1));
            tiny_up = (U(random) & p.random_mask) > p.random_mask - scaled;
        }
    }
    if constexpr (In.tiny) rounded = tiny ? (tiny_up ? p.min_step : U(0)) : rounded;
    T y = std::bit_cast<T>(rounded);

    T overflow_result = overflow_away;
    if constexpr (Mode == rounding::toward_zero)
        overflow_result = p.overflow_toward;
    else if constexpr (Mode == rounding::odd)
        overflow_result = max_finite;
    else if constexpr (Mode == rounding::toward_positive)
        overflow_result = sign ? p.overflow_toward : overflow_away;
    else if constexpr (Mode == rounding::toward_negative)
        overflow_result = sign ? overflow_away : p.overflow_toward;
    y = y > max_finite ? overflow_result : y;
    if constexpr (In.flush) y = y < flush_below ? flush_to : y;
    // An infinite x: for the modes that round away from zero the overflow above already gave
    // overflow_away (x's bits round to themselves); the others need it set.
    if constexpr (Mode != rounding::nearest_even && Mode != rounding::nearest_away && Mode != rounding::stochastic)
        y = abs_x == std::numeric_limits<T>::infinity() ? overflow_away : y;
    y = abs_x != abs_x ? abs_x : y;  // NaN stays NaN
    U keep_sign = sign_keep;
    if constexpr (In.unsigned_zero) keep_sign = y == T(0) ? p.zero_sign_keep : keep_sign;
    return std::bit_cast<T>(std::bit_cast<U>(y) | (sign & keep_sign));
}

// The kernel for the arrays of a plan: it leaves out T's subnormals (rare, so they are left to
// needs_full_kernel), and the steps for tiny x, flushing and unsigned formats when the format has
// none or, for tiny x, flushes them all (tiny_flushed), and the zero-sign select of formats
// without -0 (fnuz) for the others. Stochastic rounding leaves tiny x to the
// full kernel otherwise: their path is long.
// Calls f(std::integral_constant<kernel_inputs, ...>).
template <rounding Mode, class T, class F>
decltype(auto) dispatch_short_kernel(const rounding_plan<T>& p, F&& f) {
    const bool tiny = Mode != rounding::stochastic && p.tiny_field > 0 && !p.tiny_flushed;
    const bool flush = p.flush_below > T(0);
    const auto call = [&](auto tiny_c, auto flush_c) {
        constexpr kernel_inputs in{.subnormals_of_T = false, .tiny = tiny_c(), .negative_to_zero = false,
                                   .flush = flush_c(), .unsigned_zero = false};
        return f(std::integral_constant<kernel_inputs, in>{});
    };
    using yes = std::true_type;
    using no = std::false_type;
    if (p.sign_keep == 0 || p.zero_sign_keep != p.sign_keep) {  // unsigned and fnuz formats (rare): one kernel for all
        constexpr kernel_inputs in{.subnormals_of_T = false, .tiny = Mode != rounding::stochastic};
        return f(std::integral_constant<kernel_inputs, in>{});
    }
    if (tiny) return flush ? call(yes{}, yes{}) : call(yes{}, no{});
    return flush ? call(no{}, yes{}) : call(no{}, no{});
}

// Whether the kernel round_with_plan<Mode, T, In> of dispatch_short_kernel cannot take x, which
// then needs the full one: |x| non-zero and a subnormal of T that is not tiny (its implicit bit
// is 0), or tiny when In leaves tiny x out. The check is `full_kernel_key(x) < keys`, split so
// that a block can take the minimum key first and compare once.
template <class T>
[[gnu::always_inline]] inline auto full_kernel_key(T x) {
    using U = typename detail::binary_layout<T>::bits;
    const U mag = std::bit_cast<U>(x) & ~(U(1) << (sizeof(T) * 8 - 1));
    return U(mag - 1);  // unsigned: 0 wraps around to the top, and needs no full kernel
}
template <kernel_inputs In, class T>
[[gnu::always_inline]] inline auto full_kernel_keys(const rounding_plan<T>& p) {
    return p.full_kernel_keys[In.tiny ? 0 : 1];
}
template <kernel_inputs In, class T>
[[gnu::always_inline]] inline bool needs_full_kernel(T x, const rounding_plan<T>& p) {
    return full_kernel_key(x) < full_kernel_keys<In>(p);
}

}  // namespace lowbit
