// lowbit/datapath/shift_rounding.hpp: accumulator roundings on a float's bits, for the vectorized
// GEMM path (fast_datapath.hpp): the constant-shift rounding of normal floats (shift_round),
// round_flush_saturate for formats without subnormals that saturate (M7E4, MxE5), round_shift for
// formats with subnormals (fp16, bf16, e5m2, ...), and, on AVX-512, their vector forms and the
// chains of odd sums that use them (odd_chunks over a row's chunks, odd_accumulate over a buffer
// of terms).
//
// Why a kernel of its own: these accumulators span more than fp32's 24 bits, so each fp32 sum is
// first rounded to odd (see odd_sum in fast_datapath.hpp). Written for any vector unit that is a
// TwoSum and a fix-up, a dependent chain of about 25 instructions per step, and the
// auto-vectorized loop is bound by that latency (about 1.3 G MAC/s). AVX-512 adds with their own
// rounding mode give it in three independent adds and a compare: the sum truncated, with its last
// bit set where the sums rounded down and up differ (that is, where it was inexact). fp16 (and
// bf16 in nearest_even) is then the hardware's conversion and back; and two chunks run at once, so
// that eight chains, not four, hide the latency.
#pragma once

#include <lowbit/formats/float_format.hpp>
#include <lowbit/formats/format_names.hpp>
#include <lowbit/rounding/modes.hpp>
#include <lowbit/rounding/rounding_plan.hpp>
#include <lowbit/datapath/intrinsics_warnings.hpp>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

LOWBIT_BEGIN_INTRINSICS

