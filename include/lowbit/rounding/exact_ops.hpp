// lowbit/rounding/exact_ops.hpp: + - * / of two doubles, rounded to odd.
//
// add_round_odd(a, b), sub_round_odd, mul_round_odd and div_round_odd return RO(a op b): the
// exact result rounded to double precision "to odd" (truncate toward zero onto double's grid,
// then set the last significand bit if that dropped anything). Their point is a theorem of
// Boldo & Melquiond ("Emulation of FMA and correctly rounded sums: proved algorithms using
// rounding to odd", IEEE TC 2008):
//
//   Let G be a grid and H a finer one such that every point of G and every midpoint between
//   neighbours of G is an *even* point of H (a point whose significand's last bit is 0). Then
//   for every real x, RN_G(RO_H(x)) = RN_G(x), ties included.
//
// Proof sketch: if x is on H, RO_H(x) = x. Otherwise x lies strictly between two neighbours of H,
// one of them odd, and RO_H(x) is that odd one; no point of G and no midpoint of G lies between
// x and RO_H(x) (the open gap holds no point of H and the odd end is neither), so x and RO_H(x)
// are in the same open rounding interval of G and round the same way, never as a tie.
//
// When does double's grid (with gradual underflow) serve as H for a float_format F as G? The
// spacing of F at a magnitude 2^e is 2^(max(e, emin_F) - M), that of double 2^(max(e, -1022) -
// 52). Points and midpoints of F are even points of double when double's spacing is at most a
// quarter of F's everywhere: max(e, -1022) - 52 <= max(e, emin_F) - M - 2. As every valid
// float_format has emin_F >= -1022, this holds for every e exactly when M <= 50, including in
// double's subnormal range. Above the largest double, RO gives +-DBL_MAX (RO never rounds to
// infinity), and both DBL_MAX and every larger x overflow every F with M <= 50 (DBL_MAX exceeds
// F's largest finite value plus half its spacing), so the overflow decision agrees too. Hence:
//
//   For every valid float_format F with man_bits <= 50 and every pair of doubles a, b,
//   quantize(op_round_odd(a, b), F, rounding::nearest_even or nearest_away, any overflow)
//   equals the exact a op b rounded once to F. (The same holds for the directed modes and
//   rounding::odd, which need one extra bit instead of two; it does not hold for stochastic
//   rounding, which looks at all the dropped bits.) Every format of at most 32 bits has
//   M <= 31, so lowbit::minifloat's operators are correctly rounded.
//
// Plain double arithmetic followed by quantize is NOT enough in general: by Figueroa's theorem
// RN_F(RN_double(a op b)) = RN_F(a op b) for + - * / only when 53 >= 2(M + 1) + 2 (M <= 24) and
// the result stays in double's normal range; formats with more mantissa bits, or with an
// exponent range whose products leave double's (exp_bits = 11), break it.
//
// How RO is computed: s = fl(a op b) (round to nearest) together with the sign of the exact error
// (a op b) - s, from an error-free transformation: Fast2Sum for + and -, fma(a, b, -s) for *, the
// remainder fma(-q, b, a) for /. If the error is non-zero and s is even, s moves one ulp toward
// the exact value (s is a faithful rounding, so the exact value lies between s and that
// neighbour). Only the error's sign and whether it is zero are needed, and the fma gives them as
// long as it does not round a non-zero error to zero:
//   - Fast2Sum is exact for all finite operands whose sum does not overflow, subnormal sums
//     included (an overflowing sum gives +-DBL_MAX, the RO result);
//   - a * b - s is a multiple of lsb(a) lsb(b) (lsb: the weight of the last significand bit),
//     which is at least 2^-1006 when |s| >= 2^-900, so fma(a, b, -s) is exact in sign and zero;
//   - a - q b is a multiple of min(lsb(a), lsb(q) lsb(b)), at least 2^-1007 when |a| >= 2^-900
//     and 2^-900 <= |q| <= 2^900.
// Outside those ranges (results near or in double's subnormal range, products that overflow,
// quotients of operands far apart) the operands' significands are multiplied or divided in
// [1/4, 2), where the error terms are exact, and the exponent is put back by
// detail::round_odd_scaled. Infinite, NaN and zero operands give the IEEE result (exact).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace lowbit {

