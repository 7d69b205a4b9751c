// lowbit/datapath/block_scaled_core.hpp: the kernels under lowbit::block_scaled_gemm
// (block_scaled_gemm.hpp, which defines what they compute and includes this header in header-only
// use; under LOWBIT_COMPILED_LIB they are compiled once, in src/compiled.cpp).
//
// How it stays exact and fast. Both operands' elements are scanned once: all lie on the grid of
// their element format (multiples of its smallest step q; checked, and otherwise the finest
// step present is used) with |x| < 2^b q. A block dot product is then an integer multiple of
// qA qB below 2^(bA + bB + ceil(log2 V)), so if that is at most 2^24 (2^53) every partial sum in
// any order is exact in float (double): the block dots of 4 rows x 32 columns are computed
// together, vectorized, in float or double. With the data's largest possible values:
//
//   preset         bits of a block dot   computed in
//   mxfp4          4 + 4 + 5 = 13        float   (and nvfp4: 4 + 4 + 4)
//   mxfp6_e2m3     6 + 6 + 5 = 17        float
//   mxfp6_e3m2     9 + 9 + 5 = 23        float
//   mxint8         8 + 8 + 5 = 21        float   (and vsquant(8, M, 16): 7 + 7 + 4)
//   mxfp8_e4m3     18 + 18 + 5 = 41      double
//   mxfp8_e5m2     32 + 32 + 5 = 69      double, split: each product p = h + l with h on a grid of
//                                        2^s qA qB (rounded by adding and subtracting a constant)
//                                        and l the exact rest; the h and the l sums are each exact
//                                        in double while bA + bB + 2 ceil(log2 V) + 2 <= 108
//
// and formats wider still (bf16 elements) add their products exactly in an exact_sum. The term
// d_b s_b is a plain double product where the widest block dot and the widest scale product fit
// 53 bits together (every preset but e5m2), else it is formed by error-free products (fma) and
// kept as a double when it is one, or as an exact_sum, which exact_datapath reduces alike. Q_s,
// Q_prod, the accumulator and the chunk accumulator are each made into a rounding step once per
// row of a tile (no dispatch per element), with two shortcuts proven equal to the general steps:
// fp32 nearest_even is the hardware's float addition (or conversion of a round-to-odd double),
// and an integer step whose sum is exact in double only applies its range rule. The coarse
// product cA cB (exact) multiplies a total that is a double by a round-to-odd product
// (exact_ops.hpp), and a wider exact total by an exact integer multiplication. Threads split the
// rows; every output is computed by one thread in a fixed order, so results and counts do not
// depend on spec.threads.
#pragma once

#include <lowbit/datapath/block_scaled_gemm.hpp>
#include <lowbit/datapath/exact_datapath.hpp>
#include <lowbit/datapath/exact_sum.hpp>
#include <lowbit/datapath/fast_datapath.hpp>
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_report.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/datapath/integer_chain.hpp>
#include <lowbit/datapath/quantizer.hpp>
#include <lowbit/datapath/rounding_steps.hpp>
#include <lowbit/datapath/thread_count.hpp>
#include <lowbit/datapath/tile_pool.hpp>
#include <lowbit/rounding/exact_ops.hpp>
#include <lowbit/scaling/block_scaling.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace lowbit::detail {

// All finite elements of an operand are multiples of 2^lsb of magnitude below 2^(lsb + bits).
struct element_span {
    int lsb = 0;
    int bits = 0;
};

// The smallest step of a block format's element grid, as a power of two: a float format's
// subnormal step (values without subnormals are multiples of it too; floats hold nothing finer
// than 2^-149), an integer element's 2^-fraction_bits.
inline int grid_step_exponent(const block_format& f) {
    if (const auto* e = std::get_if<float_format>(&f.element))
        return std::max(e->emin() - e->man_bits, -149);
    return -std::get<int_element>(f.element).fraction_bits;
}

// Scans the elements once (vectorized): their largest magnitude, and whether all lie on the
// format's grid; an element off the grid (a hand-made matrix) makes a second pass find the
// finest step present.
inline element_span span_of(const block_scaled_matrix& m) {
    const std::vector<float>& x = m.elements;
    const int step = grid_step_exponent(m.format);
    const double inverse_step = std::ldexp(1.0, -step);
    float amax = 0;
    int off_grid = 0;
    for (std::size_t t = 0; t < x.size(); ++t) {
        const float v = std::isfinite(x[t]) ? x[t] : 0.0f;  // NaN elements carry nothing to bound
        amax = std::max(amax, std::fabs(v));
        const double units = double(v) * inverse_step;    // exact: a power of two, in double's range
        off_grid |= int(units != std::trunc(units));
    }
    int lsb = step;
    if (off_grid != 0) {
        lsb = std::numeric_limits<int>::max();
        for (const float v : x)
            if (std::isfinite(v) && v != 0) {
                int e = 0;
                const double f = std::frexp(double(v), &e);  // |v| = f 2^e, 24-bit significand
                const auto s = static_cast<std::uint64_t>(std::ldexp(std::fabs(f), 53));
                lsb = std::min(lsb, e - 53 + std::countr_zero(s));
            }
        if (lsb == std::numeric_limits<int>::max()) lsb = step;
    }
    element_span r{.lsb = lsb, .bits = 0};
    if (amax != 0) r.bits = std::ilogb(amax) - lsb + 1;  // |x| / 2^lsb < 2^bits
    return r;
}

enum class block_dot_method : std::uint8_t { in_float, in_double, split_double, exact_sum };

struct block_dot_plan {
    block_dot_method method = block_dot_method::exact_sum;
    double split_constant = 0;  // split_double: 1.5 * 2^52 * (the grid of the high parts)
    int bits = 0;               // a block dot has at most this many significant bits
    int lsb = 0;                // and is a multiple of 2^lsb (qA qB)
};

inline int ceil_log2(std::int64_t v) { return v <= 1 ? 0 : int(std::bit_width(std::uint64_t(v - 1))); }

