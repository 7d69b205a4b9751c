// lowbit/datapath/fast_datapath.hpp: the vectorized GEMM path, used where it provably equals the
// exact one (exact_datapath.hpp).
//
// Sixty-four outputs of a row of C are computed together, one per vector lane (four AVX-512
// vectors, so four independent accumulator chains hide each rounding's latency), with the running
// accumulators kept in registers across k (register blocking). For light operations (an elided
// product rounding, the flush-and-saturate accumulator) products and accumulation run in one
// loop; otherwise in two passes over panels of k, products into a small buffer and then the
// accumulator chain over it. The passes are instantiated per operation type and chosen once per
// call, so their loops have no branch on the configuration.
//
// The path is taken only when every value is a float and every step can be done in fp32
// exactly:
//   - inputs: float input quantizers whose products are exact in fp32 (significands of at most
//     24 bits together, no underflow below fp32's subnormals, no overflow), and finite data.
//     Wider products (fp32 inputs) are taken where they need not be floats: rounded by a product
//     quantizer on fp32's grid in nearest_even, which fp32's multiply is (on_fp32_grid_nearest),
//     or unrounded in sequential and fma chains, as doubles (double_product_gemm);
//   - an addend (gemm_add's C, finite) starts the first chunk's chain or the chunk sums, as
//     another term of them;
//   - product: unset (the exact fp32 product), or a float format: when every exact product of
//     two input values already lies on its grid (the input significands fit its mantissa and
//     its smallest step divides theirs), rounding reduces to the range check (overflow and
//     flush), which is elided; otherwise the full rounding kernel runs on the exact product;
//   - accumulator and chunk accumulator: float formats in a deterministic mode where the fp32
//     sum of any accumulator value and any addend is exact or overflows alike: every value is a
//     multiple of 2^L (L the smallest grid step among them), sums below the accumulator's top
//     binade 2^H need H - L <= 24 bits, and sums at or above 2^H overflow whether rounded or
//     not. Or, for wider spans (MxE5 accumulators), formats of at most 21 mantissa bits whose
//     values are floats: each fp32 sum is then rounded to odd before the format's rounding
//     (odd_sum), which equals rounding the exact sum; formats with subnormals (fp16, bf16, e5m2)
//     then round on the sum's bits (round_shift, shift_rounding.hpp, which also holds their
//     AVX-512 chain). Or fp32 itself in nearest_even, which is the hardware's own addition, and
//     formats on fp32's grid in nearest_even (fp32 without subnormals: the addition, then a flush).
//     round_shift and the flush-and-saturate rounding take a sum beyond the largest value as an
//     overflow: where products (or the accumulator, for the chunk sums) may be infinite or NaN,
//     the flush-and-saturate rounding is not used, and round_shift only where the accumulator
//     rounds such an infinity as it rounds an overflow.
//   - models: sequential and fma as above; pairwise (the same sums, as a tree over the chunk's
//     products); fused (the chunk's products summed in double, exact when they fit 53 bits, then
//     rounded once); aligned (terms that are normal floats or zero, cut on their bits, and a
//     group's cut sum that fits 24 bits).
// For an accumulator without subnormals that saturates (the paper's M7E4), the rounding itself
// is specialised: a constant shift for normal sums and one comparison for the flush region. On
// AVX-512, such chains in toward_zero, or in nearest_even with 7 mantissa bits, run in the
// hand-written kernel of scaled_chain.hpp (two to three times faster), where it applies.
// Events (gemm_stats) are counted in the lanes of every sequential, fma and pairwise reduction
// they run (the counted passes: TwoSum's error tells an inexact sum, the rare sums at the top of
// the range are settled lane by lane), and within the one-loop chains and the AVX-512 chain for
// flush-and-saturate accumulators (counts_events); the results are the same bits with or without
// them. Per-product records (record_lost), fused and aligned models, a product rounding that
// cannot report its events, stochastic rounding and integer quantizers take the exact path.
#pragma once

#include <lowbit/datapath/gemm_report.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/datapath/reused_buffer.hpp>
#include <lowbit/formats/format_names.hpp>
#include <lowbit/datapath/portable_chain.hpp>
#include <lowbit/datapath/scaled_chain.hpp>
#include <lowbit/datapath/shift_rounding.hpp>
#include <lowbit/datapath/thread_count.hpp>
#include <lowbit/datapath/tile_pool.hpp>
#include <lowbit/rounding/exact_ops.hpp>
#include <lowbit/rounding/rounding_plan.hpp>
#include <lowbit/datapath/intrinsics_warnings.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <type_traits>
#include <variant>
#include <vector>


LOWBIT_BEGIN_INTRINSICS

namespace lowbit::detail {

// Outputs per block: four AVX-512 vectors (eight AVX2), so that four independent accumulator
// chains hide the latency of each rounding step.
constexpr int fast_lanes = 64;
constexpr int fast_panel = 32;  // k per product buffer (8 KiB: stays in L1)

// The chunk accumulator's totals of a block of outputs, before the first chunk: -0, addition's
// identity (gemm_spec.hpp), so that a chunk's result passes with the sign of its zero.
struct chunk_totals {
    alignas(64) float lanes[fast_lanes];
    chunk_totals() { std::fill_n(lanes, fast_lanes, -0.0f); }
    operator float*() { return lanes; }
};

// ---- the operations, each on one lane ----

// Each operation also has a counted form that reports its events as 0/1 integers, so that
// counting them vectorizes too (only for the operations where counts_events holds, below).

struct product_exact {  // unset product quantizer
    [[gnu::always_inline]] float operator()(float x) const { return x; }
    [[gnu::always_inline]] float counted(float x, std::uint32_t& overflowed, std::uint32_t& underflowed) const {
        overflowed = underflowed = 0;
        return x;
    }
};

// A product already on the format's grid: only overflow and flush can change it. Saturating
// overflow (the usual case) is a clamp of the magnitude's bits, and the flush a select on them:
// the sign is put back last, so a flushed product is a zero of its sign.
template <bool Saturating>
struct product_range;

template <>
struct product_range<true> {
    std::uint32_t max_finite_bits, flush_below_bits;  // of magnitudes
    [[gnu::always_inline]] float operator()(float x) const {
        std::uint32_t overflowed, underflowed;
        return counted(x, overflowed, underflowed);
    }
    // (x is on the grid: it overflows when beyond the largest finite value, and underflows when
    // non-zero and flushed)
    [[gnu::always_inline]] float counted(float x, std::uint32_t& overflowed, std::uint32_t& underflowed) const {
        const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
        const std::uint32_t sign = bits & 0x80000000u, magnitude = bits ^ sign;
        // (a mask rather than a conditional, which g++ turns into a branch and does not vectorize)
        const std::uint32_t keep = 0u - std::uint32_t(magnitude >= flush_below_bits);
        const std::uint32_t kept = std::min(magnitude, max_finite_bits) & keep;
        overflowed = std::uint32_t(magnitude > max_finite_bits);
        underflowed = std::uint32_t(magnitude != 0) & ~keep & 1u;
        return std::bit_cast<float>(kept | sign);
    }
};

template <>
struct product_range<false> {  // overflow to infinity or NaN, as the mode and sign give
    float max_finite, overflow_positive, overflow_negative, flush_below;
    [[gnu::always_inline]] float operator()(float x) const {
        x = x > max_finite ? overflow_positive : x;
        x = x < -max_finite ? overflow_negative : x;
        const float zero = std::bit_cast<float>(std::bit_cast<std::uint32_t>(x) & 0x80000000u);
        return std::fabs(x) < flush_below ? zero : x;
    }
    // (x finite and on the grid, as for product_range<true>)
    [[gnu::always_inline]] float counted(float x, std::uint32_t& overflowed, std::uint32_t& underflowed) const {
        overflowed = std::uint32_t(std::fabs(x) > max_finite);
        underflowed = std::uint32_t(x != 0) & std::uint32_t(std::fabs(x) < flush_below);
        return (*this)(x);
    }
};

#if defined(__AVX512F__)
// The product operations in vector lanes, for shift_rounding.hpp's chain (odd_chunks).
inline auto product_vector(const product_exact&) {
    return [](__m512 x) { return x; };
}
inline auto product_vector(const product_range<true>& op) {
    return [max_finite = _mm512_set1_epi32(int(op.max_finite_bits)),
            flush_below = _mm512_set1_epi32(int(op.flush_below_bits))](__m512 x) {
        const __m512i bits = _mm512_castps_si512(x), sign_bit = _mm512_set1_epi32(int(0x80000000u));
        const __m512i magnitude = _mm512_andnot_si512(sign_bit, bits);
        const __mmask16 keep = _mm512_cmpge_epu32_mask(magnitude, flush_below);
        const __m512i kept = _mm512_maskz_mov_epi32(keep, _mm512_min_epu32(magnitude, max_finite));
        return _mm512_castsi512_ps(_mm512_or_si512(kept, _mm512_and_si512(bits, sign_bit)));
    };
}
#endif

// The rounding kernel of the format, for products and accumulators: the full one, or (where every
// non-zero value is a normal float, that is a multiple of 2^L with L >= -126, and the format is
// signed) the shorter one without the steps for subnormal floats and unsigned formats.
template <rounding Mode, kernel_inputs In = kernel_inputs{}>
struct round_full {
    rounding_plan<float> plan;
    rounding_plan<float> unbounded;  // the same without an upper limit: tells overflow apart

    explicit round_full(const rounding_plan<float>& p) : plan(p), unbounded(p) {
        unbounded.max_finite = std::numeric_limits<float>::infinity();
    }
    [[gnu::always_inline]] float operator()(float x) const { return round_with_plan<Mode, float, In>(x, plan); }
    // As a product rounding (x exact and finite): it overflows when x and its rounding without
    // an upper limit are beyond the largest finite value, and underflows when x != 0 becomes 0.
    [[gnu::always_inline]] float counted(float x, std::uint32_t& overflowed, std::uint32_t& underflowed) const {
        const float r = round_with_plan<Mode, float, In>(x, plan);
        const float beyond = round_with_plan<Mode, float, In>(x, unbounded);
        overflowed = std::uint32_t(std::fabs(x) > plan.max_finite) & std::uint32_t(std::fabs(beyond) > plan.max_finite);
        underflowed = std::uint32_t(x != 0) & std::uint32_t(r == 0);
        return r;
    }
};
// (Lane operations never round to an fnuz format, whose zeros are all +0: the fast path leaves
// those to the exact path, lane_refusal says so, and its kernels skip that select.)
inline constexpr kernel_inputs lane_values{.unsigned_zero = false};
inline constexpr kernel_inputs normal_values{.subnormals_of_T = false, .negative_to_zero = false, .unsigned_zero = false};
template <rounding Mode>
using round_normal = round_full<Mode, normal_values>;

struct sum_fp32 {  // fp32 nearest_even: the addition already rounded
    [[gnu::always_inline]] float operator()(float x) const { return x; }
    friend bool operator==(const sum_fp32&, const sum_fp32&) = default;
};

struct sum_fp32_saturating {  // the same, with infinities (overflowed or added) saturated
    [[gnu::always_inline]] float operator()(float x) const { return std::min(std::max(x, -FLT_MAX), FLT_MAX); }
    friend bool operator==(const sum_fp32_saturating&, const sum_fp32_saturating&) = default;
};


// x + y rounded by an accumulator operation. Where fp32's addition is exact for every pair of
// values (see the top), that is all.
template <class A>
[[gnu::always_inline]] inline float add_then(const A& step, float x, float y) {
    return step(x + y);
}

// Where it is not (an accumulator whose values span more than 24 bits, such as MxE5 formats),
// the sum is first rounded to odd in fp32: fp32's nearest sum, moved one ulp toward the exact
// sum when it was inexact and landed on an even significand (TwoSum gives the exact error).
// Rounding the round-to-odd value of a 24-bit format to a format of at most 22 significant bits
// gives the rounding of the exact sum (Boldo and Melquiond), for every mode, and comparisons with
// the format's thresholds (values of at most 23 bits) are kept; so the inner step sees what it
// would see from the exact sum.
template <class Inner>
struct odd_sum {
    Inner inner;
    friend bool operator==(const odd_sum&, const odd_sum&) = default;
};

// The unsigned integer of a float's or a double's bits.
template <class T>
using bits_of = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

// The round-to-odd value from the nearest one: `nearest` moved one ulp toward the exact value
// when `rest` (exact - nearest, exact itself) is not zero and nearest's significand is even;
// `inexact` is 0/1. An infinite or NaN nearest value stays (it is not a rounding of a finite
// rest). Written with 0/1 integers rather than bool logic and conditionals, which g++ turns into
// branches and leaves unvectorized.
template <class T, class R>
[[gnu::always_inline]] inline T odd_from_nearest(T nearest, R rest, bits_of<T>& inexact) {
    using U = bits_of<T>;
    constexpr U exponent = sizeof(T) == 4 ? U(0x7F800000u) : U(0x7FF0000000000000u);
    constexpr int sign = int(8 * sizeof(U)) - 1;
    const U bits = std::bit_cast<U>(nearest);
    inexact = U((bits & exponent) != exponent) & U(rest != 0);
    const U inexact_even = inexact & ~bits & 1u;
    const U toward_zero = U(std::bit_cast<bits_of<R>>(rest) >> (8 * sizeof(R) - 1)) ^ (bits >> sign);
    // one ulp away from zero (+1 on the magnitude's bits) or toward it (-1)
    return std::bit_cast<T>(U(bits + inexact_even - 2 * (inexact_even & toward_zero)));
}

// x + y rounded to odd in fp32 (or in double), and whether that was inexact (0/1): the nearest
// sum, with TwoSum's exact error. A sum beyond the largest value is an infinity here, not the
// largest value; the accumulator's rounding takes an infinite sum as an overflow (round_shift,
// choose_accumulator).
template <class T>
[[gnu::always_inline]] inline T sum_round_odd(T x, T y, bits_of<T>& inexact) {
    const T sum = x + y;
    const T y_part = sum - x, x_part = sum - y_part;
    const T error = (x - x_part) + (y - y_part);  // exact: x + y = sum + error
    return odd_from_nearest(sum, error, inexact);
}

template <class Inner>
[[gnu::always_inline]] inline float add_then(const odd_sum<Inner>& op, float x, float y) {
    std::uint32_t inexact;
    return op.inner(sum_round_odd(x, y, inexact));
}

// The counted forms, for finite sums: `inexact` when the result is not the exact sum. (An exact
// fp32 sum is compared as it is; a sum that fp32 rounded is not a float, so no result equals it.)
template <class A>
[[gnu::always_inline]] inline float add_then_counted(const A& step, float x, float y, std::uint32_t& overflowed,
                                                     std::uint32_t& inexact) {
    const float sum = x + y;
    const float r = step.counted(sum, overflowed);
    inexact = std::uint32_t(r != sum);
    return r;
}
template <class Inner>
[[gnu::always_inline]] inline float add_then_counted(const odd_sum<Inner>& op, float x, float y,
                                                     std::uint32_t& overflowed, std::uint32_t& inexact) {
    std::uint32_t rounded_in_fp32;
    const float sum = sum_round_odd(x, y, rounded_in_fp32);
    const float r = op.inner.counted(sum, overflowed);
    inexact = rounded_in_fp32 | std::uint32_t(r != sum);
    return r;
}

// ---- terms that are doubles (block-scaled terms of more than 24 bits) ----

// A double rounded to odd in fp32, as sum_round_odd rounds a float sum (an infinity where the
// nearest float is one). Rounding to odd twice, onto double's grid and then onto fp32's coarser
// one, is rounding to odd once.
[[gnu::always_inline]] inline float float_round_odd(double d) {
    const float f = float(d);
    std::uint32_t inexact;
    return odd_from_nearest(f, d - double(f), inexact);  // (d - f exact: within half an ulp of f)
}

// x + t (t a double term) rounded by an accumulator operation, from the round-to-odd double of
// the sum: fp32's own rounding of it (53 >= 24 + 2 bits: the exact sum's rounding), or, for an
// odd_sum operation, its round-to-odd float into the inner rounding (what sum_round_odd gives
// from an exact float sum). Other operations assume exact fp32 sums and take no double terms.
template <class A>
constexpr bool takes_double_terms = std::is_same_v<A, sum_fp32> || std::is_same_v<A, sum_fp32_saturating>;
template <class Inner>
constexpr bool takes_double_terms<odd_sum<Inner>> = true;

template <class A>
[[gnu::always_inline]] inline float add_then(const A& step, float x, double t) {
    std::uint64_t inexact;
    return step(float(sum_round_odd(double(x), t, inexact)));
}
template <class Inner>
[[gnu::always_inline]] inline float add_then(const odd_sum<Inner>& op, float x, double t) {
    std::uint64_t inexact;
    return op.inner(float_round_odd(sum_round_odd(double(x), t, inexact)));
}

// ---- the operations a call may choose ----

// The variant of the operations of every list (each a types<...>).
template <class... T>
struct types {};
template <class... Lists>
struct variant_of;
template <class... T>
struct variant_of<types<T...>> {
    using type = std::variant<T...>;
};
template <class... A, class... B, class... Rest>
struct variant_of<types<A...>, types<B...>, Rest...> : variant_of<types<A..., B...>, Rest...> {};

// An operation for each deterministic mode.
template <template <rounding> class Op>
using each_mode = types<Op<rounding::nearest_even>, Op<rounding::nearest_away>, Op<rounding::toward_zero>,
                        Op<rounding::toward_positive>, Op<rounding::toward_negative>, Op<rounding::odd>>;
template <rounding Mode>
using round_any = round_full<Mode, lane_values>;
template <rounding Mode>
using odd_flush_saturate = odd_sum<round_flush_saturate<Mode>>;
template <rounding Mode>
using odd_any = odd_sum<round_any<Mode>>;
template <rounding Mode>
using odd_shift = odd_sum<round_shift<Mode>>;

using product_op = variant_of<types<product_exact, product_range<true>, product_range<false>>, each_mode<round_any>,
                              each_mode<round_normal>>::type;
using accumulate_op = variant_of<types<sum_fp32, sum_fp32_saturating>, each_mode<round_flush_saturate>,
                                 each_mode<round_any>, each_mode<round_shift>, each_mode<odd_flush_saturate>,
                                 each_mode<odd_any>, each_mode<odd_shift>>::type;

template <class Op>
constexpr bool is_odd_sum = false;
template <class Inner>
constexpr bool is_odd_sum<odd_sum<Inner>> = true;

template <class Op>
constexpr bool is_flush_saturate = false;
template <rounding Mode>
constexpr bool is_flush_saturate<round_flush_saturate<Mode>> = true;
template <rounding Mode>
constexpr bool is_flush_saturate<odd_sum<round_flush_saturate<Mode>>> = true;

// Where the vectorized path counts events (gemm_stats): exact, range-checked saturating or rounded
// products, and a flush-and-saturate accumulator (the paper's setups). Every value then stays
// finite (the accumulator is chosen only for finite products), and each event is a comparison.
// Other operations count on the exact path.
template <class Op>
constexpr bool is_round_full = false;
template <rounding Mode, kernel_inputs In>
constexpr bool is_round_full<round_full<Mode, In>> = true;

template <class P, class A>
constexpr bool counts_events =
    (std::is_same_v<P, product_exact> || std::is_same_v<P, product_range<true>> || is_round_full<P>) &&
    is_flush_saturate<A>;

// Events per lane of a block of outputs, added into a gemm_stats once the block is done.
struct lane_events {
    std::uint32_t zero_operand[fast_lanes] = {}, product_overflows[fast_lanes] = {},
                  product_underflows[fast_lanes] = {}, accumulator_overflows[fast_lanes] = {},
                  swamps[fast_lanes] = {}, inexact_additions[fast_lanes] = {};