namespace detail {

// s moved to the odd neighbour on the side of the exact value when `err` (anything with the sign
// of exact - s, zero when s is exact) says s is inexact and s is even. Needs the exact value to
// lie strictly between s and that neighbour, which holds when s is a faithful rounding of it.
inline double odd_neighbour(double s, double err) {
    const auto bits = std::bit_cast<std::uint64_t>(s);
    if (err == 0 || (bits & 1) != 0) return s;
    // The neighbour on the bits (std::nextafter is a library call): s is finite, non-zero and
    // even, so one step up or down its magnitude stays on the same side of zero and off infinity.
    return std::bit_cast<double>((err > 0) == (s > 0) ? bits + 1 : bits - 1);
}

// RO of the exact value o * 2^k, where o in [1/4, 2) is already the 53-bit round-to-odd of the
// true result scaled by 2^-k (so the true result is r with RO_53(r * 2^-k) = o). Rounding to odd
// twice, onto a grid and then onto one at least twice as coarse, equals rounding to odd once onto
// the coarse grid (the coarse points are even points of the fine grid: the argument at the top
// of this header), so:
//   - in double's normal range, the 53-bit grid is double's: the result is o * 2^k, exact;
//   - below 2^-1022, double's grid (multiples of 2^-1074) is at least twice as coarse: truncate
//     o * 2^(k + 1074) to an integer, set its last bit if that dropped anything;
//   - at or above 2^1024: DBL_MAX (RO never rounds to infinity).
inline double round_odd_scaled(double o, int k, bool negative) {
    const int e = std::ilogb(o) + k;  // exponent of the result
    double magnitude;
    if (e > 1023) {
        magnitude = std::numeric_limits<double>::max();
    } else if (e >= -1022) {
        magnitude = std::ldexp(o, k);  // exact: the result is a normal double
    } else {
        const int n = k + 1074;
        if (n < -60) {
            // o * 2^n < 2^-59: truncates to 0, inexact (o > 0), so the last bit is set.
            magnitude = std::numeric_limits<double>::denorm_min();
        } else {
            const double units = std::ldexp(o, n);  // < 2^52 and >= 2^-62: exact
            const double whole = std::trunc(units);
            const auto odd = std::uint64_t(whole) | std::uint64_t(whole != units);
            magnitude = double(odd) * std::numeric_limits<double>::denorm_min();  // exact
        }
    }
    return negative ? -magnitude : magnitude;
}

// Results and operands at least this large keep the error terms' signs (see the top comment).
inline constexpr double error_term_safe = 0x1p-900;

inline bool finite_nonzero(double x) { return std::isfinite(x) && x != 0; }

}  // namespace detail

// RO(a + b). Fast2Sum (with the larger magnitude first) gives the exact error of s = fl(a + b) for
// all finite a, b whose sum does not overflow, subnormal results included.
inline double add_round_odd(double a, double b) {
    const double s = a + b;
    if (!std::isfinite(s)) {
        // Finite operands: the exact sum is beyond DBL_MAX; otherwise inf or NaN is exact.
        if (std::isfinite(a) && std::isfinite(b))
            return std::copysign(std::numeric_limits<double>::max(), s);
        return s;
    }
    const bool a_larger = std::fabs(a) >= std::fabs(b);
    const double big = a_larger ? a : b;
    const double small = a_larger ? b : a;
    const double err = small - (s - big);  // both operations exact (Fast2Sum)
    return detail::odd_neighbour(s, err);
}

// RO(a - b): negation is exact.
inline double sub_round_odd(double a, double b) { return add_round_odd(a, -b); }

// RO(a * b).
inline double mul_round_odd(double a, double b) {
    const double s = a * b;
    const double m = std::fabs(s);
    if (m >= detail::error_term_safe && m <= std::numeric_limits<double>::max())
        return detail::odd_neighbour(s, std::fma(a, b, -s));
    if (!detail::finite_nonzero(a) || !detail::finite_nonzero(b)) return s;  // IEEE, exact
    // Tiny or overflowing product: multiply the significands in [1/2, 1), whose product in
    // [1/4, 1) has an exact fma error, and put the exponent back with round_odd_scaled.
    int ka = 0, kb = 0;
    const double fa = std::frexp(std::fabs(a), &ka);
    const double fb = std::frexp(std::fabs(b), &kb);
    const double p = fa * fb;
    const double o = detail::odd_neighbour(p, std::fma(fa, fb, -p));
    return detail::round_odd_scaled(o, ka + kb, std::signbit(a) != std::signbit(b));
}

// RO(a / b).
inline double div_round_odd(double a, double b) {
    const double q = a / b;
    const double m = std::fabs(q);
    if (m >= detail::error_term_safe && m <= 0x1p900 && std::fabs(a) >= detail::error_term_safe) {
        // a - q b has the sign of (a / b - q) times the sign of b.
        const double r = std::fma(-q, b, a);
        return detail::odd_neighbour(q, b > 0 ? r : -r);
    }
    if (!detail::finite_nonzero(a) || !detail::finite_nonzero(b)) return q;  // IEEE, exact
    // Quotient of the significands in (1/2, 2), with an exact remainder; exponent put back after.
    int ka = 0, kb = 0;
    const double fa = std::frexp(std::fabs(a), &ka);
    const double fb = std::frexp(std::fabs(b), &kb);
    const double p = fa / fb;
    const double o = detail::odd_neighbour(p, std::fma(-p, fb, fa));
    return detail::round_odd_scaled(o, ka - kb, std::signbit(a) != std::signbit(b));
}

}  // namespace lowbit
