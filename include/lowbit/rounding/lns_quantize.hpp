// lowbit/rounding/lns_quantize.hpp: how a real number lands on a logarithmic format.
//
//   double q = lowbit::lns_quantize(x, lowbit::lns8, lowbit::lns_rounding::nearest_log);
//   lowbit::lns_quantizer quant{.format = lowbit::lns8.scaled(j), .mode = lns_rounding::stochastic_log,
//                               .seed = 7};
//   quant(x, index);  quant(in, out);  quant(data);           // scalars and spans, seeded
//
// The rounding happens on the unbounded grid 2^(k / gamma), k any integer, then the range applies:
//   - k > k_max(): saturates to k_max() (also for +-infinity): the format has no infinity;
//   - k < k_min(): underflow, to zero (lns_underflow::zero) or to k_min() (lns_underflow::smallest);
//   - NaN stays NaN, +-0 stays +-0 (the sign of a zero is kept in double; the storage type lns<F>
//     has one zero), the sign of every other x is kept.
// With t = gamma * log2|x|, the modes choose
//   nearest_log      round(t): the nearer neighbour in the log domain (geometric midpoint);
//   nearest_linear   the neighbour 2^(k/gamma) nearer to |x| in linear distance (arithmetic
//                    midpoint (2^(k/gamma) + 2^((k+1)/gamma)) / 2);
//   toward_zero      floor(t) (the magnitude is truncated);
//   stochastic_log   floor(t) + 1 with probability ~frac(t), in the log domain: with R random bits
//                    and u = random mod 2^R, up iff floor(frac(t) 2^R) + u >= 2^R (the same rule
//                    as lowbit::rounding::stochastic, applied to t), so E[k] = floor(t) +
//                    floor(frac(t) 2^R) / 2^R, within 2^-R of t.
// Every mode is applied to the exact value of the double x. A decoded LNS value is 2^(k/gamma)
// rounded to double, on one side of the exact value: the nearest modes give k back, but
// toward_zero gives k - 1 when that double lies below 2^(k/gamma) (and stochastic_log may).
//
// Exactness. Every decision is a comparison of |x| with a threshold 2^(h / 2^m) (m = frac_bits for
// toward_zero, frac_bits + 1 for nearest_log, frac_bits + R for stochastic_log) or, for
// nearest_linear, with 2^(k/gamma) (1 + 2^(1/gamma)) / 2. A guess from std::log2 is taken when it
// is farther from the decision boundary than 64 ulps of log2's result (glibc's log2 is within
// 1 ulp); otherwise, and always near a boundary, the threshold is computed as a double-double
// (lns_format.hpp: exp2_dyadic, relative error < 2^-96) and compared with |x| exactly (the
// difference of two doubles within a factor 2 of each other is exact by Sterbenz's lemma).
// That comparison gives the true answer unless |x| lies within 2^-96 (relative) of the threshold.
// It cannot, for m <= 21 and for the arithmetic midpoints: scaled into [1, 2), the thresholds
// are the numbers 2^(j / 2^21) and 2^(r/gamma) (1 + 2^(1/gamma)) / 2, finitely many per format
// (the same significands in every binade, and the validated range keeps every threshold in
// double's normal range, where the doubles near 2^q c are 2^q times those near c), and an
// exhaustive MPFR computation over all of them for frac_bits <= 20 (tests/rounding/
// lns_quantize_test.cpp, "distance of LNS constants to doubles") finds none closer than 2^-77.8
// (relative) to a 54-bit number, let alone to a double. Hence toward_zero, nearest_log and
// nearest_linear are decided exactly for every double x and every valid format. stochastic_log
// with frac_bits + R > 21 compares against thresholds that the enumeration does not cover: it is
// exact unless |x| is within 2^-96 of one, which no test input has ever been; if one were, the
// decision could differ as if u were off by one.
//
// Ties. A geometric midpoint 2^((2k+1) / (2 gamma)) is never a double: a rational number whose
// base-2 logarithm is rational is a power of two (if (a/b)^q = 2^p in lowest terms, a and b are
// powers of two), and (2k+1) / (2 gamma) is never an integer. So nearest_log never meets a tie.
// An arithmetic midpoint is 2^q 2^(r/gamma) (1 + 2^(1/gamma)) / 2; for gamma >= 2 it is
// irrational (2^(r/gamma) and 2^((r+1)/gamma) are distinct elements of the basis 1, a, .., a^(gamma-1)
// of Q(a), a = 2^(1/gamma), not both rational), but for gamma = 1 it is 1.5 * 2^k, a double: that
// tie goes to the even k. toward_zero's thresholds 2^(k/gamma) are doubles exactly when gamma
// divides k, and x on them is exact (no rounding).
#pragma once