inline block_dot_plan plan_block_dots(const element_span& a, const element_span& b, std::int64_t V) {
    const int bits = a.bits + b.bits + ceil_log2(V);  // a block dot is below 2^bits qA qB
    const int lsb = a.lsb + b.lsb;                     // qA qB = 2^lsb
    block_dot_plan plan;
    plan.bits = bits;
    plan.lsb = lsb;
    if (bits <= 24 && lsb >= -149 && lsb + bits <= 127) plan.method = block_dot_method::in_float;
    else if (bits <= 53) plan.method = block_dot_method::in_double;
    else if (a.bits + b.bits + 2 * std::max(ceil_log2(V), 2) + 2 <= 108) {
        // High parts on the grid 2^s qA qB with s = bA + bB + max(ceil log2 V, 2) - 53: each is
        // below 2^51 steps (so adding and subtracting 1.5 2^52 steps rounds exactly to it) and V
        // of them below 2^53 steps; low parts are at most half a step, V of them below 2^53 qA qB.
        const int s = a.bits + b.bits + std::max(ceil_log2(V), 2) - 53;
        plan.method = block_dot_method::split_double;
        plan.split_constant = std::ldexp(1.5, 52 + s + lsb);
    }
    return plan;
}

// The block dot products of R rows x J columns of C, for every block: hi[(r*J + c)*nb + b] (and
// for the split method lo[...] with hi + lo the exact dot). `a`: row-major rows of K, `b`:
// row-major K x stride, both converted to W exactly; every sum is exact (plan_block_dots), so
// the order and the fused multiply-adds are free to be the vector unit's.
template <class W, bool Split, int R, int J>
void block_dots_tile(const W* a, const W* b, std::int64_t K, std::int64_t stride, std::int64_t V, std::int64_t nb,
                     double split_constant, double* hi, double* lo) {
    for (std::int64_t blk = 0; blk < nb; ++blk) {
        W acc[R][J] = {};
        W acc_lo[Split ? R : 1][Split ? J : 1] = {};
        const std::int64_t k_end = std::min(K, (blk + 1) * V);
        for (std::int64_t k = blk * V; k < k_end; ++k) {
            const W* row = b + k * stride;
            for (int r = 0; r < R; ++r) {
                const W x = a[r * K + k];
                for (int c = 0; c < J; ++c) {
                    if constexpr (!Split) {
                        acc[r][c] = std::fma(x, row[c], acc[r][c]);
                    } else {
                        const W p = x * row[c];                          // exact: two 24-bit significands
                        const W h = (p + W(split_constant)) - W(split_constant);  // p to the high grid
                        acc[r][c] += h;
                        acc_lo[r][c] += p - h;
                    }
                }
            }
        }
        for (int r = 0; r < R; ++r)
            for (int c = 0; c < J; ++c) {
                hi[(r * J + c) * nb + blk] = double(acc[r][c]);
                if constexpr (Split) lo[(r * J + c) * nb + blk] = double(acc_lo[r][c]);
            }
    }
}

// A block term d s, d = the sum of `count` parts (the block dot, or its high and low halves), as
// a double when it is one exactly; false when it needs more than one double, or is NaN or
// infinite. Each part times s is an error-free product h + fma(part, s, -h) (the header's ranges
// keep the error representable) and the parts add by TwoSum. A zero term is IEEE's d s: d = +0
// when the block's exact sum (from +0) is zero, and a zero s gives a zero of d's sign times s's.
inline double zero_term(const double* parts, std::int64_t count, double s) {
    double d = 0;  // (d's sign: the sum of the parts is non-zero where d is)
    for (std::int64_t p = 0; p < count; ++p) d += parts[p];
    return (d == 0 ? 0.0 : std::copysign(1.0, d)) * 0.0 * s;
}

inline bool term_as_double(const double* parts, int count, double s, double& term) {
    double sum = 0;
    for (int p = 0; p < count; ++p) {
        const double h = parts[p] * s;
        if (!std::isfinite(h) || std::fma(parts[p], s, -h) != 0) return false;
        const double t = sum + h;
        const double h_part = t - sum;
        if (!std::isfinite(t) || (sum - (t - h_part)) + (h - h_part) != 0) return false;  // TwoSum error
        sum = t;
    }
    term = sum == 0 ? zero_term(parts, count, s) : sum;
    return true;
}

// The same term exactly, for any parts and scale. A NaN or infinite s multiplies the exact d
// (its round-to-odd double has d's sign and zeroness, which is all IEEE's product looks at);
// a NaN or infinite part (a NaN element) makes d itself NaN or infinite.
inline exact_sum exact_term(const double* parts, std::int64_t count, double s) {
    exact_sum term;
    if (!std::isfinite(s)) {
        for (std::int64_t p = 0; p < count; ++p) term.add(parts[p]);
        return exact_sum(term.to_double_round_odd() * s);
    }
    for (std::int64_t p = 0; p < count; ++p) {
        const double h = parts[p] * s;
        term.add(h);
        if (!std::isfinite(h)) continue;
        if (const double error = std::fma(parts[p], s, -h); error != 0) term.add(error);
    }
    return term.is_zero() ? exact_sum(zero_term(parts, count, s)) : term;
}

inline double round_by(const auto& step, double x, std::uint64_t index) {
    if constexpr (std::decay_t<decltype(step)>::exact) {
        return (void)index, x;
    } else {
        bool overflowed = false;
        return step.round_value(x, index, overflowed);
    }
}

// An integer rounding step that adds integers in double where that is exact: a sum on the
// step's grid (a multiple of 2^-fraction_bits) below 2^52 steps needs no rounding, only the
// range rule (int_step::round_exact reaches the same n through the exact sum's digits, and no
// mode moves a value that has no fraction). Anything else goes to int_step. VS-Quant's integer
// terms and P-bit registers always take the short way.
template <rounding Mode>
struct integer_sum_step : int_step<Mode> {
    double lo, hi, scale, unscale;  // the format's range; 2^fraction_bits and its inverse

    explicit integer_sum_step(const int_step<Mode>& s)
        : int_step<Mode>(s), lo(s.q.format.min_value()), hi(s.q.format.max_value()),
          scale(std::ldexp(1.0, s.q.fraction_bits)), unscale(std::ldexp(1.0, -s.q.fraction_bits)) {}

    double round_value(double x, std::uint64_t index, bool& overflowed) const {
        const double n = x * scale;  // exact when |n| >= 1 (a normal result)
        if (std::fabs(n) < 0x1p52 && n == std::trunc(n) && (n != 0 || x == 0)) {
            overflowed = n < lo || n > hi;
            return (overflowed ? this->q.overflow(n) : n) * unscale;
        }
        return int_step<Mode>::round_value(x, index, overflowed);
    }

