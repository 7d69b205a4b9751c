// lowbit/datapath/scaled_chain.hpp: the sequential chain (and pairwise tree) of fast_datapath.hpp
// written in AVX-512 instructions, for the paper's kind of accumulator (no subnormals, saturating:
// the round_flush_saturate operation) in nearest_even with 7 mantissa bits or in toward_zero, with
// exact or range-checked products, or products truncated (toward_zero) to a format without
// subnormals.
//
// The auto-vectorized chain spends 16 vector instructions per 16 MACs in nearest_even (11 in
// toward_zero), most of them on the magnitude's bits: abs, clamp, flush, the sign put back. Here
// it spends 8.5 (7), and 7.5 (6) where bounds show the saturations cannot act (panel_bounds):
//   - values run scaled by 2^scale, chosen so that the product format's smallest normal is fp32's
//     2^-126: the multiply flushes smaller products itself, with MXCSR's flush-to-zero bit, set
//     for the call. (Products and sums are otherwise exact, so nothing else depends on MXCSR.)
//   - saturation, and the raise of sums that round up to the smallest normal, are vrangeps: the
//     smaller or larger magnitude, with the first operand's sign. The flush is that vrangeps
//     zeroing the lanes whose magnitude fails one compare of its bits.
//   - a product rounded toward zero to the product format (Truncate) is the exact product with
//     its low bits cut (one vpandd): below the format's smallest normal the multiply has flushed
//     it, and beyond the largest the saturation clamps it, as for range-checked products.
//   - nearest_even to 8 significant bits is vcvtne2ps2bf16, which is that rounding, of two
//     vectors at once (on normal floats; a subnormal input gives 0, and is flushed anyway).
//     Its result interleaves the two vectors' lanes. Rather than undo that at every step, the
//     rows of B are laid out in the lane order that each step's accumulators have (pair_column),
//     and the totals are put back in order once at the end.
// With Count, the sequential chain also counts the events of gemm_stats in vector lanes (see
// scaled_events): about twice the uncounted time.
// A flush here gives +0 where the format gives a zero of the sum's sign. Zeros of either sign add
// alike to anything non-zero, so every result that is not zero is the same as the general
// chain's, and so is every sum before a rounding. A result that is zero takes the sign of the last
// sum (of the total and the last chunk's result) when that is not zero, is +0 when the two cancel
// out, and when both are zero (whose signs are not known) the caller recomputes the output on the
// general chain.
#pragma once

#include <lowbit/rounding/modes.hpp>
#include <lowbit/datapath/intrinsics_warnings.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
#endif

LOWBIT_BEGIN_INTRINSICS