#include <lowbit/formats/lns_format.hpp>
#include <lowbit/rounding/random_bits.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace lowbit {

enum class lns_rounding : std::uint8_t {
    nearest_log,     // k = round(gamma log2|x|): nearest in the log domain (never a tie)
    nearest_linear,  // the LNS value nearest to x in linear distance (ties, only for gamma = 1: even k)
    toward_zero,     // k = floor(gamma log2|x|)
    stochastic_log,  // k = floor(t) + 1 with probability frac(t), t = gamma log2|x|
};

// What a result below the smallest magnitude (after rounding) becomes.
enum class lns_underflow : std::uint8_t {
    zero,      // the zero code (keeping the sign of x in double)
    smallest,  // the smallest magnitude 2^(k_min / gamma), with the sign of x
};

constexpr const char* to_string(lns_rounding m) {
    switch (m) {
        case lns_rounding::nearest_log: return "nearest_log";
        case lns_rounding::nearest_linear: return "nearest_linear";
        case lns_rounding::toward_zero: return "toward_zero";
        case lns_rounding::stochastic_log: return "stochastic_log";
    }
    return "?";
}

constexpr const char* to_string(lns_underflow u) { return u == lns_underflow::zero ? "zero" : "smallest"; }

namespace detail {

// The sign of s - (c.hi + c.lo), exactly, for a positive double s and a positive double-double c.
inline int compare_with(double s, double_double c) {
    if (s >= 2 * c.hi) return 1;     // c.hi + c.lo < 2 c.hi
    if (s <= 0.5 * c.hi) return -1;  // c.hi + c.lo > c.hi / 2
    const double d = s - c.hi;       // exact (Sterbenz)
    return d > c.lo ? 1 : d < c.lo ? -1 : 0;
}

// Whether s >= 2^(h / 2^m) for a positive finite double s, 0 <= m <= 52 (exact: see the header).
inline bool at_least_exp2(double s, std::int64_t h, int m) {
    const std::int64_t q = floor_shift(h, m);
    const auto j = std::uint64_t(h - q * (std::int64_t(1) << m));
    // Scaling by a power of two is exact while the result is normal, which it is whenever s is
    // near the threshold; far from it, an inexact or infinite result still compares right.
    const double scaled = std::ldexp(s, int(std::clamp<std::int64_t>(-q, -4096, 4096)));
    return compare_with(scaled, exp2_dyadic(j, m)) >= 0;
}

// For m <= table_log2_bits: the smallest doubles at or above 2^(i / 2^m), i = 1 .. 2^m - 1 (no
// double equals one of these irrational numbers, so f >= 2^(i / 2^m) exactly when f >= the entry),
// found once with the exact predicate. Counting the thresholds at or below an f in [1, 2) takes
// one lookup: [1, 2) is cut into 2^(m + 2) equal buckets, narrower than the gap between two
// thresholds (2^(1/2^m) - 1 > ln 2 / 2^m > 2^-(m + 2)), so a bucket holds at most one threshold;
// `below` counts those under the bucket's start and `next` is the first at or above it. Values in
// [1, 2) are compared by their 52 fraction bits.
inline constexpr int table_log2_bits = 8;
struct log2_threshold_table {
    int bucket_bits = 0;  // m + 2
    std::vector<std::int32_t> below;
    std::vector<std::uint64_t> next;  // fraction bits; 2^52 (above every fraction) where none is left

