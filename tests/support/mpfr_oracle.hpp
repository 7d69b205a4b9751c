// tests/support/mpfr_oracle.hpp: an independent reference for lowbit::quantize, built on GNU MPFR.
//
// Written from the specification of lowbit's rounding, not from its implementation, so that the
// tests compare two independent derivations. Meant for reuse by every test that needs the exact
// value of "x rounded to format f" (quantize tests, reference GEMMs, ...). Correctness first:
// every step below is one sentence of the definition.
//
// The definition (format with E exponent bits, M mantissa bits, bias b, default 2^(E-1)-1):
//  * has_zero: exponent field 0 holds zero and (with subnormals) 0.f x 2^(1-b); fields >= 1 are
//    1.f x 2^(field-b); emin = 1-b. Without zero (needs subnormals = false) field 0 is a normal
//    binade and emin = -b.
//  * largest finite: ieee (top field is inf/NaN): (2 - 2^-M) 2^(2^E-2-b); fn (top field normal
//    except its all-ones mantissa, which is NaN): (2 - 2^(1-M)) 2^(2^E-1-b) for M >= 1, and
//    2^(2^E-2-b) for M = 0; none: (2 - 2^-M) 2^(2^E-1-b). When no field holds normal numbers the
//    largest finite is the largest subnormal (1 - 2^-M) 2^emin.
//  * x is rounded with infinite precision onto the grid of spacing
//    2^(max(floor(log2|x|), emin) - M), unbounded above (and with the subnormal spacing below
//    2^emin even without subnormals), by the rounding mode; then overflow (rounded magnitude >
//    largest finite), flush (no subnormals: rounded magnitude < 2^emin), special inputs and the
//    sign of unsigned formats are handled as documented at oracle_finish() below.
//  * ties to even / round to odd look at the last bit of the neighbours' significands, the parity
//    of lo / spacing; with M = 0 that is the implicit bit, always 1 for a non-zero value, as MPFR
//    reads it at precision 1 (ties go up, round to odd truncates).
//  * stochastic with R random bits and u = random mod 2^R: with lo, hi the grid neighbours of |x|
//    and frac = (|x| - lo) / (hi - lo), the magnitude rounds up iff floor(frac 2^R) + u >= 2^R.
//
// Entry points:
//   mpfr_round(x, f, mode, overflow, random, random_bits)   the definition, one call
//   oracle_constants(f)                                     max finite, min normal, ... of f
//   grid_neighbours_of(x, emin, M) + oracle_finish(...)     the same as mpfr_round in two steps,
//       for loops over many modes/policies/formats sharing one grid (the MPFR work is only in
//       the first step)
//   mpfr_round_native(x, emin, M, rnd)                      MPFR's own rounding (precision M+1,
//       mpfr_subnormalize) onto the same unbounded grid: a second derivation of the neighbours,
//       used to cross-check grid_neighbours_of.
#pragma once

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/modes.hpp>

#include <mpfr.h>
// mpfr.h defines mpfr_round(a, b) as a macro for mpfr_rint(a, b, MPFR_RNDNA), which would swallow
// lowbit_test::mpfr_round below; the MPFR function ::mpfr_round stays declared.
#undef mpfr_round

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>

