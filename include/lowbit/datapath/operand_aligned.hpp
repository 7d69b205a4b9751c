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
// path's aligned() and two_level(), on the same values: the same bits. Applies to one chunk (chunk 0 or >= K, an exact chunk accumulator), finite inputs and
// no event counting; gemm_report says which condition sent a call elsewhere. Each output starts
// from its addend (gemm_add) or +0.
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
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace lowbit::detail {

// 2^e as a double for e in [-1022, 1023], from its bits (vectorizes, unlike std::ldexp).
[[gnu::always_inline]] inline double pow2_bits(std::int64_t e) {
    return std::bit_cast<double>(std::uint64_t(e + 1023) << 52);
}

// A value's exponent for the alignment (exponent_reading::of_value), `zero` for 0.
inline int operand_exponent(float x, int min, int zero) { return x == 0 ? zero : exponent_reading::of_value(x, min); }

// The smallest exponent any group's largest may have beside the values of a call: below it no
// term is read (the sentinel for "no exponent").
inline constexpr int no_exponent = -100000;

template <rounding Mode, alignment_cut Cut>
void operand_aligned_block(const float* a, const int* ea, const float* b, const int* eb, std::int64_t ldb,
                           std::int64_t K, const gemm_spec& spec, const rounding_plan<double>& plan, int acc_min,
                           int zero, double* acc) {
    constexpr int L = fast_lanes;
    const int window = spec.window;
    for (std::int64_t g0 = 0; g0 < K; g0 += spec.group) {
        const std::int64_t g1 = std::min<std::int64_t>(g0 + spec.group, K);
        // The largest exponent among the accumulator and the group's products.
        std::int32_t top[L];
        for (int l = 0; l < L; ++l) {
            const double x = acc[l];
            const bool finite = std::isfinite(x);
            top[l] = x == 0 ? zero : finite ? std::max(std::ilogb(x), acc_min) : no_exponent;
        }
        for (std::int64_t k = g0; k < g1; ++k) {
            const int e_a = ea[k];
            const int* e_b = eb + k * ldb;
            for (int l = 0; l < L; ++l) {
                const std::int32_t e = (e_a == no_exponent || e_b[l] == no_exponent) ? zero : e_a + e_b[l];
                top[l] = std::max(top[l], e);
            }
        }
        // The cut terms, summed from +0 (a fixed-point sum); where nothing has an exponent (every
        // value zero, zeros not aligned) the IEEE sum of the zeros.
        double cut_sum[L], plain_sum[L];
        double scale[L], unscale[L];
        for (int l = 0; l < L; ++l) {
            const std::int64_t q = std::int64_t(top[l]) - window;  // the grid: multiples of 2^q
            scale[l] = pow2_bits(std::clamp<std::int64_t>(-q, -1022, 1023));
            unscale[l] = pow2_bits(std::clamp<std::int64_t>(q, -1022, 1023));
            const double x = acc[l];
            const double units = x * scale[l];
            const double cut = Cut == alignment_cut::toward_zero ? std::trunc(units) : std::floor(units);
            cut_sum[l] = 0.0 + (std::isfinite(x) ? cut * unscale[l] : x);
            plain_sum[l] = x;
        }
        for (std::int64_t k = g0; k < g1; ++k) {
            const double x = double(a[k]);
            const float* bk = b + k * ldb;
            for (int l = 0; l < L; ++l) {
                const double p = x * double(bk[l]);  // exact
                const double units = p * scale[l];
                const double cut = Cut == alignment_cut::toward_zero ? std::trunc(units) : std::floor(units);
                cut_sum[l] += cut * unscale[l];
                plain_sum[l] += p;
            }
        }
        for (int l = 0; l < L; ++l) acc[l] = round_with_plan<Mode>(top[l] != no_exponent ? cut_sum[l] : plain_sum[l], plan);
    }
}

// The two_level model (gemm_spec.hpp) for 64 outputs; the operands' exponents as above.
template <rounding Mode>
void two_level_block(const float* a, const int* ea, const float* b, const int* eb, std::int64_t ldb, std::int64_t K,
                     const gemm_spec& spec, const rounding_plan<double>& plan, int acc_min, int zero, double* acc) {
    constexpr int L = fast_lanes;
    constexpr int max_subs = 64;  // (gemm_spec::validate)
    const int window = spec.window, subs = spec.sub_dots;
    const auto floor_to = [](double x, std::int64_t q) {  // x cut toward minus infinity to a multiple of 2^q
        return std::floor(x * pow2_bits(std::clamp<std::int64_t>(-q, -1022, 1023))) *
               pow2_bits(std::clamp<std::int64_t>(q, -1022, 1023));
    };
    for (std::int64_t g0 = 0; g0 < K; g0 += spec.group) {
        const std::int64_t g1 = std::min<std::int64_t>(g0 + spec.group, K);
        // Each sub-dot's largest exponent, and products of 2^128 or more.
        std::int32_t top[max_subs][L];
        bool above[L] = {}, below[L] = {};
        for (int d = 0; d < subs; ++d)
            for (int l = 0; l < L; ++l) top[d][l] = no_exponent;
        for (std::int64_t k = g0; k < g1; ++k) {
            const int d = int((k - g0) % subs), e_a = ea[k];
            const float* bk = b + k * ldb;
            const int* e_b = eb + k * ldb;
            for (int l = 0; l < L; ++l) {
                const std::int32_t e = (e_a == no_exponent || e_b[l] == no_exponent) ? zero : e_a + e_b[l];
                top[d][l] = std::max(top[d][l], e);
                const double p = double(a[k]) * double(bk[l]);
                above[l] = above[l] || p >= 0x1p128;
                below[l] = below[l] || p <= -0x1p128;
            }
        }
        // Level 1: each sub-dot's products cut toward zero on its own exponent, summed.
        double sub_sum[max_subs][L];
        double plain[L];
        for (int l = 0; l < L; ++l) plain[l] = acc[l];
        for (int d = 0; d < subs; ++d)
            for (int l = 0; l < L; ++l) sub_sum[d][l] = 0.0;
        for (std::int64_t k = g0; k < g1; ++k) {
            const int d = int((k - g0) % subs);
            const double x = double(a[k]);
            const float* bk = b + k * ldb;
            for (int l = 0; l < L; ++l) {
                const std::int64_t q = std::int64_t(top[d][l]) - window;
                const double p = x * double(bk[l]);
                sub_sum[d][l] += std::trunc(p * pow2_bits(std::clamp<std::int64_t>(-q, -1022, 1023))) *
                                 pow2_bits(std::clamp<std::int64_t>(q, -1022, 1023));
                plain[l] += p;
            }
        }
        for (int l = 0; l < L; ++l) {
            const double x = acc[l];
            if (!std::isfinite(x)) {  // an infinite accumulator stays so (IEEE's sum with finite products)
                acc[l] = round_with_plan<Mode>(plain[l], plan);
                continue;
            }
            if (above[l] || below[l]) {
                const double inf = std::numeric_limits<double>::infinity();
                acc[l] = round_with_plan<Mode>(above[l] && below[l] ? std::numeric_limits<double>::quiet_NaN()
                                               : above[l]           ? inf
                                                                    : -inf,
                                               plan);
                continue;
            }
            std::int32_t top_p = no_exponent;
            for (int d = 0; d < subs; ++d) top_p = std::max(top_p, top[d][l]);
            double products = 0.0;
            if (subs == 1) {
                products = sub_sum[0][l];
            } else {
                for (int d = 0; d < subs; ++d)
                    if (top[d][l] != no_exponent) products += floor_to(sub_sum[d][l], std::int64_t(top_p) - window);
            }
            // Level 2: the products' sum and the accumulator floored on the larger exponent.
            const std::int32_t top_acc = x != 0 ? std::max(std::ilogb(x), acc_min) : zero;
            const std::int32_t e = std::max(top_p, top_acc);
            if (e == no_exponent) {  // every value zero, zeros not aligned: IEEE's sum of the zeros
                acc[l] = round_with_plan<Mode>(plain[l], plan);
                continue;
            }
            double s = 0.0 + floor_to(products, std::int64_t(e) - spec.sum_window);
            const bool dropped = subs > 1 && top_acc < e - window - 1;
            if (x != 0 && !dropped) s += floor_to(x, std::int64_t(e) - window);
            acc[l] = round_with_plan<Mode>(s, plan);
        }
    }
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
    if (stats != nullptr) return refuse("events (gemm_stats) are counted on the exact path");
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
    const auto plan = rounding_plan<double>::make(acc->format, acc->on_overflow, acc->random_bits);
    const auto run = [&](auto block_fn) {
        for_each_range(blocks * M, thread_count(spec.threads), [&](std::int64_t begin, std::int64_t end) {
            alignas(64) double lanes[fast_lanes];
            for (std::int64_t at = begin; at < end; ++at) {
                const std::int64_t block = at / M, i = at % M, j0 = block * fast_lanes;
                const std::int64_t width = std::min<std::int64_t>(fast_lanes, N - j0);
                for (std::int64_t l = 0; l < fast_lanes; ++l)
                    lanes[l] = l < width && addend != nullptr ? double(addend[i * N + j0 + l]) : 0.0;
                block_fn(a.data() + i * K, ea.data() + i * K, b_padded.data() + j0, eb.data() + j0, ldb, K, spec, plan,
                         acc_min, zero, lanes);
                for (std::int64_t l = 0; l < width; ++l) c(i, j0 + l) = float(lanes[l]);  // (a float already)
            }
        });
    };
    dispatch_deterministic(acc->mode, [&](auto m) {
        if (spec.model == accumulation::two_level) run(&two_level_block<m()>);
        else if (spec.cut == alignment_cut::toward_zero) run(&operand_aligned_block<m(), alignment_cut::toward_zero>);
        else run(&operand_aligned_block<m(), alignment_cut::toward_negative>);
    });
    if (report != nullptr) {
        report->kernel = gemm_kernel::vectorized_chain;
        report->reason.clear();
    }
    return true;
}

}  // namespace lowbit::detail