    // The thresholds at or below 1 + fraction 2^-52.
    std::int64_t count(std::uint64_t fraction) const {
        return count_in(below.data(), next.data(), 52 - bucket_bits, fraction);
    }
    // The same from the tables' data (for loops that hold them in restrict pointers).
    [[gnu::always_inline]] static std::int64_t count_in(const std::int32_t* below, const std::uint64_t* next,
                                                        int bucket_shift, std::uint64_t fraction) {
        const std::uint64_t bucket = fraction >> bucket_shift;
        return below[bucket] + std::int64_t(fraction >= next[bucket]);
    }
};
inline const log2_threshold_table& log2_thresholds(int m) {
    static const auto tables = [] {
        std::array<log2_threshold_table, table_log2_bits + 1> tables;
        for (int bits = 0; bits <= table_log2_bits; ++bits) {
            std::vector<double> t;
            for (std::int64_t i = 1; i < (std::int64_t(1) << bits); ++i) {
                double x = std::nextafter(exp2_dyadic(std::uint64_t(i), bits).hi, 0.0);
                while (!at_least_exp2(x, i, bits)) x = std::nextafter(x, 4.0);
                t.push_back(x);
            }
            log2_threshold_table& table = tables[std::size_t(bits)];
            table.bucket_bits = bits + 2;
            for (std::int64_t j = 0; j < (std::int64_t(1) << table.bucket_bits); ++j) {
                const double start = 1 + std::ldexp(double(j), -table.bucket_bits);  // (exact)
                const auto first = std::lower_bound(t.begin(), t.end(), start);
                table.below.push_back(std::int32_t(first - t.begin()));
                table.next.push_back(first == t.end() ? std::uint64_t(1) << 52
                                                      : std::bit_cast<std::uint64_t>(*first) & ((std::uint64_t(1) << 52) - 1));
            }
        }
        return tables;
    }();
    return tables[std::size_t(m)];
}

// floor(2^m log2 s) beyond the table: m > table_log2_bits or subnormal s (below).
inline std::int64_t floor_scaled_log2_from_log(double s, int m);

// floor(2^m log2 s) for a positive finite double s (subnormals included), 0 <= m <= 52. (The
// table's case is small enough to inline into a caller's loop; the rest is a call.)
[[gnu::always_inline]] inline std::int64_t floor_scaled_log2(double s, int m) {
    const auto bits = std::bit_cast<std::uint64_t>(s);
    if (m <= table_log2_bits && (bits >> 52) != 0) [[likely]]  // normal s = f 2^e, f in [1, 2): count thresholds
        return (std::int64_t(bits >> 52) - 1023) * (std::int64_t(1) << m) +
               log2_thresholds(m).count(bits & ((std::uint64_t(1) << 52) - 1));
    return floor_scaled_log2_from_log(s, m);
}

inline std::int64_t floor_scaled_log2_from_log(double s, int m) {
    const auto bits = std::bit_cast<std::uint64_t>(s);
    // s = f 2^e with f in [1/2, 1): from the bits for normal s (std::frexp is a library call).
    int e = 0;
    double f = 0;
    if ((bits >> 52) != 0) {
        e = int(bits >> 52) - 1022;
        f = std::bit_cast<double>((bits & ((std::uint64_t(1) << 52) - 1)) | (std::uint64_t(1022) << 52));
    } else {
        f = std::frexp(s, &e);
    }
    if (f < 0x1.6a09e667f3bcdp-1) f *= 2, e -= 1;  // f in [sqrt(1/2), sqrt(2)): |log2 f| <= 1/2
    const std::int64_t base = std::int64_t(e) * (std::int64_t(1) << m);
    std::int64_t guess = 0;
    bool near_boundary = true;
    // log2 f is at most 1/2 in magnitude, so one ulp of it is at most 2^-54 (double) or 2^-65
    // (x87 long double): the guess 2^m log2 f is within 2^(m-48) (resp. 2^(m-59)) units of the
    // truth if log2 errs by at most 64 ulps (glibc: < 1 ulp). Fraction parts farther than that
    // from an integer decide the floor; the rest are decided exactly below.
    if (m <= 40 || std::numeric_limits<long double>::digits <= 53) {
        const double y = std::log2(f) * lns_pow2(m);
        const double fy = std::floor(y);
        const double margin = lns_pow2(m - 48);
        guess = base + std::int64_t(fy);
        near_boundary = !(y - fy >= margin && y - fy <= 1 - margin);
    } else {
        const long double y = std::log2(static_cast<long double>(f)) * std::ldexp(1.0L, m);
        const long double fy = std::floor(y);
        const long double margin = std::ldexp(1.0L, m - std::numeric_limits<long double>::digits + 5);
        guess = base + std::int64_t(fy);
        near_boundary = !(y - fy >= margin && y - fy <= 1 - margin);
    }
    if (!near_boundary) return guess;
    std::int64_t h = guess;
    while (!at_least_exp2(s, h, m)) --h;
    while (at_least_exp2(s, h + 1, m)) ++h;
    return h;
}

// k of the nearest_linear rounding of a positive finite s whose floor(gamma log2 s) is k.
inline std::int64_t round_linear(double s, std::int64_t k, int frac_bits) {
    const std::int64_t q = floor_shift(k, frac_bits);
    const auto r = std::uint64_t(k - q * (std::int64_t(1) << frac_bits));
    // In [1, 2): exact, as q is in double's normal exponent range for the k this is called with.
    const double scaled = s * lns_pow2(int(-q));
    // Fast: the midpoint to within a few ulps (correctly rounded 2^(r/gamma) and 2^(1/gamma) from
    // the tables, else libm's exp2), trusted 2^12 ulps away from it.
    double approx = 0;
    if (frac_bits <= exp2_table_max_bits) {
        const double* table = exp2_fraction_table(frac_bits);
        approx = table[r] * (0.5 + 0.5 * exp2_of_inverse_power_of_two[frac_bits].hi);
    } else {
        const double gamma = lns_pow2(frac_bits);
        approx = std::exp2(double(r) / gamma) * (0.5 + 0.5 * std::exp2(1.0 / gamma));
    }
    if (std::fabs(scaled - approx) > 0x1p-40 * approx) return scaled > approx ? k + 1 : k;
    // Exact: (1 + 2^(1/gamma)) / 2 as a double-double (the two_sum is exact; its low part plus the
    // constant's low part rounds once, 2^-106 relative), times 2^(r/gamma).
    const double_double a = exp2_of_inverse_power_of_two[frac_bits];
    const double_double s1 = two_sum(1.0, a.hi);
    const double_double half = fast_two_sum(s1.hi, s1.lo + a.lo);
    const double_double mid = dd_mul(exp2_dyadic(r, frac_bits), {0.5 * half.hi, 0.5 * half.lo});
    const int side = compare_with(scaled, mid);
    if (side != 0) return side > 0 ? k + 1 : k;
    return (k % 2 == 0) ? k : k + 1;  // a tie: only gamma = 1, x = 1.5 * 2^k
}

inline void check_random_bits(int random_bits) {
    if (random_bits < 1 || random_bits > 32)
        throw std::invalid_argument("lowbit::lns_quantize: random_bits = " + std::to_string(random_bits) +
                                    ": must be in [1, 32]");
}

// x rounded to the nearest double "to odd" from a double-double (truncate, then make the last bit
// odd if anything was dropped), so that a further rounding to float is correctly rounded
// (rounding/exact_ops.hpp: Boldo & Melquiond).
inline double round_odd(double_double v) {
    if (v.lo == 0 || (std::bit_cast<std::uint64_t>(v.hi) & 1u) != 0) return v.hi;
    return std::nextafter(v.hi, v.lo > 0 ? std::numeric_limits<double>::infinity()
                                         : -std::numeric_limits<double>::infinity());
}

}  // namespace detail