namespace lowbit::detail {

// The magnitude bits of a float with sign `sign` and magnitude bits `magnitude` (bits = both),
// rounded in the mode by dropping its `shift` low bits (below = their mask): the rounding to a
// format with 23 - shift mantissa bits, for normal values and, below fp32's smallest normal, for
// a format whose subnormal grid continues fp32's. A carry out of the fraction is the next binade.
template <rounding Mode>
[[gnu::always_inline]] inline std::uint32_t shift_round(std::uint32_t bits, std::uint32_t sign, std::uint32_t magnitude,
                                                        std::uint32_t shift, std::uint32_t below) {
    if constexpr (Mode == rounding::nearest_even)  // + half - 1, + 1 more when the kept lsb is odd
        return (magnitude + (below >> 1) + ((magnitude >> shift) & 1u)) & ~below;
    else if constexpr (Mode == rounding::nearest_away)
        return (magnitude + ((below + 1) >> 1)) & ~below;
    else if constexpr (Mode == rounding::toward_zero)
        return bits & (~below & 0x7FFFFFFFu);  // (one mask for the sign and the dropped bits)
    else if constexpr (Mode == rounding::toward_positive)
        return (magnitude + (sign != 0 ? 0u : below)) & ~below;
    else if constexpr (Mode == rounding::toward_negative)
        return (magnitude + (sign != 0 ? below : 0u)) & ~below;
    else
        return (magnitude & ~below) | ((magnitude & below) != 0 ? below + 1 : 0u);
}

// An accumulator format without subnormals that saturates, for finite sums. On the bits of the
// sum's magnitude: normal sums round by dropping a constant number of bits, and saturation is a
// minimum. A sum below the smallest normal becomes a zero of its sign, or the smallest normal
// where the mode rounds it up to that: |s| >= a threshold (per sign), at most min_normal. There
// the constant-shift rounding gives at most min_normal (it rounds within the binade below), so a
// maximum with min_normal gives it; above min_normal that maximum changes nothing. A mode that
// never rounds such sums up has the threshold min_normal. (Integer minimum, maximum and select
// on magnitudes are single vector instructions, which keeps this chain short.)
template <rounding Mode>
struct round_flush_saturate {
    std::uint32_t shift;  // bits dropped from a normal sum: 23 - man_bits, >= 1
    std::uint32_t below;  // those bits' mask
    std::uint32_t min_normal_bits, max_finite_bits;
    std::uint32_t up_bits_positive;  // |s|'s bits >= this: up to min_normal (for s > 0) ...
    std::uint32_t up_bits_negative;  // ... and for s < 0
    [[gnu::always_inline]] float operator()(float s) const {
        std::uint32_t overflowed;
        return counted(s, overflowed);
    }
    // `overflowed`: the rounding without an upper limit went beyond the largest finite value
    // (rounding is monotone and that value is on the grid, so only sums beyond it can).
    [[gnu::always_inline]] float counted(float s, std::uint32_t& overflowed) const {
        const std::uint32_t bits = std::bit_cast<std::uint32_t>(s);
        const std::uint32_t sign = bits & 0x80000000u, magnitude = bits ^ sign;
        std::uint32_t rounded = shift_round<Mode>(bits, sign, magnitude, shift, below);
        overflowed = std::uint32_t(rounded > max_finite_bits);
        rounded = std::min(rounded, max_finite_bits);
        std::uint32_t up_bits = up_bits_positive;
        if constexpr (Mode == rounding::toward_positive || Mode == rounding::toward_negative)
            up_bits = sign != 0 ? up_bits_negative : up_bits_positive;
        // Truncation keeps |s| >= min_normal (= up_bits) exactly when it keeps rounded >= it, so it
        // needs no separate magnitude.
        const std::uint32_t compared = Mode == rounding::toward_zero ? rounded : magnitude;
        rounded = std::max(rounded, min_normal_bits) & (0u - std::uint32_t(compared >= up_bits));  // (a mask: see product_range)
        return std::bit_cast<float>(rounded | sign);
    }
    friend bool operator==(const round_flush_saturate&, const round_flush_saturate&) = default;
};

// A signed accumulator format with subnormals whose smallest normal is at least fp32's (fp16,
// bf16, e5m2, ...), for the sums of a chain of finite products. Normal sums round by dropping a
// constant number of bits, as above; a sum beyond the largest finite value gives what the
// format's own rounding gives there (infinity or the largest value, per sign: `overflow_*`). So
// does an infinite sum: either an exact sum beyond fp32's range (sum_round_odd) or one made from
// an infinite accumulator, which only that overflow puts there. NaN (infinities of both signs)
// stays NaN. A sum below the smallest normal lies on the subnormals' fixed grid 2^g: |s| * 2^-g is exact and below
// 2^man_bits, and its rounding to an integer in the mode (the integer steps below), times 2^g, is
// the rounded sum. (Where the format's subnormals are fp32's, as bf16's, the constant shift
// rounds them too, and min_normal_bits is 0.) Both are computed and one selected, so the loop
// vectorizes; about a third of the general kernel's instructions.
template <rounding Mode>
struct round_shift {
    std::uint32_t shift, below;  // as in round_flush_saturate
    std::uint32_t min_normal_bits, max_finite_bits;
    std::uint32_t overflow_positive, overflow_negative;  // bits of the rounding of a sum beyond the largest
    std::uint32_t not_a_number;                          // ... and of a NaN
    float to_grid, from_grid;  // 2^-g, 2^g
    // The hardware's conversion that gives this rounding, where there is one (see choose_accumulator):
    // binary16 with IEEE overflow in its four modes; bf16 in nearest_even with IEEE overflow, for
    // sums that are multiples of 2^-126 (never subnormal floats, which that conversion flushes).
    enum class conversion : std::uint8_t { none, binary16, bfloat16 } hardware = conversion::none;