namespace lowbit_test {

// ---------------------------------------------------------------------------------------------
// RAII holder of one mpfr_t.
class mpfr_number {
public:
    explicit mpfr_number(mpfr_prec_t precision) { mpfr_init2(value_, precision); }
    ~mpfr_number() { mpfr_clear(value_); }
    mpfr_number(const mpfr_number&) = delete;
    mpfr_number& operator=(const mpfr_number&) = delete;
    mpfr_ptr get() { return value_; }
    mpfr_srcptr get() const { return value_; }

private:
    mpfr_t value_;
};

// ---------------------------------------------------------------------------------------------
// Format constants, computed from the definition (independently of float_format's own methods).
struct oracle_format {
    lowbit::float_format format;  // the format itself (flags: subnormals, specials, sign, zero)
    int man_bits = 0;             // M
    int bias = 0;                 // b
    int emin = 0;                 // exponent of the smallest normal binade
    int emax = 0;                 // floor(log2(max_finite))
    bool has_normals = true;      // whether some exponent field holds normal numbers
    double max_finite = 0;        // largest finite value
    double min_normal = 0;        // 2^emin
    double min_subnormal = 0;     // smallest positive value
    double epsilon = 0;           // 2^-M
    double codes = 0;             // 2^(sign bit + E + M)
};

inline oracle_format oracle_constants(const lowbit::float_format& f) {
    using lowbit::special_values;
    oracle_format c;
    c.format = f;
    const int E = f.exp_bits;
    const int M = f.man_bits;
    c.man_bits = M;
    c.bias = f.bias == lowbit::float_format::ieee_bias ? (1 << (E - 1)) - 1 : f.bias;
    const int b = c.bias;
    c.emin = f.has_zero ? 1 - b : -b;
    const int top_field = (1 << E) - 1;
    const int lowest_normal_field = f.has_zero ? 1 : 0;
    const double two_pow_minus_m = std::ldexp(1.0, -M);
    switch (f.specials) {
        case special_values::ieee:
            c.has_normals = top_field - 1 >= lowest_normal_field;
            c.max_finite = (2.0 - two_pow_minus_m) * std::ldexp(1.0, top_field - 1 - b);
            break;
        case special_values::fn:
            if (M >= 1) {
                c.has_normals = true;
                c.max_finite = (2.0 - 2.0 * two_pow_minus_m) * std::ldexp(1.0, top_field - b);
            } else {
                c.has_normals = top_field - 1 >= lowest_normal_field;
                c.max_finite = std::ldexp(1.0, top_field - 1 - b);
            }
            break;
        case special_values::none:
        case special_values::fnuz:  // every exponent field finite; NaN takes the -0 code
            c.has_normals = true;
            c.max_finite = (2.0 - two_pow_minus_m) * std::ldexp(1.0, top_field - b);
            break;
    }
    if (!c.has_normals) c.max_finite = (1.0 - two_pow_minus_m) * std::ldexp(1.0, c.emin);
    c.emax = std::ilogb(c.max_finite);
    c.min_normal = std::ldexp(1.0, c.emin);
    c.min_subnormal = (f.subnormals && M >= 1) ? std::ldexp(1.0, c.emin - M) : c.min_normal;
    c.epsilon = two_pow_minus_m;
    const int bits = (f.is_signed ? 1 : 0) + E + M;
    c.codes = std::ldexp(1.0, bits);
    return c;
}

// ---------------------------------------------------------------------------------------------
// Step 1 (all the MPFR work): where |x| lies on the unbounded grid of a format.
struct grid_neighbours {
    double lo = 0;              // |x| rounded toward zero onto the grid (exact in double)
    double hi = 0;              // the grid point above lo, lo when exact (+inf when it is 2^1024)
    bool exact = true;          // |x| is a grid point
    int half_cmp = 0;           // sign of frac - 1/2: -1 nearer lo, 0 tie, +1 nearer hi
    bool lo_odd = false;        // lo = k * spacing with k odd (the last mantissa bit when M >= 1)
    std::uint64_t frac32 = 0;   // floor(frac * 2^32), frac = (|x| - lo) / (hi - lo)
};

// x finite and non-zero; emin and M of the format (the grid depends on nothing else).
inline grid_neighbours grid_neighbours_of(double x, int emin, int M) {
    if (!std::isfinite(x) || x == 0) throw std::invalid_argument("grid_neighbours_of: x must be finite and non-zero");
    // 64 bits hold every double exactly; scaling by powers of two and taking integer and
    // fractional parts of such a value are exact operations at this precision.
    thread_local mpfr_number a(64), whole(64), frac(64);
    mpfr_set_d(a.get(), std::fabs(x), MPFR_RNDN);                       // exact
    const long e = long(mpfr_get_exp(a.get())) - 1;                     // floor(log2|x|)
    const long k = std::max(e, long(emin)) - M;                         // spacing = 2^k
    mpfr_mul_2si(a.get(), a.get(), -k, MPFR_RNDN);                      // |x| / spacing, exact
    mpfr_trunc(whole.get(), a.get());                                   // lo / spacing
    mpfr_sub(frac.get(), a.get(), whole.get(), MPFR_RNDN);              // frac in [0, 1), exact
    grid_neighbours n;
    n.exact = mpfr_zero_p(frac.get()) != 0;
    n.half_cmp = mpfr_cmp_d(frac.get(), 0.5);
    n.half_cmp = (n.half_cmp > 0) - (n.half_cmp < 0);
    // lo / spacing < 2^(M+1) <= 2^53: an exact integer in double.
    const double lo_units = mpfr_get_d(whole.get(), MPFR_RNDN);
    n.lo_odd = std::fmod(lo_units, 2.0) == 1.0;
    mpfr_mul_2si(whole.get(), whole.get(), k, MPFR_RNDN);
    n.lo = mpfr_get_d(whole.get(), MPFR_RNDN);                          // exact: lo <= |x|
    if (n.exact) {
        n.hi = n.lo;
    } else {
        mpfr_set_d(whole.get(), lo_units + 1.0, MPFR_RNDN);             // exact (<= 2^53)
        mpfr_mul_2si(whole.get(), whole.get(), k, MPFR_RNDN);
        n.hi = mpfr_get_d(whole.get(), MPFR_RNDN);                      // exact, or +inf
    }
    mpfr_mul_2si(frac.get(), frac.get(), 32, MPFR_RNDN);                // frac * 2^32, exact
    mpfr_rint_floor(frac.get(), frac.get(), MPFR_RNDN);                 // < 2^32, exact
    n.frac32 = std::uint64_t(mpfr_get_d(frac.get(), MPFR_RNDN));
    return n;
}

// Whether the mode, on a value of this sign, rounds away from zero (for the overflow rule).
inline bool rounds_away_from_zero(lowbit::rounding mode, bool negative) {
    using lowbit::rounding;
    switch (mode) {
        case rounding::nearest_even:
        case rounding::nearest_away:
        case rounding::stochastic: return true;
        case rounding::toward_positive: return !negative;
        case rounding::toward_negative: return negative;
        case rounding::toward_zero:
        case rounding::odd: return false;
    }
    throw std::invalid_argument("rounds_away_from_zero: bad mode");
}

// ---------------------------------------------------------------------------------------------
// Step 2 (no MPFR): the mode's choice between the neighbours, then the rules of the definition.
//  1. overflow (rounded magnitude > largest finite): saturate -> +-largest finite; infinity ->
//     +-inf (ieee) / NaN (fn, fnuz) / +-largest finite (none) when the mode rounds away from zero for
//     x's sign, +-largest finite when it rounds toward zero; infinity_always -> as infinity rounding
//     away from zero, in every mode but odd (odd: +-largest finite).
//  2. no subnormals: a rounded magnitude below 2^emin becomes a zero of x's sign (formats without
//     zero: 2^emin with x's sign; x = +-0 gives that value too).
//  3. NaN -> NaN; +-inf -> +-inf (ieee, overflow::infinity), NaN (fn and fnuz, overflow::infinity),
//     +-largest finite (none, or overflow::saturate); +-0 stays +-0.
//  4. unsigned formats: negative x (-inf and -0 included, NaN not) -> +0 (2^emin without zero).
//  5. fnuz formats have no -0: every zero result (-0 in, a negative x rounded or flushed to zero)
//     is +0.
// `n` must be grid_neighbours_of(x, c.emin, c.man_bits) when x is finite and non-zero (ignored
// otherwise).
inline double oracle_finish(double x, const grid_neighbours& n, const oracle_format& c,
                            lowbit::rounding mode, lowbit::overflow on_overflow,
                            std::uint32_t random = 0, int random_bits = 32) {
    using lowbit::overflow;
    using lowbit::rounding;
    using lowbit::special_values;
    const lowbit::float_format& f = c.format;
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    constexpr double inf = std::numeric_limits<double>::infinity();
    if (random_bits < 1 || random_bits > 32) throw std::invalid_argument("oracle_finish: random_bits must be in [1, 32]");
    // The value that stands in for zero (formats without zero have 2^emin instead).
    const double zero_or_smallest = f.has_zero ? 0.0 : c.min_normal;

    if (std::isnan(x)) return nan;                                           // rule 3
    const bool negative = std::signbit(x);
    if (!f.is_signed && negative) return zero_or_smallest;                   // rule 4
    if (std::isinf(x)) {                                                     // rule 3
        const bool to_infinity = on_overflow == overflow::infinity || on_overflow == overflow::infinity_always;
        if (to_infinity && f.specials == special_values::ieee) return x;
        if (to_infinity &&
            (f.specials == special_values::fn || f.specials == special_values::fnuz))
            return nan;
        return std::copysign(c.max_finite, x);
    }
    const bool fnuz = f.specials == special_values::fnuz;
    if (x == 0) return fnuz ? 0.0 : std::copysign(zero_or_smallest, x);      // rules 3 (2), 5

    // The last bit of lo's significand, the parity of lo / spacing, decides ties to even and round
    // to odd (for M = 0 the implicit bit: odd for every non-zero lo, as in MPFR at precision 1).
    const bool lo_code_odd = n.lo_odd;

    // The rounded magnitude on the unbounded grid.
    double magnitude = n.lo;
    if (!n.exact) {
        bool up = false;
        switch (mode) {
            case rounding::nearest_even: up = n.half_cmp > 0 || (n.half_cmp == 0 && lo_code_odd); break;
            case rounding::nearest_away: up = n.half_cmp >= 0; break;
            case rounding::toward_zero: up = false; break;
            case rounding::toward_positive: up = !negative; break;
            case rounding::toward_negative: up = negative; break;
            case rounding::odd: up = !lo_code_odd; break;  // the neighbour whose last bit is odd
            case rounding::stochastic: {
                const std::uint64_t scale = std::uint64_t(1) << random_bits;
                const std::uint64_t u = std::uint64_t(random) & (scale - 1);
                const std::uint64_t kept = n.frac32 >> (32 - random_bits);  // floor(frac 2^R)
                up = kept + u >= scale;
                break;
            }
        }
        magnitude = up ? n.hi : n.lo;
    }

    if (magnitude > c.max_finite) {                                          // rule 1
        const bool away = rounds_away_from_zero(mode, negative) ||
                          (on_overflow == overflow::infinity_always && mode != rounding::odd);
        if (on_overflow == overflow::saturate || !away || f.specials == special_values::none)
            magnitude = c.max_finite;
        else if (f.specials == special_values::ieee)
            magnitude = inf;
        else
            return nan;
    } else if (!f.subnormals && magnitude < c.min_normal) {                  // rule 2
        magnitude = zero_or_smallest;
    }
    if (fnuz && magnitude == 0) return 0.0;                                  // rule 5
    return negative ? -magnitude : magnitude;
}

// ---------------------------------------------------------------------------------------------
// The definition in one call: x rounded to f under the mode and overflow policy; stochastic
// rounding uses the low `random_bits` bits of `random`.
inline double mpfr_round(double x, const lowbit::float_format& f, lowbit::rounding mode,
                         lowbit::overflow on_overflow, std::uint32_t random = 0,
                         int random_bits = 32) {
    const oracle_format c = oracle_constants(f);
    grid_neighbours n;
    if (std::isfinite(x) && x != 0) n = grid_neighbours_of(x, c.emin, c.man_bits);
    return oracle_finish(x, n, c, mode, on_overflow, random, random_bits);
}

// ---------------------------------------------------------------------------------------------
// MPFR's own rounding of x (finite) onto the same unbounded grid (precision M+1, smallest
// positive 2^(emin-M), no largest value), for the MPFR modes RNDN (ties to even), RNDZ, RNDU,
// RNDD, RNDA. Independent of grid_neighbours_of: the tests use it to check that function.
// Changes MPFR's (thread-local) exponent range and restores it.
inline double mpfr_round_native(double x, int emin, int M, mpfr_rnd_t rnd) {
    const mpfr_exp_t saved_emin = mpfr_get_emin();
    const mpfr_exp_t saved_emax = mpfr_get_emax();
    // MPFR writes x = 0.1b... x 2^EXP: a format binade 2^e is EXP = e + 1. With precision M+1,
    // emulating subnormals means MPFR's emin is the EXP of the smallest subnormal 2^(emin-M).
    mpfr_set_emin(mpfr_exp_t(emin) - M + 1);
    mpfr_set_emax(mpfr_get_emax_max());
    double result;
    {
        mpfr_number r(M + 1);
        int t = mpfr_set_d(r.get(), x, rnd);
        t = mpfr_check_range(r.get(), t, rnd);
        mpfr_subnormalize(r.get(), t, rnd);
        result = mpfr_get_d(r.get(), MPFR_RNDN);  // exact unless 2^1024 (-> inf)
    }
    mpfr_set_emin(saved_emin);
    mpfr_set_emax(saved_emax);
    return result;
}

}  // namespace lowbit_test