// The k that a magnitude a (positive, finite or +infinity) rounds to in format f, in
// [k_min(), k_max()], or no value when it underflows to zero. f must be valid. (Inlined: returned
// through memory, the optional costs a store-forwarding stall, as much as the rounding itself.)
[[gnu::always_inline]] inline std::optional<int> lns_round_magnitude(double a, const lns_format& f, lns_rounding mode,
                                              lns_underflow on_underflow = lns_underflow::zero,
                                              std::uint32_t random = 0, int random_bits = 32) {
    if (!(a < std::numeric_limits<double>::infinity())) return f.k_max();
    const int b = f.frac_bits;
    std::int64_t k = 0;
    switch (mode) {
        case lns_rounding::toward_zero: k = detail::floor_scaled_log2(a, b); break;
        case lns_rounding::nearest_log:
            // floor of the half-steps: h = 2k (below the midpoint) or 2k + 1 (at or above it).
            k = detail::floor_shift(detail::floor_scaled_log2(a, b + 1) + 1, 1);
            break;
        case lns_rounding::nearest_linear:
            k = detail::floor_scaled_log2(a, b);
            // Beyond the ends the answer is already known (and the midpoint might leave the
            // range where it is computed exactly).
            if (k >= f.k_max()) return f.k_max();
            if (k >= f.k_min() - 1) k = detail::round_linear(a, k, b);
            break;
        case lns_rounding::stochastic_log: {
            detail::check_random_bits(random_bits);
            const std::int64_t h = detail::floor_scaled_log2(a, b + random_bits);
            k = detail::floor_shift(h, random_bits);
            const std::int64_t fraction = h - k * (std::int64_t(1) << random_bits);
            const std::uint64_t u = random_bits == 32 ? random : (random & ((1u << random_bits) - 1));
            if (std::uint64_t(fraction) + u >= (std::uint64_t(1) << random_bits)) ++k;
            break;
        }
    }
    if (k > f.k_max()) return f.k_max();
    if (k < f.k_min()) {
        if (on_underflow == lns_underflow::zero) return std::nullopt;
        return f.k_min();
    }
    return int(k);
}