    // acc + term rounded to r, with the step's overflow and inexact flags (the exact path's
    // event_sink::addition and its swamp rule: term != 0 lost entirely).
    [[gnu::always_inline]] void addition(int l, float acc, float term, float r, std::uint32_t overflowed,
                                         std::uint32_t inexact) {
        accumulator_overflows[l] += overflowed;
        inexact_additions[l] += inexact;
        swamps[l] += std::uint32_t(term != 0) & std::uint32_t(r == acc);
    }

    void add_to(gemm_stats& stats) const {
        for (int l = 0; l < fast_lanes; ++l) {
            stats.zero_operand += zero_operand[l];
            stats.product_overflows += product_overflows[l];
            stats.product_underflows += product_underflows[l];
            stats.accumulator_overflows += accumulator_overflows[l];
            stats.swamps += swamps[l];
            stats.inexact_additions += inexact_additions[l];
        }
    }
};
struct no_events {};

// Operations short enough to run in one loop with the accumulator chain.
template <class Op>
constexpr bool is_light = !requires { Op::plan; } && !requires { Op::inner.plan; };

// ---- the passes ----

// acc[l] = accumulate(acc[l] + product(a[t] * b[t][l])) for t < n, b row t at b + t * ldb: one
// loop, the products never stored; with the events counted when Events is lane_events.
template <class P, class A, class Events>
[[gnu::always_inline]] inline void fused_chain(const float* a, const float* b, std::ptrdiff_t ldb, int n, const P& prod,
                                               const A& step, float (&acc)[fast_lanes], Events& events) {
    for (int t = 0; t < n; ++t) {
        const float at = a[t];
        const float* bt = b + t * ldb;
        if constexpr (std::is_same_v<Events, lane_events>) {
            for (int l = 0; l < fast_lanes; ++l) {
                const float x = at * bt[l];  // exact
                std::uint32_t product_overflowed, product_underflowed, overflowed, inexact;
                const float p = prod.counted(x, product_overflowed, product_underflowed);
                const float y = add_then_counted(step, acc[l], p, overflowed, inexact);
                events.zero_operand[l] += std::uint32_t(x == 0);  // (exact products of non-zero floats are not 0)
                events.product_overflows[l] += product_overflowed;
                events.product_underflows[l] += product_underflowed;
                events.addition(l, acc[l], p, y, overflowed, inexact);
                acc[l] = y;
            }
        } else {
            for (int l = 0; l < fast_lanes; ++l) acc[l] = add_then(step, acc[l], prod(at * bt[l]));
        }
    }
}

// All of a row's chunks when the chunk accumulator is the accumulator's own operation (the
// paper's setup): each chunk from 0, total = accumulate(total + chunk) after each. One call per
// row keeps the operation's constants in registers across chunks. With Count, the events go
// into *stats. With ExactTotal, the chunk accumulator is unset instead, and its total exact in
// double (lane_reduction's exact sums, exact_sums::total): total += chunk, rounded to float at
// the end.
template <class P, class A, bool Count, bool ExactTotal = false>
void fused_chunks_pass(const float* a, const float* b, std::ptrdiff_t ldb, std::int64_t n, std::int64_t chunk,
                       const void* product, const void* accumulate, float* total_io, gemm_stats* stats) {
    static_assert(!(Count && ExactTotal), "events beside an exact total are counted by counted_row");
    alignas(64) double exact[fast_lanes];
    if constexpr (ExactTotal)
        for (int l = 0; l < fast_lanes; ++l) exact[l] = total_io[l];
    const auto round_exact = [&] {
        if constexpr (ExactTotal)
            for (int l = 0; l < fast_lanes; ++l) total_io[l] = float(exact[l]);
    };
#if defined(__AVX512F__)
    // (accumulators of odd sums with a vector rounding: shift_rounding.hpp's chain)
    if constexpr (!Count && is_odd_sum<A> && requires { product_vector(std::declval<P>()); })
        if constexpr (has_odd_chain<decltype(A::inner)>) {
            with_vector_rounding(static_cast<const A*>(accumulate)->inner, [&](const auto& round) {
                odd_chunks<ExactTotal>(a, b, ldb, n, chunk, product_vector(*static_cast<const P*>(product)), round,
                                       total_io, exact);
            });
            return round_exact();
        }
#endif
    const P prod = *static_cast<const P*>(product);  // local copies: stores cannot alias them
    const A step = *static_cast<const A*>(accumulate);
    std::conditional_t<Count, lane_events, no_events> events;
    float total[fast_lanes];
    for (int l = 0; l < fast_lanes; ++l) total[l] = total_io[l];
    for (std::int64_t start = 0; start < n; start += chunk) {
        float acc[fast_lanes] = {};
        fused_chain(a + start, b + start * ldb, ldb, int(std::min(chunk, n - start)), prod, step, acc, events);
        for (int l = 0; l < fast_lanes; ++l) {
            if constexpr (ExactTotal) {
                exact[l] += double(acc[l]);
            } else if constexpr (Count) {
                std::uint32_t overflowed, inexact;
                const float y = add_then_counted(step, total[l], acc[l], overflowed, inexact);
                events.addition(l, total[l], acc[l], y, overflowed, inexact);
                total[l] = y;
            } else {
                total[l] = add_then(step, total[l], acc[l]);
            }
        }
    }
    for (int l = 0; l < fast_lanes; ++l) total_io[l] = total[l];
    round_exact();
    if constexpr (Count) events.add_to(*stats);
}

// buf[t][l] = product(a[t] * b[t][l]) for t < n.
template <class P>
void product_pass(const float* a, const float* b, std::ptrdiff_t ldb, int n, const void* product, float* buf) {
    const P prod = *static_cast<const P*>(product);  // a local copy: stores cannot alias it
    for (int t = 0; t < n; ++t) {
        const float at = a[t];
        const float* bt = b + t * ldb;
        float* out = buf + t * fast_lanes;
        for (int l = 0; l < fast_lanes; ++l) out[l] = prod(at * bt[l]);  // exact product
    }
}

#if defined(__AVX512F__)
// acc[l] = accumulate(acc[l] + term t of lane l) for t < n, in order, for double terms (terms(t, h):
// lanes 8h .. 8h + 7 of term t, an __m512d) in AVX-512 (shift_rounding.hpp's double_terms_accumulate);
// false, with acc untouched, for the operations it does not serve.
template <class A, class Terms>
[[gnu::always_inline]] inline bool accumulate_double_terms(const A& op, int n, const Terms& terms, float* acc_io) {
    if constexpr (std::is_same_v<A, sum_fp32>) {
        double_terms_accumulate(n, terms, acc_io, nearest_float{}, [](__m512 x) { return x; });
        return true;
    } else if constexpr (std::is_same_v<A, sum_fp32_saturating>) {
        double_terms_accumulate(n, terms, acc_io, nearest_float{}, [](__m512 x) {
            // (constants first: a NaN operand is what max and min return then)
            return _mm512_min_ps(_mm512_set1_ps(FLT_MAX), _mm512_max_ps(_mm512_set1_ps(-FLT_MAX), x));
        });
        return true;
    } else if constexpr (is_odd_sum<A>) {
        if constexpr (has_odd_chain<decltype(A::inner)>) {
            with_vector_rounding(op.inner,
                                 [&](const auto& round) { double_terms_accumulate(n, terms, acc_io, odd_float{}, round); });
            return true;
        }
    }
    return false;
}

// The same for float terms (terms(t, v): lanes 16v .. 16v + 15 of term t, an __m512) where the
// sums are rounded to odd first (shift_rounding.hpp's odd_accumulate); false for the others, which
// the auto-vectorized chain serves as well.
template <class A, class Terms>
[[gnu::always_inline]] inline bool accumulate_float_terms(const A& op, int n, const Terms& terms, float* acc_io) {
    if constexpr (is_odd_sum<A>) {
        if constexpr (has_odd_chain<decltype(A::inner)>) {
            with_vector_rounding(op.inner, [&](const auto& round) { odd_accumulate(n, terms, acc_io, round); });
            return true;
        }
    }
    return false;
}
#endif

// One chunk: acc_io carried in and out. (Odd sums with a vector rounding take shift_rounding.hpp's
// chain on AVX-512, the products made as they are added, as in fused_chunks_pass: the
// auto-vectorized TwoSum is a dependent chain several times longer.)
template <class P, class A>
void fused_pass(const float* a, const float* b, std::ptrdiff_t ldb, int n, const void* product, const void* accumulate,
                float* acc_io) {
#if defined(__AVX512F__)
    if constexpr (is_odd_sum<A> && requires { product_vector(std::declval<P>()); }) {
        const auto prod = product_vector(*static_cast<const P*>(product));
        const auto term = [&](int t, int v) {
            return prod(_mm512_mul_ps(_mm512_set1_ps(a[t]), _mm512_loadu_ps(b + t * ldb + 16 * v)));
        };
        if (accumulate_float_terms(*static_cast<const A*>(accumulate), n, term, acc_io)) return;
    }
#endif
    const P prod = *static_cast<const P*>(product);  // local copies: stores cannot alias them
    const A step = *static_cast<const A*>(accumulate);
    float acc[fast_lanes];
    for (int l = 0; l < fast_lanes; ++l) acc[l] = acc_io[l];
    no_events none;
    fused_chain(a, b, ldb, n, prod, step, acc, none);
    for (int l = 0; l < fast_lanes; ++l) acc_io[l] = acc[l];
}

// acc[l] = accumulate(acc[l] + buf[t][l]) for t < n, in order; the terms floats, or doubles for
// the operations that take them (takes_double_terms).
template <class A, class T = float>
void accumulate_pass(const T* buf, int n, float* acc_io, const void* accumulate) {
#if defined(__AVX512F__)
    static_assert(fast_lanes == 64, "odd_accumulate runs 64 lanes");
    if constexpr (std::is_same_v<T, float>)
        if (accumulate_float_terms(*static_cast<const A*>(accumulate), n,
                                   [&](int t, int v) { return _mm512_loadu_ps(buf + 64 * t + 16 * v); }, acc_io))
            return;
    if constexpr (std::is_same_v<T, double>)
        if (accumulate_double_terms(*static_cast<const A*>(accumulate), n,
                                    [&](int t, int h) { return _mm512_loadu_pd(buf + 64 * t + 8 * h); }, acc_io))
            return;
#endif
    if constexpr (std::is_same_v<T, float> || takes_double_terms<A>) {
        const A step = *static_cast<const A*>(accumulate);  // a local copy: stores cannot alias it
        float acc[fast_lanes];
        for (int l = 0; l < fast_lanes; ++l) acc[l] = acc_io[l];
        for (int t = 0; t < n; ++t) {
            const T* p = buf + t * fast_lanes;
            for (int l = 0; l < fast_lanes; ++l) acc[l] = add_then(step, acc[l], p[l]);
        }
        for (int l = 0; l < fast_lanes; ++l) acc_io[l] = acc[l];
    }
}

using fused_pass_fn = void (*)(const float*, const float*, std::ptrdiff_t, int, const void*, const void*, float*);
using fused_chunks_pass_fn = void (*)(const float*, const float*, std::ptrdiff_t, std::int64_t, std::int64_t, const void*,
                                      const void*, float*, gemm_stats*);
using product_pass_fn = void (*)(const float*, const float*, std::ptrdiff_t, int, const void*, float*);

// sums[l] += product(a[t] * b[t][l]) for t < n, in double, as the products are made (the exact
// sums of lane_reduction: every sum exact).
template <class P>
void product_sum_pass(const float* a, const float* b, std::ptrdiff_t ldb, int n, const void* product, double* sums_io) {
    const P prod = *static_cast<const P*>(product);  // a local copy: stores cannot alias it
    alignas(64) double sums[fast_lanes];
    for (int l = 0; l < fast_lanes; ++l) sums[l] = sums_io[l];
    for (int t = 0; t < n; ++t) {
        const float at = a[t];
        const float* bt = b + t * ldb;
        for (int l = 0; l < fast_lanes; ++l) sums[l] += double(prod(at * bt[l]));
    }
    for (int l = 0; l < fast_lanes; ++l) sums_io[l] = sums[l];
}
using product_sum_pass_fn = void (*)(const float*, const float*, std::ptrdiff_t, int, const void*, double*);
using accumulate_pass_fn = void (*)(const float*, int, float*, const void*);
using accumulate_double_pass_fn = void (*)(const double*, int, float*, const void*);

inline const void* address_of(const product_op& v) {
    return std::visit([](const auto& op) { return static_cast<const void*>(&op); }, v);
}
inline const void* address_of(const accumulate_op& v) {
    return std::visit([](const auto& op) { return static_cast<const void*>(&op); }, v);
}

// Pairwise: the adder tree over the n rows of buf (rows up to the tree's width are zeroed
// here, so buf holds bit_ceil(n) rows); a chunk of one product is that product.
template <class A>
void tree_pass(float* buf, int n, float* acc_out, const void* accumulate) {
    const A step = *static_cast<const A*>(accumulate);  // a local copy: stores cannot alias it
    const int width = int(std::bit_ceil(unsigned(n)));
    std::fill(buf + std::ptrdiff_t(n) * fast_lanes, buf + std::ptrdiff_t(width) * fast_lanes, 0.0f);
    for (int nodes = width / 2; nodes >= 1; nodes /= 2)
        for (int t = 0; t < nodes; ++t) {  // row t is free once node t / 2 has read it
            const float* x = buf + std::ptrdiff_t(2 * t) * fast_lanes;
            const float* y = x + fast_lanes;
            float* out = buf + std::ptrdiff_t(t) * fast_lanes;
            for (int l = 0; l < fast_lanes; ++l) out[l] = add_then(step, x[l], y[l]);
        }
    for (int l = 0; l < fast_lanes; ++l) acc_out[l] = buf[l];
}

// Fused: the exact sum of a chunk's products, in double (exact: see fast_gemm), rounded once.
// (Terms may be doubles: the exact sums of lane_reduction's exact_row.)
template <class T>
void sum_pass(const T* buf, int n, double* sums) {
    for (int t = 0; t < n; ++t)
        for (int l = 0; l < fast_lanes; ++l) sums[l] += double(buf[std::ptrdiff_t(t) * fast_lanes + l]);
}

template <rounding Mode>
struct round_double {
    static constexpr rounding mode = Mode;
    rounding_plan<double> plan;
};

// A finite double d within float's range, a multiple of 2^-126 or 0, rounded to odd in float: a
// float bracketing it (float(d), in any rounding mode), moved to the other one when inexact and
// even. As for odd_sum, rounding that to at most 22 significant bits is rounding d.
[[gnu::always_inline]] inline float double_to_float_odd(double d) {
    const float f = float(d);
    const double back = double(f);
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t inexact_even = std::uint32_t(back != d) & ~bits & 1u;
    const std::uint32_t toward_zero = std::uint32_t(std::fabs(back) > std::fabs(d));  // f beyond d
    return std::bit_cast<float>(bits + inexact_even - 2 * (inexact_even & toward_zero));
}

// The rounding of an accumulator operation alone (for odd_sum, its inner one), for values already
// summed; and whether it keeps at most 22 significant bits.
template <class A>
const auto& float_rounding(const A& op) {
    if constexpr (is_odd_sum<A>) return op.inner;
    else return op;
}
template <class A>
constexpr bool has_float_rounding = !std::is_same_v<A, sum_fp32> && !std::is_same_v<A, sum_fp32_saturating>;
template <rounding Mode>
bool keeps_at_most_22_bits(const round_flush_saturate<Mode>& op) { return op.shift >= 2; }
template <rounding Mode>
bool keeps_at_most_22_bits(const round_shift<Mode>& op) { return op.shift >= 2; }
template <rounding Mode, kernel_inputs In>
bool keeps_at_most_22_bits(const round_full<Mode, In>& op) { return op.plan.man_bits <= 21; }
template <class Inner>
bool keeps_at_most_22_bits(const odd_sum<Inner>& op) { return keeps_at_most_22_bits(op.inner); }

// Fused, where the sums are normal floats or 0 and the accumulator keeps at most 22 bits: each
// sum rounded to odd in float and then by the accumulator's own rounding (this loop vectorizes;
// the rounding of doubles below does not).
template <class A>
void fused_round_float_pass(const double* sums, float* acc_out, const void* accumulate) {
    const A step = *static_cast<const A*>(accumulate);  // a local copy: stores cannot alias it
    const auto& rounding = float_rounding(step);
    for (int l = 0; l < fast_lanes; ++l) acc_out[l] = rounding(double_to_float_odd(sums[l]));
}

template <class R>
void fused_round_pass(const double* sums, float* acc_out, const void* op) {
    const R r = *static_cast<const R*>(op);  // a local copy: stores cannot alias it
    for (int l = 0; l < fast_lanes; ++l)  // the result lies on a float format's grid: exact
        acc_out[l] = float(round_with_plan<R::mode, double>(sums[l], r.plan));
}

// Aligned: x (a normal float or zero) cut to a multiple of 2^q, q = top - 127 - window, where top
// is the largest exponent field among the group's terms, on x's bits: toward zero by clearing the
// bits below 2^q, toward minus infinity by also stepping a negative x down when any were set.
template <bool Floor>
[[gnu::always_inline]] inline float cut_to_window(float x, std::int32_t top, std::int32_t window) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
    const std::uint32_t sign = bits & 0x80000000u, mag = bits ^ sign;
    const std::int32_t field = std::int32_t(mag >> 23);
    const std::int32_t drop = top - window - field + 23;  // bits of x's significand below 2^q
    const std::uint32_t below =
        drop <= 0 ? 0u : drop >= 24 ? 0xFFFFFFFFu : (std::uint32_t(1) << std::min(drop, 23)) - 1;
    std::uint32_t kept = mag & ~below;
    if constexpr (Floor) {
        const bool step_down = sign != 0 && (mag & below) != 0;
        // one step of 2^q: a bit of x's significand, or (x cut entirely) 2^q itself
        const std::uint32_t unit =
            drop >= 24 ? std::bit_cast<std::uint32_t>(pow2_of<float>(top - 127 - window)) : below + 1;
        kept += step_down ? unit : 0u;
    }
    return std::bit_cast<float>(kept | (kept != 0 ? sign : 0u));
}

