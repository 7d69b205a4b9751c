// tests/datapath/gemm_reference.hpp: a slow, obviously-correct reference for lowbit::gemm.
//
// Written from the documented semantics alone (the top comment of lowbit/datapath/gemm_spec.hpp,
// the event definitions of gemm_stats.hpp, the rounding rules of rounding_plan.hpp and
// int_quantizer.hpp), never from lowbit's kernels. Every value is a GNU MPFR number of
// `ref_precision` bits, so that products of floats and all their sums are exact; every rounding of
// the datapath is done here, on those exact values, one documented rule per line.
//
// Conventions chosen where the documentation leaves room (see also the test file):
//  * a chunk "is reduced from +0" (its chain's acc, a fused sum, a missing pairwise neighbour);
//    additions follow IEEE 754 zero-sign rules (exact x + (-x) = +0, +0 + -0 = +0,
//    -0 + -0 = -0): MPFR's round-to-nearest addition. The chunk accumulator's total starts from
//    -0 (below).
//  * pairwise: the tree is padded to 2^ceil(log2 n) leaves with +0 and every node is rounded by
//    Q_acc, also a node with a missing (zero) neighbour.
//  * aligned: the running acc is one of the aligned terms and is cut like the products; E is taken
//    over the non-zero finite terms (all zero: nothing is cut); a product cut to 0 keeps its sign.
//    inexact_additions compares Q_acc's result with the exact sum of the cut terms it rounds.
//  * an overflow event is a rounding whose unbounded rounded magnitude exceeds the largest finite
//    value (float formats; an infinite input counts) or whose rounded integer leaves the integer
//    range (an infinite input counts); NaN inputs never count.
//  * comparisons of values ("result == acc", "result != exact sum") are numeric (MPFR): +0 == -0,
//    NaN equals nothing (so a NaN sum whose rounding is NaN is not an inexact addition).
//  * swamps in the chunk accumulator are counted, but gemm_stats::lost flags only the events that
//    gemm_stats.hpp lists (product underflow, the model's own swamp of that product).
//  * aligned, align / subnormal_exponent / zero_exponent: an exponent is read per term (the
//    running acc and each product) as the top comment says; terms without one (zeros when
//    zero_exponent is unset, infinities, NaN) do not take part in E and are not cut. With
//    subnormal_exponent = min_normal a term below 2^emin of its format (operands: input_a's /
//    input_b's float format, fp32 when that quantizer is unset or an integer one; the acc: the
//    accumulator's float format, no rule for integer accumulators) is read at emin. With align =
//    value the min_normal rule concerns the acc only (a product's exponent is its value's).
//    With zero_exponent set a zero sum of a group is +0.
//  * two_level (read literally): exponents of products are always e(a_k) + e(b_k) (the `align`
//    field is not consulted), level 1 cuts toward zero and level 2 toward minus infinity whatever
//    `cut` says (the acc's cut at level 2 too); "product k" is the global index k of K; a
//    sub-dot with no product in the group (group < sub_dots, a short last group) does not exist;
//    "with several sub-dots" means sub_dots > 1; a sub-sum's exponent is its sub-dot's largest
//    exponent E_s and E_p is the largest of those (the block exponents of the fixed-point sums,
//    not floor(log2) of the sums); a dropped acc is +0 (dropped when its exponent as read is below
//    E - window - 1). A group with an infinite or NaN product or acc gives Q_acc of their IEEE
//    sum; else one with a product of magnitude >= 2^128 gives +-inf (NaN with both signs), which
//    Q_acc then rounds like any sum. Sums of cut terms follow IEEE zero signs unless zero_exponent is set
//    (then a zero sum is +0), as in aligned.
//  * addend (gemm_add): C(i, j) is cast to float and rounded by spec.addend (role addend, index
//    i*N + j). sequential, fma, aligned and two_level chains start their first chunk's acc from
//    it; when the accumulator is exact (the model runs fused) the first chunk's exact sum starts
//    from it. pairwise and fused start the chunk accumulator's total from it.
//  * the chunk accumulator's total starts from -0 (the top comment: "from -0 ... so that a
//    chunk's result keeps the sign of its zero"), or from the addend for pairwise and fused;
//    "Without an addend that value is +0" is read as the start of a chain's accumulator (each
//    chunk "is reduced from +0").
//  * K = 0 is one empty chunk ("chunk = 0: one chunk"; also for chunk > 0): its result is the
//    value its chain starts from (+0, or the addend: no rounding happens in an empty chain),
//    +0 for pairwise and fused; then the chunk accumulator adds it to the total as usual.
//  * an integer product, accumulator or chunk accumulator that is zero is +0 (the top comment);
//    integer input and addend quantizers keep the sign of a zero (they are not named there).
#pragma once

#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/rounding/random_bits.hpp>

#include <Eigen/Core>
#include <mpfr.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit_test {