    [[gnu::always_inline]] float operator()(float s) const {
        const std::uint32_t bits = std::bit_cast<std::uint32_t>(s);
        const std::uint32_t sign = bits & 0x80000000u, magnitude = bits ^ sign;
        const std::uint32_t rounded = shift_round<Mode>(bits, sign, magnitude, shift, below);
        // (Selects as masks: g++ turns conditionals here into branches and leaves the loop scalar.)
        const std::uint32_t negative = 0u - (sign >> 31);
        const std::uint32_t overflowed = (overflow_positive & ~negative) | (overflow_negative & negative);
        const std::uint32_t beyond = 0u - std::uint32_t(rounded > max_finite_bits);  // infinities too
        std::uint32_t normal = ((rounded | sign) & ~beyond) | (overflowed & beyond);
        const std::uint32_t is_nan = 0u - std::uint32_t(magnitude > 0x7F800000u);  // inf - inf in a chain
        normal = (normal & ~is_nan) | (not_a_number & is_nan);
        // exact, and at most 2^man_bits (the minimum keeps the unused lanes' conversion defined)
        const float scaled = std::bit_cast<float>(std::min(magnitude, min_normal_bits)) * to_grid;
        const std::int32_t whole = std::int32_t(scaled);  // truncated
        const std::uint32_t inexact = std::uint32_t(float(whole) != scaled);
        std::int32_t integer = whole;
        if constexpr (Mode == rounding::nearest_even) {
            integer = std::int32_t((scaled + 0x1p23f) - 0x1p23f);  // fp32's own rounding at 2^23's ulp of 1
        } else if constexpr (Mode == rounding::nearest_away) {
            integer += std::int32_t(scaled - float(whole) >= 0.5f);
        } else if constexpr (Mode == rounding::toward_positive) {
            integer += std::int32_t(inexact & std::uint32_t(sign == 0));
        } else if constexpr (Mode == rounding::toward_negative) {
            integer += std::int32_t(inexact & std::uint32_t(sign != 0));
        } else if constexpr (Mode == rounding::odd) {
            integer |= std::int32_t(inexact);
        }
        const std::uint32_t subnormal = std::bit_cast<std::uint32_t>(float(integer) * from_grid) | sign;
        const std::uint32_t small = 0u - std::uint32_t(magnitude < min_normal_bits);
        return std::bit_cast<float>((subnormal & small) | (normal & ~small));
    }
    // The same rounding (the conversion is how it runs, not what it gives): so the accumulator of
    // the chunk sums, made without knowing the products' grid, is the same as the chain's.
    friend bool operator==(const round_shift& x, const round_shift& y) {
        return x.shift == y.shift && x.below == y.below && x.min_normal_bits == y.min_normal_bits &&
               x.max_finite_bits == y.max_finite_bits && x.overflow_positive == y.overflow_positive &&
               x.overflow_negative == y.overflow_negative && x.not_a_number == y.not_a_number &&
               std::bit_cast<std::uint32_t>(x.to_grid) == std::bit_cast<std::uint32_t>(y.to_grid) &&
               std::bit_cast<std::uint32_t>(x.from_grid) == std::bit_cast<std::uint32_t>(y.from_grid);
    }
};


// Whether round_shift serves the format: signed, with zero and subnormals, 1 to 22 mantissa bits,
// within fp32's range; and 2^-g a float (g the subnormals' step), unless its subnormals are fp32's:
// then the constant shift rounds them too, and no sum takes the other way. And with normal values:
// a subnormal sum that rounds up to the smallest normal needs no range check only where that is a
// value (not in an IEEE e1m2, whose largest value is the top subnormal).
inline bool round_shift_applies(const float_format& f) {
    return format_fits<float>(f) && f.is_signed && f.has_zero && f.subnormals && f.has_normals() && f.man_bits >= 1 &&
           f.man_bits <= 22 && (f.emin() == -126 || f.emin() - f.man_bits >= -127);
}

// The operation for such a format, its overflow policy and a chain whose addends are multiples of
// 2^addend_step.
template <rounding Mode>
round_shift<Mode> make_round_shift(const float_format& f, overflow on_overflow, int addend_step) {
    if (!round_shift_applies(f)) throw std::logic_error("lowbit: round_shift for " + to_string(f));
    const auto plan = rounding_plan<float>::make(f, on_overflow, 32);
    const auto bits = [](float x) { return std::bit_cast<std::uint32_t>(x); };
    // What the format's own rounding gives beyond its range (the same for every sum there:
    // rounding is monotone and saturates), and for NaN.
    const auto rounded = [&](float x) { return bits(round_with_plan<Mode, float>(x, plan)); };
    const bool fp32_subnormals = f.emin() == -126;
    round_shift<Mode> op{};
    op.shift = std::uint32_t(23 - f.man_bits);
    op.below = (std::uint32_t(1) << op.shift) - 1;
    op.min_normal_bits = fp32_subnormals ? 0u : bits(float(f.min_normal()));
    op.max_finite_bits = bits(float(f.max_finite()));
    op.overflow_positive = rounded(FLT_MAX);
    op.overflow_negative = rounded(-FLT_MAX);
    op.not_a_number = rounded(std::numeric_limits<float>::quiet_NaN());
    op.to_grid = fp32_subnormals ? 1.0f : std::ldexp(1.0f, f.man_bits - f.emin());
    op.from_grid = fp32_subnormals ? 1.0f : std::ldexp(1.0f, f.emin() - f.man_bits);
    using conversion = typename round_shift<Mode>::conversion;
    const bool ieee_overflow = on_overflow == overflow::infinity;
    if (f == fp16 && ieee_overflow && Mode != rounding::nearest_away && Mode != rounding::odd)
        op.hardware = conversion::binary16;
    // (sums of multiples of 2^-126 round to multiples of 2^-126 in bf16: none is subnormal)
    if (f == bf16 && ieee_overflow && Mode == rounding::nearest_even && addend_step >= -126)
        op.hardware = conversion::bfloat16;
    return op;
}

#if defined(__AVX512F__)
// ---- AVX-512 ----

// x + y rounded to odd in fp32: the sum truncated, its last bit set when the sums rounded down and
// up differ (inexact). Beyond fp32's range that is the largest value (odd), of the sum's sign;
// round_shift takes it, and an infinity, as the overflow they are. NaN stays NaN.
[[gnu::always_inline]] inline __m512 sum_round_odd(__m512 x, __m512 y) {
    const __m512 truncated = _mm512_add_round_ps(x, y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 down = _mm512_add_round_ps(x, y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512 up = _mm512_add_round_ps(x, y, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
    const __mmask16 inexact = _mm512_cmp_ps_mask(down, up, _CMP_NEQ_OQ);
    const __m512i bits = _mm512_castps_si512(truncated);
    return _mm512_castsi512_ps(_mm512_mask_or_epi32(bits, inexact, bits, _mm512_set1_epi32(1)));
}

// shift_round in vector lanes, on magnitudes (negative: the lanes whose sign is set).
template <rounding Mode>
[[gnu::always_inline]] inline __m512i shift_round_vector(__m512i magnitude, __mmask16 negative, __m512i shift, __m512i below,
                                                         __m512i not_below, __m512i half) {
    if constexpr (Mode == rounding::nearest_even) {
        const __m512i lsb = _mm512_and_si512(_mm512_srlv_epi32(magnitude, shift), _mm512_set1_epi32(1));
        return _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(magnitude, half), lsb), not_below);
    } else if constexpr (Mode == rounding::nearest_away) {
        return _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(magnitude, half), _mm512_set1_epi32(1)), not_below);
    } else if constexpr (Mode == rounding::toward_zero) {
        return _mm512_and_si512(magnitude, not_below);
    } else if constexpr (Mode == rounding::toward_positive || Mode == rounding::toward_negative) {
        const __mmask16 up = Mode == rounding::toward_positive ? __mmask16(~negative) : negative;
        return _mm512_and_si512(_mm512_mask_add_epi32(magnitude, up, magnitude, below), not_below);
    } else {
        const __mmask16 dropped = _mm512_test_epi32_mask(magnitude, below);
        const __m512i kept = _mm512_and_si512(magnitude, not_below);
        return _mm512_mask_or_epi32(kept, dropped, kept, _mm512_add_epi32(below, _mm512_set1_epi32(1)));
    }
}

