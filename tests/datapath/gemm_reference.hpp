// tests/datapath/gemm_reference.hpp: a slow, obviously-correct reference for lowbit::gemm.
//
// Written from the documented semantics alone (the top comment of lowbit/datapath/gemm_spec.hpp,
// the event definitions of gemm_stats.hpp, the rounding rules of rounding_plan.hpp and
// int_quantizer.hpp), never from lowbit's kernels. Every value is a GNU MPFR number of
// `ref_precision` bits, so that products of floats and all their sums are exact; every rounding of
// the datapath is done here, on those exact values, one documented rule per line.
//
// Conventions chosen where the documentation leaves room (see also the test file):
//  * "reduced from 0" / "accumulated from 0" start from +0 and add with IEEE 754 zero-sign rules
//    (exact x + (-x) = +0, +0 + -0 = +0, -0 + -0 = -0): MPFR's round-to-nearest addition.
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
        return round_int(x, *iq, random, overflowed);
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
inline real chunk_sequential(lane& L, std::uint64_t start, std::uint64_t n) {
    real acc(0.0);
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
inline real chunk_fma(lane& L, std::uint64_t start, std::uint64_t n) {
    real acc(0.0);
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

// fused: Q_acc(exact sum of the chunk's p_k), reduced from 0.
inline real chunk_fused(lane& L, std::uint64_t start, std::uint64_t n) {
    real s(0.0);
    for (std::uint64_t k = start; k < start + n; ++k) s = add(s, L.p[k]);
    return L.acc_round(s, L.out * L.K + start);
}

// aligned: the acc and the next `group` products aligned to their largest exponent E, each cut to
// a multiple of 2^(E - window), summed exactly, then acc = Q_acc(sum).
inline real chunk_aligned(lane& L, std::uint64_t start, std::uint64_t n) {
    const std::uint64_t group = std::uint64_t(L.spec.group);
    real acc(0.0);
    for (std::uint64_t g = start; g < start + n; g += group) {
        const std::uint64_t last = std::min(g + group, start + n) - 1;
        // E over the non-zero finite terms (acc included).
        bool any = false;
        long E = 0;
        const auto consider = [&](const real& t) {
            if (!t.is_finite_nonzero()) return;
            E = any ? std::max(E, t.floor_log2()) : t.floor_log2();
            any = true;
        };
        consider(acc);
        for (std::uint64_t k = g; k <= last; ++k) consider(L.p[k]);
        const long unit = E - L.spec.window;  // terms become multiples of 2^unit
        const auto cut = [&](const real& t) {
            if (!any || !t.is_finite_nonzero()) return t;
            const real units = scale2(t, -unit);
            const real kept = L.spec.cut == lowbit::alignment_cut::toward_zero ? trunc(units) : floor(units);
            return scale2(kept, unit);
        };
        real sum = cut(acc);
        for (std::uint64_t k = g; k <= last; ++k) {
            const real t = cut(L.p[k]);
            if (!L.p[k].is_zero() && t.is_zero()) {
                ++L.st.swamps;
                L.mark_lost(k);
            }
            sum = add(sum, t);
        }
        acc = L.acc_round(sum, L.out * L.K + last);
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

// C = A B under `spec`, exactly as gemm_spec.hpp documents it. `stats` (if given) is overwritten
// with this product's events; spec.record_lost fills stats->lost.
inline Eigen::MatrixXf reference_gemm(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, const lowbit::gemm_spec& spec,
                                      lowbit::gemm_stats* stats = nullptr, reference_notes* notes = nullptr) {
    using namespace gemm_ref;
    spec.validate();
    if (A.cols() != B.rows())
        throw std::invalid_argument("reference_gemm: shape: A is " + std::to_string(A.rows()) + " x " +
                                    std::to_string(A.cols()) + ", B is " + std::to_string(B.rows()) + " x " +
                                    std::to_string(B.cols()) + " (K differs)");
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

    bool nonfinite = false;
    for (const real& v : a)
        if (v.is_nan() || v.is_inf()) nonfinite = true;
    for (const real& v : b)
        if (v.is_nan() || v.is_inf()) nonfinite = true;

    const std::uint64_t chunk = spec.chunk == 0 ? std::max<std::uint64_t>(K, 1) : std::uint64_t(spec.chunk);
    const std::uint64_t chunks = (K + chunk - 1) / chunk;

    Eigen::MatrixXf C(static_cast<Eigen::Index>(M), static_cast<Eigen::Index>(N));
    for (std::uint64_t i = 0; i < M; ++i) {
        for (std::uint64_t j = 0; j < N; ++j) {
            lane L{&nonfinite, spec, i * N + j, K, std::vector<real>(K), std::vector<real>(K), st,
                   spec.record_lost ? st.lost.data() + (i * N + j) * K : nullptr};
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
            real total(0.0);
            for (std::uint64_t c = 0; c < chunks; ++c) {
                const std::uint64_t start = c * chunk;
                const std::uint64_t n = std::min(chunk, K - start);
                // "An unset quantizer is exact: ... (an unset accumulator makes every model a fused
                // one)": with an exact accumulator the chunk is the exact sum of its terms (the
                // products p_k; for fma, which has no Q_prod, the exact a_k * b_k).
                lowbit::accumulation model = spec.model;
                if (spec.accumulator.is_exact() && model != lowbit::accumulation::fma) model = lowbit::accumulation::fused;
                real r;
                switch (model) {
                    case lowbit::accumulation::sequential: r = chunk_sequential(L, start, n); break;
                    case lowbit::accumulation::fma: r = chunk_fma(L, start, n); break;
                    case lowbit::accumulation::pairwise: r = chunk_pairwise(L, start, n); break;
                    case lowbit::accumulation::fused: r = chunk_fused(L, start, n); break;
                    case lowbit::accumulation::aligned: r = chunk_aligned(L, start, n); break;
                }
                // total = chunk_accumulator(total + r_c)
                const real t = L.round_sum(spec.chunk_accumulator, lowbit::gemm_role::chunk_accumulator,
                                           add(total, r), L.out * chunks + c);
                if (!r.is_zero() && equal(t, total)) ++st.swamps;
                total = t;
            }
            C(Eigen::Index(i), Eigen::Index(j)) = to_float(total);
        }
    }
    if (stats != nullptr) *stats = std::move(st);
    if (notes != nullptr) notes->nonfinite = nonfinite;
    return C;
}

}  // namespace lowbit_test