namespace detail {

// lns_round_magnitude for many values, where the threshold table decides (nearest_log and
// toward_zero with frac_bits + 1 <= table_log2_bits, for every double of a normal exponent, zeros
// and infinities): one lookup and no branch per value, so a loop over them vectorizes.
struct lns_table_rounding {
    const log2_threshold_table* table = nullptr;
    int m = 0;         // floor(2^m log2 a): m = frac_bits, + 1 for nearest_log's half steps
    bool nearest = false;
    std::int32_t k_min = 0, k_max = 0;
    bool to_zero = true;  // underflow gives zero (else k_min)

    static std::optional<lns_table_rounding> make(const lns_format& f, lns_rounding mode, lns_underflow on_underflow) {
        if (mode != lns_rounding::nearest_log && mode != lns_rounding::toward_zero) return std::nullopt;
        lns_table_rounding r;
        r.nearest = mode == lns_rounding::nearest_log;
        r.m = f.frac_bits + (r.nearest ? 1 : 0);
        if (r.m > table_log2_bits) return std::nullopt;
        r.table = &log2_thresholds(r.m);
        r.k_min = f.k_min(), r.k_max = f.k_max();
        r.to_zero = on_underflow == lns_underflow::zero;
        return r;
    }

    // k and sign (-1, 0, +1; zeros and underflows 0 with k_min) of n values (float or double:
    // any but NaN) in one branch-free loop, which vectorizes; true where it met a subnormal double
    // (whose results are then not to be used: the table does not decide them).
    template <class T>
    bool encode(const T* x, std::int64_t n, std::int32_t* k_out, std::int8_t* sign_out) const {
        return encode_loop(x, n, k_out, sign_out, table->below.data(), table->next.data(),
                           52 - table->bucket_bits, std::int64_t(1) << m, k_min, k_max, nearest, to_zero);
    }

private:
    // (restrict parameters: a store through an int8_t pointer may otherwise change anything, the
    // tables included, which leaves the loop scalar)
    template <class T>
    static bool encode_loop(const T* __restrict x, std::int64_t n, std::int32_t* __restrict k_out,
                            std::int8_t* __restrict sign_out, const std::int32_t* __restrict below,
                            const std::uint64_t* __restrict next, int bucket_shift, std::int64_t m_scale,
                            std::int64_t low, std::int64_t high, bool nearest, bool zero_below) {
        const std::int64_t round_up = nearest ? 1 : 0, halve = nearest ? 1 : 0;
        std::int64_t subnormals = 0;  // (a count: g++ does not vectorize an or of bools)
        for (std::int64_t t = 0; t < n; ++t) {
            const std::uint64_t bits = std::bit_cast<std::uint64_t>(double(x[t]));
            const std::uint64_t magnitude = bits & ~(std::uint64_t(1) << 63);
            const std::uint64_t fraction = magnitude & ((std::uint64_t(1) << 52) - 1);
            const auto exponent = std::int64_t(magnitude >> 52);  // (2047 for infinity: above every k_max)
            const std::int64_t h =
                (exponent - 1023) * m_scale + log2_threshold_table::count_in(below, next, bucket_shift, fraction);
            const std::int64_t k = (h + round_up) >> halve;  // (floor: arithmetic shift)
            subnormals += std::int64_t(exponent == 0) & std::int64_t(fraction != 0);
            const std::int64_t zero = std::int64_t(exponent == 0) | (std::int64_t(k < low) & std::int64_t(zero_below));
            k_out[t] = std::int32_t(zero != 0 ? low : std::clamp(k, low, high));
            sign_out[t] = std::int8_t((1 - zero) * (1 - 2 * std::int64_t(bits >> 63)));
        }
        return subnormals != 0;
    }
};

}  // namespace detail