namespace lowbit::detail {

#if defined(__AVX512F__) && defined(__AVX512DQ__)
inline constexpr bool has_scaled_chain = true;
#else
inline constexpr bool has_scaled_chain = false;
#endif
#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BF16__) && defined(__AVX512BW__)
inline constexpr bool has_bf16_rounding = true;
#else
inline constexpr bool has_bf16_rounding = false;
#endif

// What the chain needs, every value already scaled by 2^scale.
struct scaled_chain {
    int scale = 0;  // B's elements are scaled (exactly: they stay normal floats) by 2^scale
    bool product_saturates = false;
    double product_limit = 0, accumulator_limit = 0, min_normal = 0;  // unscaled (see panel_bounds)
    float product_max = 0, accumulator_max = 0;
    // A sum is kept (not flushed) when its magnitude's bits are >= kept_from's bits: compared as
    // the bits shifted left by one, which drops the sign.
    std::uint32_t kept_from_shifted = 0;
    float raised_to = 0;     // nearest_even: a kept sum's magnitude is raised to at least this ...
    std::uint32_t cut = 0;   // toward_zero: the bits a sum keeps (sign, exponent, kept fraction)
    // portable_chain.hpp: the fraction bits a sum drops (nearest_even), and the exponents from
    // where the scale puts the products' flush (2^-126) up to the accumulator's smallest normal
    unsigned dropped_bits = 16;
    int rescale = 0;
    std::uint32_t below_min_normal = 0;  // nearest_even: the bits of M - q/2 at the products' scale
    // Counting events: a sum overflows when its magnitude's bits are >= overflow_from's (the
    // rounding without an upper limit would pass the largest value), shifted left by one as above.
    std::uint32_t overflow_from_shifted = 0;
    std::uint32_t product_from_shifted = 0;  // ... and a product is kept when its bits are >= these
    std::uint32_t product_cut = ~0u;  // Truncate: the bits a product keeps (a normal float's)
};

// The events of one call, as the counted chain sees them (fast_gemm turns them into gemm_stats):
// every rounding compares its result with the value it added to (equal) and its exact sum
// (inexact), so a swamp is an equal result whose other addend was not zero.
struct scaled_events {
    std::uint64_t kept_products = 0;      // products neither zero nor flushed
    std::uint64_t zero_chunk_results = 0; // chunk results that reached the total as zeros
    std::uint64_t equal = 0;              // roundings whose result equals the running sum it added to
    std::uint64_t inexact = 0, accumulator_overflows = 0, product_overflows = 0;
};

// nearest_even's lane order: vcvtne2ps2bf16 of a pair of vectors (lanes 0-15 and 16-31 of a
// 32-lane group) moves the value at position p to position (p >> 1) | ((p & 1) << 4), a rotation
// of p's five bits by one to the right. After e roundings, position q therefore holds the value
// that started at position pair_column(e, q): q rotated left e times (the order repeats every 5).
constexpr int pair_column(std::int64_t e, int q) {
    const int r = int(((e % 5) + 5) % 5);
    return ((q << r) | (q >> (5 - r))) & 31;
}
// Its inverse: the position of the value that started at position `column`.
constexpr int pair_position(std::int64_t e, int column) { return pair_column(-e, column); }

// The number of roundings after which row k of a chunked chain meets its accumulators, counted so
// that a chunk's result reaches the total in the total's order: chunk c (of n_c rows) starts
// c - n_c roundings into the sequence, its last rounding leaves it at c, and the total's own
// rounding after chunk c brings it to c + 1. In a pairwise tree every product is a leaf: the
// chunk's leaves start c - depth roundings in, depth = ceil(log2 n_c) levels below the root.
constexpr std::int64_t pair_layout(std::int64_t k, std::int64_t n, std::int64_t chunk, bool pairwise) {
    const std::int64_t c = k / chunk, start = c * chunk;
    const std::int64_t rows = (start + chunk < n ? start + chunk : n) - start;
    return pairwise ? c - std::int64_t(std::bit_width(std::uint64_t(rows - 1))) : c - rows + (k - start);
}

// Rows [first, last) of dst (K rows of ld floats, groups of 32 lanes) = b's rows scaled by `scale`
// (a power of two), each group in the lane order that row's step expects when in_pairs
// (nearest_even).
inline void lay_out_scaled(const float* b, std::ptrdiff_t ld, std::int64_t first, std::int64_t last, std::int64_t n,
                           std::int64_t chunk, bool pairwise, float scale, bool in_pairs, float* dst) {
    int columns[5][32];
    for (int e = 0; e < 5; ++e)
        for (int q = 0; q < 32; ++q) columns[e][q] = pair_column(e, q);
    for (std::int64_t k = first; k < last; ++k) {
        const int* column = columns[in_pairs ? ((pair_layout(k, n, chunk, pairwise) % 5) + 5) % 5 : 0];
        const float* from = b + k * ld;
        float* to = dst + k * ld;
        for (std::ptrdiff_t g = 0; g < ld; g += 32)
            for (int q = 0; q < 32; ++q) to[g + q] = from[g + column[q]] * scale;
    }
}

// What lets a panel of 16 k leave out saturations that cannot change anything (its vrangeps are
// a large part of the chain's cost), from A's and B's largest magnitudes in each panel and the sum
// of A's (all unscaled):
//   - the products' saturation, where the largest |a| times the largest |b| is at most the
//     largest product;
//   - the accumulator's, where no |acc| within the chunk can pass the largest value. A step
//     makes |acc| at most (|acc| + |p|) u + min_normal, u = 1 + 2^-7 (rounding adds less than
//     2^-8 of a magnitude, the raise to min_normal less than min_normal), so m steps from a bound
//     B at most (B + sum |p| + m min_normal) u^m. The chunks' totals are always saturated.
constexpr std::int64_t saturation_panel = 16;
struct panel_bounds {
    const float* a_largest = nullptr;  // row r's panels at a_largest + r * stride ...
    const float* a_sum = nullptr;      // ... and at a_sum + r * stride
    std::ptrdiff_t stride = 0;
    const float* b_largest = nullptr;  // the block's panels
};

// Which saturations the panels of a chunk need, for Rows rows of A: for_each_panel(start, end, f)
// calls f(needed, k0, k1) for each part [k0, k1) of the chunk in a panel, in order. (Used by both
// scaled chains.)
class chunk_saturations {
  public:
    struct needed {
        bool products, accumulator;
    };
    chunk_saturations(const scaled_chain& op, const panel_bounds& bounds, int rows) : op_(op), bounds_(bounds), rows_(rows) {
        growth_[0] = 1;  // u^m
        for (int m = 1; m <= saturation_panel; ++m) growth_[m] = growth_[m - 1] * (1 + 0x1p-7);
    }
    template <class F>
    void for_each_panel(std::int64_t start, std::int64_t end, F&& f) {
        bound_ = 0;
        for (std::int64_t k0 = start; k0 < end;) {
            const std::int64_t k1 = std::min(end, (k0 / saturation_panel + 1) * saturation_panel);
            f(panel(k0, k1), k0, k1);
            k0 = k1;
        }
    }