namespace gemm_ref {

// Products of two floats need 48 bits and span 2^-298 .. 2^256; sums of a few thousand of them
// need under 600 bits. Every exact operation below checks that MPFR reports it exact.
inline constexpr mpfr_prec_t ref_precision = 2048;

inline void must_be_exact(int ternary, const char* what) {
    if (ternary != 0) throw std::logic_error(std::string("gemm_reference: inexact MPFR operation: ") + what);
}

// A value-semantic MPFR number.
class real {
public:
    real() {
        mpfr_init2(v_, ref_precision);
        mpfr_set_zero(v_, +1);
    }
    explicit real(double d) : real() { must_be_exact(mpfr_set_d(v_, d, MPFR_RNDN), "set_d"); }
    real(const real& o) : real() { mpfr_set(v_, o.v_, MPFR_RNDN); }
    real& operator=(const real& o) {
        if (this != &o) mpfr_set(v_, o.v_, MPFR_RNDN);
        return *this;
    }
    ~real() { mpfr_clear(v_); }

    mpfr_ptr get() { return v_; }
    mpfr_srcptr get() const { return v_; }

    bool is_nan() const { return mpfr_nan_p(v_) != 0; }
    bool is_inf() const { return mpfr_inf_p(v_) != 0; }
    bool is_zero() const { return mpfr_zero_p(v_) != 0; }
    bool is_finite_nonzero() const { return mpfr_regular_p(v_) != 0; }
    bool negative() const { return mpfr_signbit(v_) != 0; }
    // floor(log2 |x|) of a finite non-zero x (MPFR: x = 0.1b... * 2^EXP).
    long floor_log2() const { return long(mpfr_get_exp(v_)) - 1; }

private:
    mpfr_t v_;
};

inline real pow2(long e) {
    real r;
    must_be_exact(mpfr_set_ui_2exp(r.get(), 1, e, MPFR_RNDN), "pow2");
    return r;
}
inline real add(const real& a, const real& b) {
    real r;
    must_be_exact(mpfr_add(r.get(), a.get(), b.get(), MPFR_RNDN), "add");
    return r;
}
inline real sub(const real& a, const real& b) {
    real r;
    must_be_exact(mpfr_sub(r.get(), a.get(), b.get(), MPFR_RNDN), "sub");
    return r;
}
inline real mul(const real& a, const real& b) {
    real r;
    must_be_exact(mpfr_mul(r.get(), a.get(), b.get(), MPFR_RNDN), "mul");
    return r;
}
inline real scale2(const real& a, long e) {  // a * 2^e
    real r;
    must_be_exact(mpfr_mul_2si(r.get(), a.get(), e, MPFR_RNDN), "mul_2si");
    return r;
}
inline real neg(const real& a) {
    real r;
    mpfr_neg(r.get(), a.get(), MPFR_RNDN);
    return r;
}
inline real abs(const real& a) {
    real r;
    mpfr_abs(r.get(), a.get(), MPFR_RNDN);
    return r;
}
inline real floor(const real& a) {  // exact: the precision holds every integer part needed here
    real r;
    mpfr_floor(r.get(), a.get());
    return r;
}
inline real trunc(const real& a) {
    real r;
    mpfr_trunc(r.get(), a.get());
    return r;
}
inline real nan() {
    real r;
    mpfr_set_nan(r.get());
    return r;
}
inline real inf(bool negative = false) {
    real r;
    mpfr_set_inf(r.get(), negative ? -1 : +1);
    return r;
}
// Numeric equality: +0 == -0, NaN equals nothing.
inline bool equal(const real& a, const real& b) { return mpfr_equal_p(a.get(), b.get()) != 0; }
inline bool less(const real& a, const real& b) { return mpfr_less_p(a.get(), b.get()) != 0; }
inline bool greater(const real& a, const real& b) { return mpfr_greater_p(a.get(), b.get()) != 0; }
// Whether the integer n is odd.
inline bool is_odd(const real& n) { return mpfr_integer_p(scale2(n, -1).get()) == 0; }

// ---------------------------------------------------------------------------------------------
// Float formats: constants derived from the format's definition (float_format.hpp's comments).
struct format_constants {
    int man_bits = 0;
    int bias = 0;
    int emin = 0;     // exponent of the smallest normal binade
    real max_finite;  // largest finite magnitude
    real min_normal;  // 2^emin
};

inline format_constants constants_of(const lowbit::float_format& f) {
    using lowbit::special_values;
    format_constants c;
    c.man_bits = f.man_bits;
    c.bias = f.bias == lowbit::float_format::ieee_bias ? (1 << (f.exp_bits - 1)) - 1 : f.bias;
    c.emin = (f.has_zero ? 1 : 0) - c.bias;
    c.min_normal = pow2(c.emin);
    const int top_field = (1 << f.exp_bits) - 1;
    const int lowest_normal_field = f.has_zero ? 1 : 0;
    const int M = f.man_bits;
    // Largest finite = (largest mantissa integer) * 2^(field - bias - M).
    int field = 0;
    real mantissa;  // integer significand incl. the implicit bit
    switch (f.specials) {
        case special_values::ieee:  // top field: inf / NaN
            field = top_field - 1;
            mantissa = sub(pow2(M + 1), real(1));
            break;
        case special_values::fn:  // top field normal except its all-ones mantissa (NaN)
            if (M >= 1) {
                field = top_field;
                mantissa = sub(pow2(M + 1), real(2));
            } else {
                field = top_field - 1;
                mantissa = real(1);
            }
            break;
        case special_values::none:
        case special_values::fnuz:  // every field finite (NaN is the -0 code)
            field = top_field;
            mantissa = sub(pow2(M + 1), real(1));
            break;
    }
    if (field >= lowest_normal_field)
        c.max_finite = scale2(mantissa, field - c.bias - M);
    else  // no normal binade: the largest subnormal (2^M - 1) * 2^(emin - M)
        c.max_finite = scale2(sub(pow2(M), real(1)), c.emin - M);
    return c;
}

// x rounded to a float quantizer's format by the rules of rounding_plan.hpp (exact x: infinite
// precision). `random`: the 32 random bits of this rounding (stochastic only). Sets `overflowed`
// when the unbounded rounded magnitude exceeds the largest finite value (x = +-inf included).
inline real round_float(const real& x_in, const lowbit::float_quantizer& q, std::uint32_t random,
                        bool& overflowed) {
    using lowbit::rounding;
    using lowbit::special_values;
    overflowed = false;
    const lowbit::float_format& f = q.format;
    const format_constants c = constants_of(f);
    if (x_in.is_nan()) return nan();
    real x = x_in;
    if (!f.is_signed && x.negative()) x = real(0);  // unsigned formats: a negative x rounds like 0
    const bool negative = x.negative();

    const bool saturates = q.on_overflow == lowbit::overflow::saturate || f.specials == special_values::none;
    // What an overflow that rounds away from zero becomes (magnitude; NaN for fn formats).
    const real overflow_away = saturates ? c.max_finite : f.specials == special_values::ieee ? inf() : nan();

    real magnitude;
    if (x.is_inf()) {
        overflowed = true;
        magnitude = overflow_away;  // in every mode
    } else if (x.is_zero()) {
        magnitude = real(0);
    } else {
        // The grid at |x|: spacing 2^s, s = max(floor(log2|x|), emin) - man_bits, unbounded above.
        const real ax = abs(x);
        const long s = std::max(x.floor_log2(), long(c.emin)) - c.man_bits;
        const real units = scale2(ax, -s);      // |x| / spacing
        const real lo = floor(units);           // the lower neighbour, in units
        const real frac = sub(units, lo);       // in [0, 1)
        bool up = false;
        if (!frac.is_zero()) {
            // Ties to even and round to odd look at the last bit of the kept significand: the
            // parity of the lower neighbour in units of the grid spacing (rounding_plan.hpp; for
            // man_bits = 0 every non-zero value is 1 unit, odd: ties go up, odd truncates).
            const bool lo_odd = is_odd(lo);
            const int half = mpfr_cmp_d(frac.get(), 0.5);
            switch (q.mode) {
                case rounding::nearest_even: up = half > 0 || (half == 0 && lo_odd); break;
                case rounding::nearest_away: up = half >= 0; break;
                case rounding::toward_zero: up = false; break;
                case rounding::toward_positive: up = !negative; break;
                case rounding::toward_negative: up = negative; break;
                case rounding::odd: up = !lo_odd; break;
                case rounding::stochastic: {
                    // up iff floor(frac * 2^R) + u >= 2^R, u = random & (2^R - 1)
                    const int R = q.random_bits;
                    const std::uint64_t scale = std::uint64_t(1) << R;
                    const std::uint64_t u = std::uint64_t(random) & (scale - 1);
                    const real top = floor(scale2(frac, R));
                    const std::uint64_t kept = std::uint64_t(mpfr_get_d(top.get(), MPFR_RNDN));  // < 2^32
                    up = kept + u >= scale;
                    break;
                }
            }
        }
        magnitude = scale2(up ? add(lo, real(1)) : lo, s);
        if (greater(magnitude, c.max_finite)) {
            overflowed = true;
            bool away = true;
            switch (q.mode) {
                case rounding::toward_zero:
                case rounding::odd: away = false; break;
                case rounding::toward_positive: away = !negative; break;
                case rounding::toward_negative: away = negative; break;
                default: away = true; break;
            }
            // overflow::infinity_always (modes.hpp): as rounding away from zero in every mode but odd.
            if (q.on_overflow == lowbit::overflow::infinity_always && q.mode != rounding::odd) away = true;
            magnitude = away ? overflow_away : c.max_finite;
        }
    }
    // No subnormals: a rounded magnitude below the smallest normal flushes (to zero, or to the
    // smallest normal for formats without zero).
    if (!f.subnormals && !magnitude.is_nan() && less(magnitude, c.min_normal))
        magnitude = f.has_zero ? real(0) : c.min_normal;
    if (magnitude.is_nan()) return magnitude;
    // fnuz formats have no -0: a zero result is +0.
    if (f.specials == special_values::fnuz && magnitude.is_zero()) return real(0);
    return (negative && f.is_signed) ? neg(magnitude) : magnitude;
}

// x rounded by an integer quantizer (int_quantizer.hpp): n = round(x * 2^fraction_bits) on the
// magnitude, then wrapped modulo 2^bits into range or saturated; value n * 2^-fraction_bits.
// Sets `overflowed` when the rounded n is outside the range (x = +-inf included).
inline real round_int(const real& x, const lowbit::int_quantizer& q, std::uint32_t random, bool& overflowed) {
    using lowbit::rounding;
    overflowed = false;
    if (x.is_nan()) return nan();
    const int bits = q.format.bits;
    const real lo = q.format.is_signed ? neg(pow2(bits - 1)) : real(0);
    const real hi = q.format.is_signed ? sub(pow2(bits - 1), real(1)) : sub(pow2(bits), real(1));
    if (x.is_inf()) {
        overflowed = true;
        return scale2(x.negative() ? lo : hi, -q.fraction_bits);
    }
    const real scaled = scale2(x, q.fraction_bits);
    const real magnitude = abs(scaled);
    const real down = floor(magnitude);
    const real frac = sub(magnitude, down);
    real n = scaled;
    if (!frac.is_zero()) {
        const bool negative = scaled.negative();
        const bool odd_down = is_odd(down);
        const int half = mpfr_cmp_d(frac.get(), 0.5);
        bool up = false;
        switch (q.mode) {
            case rounding::nearest_even: up = half > 0 || (half == 0 && odd_down); break;
            case rounding::nearest_away: up = half >= 0; break;
            case rounding::toward_zero: up = false; break;
            case rounding::toward_positive: up = !negative; break;
            case rounding::toward_negative: up = negative; break;
            case rounding::odd: up = !odd_down; break;
            case rounding::stochastic: {
                const int R = q.random_bits;
                const std::uint64_t scale = std::uint64_t(1) << R;
                const std::uint64_t u = std::uint64_t(random) & (scale - 1);
                const real top = floor(scale2(frac, R));
                const std::uint64_t kept = std::uint64_t(mpfr_get_d(top.get(), MPFR_RNDN));
                up = kept + u >= scale;
                break;
            }
        }
        const real m = up ? add(down, real(1)) : down;
        n = negative ? neg(m) : m;  // copysign: a negative x rounded to 0 is -0
    }
    if (less(n, lo) || greater(n, hi)) {
        overflowed = true;
        if (q.on_overflow == lowbit::int_overflow::saturate) {
            n = less(n, lo) ? lo : hi;
        } else {
            // wrap: lo + ((n - lo) mod 2^bits)
            const real span = pow2(bits);
            const real r = sub(n, lo);
            const real k = floor(scale2(r, -bits));
            n = add(lo, sub(r, mul(k, span)));
        }
    }
    return scale2(n, -q.fraction_bits);
}

// One rounding step of the datapath: `role` and `index` pick the random bits (gemm_spec.hpp).
inline real quantize(const lowbit::quantizer& q, const real& x, lowbit::gemm_role role, std::uint64_t index,
                     bool& overflowed) {
    overflowed = false;
    if (const auto* fq = q.as_float()) {
        const std::uint32_t random = fq->mode == lowbit::rounding::stochastic
                                         ? lowbit::random_bits_at(lowbit::gemm_random_key(fq->seed, role), index)
                                         : 0u;
        return round_float(x, *fq, random, overflowed);
    }
    if (const auto* iq = q.as_int()) {
        const std::uint32_t random = iq->mode == lowbit::rounding::stochastic
                                         ? lowbit::random_bits_at(lowbit::gemm_random_key(iq->seed, role), index)
                                         : 0u;
        const real r = round_int(x, *iq, random, overflowed);
        // "an integer product, accumulator or chunk accumulator that is zero is +0 (a register
        // has no -0)"
        const bool register_role = role == lowbit::gemm_role::product || role == lowbit::gemm_role::accumulator ||
                                   role == lowbit::gemm_role::chunk_accumulator;
        return (register_role && r.is_zero()) ? real(0.0) : r;
    }
    return x;  // exact
}

// ---------------------------------------------------------------------------------------------
// One output C(i, j): its operands, products and event counters.
struct lane {
    bool* nonfinite = nullptr;  // set when any value of the computation is +-inf or NaN
    void note(const real& v) {
        if (v.is_nan() || v.is_inf()) *nonfinite = true;
    }
    const lowbit::gemm_spec& spec;
    std::uint64_t out = 0;     // i * N + j
    std::uint64_t K = 0;
    std::vector<real> exact;   // a_k * b_k, exact
    std::vector<real> p;       // Q_prod(a_k * b_k)
    lowbit::gemm_stats& st;
    std::uint8_t* lost = nullptr;  // K flags of this output, or nullptr
    // The operands a_k, b_k (after the input quantizers): read by the aligned model with align =
    // operands and by two_level (empty for callers that give terms only).
    std::vector<real> a_op{};
    std::vector<real> b_op{};

