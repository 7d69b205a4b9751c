// lowbit/datapath/portable_chain.hpp: the sequential chain of scaled_chain.hpp for instruction
// sets without AVX-512 (AVX2, SSE2), on GCC/Clang vectors of the widest registers the build has,
// for the same flush-and-saturate accumulators (the paper's) in nearest_even with any number of
// mantissa bits, or in toward_zero. Such a format (smallest normal M, step q = M 2^-m there)
// rounds a sum below M on the grid of q, as if it had subnormals, and flushes what is left below
// M: in nearest_even a sum from M - q/2 up becomes M, in toward_zero none. The processor's
// flush-to-zero, set for the call, does both flushes, each at fp32's 2^-126, with the sign of
// its zero as the formats do:
//   - products run scaled so that their flush point (a power of two) is 2^-126: the multiply
//     flushes below it;
//   - the accumulator is kept scaled 2^d lower (d: the exponents from the products' flush point
//     up to M), where M is 2^-126. A step makes the sum at the products' scale (acc * 2^d + p:
//     exact, one FMA; a sum below 2^-126 <= M / 2 is flushed there, as the format does), rounds
//     it there, and multiplies the result back by 2^-d, which flushes it where it is below M.
//     In nearest_even the binade below M is rounded on steps of q/2, not q: of the sums in
//     [M - q/2, M), which must give M, those short of M - q/4 give M - q/2. They are the sums
//     that cut to that grid are M - q/2 (one compare), and one step up with the step's bit
//     cleared makes M of both results (two more instructions).
//   - With d = 0 (the same flush point) the add itself flushes below M: the format's rule in
//     toward_zero, and in nearest_even where every product kept, and so every sum, is a multiple
//     of q (then the sums below M are at most M - q: portable_chain_for checks it).
// The rest of a step is the rounding of a normal float's bits:
//   - nearest_even to 24 - s significant bits: (bits + 2^(s-1) - 1 + bit s) with the low s bits
//     cleared: five integer instructions (the carry moves into the exponent where it should);
//   - toward_zero: the low bits cleared, one instruction;
//   - the saturations (clamps of the product and of the rounded sum: the largest value is on the
//     grid, so clamping after the rounding is the same as before) only in the panels whose
//     bounds show that they can act (chunk_saturations).
// So 13 (nearest_even) or 4 (toward_zero) vector instructions per register of MACs, against 16
// (11) on the auto-vectorized chain (README "Measured" has the times). Unlike the AVX-512 chain, every zero keeps the sign the general chain gives it (the sums are IEEE
// additions from the same starts: +0 for a chunk, -0 for the total), so no output is recomputed.
#pragma once

#include <lowbit/datapath/intrinsics_warnings.hpp>
#include <lowbit/datapath/scaled_chain.hpp>
#include <lowbit/rounding/modes.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <immintrin.h>  // MXCSR's flush-to-zero bit; min and max
#endif

LOWBIT_BEGIN_INTRINSICS