// acc_io: the running accumulator, carried from group to group within a chunk.
template <class A, bool Floor>
void aligned_pass(const float* buf, int n, int group, int window, float* acc_io, const void* accumulate) {
    const A step = *static_cast<const A*>(accumulate);  // a local copy: stores cannot alias it
    float acc[fast_lanes];
    for (int l = 0; l < fast_lanes; ++l) acc[l] = acc_io[l];
    for (int g0 = 0; g0 < n; g0 += group) {
        const int g1 = std::min(g0 + group, n);
        std::int32_t top[fast_lanes];
        for (int l = 0; l < fast_lanes; ++l) top[l] = std::int32_t((std::bit_cast<std::uint32_t>(acc[l]) >> 23) & 0xFF);
        for (int t = g0; t < g1; ++t)
            for (int l = 0; l < fast_lanes; ++l) {
                const float p = buf[std::ptrdiff_t(t) * fast_lanes + l];
                top[l] = std::max(top[l], std::int32_t((std::bit_cast<std::uint32_t>(p) >> 23) & 0xFF));
            }
        float cut_sum[fast_lanes], plain_sum[fast_lanes];  // plain: every term zero (signed zeros)
        for (int l = 0; l < fast_lanes; ++l) {
            cut_sum[l] = cut_to_window<Floor>(acc[l], top[l], window);
            plain_sum[l] = acc[l];
        }
        for (int t = g0; t < g1; ++t)
            for (int l = 0; l < fast_lanes; ++l) {
                const float p = buf[std::ptrdiff_t(t) * fast_lanes + l];
                cut_sum[l] += cut_to_window<Floor>(p, top[l], window);  // exact: see fast_gemm
                plain_sum[l] += p;
            }
        for (int l = 0; l < fast_lanes; ++l) acc[l] = step(top[l] == 0 ? plain_sum[l] : cut_sum[l]);
    }
    for (int l = 0; l < fast_lanes; ++l) acc_io[l] = acc[l];
}

#if defined(__AVX512F__)
// The same with each cut as three instructions rather than a dozen: x scaled by 2^-q (vscalefps),
// rounded to an integer toward zero or minus infinity (vrndscaleps), scaled back. Exact where no
// x * 2^-q falls below fp32's normal range (scalef_fits in fast_gemm); a cut to zero may be -0 here,
// which adds like +0 to the cut sum, started at +0.
template <class A, bool Floor>
void aligned_pass_scalef(const float* buf, int n, int group, int window, float* acc_io, const void* accumulate) {
    const A step = *static_cast<const A*>(accumulate);  // a local copy: stores cannot alias it
    constexpr int to_integer = (Floor ? _MM_FROUND_TO_NEG_INF : _MM_FROUND_TO_ZERO) | _MM_FROUND_NO_EXC;
    const __m512i exponent = _mm512_set1_epi32(0x7F800000), zero = _mm512_setzero_si512();
    const __m512i bias = _mm512_set1_epi32(127 + window);
    alignas(64) float acc[fast_lanes];
    for (int l = 0; l < fast_lanes; ++l) acc[l] = acc_io[l];
    for (int g0 = 0; g0 < n; g0 += group) {
        const int g1 = std::min(g0 + group, n);
        alignas(64) float summed[fast_lanes];
        for (int l = 0; l < fast_lanes; l += 16) {
            const __m512 a = _mm512_load_ps(acc + l);
            __m512i top = _mm512_and_si512(_mm512_castps_si512(a), exponent);  // the largest exponent field, << 23
            for (int t = g0; t < g1; ++t)
                top = _mm512_max_epu32(top, _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(buf + t * fast_lanes + l)), exponent));
            const __m512 q = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(top, 23), bias));
            const __m512 minus_q = _mm512_sub_ps(_mm512_setzero_ps(), q);
            const auto cut = [&](__m512 x) {
                return _mm512_scalef_ps(_mm512_roundscale_ps(_mm512_scalef_ps(x, minus_q), to_integer), q);
            };
            __m512 cut_sum = _mm512_add_ps(_mm512_setzero_ps(), cut(a)), plain_sum = a;  // plain: every term zero
            for (int t = g0; t < g1; ++t) {
                const __m512 p = _mm512_loadu_ps(buf + t * fast_lanes + l);
                cut_sum = _mm512_add_ps(cut_sum, cut(p));  // exact: see fast_gemm
                plain_sum = _mm512_add_ps(plain_sum, p);
            }
            const __mmask16 all_zero = _mm512_cmpeq_epi32_mask(top, zero);
            _mm512_store_ps(summed + l, _mm512_mask_blend_ps(all_zero, cut_sum, plain_sum));
        }
        for (int l = 0; l < fast_lanes; ++l) acc[l] = step(summed[l]);
    }
    for (int l = 0; l < fast_lanes; ++l) acc_io[l] = acc[l];
}
#endif

using tree_pass_fn = void (*)(float*, int, float*, const void*);
using fused_round_fn = void (*)(const double*, float*, const void*);
using aligned_pass_fn = void (*)(const float*, int, int, int, float*, const void*);
using fused_round_op = std::variant<round_double<rounding::nearest_even>, round_double<rounding::nearest_away>,
                                    round_double<rounding::toward_zero>, round_double<rounding::toward_positive>,
                                    round_double<rounding::toward_negative>, round_double<rounding::odd>>;
inline const void* address_of(const fused_round_op& v) {
    return std::visit([](const auto& op) { return static_cast<const void*>(&op); }, v);
}

// ---- what the spec allows ----

// dispatch_rounding for the deterministic modes (the fast path is never chosen for stochastic).
template <class F>
decltype(auto) dispatch_deterministic(rounding mode, F&& f) {
    using result = decltype(f(std::integral_constant<rounding, rounding::nearest_even>{}));
    return dispatch_rounding(mode, [&](auto m) -> result {
        if constexpr (m() == rounding::stochastic) throw std::logic_error("lowbit: stochastic rounding on the fast path");
        else return f(m);
    });
}

struct value_grid {
    int smallest_step;  // every value is a multiple of 2^smallest_step
    int significand_bits;
    double max_magnitude;
    bool finite;        // no step makes inf or NaN from finite values
};

// A grid holding the values of both.
inline value_grid either(const value_grid& a, const value_grid& b) {
    return value_grid{std::min(a.smallest_step, b.smallest_step), std::max(a.significand_bits, b.significand_bits),
                      std::max(a.max_magnitude, b.max_magnitude), a.finite && b.finite};
}

// The exponent of a grid's largest magnitude, for arithmetic on exponents: std::ilogb's sentinels
// for 0 (INT_MIN: no nonzero value, as for an all-zero input) and infinity (INT_MAX) overflow
// when anything is added, so they become exponents beyond every double's, which keep every
// comparison right (found by the gemm_diff fuzz target under UBSan).
inline int exponent_of_largest(double max_magnitude) {
    if (max_magnitude == 0) return -4096;
    if (!std::isfinite(max_magnitude)) return 4096;
    return std::ilogb(max_magnitude);
}

inline std::optional<value_grid> float_grid(const quantizer& q) {
    const float_quantizer* f = q.as_float();
    if (f == nullptr || !format_fits<float>(f->format) || !f->format.is_signed || !f->format.has_zero) return {};
    const bool finite = f->on_overflow == overflow::saturate || f->format.specials == special_values::none;
    return value_grid{f->format.emin() - f->format.man_bits, f->format.man_bits + 1, f->format.max_finite(), finite};
}

inline bool deterministic_float(const quantizer& q) {
    const float_quantizer* f = q.as_float();
    return f != nullptr && f->mode != rounding::stochastic;
}

inline bool is_fp32_nearest(const quantizer& q) {
    const float_quantizer* f = q.as_float();
    return f != nullptr && f->mode == rounding::nearest_even && f->format == fp32;
}

// A format on fp32's own grid (23 mantissa bits, fp32's smallest normal: fp32 without subnormals,
// say, or with another overflow policy) in nearest_even: fp32's addition or multiplication rounds
// the exact result onto that grid as the format does, and what is left of the format's rounding
// (flush, overflow) sees fp32's result as it would the exact one.
inline bool on_fp32_grid(const float_format& f) {
    return f.man_bits == 23 && f.emin() == -126 && format_fits<float>(f) && f.is_signed && f.has_negative_zero();
}
inline bool on_fp32_grid_nearest(const quantizer& q) {
    const float_quantizer* f = q.as_float();
    return f != nullptr && f->mode == rounding::nearest_even && on_fp32_grid(f->format);
}

// x rounded by q (deterministic), in double.
inline double rounded_by(const float_quantizer& q, double x) {
    const auto plan = rounding_plan<double>::make(q.format, q.on_overflow, q.random_bits);
    return dispatch_rounding(q.mode, [&](auto m) { return round_with_plan<m()>(x, plan); });
}

// Whether rounding a finite value never gives an infinity or NaN: the overflow of q's mode and
// policy is the largest finite value for either sign (float_grid's `finite` asks more: that no
// value at all, infinities included, rounds to one).
inline bool overflow_stays_finite(const float_quantizer& q) {
    const double beyond = 2 * q.format.max_finite();
    return std::isfinite(rounded_by(q, beyond)) && std::isfinite(rounded_by(q, -beyond));
}

// Which non-finite values may be among the addends of a chain: products that overflowed, or
// chunk results whose accumulator overflowed or kept such a product.
struct non_finite_addends {
    bool positive_infinity = false, negative_infinity = false, nan = false;
    bool any() const { return positive_infinity || negative_infinity || nan; }
};

// The non-finite values among the chunk results of accumulator `acc` whose terms may be `terms`;
// `unrounded_terms`: a chunk result can be a term itself (pairwise: a chunk of one product).
inline non_finite_addends accumulated_non_finite(const quantizer& acc, non_finite_addends terms, bool unrounded_terms) {
    const float_quantizer& q = *acc.as_float();
    if (is_fp32_nearest(acc)) {  // fp32's addition overflows to either infinity, unless saturated
        const bool overflows = q.on_overflow != overflow::saturate;
        return {overflows || terms.positive_infinity, overflows || terms.negative_infinity, overflows || terms.any()};
    }
    const double beyond = 2 * q.format.max_finite(), inf = std::numeric_limits<double>::infinity();
    // what rounding gives for the sums beyond either end, and for the infinite terms
    const double up = rounded_by(q, beyond), down = rounded_by(q, -beyond);
    const double up_inf = terms.positive_infinity ? rounded_by(q, inf) : 0.0;
    const double down_inf = terms.negative_infinity ? rounded_by(q, -inf) : 0.0;
    non_finite_addends out;
    out.positive_infinity = std::isinf(up) || std::isinf(up_inf);
    out.negative_infinity = std::isinf(down) || std::isinf(down_inf);
    // NaN stays NaN, and infinities of both signs add to NaN
    out.nan = terms.nan || (terms.positive_infinity && terms.negative_infinity) || std::isnan(up) || std::isnan(down) ||
              std::isnan(up_inf) || std::isnan(down_inf) || (out.positive_infinity && out.negative_infinity);
    if (unrounded_terms) {
        out.positive_infinity = out.positive_infinity || terms.positive_infinity;
        out.negative_infinity = out.negative_infinity || terms.negative_infinity;
    }
    return out;
}

// Whether what a rounding gives beyond the largest value depends on how far beyond the exact value
// lies: overflow::infinity_always in a directed mode, where a value within one step of the largest
// truncates to it and one farther overflows to infinity. fp32 sums past fp32's range (saturated,
// or an infinity from a nearest sum that was still below 2^128) do not keep that distance: the
// exact path's.
inline bool beyond_range_varies(const float_quantizer& q) {
    return q.on_overflow == overflow::infinity_always && q.format.specials == special_values::ieee &&
           (q.mode == rounding::toward_zero || q.mode == rounding::toward_positive ||
            q.mode == rounding::toward_negative);
}