// How a round_shift runs in vector lanes: on bits alone where the format's subnormals are fp32's
// (bf16; min_normal_bits = 0), with the subnormals' integer step, or as the hardware's conversion
// to binary16 or bf16 and back (round_shift::hardware).
enum class shift_kind { bits_only, subnormal_grid, binary16, bfloat16 };

template <rounding Mode, shift_kind Kind>
struct round_shift_vector {
    __m512i shift, below, not_below, half, min_normal, max_finite, overflow_positive, overflow_negative, nan;
    __m512 to_grid, from_grid;

    explicit round_shift_vector(const round_shift<Mode>& op)
        : shift(_mm512_set1_epi32(int(op.shift))), below(_mm512_set1_epi32(int(op.below))),
          not_below(_mm512_set1_epi32(int(~op.below))), half(_mm512_set1_epi32(int(op.below >> 1))),
          min_normal(_mm512_set1_epi32(int(op.min_normal_bits))), max_finite(_mm512_set1_epi32(int(op.max_finite_bits))),
          overflow_positive(_mm512_set1_epi32(int(op.overflow_positive))),
          overflow_negative(_mm512_set1_epi32(int(op.overflow_negative))), nan(_mm512_set1_epi32(int(op.not_a_number))),
          to_grid(_mm512_set1_ps(op.to_grid)), from_grid(_mm512_set1_ps(op.from_grid)) {}