// x rounded to format f (see the header for the rules). Throws std::invalid_argument for an
// invalid format or random_bits outside [1, 32] (stochastic_log).
inline double lns_quantize(double x, const lns_format& f, lns_rounding mode = lns_rounding::nearest_log,
                           lns_underflow on_underflow = lns_underflow::zero, std::uint32_t random = 0,
                           int random_bits = 32) {
    f.validate();
    if (x != x || x == 0) return x;
    const std::optional<int> k = lns_round_magnitude(std::fabs(x), f, mode, on_underflow, random, random_bits);
    return std::copysign(k ? f.magnitude(*k) : 0.0, x);
}

// 2^(k / gamma) correctly rounded to float (through a double rounded to odd), for k in the
// format's validated range.
inline float lns_magnitude_float(int k, const lns_format& f) {
    const std::int64_t q = detail::floor_shift(k, f.frac_bits);
    const auto r = std::uint64_t(std::int64_t(k) - q * (std::int64_t(1) << f.frac_bits));
    return float(std::ldexp(detail::round_odd(detail::exp2_dyadic(r, f.frac_bits)), int(q)));
}

// ---- per-tensor scale ----
// The scale is a power of the format's base, 2^(j / gamma), so that scaling is a shift of k: the
// scaled grid is the grid of f.scaled(j), and LNS products of scaled values stay exact. j is the
// smallest integer with amax <= 2^((k_max + j) / gamma): the tensor's largest magnitude lands on
// the largest code or just below it (never above, so nothing saturates), within one step.
// Throws std::invalid_argument if amax is negative, NaN or infinite, or if f.scaled(j) would
// leave double's range. amax = 0 gives j = 0.
inline int lns_scale_exponent_for_max(double amax, const lns_format& f) {
    f.validate();
    if (!(amax >= 0) || amax == std::numeric_limits<double>::infinity())
        throw std::invalid_argument("lowbit::lns_scale_for_max: amax = " + std::to_string(amax) +
                                    ": must be finite and >= 0");
    if (amax == 0) return 0;
    const std::int64_t k = detail::floor_scaled_log2(amax, f.frac_bits);
    int e = 0;
    const bool exact = (k % f.gamma() == 0) && std::frexp(amax, &e) == 0.5;  // amax = 2^(k/gamma)
    const std::int64_t j = k + (exact ? 0 : 1) - f.k_max();
    const lns_format scaled{f.log_bits, f.frac_bits, int(std::clamp<std::int64_t>(f.offset + j, -(1 << 30), 1 << 30))};
    if (!scaled.is_valid())
        throw std::invalid_argument("lowbit::lns_scale_for_max: amax = " + std::to_string(amax) +
                                    ": the scaled format would leave double's range");
    return int(j);
}