// The accumulator operation for sums whose addends have grid `addend`, or nothing when fp32
// cannot carry it exactly.
inline std::optional<accumulate_op> choose_accumulator(const quantizer& q, const value_grid& addend,
                                                       non_finite_addends non_finite) {
    if (is_fp32_nearest(q))
        return q.as_float()->on_overflow == overflow::saturate ? accumulate_op{sum_fp32_saturating{}}
                                                                 : accumulate_op{sum_fp32{}};
    const auto grid = float_grid(q);
    if (!grid || !deterministic_float(q) || !q.as_float()->format.has_negative_zero() || beyond_range_varies(*q.as_float()))
        return {};
    const float_format& f = q.as_float()->format;
    const int top = f.emax() + 1;
    const int lowest = std::min(grid->smallest_step, addend.smallest_step);
    if (lowest < -149) return {};
    // fp32 sums are exact within 24 bits; beyond, they are rounded to odd first (odd_sum), which
    // needs a format of at most 22 significant bits; a format on fp32's grid in nearest_even needs
    // neither (on_fp32_grid_nearest).
    const bool exact_sums = top - lowest <= 24 || on_fp32_grid_nearest(q);
    if (!exact_sums && f.man_bits > 21) return {};
    const auto summed = [&](auto op) -> accumulate_op {
        if (exact_sums) return op;
        return odd_sum<decltype(op)>{op};
    };
    const rounding mode = q.as_float()->mode;
    const bool sums_finite = !non_finite.any();
    if (!f.subnormals && grid->finite && sums_finite && f.man_bits >= 1 && f.man_bits <= 22) {
        // (1 <= man_bits <= 22: at least one bit is dropped, and the kept last bit of a normal
        // sum is a fraction bit, not the implicit one)
        return dispatch_deterministic(mode, [&](auto m) -> accumulate_op {
            constexpr rounding M = m();
            const float min_normal = float(f.min_normal());
            const float step = float(f.min_normal() * f.epsilon());  // the subnormal grid's step
            const float half_below = min_normal - step / 2, above_last = std::nextafter(min_normal - step, min_normal);
            const auto bits = [](float x) { return std::bit_cast<std::uint32_t>(x); };
            round_flush_saturate<M> op{};
            op.shift = std::uint32_t(23 - f.man_bits);
            op.below = (std::uint32_t(1) << op.shift) - 1;
            op.min_normal_bits = bits(min_normal);
            op.max_finite_bits = bits(float(f.max_finite()));
            constexpr bool nearest = M == rounding::nearest_even || M == rounding::nearest_away;
            op.up_bits_positive = bits(nearest ? half_below : M == rounding::toward_positive ? above_last : min_normal);
            op.up_bits_negative = bits(nearest ? half_below : M == rounding::toward_negative ? above_last : min_normal);
            return summed(op);
        });
    }
    const auto plan = rounding_plan<float>::make(f, q.as_float()->on_overflow, q.as_float()->random_bits);
    // Whether an infinity of each sign rounds as a finite sum beyond the largest value does (in
    // IEEE formats, to infinity in the modes that round away from zero; toward zero, an infinity
    // stays and the other becomes the largest value).
    const auto infinity_as_overflow = [&](float inf) {
        return dispatch_deterministic(mode, [&](auto m) {
            return std::bit_cast<std::uint32_t>(round_with_plan<m(), float>(inf, plan)) ==
                   std::bit_cast<std::uint32_t>(round_with_plan<m(), float>(std::copysign(FLT_MAX, inf), plan));
        });
    };
    constexpr float inf = std::numeric_limits<float>::infinity();
    // round_shift rounds every sum beyond the largest value, infinities included, as such an
    // overflow (and NaN as NaN): right where an infinite sum can only be an overflow, and for
    // infinite addends only where their infinities round alike.
    if (round_shift_applies(f) && (!non_finite.positive_infinity || infinity_as_overflow(inf)) &&
        (!non_finite.negative_infinity || infinity_as_overflow(-inf)))
        return dispatch_deterministic(mode, [&](auto m) -> accumulate_op {
            return summed(make_round_shift<m()>(f, q.as_float()->on_overflow, addend.smallest_step));
        });
    // An odd sum beyond fp32's range is an infinity (sum_round_odd), which must round as the
    // overflow it is.
    if (!exact_sums && f.max_finite() + addend.max_magnitude >= double(FLT_MAX) &&
        !(infinity_as_overflow(inf) && infinity_as_overflow(-inf)))
        return {};
    return dispatch_deterministic(mode, [&](auto m) -> accumulate_op { return summed(round_any<m()>{plan}); });
}

// Why a quantizer cannot be a product or accumulator rounding in fp32 lanes.
inline std::string lane_refusal(const quantizer& q, const std::string& role) {
    const float_quantizer* f = q.as_float();
    if (q.is_exact()) return role + ": exact (unrounded) sums of more than 24 bits";
    if (q.as_int() != nullptr) return role + ": an integer quantizer whose sums are not exact integers";
    if (f->mode == rounding::stochastic) return role + ": stochastic rounding";
    if (!format_fits<float>(f->format) || !f->format.is_signed || !f->format.has_zero)
        return role + ": " + to_string(f->format) + " is not a signed format with zero within fp32";
    if (!f->format.has_negative_zero())
        return role + ": " + to_string(f->format) + " has no -0 (fnuz), and fp32 lanes keep the sign of zero";
    if (beyond_range_varies(*f))
        return role + ": infinity_always in a directed mode (whether a sum past the largest value is infinity "
                      "depends on how far past it lies)";
    return role + ": sums of " + to_string(f->format) +
           " span more than fp32's 24 bits and it keeps more than 22 (no round-to-odd sums)";
}

// The AVX-512 chain of scaled_chain.hpp for these operations, where it applies: a
// flush-and-saturate accumulator (with exact fp32 sums) in toward_zero, or in nearest_even with 7
// mantissa bits, after exact or saturating range-checked products. The scale puts the product
// format's smallest normal at fp32's (the multiply's flush to zero flushes below it), or, with no
// products to flush, the accumulator's smallest normal at 2^-125 or the smallest product at
// 2^-126, whichever is higher; either way it must keep
//   - the accumulator's smallest normal at or above 2^-125, so that the sums that round up to it
//     are normal floats;
//   - every non-zero element of B, and every product not to be flushed, a normal float;
//   - every value, and the sum of two, below fp32's largest.
// (products rounded toward zero: truncated in the chain, where the format flushes and saturates,
// for toward_zero accumulators on sequential and fma chains: each such kernel costs every user of
// the header-only path compile time, so only the flagship's kind is instantiated)
template <class P>
constexpr bool truncated_product = false;
template <kernel_inputs In>
constexpr bool truncated_product<round_full<rounding::toward_zero, In>> = true;

template <class P, class A>
constexpr bool chain_operations =
    (std::is_same_v<P, product_exact> || std::is_same_v<P, product_range<true>> ||
     (truncated_product<P> && std::is_same_v<A, round_flush_saturate<rounding::toward_zero>>)) &&
    (std::is_same_v<A, round_flush_saturate<rounding::toward_zero>> ||
     std::is_same_v<A, round_flush_saturate<rounding::nearest_even>>);
template <class P, class A>
constexpr bool scaled_chain_applies =
    has_scaled_chain && chain_operations<P, A> &&
    (std::is_same_v<A, round_flush_saturate<rounding::toward_zero>> || has_bf16_rounding);
// portable_chain.hpp's, where the AVX-512 chain does not apply (or declines)
template <class P, class A>
constexpr bool portable_chain_applies = has_portable_chain && chain_operations<P, A>;

// The range checks that a scaled chain makes on products itself (none for exact products): the
// largest kept, where they flush (0: nowhere), the bits a truncated product keeps, and at most how
// many significant bits a kept product has. None where truncation is not a cut of the low bits.
struct chain_products {
    bool range_checked = false;
    std::uint32_t max_bits = 0, flush_bits = 0, cut = ~0u;
    int significand_bits = 24;
};
template <class P>
std::optional<chain_products> chain_products_for(const P& prod, const value_grid& a, const value_grid& b) {
    chain_products products;
    products.significand_bits = std::min(24, a.significand_bits + b.significand_bits);  // (exact products)
    if constexpr (truncated_product<P>) {
        // Truncation is a cut of the low bits where every kept product is a normal value of the
        // format: it must flush (no subnormals: below the smallest normal, 0) and saturate.
        const float max = prod.plan.max_finite, smallest = prod.plan.flush_below;
        if (!(smallest > 0) || smallest != std::ldexp(1.0f, prod.plan.emin) || prod(smallest) != smallest ||
            prod(std::nextafter(smallest, 0.0f)) != 0 || prod(2 * max) != max || prod(-2 * max) != -max ||
            prod.plan.base_shift < 0)
            return {};
        products.range_checked = true;
        products.max_bits = std::bit_cast<std::uint32_t>(max), products.flush_bits = std::bit_cast<std::uint32_t>(smallest);
        products.cut = ~((std::uint32_t(1) << prod.plan.base_shift) - 1);
        products.significand_bits = std::min(products.significand_bits, 24 - prod.plan.base_shift);
    } else if constexpr (std::is_same_v<P, product_range<true>>) {
        products.range_checked = true;
        products.max_bits = prod.max_finite_bits, products.flush_bits = prod.flush_below_bits;
    }
    return products;
}

template <class P, class A>
    requires scaled_chain_applies<P, A>
std::optional<scaled_chain> scaled_chain_for(const P& prod, const A& step, const value_grid& a, const value_grid& b,
                                             bool counting = false) {
    constexpr bool nearest = std::is_same_v<A, round_flush_saturate<rounding::nearest_even>>;
    if (nearest && step.shift != 16) return {};  // (bf16's 8 significant bits only)
    const auto value = [](std::uint32_t bits) { return std::bit_cast<float>(bits); };
    const float min_normal = value(step.min_normal_bits);
    const auto products = chain_products_for(prod, a, b);
    if (!products) return {};
    bool flushes_products = false;
    // (without a flush, the smallest products must stay normal floats)
    int scale = std::max(-125 - std::ilogb(min_normal), -126 - a.smallest_step - b.smallest_step);
    double largest_product = a.max_magnitude * b.max_magnitude;
    const std::uint32_t product_max_bits = products->max_bits, product_flush_bits = products->flush_bits,
                        product_cut = products->cut;
    const bool range_checked = products->range_checked;
    if (range_checked) {
        largest_product = value(product_max_bits);
        flushes_products = product_flush_bits != 0;
        if (flushes_products) {
            const float flush_below = value(product_flush_bits);
            if (flush_below != std::ldexp(1.0f, std::ilogb(flush_below))) return {};
            scale = -126 - std::ilogb(flush_below);
        }
    }
    const auto fits = [&](int scale) {
        return std::abs(scale) <= 126 && std::ilogb(min_normal) + scale >= -125 && b.smallest_step + scale >= -126 &&
               (flushes_products || a.smallest_step + b.smallest_step + scale >= -126) &&
               std::ldexp(b.max_magnitude * std::max(1.0, a.max_magnitude), scale) < 0x1p125 &&
               std::ldexp(std::max(double(value(step.max_finite_bits)), largest_product), scale) < 0x1p125;
    };
    if (!fits(scale)) return {};
    // The counted chain runs without flush-to-zero and flushes products with a compare: scaled
    // further where that fits, so that no product is a subnormal float (each would cost the
    // processor a slow assist).
    if (const int unflushed = -126 - a.smallest_step - b.smallest_step; counting && unflushed > scale && fits(unflushed))
        scale = unflushed;
    scaled_chain chain;
    chain.scale = scale;
    chain.product_from_shifted = std::bit_cast<std::uint32_t>(0x1p-126f) << 1;
    chain.product_cut = product_cut;
    if (range_checked && flushes_products)
        chain.product_from_shifted = std::bit_cast<std::uint32_t>(std::ldexp(value(product_flush_bits), scale)) << 1;
    if (range_checked) {
        chain.product_saturates = true;
        chain.product_limit = value(product_max_bits);
        chain.product_max = std::ldexp(value(product_max_bits), scale);
    }
    chain.accumulator_max = std::ldexp(value(step.max_finite_bits), scale);
    chain.accumulator_limit = value(step.max_finite_bits);
    chain.min_normal = min_normal;
    const float kept_from = std::ldexp(nearest ? value(step.up_bits_positive) : min_normal, scale);
    chain.kept_from_shifted = std::bit_cast<std::uint32_t>(kept_from) << 1;
    chain.raised_to = std::ldexp(min_normal, scale) * (1.0f - 0x1p-9f);  // the tie below min_normal
    chain.cut = ~step.below;
    // The smallest magnitude whose rounding without an upper limit passes the largest value (a
    // search on bits: rounding is monotone), scaled like the rest: at most twice the largest
    // value, so within fp32's normal range by `fits`.
    std::uint32_t below = step.max_finite_bits, beyond = 0x7F800000u;  // overflowed: no, yes
    while (beyond - below > 1) {
        const std::uint32_t middle = below + (beyond - below) / 2;
        std::uint32_t overflowed = 0;
        step.counted(value(middle), overflowed);
        (overflowed != 0 ? beyond : below) = middle;
    }
    chain.overflow_from_shifted = std::bit_cast<std::uint32_t>(std::ldexp(value(beyond), scale)) << 1;
    return chain;
}

// portable_chain.hpp's chain for these operations, where it applies: products flushed at a power
// of two at or below the accumulator's smallest normal, or none flushed (then the smallest product
// stands for that power, or the smallest normal where products are all above it); every value
// and sum of two below 2^125 once scaled; and where the two coincide, in nearest_even, every
// product kept a multiple of the accumulator's smallest step (from the products' significant bits
// or their grid).
template <class P, class A>
    requires portable_chain_applies<P, A>
std::optional<scaled_chain> portable_chain_for(const P& prod, const A& step, const value_grid& a, const value_grid& b) {
    constexpr bool nearest = std::is_same_v<A, round_flush_saturate<rounding::nearest_even>>;
    const auto value = [](std::uint32_t bits) { return std::bit_cast<float>(bits); };
    const float min_normal = value(step.min_normal_bits);
    const auto products = chain_products_for(prod, a, b);
    if (!products || !(min_normal >= 0x1p-126f) || step.shift > 23) return {};
    const int min_exponent = std::ilogb(min_normal);
    int flush_exponent = std::min(min_exponent, a.smallest_step + b.smallest_step);
    if (products->flush_bits != 0) {
        const float flush_below = value(products->flush_bits);
        flush_exponent = std::ilogb(flush_below);
        if (flush_below != std::ldexp(1.0f, flush_exponent) || flush_exponent > min_exponent) return {};
    }
    if (nearest && flush_exponent == min_exponent) {
        const int product_step =
            std::max(a.smallest_step + b.smallest_step, min_exponent - (products->significand_bits - 1));
        if (product_step < min_exponent - (23 - int(step.shift))) return {};
    }
    const int scale = -126 - flush_exponent, rescale = min_exponent - flush_exponent;
    const double largest_product =
        products->range_checked ? double(value(products->max_bits)) : a.max_magnitude * b.max_magnitude;
    if (!(std::abs(scale) <= 126 && rescale <= 126 && b.smallest_step + scale >= -126 &&
          std::ldexp(b.max_magnitude * std::max(1.0, a.max_magnitude), scale) < 0x1p125 &&
          std::ldexp(std::max(double(value(step.max_finite_bits)), largest_product), scale) < 0x1p125))
        return {};
    scaled_chain chain;
    chain.scale = scale;
    chain.rescale = rescale;
    chain.product_cut = products->cut;
    if (products->range_checked) {
        chain.product_saturates = true;
        chain.product_limit = value(products->max_bits);
        chain.product_max = std::ldexp(value(products->max_bits), scale);
    }
    chain.accumulator_max = std::ldexp(value(step.max_finite_bits), scale);
    chain.accumulator_limit = value(step.max_finite_bits);
    chain.min_normal = min_normal;
    chain.cut = ~step.below;
    chain.dropped_bits = step.shift;
    chain.below_min_normal = std::bit_cast<std::uint32_t>(std::ldexp(min_normal, scale)) - (1u << step.shift);
    return chain;
}

using scaled_pass_fn = void (*)(const float*, std::ptrdiff_t, const float*, std::ptrdiff_t, std::int64_t, std::int64_t,
                                const scaled_chain&, const panel_bounds&, float*, std::uint64_t*, scaled_events*);

// The products with a zero operand in A (M x K) times B (K x N, row-major, ldb floats a row):
// per k, the zeros of A's column times N plus those of B's row times M, less the pairs of both.
template <class MA>
std::uint64_t zero_operand_products(const MA& a, const float* b, std::ptrdiff_t ldb, std::int64_t N) {
    const std::int64_t M = a.rows(), K = a.cols();
    std::vector<std::uint64_t> zeros_a(std::size_t(K), 0);
    for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t k = 0; k < K; ++k) zeros_a[std::size_t(k)] += a(i, k) == 0;
    std::uint64_t total = 0;
    for (std::int64_t k = 0; k < K; ++k) {
        std::uint64_t zeros_b = 0;
        for (std::int64_t j = 0; j < N; ++j) zeros_b += b[k * ldb + j] == 0;
        const std::uint64_t za = zeros_a[std::size_t(k)];
        total += za * std::uint64_t(N) + zeros_b * std::uint64_t(M) - za * zeros_b;
    }
    return total;
}

// ---- the driver ----

// The largest magnitude among the values, by their bits (infinity for an infinity, NaN for a
// NaN): a loop compilers vectorize.
inline float largest_magnitude(const float* x, Eigen::Index n) {
    std::uint32_t largest = 0;
    for (Eigen::Index i = 0; i < n; ++i) largest = std::max(largest, std::bit_cast<std::uint32_t>(x[i]) & 0x7FFFFFFFu);
    return std::bit_cast<float>(largest);
}