    [[gnu::always_inline]] __m512 operator()(__m512 s) const {
        if constexpr (Kind == shift_kind::binary16) {
            constexpr int imm = (Mode == rounding::nearest_even    ? _MM_FROUND_TO_NEAREST_INT
                                 : Mode == rounding::toward_zero     ? _MM_FROUND_TO_ZERO
                                 : Mode == rounding::toward_positive ? _MM_FROUND_TO_POS_INF
                                                                     : _MM_FROUND_TO_NEG_INF) |
                                _MM_FROUND_NO_EXC;
            static_assert(Mode != rounding::nearest_away && Mode != rounding::odd, "binary16: the hardware's modes only");
            return _mm512_cvtph_ps(_mm512_cvt_roundps_ph(s, imm));
        } else if constexpr (Kind == shift_kind::bfloat16) {
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
            static_assert(Mode == rounding::nearest_even, "bfloat16: the hardware's conversion rounds to nearest even");
            const __m256i rounded = __m256i(_mm512_cvtneps_pbh(s));
            return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(rounded), 16));
#else
            static_assert(Kind != shift_kind::bfloat16, "bfloat16 needs AVX512_BF16");
            return s;
#endif
        } else {
            const __m512i bits = _mm512_castps_si512(s);
            const __m512i sign_bit = _mm512_set1_epi32(int(0x80000000u));
            const __m512i sign = _mm512_and_si512(bits, sign_bit), magnitude = _mm512_andnot_si512(sign_bit, bits);
            const __mmask16 negative = _mm512_test_epi32_mask(bits, sign_bit);
            const __m512i rounded = shift_round_vector<Mode>(magnitude, negative, shift, below, not_below, half);
            __m512i result = _mm512_or_si512(rounded, sign);
            const __mmask16 beyond = _mm512_cmpgt_epu32_mask(rounded, max_finite);  // infinities too
            result = _mm512_mask_mov_epi32(result, beyond, _mm512_mask_mov_epi32(overflow_positive, negative, overflow_negative));
            result = _mm512_mask_mov_epi32(result, _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7F800000)), nan);
            if constexpr (Kind == shift_kind::subnormal_grid) {
                // the signed sum on the subnormals' grid, rounded to an integer in the mode: the sign
                // makes the directed modes right (and a zero keeps its sign)
                const __m512 scaled = _mm512_mul_ps(s, to_grid);
                __m512 integer;
                if constexpr (Mode == rounding::nearest_away || Mode == rounding::odd) {
                    const __m512 whole = _mm512_roundscale_ps(scaled, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
                    const __m512 rest = _mm512_abs_ps(_mm512_sub_ps(scaled, whole));  // exact
                    const __mmask16 up = Mode == rounding::nearest_away
                                             ? _mm512_cmp_ps_mask(rest, _mm512_set1_ps(0.5f), _CMP_GE_OQ)
                                             : _mm512_cmp_ps_mask(rest, _mm512_setzero_ps(), _CMP_NEQ_OQ) &
                                                   _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_cvttps_epi32(whole), _mm512_set1_epi32(1)),
                                                                           _mm512_setzero_si512());
                    // one more unit away from zero
                    const __m512 unit = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(_mm512_set1_ps(1.0f)), sign));
                    integer = _mm512_mask_add_ps(whole, up, whole, unit);
                } else {
                    constexpr int imm = (Mode == rounding::nearest_even ? _MM_FROUND_TO_NEAREST_INT
                                         : Mode == rounding::toward_zero ? _MM_FROUND_TO_ZERO
                                         : Mode == rounding::toward_positive ? _MM_FROUND_TO_POS_INF
                                                                             : _MM_FROUND_TO_NEG_INF) |
                                        _MM_FROUND_NO_EXC;
                    integer = _mm512_roundscale_ps(scaled, imm);
                }
                const __m512i subnormal = _mm512_castps_si512(_mm512_mul_ps(integer, from_grid));
                result = _mm512_mask_mov_epi32(result, _mm512_cmplt_epu32_mask(magnitude, min_normal), subnormal);
            }
            return _mm512_castsi512_ps(result);
        }
    }
};