namespace lowbit::detail {

#if defined(__SSE2__)
inline constexpr bool has_portable_chain = true;
#else
inline constexpr bool has_portable_chain = false;  // (no flush-to-zero control here)
#endif

// Floats per vector register: the chain keeps 4 registers per row of A in flight.
#if defined(__AVX512F__)
inline constexpr int portable_lanes = 16;
#elif defined(__AVX__)
inline constexpr int portable_lanes = 8;
#else
inline constexpr int portable_lanes = 4;
#endif

// Rows (1 or 2) rows of A (a, lda) times a block of 64 columns of B (b, ldb; scaled by 2^op.scale,
// in column order), over n = K elements in chunks of `chunk`, each a sequential chain from +0
// whose result the same rounding adds to the total (from -0): out[r * 64 + l] = output l of row
// r, unscaled. unknown[r] = 0 (no zero of unknown sign); no events. (The accumulator's values run
// scaled by 2^(op.scale - op.rescale), its largest value and the products' by 2^op.scale.)
// With ExactTotal, the chunk accumulator is unset instead: the chunks' results are added exactly
// in double (from -0; lane_reduction's exact sums, exact_sums::total), rounded to float at the end.
template <rounding Mode, int Rows, bool Truncate, bool ExactTotal = false>
void portable_chunks_pass(const float* a, std::ptrdiff_t lda, const float* b, std::ptrdiff_t ldb, std::int64_t n,
                          std::int64_t chunk, const scaled_chain& op, const panel_bounds& bounds, float* out,
                          std::uint64_t* unknown, scaled_events* /*events*/) {
    static_assert(Mode == rounding::toward_zero || Mode == rounding::nearest_even);
#if defined(__SSE2__)
    typedef float lane_floats __attribute__((vector_size(4 * portable_lanes)));
    typedef std::uint32_t lane_bits __attribute__((vector_size(4 * portable_lanes)));
    // (B's rows read through this type: unaligned, and a load a multiply takes as its operand,
    // where a copy into an array would go through the stack)
    typedef float unaligned_floats __attribute__((vector_size(4 * portable_lanes), aligned(4), may_alias));
    typedef double lane_doubles __attribute__((vector_size(8 * portable_lanes)));
    alignas(64) double exact[ExactTotal ? Rows * 64 : 1];  // (ExactTotal) the totals, unscaled
    constexpr int per_row = 4, group = per_row * portable_lanes;  // columns in flight
    static_assert(64 % group == 0);

    const unsigned saved_csr = _mm_getcsr();
    _mm_setcsr(0x9F80u);  // every exception masked, round to nearest, flush to zero
    const lane_floats product_max = lane_floats{} + op.product_max, accumulator_max = lane_floats{} + op.accumulator_max;
    const lane_bits product_cut = lane_bits{} + op.product_cut, cut = lane_bits{} + op.cut;
    const lane_floats up = lane_floats{} + std::ldexp(1.0f, op.rescale), down = lane_floats{} + std::ldexp(1.0f, -op.rescale);
    const unsigned shift = op.dropped_bits;
    const lane_bits half_less_one = lane_bits{} + ((1u << shift) >> 1) - (shift > 0 ? 1u : 0u);
    const lane_bits kept = lane_bits{} + (~0u << shift), one = lane_bits{} + 1u;
    const lane_bits kept_magnitude = lane_bits{} + ((~0u << shift) & 0x7FFFFFFFu), step_below = lane_bits{} + (1u << shift);
    const lane_bits below_min_normal = lane_bits{} + op.below_min_normal;
    // (the instructions' min and max: g++ makes a compare and a blend of vector conditionals)
    const auto clamp = [](lane_floats x, const lane_floats& max) {
#if defined(__AVX512F__)
        return lane_floats(_mm512_max_ps(_mm512_min_ps(__m512(x), __m512(max)), __m512(-max)));
#elif defined(__AVX__)
        return lane_floats(_mm256_max_ps(_mm256_min_ps(__m256(x), __m256(max)), __m256(-max)));
#else
        return lane_floats(_mm_max_ps(_mm_min_ps(__m128(x), __m128(max)), __m128(-max)));
#endif
    };
    const auto round = [&](auto saturates, lane_floats s) {
        lane_bits bits = (lane_bits)s;
        if constexpr (Mode == rounding::nearest_even) {
            // The format rounds a sum below M on the grid of M's own step q (as a subnormal
            // would be), so that those from M - q/2 up give M; on the finer grid of the binade
            // below M (steps q/2), the ones short of M - q/4 give M - q/2 instead (flushed).
            // Those sums cut to that grid are M - q/2, and rounded they are M - q/2 or M:
            // one step (q/2) up, with that step's bit cleared, makes either M.
            const lane_bits fix = lane_bits((bits & kept_magnitude) == below_min_normal) & step_below;
            bits = (bits + (half_less_one + ((bits >> shift) & one))) & kept;
            bits = (bits + fix) & ~fix;
        } else {
            bits &= cut;
        }
        s = (lane_floats)bits;
        if constexpr (decltype(saturates)::value) s = clamp(s, accumulator_max);
        return s;
    };
    const auto splat = [](float x) {  // (a loop of lane stores may become one insert per lane)
#if defined(__AVX512F__)
        return lane_floats(_mm512_set1_ps(x));
#elif defined(__AVX__)
        return lane_floats(_mm256_set1_ps(x));
#else
        return lane_floats(_mm_set1_ps(x));
#endif
    };

    chunk_saturations saturations(op, bounds, Rows);
    const double unscale = std::ldexp(1.0, op.rescale - op.scale);  // (the output: exact)
    for (int g = 0; g < 64; g += group) {
        lane_floats total[Rows][per_row], acc[Rows][per_row];
        lane_doubles exact_total[ExactTotal ? Rows : 1][per_row];
        for (auto& row : total)
            for (auto& v : row) v = splat(-0.0f);
        for (auto& row : exact_total)
            for (auto& v : row) v = -lane_doubles{};
        // acc = the chain over k in [k0, k1), with or without the two saturations (on a local
        // copy, unrolled: the sums stay in registers)
        const auto chain = [&](auto products_saturate, auto accumulator_saturates, std::int64_t k0, std::int64_t k1) {
            lane_floats x[Rows][per_row];
#pragma GCC unroll 8
            for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
                for (int v = 0; v < per_row; ++v) x[r][v] = acc[r][v];
            for (std::int64_t k = k0; k < k1; ++k) {
                const auto* bv = reinterpret_cast<const unaligned_floats*>(b + k * ldb + g);
#pragma GCC unroll 8
                for (int r = 0; r < Rows; ++r) {
                    const lane_floats ak = splat(a[r * lda + k]);
#pragma GCC unroll 4
                    for (int v = 0; v < per_row; ++v) {
                        lane_floats p = ak * bv[v];  // exact, or flushed below 2^-126
                        // (the compiler must not fuse the multiply and the add into an FMA,
                        // which would not flush the product)
                        __asm__("" : "+x"(p));
                        if constexpr (Truncate) p = (lane_floats)((lane_bits)p & product_cut);
                        if constexpr (decltype(products_saturate)::value) p = clamp(p, product_max);
                        x[r][v] = round(accumulator_saturates, x[r][v] * up + p) * down;  // (the sum: exact)
                    }
                }
            }
#pragma GCC unroll 8
            for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
                for (int v = 0; v < per_row; ++v) acc[r][v] = x[r][v];
        };
        for (std::int64_t start = 0; start < n; start += chunk) {
            const std::int64_t end = start + chunk < n ? start + chunk : n;
            for (auto& row : acc)
                for (auto& v : row) v = lane_floats{};
            saturations.for_each_panel(start, end, [&](chunk_saturations::needed needed, std::int64_t k0,
                                                       std::int64_t k1) { with_saturations(needed, chain, k0, k1); });
            for (int r = 0; r < Rows; ++r)
                for (int v = 0; v < per_row; ++v) {
                    if constexpr (ExactTotal)  // (a power of two times a normal float or zero: exact)
                        exact_total[r][v] += __builtin_convertvector(acc[r][v], lane_doubles) * unscale;
                    else
                        total[r][v] = round(std::true_type{}, total[r][v] * up + acc[r][v] * up) * down;
                }
        }
        for (int r = 0; r < Rows; ++r)
            for (int v = 0; v < per_row; ++v)
                for (int l = 0; l < portable_lanes; ++l) {
                    if constexpr (ExactTotal) exact[r * 64 + g + v * portable_lanes + l] = exact_total[r][v][l];
                    else out[r * 64 + g + v * portable_lanes + l] = float(double(total[r][v][l]) * unscale);
                }
    }
    _mm_setcsr(saved_csr);
    if constexpr (ExactTotal)  // (rounded with the caller's MXCSR: no flush)
        for (int i = 0; i < Rows * 64; ++i) out[i] = float(exact[i]);
    for (int r = 0; r < Rows; ++r) unknown[r] = 0;
#else
    (void)a, (void)lda, (void)b, (void)ldb, (void)n, (void)chunk, (void)op, (void)bounds, (void)out, (void)unknown;
#endif
}

}  // namespace lowbit::detail

LOWBIT_END_INTRINSICS