    double round_pair(double a, double b, std::uint64_t index, bool& overflowed) const {
        const double sum = a + b, b_part = sum - a;
        if (std::isfinite(sum) && (a - (sum - b_part)) + (b - b_part) == 0)  // TwoSum: the sum is exact
            return round_value(sum, index, overflowed);
        return int_step<Mode>::round_pair(a, b, index, overflowed);
    }
};

// fp32 in nearest_even with IEEE overflow is the hardware's own conversion from double: the
// round-to-odd double of a sum, converted to float, is the sum rounded once (exact_ops.hpp), and
// the conversion overflows to infinity and rounds subnormals exactly as rounding_plan does.
struct fp32_nearest_step : float_step<rounding::nearest_even> {
    explicit fp32_nearest_step(const float_step<rounding::nearest_even>& s) : float_step<rounding::nearest_even>(s) {}

    static bool applies(const float_step<rounding::nearest_even>& s) {
        // IEEE binary32: 23 mantissa bits, emin -126, subnormals (no flush), signed, infinity.
        return s.plan.man_bits == 23 && s.plan.emin == -126 && s.plan.flush_below == 0 && s.plan.sign_keep != 0 &&
               s.plan.max_finite == double(std::numeric_limits<float>::max()) &&
               s.plan.overflow_away == std::numeric_limits<double>::infinity();
    }
    double round_value(double x, std::uint64_t, bool& overflowed) const {
        const auto y = double(float(x));
        overflowed = std::isinf(y) && std::isfinite(x);
        return y;
    }
    double round_exact(const exact_sum& s, std::uint64_t index, bool& overflowed) const {
        return round_value(s.to_double_round_odd(), index, overflowed);
    }
    double round_pair(double a, double b, std::uint64_t index, bool& overflowed) const {
        const auto fa = float(a), fb = float(b);
        if (double(fa) == a && double(fb) == b) {  // floats: the hardware's float addition rounds once
            const auto y = double(fa + fb);
            overflowed = std::isinf(y) && std::isfinite(a) && std::isfinite(b);
            return y;
        }
        return round_value(add_round_odd(a, b), index, overflowed);
    }
};

template <class Step>
struct fast_step_of {
    template <class F>
    static decltype(auto) call(const Step& step, F& f) { return f(step); }
};
template <rounding Mode>
struct fast_step_of<int_step<Mode>> {
    template <class F>
    static decltype(auto) call(const int_step<Mode>& step, F& f) { return f(integer_sum_step<Mode>(step)); }
};
template <>
struct fast_step_of<float_step<rounding::nearest_even>> {
    template <class F>
    static decltype(auto) call(const float_step<rounding::nearest_even>& step, F& f) {
        if (fp32_nearest_step::applies(step)) return f(fp32_nearest_step(step));
        return f(step);
    }
};

// f(step) for the steps that with_step hands out, with the short ways above where they apply.
template <class F>
auto with_fast_steps(F&& f) {
    return [&f](const auto& step) -> decltype(auto) { return fast_step_of<std::decay_t<decltype(step)>>::call(step, f); };
}

// RN_float(total * c) for c = cA cB (exact, at most 52 bits): the round-to-odd double of the
// product rounded to float (exact_ops.hpp: to odd, then once more, is rounding once).
// (The conversion to float is IEEE's nearest-even rounding with overflow to infinity, which is
// what rounding_plan does for fp32: see fp32_nearest_step.)
inline float float_result(double product_round_odd) { return float(product_round_odd); }

inline float scaled_result(double total, double c) { return float_result(c == 1 ? total : mul_round_odd(total, c)); }

inline float scaled_result(const exact_sum& total, double c) {
    const double odd = total.to_double_round_odd();
    // An even round-to-odd value is the exact total (rounding to odd sets the last bit when it
    // drops anything), as is a special one; a zero c makes the product IEEE's.
    if (c == 1 || (std::bit_cast<std::uint64_t>(odd) & 1) == 0 || c == 0 || !std::isfinite(odd))
        return scaled_result(odd, c);
    // total * m exactly (c = m 2^e, m an odd integer below 2^53) by doubling and adding, then the
    // power of two applied to its round-to-odd value, which is exact below 2^-1022 (a multiple of
    // 2^-1074) and above 2^1024 becomes DBL_MAX, still far above float's range after 2^e.
    int e = 0;
    const double f = std::frexp(std::fabs(c), &e);
    auto m = static_cast<std::uint64_t>(std::ldexp(f, 53));
    e -= 53;
    const int zeros = std::countr_zero(m);
    m >>= zeros;
    e += zeros;
    exact_sum x;
    for (int bit = 63 - std::countl_zero(m); bit >= 0; --bit) {
        const exact_sum twice = x;
        x.add(twice);
        if ((m >> bit) & 1) x.add(total);
    }
    const double o = x.to_double_round_odd();
    int k = 0;
    const double fo = std::frexp(std::fabs(o), &k);
    return float_result(round_odd_scaled(fo, k + e, std::signbit(o) != std::signbit(c)));
}

// The most significant bits a scale product s_b can have: those of the scale quantizer's
// values, or of the two widest block scales present.
inline int scale_product_bits(const block_scaled_matrix& A, const block_scaled_matrix& B, const quantizer& q) {
    if (const auto* f = q.as_float()) return f->format.man_bits + 1;
    if (const auto* i = q.as_int()) return i->format.bits;
    const auto widest = [](const std::vector<double>& scales) {
        int bits = 0;
        for (const double x : scales)
            if (std::isfinite(x) && x != 0) bits = std::max(bits, significant_bits(x));
        return bits;
    };
    return widest(A.block_scales) + widest(B.block_scales);
}

// ---- the block terms in fp32 lanes ----
//
// Where every step is exact in fp32 (block dots of at most 24 bits, block_dot_method::in_float;
// finite elements; scale products sA sB and terms d_b s_b exact floats; scale products
// unrounded), the block terms of fast_lanes outputs at once are the term source of
// fast_datapath.hpp's product stage (Q_prod) and lane reduction: the same operations that run
// under lowbit::gemm, with blocks in the place of k. Where block dots and terms are exact in
// double instead (block_dot_method::in_double: MXFP8 e4m3, 41 bits), the terms are doubles and
// the lane reduction adds each to its float accumulator as the round-to-odd of the exact sum
// (sequential and fma chains, unrounded terms). Every value equals the per-output path's (the
// terms are the same exact values, and the lane operations are proven equal to the exact
// reduction), so the choice changes only the speed.