    void mark_lost(std::uint64_t k) {
        if (lost != nullptr) lost[k] = 1;
    }

    // Q_acc (or the chunk accumulator) applied to the exact sum s, with its events.
    real round_sum(const lowbit::quantizer& q, lowbit::gemm_role role, const real& s, std::uint64_t index) {
        bool overflowed = false;
        real r = quantize(q, s, role, index, overflowed);
        note(s);
        note(r);
        if (overflowed) ++st.accumulator_overflows;
        const bool both_nan = r.is_nan() && s.is_nan();
        if (!both_nan && !equal(r, s)) ++st.inexact_additions;
        return r;
    }
    real acc_round(const real& s, std::uint64_t index) {
        return round_sum(spec.accumulator, lowbit::gemm_role::accumulator, s, index);
    }
};

// sequential: acc = Q_acc(acc + p_k), k ascending; a swamp when p_k != 0 and the result is acc.
// acc0: the value the chain starts from (+0; the addend in gemm_add's first chunk).
inline real chunk_sequential(lane& L, std::uint64_t start, std::uint64_t n, const real& acc0 = real(0.0)) {
    real acc = acc0;
    for (std::uint64_t k = start; k < start + n; ++k) {
        const real r = L.acc_round(add(acc, L.p[k]), L.out * L.K + k);
        if (!L.p[k].is_zero() && equal(r, acc)) {
            ++L.st.swamps;
            L.mark_lost(k);
        }
        acc = r;
    }
    return acc;
}

// fma: acc = Q_acc(a_k * b_k + acc), one rounding of the exact value; no Q_prod.
inline real chunk_fma(lane& L, std::uint64_t start, std::uint64_t n, const real& acc0 = real(0.0)) {
    real acc = acc0;
    for (std::uint64_t k = start; k < start + n; ++k) {
        const real r = L.acc_round(add(acc, L.exact[k]), L.out * L.K + k);
        if (!L.exact[k].is_zero() && equal(r, acc)) {
            ++L.st.swamps;
            L.mark_lost(k);
        }
        acc = r;
    }
    return acc;
}

// pairwise: a tree of width 2^ceil(log2 n), heap-numbered (root 1, children 2h, 2h+1, leaves
// width + t), padded with zeros; each node is Q_acc(left + right).
inline real chunk_pairwise(lane& L, std::uint64_t start, std::uint64_t n) {
    if (n == 0) return real(0.0);  // an empty chunk (K = 0) is reduced from +0
    std::uint64_t width = 1;
    while (width < n) width *= 2;
    if (width == 1) return L.p[start];  // a chunk of one product is that product
    std::vector<real> node(2 * width);
    for (std::uint64_t t = 0; t < width; ++t) node[width + t] = t < n ? L.p[start + t] : real(0.0);
    for (std::uint64_t h = width - 1; h >= 1; --h) {
        const real& x = node[2 * h];
        const real& y = node[2 * h + 1];
        const real r = L.acc_round(add(x, y), L.out * 2 * L.K + 2 * start + h);
        const bool y_lost = !y.is_zero() && equal(r, x);
        const bool x_lost = !x.is_zero() && equal(r, y);
        if (x_lost || y_lost) ++L.st.swamps;
        if (2 * h >= width) {  // a leaf addition: its products
            const std::uint64_t tx = 2 * h - width, ty = 2 * h + 1 - width;
            if (x_lost && tx < n) L.mark_lost(start + tx);
            if (y_lost && ty < n) L.mark_lost(start + ty);
        }
        node[h] = r;
    }
    return node[1];
}

// fused: Q_acc(exact sum of the chunk's p_k), reduced from 0 (from acc0: a chain's addend when
// an exact accumulator made the chain a fused one).
inline real chunk_fused(lane& L, std::uint64_t start, std::uint64_t n, const real& acc0 = real(0.0)) {
    real s = acc0;
    for (std::uint64_t k = start; k < start + n; ++k) s = add(s, L.p[k]);
    return L.acc_round(s, L.out * L.K + start);
}

// ---------------------------------------------------------------------------------------------
// Exponents of the aligned and two_level models (gemm_spec.hpp's top comment). std::nullopt: the
// term does not take part in the largest exponent (and is not cut).
using exponent = std::optional<long>;

inline exponent max_exponent(const exponent& a, const exponent& b) {
    if (!a) return b;
    if (!b) return a;
    return std::max(*a, *b);
}

// The smallest normal exponent of the format an operand is read in: input_a's / input_b's float
// format, fp32's when that quantizer is unset or an integer one.
inline long operand_emin(const lowbit::quantizer& q) {
    if (const auto* f = q.as_float()) return constants_of(f->format).emin;
    return constants_of(lowbit::fp32).emin;
}

struct exponent_reader {
    const lowbit::gemm_spec& spec;
    bool min_normal = false;
    long emin_a = 0, emin_b = 0;
    bool acc_has_format = false;  // a float accumulator (its subnormals can be read at emin)
    long emin_acc = 0;

