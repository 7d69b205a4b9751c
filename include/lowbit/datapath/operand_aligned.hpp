// lowbit/datapath/operand_aligned.hpp: the models that align products on their operands'
// exponents, in double lanes: aligned with align = operands (gemm_spec.hpp; the NVIDIA tensor-core
// presets of hardware.hpp) and two_level (AMD CDNA3's).
//
// For 64 outputs at once (a row of A against a block of B's columns), each group's largest
// exponent E is taken from the operands' exponents (read once per element of A and B, with the
// spec's subnormal_exponent and zero_exponent), every exact product a*b (a double: two floats'
// significands) is cut toward zero or minus infinity to a multiple of 2^(E - window), the cut terms
// and the cut accumulator are summed in double (exact: window + 2 bits per term, below 2^53 for
// any group of at most 2^(50 - window) terms), and the sum is rounded by the accumulator's plan.
// two_level does the same per sub-dot, then floors the sub-sums, the products' sum and the
// accumulator on their grids (each sum again exact in double). The same operations as the exact
// path's aligned() and two_level(), on the same values: the same bits. Applies to one chunk
// (chunk 0 or >= K, an exact chunk accumulator), finite inputs and no per-product records
// (record_lost); gemm_report says which condition sent a call elsewhere. Each output starts from
// its addend (gemm_add) or +0. Events (gemm_stats) are the exact path's, counted per lane
// (aligned_events) in an instantiation of their own, so that a call without them pays nothing.
// The loops over lanes vectorize (the cuts are integer conversions, exponents read from bits, the
// groups' sums rounded through fp32: group_rounding), but for accumulators of 22 mantissa bits or
// wider than fp32, whose sums take round_with_plan on doubles (which g++ 12 leaves scalar).
#pragma once

#include <lowbit/datapath/exact_datapath.hpp>
#include <lowbit/datapath/fast_datapath.hpp>
#include <lowbit/datapath/gemm_report.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/thread_count.hpp>
#include <lowbit/datapath/tile_pool.hpp>
#include <lowbit/rounding/rounding_plan.hpp>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

namespace lowbit::detail {

// 2^e as a double for e in [-1022, 1023], from its bits (vectorizes, unlike std::ldexp).
[[gnu::always_inline]] inline double pow2_bits(std::int64_t e) {
    return std::bit_cast<double>(std::uint64_t(e + 1023) << 52);
}

// floor(log2 |x|) of a normal double (every float is one), from its bits (vectorizes, unlike
// std::ilogb).
[[gnu::always_inline]] inline std::int32_t normal_exponent(double x) {
    return std::int32_t((std::bit_cast<std::uint64_t>(x) >> 52) & 0x7FF) - 1023;
}

// x cut to a multiple of 2^q, toward zero or (Floor) toward minus infinity, given scale = 2^-q and
// unscale = 2^q, where |x| 2^-q < 2^62: the cut of the integer conversion, which truncates (and
// vectorizes, where std::trunc and std::floor do not under -ftrapping-math).
template <bool Floor>
[[gnu::always_inline]] inline double cut_to_grid(double x, double scale, double unscale) {
    const double units = x * scale;  // exact: a power of two, in double's normal range here
    double kept = double(std::int64_t(units));
    if constexpr (Floor) kept -= kept > units ? 1.0 : 0.0;
    return kept * unscale;
}

// A value's exponent for the alignment (exponent_reading::of_value), `zero` for 0.
inline int operand_exponent(float x, int min, int zero) { return x == 0 ? zero : exponent_reading::of_value(x, min); }

// Whether a double is finite, on its exponent bits (a comparison of doubles may trap, which keeps
// g++ from vectorizing a loop where it is not always evaluated).
[[gnu::always_inline]] inline bool finite_value(double x) {
    constexpr std::uint64_t exponent = 0x7FF0000000000000u;
    return (std::bit_cast<std::uint64_t>(x) & exponent) != exponent;
}

// The exponent a finite accumulator value x (a double holding a float) takes in the alignment:
// its own, no lower than `min`, and `zero` for 0.
[[gnu::always_inline]] inline std::int32_t accumulator_exponent(double x, std::int32_t min, std::int32_t zero) {
    return x == 0 ? zero : std::max(normal_exponent(x), min);
}

// The rounding of exact doubles (a group's sum) by the accumulator's float format, for lanes. A
// double within fp32's range is first cut to fp32 (its nearest float, stepped one ulp toward zero
// where that rounded away) with a sticky bit, and then:
//   - formats of at most 21 mantissa bits: the cut with the sticky bit as its last bit (the
//     round-to-odd float, which rounds to such a format as the double does: Boldo and Melquiond)
//     goes through the format's float plan;
//   - formats on fp32's grid (fp32, fp32 without subnormals or with another overflow policy), in
//     nearest_even (the nearest float) or toward_zero (the cut): the float plan applies the range;
//   - otherwise, and for the rare sums beyond fp32's largest value, infinities and NaN: the double
//     plan, one lane at a time (g++ leaves round_with_plan on doubles scalar).
// All of it vectorizes but the last case.
struct group_rounding {
    enum class kind : std::uint8_t { odd_float, fp32_grid, doubles };
    kind how = kind::doubles;
    rounding_plan<float> float_plan;
    rounding_plan<double> double_plan;
    addition_range range;  // (for the events: which sums overflow)