// round_flush_saturate in vector lanes (the accumulators of MxE5 kind: no subnormals, saturating).
template <rounding Mode>
struct round_flush_saturate_vector {
    __m512i shift, below, not_below, half, min_normal, max_finite, up_positive, up_negative;

    explicit round_flush_saturate_vector(const round_flush_saturate<Mode>& op)
        : shift(_mm512_set1_epi32(int(op.shift))), below(_mm512_set1_epi32(int(op.below))),
          not_below(_mm512_set1_epi32(int(~op.below))), half(_mm512_set1_epi32(int(op.below >> 1))),
          min_normal(_mm512_set1_epi32(int(op.min_normal_bits))), max_finite(_mm512_set1_epi32(int(op.max_finite_bits))),
          up_positive(_mm512_set1_epi32(int(op.up_bits_positive))), up_negative(_mm512_set1_epi32(int(op.up_bits_negative))) {}

    [[gnu::always_inline]] __m512 operator()(__m512 s) const {
        const __m512i bits = _mm512_castps_si512(s);
        const __m512i sign_bit = _mm512_set1_epi32(int(0x80000000u));
        const __m512i sign = _mm512_and_si512(bits, sign_bit), magnitude = _mm512_andnot_si512(sign_bit, bits);
        const __mmask16 negative = _mm512_test_epi32_mask(bits, sign_bit);
        __m512i rounded = _mm512_min_epu32(shift_round_vector<Mode>(magnitude, negative, shift, below, not_below, half),
                                           max_finite);
        __m512i up = up_positive;
        if constexpr (Mode == rounding::toward_positive || Mode == rounding::toward_negative)
            up = _mm512_mask_mov_epi32(up_positive, negative, up_negative);
        const __mmask16 kept = _mm512_cmpge_epu32_mask(Mode == rounding::toward_zero ? rounded : magnitude, up);
        rounded = _mm512_maskz_mov_epi32(kept, _mm512_max_epu32(rounded, min_normal));
        return _mm512_castsi512_ps(_mm512_or_si512(rounded, sign));
    }
};