// The scale 2^(j / gamma) of lns_scale_exponent_for_max as a double (rounded to nearest; in
// double's normal range correctly rounded). Dividing by it in double rounds; for the exact
// scaled grid quantize with f.scaled(lns_scale_exponent_for_max(amax, f)) instead.
inline double lns_scale_for_max(double amax, const lns_format& f) {
    const int j = lns_scale_exponent_for_max(amax, f);
    const std::int64_t q = detail::floor_shift(j, f.frac_bits);
    const auto r = std::uint64_t(std::int64_t(j) - q * (std::int64_t(1) << f.frac_bits));
    return std::ldexp(detail::exp2_dyadic(r, f.frac_bits).hi, int(q));
}

// ---- a configured rounding, for scalars and arrays ----
// Element i of an array call gets the random bits random_bits_at(seed, first_index + i), so a
// scalar call with index k equals element k of an array call, whatever the split of the array.
struct lns_quantizer {
    lns_format format = lns8;
    lns_rounding mode = lns_rounding::nearest_log;
    lns_underflow on_underflow = lns_underflow::zero;
    std::uint64_t seed = 0;  // key of the random stream of stochastic_log
    int random_bits = 32;    // random bits per stochastic rounding, 1..32

    double operator()(double x, std::uint64_t index = 0) const {
        format.validate();
        return one(x, random_for(index));
    }
    // A float input is exact in double; the LNS value is then rounded to float correctly.
    float operator()(float x, std::uint64_t index = 0) const {
        format.validate();
        return one_float(x, random_for(index));
    }

    // Arrays: out[i] = (*this)(in[i], first_index + i). `out` may be `in`.
    void operator()(std::span<const double> in, std::span<double> out, std::uint64_t first_index = 0) const {
        many(in, out, first_index);
    }
    void operator()(std::span<const float> in, std::span<float> out, std::uint64_t first_index = 0) const {
        many(in, out, first_index);
    }
    void operator()(std::span<double> data, std::uint64_t first_index = 0) const {
        many(std::span<const double>(data), data, first_index);
    }
    void operator()(std::span<float> data, std::uint64_t first_index = 0) const {
        many(std::span<const float>(data), data, first_index);
    }

private:
    std::uint32_t random_for(std::uint64_t index) const {
        return mode == lns_rounding::stochastic_log ? random_bits_at(seed, index) : 0u;
    }
    std::optional<int> k_of(double x, std::uint32_t random) const {
        return lns_round_magnitude(std::fabs(x), format, mode, on_underflow, random, random_bits);
    }
    double one(double x, std::uint32_t random) const {
        if (x != x || x == 0) return x;
        const std::optional<int> k = k_of(x, random);
        return std::copysign(k ? format.magnitude(*k) : 0.0, x);
    }
    float one_float(float x, std::uint32_t random) const {
        if (x != x || x == 0) return x;
        const std::optional<int> k = k_of(x, random);
        return std::copysign(k ? lns_magnitude_float(*k, format) : 0.0f, x);
    }

    template <class T>
    void many(std::span<const T> in, std::span<T> out, std::uint64_t first_index) const {
        if (in.size() != out.size())
            throw std::invalid_argument("lowbit::lns_quantizer: output size " + std::to_string(out.size()) +
                                        " != input size " + std::to_string(in.size()));
        format.validate();
        if (mode == lns_rounding::stochastic_log) detail::check_random_bits(random_bits);
        constexpr std::size_t block = 64;
        std::uint32_t random[block] = {};
        for (std::size_t i = 0; i < in.size(); i += block) {
            const std::size_t n = std::min(block, in.size() - i);
            if (mode == lns_rounding::stochastic_log) fill_random_bits(seed, first_index + i, random, n);
            for (std::size_t j = 0; j < n; ++j) {
                if constexpr (std::is_same_v<T, float>) out[i + j] = one_float(in[i + j], random[j]);
                else out[i + j] = one(in[i + j], random[j]);
            }
        }
    }
};

}  // namespace lowbit