// 64 bytes of floats or doubles as one value of GCC's vector extension (clang has it too).
template <class W>
struct vector_of_64_bytes;
template <>
struct vector_of_64_bytes<float> {
    typedef float type __attribute__((vector_size(64)));
};
template <>
struct vector_of_64_bytes<double> {
    typedef double type __attribute__((vector_size(64)));
};

// Rows of A whose terms are formed together, each load of B serving them all: 16 vectors of
// sums in registers (4 rows of 64 float lanes, or 2 of 64 double lanes).
template <class W>
constexpr int rows_at_once = std::is_same_v<W, float> ? 4 : 2;

// out[r][b][l] = Q_prod(d s) for the rows r of a group of rows_at_once<W> rows of A (a_rows: rows
// of K; their block scales a_scales: rows of nb), every block b, and fast_lanes columns of B (rows
// of ldb values; block scales b_scales, a row of ldb per block): d the block dot in lanes of W
// (exact, so any order of the sums gives it), s = sA sB (exact). Double terms are not rounded
// (P is product_exact).
template <class W, class P>
void block_terms_pass(const W* a_rows, const W* a_scales, const W* b, const W* b_scales, std::ptrdiff_t ldb,
                      std::int64_t K, std::int64_t V, std::int64_t nb, const void* product, W* out) {
    const P prod = *static_cast<const P*>(product);  // a local copy: stores cannot alias it
    // The dots in vectors of 64 bytes (GCC's vector extension, split into what the target has):
    // GCC keeps an array of them in registers across k, where it kept a plain array in memory
    // and stored it back at every k.
    using vector = typename vector_of_64_bytes<W>::type;
    constexpr int R = rows_at_once<W>, per_vector = int(64 / sizeof(W)), vectors = fast_lanes / per_vector;
    for (std::int64_t block = 0; block < nb; ++block) {
        const std::int64_t k_end = std::min(K, (block + 1) * V);
        vector dots[R][vectors] = {};  // +0: a zero dot is +0, as the per-output path's
        for (std::int64_t k = block * V; k < k_end; ++k) {
            const W* row = b + k * ldb;
#pragma GCC unroll 8
            for (int v = 0; v < vectors; ++v) {
                vector column;
                std::memcpy(&column, row + v * per_vector, sizeof column);
#pragma GCC unroll 4
                for (int r = 0; r < R; ++r) dots[r][v] += a_rows[r * K + k] * column;
            }
        }
        for (int r = 0; r < R; ++r) {
            alignas(64) W d[fast_lanes];
            std::memcpy(d, dots[r], sizeof d);
            const W sa = a_scales[r * nb + block];
            const W* sb = b_scales + block * ldb;
            W* o = out + (r * nb + block) * fast_lanes;
            if constexpr (std::is_same_v<W, float>)
                for (int l = 0; l < fast_lanes; ++l) o[l] = prod(d[l] * (sa * sb[l]));
            else
                for (int l = 0; l < fast_lanes; ++l) o[l] = d[l] * (sa * sb[l]);
        }
    }
}

template <class W>
using block_terms_pass_fn = void (*)(const W*, const W*, const W*, const W*, std::ptrdiff_t, std::int64_t,
                                     std::int64_t, std::int64_t, const void*, W*);

// The grid of n doubles (finite; zeros left out): their lowest bit, widest significand and
// largest magnitude.
inline value_grid grid_of_doubles(const double* x, std::size_t n) {
    value_grid g{0, 1, 0.0, true};
    int lowest = std::numeric_limits<int>::max();
    for (std::size_t t = 0; t < n; ++t) {
        if (x[t] == 0) continue;
        const int bits = significant_bits(x[t]);
        lowest = std::min(lowest, std::ilogb(x[t]) + 1 - bits);
        g.significand_bits = std::max(g.significand_bits, bits);
        g.max_magnitude = std::max(g.max_magnitude, std::fabs(x[t]));
    }
    if (lowest != std::numeric_limits<int>::max()) g.smallest_step = lowest;
    return g;
}

// The operands of the lanes of W (float or double): A's elements, the block scales (A's by rows,
// B's transposed: a row of ldb per block) and B's elements with its columns padded to whole
// blocks of lanes, where every block dot and every term d s is exact in W (else nothing, with
// why_not set).
template <class W>
struct block_lane_operands {
    std::int64_t M, N, K, V, nb, blocks, ldb;
    std::vector<W> a, a_scales, b_scales, b_padded;
    value_grid terms;  // of the exact terms d s