// All of a row's chunks, for products (exact in fp32) rounded by `product` and an odd-sum
// accumulator whose rounding is `round` (a vector form above) that is also the chunk accumulator
// (fused_chunks_pass's work): each chunk from +0, total = accumulate(total + chunk) after each,
// in order. Chunks c and c + 1 run together (eight chains of 16 lanes). With ExactTotal (an unset
// chunk accumulator whose sums double holds: lane_reduction's exact sums), total += chunk in
// double instead, exact_io holding the 64 totals.
template <bool ExactTotal = false, class Product, class Round>
void odd_chunks(const float* a, const float* b, std::ptrdiff_t ldb, std::int64_t n, std::int64_t chunk,
                const Product& product, const Round& round, float* total_io, double* exact_io = nullptr) {
    const auto step = [&](__m512 x, __m512 y) { return round(sum_round_odd(x, y)); };
    __m512 total[4];
    [[maybe_unused]] __m512d exact[8];
    for (int v = 0; v < 4; ++v) total[v] = _mm512_loadu_ps(total_io + 16 * v);
    if constexpr (ExactTotal)
        for (int h = 0; h < 8; ++h) exact[h] = _mm512_loadu_pd(exact_io + 8 * h);
    // (the exact total: each half of a chunk's vector widened, and added exactly)
    const auto add = [&](const __m512(&acc)[4]) {
        if constexpr (ExactTotal) {
            for (int v = 0; v < 4; ++v) {
                exact[2 * v] = _mm512_add_pd(exact[2 * v], _mm512_cvtps_pd(_mm512_castps512_ps256(acc[v])));
                exact[2 * v + 1] = _mm512_add_pd(
                    exact[2 * v + 1], _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[v]), 1))));
            }
        } else {
            for (int v = 0; v < 4; ++v) total[v] = step(total[v], acc[v]);
        }
    };
    for (std::int64_t start = 0; start < n; start += 2 * chunk) {
        const std::int64_t first = std::min(chunk, n - start), second = std::clamp<std::int64_t>(n - start - chunk, 0, chunk);
        __m512 acc[2][4];
        for (auto& chain : acc)
            for (auto& v : chain) v = _mm512_setzero_ps();
        const float* a1 = a + start + chunk;
        const float* b1 = b + (start + chunk) * ldb;
        std::int64_t t = 0;
        for (; t < second; ++t) {
            const __m512 at0 = _mm512_set1_ps(a[start + t]), at1 = _mm512_set1_ps(a1[t]);
            const float* bt0 = b + (start + t) * ldb;
            const float* bt1 = b1 + t * ldb;
            for (int v = 0; v < 4; ++v) {
                acc[0][v] = step(acc[0][v], product(_mm512_mul_ps(at0, _mm512_loadu_ps(bt0 + 16 * v))));
                acc[1][v] = step(acc[1][v], product(_mm512_mul_ps(at1, _mm512_loadu_ps(bt1 + 16 * v))));
            }
        }
        for (; t < first; ++t) {
            const __m512 at0 = _mm512_set1_ps(a[start + t]);
            const float* bt0 = b + (start + t) * ldb;
            for (int v = 0; v < 4; ++v)
                acc[0][v] = step(acc[0][v], product(_mm512_mul_ps(at0, _mm512_loadu_ps(bt0 + 16 * v))));
        }
        add(acc[0]);
        if (second > 0) add(acc[1]);
    }
    for (int v = 0; v < 4; ++v) _mm512_storeu_ps(total_io + 16 * v, total[v]);
    if constexpr (ExactTotal)
        for (int h = 0; h < 8; ++h) _mm512_storeu_pd(exact_io + 8 * h, exact[h]);
}

// The roundings with a vector form, for which fused_chunks_pass runs odd_chunks.
template <class Rounding>
constexpr bool has_odd_chain = false;
template <rounding Mode>
constexpr bool has_odd_chain<round_shift<Mode>> = true;
template <rounding Mode>
constexpr bool has_odd_chain<round_flush_saturate<Mode>> = true;

// f(the vector form of op), the form chosen once per call of f.
template <rounding Mode, class F>
decltype(auto) with_vector_rounding(const round_shift<Mode>& op, F&& f) {
    using conversion = typename round_shift<Mode>::conversion;
    if constexpr (Mode != rounding::nearest_away && Mode != rounding::odd)
        if (op.hardware == conversion::binary16) return f(round_shift_vector<Mode, shift_kind::binary16>(op));
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
    if constexpr (Mode == rounding::nearest_even)
        if (op.hardware == conversion::bfloat16) return f(round_shift_vector<Mode, shift_kind::bfloat16>(op));
#endif
    if (op.min_normal_bits == 0) return f(round_shift_vector<Mode, shift_kind::bits_only>(op));
    return f(round_shift_vector<Mode, shift_kind::subnormal_grid>(op));
}
template <rounding Mode, class F>
decltype(auto) with_vector_rounding(const round_flush_saturate<Mode>& op, F&& f) {
    return f(round_flush_saturate_vector<Mode>(op));
}