// Whether no value is an infinity or a NaN (Eigen's allFinite compares x - x with itself one
// element at a time).
inline bool all_finite(const float* x, Eigen::Index n) { return std::isfinite(largest_magnitude(x, n)); }

// The grid of the n floats at x themselves, or nothing when one is an infinity or a NaN: every
// non-zero value a multiple of 2^smallest_step with at most significand_bits significant bits,
// and the largest magnitude. It serves inputs whose format the spec does not declare (quantized
// by the caller, or integers), and is at least as tight as any declared grid. (One pass of
// integer operations, which GCC 12 leaves scalar: under a nanosecond an element, against the N
// or M multiply-accumulates each element takes part in.)
inline std::optional<value_grid> scanned_grid(const float* x, Eigen::Index n) {
    std::uint32_t special = 0, largest = 0;
    std::int32_t lowest = 1 << 20, widest = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
        const std::uint32_t magnitude = std::bit_cast<std::uint32_t>(x[i]) & 0x7FFFFFFFu;
        const std::uint32_t field = magnitude >> 23;
        // the significand as an integer (zero's made 1, so that its bit counts are defined: zeros
        // are left out below; (magnitude - 1) >> 31 is 1 for zero only)
        const std::uint32_t significand =
            (field != 0 ? (magnitude & 0x7FFFFFu) | 0x800000u : magnitude) | ((magnitude - 1) >> 31);
        const std::int32_t base = field != 0 ? std::int32_t(field) - 150 : -149;  // the weight of bit 0
        const std::int32_t low = base + std::countr_zero(significand);
        const std::int32_t high = base + 31 - std::countl_zero(significand);
        special |= std::uint32_t(field == 255);
        largest = std::max(largest, magnitude);
        lowest = std::min(lowest, magnitude != 0 ? low : std::int32_t(1) << 20);
        widest = std::max(widest, magnitude != 0 ? high - low + 1 : 0);
    }
    if (special != 0) return {};
    if (largest == 0) return value_grid{0, 1, 0.0, true};  // all zeros
    return value_grid{lowest, widest, double(std::bit_cast<float>(largest)), true};
}

// The grid of the exact products of finite values of grids a and b (finite themselves where
// products_exact_in_float holds): significands of p and q bits multiply to at most p + q bits,
// and to q bits when p = 1 (a power of two, as MX scales are).
inline value_grid product_grid(const value_grid& a, const value_grid& b) {
    const int bits = a.significand_bits <= 1 || b.significand_bits <= 1
                         ? std::max(a.significand_bits, b.significand_bits)
                         : a.significand_bits + b.significand_bits;
    return value_grid{a.smallest_step + b.smallest_step, bits, a.max_magnitude * b.max_magnitude, true};
}

// Whether every product of a value of grid a and one of grid b is exact in fp32 (and neither
// underflows nor overflows it).
inline bool products_exact_in_float(const value_grid& a, const value_grid& b) {
    const value_grid p = product_grid(a, b);
    return p.significand_bits <= 24 && p.smallest_step >= -149 && p.max_magnitude <= double(FLT_MAX);
}

// The grids of a call's two inputs (rows x cols floats at a and b): the declared formats' where
// they make every product exact in fp32, else the data's own; nothing when an input holds an
// infinity or a NaN, or (unless `wide_products`: the caller takes them) the products are not
// exact in fp32. `why` says which.
inline std::optional<std::pair<value_grid, value_grid>> input_grids(const quantizer& qa, const float* a, Eigen::Index na,
                                                                    const quantizer& qb, const float* b, Eigen::Index nb,
                                                                    std::string& why, bool wide_products = false) {
    auto ga = float_grid(qa), gb = float_grid(qb);
    if (ga && gb && products_exact_in_float(*ga, *gb)) {
        // (the data's largest magnitude, where it is below the format's, lets more sums fit)
        const float largest_a = largest_magnitude(a, na), largest_b = largest_magnitude(b, nb);
        if (!std::isfinite(largest_a) || !std::isfinite(largest_b)) {
            why = "inputs: an infinity or NaN";
            return {};
        }
        ga->max_magnitude = std::min(ga->max_magnitude, double(largest_a));
        gb->max_magnitude = std::min(gb->max_magnitude, double(largest_b));
        return std::pair{*ga, *gb};
    }
    ga = scanned_grid(a, na);
    gb = ga ? scanned_grid(b, nb) : ga;
    if (!ga || !gb) {
        why = "inputs: an infinity or NaN";
        return {};
    }
    if (!wide_products && !products_exact_in_float(*ga, *gb)) {
        why = "inputs: products of " + std::to_string(ga->significand_bits) + " and " +
              std::to_string(gb->significand_bits) + " significant bits are not exact in fp32";
        return {};
    }
    return std::pair{*ga, *gb};
}

// The first fast_lanes addends of a block of outputs (row i, columns from `first`: gemm_add's C,
// row-major with N columns), +0 beyond the N - first that exist.
inline void block_addends(const float* addend, std::int64_t N, std::int64_t i, std::int64_t first, float* lanes) {
    const std::int64_t width = std::min<std::int64_t>(fast_lanes, N - first);
    std::copy(addend + i * N + first, addend + i * N + first + width, lanes);
    std::fill(lanes + width, lanes + fast_lanes, 0.0f);
}

// A row-major matrix with its columns padded with zeros to `width` (whole blocks of lanes; the
// padding's results are discarded), or the matrix itself when it has that width already.
class padded_columns {
public:
    template <class MB>
    padded_columns(const MB& b, std::int64_t width) : data_(b.data()) {
        if (b.cols() != width) {
            copy_.setZero(b.rows(), width);
            copy_.leftCols(b.cols()) = b;
            data_ = copy_.data();
        }
    }
    const float* data() const { return data_; }

private:
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> copy_;
    const float* data_;
};

// ---- the product stage ----

// How exact terms (the products of two inputs, or block terms d s: lns and block-scaled GEMMs)
// are rounded by the spec's product quantizer in fp32 lanes, and the grid of what comes out:
// nothing where lanes cannot do it (a stochastic, integer or fnuz product quantizer).
// The grid of the roundings to a format (grid `format`) of values on grid `exact`: a rounding of
// a multiple of 2^g is one too, unless it saturates (the largest value is a multiple of its own
// step only), and is a value of the format; it is at most one step, 2^(1 - p) of the magnitude,
// larger, or the smallest normal (a raise from below), and at most the largest value.
inline value_grid rounded_grid(const value_grid& format, const value_grid& exact) {
    value_grid r = format;
    const int largest_step = exponent_of_largest(format.max_magnitude) - (format.significand_bits - 1);
    r.smallest_step = std::max(format.smallest_step, std::min(exact.smallest_step, largest_step));
    const double min_normal = std::ldexp(1.0, format.smallest_step + format.significand_bits - 1);
    const double grown = exact.max_magnitude * (1 + std::ldexp(1.0, 1 - format.significand_bits));
    r.max_magnitude = std::min(format.max_magnitude, std::max(grown, min_normal));
    return r;
}

struct product_stage {
    product_op op;
    value_grid grid;

    // The stage for finite exact terms on grid `exact`, which must be floats exactly (under
    // accumulation::fma the product is not rounded: the step rounds term + acc once); or, with
    // `rounded_by_fp32`, the product quantizer is on_fp32_grid_nearest and the terms are fp32's
    // products (which are then that rounding but for the range).
    static std::optional<product_stage> make(const gemm_spec& spec, const value_grid& exact, std::string& why_not,
                                             bool rounded_by_fp32 = false) {
        product_stage r{product_exact{}, exact};
        if (rounded_by_fp32) {
            const float_quantizer& qp = *spec.product.as_float();
            r.op = round_any<rounding::nearest_even>{rounding_plan<float>::make(qp.format, qp.on_overflow, qp.random_bits)};
            r.grid = *float_grid(spec.product);
            r.grid.finite = r.grid.finite || overflow_stays_finite(qp);
            return r;
        }
        if (spec.model == accumulation::fma || spec.product.is_exact()) return r;
        const auto grid_p = float_grid(spec.product);
        if (!grid_p || !deterministic_float(spec.product) || !spec.product.as_float()->format.has_negative_zero()) {
            why_not = lane_refusal(spec.product, "product");
            return {};
        }
        const float_quantizer& qp = *spec.product.as_float();
        const auto plan = rounding_plan<float>::make(qp.format, qp.on_overflow, qp.random_bits);
        const bool on_grid = exact.significand_bits <= grid_p->significand_bits &&
                             exact.smallest_step >= grid_p->smallest_step;
        if (on_grid) {
            // Rounding an on-grid value changes it only by overflow (per mode and sign) or flush.
            // Every on-grid value beyond the largest rounds as twice the largest does (a value just
            // above the largest would round back to it in the nearest modes: not an overflow).
            const float max = plan.max_finite;
            const float up = float(rounded_by(qp, 2.0 * max)), down = float(rounded_by(qp, -2.0 * max));
            if (up == max && down == -max)
                r.op = product_range<true>{std::bit_cast<std::uint32_t>(max), std::bit_cast<std::uint32_t>(plan.flush_below)};
            else
                r.op = product_range<false>{max, up, down, plan.flush_below};
        } else {
            r.op = dispatch_deterministic(qp.mode, [&](auto m) -> product_op {
                if (exact.smallest_step >= -126) return round_normal<m()>{plan};  // exact terms: normal floats
                return round_any<m()>{plan};
            });
        }
        r.grid = rounded_grid(*grid_p, exact);
        r.grid.finite = r.grid.finite || overflow_stays_finite(qp);  // (the terms are finite)
        return r;
    }
};

// ---- events beside any accumulator: the counted passes ----
//
// Where fused_chunks_pass cannot count (accumulators other than flush-and-saturate ones, pairwise
// trees, chunk accumulators of their own, double terms, an addend), these passes count the exact
// path's events (exact_datapath.hpp's event_sink) beside any accumulate operation. An addition
// x + y rounded to r is inexact when r is not the exact sum (TwoSum's error, in fp32 for float
// terms and in double for double ones, is the exact remainder), and swamps where a non-zero
// operand is lost entirely; the rare additions whose sum lies beyond the format's largest finite
// value, or has an infinite or NaN operand, are settled one lane at a time (an overflow: the exact
// sum and its rounding without an upper limit both beyond that value, as float_step::round_value).

// What a counted addition needs besides its operation: the step's quantizer's range.
struct addition_range {
    bool counts = false;  // false: an exact step (the one-chunk total), which has no events
    double max_finite = 0;
    rounding mode = rounding::nearest_even;
    rounding_plan<double> unbounded;  // the quantizer's plan without an upper limit

    static addition_range of(const quantizer& q) {
        addition_range r;
        const float_quantizer* f = q.as_float();
        if (f == nullptr) return r;
        r.counts = true;
        r.mode = f->mode;
        r.unbounded = rounding_plan<double>::make(f->format, f->on_overflow, f->random_bits);
        r.max_finite = r.unbounded.max_finite;
        r.unbounded.max_finite = std::numeric_limits<double>::infinity();
        return r;
    }

    // Whether rounding `exact` (finite, or its round-to-odd double) overflows: it and its rounding
    // without an upper limit both lie beyond the largest finite value.
    bool overflows(double exact) const {
        if (!(std::fabs(exact) > max_finite)) return false;
        const double beyond = dispatch_deterministic(mode, [&](auto m) { return round_with_plan<m()>(exact, unbounded); });
        return std::fabs(beyond) > max_finite;
    }

    // The events of x + y rounded to r where the sum may lie beyond the range or is not finite.
    void settle(double x, double y, double r, lane_events& events, int l) const {
        if (std::isfinite(x) && std::isfinite(y)) {
            const double exact = add_round_odd(x, y);  // (an inexact sum's is no float)
            events.inexact_additions[l] += std::uint32_t(r != exact);
            events.accumulator_overflows[l] += std::uint32_t(overflows(exact));
        } else {  // an infinity or NaN that stays one is neither inexact nor an overflow
            const double sum = x + y;
            events.inexact_additions[l] += std::uint32_t(!(r == sum || (std::isnan(r) && std::isnan(sum))));
        }
    }
};

// x + y rounded by `step` (y a float or a double term), with 0/1 flags: inexact, and `rare`
// where range.settle must decide instead (a sum at or beyond the largest finite value).
template <class A, class T>
[[gnu::always_inline]] inline float add_counted(const A& step, float x, T y, double max_finite, std::uint32_t& inexact,
                                                std::uint32_t& rare) {
    const T xs = T(x), sum = xs + y;
    bits_of<T> rounded;  // whether the nearest sum is inexact (TwoSum's error: sum_round_odd)
    (void)sum_round_odd(xs, y, rounded);
    const float r = add_then(step, x, y);
    // Below the largest finite value (a float), the exact sum is not beyond it (rounding is
    // monotonic): no overflow. At it or beyond, or inf or NaN: settled one lane at a time.
    const std::uint32_t within = std::uint32_t(std::fabs(sum) < T(max_finite));
    inexact = within & (std::uint32_t(rounded) | std::uint32_t(T(r) != sum));
    rare = within ^ 1u;
    return r;
}

// acc[l] = step(acc[l] + buf[t][l]) for t < n, as accumulate_pass, with the events counted.
// (Written on the caller's arrays: copies into local ones let g++ vectorize more of these loops,
// but made CDNA2's flushing accumulator 2.7x slower, and none clearly faster.)
template <class A, class T>
void counted_chain_pass(const T* buf, int n, float* acc, const A& step, const addition_range& range, lane_events& events) {
    if (!range.counts) {
        for (int t = 0; t < n; ++t)
            for (int l = 0; l < fast_lanes; ++l) acc[l] = add_then(step, acc[l], buf[t * fast_lanes + l]);
        return;
    }
    for (int t = 0; t < n; ++t) {
        const T* p = buf + t * fast_lanes;
        alignas(64) float before[fast_lanes];
        std::uint32_t rare[fast_lanes], any = 0;
        for (int l = 0; l < fast_lanes; ++l) {
            std::uint32_t inexact;
            const float r = add_counted(step, acc[l], p[l], range.max_finite, inexact, rare[l]);
            events.inexact_additions[l] += inexact;
            events.swamps[l] += std::uint32_t(p[l] != 0) & std::uint32_t(r == acc[l]);
            any |= rare[l];
            before[l] = acc[l];
            acc[l] = r;
        }
        if (any != 0)
            for (int l = 0; l < fast_lanes; ++l)
                if (rare[l] != 0) range.settle(before[l], double(p[l]), acc[l], events, l);
    }
}

// tree_pass with the events counted: a node loses an operand when its sum equals the other one.
template <class A>
void counted_tree_pass(float* buf, int n, float* acc_out, const A& step, const addition_range& range, lane_events& events) {
    const int width = int(std::bit_ceil(unsigned(n)));
    std::fill(buf + std::ptrdiff_t(n) * fast_lanes, buf + std::ptrdiff_t(width) * fast_lanes, 0.0f);
    for (int nodes = width / 2; nodes >= 1; nodes /= 2)
        for (int t = 0; t < nodes; ++t) {
            const float* x = buf + std::ptrdiff_t(2 * t) * fast_lanes;
            const float* y = x + fast_lanes;
            float* out = buf + std::ptrdiff_t(t) * fast_lanes;  // (may be x itself: read first)
            alignas(64) float xs[fast_lanes], ys[fast_lanes];
            std::uint32_t rare[fast_lanes], any = 0;
            for (int l = 0; l < fast_lanes; ++l) {
                xs[l] = x[l];
                ys[l] = y[l];
                std::uint32_t inexact;
                const float r = add_counted(step, xs[l], ys[l], range.max_finite, inexact, rare[l]);
                events.inexact_additions[l] += inexact;
                events.swamps[l] += (std::uint32_t(ys[l] != 0) & std::uint32_t(r == xs[l])) |
                                    (std::uint32_t(xs[l] != 0) & std::uint32_t(r == ys[l]));
                any |= rare[l];
                out[l] = r;
            }
            if (any != 0)
                for (int l = 0; l < fast_lanes; ++l)
                    if (rare[l] != 0) range.settle(xs[l], ys[l], out[l], events, l);
        }
    for (int l = 0; l < fast_lanes; ++l) acc_out[l] = buf[l];
}

// buf[t][l] = product(a[t] * b[t][l]) for t < n, as product_pass, with the zero operands and the
// product quantizer's overflows and underflows counted (finite inputs). The float product is
// exact, or (on_fp32_grid_nearest) fp32's rounding of the exact one: then an infinity is an
// overflow (the rounding's counted form sees it beyond the largest value), and a zero without a
// zero operand an underflow.
template <class P>
void counted_product_pass(const float* a, const float* b, std::ptrdiff_t ldb, int n, const void* product, float* buf,
                          lane_events& events) {
    const P prod = *static_cast<const P*>(product);
    for (int t = 0; t < n; ++t) {
        const float at = a[t];
        const float* bt = b + t * ldb;
        float* out = buf + t * fast_lanes;
        for (int l = 0; l < fast_lanes; ++l) {
            const float x = at * bt[l];
            std::uint32_t overflowed, underflowed;
            out[l] = prod.counted(x, overflowed, underflowed);
            const std::uint32_t zero_operand = std::uint32_t(at == 0) | std::uint32_t(bt[l] == 0);
            events.zero_operand[l] += zero_operand;
            events.product_overflows[l] += overflowed;
            events.product_underflows[l] += underflowed | (std::uint32_t(x == 0) & (zero_operand ^ 1u));
        }
    }
}
using counted_product_pass_fn = void (*)(const float*, const float*, std::ptrdiff_t, int, const void*, float*, lane_events&);