    explicit exponent_reader(const lowbit::gemm_spec& s)
        : spec(s), min_normal(s.subnormals == lowbit::subnormal_exponent::min_normal) {
        emin_a = operand_emin(s.input_a);
        emin_b = operand_emin(s.input_b);
        if (const auto* f = s.accumulator.as_float()) {
            acc_has_format = true;
            emin_acc = constants_of(f->format).emin;
        }
    }
    exponent zero() const { return spec.zero_exponent ? exponent(long(*spec.zero_exponent)) : std::nullopt; }
    // floor(log2 |x|), or emin for a value below 2^emin under subnormal_exponent = min_normal.
    exponent own_or_min_normal(const real& x, bool has_format, long emin) const {
        if (!x.is_finite_nonzero()) return std::nullopt;
        const long e = x.floor_log2();
        return (min_normal && has_format && e < emin) ? emin : e;
    }
    // The running accumulator (the addend a chain starts from included: a value of the
    // accumulator's format).
    exponent acc(const real& x) const {
        if (x.is_zero()) return zero();
        return own_or_min_normal(x, acc_has_format, emin_acc);
    }
    // Product k on its operands' exponents e(a_k) + e(b_k).
    exponent operands(const lane& L, std::uint64_t k) const {
        if (L.a_op.empty() || L.b_op.empty())
            throw std::logic_error("gemm_reference: align = operands / two_level need the lane's operands");
        const real& p = L.exact[k];
        if (p.is_zero()) return zero();
        if (!p.is_finite_nonzero()) return std::nullopt;
        return *own_or_min_normal(L.a_op[k], true, emin_a) + *own_or_min_normal(L.b_op[k], true, emin_b);
    }
    // Product k of the aligned model, by spec.align.
    exponent product(const lane& L, std::uint64_t k) const {
        if (spec.align == lowbit::alignment_exponent::operands) return operands(L, k);
        const real& p = L.p[k];
        if (p.is_zero()) return zero();
        if (!p.is_finite_nonzero()) return std::nullopt;
        return p.floor_log2();
    }
};

// t cut to a multiple of 2^unit: toward zero (trunc) or toward minus infinity (floor); zeros and
// non-finite values pass (a value cut to 0 keeps its sign).
inline real cut_to(const real& t, long unit, bool toward_zero) {
    if (!t.is_finite_nonzero()) return t;
    const real units = scale2(t, -unit);
    return scale2(toward_zero ? trunc(units) : floor(units), unit);
}

// aligned: the acc and the next `group` products aligned to their largest exponent E, each cut to
// a multiple of 2^(E - window), summed exactly, then acc = Q_acc(sum).
inline real chunk_aligned(lane& L, std::uint64_t start, std::uint64_t n, const real& acc0 = real(0.0)) {
    const std::uint64_t group = std::uint64_t(L.spec.group);
    const exponent_reader R(L.spec);
    const bool toward_zero = L.spec.cut == lowbit::alignment_cut::toward_zero;
    real acc = acc0;
    for (std::uint64_t g = start; g < start + n; g += group) {
        const std::uint64_t last = std::min(g + group, start + n) - 1;
        exponent E = R.acc(acc);
        for (std::uint64_t k = g; k <= last; ++k) E = max_exponent(E, R.product(L, k));
        const auto cut = [&](const real& t) { return E ? cut_to(t, *E - L.spec.window, toward_zero) : t; };
        real sum = cut(acc);
        for (std::uint64_t k = g; k <= last; ++k) {
            const real t = cut(L.p[k]);
            if (!L.p[k].is_zero() && t.is_zero()) {
                ++L.st.swamps;
                L.mark_lost(k);
            }
            sum = add(sum, t);
        }
        if (L.spec.zero_exponent && sum.is_zero()) sum = real(0.0);  // a fixed-point sum: +0
        acc = L.acc_round(sum, L.out * L.K + last);
    }
    return acc;
}

// two_level (AMD CDNA3's fused dot), the top comment's paragraph step by step; see the
// conventions at the top of this file.
inline real chunk_two_level(lane& L, std::uint64_t start, std::uint64_t n, const real& acc0 = real(0.0)) {
    const lowbit::gemm_spec& S = L.spec;
    const std::uint64_t group = std::uint64_t(S.group);
    const std::uint64_t D = std::uint64_t(S.sub_dots);
    const bool several = D > 1;
    const exponent_reader R(S);
    const long window = S.window, sum_window = S.sum_window;
    const real limit = pow2(128);
    const auto zero_sum_rule = [&](real& x) {
        if (S.zero_exponent && x.is_zero()) x = real(0.0);
    };
    real acc = acc0;
    for (std::uint64_t g = start; g < start + n; g += group) {
        const std::uint64_t last = std::min(g + group, start + n) - 1;
        const std::uint64_t index = L.out * L.K + last;
        // An infinite or NaN product or acc: the IEEE sum of acc and the group's products.
        bool special = !acc.is_finite_nonzero() && !acc.is_zero();
        for (std::uint64_t k = g; k <= last; ++k) special = special || (!L.exact[k].is_finite_nonzero() && !L.exact[k].is_zero());
        if (special) {
            real r = acc;
            for (std::uint64_t k = g; k <= last; ++k) r = add(r, L.exact[k]);
            acc = L.acc_round(r, index);
            continue;
        }
        // Otherwise products that the unit cannot hold: magnitude >= 2^128.
        bool huge_positive = false, huge_negative = false;
        for (std::uint64_t k = g; k <= last; ++k) {
            const real& p = L.exact[k];
            if (!less(abs(p), limit)) (p.negative() ? huge_negative : huge_positive) = true;
        }
        if (huge_positive || huge_negative) {
            const real r = (huge_positive && huge_negative) ? nan() : inf(huge_negative);
            acc = L.acc_round(r, index);
            continue;
        }
        // Level 1: the sub-dots (product k in sub-dot k mod D), each cut toward zero to `window`
        // bits below its largest exponent and summed exactly.
        std::vector<real> sub_sum;
        std::vector<exponent> sub_exp;
        for (std::uint64_t s = 0; s < D; ++s) {
            std::vector<std::uint64_t> members;
            for (std::uint64_t k = g; k <= last; ++k)
                if (k % D == s) members.push_back(k);
            if (members.empty()) continue;
            exponent Es;
            for (const std::uint64_t k : members) Es = max_exponent(Es, R.operands(L, k));
            real sum;
            bool first = true;
            for (const std::uint64_t k : members) {
                const real t = Es ? cut_to(L.exact[k], *Es - window, true) : L.exact[k];
                if (!L.exact[k].is_zero() && t.is_zero()) {
                    ++L.st.swamps;
                    L.mark_lost(k);
                }
                sum = first ? t : add(sum, t);
                first = false;
            }
            zero_sum_rule(sum);
            sub_sum.push_back(sum);
            sub_exp.push_back(Es);
        }
        // The products' sum P and its exponent E_p.
        real P;
        exponent Ep;
        if (!several) {
            P = sub_sum[0];
            Ep = sub_exp[0];
        } else {
            for (const exponent& e : sub_exp) Ep = max_exponent(Ep, e);
            bool first = true;
            for (const real& x : sub_sum) {
                const real t = Ep ? cut_to(x, *Ep - window, false) : x;
                P = first ? t : add(P, t);
                first = false;
            }
            zero_sum_rule(P);
        }
        // Level 2: E = max(E_p, e(acc)); P cut toward minus infinity to sum_window bits below E,
        // acc to window bits below E (several sub-dots: dropped when e(acc) < E - window - 1).
        const exponent e_acc = R.acc(acc);
        const exponent E = max_exponent(Ep, e_acc);
        real Pc = P, ac = acc;
        if (E) {
            Pc = cut_to(P, *E - sum_window, false);
            if (several && acc.is_finite_nonzero() && e_acc && *e_acc < *E - window - 1)
                ac = real(0.0);
            else
                ac = cut_to(acc, *E - window, false);
        }
        real sum = add(Pc, ac);
        zero_sum_rule(sum);
        acc = L.acc_round(sum, index);
    }
    return acc;
}

// The final conversion: nearest even to float, IEEE overflow to infinity.
inline float to_float(const real& total) {
    if (total.is_nan()) return std::numeric_limits<float>::quiet_NaN();
    bool overflowed = false;
    const real r = round_float(total, lowbit::float_quantizer{.format = lowbit::fp32}, 0u, overflowed);
    // r is a float value (or +-inf): exact in double, then exact in float.
    const double d = mpfr_get_d(r.get(), MPFR_RNDN);
    return float(d);
}

}  // namespace gemm_ref