// acc[l] = round(acc[l] + term t of lane l) (the sum rounded to odd first) for t < n, for 64
// lanes, four chains of 16: terms(t, v) gives lanes 16v .. 16v + 15 of term t (rows of a buffer
// that another pass made, rounded products or LNS conversions, or products made as they are added).
template <class Terms, class Round>
void odd_accumulate(int n, const Terms& terms, float* acc_io, const Round& round) {
    __m512 acc[4];
    for (int v = 0; v < 4; ++v) acc[v] = _mm512_loadu_ps(acc_io + 16 * v);
    for (int t = 0; t < n; ++t)
        for (int v = 0; v < 4; ++v) acc[v] = round(sum_round_odd(acc[v], terms(t, v)));
    for (int v = 0; v < 4; ++v) _mm512_storeu_ps(acc_io + 16 * v, acc[v]);
}

// ---- double terms (lane_reduction's double_terms) ----

// x + y rounded to odd in double, as sum_round_odd rounds in fp32 (the sums here, a float and a
// finite term below 2^961, stay far inside double's range).
[[gnu::always_inline]] inline __m512d sum_round_odd(__m512d x, __m512d y) {
    const __m512d truncated = _mm512_add_round_pd(x, y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512d down = _mm512_add_round_pd(x, y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512d up = _mm512_add_round_pd(x, y, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
    const __mmask8 inexact = _mm512_cmp_pd_mask(down, up, _CMP_NEQ_OQ);
    const __m512i bits = _mm512_castpd_si512(truncated);
    return _mm512_castsi512_pd(_mm512_mask_or_epi64(bits, inexact, bits, _mm512_set1_epi64(1)));
}

// Doubles made floats: fp32's nearest, or rounded to odd (the same conversions truncated, with
// the last bit set where those rounded down and up differ; beyond fp32's range the largest value,
// as sum_round_odd's).
struct nearest_float {
    [[gnu::always_inline]] __m256 operator()(__m512d d) const { return _mm512_cvtpd_ps(d); }
};
struct odd_float {
    [[gnu::always_inline]] __m256 operator()(__m512d d) const {
        const __m256 truncated = _mm512_cvt_roundpd_ps(d, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        const __m256 down = _mm512_cvt_roundpd_ps(d, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        const __m256 up = _mm512_cvt_roundpd_ps(d, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
        const __m256i inexact = _mm256_castps_si256(_mm256_cmp_ps(down, up, _CMP_NEQ_OQ));
        return _mm256_castsi256_ps(
            _mm256_or_si256(_mm256_castps_si256(truncated), _mm256_and_si256(inexact, _mm256_set1_epi32(1))));
    }
};

// acc[l] = round(to_float(acc[l] + term t of lane l, rounded to odd in double)) for t < n, for 64
// lanes of double terms: a float plus a term of up to 53 bits, its round-to-odd double carrying
// the exact sum's rounding to any format of at most 51 bits. terms(t, h) gives lanes 8h .. 8h + 7
// of term t (rows of a buffer, or products formed as they are added). Sixteen lanes at a time, as
// two halves of eight doubles.
template <class Terms, class ToFloat, class Round>
void double_terms_accumulate(int n, const Terms& terms, float* acc_io, const ToFloat& to_float, const Round& round) {
    __m512 acc[4];
    for (int v = 0; v < 4; ++v) acc[v] = _mm512_loadu_ps(acc_io + 16 * v);
    for (int t = 0; t < n; ++t)
        for (int v = 0; v < 4; ++v) {
            const __m256 low_half = _mm512_castps512_ps256(acc[v]);
            const __m256 high_half = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[v]), 1));
            const __m256 low = to_float(sum_round_odd(_mm512_cvtps_pd(low_half), terms(t, 2 * v)));
            const __m256 high = to_float(sum_round_odd(_mm512_cvtps_pd(high_half), terms(t, 2 * v + 1)));
            acc[v] = round(_mm512_castpd_ps(
                _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(low)), _mm256_castps_pd(high), 1)));
        }
    for (int v = 0; v < 4; ++v) _mm512_storeu_ps(acc_io + 16 * v, acc[v]);
}
#endif

}  // namespace lowbit::detail

LOWBIT_END_INTRINSICS