// ---- the reduction stage ----

// The values an accumulator the lanes take can hold (fp32's addition in nearest_even: any float,
// and its sums may overflow to infinity).
inline value_grid accumulator_grid(const quantizer& q) {
    return is_fp32_nearest(q) ? value_grid{-149, 24, double(FLT_MAX), false} : *float_grid(q);
}

// Exact sums in double lanes: exact where every value is a multiple of 2^bottom and every partial
// sum is at most `largest` in magnitude, within double's 53 bits. (Zeros, infinities and NaN
// then add as in exact_sum: IEEE's rules.)
inline bool exact_in_double(int bottom, double largest) {
    return exponent_of_largest(largest) + 1 - bottom <= 53;
}

// The grid step of a chunk's results under a rounding accumulator, for terms on grid `terms` and
// an optional addend: the roundings' (rounded_grid), and a pairwise chunk of one term is the term
// itself.
inline int chunk_results_bottom(const gemm_spec& spec, const value_grid& terms, const std::optional<value_grid>& addend) {
    const value_grid acc = accumulator_grid(spec.accumulator);
    int bottom = rounded_grid(acc, terms).smallest_step;
    if (spec.model == accumulation::pairwise) bottom = std::min(bottom, terms.smallest_step);
    if (addend) bottom = std::min(bottom, addend->smallest_step);
    return bottom;
}

// A bound on a chunk's result under a rounding accumulator: n terms of at most `largest`, from a
// start of at most `first`. Each rounding adds at most 2^(1 - p) of the magnitude (one step), or
// the smallest normal (a raise, or a subnormal's step); an aligned group's cuts toward minus
// infinity at most (group + 1) 2^-window more; a saturating rounding stays at the largest value.
inline double chunk_result_bound(const gemm_spec& spec, std::int64_t n, double largest, double first) {
    const value_grid acc = accumulator_grid(spec.accumulator);
    const double min_normal = std::ldexp(1.0, acc.smallest_step + acc.significand_bits - 1);
    double growth = 1 + std::ldexp(1.0, 1 - acc.significand_bits);
    if (spec.model == accumulation::aligned) growth *= 1 + double(spec.group + 1) * std::ldexp(1.0, -spec.window);
    const double bound = (first + double(n) * (largest + min_normal)) * std::pow(growth, double(n)) * (1 + 0x1p-20);
    const double result = std::min(bound, acc.max_magnitude);
    return spec.model == accumulation::pairwise ? std::max(result, largest) : result;
}

// How the terms of a row become its outputs, for fast_lanes outputs at once: the accumulator,
// model and chunks of a spec, compiled once per call for terms on a given grid. It knows nothing
// of where the terms come from: the rounded products of fast_gemm and the converted products of
// lns_gemm feed it alike.
class lane_reduction {
public:
    // The reduction of `spec` for K terms a row on grid `terms`; nothing when fp32 lanes cannot
    // carry it exactly (why_not says why).
    // With double_terms, the terms are doubles (row_of_doubles): the accumulator adds each as the
    // round-to-odd float of its exact sum (add_then of a double), so it is chosen as for float addends
    // anywhere on fp32's grid; sequential and fma chains only.
    // With `addend`, the grid of the addends (gemm_add's C) that row() starts from: the first
    // chunk's running accumulator, or the chunk accumulator's total (addend_starts_chunk).
    static std::optional<lane_reduction> make(const gemm_spec& spec, std::int64_t K, const value_grid& given_terms,
                                              std::string& why_not, bool double_terms = false,
                                              const std::optional<value_grid>& addend = {}) {
        // (an addend is one more term of the sums it enters: the chain's, or the chunk sums')
        const value_grid terms =
            addend && addend_starts_chunk(spec.model) ? either(given_terms, *addend) : given_terms;
        lane_reduction r;
        const auto refuse = [&](std::string why) {
            why_not = std::move(why);
            return std::optional<lane_reduction>{};
        };
        if (spec.model == accumulation::two_level) return refuse("two_level (CDNA3's fused dot) runs on the exact path");
        const non_finite_addends non_finite_terms{!terms.finite, !terms.finite, !terms.finite};
        r.chunk_ = spec.chunk == 0 ? K : std::min<std::int64_t>(spec.chunk, K);
        r.model_ = spec.model;
        const std::int64_t chunks = (K + r.chunk_ - 1) / std::max<std::int64_t>(r.chunk_, 1);
        const double first = addend ? addend->max_magnitude : 0;  // (what a sum may start from)
        if (spec.accumulator.is_exact()) {
            // An unset accumulator makes every model a fused one (gemm_spec.hpp); with an unset
            // chunk accumulator too, every sum is exact: of values on the terms' grid (and the
            // addend's), at most first + K * largest term.
            if (!spec.chunk_accumulator.is_exact())
                return refuse("accumulator: exact (unrounded) chunk sums rounded by a chunk accumulator run on the "
                              "exact path");
            const int bottom = addend ? std::min(terms.smallest_step, addend->smallest_step) : terms.smallest_step;
            if (!exact_in_double(bottom, first + double(K) * terms.max_magnitude))
                return refuse("accumulator: exact (unrounded) sums that may need more than double's 53 bits");
            r.exact_ = exact_sums::all;
            return r;
        }
        if (double_terms) {
            if (spec.model != accumulation::sequential && spec.model != accumulation::fma)
                return refuse("terms of more than 24 bits (doubles): sequential and fma chains only");
            // (rounding a round-to-odd float is rounding the exact sum where the format's steps are
            // at least 2^-147, twice fp32's smallest, subnormals included)
            if (const auto g = float_grid(spec.accumulator);
                g && !is_fp32_nearest(spec.accumulator) && g->smallest_step < -147)
                return refuse("terms of more than 24 bits (doubles): an accumulator with steps below 2^-147");
        }
        const auto accumulate = choose_accumulator(
            spec.accumulator, double_terms ? value_grid{-149, 24, terms.max_magnitude, terms.finite} : terms,
            non_finite_terms);
        if (!accumulate) return refuse(lane_refusal(spec.accumulator, "accumulator"));
        value_grid accumulated = accumulator_grid(spec.accumulator);
        // A pairwise chunk of one product is that product, unrounded: the chunk sums then also
        // take the terms' values (their grid, and whatever infinities they have).
        const bool unrounded_terms = spec.model == accumulation::pairwise;
        if (unrounded_terms) {
            accumulated.smallest_step = std::min(accumulated.smallest_step, terms.smallest_step);
            accumulated.significand_bits = std::max(accumulated.significand_bits, terms.significand_bits);
            accumulated.max_magnitude = std::max(accumulated.max_magnitude, terms.max_magnitude);
            accumulated.finite = accumulated.finite && terms.finite;
        }
        if (addend) accumulated = either(accumulated, *addend);
        // One chunk and an exact chunk accumulator: the total is -0 + the chunk's result, which
        // fp32's addition gives exactly (the chunk's result itself, as in the exact sum). Over
        // several chunks, the exact total is summed in double lanes where double holds it.
        if (spec.chunk_accumulator.is_exact() && r.chunk_ < K) {
            const double largest = first + double(chunks) * chunk_result_bound(spec, r.chunk_, terms.max_magnitude, first);
            if (!exact_in_double(chunk_results_bottom(spec, terms, addend), largest))
                return refuse("chunk_accumulator: exact (unrounded) sums of the chunks' results that may need more than "
                              "double's 53 bits");
            r.exact_ = exact_sums::total;
        }
        // A single chunk of a sequential or fma chain (no chunking at all: the common spec) with
        // the chunk accumulator unset and no addend: its result is an output of the accumulator's
        // rounding, on its grid, so that rounding of -0 + the result is the result, as the exact
        // sum gives: the chunk accumulator may be taken as the accumulator's own operation
        // (chunk_same, which the scaled chains run).
        const bool single_chained_chunk = spec.chunk_accumulator.is_exact() && r.chunk_ >= K && !addend &&
                                          (spec.model == accumulation::sequential || spec.model == accumulation::fma);
        const auto chunk_step =
            single_chained_chunk ? std::optional<accumulate_op>(*accumulate)
            : spec.chunk_accumulator.is_exact()
                ? std::optional<accumulate_op>(sum_fp32{})  // (the exact total: unused over several chunks)
                : choose_accumulator(spec.chunk_accumulator, accumulated,
                                     accumulated_non_finite(spec.accumulator, non_finite_terms, unrounded_terms));
        if (!chunk_step) return refuse(lane_refusal(spec.chunk_accumulator, "chunk_accumulator"));
        r.accumulate_ = *accumulate;
        r.chunk_step_ = *chunk_step;
        r.accumulate_range_ = addition_range::of(spec.accumulator);
        if (!spec.chunk_accumulator.is_exact()) r.chunk_range_ = addition_range::of(spec.chunk_accumulator);
        else if (single_chained_chunk) r.chunk_range_ = r.accumulate_range_;
        r.group_ = spec.group;
        r.window_ = spec.window;
        r.chunk_same_ = r.exact_ == exact_sums::none && std::visit(
            [](const auto& x, const auto& y) {
                using X = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<X, std::decay_t<decltype(y)>> && std::equality_comparable<X>) return x == y;
                else return false;
            },
            r.accumulate_, r.chunk_step_);
        const auto accumulate_fn = [](const accumulate_op& v) {
            return std::visit(
                [](const auto& a) -> accumulate_pass_fn { return &accumulate_pass<std::decay_t<decltype(a)>>; }, v);
        };
        r.accumulate_only_ = accumulate_fn(r.accumulate_);
        r.chunk_only_ = accumulate_fn(r.chunk_step_);
        if (double_terms) {
            r.accumulate_doubles_ = std::visit(
                [](const auto& a) -> accumulate_double_pass_fn {
                    using A = std::decay_t<decltype(a)>;
                    if constexpr (takes_double_terms<A>) return &accumulate_pass<A, double>;
                    else return nullptr;
                },
                r.accumulate_);
            if (r.accumulate_doubles_ == nullptr)
                return refuse("terms of more than 24 bits (doubles): the accumulator's sums must be fp32's or rounded "
                              "to odd (formats of at most 22 significant bits)");
            return r;
        }

        // The models other than the sequential chain, and what makes fp32 / double exact for them.
        if (spec.model == accumulation::pairwise) {
            r.tree_ = std::visit([](const auto& op) -> tree_pass_fn { return &tree_pass<std::decay_t<decltype(op)>>; },
                                 r.accumulate_);
        } else if (spec.model == accumulation::fused) {
            // The sum of up to `chunk` terms, multiples of 2^smallest_step below 2^(e + 1) each,
            // must fit double's 53 bits.
            const int top = exponent_of_largest(terms.max_magnitude) + 1 + int(std::bit_width(std::uint64_t(r.chunk_)));
            if (!deterministic_float(spec.accumulator) || !float_grid(spec.accumulator) ||
                top - terms.smallest_step > 53)
                return refuse("fused: a chunk's exact sum may need more than 53 bits");
            const float_quantizer& qa = *spec.accumulator.as_float();
            if (top <= 127 && terms.smallest_step >= -126)
                r.fused_round_ = std::visit(
                    [](const auto& op) -> fused_round_fn {
                        using A = std::decay_t<decltype(op)>;
                        if constexpr (has_float_rounding<A>)
                            if (keeps_at_most_22_bits(op)) return &fused_round_float_pass<A>;
                        return nullptr;
                    },
                    r.accumulate_);
            if (r.fused_round_ == nullptr) {
                const auto plan = rounding_plan<double>::make(qa.format, qa.on_overflow, qa.random_bits);
                r.fused_rounding_ =
                    dispatch_deterministic(qa.mode, [&](auto m) -> fused_round_op { return round_double<m()>{plan}; });
                r.fused_round_ = std::visit(
                    [](const auto& op) -> fused_round_fn { return &fused_round_pass<std::decay_t<decltype(op)>>; },
                    *r.fused_rounding_);
            }
        } else if (spec.model == accumulation::aligned) {
            if (spec.align != alignment_exponent::value || spec.subnormals != subnormal_exponent::own ||
                spec.zero_exponent)
                return refuse("aligned: operands' exponents, subnormals read at the smallest normal exponent or zeros "
                              "in the alignment (matrix units' conventions) run on the exact path");
            // Terms are normal floats or zero (their exponent field is their exponent), and the sum
            // of the accumulator and `group` terms cut to `window` bits below the largest fits 24 bits.
            const auto acc_grid = float_grid(spec.accumulator);
            if (!acc_grid || !acc_grid->finite || !terms.finite || terms.smallest_step < -126 ||
                acc_grid->smallest_step < -126 || spec.window + 1 + int(std::bit_width(std::uint64_t(spec.group))) > 24)
                return refuse("aligned: terms below fp32's normal range, a saturating accumulator needed, or a cut "
                              "group sum wider than 24 bits (window + 1 + log2 group)");
            // (aligned_pass_scalef: no term scaled by 2^-q below 2^-126, the lowest q being the
            // largest value's exponent - window)
            const int largest_exponent =
                std::max(exponent_of_largest(terms.max_magnitude), exponent_of_largest(acc_grid->max_magnitude));
            [[maybe_unused]] const bool scalef_fits =
                largest_exponent - spec.window - std::min(terms.smallest_step, acc_grid->smallest_step) <= 126;
            r.aligned_ = std::visit(
                [&](const auto& op) -> aligned_pass_fn {
                    using A = std::decay_t<decltype(op)>;
                    // the aligned adder rounds its exact cut sum: no odd_sum in it
                    if constexpr (is_odd_sum<A>) {
                        return nullptr;
                    } else {
#if defined(__AVX512F__)
                        if (scalef_fits)
                            return spec.cut == alignment_cut::toward_zero ? &aligned_pass_scalef<A, false>
                                                                          : &aligned_pass_scalef<A, true>;
#endif
                        return spec.cut == alignment_cut::toward_zero ? &aligned_pass<A, false> : &aligned_pass<A, true>;
                    }
                },
                r.accumulate_);
            if (r.aligned_ == nullptr) return refuse("aligned: an accumulator whose sums need round-to-odd");
        }
        return r;
    }

    const accumulate_op& accumulate() const { return accumulate_; }
    bool chunk_same() const { return chunk_same_; }  // the chunk accumulator is the accumulator's operation
    // Whether row() sums exactly in double lanes (an unset accumulator or chunk accumulator): its
    // totals are then the float roundings of exact sums.
    bool sums_exactly() const { return exact_ != exact_sums::none; }
    // Whether only the chunk accumulator's total is exact (a rounding accumulator's chunks).
    bool exact_total() const { return exact_ == exact_sums::total; }
    bool chained() const { return model_ == accumulation::sequential || model_ == accumulation::fma; }
    std::int64_t chunk() const { return chunk_; }
    // Rows of terms that row() asks for at once (buf's size: that many rows of fast_lanes floats).
    std::int64_t scratch_rows() const {
        return model_ == accumulation::pairwise ? std::int64_t(std::bit_ceil(std::uint64_t(chunk_)))
               : model_ == accumulation::aligned ? std::max<std::int64_t>(group_, fast_panel)
                                                 : fast_panel;
    }

    // total (zeroed, or a sum to continue) = the outputs of a row of K terms. fill(k, m, buf) writes
    // terms k .. k + m - 1 into buf (m rows of fast_lanes floats). A chained model first offers
    // each chunk to fused(k, n, acc), which may accumulate its n terms into acc itself (and return
    // true) where terms and accumulation run in one loop. `initial` (fast_lanes floats, or null
    // for +0) is where the first chunk's running accumulator starts: an addend of a model where
    // it starts the chain (addend_starts_chunk; the others start total from it).
    template <class Fill, class Fused>
    void row(std::int64_t K, const Fill& fill, const Fused& fused, float* buf, float* total,
             const float* initial = nullptr) const {
        alignas(64) double sums[fast_lanes];
        const void* const accumulate_address = address_of(accumulate_);
        const void* const chunk_address = address_of(chunk_step_);
        const void* const round_address = fused_rounding_ ? address_of(*fused_rounding_) : accumulate_address;
        // acc (started) = the result of the chunk of n terms from `start`
        const auto reduce_chunk = [&](std::int64_t start, int n, float* acc) {
            const std::int64_t end = start + n;
            switch (model_) {  // once per chunk, outside the loops over k
                case accumulation::sequential:
                case accumulation::fma:
                    if (!fused(start, n, acc)) {
                        for (std::int64_t k = start; k < end; k += fast_panel) {
                            const int m = int(std::min<std::int64_t>(fast_panel, end - k));
                            fill(k, m, buf);
                            accumulate_only_(buf, m, acc, accumulate_address);
                        }
                    }
                    break;
                case accumulation::pairwise:
                    fill(start, n, buf);
                    tree_(buf, n, acc, accumulate_address);
                    break;
                case accumulation::fused:
                    std::fill(sums, sums + fast_lanes, 0.0);
                    for (std::int64_t k = start; k < end; k += fast_panel) {
                        const int m = int(std::min<std::int64_t>(fast_panel, end - k));
                        fill(k, m, buf);
                        sum_pass(buf, m, sums);
                    }
                    fused_round_(sums, acc, round_address);
                    break;
                case accumulation::aligned:
                    // whole groups of terms at a time (groups restart with each chunk)
                    for (std::int64_t k = start; k < end; k += group_) {
                        const int m = int(std::min<std::int64_t>(group_, end - k));
                        fill(k, m, buf);
                        aligned_(buf, m, group_, window_, acc, accumulate_address);
                    }
                    break;
                case accumulation::two_level: break;  // (refused by make)
            }
        };
        chunks(K, fill, fused, reduce_chunk, buf, total, initial,
               [&](const float* acc) { chunk_only_(acc, 1, total, chunk_address); });
    }

    // The same for double terms (make with double_terms): fill(k, m, buf) writes m rows of
    // fast_lanes doubles.
    // As row(), fused(k, n, acc) may accumulate a chunk's n terms itself.
    template <class Fill, class Fused>
    void row_of_doubles(std::int64_t K, const Fill& fill, const Fused& fused, double* buf, float* total,
                        const float* initial = nullptr) const {
        const void* const accumulate_address = address_of(accumulate_);
        const void* const chunk_address = address_of(chunk_step_);
        const auto reduce_chunk = [&](std::int64_t start, int n, float* acc) {
            if (fused(start, n, acc)) return;
            for (std::int64_t k = start; k < start + n; k += fast_panel) {
                const int m = int(std::min<std::int64_t>(fast_panel, start + n - k));
                fill(k, m, buf);
                accumulate_doubles_(buf, m, acc, accumulate_address);
            }
        };
        chunks(K, fill, fused, reduce_chunk, buf, total, initial,
               [&](const float* acc) { chunk_only_(acc, 1, total, chunk_address); });
    }

    // Whether counted_row serves this reduction: chained models, and pairwise trees of float terms.
    bool counts_events() const {
        if (exact_ == exact_sums::all) return true;
        return accumulate_range_.counts && (chained() || (model_ == accumulation::pairwise && accumulate_doubles_ == nullptr));
    }

    // row() (T = float) or row_of_doubles() (T = double) with the events counted (counted
    // passes): fill(k, m, buf) writes terms k .. k + m - 1 and counts their products' events.
    template <class T, class Fill>
    void counted_row(std::int64_t K, const Fill& fill, T* buf, float* total, const float* initial,
                     lane_events& events) const {
        // acc (started) = the result of the chunk of n terms from `start`, its events counted
        const auto reduce_chunk = [&](std::int64_t start, int n, float* acc) {
            const std::int64_t end = start + n;
            std::visit(
                [&](const auto& step) {
                    using A = std::decay_t<decltype(step)>;
                    if constexpr (std::is_same_v<T, float> || takes_double_terms<A>) {
                        if (model_ == accumulation::pairwise) {
                            if constexpr (std::is_same_v<T, float>) {
                                fill(start, n, buf);
                                counted_tree_pass(buf, n, acc, step, accumulate_range_, events);
                            }
                            return;
                        }
                        for (std::int64_t k = start; k < end; k += fast_panel) {
                            const int m = int(std::min<std::int64_t>(fast_panel, end - k));
                            fill(k, m, buf);
                            counted_chain_pass(buf, m, acc, step, accumulate_range_, events);
                        }
                    }
                },
                accumulate_);
        };
        // (exact sums have no events: the terms' are counted by fill)
        chunks(K, fill, [](std::int64_t, int, double*) { return false; }, reduce_chunk, buf, total, initial,
               [&](float* acc) {
                   std::visit([&](const auto& step) { counted_chain_pass<std::decay_t<decltype(step)>, float>(acc, 1, total, step, chunk_range_, events); },
                              chunk_step_);
               });
    }