    static group_rounding make(const float_quantizer& q) {
        group_rounding r;
        r.double_plan = rounding_plan<double>::make(q.format, q.on_overflow, q.random_bits);
        r.range = addition_range::of(q);
        if (!format_fits<float>(q.format) || !q.format.is_signed) return r;
        r.float_plan = rounding_plan<float>::make(q.format, q.on_overflow, q.random_bits);
        // (round-to-odd needs two bits below the format's: its steps at least 2^-147 = 4 x fp32's)
        if (q.format.man_bits <= 21 && q.format.emin() - q.format.man_bits >= -147 && q.mode != rounding::stochastic)
            r.how = kind::odd_float;
        else if (on_fp32_grid(q.format) && (q.mode == rounding::nearest_even || q.mode == rounding::toward_zero))
            r.how = kind::fp32_grid;
        return r;
    }
};

// out[l] = in[l] rounded through fp32 by `plan` (group_rounding's odd_float or fp32_grid way; each
// instantiation straight-line code, so that g++ vectorizes it at -O2 and -O3 alike); in[l] a
// double within fp32's range.
template <rounding Mode, bool Odd>
void round_through_float(const rounding_plan<float> plan, const double* in, double* out) {
    for (int l = 0; l < fast_lanes; ++l) {
        const double d = in[l];
        const float nearest = float(d);
        std::uint32_t candidate = std::bit_cast<std::uint32_t>(nearest);
        if constexpr (Odd || Mode != rounding::nearest_even) {
            // the cut: one ulp toward zero where the nearest float lies beyond d; sticky where it
            // is inexact (compared on bits: magnitudes as integers)
            constexpr std::uint64_t magnitude = 0x7FFFFFFFFFFFFFFFu;
            const std::uint64_t back = std::bit_cast<std::uint64_t>(double(nearest)), exact = std::bit_cast<std::uint64_t>(d);
            candidate -= std::uint32_t((back & magnitude) > (exact & magnitude));
            if constexpr (Odd) candidate |= std::uint32_t(back != exact);
        }
        out[l] = double(round_with_plan<Mode, float>(std::bit_cast<float>(candidate), plan));
    }
}

// x[l] = x[l] rounded by r, for the fast_lanes exact doubles at x.
template <rounding Mode>
void round_group_sums(const group_rounding& r, double* x) {
    constexpr int L = fast_lanes;
    if (r.how == group_rounding::kind::doubles) {
        for (int l = 0; l < L; ++l) x[l] = round_with_plan<Mode>(x[l], r.double_plan);
        return;
    }
    // Lanes beyond fp32's largest value (a conversion to float would be undefined there), infinite
    // or NaN: 0 in `in`, rounded by the double plan below.
    constexpr std::uint64_t magnitude = 0x7FFFFFFFFFFFFFFFu;
    constexpr std::uint64_t largest = std::bit_cast<std::uint64_t>(double(FLT_MAX));
    alignas(64) double in[L], out[L];
    std::uint64_t beyond = 0;
    for (int l = 0; l < L; ++l) {
        const std::uint64_t bits = std::bit_cast<std::uint64_t>(x[l]);
        const std::uint64_t far = std::uint64_t((bits & magnitude) > largest);
        beyond |= far;
        in[l] = std::bit_cast<double>(bits & (far - 1));
    }
    if (r.how == group_rounding::kind::odd_float) round_through_float<Mode, true>(r.float_plan, in, out);
    else round_through_float<Mode, false>(r.float_plan, in, out);
    if (beyond != 0)
        for (int l = 0; l < L; ++l)
            if ((std::bit_cast<std::uint64_t>(x[l]) & magnitude) > largest) out[l] = round_with_plan<Mode>(x[l], r.double_plan);
    std::copy(out, out + L, x);
}

// The events of a block of outputs, per lane, as the exact path counts them (event_sink): a
// non-zero product cut to zero is swamped; each group's rounding of its exact sum s into r is
// inexact when r != s, and overflows when s is finite and both s and its rounding without an upper
// limit lie beyond the largest finite value (float_step::round_value). Zero operands are counted
// for the whole call (zero_operand_products); the products are exact (no product events).
struct aligned_events {
    std::uint32_t swamps[fast_lanes] = {}, inexact[fast_lanes] = {}, overflows[fast_lanes] = {};