    static std::optional<block_lane_operands> make(const block_scaled_matrix& A, const block_scaled_matrix& B,
                                                   const block_dot_plan& plan, std::string& why_not) {
        const auto refuse = [&](std::string why) {
            why_not = std::move(why);
            return std::optional<block_lane_operands>{};
        };
        constexpr bool in_float = std::is_same_v<W, float>;
        constexpr int W_bits = in_float ? 24 : 53;
        const auto M = std::int64_t(A.rows), N = std::int64_t(B.cols), K = std::int64_t(A.cols);
        const std::int64_t V = A.block_size(), nb = (K + V - 1) / V;
        if (K == 0) return refuse("K = 0");
        if (plan.method != block_dot_method::in_float && (in_float || plan.method != block_dot_method::in_double))
            return refuse("block dots of " + std::to_string(plan.bits) + " significant bits are not exact in " +
                          (in_float ? "fp32" : "double"));
        if (!all_finite(A.elements.data(), Eigen::Index(A.elements.size())) ||
            !all_finite(B.elements.data(), Eigen::Index(B.elements.size())))
            return refuse("elements: an infinity or NaN");
        for (const auto* scales : {&A.block_scales, &B.block_scales})
            for (const double x : *scales)
                if (!(in_float ? double(float(x)) == x : std::isfinite(x)))  // (false for NaN)
                    return refuse(in_float ? "block scales: a NaN, or one that is not a float" : "block scales: a NaN");
        const value_grid scales = product_grid(grid_of_doubles(A.block_scales.data(), A.block_scales.size()),
                                               grid_of_doubles(B.block_scales.data(), B.block_scales.size()));
        const value_grid dots{plan.lsb, plan.bits, std::ldexp(1.0, plan.lsb + plan.bits), true};
        const value_grid terms = product_grid(dots, scales);
        if (in_float ? !products_exact_in_float(dots, scales) : terms.significand_bits > W_bits)
            return refuse(std::string("block terms d s: not exact in ") + (in_float ? "fp32" : "double"));

        const std::int64_t blocks = (N + fast_lanes - 1) / fast_lanes, ldb = blocks * fast_lanes;
        block_lane_operands o{M, N, K, V, nb, blocks, ldb, {}, {}, {}, {}, terms};
        // (A's rows padded with zeros to whole groups of rows_at_once)
        o.a.assign(std::size_t(o.groups() * rows_at_once<W> * K), W(0));
        std::copy(A.elements.begin(), A.elements.end(), o.a.begin());
        o.a_scales.assign(std::size_t(o.groups() * rows_at_once<W> * nb), W(0));
        std::copy(A.block_scales.begin(), A.block_scales.end(), o.a_scales.begin());
        o.b_scales.assign(std::size_t(nb * ldb), W(0));
        for (std::int64_t j = 0; j < N; ++j)
            for (std::int64_t b = 0; b < nb; ++b)
                o.b_scales[std::size_t(b * ldb + j)] = W(B.block_scales[std::size_t(j * nb + b)]);
        o.b_padded.assign(std::size_t(K * ldb), W(0));
        for (std::int64_t k = 0; k < K; ++k)
            std::copy_n(B.elements.data() + k * N, N, o.b_padded.data() + k * ldb);
        return o;
    }

    std::int64_t groups() const { return (M + rows_at_once<W> - 1) / rows_at_once<W>; }

    // out[r][b][l] = Q_prod(d s) for the rows of group g, every block, and the block of lanes from
    // column j0 (block_terms_pass).
    void fill(block_terms_pass_fn<W> pass, const void* product, std::int64_t g, std::int64_t j0, W* out) const {
        const std::int64_t i0 = g * rows_at_once<W>;
        pass(a.data() + i0 * K, a_scales.data() + i0 * nb, b_padded.data() + j0, b_scales.data() + j0, ldb, K, V, nb,
             product, out);
    }

    // f(i, j0, row_terms) for every output row i and block of lanes from j0, split among threads:
    // row_terms(first, m, out) copies that row's terms of blocks first .. first + m - 1 into out.
    // Ranges of (block of columns, group of rows), blocks outermost: a block's K x lanes panel of
    // B stays in cache across rows.
    template <class F>
    void for_each_row(block_terms_pass_fn<W> pass, const void* product, int threads, const F& f) const {
        for_each_range(blocks * groups(), threads, [&](std::int64_t begin, std::int64_t end) {
            std::vector<W> terms(std::size_t(rows_at_once<W> * nb * fast_lanes));
            for (std::int64_t at = begin; at < end; ++at) {
                const std::int64_t g = at % groups(), j0 = at / groups() * fast_lanes;
                fill(pass, product, g, j0, terms.data());
                for (std::int64_t r = 0; r < std::min<std::int64_t>(rows_at_once<W>, M - g * rows_at_once<W>); ++r)
                    f(g * rows_at_once<W> + r, j0, [&](std::int64_t first, int m, W* out) {
                        std::copy_n(terms.data() + (r * nb + first) * fast_lanes, m * fast_lanes, out);
                    });
            }
        });
    }
};

// Whether a reduction's totals are its exact results (floats of the accumulator), which the
// coarse scales then multiply: not the float rounding of an exact sum (lane_reduction's exact
// sums), which must be scaled before it is rounded.
inline bool float_totals(const lane_reduction& reduction, std::string& why_not) {
    if (reduction.sums_exactly())
        why_not = "accumulator: exact sums, scaled by the coarse scales before their rounding, are formed per output";
    return !reduction.sums_exactly();
}