  private:
    needed panel(std::int64_t k0, std::int64_t k1) {
        const std::int64_t panel = k0 / saturation_panel;
        double a_largest = 0, a_sum = 0;
        for (int r = 0; r < rows_; ++r) {
            a_largest = std::max(a_largest, double(bounds_.a_largest[r * bounds_.stride + panel]));
            a_sum = std::max(a_sum, double(bounds_.a_sum[r * bounds_.stride + panel]));
        }
        const double b_largest = bounds_.b_largest[panel], steps = double(k1 - k0);
        const bool products_saturate = op_.product_saturates && a_largest * b_largest > op_.product_limit;
        const double products = products_saturate ? std::min(a_sum * b_largest, steps * op_.product_limit)
                                                  : a_sum * b_largest;
        bound_ = (bound_ + products + steps * op_.min_normal) * growth_[k1 - k0];
        return {products_saturate, bound_ > op_.accumulator_limit};
    }

    const scaled_chain& op_;
    const panel_bounds& bounds_;
    int rows_;
    double growth_[saturation_panel + 1];
    double bound_ = 0;  // on |acc| (see panel_bounds)
};

// chain(products_saturate, accumulator_saturates, k0, k1) with the two as std::bool_constant, so
// that each of the four chains is compiled without the saturations it does not need.
template <class Chain>
[[gnu::always_inline]] inline void with_saturations(chunk_saturations::needed needed, Chain&& chain, std::int64_t k0,
                                                    std::int64_t k1) {
    if (needed.products) {
        if (needed.accumulator) chain(std::true_type{}, std::true_type{}, k0, k1);
        else chain(std::true_type{}, std::false_type{}, k0, k1);
    } else {
        if (needed.accumulator) chain(std::false_type{}, std::true_type{}, k0, k1);
        else chain(std::false_type{}, std::false_type{}, k0, k1);
    }
}

// Rows rows of A (a, lda) times a block of 64 columns of B (b, ldb; laid out by lay_out_scaled),
// over n = K elements in chunks of `chunk` (each a sequential chain, or with Pairwise an adder
// tree of at most 64 leaves), the chunks' results accumulated in order by the same rounding
// (the paper's setup): out[r * 64 + l] = output l of row r, unscaled, in
// column order, with a zero's sign as above. unknown[r] gets the columns (bit l for column l) of
// row r whose zero's sign is not known, to recompute.
//
// With Count (sequential chains), the events are added to *events. The counted chain runs without
// flush-to-zero, so that every sum is exact, and flushes products with a compare (below
// product_from): a sum that cancels to below 2^-126 must be seen as non-zero to be counted as an
// inexact rounding.
template <rounding Mode, bool Pairwise, int Rows, bool Count = false, bool Truncate = false>
void scaled_chunks_pass(const float* a, std::ptrdiff_t lda, const float* b, std::ptrdiff_t ldb, std::int64_t n,
                        std::int64_t chunk, const scaled_chain& op, const panel_bounds& bounds, float* out,
                        std::uint64_t* unknown, scaled_events* events = nullptr);

#if defined(__AVX512F__) && defined(__AVX512DQ__)

template <rounding Mode, bool Pairwise, int Rows, bool Count, bool Truncate>
void scaled_chunks_pass(const float* a, std::ptrdiff_t lda, const float* b, std::ptrdiff_t ldb, std::int64_t n,
                        std::int64_t chunk, const scaled_chain& op, const panel_bounds& bounds, float* out,
                        std::uint64_t* unknown, scaled_events* events) {
    static_assert(Mode == rounding::toward_zero || (Mode == rounding::nearest_even && has_bf16_rounding));
    static_assert(!Count || !Pairwise, "events are counted on sequential chains");
    const unsigned saved_csr = _mm_getcsr();
    // every exception masked, round to nearest, no denormals-are-zero; flush to zero where not
    // counting (see above)
    _mm_setcsr(Count ? 0x1F80u : 0x9F80u);
    const __m512 product_max = _mm512_set1_ps(op.product_max), accumulator_max = _mm512_set1_ps(op.accumulator_max);
    const __m512 raised_to = _mm512_set1_ps(op.raised_to);
    const __m512i kept_from = _mm512_set1_epi32(int(op.kept_from_shifted)), cut = _mm512_set1_epi32(int(op.cut));
    constexpr int min_magnitude = 0x02, max_magnitude = 0x03;  // vrangeps: with the first operand's sign

    // The counted chain's counters, per lane (equal: per 16-bit lane in nearest_even, whose
    // results are compared as bf16 pairs; moved into equal_wide after each panel).
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i overflow_from = _mm512_set1_epi32(int(op.overflow_from_shifted));
    const __m512i max_shifted = _mm512_set1_epi32(int(std::bit_cast<std::uint32_t>(op.accumulator_max) << 1));
    const __m512i product_max_shifted = _mm512_set1_epi32(int(std::bit_cast<std::uint32_t>(op.product_max) << 1));
    const __m512i product_from = _mm512_set1_epi32(int(op.product_from_shifted));
    const __m512i product_cut = _mm512_set1_epi32(int(op.product_cut));
    // the product's rounding toward zero (normal values: flushed or clamped apart from this)
    const auto truncated = [&](__m512 p) {
        if constexpr (Truncate) p = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(p), product_cut));
        return p;
    };
    __m512i kept_products = _mm512_setzero_si512(), zero_chunk_results = kept_products, equal = kept_products,
            equal_wide = kept_products, inexact = kept_products, accumulator_overflows = kept_products,
            product_overflows = kept_products;
    const auto count = [&](__m512i& counter, __mmask16 which) { counter = _mm512_mask_add_epi32(counter, which, counter, one); };

    // acc = the accumulator's rounding of s, for a row's four vectors, saturated or not; with
    // Count, its events, old being the running sums that s added to.
    const auto round = [&](auto saturates, __m512(&s)[4], [[maybe_unused]] const __m512(&old)[4], __m512(&acc)[4]) {
        constexpr bool saturate = decltype(saturates)::value;
        for (int v = 0; v < 4; ++v) {
            const __m512i shifted = _mm512_slli_epi32(_mm512_castps_si512(s[v]), 1);
            const __mmask16 kept = _mm512_cmpge_epu32_mask(shifted, kept_from);
            if constexpr (Count && saturate) count(accumulator_overflows, _mm512_cmpge_epu32_mask(shifted, overflow_from));
            if constexpr (Mode == rounding::toward_zero) {
                const __m512 cut_sum = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(s[v]), cut));
                acc[v] = saturate ? _mm512_maskz_range_ps(kept, cut_sum, accumulator_max, min_magnitude)
                                  : _mm512_maskz_mov_ps(kept, cut_sum);
                if constexpr (Count) {
                    count(inexact, _mm512_cmp_ps_mask(acc[v], s[v], _CMP_NEQ_UQ));
                    count(equal, _mm512_cmp_ps_mask(acc[v], old[v], _CMP_EQ_OQ));
                }
            } else if constexpr (Count) {
                // A flushed sum becomes the smallest subnormal where it is not zero: the bf16
                // rounding gives it 0 all the same, and its low bits show that it changed, as
                // they show every other inexact rounding but a saturation's.
                const __m512 marked = _mm512_castsi512_ps(_mm512_min_epu32(shifted, one));
                s[v] = _mm512_mask_range_ps(marked, kept, s[v], raised_to, max_magnitude);
                __mmask16 changed = 0;
                if constexpr (saturate) {
                    changed = _mm512_cmpgt_epu32_mask(shifted, max_shifted);
                    s[v] = _mm512_range_ps(s[v], accumulator_max, min_magnitude);
                }
                count(inexact, _kor_mask16(changed, _mm512_test_epi32_mask(_mm512_castps_si512(s[v]), _mm512_set1_epi32(0xFFFF))));
            } else {
                // A sum that rounds up to the smallest normal is raised to the tie below it,
                // which rounds there. Saturating before the rounding gives the same as after:
                // the largest value is on the grid.
                s[v] = _mm512_maskz_range_ps(kept, s[v], raised_to, max_magnitude);
                if constexpr (saturate) s[v] = _mm512_range_ps(s[v], accumulator_max, min_magnitude);
            }
        }
        if constexpr (Mode == rounding::nearest_even) {
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
            const __m512i high_half = _mm512_set1_epi32(int(0xFFFF0000u));
            for (int v = 0; v < 4; v += 2) {
                const __m512i rounded = __m512i(_mm512_cvtne2ps_pbh(s[v + 1], s[v]));
                if constexpr (Count) {  // the running sums, in the same lanes (exact: on the grid)
                    const __m512i before = __m512i(_mm512_cvtne2ps_pbh(old[v + 1], old[v]));
                    equal = _mm512_mask_add_epi16(equal, _mm512_cmpeq_epi16_mask(rounded, before), equal,
                                                  _mm512_set1_epi16(1));
                }
                acc[v] = _mm512_castsi512_ps(_mm512_slli_epi32(rounded, 16));
                acc[v + 1] = _mm512_castsi512_ps(_mm512_and_si512(rounded, high_half));
            }
#endif
        }
    };
    // (16-bit counts reach at most 4 Rows a step: moved out after each panel of 16)
    const auto widen_equal = [&] {
        if constexpr (Count && Mode == rounding::nearest_even) {
            equal_wide = _mm512_add_epi32(equal_wide, _mm512_cvtepu16_epi32(_mm512_castsi512_si256(equal)));
            equal_wide = _mm512_add_epi32(equal_wide, _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(equal, 1)));
            equal = _mm512_setzero_si512();
        }
    };

    // acc = the chain over k in [k0, k1), with or without the two saturations
    __m512 acc[Rows][4];
    const auto chain = [&](auto products_saturate, auto accumulator_saturates, std::int64_t k0, std::int64_t k1) {
        for (std::int64_t k = k0; k < k1; ++k) {
            const float* bk = b + k * ldb;
            const __m512 bv[4] = {_mm512_loadu_ps(bk), _mm512_loadu_ps(bk + 16), _mm512_loadu_ps(bk + 32),
                                  _mm512_loadu_ps(bk + 48)};
            for (int r = 0; r < Rows; ++r) {
                const __m512 ak = _mm512_set1_ps(a[r * lda + k]);
                __m512 s[4], old[4];
                for (int v = 0; v < 4; ++v) {
                    __m512 p = _mm512_mul_ps(ak, bv[v]);  // exact, or flushed below 2^-126
                    // (the compiler must not fuse the multiply and the add into an FMA, which
                    // would not flush the product)
                    __asm__("" : "+v"(p));
                    p = truncated(p);
                    if constexpr (Count) {  // (no flush-to-zero: the compare flushes)
                        const __m512i p_shifted = _mm512_slli_epi32(_mm512_castps_si512(p), 1);
                        const __mmask16 kept_product = _mm512_cmpge_epu32_mask(p_shifted, product_from);
                        count(kept_products, kept_product);
                        if constexpr (decltype(products_saturate)::value)
                            count(product_overflows, _mm512_cmpgt_epu32_mask(p_shifted, product_max_shifted));
                        p = _mm512_maskz_mov_ps(kept_product, p);
                    }
                    if constexpr (decltype(products_saturate)::value) p = _mm512_range_ps(p, product_max, min_magnitude);
                    old[v] = acc[r][v];
                    s[v] = _mm512_add_ps(acc[r][v], p);  // exact (see fast_gemm)
                }
                round(accumulator_saturates, s, old, acc[r]);
            }
        }
    };

    chunk_saturations saturations(op, bounds, Rows);

    __m512 total[Rows][4], last_total[Rows][4];
    for (auto& row : total)
        for (auto& v : row) v = _mm512_setzero_ps();
    std::int64_t chunks = 0;
    // Pairwise: acc = the tree over k in [k0, k1), of width leaves (those past k1 zero), every
    // sum rounded and saturated.
    struct node {
        __m512 v[Rows][4];
    };
    node acc_node;
    const auto leaf = [&](auto products_saturate, std::int64_t k, std::int64_t k1) {
        node x;
        for (int r = 0; r < Rows; ++r)
            for (int v = 0; v < 4; ++v) {
                if (k < k1) {
                    __m512 p = _mm512_mul_ps(_mm512_set1_ps(a[r * lda + k]), _mm512_loadu_ps(b + k * ldb + 16 * v));
                    __asm__("" : "+v"(p));  // (no FMA: see chain)
                    p = truncated(p);
                    if constexpr (decltype(products_saturate)::value) p = _mm512_range_ps(p, product_max, min_magnitude);
                    x.v[r][v] = p;
                } else {
                    x.v[r][v] = _mm512_setzero_ps();
                }
            }
        return x;
    };
    const auto merge = [&](const node& x, const node& y) {
        node z;
        for (int r = 0; r < Rows; ++r) {
            __m512 s[4];
            for (int v = 0; v < 4; ++v) s[v] = _mm512_add_ps(x.v[r][v], y.v[r][v]);  // exact
            round(std::true_type{}, s, s, z.v[r]);
        }
        return z;
    };
    // A whole tree of Width leaves, unrolled (its values stay in registers), ...
    const auto full_tree = [&](auto self, auto products_saturate, auto width, std::int64_t k) -> node {
        if constexpr (decltype(width)::value == 1) {
            return leaf(products_saturate, k, k + 1);
        } else {
            constexpr std::int64_t half = decltype(width)::value / 2;
            const node left = self(self, products_saturate, std::integral_constant<std::int64_t, half>{}, k);
            return merge(left, self(self, products_saturate, std::integral_constant<std::int64_t, half>{}, k + half));
        }
    };
    // ... or any, as a binary counter: a stack holds a node per level, and a new node merges with
    // the one of its level below it, which keeps the tree's pairs.
    const auto tree = [&](auto products_saturate, std::int64_t k0, std::int64_t k1, std::int64_t width) {
        using std::integral_constant;
        if (k1 - k0 == width) {
            switch (width) {
                case 8: acc_node = full_tree(full_tree, products_saturate, integral_constant<std::int64_t, 8>{}, k0); return;
                case 16: acc_node = full_tree(full_tree, products_saturate, integral_constant<std::int64_t, 16>{}, k0); return;
                default: break;
            }
        }
        constexpr int max_levels = 7;  // (width <= 64)
        node stack[max_levels];
        int level_of[max_levels], height = 0;
        for (std::int64_t t = 0; t < width; ++t) {
            node x = leaf(products_saturate, k0 + t, k1);
            int level = 0;
            for (; height > 0 && level_of[height - 1] == level; ++level) x = merge(stack[--height], x);
            stack[height] = x;
            level_of[height++] = level;
        }
        acc_node = stack[0];
    };

    for (std::int64_t start = 0; start < n; start += chunk, ++chunks) {
        const std::int64_t end = start + chunk < n ? start + chunk : n;
        for (auto& row : acc)
            for (auto& v : row) v = _mm512_setzero_ps();
        bool any_products_saturate = false;
        saturations.for_each_panel(start, end, [&](chunk_saturations::needed needed, std::int64_t k0, std::int64_t k1) {
            any_products_saturate = any_products_saturate || needed.products;
            if constexpr (!Pairwise) {
                with_saturations(needed, chain, k0, k1);
                widen_equal();
            }
        });
        if constexpr (Pairwise) {
            const auto width = std::int64_t(std::bit_ceil(std::uint64_t(end - start)));
            if (any_products_saturate) tree(std::true_type{}, start, end, width);
            else tree(std::false_type{}, start, end, width);
            for (int r = 0; r < Rows; ++r)
                for (int v = 0; v < 4; ++v) acc[r][v] = acc_node.v[r][v];
        }
        for (int r = 0; r < Rows; ++r) {
            __m512 s[4];
            for (int v = 0; v < 4; ++v) {
                last_total[r][v] = total[r][v];
                s[v] = _mm512_add_ps(total[r][v], acc[r][v]);
                if constexpr (Count) count(zero_chunk_results, _mm512_cmp_ps_mask(acc[r][v], _mm512_setzero_ps(), _CMP_EQ_OQ));
            }
            round(std::true_type{}, s, last_total[r], total[r]);
        }
        widen_equal();
    }
    _mm_setcsr(saved_csr);
    if constexpr (Count) {
        // (each lane's counts are at most 8 per step: 32 bits hold them for any practical K)
        const auto sum = [](__m512i counter) {
            return std::uint64_t(_mm512_reduce_add_epi64(_mm512_cvtepu32_epi64(_mm512_castsi512_si256(counter)))) +
                   std::uint64_t(_mm512_reduce_add_epi64(_mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(counter, 1))));
        };
        events->kept_products += sum(kept_products);
        events->zero_chunk_results += sum(zero_chunk_results);
        events->equal += sum(Mode == rounding::nearest_even ? equal_wide : equal);
        events->inexact += sum(inexact);
        events->accumulator_overflows += sum(accumulator_overflows);
        events->product_overflows += sum(product_overflows);
    }

    const float unscale = std::ldexp(1.0f, -op.scale);  // (within fp32's normal range: exact)
    for (int r = 0; r < Rows; ++r) {
        unknown[r] = 0;
        alignas(64) float lanes[64], totals[64], chunk_results[64];
        for (int v = 0; v < 4; ++v) {
            _mm512_store_ps(lanes + 16 * v, _mm512_mul_ps(total[r][v], _mm512_set1_ps(unscale)));
            _mm512_store_ps(totals + 16 * v, last_total[r][v]);
            _mm512_store_ps(chunk_results + 16 * v, acc[r][v]);
        }
        for (int g = 0; g < 64; g += 32)
            for (int q = 0; q < 32; ++q) {
                // (the last sum is one rounding behind the total)
                const bool pairs = Mode == rounding::nearest_even;
                const int column = pairs ? pair_column(chunks, q) : q;
                const int last = g + (pairs ? pair_position(chunks - 1, column) : q);
                const float x = lanes[g + q], sum = totals[last] + chunk_results[last];  // (exact)
                out[r * 64 + g + column] = x != 0 ? x : std::copysign(0.0f, sum != 0 ? sum : 1.0f);  // (x - x = +0)
                if (x == 0 && totals[last] == 0 && chunk_results[last] == 0) unknown[r] |= std::uint64_t(1) << (g + column);
            }
    }
}

#endif

}  // namespace lowbit::detail

LOWBIT_END_INTRINSICS