    void rounding(const double* s, const double* r, const group_rounding& how) {
        const double max_finite = how.range.max_finite;
        std::uint32_t beyond = 0;
        for (int l = 0; l < fast_lanes; ++l) {  // (0/1 integers, every comparison made: vectorizes)
            const std::uint32_t both_nan = std::uint32_t(s[l] != s[l]) & std::uint32_t(r[l] != r[l]);
            inexact[l] += std::uint32_t(s[l] != r[l]) & ~both_nan;
            beyond |= std::uint32_t(finite_value(s[l])) & std::uint32_t(std::fabs(s[l]) > max_finite);
        }
        if (beyond != 0)  // (rare: sums past the format's range)
            for (int l = 0; l < fast_lanes; ++l)
                if (std::isfinite(s[l])) overflows[l] += std::uint32_t(how.range.overflows(s[l]));
    }

    void add_to(gemm_stats& stats) const {
        for (int l = 0; l < fast_lanes; ++l) {
            stats.swamps += swamps[l];
            stats.inexact_additions += inexact[l];
            stats.accumulator_overflows += overflows[l];
        }
    }
};

// The smallest exponent any group's largest may have beside the values of a call: below it no
// term is read (the sentinel for "no exponent").
inline constexpr int no_exponent = -100000;

// The largest exponent of each of L lanes among terms g0 .. g1 - 1 (their operands' exponents,
// ea[k] + eb[k * ldb + l], `zero` where an operand is zero), starting from `top`.
[[gnu::always_inline]] inline void largest_operand_exponents(const int* ea, const int* eb, std::int64_t ldb,
                                                             std::int64_t g0, std::int64_t g1, int zero,
                                                             std::int32_t* top_io) {
    alignas(64) std::int32_t top[fast_lanes];  // (a local array: no aliasing with eb to rule out)
    std::copy(top_io, top_io + fast_lanes, top);
    for (std::int64_t k = g0; k < g1; ++k) {
        const std::int32_t e_a = ea[k];
        const int* e_b = eb + k * ldb;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC ivdep  // (g++ would want a run-time alias check between top and e_b, which -O2 does not do)
#endif
        for (int l = 0; l < fast_lanes; ++l) {
            const std::int32_t e = (e_a == no_exponent || e_b[l] == no_exponent) ? zero : e_a + e_b[l];
            top[l] = std::max(top[l], e);
        }
    }
    std::copy(top, top + fast_lanes, top_io);
}

// 2^-q and 2^q for a grid of multiples of 2^q (clamped to double's normal range, which only the
// lanes without an exponent reach: their terms are zeros).
[[gnu::always_inline]] inline void grid_scales(std::int64_t q, double& scale, double& unscale) {
    scale = pow2_bits(std::min<std::int64_t>(std::max<std::int64_t>(-q, -1022), 1023));
    unscale = pow2_bits(std::min<std::int64_t>(std::max<std::int64_t>(q, -1022), 1023));
}

template <rounding Mode, alignment_cut Cut, bool Count>
void operand_aligned_block(const float* a, const int* ea, const float* b, const int* eb, std::int64_t ldb,
                           std::int64_t K, const gemm_spec& spec, const group_rounding& rounding, int acc_min,
                           int zero, double* acc_io, [[maybe_unused]] aligned_events* events) {
    constexpr int L = fast_lanes;
    constexpr bool floor = Cut == alignment_cut::toward_negative;
    const int window = spec.window;
    alignas(64) double acc[L];
    std::copy(acc_io, acc_io + L, acc);
    for (std::int64_t g0 = 0; g0 < K; g0 += spec.group) {
        const std::int64_t g1 = std::min<std::int64_t>(g0 + spec.group, K);
        // The largest exponent among the accumulator and the group's products (an infinite
        // accumulator has none: it stays, as IEEE's sum with finite terms).
        alignas(64) std::int32_t top[L];
        for (int l = 0; l < L; ++l)
            top[l] = finite_value(acc[l]) ? accumulator_exponent(acc[l], acc_min, zero) : no_exponent;
        largest_operand_exponents(ea, eb, ldb, g0, g1, zero, top);
        // The cut terms, summed from +0 (a fixed-point sum: exact, see the top). The terms are
        // below 2^(top + 2) and the accumulator below 2^(top + 1): below 2^(window + 2) units.
        alignas(64) double cut_sum[L], scale[L], unscale[L];
        std::uint32_t none = 0;
        for (int l = 0; l < L; ++l) {
            none |= std::uint32_t(top[l] == no_exponent);
            grid_scales(std::int64_t(top[l]) - window, scale[l], unscale[l]);  // the grid: multiples of 2^q
            const bool finite = finite_value(acc[l]);
            // (the cut of a finite value, or of +0, taken on every lane and chosen on bits: g++
            // would branch around a conversion under a condition, and leave the loop scalar)
            const std::uint64_t keep = std::uint64_t(0) - std::uint64_t(finite & (top[l] != no_exponent));
            const double x = std::bit_cast<double>(std::bit_cast<std::uint64_t>(acc[l]) & keep);
            const std::uint64_t cut = std::bit_cast<std::uint64_t>(0.0 + cut_to_grid<floor>(x, scale[l], unscale[l]));
            const std::uint64_t use_cut = std::uint64_t(0) - std::uint64_t(finite);
            cut_sum[l] = std::bit_cast<double>((cut & use_cut) | (std::bit_cast<std::uint64_t>(acc[l]) & ~use_cut));
        }
        for (std::int64_t k = g0; k < g1; ++k) {
            const double x = double(a[k]);
            const float* bk = b + k * ldb;
            for (int l = 0; l < L; ++l) {
                const double p = x * double(bk[l]);  // exact
                const double cut = cut_to_grid<floor>(p, scale[l], unscale[l]);
                cut_sum[l] += cut;
                if constexpr (Count) events->swamps[l] += std::uint32_t(p != 0) & std::uint32_t(cut == 0);
            }
        }
        // Where nothing has an exponent (every value zero, zeros not aligned), IEEE's sum of the
        // zeros (rare: a second pass).
        if (none != 0)
            for (int l = 0; l < L; ++l) {
                if (top[l] != no_exponent) continue;
                double plain = acc[l];
                for (std::int64_t k = g0; k < g1; ++k) plain += double(a[k]) * double(b[k * ldb + l]);
                cut_sum[l] = plain;
            }
        alignas(64) double exact[Count ? L : 1];
        if constexpr (Count) std::copy(cut_sum, cut_sum + L, exact);
        round_group_sums<Mode>(rounding, cut_sum);
        if constexpr (Count) events->rounding(exact, cut_sum, rounding);
        std::copy(cut_sum, cut_sum + L, acc);
    }
    std::copy(acc, acc + L, acc_io);
}

// The two_level model (gemm_spec.hpp) for 64 outputs; the operands' exponents as above.
template <rounding Mode, bool Count>
void two_level_block(const float* a, const int* ea, const float* b, const int* eb, std::int64_t ldb, std::int64_t K,
                     const gemm_spec& spec, const group_rounding& rounding, int acc_min, int zero, double* acc_io,
                     [[maybe_unused]] aligned_events* events) {
    const rounding_plan<double>& plan = rounding.double_plan;  // (the rare lanes')
    constexpr int L = fast_lanes;
    constexpr int max_subs = 64;  // (gemm_spec::validate)
    const int window = spec.window, subs = spec.sub_dots;
    // x cut toward minus infinity to a multiple of 2^q
    const auto floor_to = [](double x, std::int64_t q) {
        double scale, unscale;
        grid_scales(q, scale, unscale);
        return cut_to_grid<true>(x, scale, unscale);
    };
    alignas(64) double acc[L];
    std::copy(acc_io, acc_io + L, acc);
    for (std::int64_t g0 = 0; g0 < K; g0 += spec.group) {
        const std::int64_t g1 = std::min<std::int64_t>(g0 + spec.group, K);
        // Each sub-dot's largest exponent, and the grids of its terms.
        alignas(64) std::int32_t top[max_subs][L];
        alignas(64) double scale[max_subs][L], unscale[max_subs][L], sub_sum[max_subs][L];
        for (int d = 0; d < subs; ++d) std::fill_n(top[d], L, no_exponent);
        for (std::int64_t k = g0; k < g1; ++k)
            largest_operand_exponents(ea, eb, ldb, k, k + 1, zero, top[(k - g0) % subs]);
        for (int d = 0; d < subs; ++d)
            for (int l = 0; l < L; ++l) {
                grid_scales(std::int64_t(top[d][l]) - window, scale[d][l], unscale[d][l]);
                sub_sum[d][l] = 0.0;
            }
        // Level 1: each sub-dot's products cut toward zero on its own exponent (below 2^(window + 2)
        // units: see operand_aligned_block), summed; and whether any is 2^128 or more.
        std::uint32_t large[L] = {};  // bit 0: a product >= 2^128, bit 1: one <= -2^128
        std::uint32_t swamped[Count ? L : 1] = {};  // (counted where the group is not a rare lane)
        for (std::int64_t k = g0; k < g1; ++k) {
            const int d = int((k - g0) % subs);
            const double x = double(a[k]);
            const float* bk = b + k * ldb;
            for (int l = 0; l < L; ++l) {
                const double p = x * double(bk[l]);  // exact
                const double cut = cut_to_grid<false>(p, scale[d][l], unscale[d][l]);
                sub_sum[d][l] += cut;
                large[l] |= std::uint32_t(p >= 0x1p128) | (std::uint32_t(p <= -0x1p128) << 1);
                if constexpr (Count) swamped[l] += std::uint32_t(p != 0) & std::uint32_t(cut == 0);
            }
        }
        // Level 2: the products' sum and the accumulator floored on the larger exponent. (Loops
        // over lanes innermost, selects on bits: see operand_aligned_block.)
        alignas(64) std::int32_t top_p[L];
        alignas(64) double products[L], next[L];
        std::fill_n(top_p, L, no_exponent);
        for (int d = 0; d < subs; ++d)
            for (int l = 0; l < L; ++l) top_p[l] = std::max(top_p[l], top[d][l]);
        if (subs == 1) {
            std::copy(sub_sum[0], sub_sum[0] + L, products);
        } else {
            std::fill_n(products, L, 0.0);
            for (int d = 0; d < subs; ++d)
                for (int l = 0; l < L; ++l) {  // (a sub-dot without an exponent has a zero sum)
                    const double floored = floor_to(sub_sum[d][l], std::int64_t(top_p[l]) - window);
                    products[l] += std::bit_cast<double>(std::bit_cast<std::uint64_t>(floored) &
                                                         (std::uint64_t(0) - std::uint64_t(top[d][l] != no_exponent)));
                }
        }
        alignas(64) std::int32_t exponent[L];
        std::uint32_t rare = 0;
        // (conditions as 0 / all-ones masks: g++ does not vectorize bool logic of mixed widths)
        const std::uint64_t sub_dotted = std::uint64_t(0) - std::uint64_t(subs > 1);
        for (int l = 0; l < L; ++l) {
            const bool finite = finite_value(acc[l]);
            const double x = std::bit_cast<double>(std::bit_cast<std::uint64_t>(acc[l]) &
                                                   (std::uint64_t(0) - std::uint64_t(finite)));  // (else +0)
            const std::int32_t top_acc = accumulator_exponent(x, acc_min, zero);
            const std::int32_t e = std::max(top_p[l], top_acc);
            const double s = 0.0 + floor_to(products[l], std::int64_t(e) - spec.sum_window);
            const std::uint64_t dropped = sub_dotted & (std::uint64_t(0) - std::uint64_t(top_acc < e - window - 1));
            const double added = floor_to(x, std::int64_t(e) - window);
            const std::uint64_t keep = (std::uint64_t(0) - std::uint64_t(x != 0)) & ~dropped;
            next[l] = s + std::bit_cast<double>(std::bit_cast<std::uint64_t>(added) & keep);  // (s is not -0)
            exponent[l] = e;
            rare |= std::uint32_t(!finite) | std::uint32_t(large[l] != 0) | std::uint32_t(e == no_exponent);
        }
        alignas(64) double exact[Count ? L : 1];
        if constexpr (Count) std::copy(next, next + L, exact);
        round_group_sums<Mode>(rounding, next);
        // The rare lanes: an infinite or NaN accumulator (IEEE's sum with finite products), a
        // product of 2^128 or more (infinity; NaN for both signs), or no exponent at all (every
        // value zero, zeros not aligned: IEEE's sum of the zeros).
        if (rare != 0)
            for (int l = 0; l < L; ++l) {
                const auto plain = [&] {
                    double sum = acc[l];
                    for (std::int64_t k = g0; k < g1; ++k) sum += double(a[k]) * double(b[k * ldb + l]);
                    return sum;
                };
                const double inf = std::numeric_limits<double>::infinity();
                double s = 0;
                if (!finite_value(acc[l])) s = plain();
                else if (large[l] != 0) s = large[l] == 3 ? std::numeric_limits<double>::quiet_NaN() : large[l] == 1 ? inf : -inf;
                else if (exponent[l] == no_exponent) s = plain();
                else continue;
                next[l] = round_with_plan<Mode>(s, plan);
                if constexpr (Count) {
                    exact[l] = s;
                    swamped[l] = 0;  // (the exact path cuts nothing in these groups)
                }
            }
        if constexpr (Count) {
            events->rounding(exact, next, rounding);
            for (int l = 0; l < L; ++l) events->swamps[l] += swamped[l];
        }
        std::copy(next, next + L, acc);
    }
    std::copy(acc, acc + L, acc_io);
}

// D (row-major M x N) = the aligned model on operands' exponents, or two_level, over quantized A
// (row-major M x K) and B (row-major K x N), from `addend` (row-major M x N) or +0. False, with
// the reason in the report, where it does not apply.
template <class MA, class MB, class MC>
bool operand_aligned_gemm(const MA& a, const MB& b, const float* addend, MC& c, const gemm_spec& spec,
                          gemm_stats* stats, gemm_report* report) {
    const std::int64_t M = a.rows(), K = a.cols(), N = b.cols();
    const auto refuse = [&](const char* why) {
        if (report != nullptr) report->reason = std::string(to_string(spec.model)) + " on operands' exponents: " + why;
        return false;
    };
    const float_quantizer* acc = spec.accumulator.as_float();
    if (acc == nullptr || acc->mode == rounding::stochastic)
        return refuse("the accumulator must be a deterministic float quantizer");
    if (stats != nullptr && spec.record_lost) return refuse("stats: per-product records (record_lost)");
    if (spec.chunk != 0 && spec.chunk < K) return refuse("chunks (one chunk only: chunk = 0 or >= K)");
    if (!spec.chunk_accumulator.is_exact()) return refuse("a chunk accumulator (one chunk only)");
    const int widest = spec.model == accumulation::two_level ? std::max(spec.window, spec.sum_window) + 1 : spec.window;
    if (widest + 3 + int(std::bit_width(std::uint64_t(spec.group))) > 53)
        return refuse("window + log2 group beyond double's 53 bits");
    if (!format_fits<double>(acc->format)) return refuse("an accumulator format beyond double");
    if (spec.zero_exponent && std::abs(*spec.zero_exponent) > 600) return refuse("zero_exponent beyond +-600");
    if (!all_finite(a.data(), a.size()) || !all_finite(b.data(), b.size()) ||
        (addend != nullptr && !all_finite(addend, M * N)))
        return refuse("an infinite or NaN input");
    const int min_a = exact_datapath::min_normal_exponent(spec, spec.input_a);
    const int min_b = exact_datapath::min_normal_exponent(spec, spec.input_b);
    const int acc_min = exact_datapath::min_normal_exponent(spec, spec.accumulator);
    const int zero = spec.zero_exponent ? *spec.zero_exponent : no_exponent;

    // The operands' exponents, once per element (B's padded to whole blocks of lanes).
    const std::int64_t blocks = (N + fast_lanes - 1) / fast_lanes, ldb = blocks * fast_lanes;
    std::vector<int> ea(std::size_t(M * K));
    for (std::int64_t i = 0; i < M * K; ++i) ea[std::size_t(i)] = operand_exponent(a.data()[i], min_a, no_exponent);
    std::vector<float> b_padded(std::size_t(K * ldb), 0.0f);
    std::vector<int> eb(std::size_t(K * ldb), no_exponent);
    for (std::int64_t k = 0; k < K; ++k)
        for (std::int64_t j = 0; j < N; ++j) {
            const float x = b.data()[k * N + j];
            b_padded[std::size_t(k * ldb + j)] = x;
            eb[std::size_t(k * ldb + j)] = operand_exponent(x, min_b, no_exponent);
        }
    const auto plan = group_rounding::make(*acc);
    std::mutex adding;
    const auto run = [&](auto block_fn) {
        for_each_range(blocks * M, thread_count(spec.threads), [&](std::int64_t begin, std::int64_t end) {
            alignas(64) double lanes[fast_lanes];
            aligned_events events;  // (padding lanes hold zeros: they count nothing)
            for (std::int64_t at = begin; at < end; ++at) {
                const std::int64_t block = at / M, i = at % M, j0 = block * fast_lanes;
                const std::int64_t width = std::min<std::int64_t>(fast_lanes, N - j0);
                for (std::int64_t l = 0; l < fast_lanes; ++l)
                    lanes[l] = l < width && addend != nullptr ? double(addend[i * N + j0 + l]) : 0.0;
                block_fn(a.data() + i * K, ea.data() + i * K, b_padded.data() + j0, eb.data() + j0, ldb, K, spec, plan,
                         acc_min, zero, lanes, &events);
                for (std::int64_t l = 0; l < width; ++l) c(i, j0 + l) = float(lanes[l]);  // (a float already)
            }
            if (stats == nullptr) return;
            std::lock_guard lock(adding);
            events.add_to(*stats);
        });
    };
    const auto counted = [&](auto count) {
        dispatch_deterministic(acc->mode, [&](auto m) {
            if (spec.model == accumulation::two_level) run(&two_level_block<m(), count()>);
            else if (spec.cut == alignment_cut::toward_zero) run(&operand_aligned_block<m(), alignment_cut::toward_zero, count()>);
            else run(&operand_aligned_block<m(), alignment_cut::toward_negative, count()>);
        });
    };
    if (stats != nullptr) {
        counted(std::true_type{});
        stats->zero_operand += zero_operand_products(a, b_padded.data(), ldb, N);
    } else {
        counted(std::false_type{});
    }
    if (report != nullptr) {
        report->kernel = gemm_kernel::vectorized_chain;
        report->reason.clear();
    }
    return true;
}

}  // namespace lowbit::detail