// C = A B on the lanes where they apply (see above); false, with why_not set and C untouched,
// where they do not. Float accumulators reduce the terms as lowbit::gemm reduces products
// (lane_reduction); integer ones on the integer chain (integer_chain.hpp), where every term is an
// integer of the accumulator's grid.
inline bool block_terms_in_lanes(const block_scaled_matrix& A, const block_scaled_matrix& B, const gemm_spec& spec,
                                 const quantizer& scale_product, const block_dot_plan& plan, Eigen::MatrixXf& C,
                                 std::string& why_not) {
    if (!scale_product.is_exact()) {
        why_not = "scale_product: rounded scale products are formed per output";
        return false;
    }
    const auto N = std::int64_t(B.cols);
    // C(i, j) = RN_float(total cA(i) cB(j)), for a row's block of lanes
    const auto store = [&](std::int64_t i, std::int64_t j0, const auto* total) {
        const double coarse_a = A.coarse_scale(std::size_t(i));
        for (std::int64_t l = 0; l < std::min<std::int64_t>(fast_lanes, N - j0); ++l)
            C(i, j0 + l) = scaled_result(double(total[l]), coarse_a * B.coarse_scale(std::size_t(j0 + l)));
    };
    const int threads = thread_count(spec.threads);
    const product_exact no_rounding;

    // Float lanes where the terms are floats, else double lanes (MXFP8's 41-bit block dots, or
    // float dots whose terms are not: VS-Quant with 8-bit scales).
    auto o = block_lane_operands<float>::make(A, B, plan, why_not);
    if (!o && (plan.method == block_dot_method::in_float || plan.method == block_dot_method::in_double)) {
        // Double terms, unrounded, into float accumulators.
        if (spec.accumulator.as_int() != nullptr) {
            why_not = "integer_chain: block terms of more than 24 bits";
            return false;
        }
        if (spec.model != accumulation::fma && !spec.product.is_exact()) {
            why_not = "product: rounded block terms of more than 24 bits are formed per output";
            return false;
        }
        const auto o = block_lane_operands<double>::make(A, B, plan, why_not);
        if (!o) return false;
        const auto reduction = lane_reduction::make(spec, o->nb, o->terms, why_not, true);
        if (!reduction || !float_totals(*reduction, why_not)) return false;
        o->for_each_row(&block_terms_pass<double, product_exact>, &no_rounding, threads,
                        [&](std::int64_t i, std::int64_t j0, const auto& row_terms) {
                            thread_local std::vector<double> scratch;  // (on the pool's threads)
                            scratch.resize(std::size_t(reduction->scratch_rows() * fast_lanes));
                            chunk_totals total;
                            reduction->row_of_doubles(o->nb, row_terms, [](std::int64_t, int, float*) { return false; }, scratch.data(), total);
                            store(i, j0, total.lanes);
                        });
        return true;
    }

    if (!o) return false;
    const std::int64_t nb = o->nb;

    if (spec.accumulator.as_int() != nullptr) {
        const auto integer = make_integer_plan(spec, o->terms, value_grid{0, 1, 1.0, true}, nb, why_not);
        if (!integer) return false;
        // (the totals must be exact doubles for the coarse scales to multiply them)
        const int_quantizer& acc = *spec.accumulator.as_int();
        const int_quantizer* chunk_acc = spec.chunk_accumulator.as_int();
        const double range = std::max(-acc.format.min_value(), acc.format.max_value()) + 1;
        const double chunks = double((nb + integer->chunk - 1) / integer->chunk);
        if ((chunk_acc != nullptr ? std::max(-chunk_acc->format.min_value(), chunk_acc->format.max_value()) + 1
                                  : chunks * range) >= 0x1p53) {
            why_not = "integer_chain: totals of 2^53 grid steps or more";
            return false;
        }
        const std::int64_t rows = integer->model == accumulation::pairwise
                                      ? std::int64_t(std::bit_ceil(std::uint64_t(integer->chunk)))
                                      : fast_panel;
        std::visit(
            [&](const auto& op, const auto& chunk_op) {
                using Op = std::decay_t<decltype(op)>;
                using ChunkOp = std::decay_t<decltype(chunk_op)>;
                const auto row = [&]<class L>(std::int64_t i, std::int64_t j0, const auto& row_terms) {
                    thread_local std::vector<L> scratch;  // (on the pool's threads)
                    thread_local std::vector<float> terms;
                    scratch.resize(std::size_t(2 * rows * fast_lanes));
                    terms.resize(std::size_t(rows * fast_lanes));
                    alignas(64) double total[fast_lanes];
                    integer_row<L, Op, ChunkOp, false>(
                        [&](std::int64_t first, int m, L* n) {
                            row_terms(first, m, terms.data());
                            for (std::int64_t t = 0; t < m * fast_lanes; ++t)
                                n[t] = L(std::int32_t(terms[std::size_t(t)] * integer->scale));  // exact
                        },
                        nb, *integer, op, chunk_op, scratch.data(), scratch.data() + rows * fast_lanes, total, nullptr);
                    store(i, j0, total);
                };
                o->for_each_row(&block_terms_pass<float, product_exact>, &no_rounding, threads,
                                [&](std::int64_t i, std::int64_t j0, const auto& row_terms) {
                                    if (integer->lanes32) row.template operator()<std::int32_t>(i, j0, row_terms);
                                    else row.template operator()<std::int64_t>(i, j0, row_terms);
                                });
            },
            integer->accumulate, integer->chunk_step);
        return true;
    }

    const auto terms = product_stage::make(spec, o->terms, why_not);
    if (!terms) return false;
    const auto reduction = lane_reduction::make(spec, nb, terms->grid, why_not);
    if (!reduction || !float_totals(*reduction, why_not)) return false;
    const block_terms_pass_fn<float> terms_pass = std::visit(
        [](const auto& p) -> block_terms_pass_fn<float> { return &block_terms_pass<float, std::decay_t<decltype(p)>>; },
        terms->op);
    const void* const product_address = address_of(terms->op);
    o->for_each_row(terms_pass, product_address, threads, [&](std::int64_t i, std::int64_t j0, const auto& row_terms) {
        thread_local std::vector<float> scratch;  // (on the pool's threads)
        scratch.resize(std::size_t(reduction->scratch_rows() * fast_lanes));
        chunk_totals total;
        reduction->row(nb, row_terms, [](std::int64_t, int, float*) { return false; }, scratch.data(), total);
        store(i, j0, total.lanes);
    });
    return true;
}

// ---- the per-output way ----

// The whole product, on one thread per tile of R rows.
struct block_gemm_run {
    const block_scaled_matrix& A;
    const block_scaled_matrix& B;
    const gemm_spec& spec;
    const quantizer& scale_product;
    std::int64_t M, N, K, V, nb;
    block_dot_plan plan;
    // Every block dot (one double) times every scale product fits 53 bits: the terms d_b s_b are
    // exact double products, well inside double's range (the header's ranges).
    bool terms_exact_in_double;

    static constexpr int R = 4, J = 32;  // outputs per tile: the vector kernel's register block

    // The operands in the kernel's type: A's rows padded to a multiple of R, B's columns to J.
    template <class W>
    struct operands {
        std::vector<W> a, b;
        std::int64_t stride = 0;
    };

    template <class W>
    operands<W> convert() const {
        operands<W> o;
        const std::int64_t rows = (M + R - 1) / R * R;
        o.stride = (N + J - 1) / J * J;
        o.a.assign(std::size_t(rows * K), W(0));
        o.b.assign(std::size_t(K * o.stride), W(0));
        for (std::int64_t i = 0; i < M; ++i)
            for (std::int64_t k = 0; k < K; ++k) o.a[std::size_t(i * K + k)] = W(A.elements[std::size_t(i * K + k)]);
        for (std::int64_t k = 0; k < K; ++k)
            for (std::int64_t j = 0; j < N; ++j)
                o.b[std::size_t(k * o.stride + j)] = W(B.elements[std::size_t(k * N + j)]);
        return o;
    }

    struct scratch {
        std::vector<double> hi, lo, scales, terms, tree, products;
        std::vector<double> double_results;
        std::vector<exact_sum> wide_terms, exact_results;
        std::vector<std::int64_t> wide_index;  // per output of the tile: its exact terms, or -1
        std::vector<std::uint8_t> term_lost;
    };