// What the reference noticed on the way.
struct reference_notes {
    // Some value of the computation (an input after its quantizer, a product, a sum, a rounding)
    // was +-inf or NaN: gemm_stats.hpp does not say how such values count (is rounding an
    // infinite sum an overflow? is NaN -> NaN an inexact addition?), so tests compare only the
    // results of such products, not their events.
    bool nonfinite = false;
};

// D = A B (+ C when `addend` is given: gemm_add) under `spec`, exactly as gemm_spec.hpp documents
// it. `stats` (if given) is overwritten with this product's events; spec.record_lost fills
// stats->lost.
inline Eigen::MatrixXf reference_gemm_into(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B,
                                           const Eigen::MatrixXf* addend, const lowbit::gemm_spec& spec,
                                           lowbit::gemm_stats* stats, reference_notes* notes) {
    using namespace gemm_ref;
    spec.validate();
    if (A.cols() != B.rows())
        throw std::invalid_argument("reference_gemm: shape: A is " + std::to_string(A.rows()) + " x " +
                                    std::to_string(A.cols()) + ", B is " + std::to_string(B.rows()) + " x " +
                                    std::to_string(B.cols()) + " (K differs)");
    if (addend != nullptr && (addend->rows() != A.rows() || addend->cols() != B.cols()))
        throw std::invalid_argument("reference_gemm: shape: C is " + std::to_string(addend->rows()) + " x " +
                                    std::to_string(addend->cols()) + ", A B is " + std::to_string(A.rows()) + " x " +
                                    std::to_string(B.cols()));
    const std::uint64_t M = std::uint64_t(A.rows()), K = std::uint64_t(A.cols()), N = std::uint64_t(B.cols());
    lowbit::gemm_stats st;
    st.macs = M * N * K;
    if (spec.record_lost) st.lost.assign(M * N * K, 0);

    // Input quantizers: A(i, k) with index i*K + k, B(k, j) with index k*N + j.
    std::vector<real> a(M * K), b(K * N);
    bool ignored = false;
    for (std::uint64_t i = 0; i < M; ++i)
        for (std::uint64_t k = 0; k < K; ++k)
            a[i * K + k] = quantize(spec.input_a, real(double(A(Eigen::Index(i), Eigen::Index(k)))),
                                    lowbit::gemm_role::input_a, i * K + k, ignored);
    for (std::uint64_t k = 0; k < K; ++k)
        for (std::uint64_t j = 0; j < N; ++j)
            b[k * N + j] = quantize(spec.input_b, real(double(B(Eigen::Index(k), Eigen::Index(j)))),
                                    lowbit::gemm_role::input_b, k * N + j, ignored);
    // The addend: C(i, j) (a float) rounded by spec.addend, index i*N + j.
    std::vector<real> c;
    if (addend != nullptr) {
        c.resize(M * N);
        for (std::uint64_t i = 0; i < M; ++i)
            for (std::uint64_t j = 0; j < N; ++j)
                c[i * N + j] = quantize(spec.addend, real(double((*addend)(Eigen::Index(i), Eigen::Index(j)))),
                                        lowbit::gemm_role::addend, i * N + j, ignored);
    }

    bool nonfinite = false;
    for (const real& v : a)
        if (v.is_nan() || v.is_inf()) nonfinite = true;
    for (const real& v : b)
        if (v.is_nan() || v.is_inf()) nonfinite = true;
    for (const real& v : c)
        if (v.is_nan() || v.is_inf()) nonfinite = true;

    const std::uint64_t chunk = spec.chunk == 0 ? std::max<std::uint64_t>(K, 1) : std::uint64_t(spec.chunk);
    // K = 0: one empty chunk (see the conventions at the top).
    const std::uint64_t chunks = std::max<std::uint64_t>((K + chunk - 1) / chunk, 1);
    const bool needs_operands =
        spec.model == lowbit::accumulation::two_level || spec.align == lowbit::alignment_exponent::operands;
    // Where the addend enters: the first chunk's running accumulator of a chain, or the chunk
    // accumulator's running total for pairwise and fused (no running accumulator).
    const bool chain = spec.model == lowbit::accumulation::sequential || spec.model == lowbit::accumulation::fma ||
                       spec.model == lowbit::accumulation::aligned || spec.model == lowbit::accumulation::two_level;

    Eigen::MatrixXf C(static_cast<Eigen::Index>(M), static_cast<Eigen::Index>(N));
    for (std::uint64_t i = 0; i < M; ++i) {
        for (std::uint64_t j = 0; j < N; ++j) {
            lane L{&nonfinite, spec, i * N + j, K, std::vector<real>(K), std::vector<real>(K), st,
                   spec.record_lost ? st.lost.data() + (i * N + j) * K : nullptr};
            if (needs_operands) {
                L.a_op.resize(K);
                L.b_op.resize(K);
                for (std::uint64_t k = 0; k < K; ++k) {
                    L.a_op[k] = a[i * K + k];
                    L.b_op[k] = b[k * N + j];
                }
            }
            for (std::uint64_t k = 0; k < K; ++k) {
                const real& ak = a[i * K + k];
                const real& bk = b[k * N + j];
                if (ak.is_zero() || bk.is_zero()) ++st.zero_operand;
                L.exact[k] = mul(ak, bk);
                L.note(L.exact[k]);
                if (spec.model == lowbit::accumulation::fma) continue;  // fma: no Q_prod
                bool overflowed = false;
                L.p[k] = quantize(spec.product, L.exact[k], lowbit::gemm_role::product, L.out * K + k, overflowed);
                L.note(L.p[k]);
                if (overflowed) ++st.product_overflows;
                if (!L.exact[k].is_zero() && !L.exact[k].is_nan() && L.p[k].is_zero()) {
                    ++st.product_underflows;
                    L.mark_lost(k);
                }
            }
            // The chunk accumulator's total starts from -0 (the identity of IEEE addition), or
            // from the addend for pairwise and fused.
            const real start_value = addend != nullptr ? c[i * N + j] : real(0.0);
            real total = (!chain && addend != nullptr) ? start_value : neg(real(0.0));
            for (std::uint64_t ch = 0; ch < chunks; ++ch) {
                const std::uint64_t start = ch * chunk;
                const std::uint64_t n = std::min(chunk, K - start);
                const real acc0 = (chain && ch == 0) ? start_value : real(0.0);
                // "An unset quantizer is exact: ... (an unset accumulator makes every model a fused
                // one)": with an exact accumulator the chunk is the exact sum of its terms (the
                // products p_k; for fma, which has no Q_prod, the exact a_k * b_k).
                lowbit::accumulation model = spec.model;
                if (spec.accumulator.is_exact() && model != lowbit::accumulation::fma) model = lowbit::accumulation::fused;
                real r;
                switch (model) {
                    case lowbit::accumulation::sequential: r = chunk_sequential(L, start, n, acc0); break;
                    case lowbit::accumulation::fma: r = chunk_fma(L, start, n, acc0); break;
                    case lowbit::accumulation::pairwise: r = chunk_pairwise(L, start, n); break;
                    case lowbit::accumulation::fused: r = chunk_fused(L, start, n, acc0); break;
                    case lowbit::accumulation::aligned: r = chunk_aligned(L, start, n, acc0); break;
                    case lowbit::accumulation::two_level: r = chunk_two_level(L, start, n, acc0); break;
                }
                // total = chunk_accumulator(total + r_c)
                const real t = L.round_sum(spec.chunk_accumulator, lowbit::gemm_role::chunk_accumulator,
                                           add(total, r), L.out * chunks + ch);
                if (!r.is_zero() && equal(t, total)) ++st.swamps;
                total = t;
            }
            L.note(total);
            C(Eigen::Index(i), Eigen::Index(j)) = to_float(total);
        }
    }
    if (stats != nullptr) *stats = std::move(st);
    if (notes != nullptr) notes->nonfinite = nonfinite;
    return C;
}

// C = A B under `spec` (lowbit::gemm).
inline Eigen::MatrixXf reference_gemm(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, const lowbit::gemm_spec& spec,
                                      lowbit::gemm_stats* stats = nullptr, reference_notes* notes = nullptr) {
    return reference_gemm_into(A, B, nullptr, spec, stats, notes);
}

// D = A B + C under `spec` (lowbit::gemm_add): C(i, j) rounded by spec.addend starts the
// accumulation where gemm_spec.hpp's top comment says.
inline Eigen::MatrixXf reference_gemm_add(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, const Eigen::MatrixXf& C,
                                          const lowbit::gemm_spec& spec, lowbit::gemm_stats* stats = nullptr,
                                          reference_notes* notes = nullptr) {
    return reference_gemm_into(A, B, &C, spec, stats, notes);
}

}  // namespace lowbit_test