private:
    lane_reduction() = default;
    static void start_chunk(float* acc, const float* initial) {
        if (initial != nullptr) std::copy(initial, initial + fast_lanes, acc);
        else std::fill(acc, acc + fast_lanes, 0.0f);
    }

    // A row's chunks: each chunk's result from reduce_chunk(start, n, acc) (acc started: from
    // `initial` for the first chunk, else +0), then add_chunk(acc): total = chunk_acc(total + acc).
    // Exact sums (exact_ != none) take exact_row instead.
    template <class T, class Fill, class Fused, class Chunk, class AddChunk>
    void chunks(std::int64_t K, const Fill& fill, const Fused& fused, const Chunk& reduce_chunk, T* buf, float* total,
                const float* initial, const AddChunk& add_chunk) const {
        if (exact_ != exact_sums::none) return exact_row(K, fill, fused, reduce_chunk, buf, total, initial);
        alignas(64) float acc[fast_lanes];
        for (std::int64_t start = 0; start < K; start += chunk_) {
            start_chunk(acc, start == 0 ? initial : nullptr);
            reduce_chunk(start, int(std::min(start + chunk_, K) - start), acc);
            add_chunk(acc);
        }
    }

    // The exact sums of row() (exact_ != none), from `total` (its start: -0s or an addend) to its
    // float rounding (nearest even, as every output). With exact_sums::all each chunk's terms are
    // summed here from its start (`initial` for the first, else +0), by fused(k, n, sums) where
    // it takes double sums and returns true (terms made as they are added), else through fill's
    // buffer; otherwise chunk(start, n, acc) leaves a chunk's rounded result in acc.
    template <class T, class Fill, class Fused, class Chunk>
    void exact_row(std::int64_t K, const Fill& fill, const Fused& fused, const Chunk& chunk, T* buf, float* total,
                   const float* initial) const {
        alignas(64) double sum[fast_lanes], chunk_sum[fast_lanes];
        alignas(64) float acc[fast_lanes];
        for (int l = 0; l < fast_lanes; ++l) sum[l] = total[l];
        for (std::int64_t start = 0; start < K; start += chunk_) {
            const std::int64_t end = std::min(start + chunk_, K);
            if (exact_ == exact_sums::all) {
                for (int l = 0; l < fast_lanes; ++l) chunk_sum[l] = start == 0 && initial != nullptr ? initial[l] : 0.0;
                bool summed = false;
                if constexpr (std::is_invocable_r_v<bool, const Fused&, std::int64_t, int, double*>)
                    summed = fused(start, int(end - start), chunk_sum);
                for (std::int64_t k = start; k < end && !summed; k += fast_panel) {
                    const int m = int(std::min<std::int64_t>(fast_panel, end - k));
                    fill(k, m, buf);
                    sum_pass(buf, m, chunk_sum);
                }
                for (int l = 0; l < fast_lanes; ++l) sum[l] += chunk_sum[l];
            } else {
                start_chunk(acc, start == 0 ? initial : nullptr);
                chunk(start, int(end - start), acc);
                for (int l = 0; l < fast_lanes; ++l) sum[l] += double(acc[l]);
            }
        }
        for (int l = 0; l < fast_lanes; ++l) total[l] = float(sum[l]);
    }
    accumulate_op accumulate_, chunk_step_;
    addition_range accumulate_range_, chunk_range_;  // (for counted_row)
    // Sums that are exact in double lanes: none, the chunk accumulator's total (its results added
    // to a double total, rounded to float once at the end), or all (an unset accumulator too:
    // each chunk's terms summed in double; accumulate_ and chunk_step_ are then not used).
    enum class exact_sums { none, total, all } exact_ = exact_sums::none;
    accumulation model_ = accumulation::sequential;
    std::int64_t chunk_ = 0;
    int group_ = 0, window_ = 0;
    bool chunk_same_ = false;
    accumulate_pass_fn accumulate_only_ = nullptr, chunk_only_ = nullptr;
    accumulate_double_pass_fn accumulate_doubles_ = nullptr;
    tree_pass_fn tree_ = nullptr;
    fused_round_fn fused_round_ = nullptr;
    std::optional<fused_round_op> fused_rounding_;  // (where the sums round in double)
    aligned_pass_fn aligned_ = nullptr;
};

// Sequential and fma chains of exact products wider than fp32's 24 bits (fp32 inputs: 48 bits)
// in fp32 lanes: each product a double (exact), added as lane_reduction's double terms; an fp32
// accumulator in nearest_even adds it with fp32's own fma where the processor has one. For
// fast_gemm, which has checked the inputs and the addend; false (report says why) where the spec
// is not such a chain.
template <class MA, class MB, class MC>
bool double_product_gemm(const MA& a, const MB& b, MC& c, const gemm_spec& spec, const value_grid& product,
                         const float* addend, const std::optional<value_grid>& addend_grid, gemm_stats* stats,
                         gemm_report* report) {
    const std::int64_t M = a.rows(), K = a.cols(), N = b.cols();
    std::string why_not;
    const auto refuse = [&](std::string why) {
        if (report != nullptr) report->reason = std::move(why);
        return false;
    };
    const std::string wide = "inputs: products of " + std::to_string(product.significand_bits) +
                             " significant bits are not exact in fp32; ";
    if (spec.model != accumulation::sequential && spec.model != accumulation::fma)
        return refuse(wide + "fp32 lanes add them as doubles in sequential and fma chains only");
    if (spec.model == accumulation::sequential && !spec.product.is_exact())
        return refuse(wide + "fp32 lanes add them as doubles unrounded only (product unset, or model fma)");
    if (stats != nullptr && spec.record_lost) return refuse("stats: per-product records (record_lost)");
    const auto reduction = lane_reduction::make(spec, K, product, why_not, true, addend_grid);
    if (!reduction) return refuse(why_not);
    if (stats != nullptr && !reduction->counts_events())
        return refuse("stats: events of double terms are counted for float accumulators");
#if defined(__FMA__)
    const bool fma_lanes = stats == nullptr && std::holds_alternative<sum_fp32>(reduction->accumulate());
#else
    const bool fma_lanes = false;  // (std::fma would be a library call per element)
#endif
    const std::int64_t blocks = (N + fast_lanes - 1) / fast_lanes;
    const padded_columns b_padded(b, blocks * fast_lanes);
    const float* const b_data = b_padded.data();
    const std::ptrdiff_t ldb = blocks * fast_lanes;
    std::mutex adding;
    for_each_range(blocks * M, thread_count(spec.threads), [&](std::int64_t begin, std::int64_t end) {
        std::vector<double> scratch(std::size_t(fast_panel * fast_lanes));
        lane_events events;
        for (std::int64_t at = begin; at < end; ++at) {
            const std::int64_t block = at / M, i = at % M;
            const float* a_row = a.data() + i * K;
            const float* b_block = b_data + block * fast_lanes;
            const auto fill = [&](std::int64_t k, int m, double* out) {
                for (int t = 0; t < m; ++t) {
                    const double at_k = a_row[k + t];
                    const float* bt = b_block + (k + t) * ldb;
                    for (int l = 0; l < fast_lanes; ++l) out[t * fast_lanes + l] = at_k * double(bt[l]);  // exact
                }
            };
            if (stats != nullptr) {  // (the products are exact: their only event is a zero operand, counted below)
                chunk_totals total;
                alignas(64) float initial[fast_lanes];
                if (addend != nullptr) block_addends(addend, N, i, block * fast_lanes, initial);
                reduction->counted_row(K, fill, scratch.data(), total, addend != nullptr ? initial : nullptr, events);
                const std::int64_t width = std::min<std::int64_t>(fast_lanes, N - block * fast_lanes);
                for (std::int64_t l = 0; l < width; ++l) c(i, block * fast_lanes + l) = total[l];
                continue;
            }
            const auto fused = [&](std::int64_t k, int n, float* acc_io) {
                if (!fma_lanes) return false;
                alignas(64) float acc[fast_lanes];
                std::copy(acc_io, acc_io + fast_lanes, acc);
                for (int t = 0; t < n; ++t) {
                    const float at_k = a_row[k + t];
                    const float* bt = b_block + (k + t) * ldb;
                    for (int l = 0; l < fast_lanes; ++l) acc[l] = std::fma(at_k, bt[l], acc[l]);  // one rounding
                }
                std::copy(acc, acc + fast_lanes, acc_io);
                return true;
            };
            chunk_totals total;
            alignas(64) float initial[fast_lanes];
            if (addend != nullptr) block_addends(addend, N, i, block * fast_lanes, initial);
            reduction->row_of_doubles(K, fill, fused, scratch.data(), total, addend != nullptr ? initial : nullptr);
            const std::int64_t width = std::min<std::int64_t>(fast_lanes, N - block * fast_lanes);
            for (std::int64_t l = 0; l < width; ++l) c(i, block * fast_lanes + l) = total[l];
        }
        if (stats == nullptr) return;
        std::lock_guard lock(adding);
        events.add_to(*stats);
    });
    if (stats != nullptr) stats->zero_operand += zero_operand_products(a, b_data, ldb, N);
    if (report != nullptr) {
        report->kernel = gemm_kernel::vectorized_chain;
        report->reason.clear();
    }
    return true;
}