    template <bool Count, class W, bool Split>
    void run(Eigen::MatrixXf& C, gemm_stats* stats) const {
        const operands<W> ops = convert<W>();
        const exact_datapath path{spec, N, nb};
        const int threads = thread_count(spec.threads);
        const std::int64_t tiles = (M + R - 1) / R;
        std::vector<gemm_stats> per_thread(static_cast<std::size_t>(threads));
#pragma omp parallel num_threads(threads)
        {
            gemm_stats& local = per_thread[std::size_t(thread_index())];
            scratch s;
#pragma omp for schedule(static)
            for (std::int64_t tile = 0; tile < tiles; ++tile)
                for (std::int64_t j0 = 0; j0 < N; j0 += J)
                    this->tile<Count, W, Split>(ops, path, tile * R, j0, C, s, local, stats);
        }
        if constexpr (Count)
            for (const auto& t : per_thread) *stats += t;
    }

    // One tile: rows i0 .. i0 + R - 1, columns j0 .. j0 + J - 1 (those inside C).
    template <bool Count, class W, bool Split>
    void tile(const operands<W>& ops, const exact_datapath& path, std::int64_t i0, std::int64_t j0, Eigen::MatrixXf& C,
              scratch& s, gemm_stats& local, gemm_stats* stats) const {
        constexpr int T = R * J;
        const auto n = std::size_t(T * nb);
        s.hi.resize(n);
        s.lo.resize(Split ? n : 0);
        s.scales.resize(n);
        s.terms.resize(n);
        s.wide_index.assign(T, -1);
        s.wide_terms.clear();
        if constexpr (Count) s.term_lost.assign(n, 0);
        const std::int64_t rows = std::min<std::int64_t>(R, M - i0), cols = std::min<std::int64_t>(J, N - j0);
        const auto output = [&](int t) { return std::uint64_t((i0 + t / J) * N + j0 + t % J); };
        const auto inside = [&](int t) { return t / J < rows && t % J < cols; };

        // 1. The block dot products.
        if (plan.method != block_dot_method::exact_sum)
            block_dots_tile<W, Split, R, J>(ops.a.data() + i0 * K, ops.b.data() + j0, K, ops.stride, V, nb,
                                            plan.split_constant, s.hi.data(), s.lo.data());

        // 2. The scale products s_b = Q_s(sA sB) (exact in double: two scales of <= 26 bits).
        with_step(scale_product, gemm_random_key(exact_datapath::seed_of(scale_product), gemm_role::input_a),
                  with_fast_steps([&](const auto& step) {
                      for (int t = 0; t < T; ++t) {
                          if (!inside(t)) continue;
                          const double* sa = A.block_scales.data() + (i0 + t / J) * nb;
                          const double* sb = B.block_scales.data() + (j0 + t % J) * nb;
                          const std::uint64_t first = output(t) * std::uint64_t(nb);
                          for (std::int64_t b = 0; b < nb; ++b)
                              s.scales[std::size_t(t * nb + b)] = round_by(step, sa[b] * sb[b], first + std::uint64_t(b));
                      }
                  }));

        // 3. The terms d_b s_b: doubles where every term of an output is one, else exact_sums.
        if (!Split && terms_exact_in_double) {
            for (std::size_t at = 0; at < n; ++at) s.terms[at] = s.hi[at] * s.scales[at];
        } else for (int t = 0; t < T; ++t) {
            if (!inside(t)) continue;
            bool all_double = plan.method != block_dot_method::exact_sum;
            for (std::int64_t b = 0; b < nb && all_double; ++b) {
                const auto at = std::size_t(t * nb + b);
                const double parts[2] = {s.hi[at], Split ? s.lo[at] : 0.0};
                all_double = term_as_double(parts, Split ? 2 : 1, s.scales[at], s.terms[at]);
            }
            if (all_double) continue;
            s.wide_index[std::size_t(t)] = std::int64_t(s.wide_terms.size());
            const std::int64_t i = i0 + t / J, j = j0 + t % J;
            for (std::int64_t b = 0; b < nb; ++b) {
                const auto at = std::size_t(t * nb + b);
                if (plan.method == block_dot_method::exact_sum) {
                    const std::int64_t k0 = b * V, k1 = std::min(K, (b + 1) * V);
                    s.products.resize(std::size_t(k1 - k0));
                    for (std::int64_t k = k0; k < k1; ++k)  // exact: two floats
                        s.products[std::size_t(k - k0)] = double(A.elements[std::size_t(i * K + k)]) *
                                                          double(B.elements[std::size_t(k * N + j)]);
                    s.wide_terms.push_back(exact_term(s.products.data(), k1 - k0, s.scales[at]));
                } else {
                    const double parts[2] = {s.hi[at], Split ? s.lo[at] : 0.0};
                    s.wide_terms.push_back(exact_term(parts, Split ? 2 : 1, s.scales[at]));
                }
            }
        }

        // 4. Q_prod on each term (not under fma: it rounds d_b s_b + acc once).
        if (spec.model != accumulation::fma && !spec.product.is_exact()) {
            with_step(spec.product, gemm_random_key(path.product_seed(), gemm_role::product), with_fast_steps([&](const auto& step) {
                if constexpr (!std::decay_t<decltype(step)>::exact)
                for (int t = 0; t < T; ++t) {
                    if (!inside(t)) continue;
                    const std::uint64_t first = output(t) * std::uint64_t(nb);
                    const std::int64_t w = s.wide_index[std::size_t(t)];
                    for (std::int64_t b = 0; b < nb; ++b) {
                        const auto at = std::size_t(t * nb + b);
                        bool overflowed = false;
                        bool was_zero;
                        if (w < 0) {
                            was_zero = s.terms[at] == 0;
                            s.terms[at] = step.round_value(s.terms[at], first + std::uint64_t(b), overflowed);
                        } else {
                            const exact_sum& x = s.wide_terms[std::size_t(w + b)];
                            was_zero = x.is_zero();
                            s.terms[at] = step.round_exact(x, first + std::uint64_t(b), overflowed);
                        }
                        if constexpr (Count) {
                            local.product_overflows += overflowed;
                            if (!was_zero && s.terms[at] == 0) {
                                ++local.product_underflows;
                                s.term_lost[at] = 1;
                            }
                        }
                    }
                    s.wide_index[std::size_t(t)] = -1;  // its terms are doubles now
                }
            }));
        }

        // 5. The reduction of gemm_spec.hpp, then the coarse scales. Chunk results are doubles
        // where the accumulator rounds double terms, exact_sums otherwise.
        const auto chunks = std::size_t(path.chunk_count());
        s.double_results.resize(std::size_t(J) * chunks);
        s.exact_results.resize(std::size_t(J) * chunks);
        const bool rounding_accumulator = !spec.accumulator.is_exact();
        for (std::int64_t r = 0; r < rows; ++r) {
            const auto sink_of = [&](int t) {
                event_sink<Count> sink{&local, nullptr};
                if constexpr (Count) sink.lost = s.term_lost.data() + t * nb;
                return sink;
            };
            const auto doubles = [&](int t) { return rounding_accumulator && s.wide_index[std::size_t(t)] < 0; };
            path.with_accumulator_step(with_fast_steps([&](const auto& step) {
                for (std::int64_t c = 0; c < cols; ++c) {
                    const int t = int(r * J + c);
                    const std::int64_t w = s.wide_index[std::size_t(t)];
                    exact_sum* exact_results = s.exact_results.data() + std::size_t(c) * chunks;
                    if (w >= 0) {
                        path.reduce_chunks(step, s.wide_terms.data() + w, output(t), s.tree, exact_results, sink_of(t));
                    } else if constexpr (std::decay_t<decltype(step)>::exact) {
                        path.reduce_chunks(step, s.terms.data() + t * nb, output(t), s.tree, exact_results, sink_of(t));
                    } else {
                        path.reduce_chunks(step, s.terms.data() + t * nb, output(t), s.tree,
                                           s.double_results.data() + std::size_t(c) * chunks, sink_of(t));
                    }
                }
            }));
            path.with_chunk_accumulator_step(with_fast_steps([&](const auto& step) {
                const std::int64_t i = i0 + r;
                for (std::int64_t c = 0; c < cols; ++c) {
                    const int t = int(r * J + c);
                    const std::int64_t j = j0 + c;
                    const double coarse = A.coarse_scale(std::size_t(i)) * B.coarse_scale(std::size_t(j));
                    if (doubles(t)) {
                        const double* results = s.double_results.data() + std::size_t(c) * chunks;
                        if (std::decay_t<decltype(step)>::exact && chunks == 1)  // -0 + r: r, exactly
                            C(i, j) = scaled_result(results[0], coarse);
                        else
                            C(i, j) = scaled_result(
                                accumulate_chunks(std::span<const double>(results, chunks), step, output(t), sink_of(t)),
                                coarse);
                    } else {
                        const exact_sum* results = s.exact_results.data() + std::size_t(c) * chunks;
                        C(i, j) = scaled_result(
                            accumulate_chunks(std::span<const exact_sum>(results, chunks), step, output(t), sink_of(t)),
                            coarse);
                    }
                }
            }));
        }

        // 6. Lost terms: every element of the block.
        if constexpr (Count)
            if (spec.record_lost)
                for (int t = 0; t < T; ++t) {
                    if (!inside(t)) continue;
                    std::uint8_t* lost = stats->lost.data() + output(t) * std::uint64_t(K);
                    for (std::int64_t b = 0; b < nb; ++b)
                        if (s.term_lost[std::size_t(t * nb + b)] != 0)
                            std::fill(lost + b * V, lost + std::min(K, (b + 1) * V), std::uint8_t(1));
                }
    }

    // zero_operand: products a(i, k) b(k, j) with a zero operand, from the zeros of each k.
    std::uint64_t zero_operands() const {
        std::uint64_t count = 0;
        for (std::int64_t k = 0; k < K; ++k) {
            std::uint64_t za = 0, zb = 0;
            for (std::int64_t i = 0; i < M; ++i) za += A.elements[std::size_t(i * K + k)] == 0;
            for (std::int64_t j = 0; j < N; ++j) zb += B.elements[std::size_t(k * N + j)] == 0;
            count += za * std::uint64_t(N) + zb * std::uint64_t(M) - za * zb;
        }
        return count;
    }

    template <bool Count>
    void dispatch(Eigen::MatrixXf& C, gemm_stats* stats) const {
        switch (plan.method) {
            case block_dot_method::in_float: return run<Count, float, false>(C, stats);
            case block_dot_method::in_double: return run<Count, double, false>(C, stats);
            case block_dot_method::split_double: return run<Count, double, true>(C, stats);
            case block_dot_method::exact_sum: return run<Count, double, false>(C, stats);  // no kernel
        }
    }
};

template <class>
Eigen::MatrixXf block_scaled_multiply(const block_scaled_matrix& A, const block_scaled_matrix& B,
                                      const gemm_spec& spec, const quantizer& scale_product, gemm_stats* stats,
                                      gemm_report* report) {
    const auto M = std::int64_t(A.rows), N = std::int64_t(B.cols), K = std::int64_t(A.cols);
    const std::int64_t V = A.block_size(), nb = (K + V - 1) / V;
    const block_dot_plan plan = plan_block_dots(span_of(A), span_of(B), V);
    Eigen::MatrixXf C(M, N);
    gemm_report ran;
    ran.kernel = gemm_kernel::vectorized_chain;
    if (stats != nullptr)
        ran.reason = "stats: the events of block terms are counted per output";
    else if (block_terms_in_lanes(A, B, spec, scale_product, plan, C, ran.reason)) {
        if (report != nullptr) *report = ran;
        return C;
    }
    ran.kernel = gemm_kernel::block_terms_per_output;
    if (report != nullptr) *report = ran;

    const block_gemm_run run{A, B, spec, scale_product, M, N, K, V, nb,
                             plan, plan.method != block_dot_method::exact_sum &&
                                       plan.bits + scale_product_bits(A, B, scale_product) <= 53};
    if (stats != nullptr) {
        stats->macs += std::uint64_t(M) * std::uint64_t(N) * std::uint64_t(K);
        stats->zero_operand += run.zero_operands();
        if (spec.record_lost) stats->lost.assign(std::size_t(M * N * K), 0);
        run.dispatch<true>(C, stats);
    } else {
        run.dispatch<false>(C, nullptr);
    }
    return C;
}

#ifdef LOWBIT_COMPILED_LIB
extern template Eigen::MatrixXf block_scaled_multiply<>(const block_scaled_matrix&, const block_scaled_matrix&,
                                                        const gemm_spec&, const quantizer&, gemm_stats*,
                                                        gemm_report*);
#endif

}  // namespace lowbit::detail