// Fills c (row-major M x N) from quantized a (row-major M x K) and b (row-major K x N) when the
// spec allows the fast path; returns false (c and stats untouched) otherwise. With stats, adds
// the events (not the MACs) to *stats where this path can count them (counts_events).
// (a, b, c: row-major float matrices or maps, stored contiguously.) *report, when given, is told
// which kernel ran, or why none could. `addend` (row-major M x N, gemm_add's quantized C, or
// null) is where each output's accumulation starts (gemm_spec.hpp).
template <class MA, class MB, class MC>
bool fast_gemm(const MA& a, const MB& b, MC& c, const gemm_spec& spec, gemm_stats* stats = nullptr,
               gemm_report* report = nullptr, const float* addend = nullptr) {
    static_assert(MA::IsRowMajor && MB::IsRowMajor && MC::IsRowMajor, "fast_gemm takes row-major matrices");
    const std::int64_t M = a.rows(), K = a.cols(), N = b.cols();
    std::string why_not;  // why this path does not apply, or why the scaled chain does not
    const auto refuse = [&](std::string why) {
        if (report != nullptr) report->reason = std::move(why);
        return false;
    };
    if (K == 0) return refuse("K = 0");
    const auto grids = input_grids(spec.input_a, a.data(), a.size(), spec.input_b, b.data(), b.size(), why_not, true);
    if (!grids) return refuse(why_not);
    const auto grid_a = &grids->first, grid_b = &grids->second;
    std::optional<value_grid> addend_grid;
    if (addend != nullptr) {
        addend_grid = scanned_grid(addend, M * N);
        if (!addend_grid) return refuse("addend: an infinity or NaN");
    }
    // Products that fp32 cannot hold exactly: rounded by fp32's multiplication where that is the
    // product quantizer's rounding, else added as doubles.
    const bool exact_products = products_exact_in_float(*grid_a, *grid_b);
    const bool rounded_by_fp32 = !exact_products && spec.model != accumulation::fma && on_fp32_grid_nearest(spec.product);
    if (!exact_products && !rounded_by_fp32)
        return double_product_gemm(a, b, c, spec, product_grid(*grid_a, *grid_b), addend, addend_grid, stats, report);

    const auto products = product_stage::make(spec, product_grid(*grid_a, *grid_b), why_not, rounded_by_fp32);
    if (!products) return refuse(why_not);
    const product_op& prod = products->op;
    const value_grid& product = products->grid;
    const auto reduction = lane_reduction::make(spec, K, product, why_not, false, addend_grid);
    if (!reduction) return refuse(why_not);
    const accumulate_op* const accumulate = &reduction->accumulate();
    const bool chunk_same = reduction->chunk_same(), chained = reduction->chained();
    const std::int64_t chunk = reduction->chunk();

    // The passes for these operations: one fused loop when both are light.
    const fused_pass_fn fused = std::visit(
        [](const auto& p, const auto& a) -> fused_pass_fn {
            using P = std::decay_t<decltype(p)>;
            using A = std::decay_t<decltype(a)>;
            if constexpr (is_light<P> && is_light<A>) return &fused_pass<P, A>;
            else return nullptr;
        },
        prod, *accumulate);
    // (the one-loop chunks and the AVX-512 chain start from +0: no addend; an exact total beside
    // odd-sum accumulators, whose chunks then run two at a time on AVX-512)
    const bool exact_total = reduction->exact_total();
    const fused_chunks_pass_fn fused_chunks = !(chunk_same || exact_total) || !chained || fused == nullptr || addend != nullptr ? nullptr : std::visit(
        [exact_total](const auto& p, const auto& a) -> fused_chunks_pass_fn {
            using P = std::decay_t<decltype(p)>;
            using A = std::decay_t<decltype(a)>;
            if constexpr (is_light<P> && is_light<A>) {
                if (!exact_total) return &fused_chunks_pass<P, A, false>;
                if constexpr (is_odd_sum<A>) return &fused_chunks_pass<P, A, false, true>;
            }
            return nullptr;
        },
        prod, *accumulate);
    // Events are counted here only on that path, for the operations of counts_events, and without
    // per-product records; otherwise the caller takes the exact path.
    // (products fp32's multiply rounded: a zero without a zero operand is an underflow that only
    // the counted passes see)
    const fused_chunks_pass_fn counted_chunks = stats == nullptr || !chunk_same || !chained || addend != nullptr || rounded_by_fp32 ? nullptr : std::visit(
        [](const auto& p, const auto& a) -> fused_chunks_pass_fn {
            using P = std::decay_t<decltype(p)>;
            using A = std::decay_t<decltype(a)>;
            if constexpr (counts_events<P, A>) return &fused_chunks_pass<P, A, true>;
            else return nullptr;
        },
        prod, *accumulate);
    if (stats != nullptr && spec.record_lost) return refuse("stats: per-product records (record_lost)");
    // Elsewhere the counted passes count them (the inputs are finite here): for sequential, fma and
    // pairwise models, and products whose rounding reports its events.
    const counted_product_pass_fn counted_products = stats == nullptr || counted_chunks != nullptr ? nullptr : std::visit(
        [](const auto& p) -> counted_product_pass_fn {
            using P = std::decay_t<decltype(p)>;
            if constexpr (requires(const P& q, float x, std::uint32_t& f) { q.counted(x, f, f); }) return &counted_product_pass<P>;
            else return nullptr;
        },
        prod);
    if (stats != nullptr && counted_chunks == nullptr) {
        if (counted_products == nullptr)
            return refuse("stats: a product rounding that overflows to infinity counts its events on the exact path");
        if (!reduction->counts_events())
            return refuse("stats: events are counted in lanes for sequential, fma and pairwise models");
    }
    const product_pass_fn product_only = std::visit(
        [](const auto& p) -> product_pass_fn { return &product_pass<std::decay_t<decltype(p)>>; }, prod);
    const product_sum_pass_fn product_sum = !reduction->sums_exactly() ? nullptr : std::visit(
        [](const auto& p) -> product_sum_pass_fn { return &product_sum_pass<std::decay_t<decltype(p)>>; }, prod);
    const void* const prod_address = address_of(prod);
    const void* const accumulate_address = address_of(*accumulate);

    const std::int64_t blocks = (N + fast_lanes - 1) / fast_lanes;
    const padded_columns b_padded(b, blocks * fast_lanes);
    const float* const b_data = b_padded.data();
    const std::ptrdiff_t ldb = blocks * fast_lanes;
    const int threads = thread_count(spec.threads);

    const std::int64_t rows = reduction->scratch_rows();  // of products a thread keeps
    const bool addend_in_chain = addend_starts_chunk(spec.model);
    // Row i's block of outputs on the passes above, without events, into total (-0s); buf:
    // rows x lanes floats of scratch.
    const auto general_row = [&](std::int64_t i, std::int64_t block, float* buf, float* total) {
        const float* a_row = a.data() + i * K;
        const float* b_block = b_data + block * fast_lanes;
        if (fused_chunks != nullptr) {
            fused_chunks(a_row, b_block, ldb, K, chunk, prod_address, accumulate_address, total, nullptr);
            return;
        }
        alignas(64) float initial[fast_lanes];
        if (addend != nullptr) block_addends(addend, N, i, block * fast_lanes, addend_in_chain ? initial : total);
        reduction->row(
            K,
            [&](std::int64_t k, int m, float* out) { product_only(a_row + k, b_block + k * ldb, ldb, m, prod_address, out); },
            [&](std::int64_t k, int n, auto* acc) {
                if constexpr (std::is_same_v<decltype(acc), double*>) {  // (exact sums)
                    if (product_sum == nullptr) return false;
                    product_sum(a_row + k, b_block + k * ldb, ldb, n, prod_address, acc);
                } else {
                    if (fused == nullptr) return false;
                    fused(a_row + k, b_block + k * ldb, ldb, n, prod_address, accumulate_address, acc);
                }
                return true;
            },
            buf, total, addend != nullptr && addend_in_chain ? initial : nullptr);
    };

    // The AVX-512 chain (scaled_chain.hpp) where it applies, two rows of A at a time. It runs
    // where fused_chunks does (the general chain, which recomputes its zero results); it counts
    // events on sequential and fma chains.
    std::optional<scaled_chain> scaled;
    scaled_pass_fn scaled_pass[2] = {};  // for 1 and 2 rows
    bool in_pairs = false;               // nearest_even: B laid out for its lane order
    const bool pairwise = spec.model == accumulation::pairwise;
    if (chunk_same && addend == nullptr && !(stats != nullptr && rounded_by_fp32) &&
        (chained || (stats == nullptr && pairwise && std::bit_ceil(std::uint64_t(chunk)) <= 64)))
        std::visit(
            [&](const auto& p, const auto& step) {
                using P = std::decay_t<decltype(p)>;
                using A = std::decay_t<decltype(step)>;
                if constexpr (scaled_chain_applies<P, A>) {
                    scaled = scaled_chain_for(p, step, *grid_a, *grid_b, stats != nullptr);
                    constexpr bool nearest = std::is_same_v<A, round_flush_saturate<rounding::nearest_even>>;
                    constexpr rounding mode = nearest ? rounding::nearest_even : rounding::toward_zero;
                    constexpr bool cut = truncated_product<P>;
                    if (cut && pairwise) {
                        scaled.reset();  // (no truncating tree kernel: see truncated_product)
                    } else if (stats != nullptr) {
                        scaled_pass[0] = &scaled_chunks_pass<mode, false, 1, true, cut>;
                        scaled_pass[1] = &scaled_chunks_pass<mode, false, 2, true, cut>;
                    } else {
                        scaled_pass[0] = pairwise ? &scaled_chunks_pass<mode, true, 1, false, false>
                                                  : &scaled_chunks_pass<mode, false, 1, false, cut>;
                        // (a tree keeps more values at once: one row at a time)
                        scaled_pass[1] = pairwise ? nullptr : &scaled_chunks_pass<mode, false, 2, false, cut>;
                    }
                    in_pairs = nearest;
                }
            },
            prod, *accumulate);
    // Where it does not, portable_chain.hpp's chain, sequential and fma chains without events,
    // with the chunk accumulator the accumulator or an exact total.
    bool portable = false;
    if (!scaled && (chunk_same || exact_total) && addend == nullptr && chained && stats == nullptr)
        std::visit(
            [&](const auto& p, const auto& step) {
                using P = std::decay_t<decltype(p)>;
                using A = std::decay_t<decltype(step)>;
                if constexpr (portable_chain_applies<P, A>) {
                    scaled = portable_chain_for(p, step, *grid_a, *grid_b);
                    constexpr rounding mode = std::is_same_v<A, round_flush_saturate<rounding::nearest_even>>
                                                  ? rounding::nearest_even
                                                  : rounding::toward_zero;
                    constexpr bool cut = truncated_product<P>;
                    scaled_pass[0] = exact_total ? &portable_chunks_pass<mode, 1, cut, true> : &portable_chunks_pass<mode, 1, cut>;
                    scaled_pass[1] = exact_total ? &portable_chunks_pass<mode, 2, cut, true> : &portable_chunks_pass<mode, 2, cut>;
                    portable = scaled.has_value();
                    in_pairs = false;
                }
            },
            prod, *accumulate);
    if (report != nullptr) {
        report->kernel = portable ? gemm_kernel::scaled_chain_portable
                         : scaled ? gemm_kernel::scaled_chain_avx512
                                  : gemm_kernel::vectorized_chain;
        report->reason.clear();
        const bool applies = std::visit(
            [](const auto& p, const auto& step) {
                return scaled_chain_applies<std::decay_t<decltype(p)>, std::decay_t<decltype(step)>>;
            },
            prod, *accumulate);
        const bool portable_applies = std::visit(
            [](const auto& p, const auto& step) {
                return portable_chain_applies<std::decay_t<decltype(p)>, std::decay_t<decltype(step)>>;
            },
            prod, *accumulate);
        const bool truncating = std::visit([](const auto& p) { return truncated_product<std::decay_t<decltype(p)>>; }, prod);
        if (!scaled && !has_scaled_chain && portable_applies)
            report->reason = "scaled_chain_portable: runs sequential and fma chains, without events, from +0, where "
                             "the accumulator and the products flush at the same smallest normal (or no product "
                             "lies below it) and, in nearest_even, every product is a multiple of the "
                             "accumulator's smallest step";
        else if (!scaled && has_scaled_chain && applies)
            report->reason = !chunk_same ? "scaled_chain_avx512: needs the chunk accumulator to be the accumulator"
                             : addend != nullptr ? "scaled_chain_avx512: starts from +0, not from an addend (gemm_add)"
                             : truncating && pairwise
                                 ? "scaled_chain_avx512: products rounded toward zero run on sequential and fma chains only"
                             : !chained && !pairwise ? "scaled_chain_avx512: runs sequential, fma and pairwise chains"
                             : !chained && stats != nullptr ? "scaled_chain_avx512: counts events on sequential and fma chains only"
                             : !chained      ? "scaled_chain_avx512: pairwise trees of at most 64 leaves"
                             : "scaled_chain_avx512: nearest_even keeps other than 7 mantissa bits, or the values "
                               "do not fit fp32's normal range once scaled, or products rounded toward zero to a "
                               "format with subnormals";
    }
    if (scaled) {
        float* const b_scaled = reused_buffer(buffer_slot::layout_b, std::size_t(K * ldb));
        // The largest magnitudes per panel of k of each row of A and each block of B, and the sums
        // of A's (in double, and then a margin up: bounds).
        const std::int64_t panels = (K + saturation_panel - 1) / saturation_panel;
        std::vector<float> a_largest(std::size_t(M * panels)), a_sum(std::size_t(M * panels)),
            b_largest(std::size_t(blocks * panels));
        const std::int64_t rows_at_once = pairwise ? 1 : 2, pairs = (M + rows_at_once - 1) / rows_at_once;
        scaled_events all_events;
        for_each_range(K, threads, [&](std::int64_t begin, std::int64_t end) {
            lay_out_scaled(b_data, ldb, begin, end, K, chunk, pairwise, std::ldexp(1.0f, scaled->scale), in_pairs,
                           b_scaled);
        });
        for_each_range(M, threads, [&](std::int64_t begin, std::int64_t end) {
            for (std::int64_t i = begin; i < end; ++i)
                for (std::int64_t panel = 0; panel < panels; ++panel) {
                    float largest = 0;
                    double sum = 0;
                    for (std::int64_t k = panel * saturation_panel; k < std::min(K, (panel + 1) * saturation_panel); ++k) {
                        largest = std::max(largest, std::fabs(a(i, k)));
                        sum += std::fabs(a(i, k));
                    }
                    a_largest[std::size_t(i * panels + panel)] = largest;
                    a_sum[std::size_t(i * panels + panel)] = float(sum) * (1 + 0x1p-20f);
                }
        });
        for_each_range(blocks, threads, [&](std::int64_t begin, std::int64_t end) {
            for (std::int64_t block = begin; block < end; ++block)
                for (std::int64_t k = 0; k < K; ++k) {
                    float& m = b_largest[std::size_t(block * panels + k / saturation_panel)];
                    for (std::int64_t l = 0; l < fast_lanes; ++l)
                        m = std::max(m, std::fabs(b_data[k * ldb + block * fast_lanes + l]));
                }
        });
        std::mutex adding;
        // Ranges of (block, pair of rows), blocks outermost.
        for_each_range(blocks * pairs, threads, [&](std::int64_t begin, std::int64_t end) {
            scaled_events events;  // this range's
            for (std::int64_t at = begin; at < end; ++at) {
                const std::int64_t block = at / pairs, i = rows_at_once * (at % pairs);
                const std::int64_t count = std::min<std::int64_t>(rows_at_once, M - i);
                alignas(64) float out[2 * fast_lanes];
                const panel_bounds bounds{a_largest.data() + i * panels, a_sum.data() + i * panels, panels,
                                          b_largest.data() + block * panels};
                std::uint64_t unknown[2];
                scaled_pass[count - 1](a.data() + i * K, K, b_scaled + block * fast_lanes, ldb, K, chunk, *scaled,
                                       bounds, out, unknown, &events);
                const std::int64_t width = std::min<std::int64_t>(fast_lanes, N - block * fast_lanes);
                for (std::int64_t r = 0; r < count; ++r) {
                    float* const row = out + r * fast_lanes;
                    const std::uint64_t columns = width == 64 ? ~std::uint64_t(0) : (std::uint64_t(1) << width) - 1;
                    if ((unknown[r] & columns) != 0) {  // a zero of unknown sign: see scaled_chain.hpp
                        chunk_totals total;
                        std::vector<float> scratch(std::size_t(rows * fast_lanes));
                        general_row(i + r, block, scratch.data(), total);
                        for (std::int64_t l = 0; l < width; ++l)
                            if ((unknown[r] >> l) & 1u) row[l] = total[l];
                    }
                    for (std::int64_t l = 0; l < width; ++l) c(i + r, block * fast_lanes + l) = row[l];
                }
            }
            if (stats == nullptr) return;
            std::lock_guard lock(adding);
            all_events.kept_products += events.kept_products;
            all_events.zero_chunk_results += events.zero_chunk_results;
            all_events.equal += events.equal;
            all_events.inexact += events.inexact;
            all_events.accumulator_overflows += events.accumulator_overflows;
            all_events.product_overflows += events.product_overflows;
        });
        if (stats != nullptr) {
            // Every product (padding columns included) that is zero or flushed is a term of 0: an
            // equal rounding but no swamp; those without a zero operand underflowed.
            const std::uint64_t products = std::uint64_t(M) * std::uint64_t(K) * std::uint64_t(ldb);
            const std::uint64_t zero_terms = products - all_events.kept_products;
            const std::uint64_t zero_operands = zero_operand_products(a, b_data, ldb, N);
            const std::uint64_t padding = std::uint64_t(M) * std::uint64_t(K) * std::uint64_t(ldb - N);
            stats->zero_operand += zero_operands;
            stats->product_overflows += all_events.product_overflows;
            stats->product_underflows += zero_terms - zero_operands - padding;
            stats->accumulator_overflows += all_events.accumulator_overflows;
            stats->swamps += all_events.equal - zero_terms - all_events.zero_chunk_results;
            stats->inexact_additions += all_events.inexact;
        }
        return true;
    }

    std::mutex adding;
    // Ranges of (block, row) with blocks of columns outermost: one block's K x lanes panel of B
    // stays in cache across rows.
    for_each_range(blocks * M, threads, [&](std::int64_t begin, std::int64_t end) {
        std::vector<float> scratch(std::size_t(rows * fast_lanes));
        gemm_stats events;  // this range's
        for (std::int64_t at = begin; at < end; ++at) {
            const std::int64_t block = at / M, i = at % M;
            chunk_totals total;
            if (counted_chunks != nullptr) {
                counted_chunks(a.data() + i * K, b_data + block * fast_lanes, ldb, K, chunk, prod_address,
                               accumulate_address, total, &events);
            } else if (stats != nullptr) {
                const float* a_row = a.data() + i * K;
                const float* b_block = b_data + block * fast_lanes;
                alignas(64) float initial[fast_lanes];
                if (addend != nullptr) block_addends(addend, N, i, block * fast_lanes, addend_in_chain ? initial : total);
                lane_events counted;
                reduction->counted_row(
                    K,
                    [&](std::int64_t k, int m, float* out) {
                        counted_products(a_row + k, b_block + k * ldb, ldb, m, prod_address, out, counted);
                    },
                    scratch.data(), total, addend != nullptr && addend_in_chain ? initial : nullptr, counted);
                counted.add_to(events);
            } else {
                general_row(i, block, scratch.data(), total);
            }
            const std::int64_t width = std::min<std::int64_t>(fast_lanes, N - block * fast_lanes);
            for (std::int64_t l = 0; l < width; ++l) c(i, block * fast_lanes + l) = total[l];
        }
        if (stats != nullptr) {
            std::lock_guard lock(adding);
            *stats += events;  // integer sums: the order of the ranges does not matter
        }
    });
    // The padding columns of B (zero products: no other event) counted zero operands.
    if (stats != nullptr) stats->zero_operand -= std::uint64_t(M) * std::uint64_t(K) * std::uint64_t(blocks * fast_lanes - N);
    return true;
}

}  // namespace lowbit::detail

LOWBIT_END_INTRINSICS
