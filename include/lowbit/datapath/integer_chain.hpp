// lowbit/datapath/integer_chain.hpp: integer (fixed-point) accumulators in integer lanes, used where
// they provably equal the exact path (exact_datapath.hpp): an int8 x int8 -> int32 GEMM that wraps
// or saturates (A2Q, WrapNet), on every model but aligned, with its events.
//
// An integer accumulator holds n * 2^-f (f = its fraction_bits). Where every product is an exact
// fp32 product that lies on that grid (its lowest bit at or above 2^-f) and |product| * 2^f is
// below 2^31, no addition ever rounds: the accumulator's only effect is its overflow rule on the
// exact integer sum. So sums are int64 additions of n_k = int(a_k * b_k * 2^f), followed by
//   wrap:     n mod 2^bits into the format's range (two's complement)
//   saturate: n clamped to the format's range
// Wrapping commutes with addition (everything is modulo 2^bits), so without events a chunk is
// summed exactly and wrapped once; saturation is applied at every step of the model (sequential,
// fma, pairwise tree nodes; once for fused). The chunk results then go through the chunk
// accumulator the same way (an integer one with the same fraction_bits, or exact), and the total
// becomes float rounded to nearest even, as on the exact path.
//
// Sixty-four outputs of a row of C are computed together, as in fast_datapath.hpp. Without events
// the lanes are int32 where every value and sum of a chunk fits (a wrapping range within int32,
// where sums modulo 2^32 decide; saturating values below 2^30), else int64 (also for events); the
// total over chunks is int64. The scale 2^f is applied to A's element once per k where that is
// exact, so a product is one multiply and one conversion.
#pragma once

#include <lowbit/datapath/fast_datapath.hpp>
#include <lowbit/datapath/gemm_report.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/datapath/thread_count.hpp>
#include <lowbit/rounding/exact_ops.hpp>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace lowbit::detail {

// The overflow rules on the integers of a grid: op(s) for a sum s, in lanes of int64, or of
// int32 where the plan shows every value and sum fits (lanes32 below).
struct int_lane_wrap {  // s mod 2^bits into [lo, lo + 2^bits)
    std::int64_t lo;
    std::uint64_t mask;  // 2^bits - 1
    static constexpr bool commutes = true;
    // (in unsigned arithmetic, modulo 2^64 or 2^32: the result is in range, so it converts back)
    template <class L>
    [[gnu::always_inline]] L operator()(L s) const {
        using U = std::make_unsigned_t<L>;
        return L(U((U(s) - U(lo)) & U(mask)) + U(lo));
    }
};
struct int_lane_saturate {
    std::int64_t lo, hi;
    static constexpr bool commutes = false;
    template <class L>
    [[gnu::always_inline]] L operator()(L s) const { return std::min(std::max(s, L(lo)), L(hi)); }
};
struct int_lane_exact {  // an unset chunk accumulator
    static constexpr bool commutes = true;
    template <class L>
    [[gnu::always_inline]] L operator()(L s) const { return s; }
};
using int_lane_op = std::variant<int_lane_wrap, int_lane_saturate>;
using int_chunk_op = std::variant<int_lane_wrap, int_lane_saturate, int_lane_exact>;

inline int_lane_op int_lane_op_of(const int_quantizer& q) {
    const auto lo = std::int64_t(q.format.min_value()), hi = std::int64_t(q.format.max_value());
    if (q.on_overflow == int_overflow::saturate) return int_lane_saturate{lo, hi};
    return int_lane_wrap{lo, (std::uint64_t(1) << q.format.bits) - 1};
}

// Events of one block of lanes, as 0/1 integers summed per lane (vectorizes like the sums).
struct int_lane_events {
    std::uint64_t zero_operand[fast_lanes] = {}, overflows[fast_lanes] = {}, swamps[fast_lanes] = {};
    // x + y = s became r: an overflow (r != s; the rule changes only sums out of range), which is
    // also the only inexact addition; a swamp when y != 0 was lost entirely (r == x), and, for
    // tree nodes (Both), when x != 0 was (r == y).
    template <bool Both = false>
    [[gnu::always_inline]] void addition(int l, std::int64_t x, std::int64_t y, std::int64_t s, std::int64_t r) {
        overflows[l] += std::uint64_t(r != s);
        if constexpr (Both)
            swamps[l] += std::uint64_t((y != 0 && r == x) || (x != 0 && r == y));
        else
            swamps[l] += std::uint64_t(y != 0 && r == x);
    }
    void add_to(gemm_stats& stats) const {
        for (int l = 0; l < fast_lanes; ++l) {
            stats.zero_operand += zero_operand[l];
            stats.accumulator_overflows += overflows[l];
            stats.inexact_additions += overflows[l];
            stats.swamps += swamps[l];
        }
    }
};

// What a call runs: the steps and constants.
struct integer_plan {
    accumulation model;
    std::int64_t chunk;
    float scale;  // 2^f: a product a * b times it is its integer n
    bool scale_a;  // a * 2^f is exact for every a: the scale is applied once per element of A
    bool lanes32;  // without events, every lane value and sum of a chunk fits int32
    double unscale;  // 2^-f
    int_lane_op accumulate;
    int_chunk_op chunk_step;
};

// n[t][l] = int(a[t] * b[t][l] * 2^f) for t < n (exact: see the top), with zero operands counted.
template <class L, bool Count>
[[gnu::always_inline]] inline void integer_products(const float* a, const float* b, std::ptrdiff_t ldb, int n,
                                                    const integer_plan& plan, L* out, int_lane_events* events) {
    for (int t = 0; t < n; ++t) {
        const float* row = b + t * ldb;
        L* o = out + t * fast_lanes;
        if (plan.scale_a) {
            const float x = a[t] * plan.scale;
            for (int l = 0; l < fast_lanes; ++l) o[l] = L(std::int32_t(x * row[l]));
        } else {
            const float x = a[t];
            for (int l = 0; l < fast_lanes; ++l) o[l] = L(std::int32_t((x * row[l]) * plan.scale));
        }
        if constexpr (Count)
            for (int l = 0; l < fast_lanes; ++l) events->zero_operand[l] += std::uint64_t(a[t] == 0 || row[l] == 0);
    }
}

// x + y in the lanes' type: exact in int64; in int32 lanes, modulo 2^32 (wrap: what the rule
// does anyway; saturate: the plan keeps every sum within int32).
template <class L>
[[gnu::always_inline]] inline L sum(L x, L y) {
    using U = std::make_unsigned_t<L>;
    return L(U(x) + U(y));
}

// A pairwise chunk of n products (rows of buf) reduced by the tree of gemm_spec.hpp into acc.
template <class L, class Op, bool Count>
void integer_tree(const L* buf, int n, const Op& op, L* acc, L* tree, int_lane_events* events) {
    if (n == 1) {  // a chunk of one product is that product
        std::copy(buf, buf + fast_lanes, acc);
        return;
    }
    const int width = int(std::bit_ceil(unsigned(n)));
    // level 1: the leaves (a missing neighbour is 0); then the levels above, in place
    for (int t = 0; t < width / 2; ++t)
        for (int l = 0; l < fast_lanes; ++l) {
            const L x = 2 * t < n ? buf[2 * t * fast_lanes + l] : 0;
            const L y = 2 * t + 1 < n ? buf[(2 * t + 1) * fast_lanes + l] : 0;
            const L s = sum(x, y), r = op(s);
            if constexpr (Count) events->template addition<true>(l, x, y, s, r);
            tree[t * fast_lanes + l] = r;
        }
    for (int nodes = width / 4; nodes >= 1; nodes /= 2)
        for (int t = 0; t < nodes; ++t)
            for (int l = 0; l < fast_lanes; ++l) {
                const L x = tree[2 * t * fast_lanes + l], y = tree[(2 * t + 1) * fast_lanes + l];
                const L s = sum(x, y), r = op(s);
                if constexpr (Count) events->template addition<true>(l, x, y, s, r);
                tree[t * fast_lanes + l] = r;
            }
    std::copy(tree, tree + fast_lanes, acc);
}

// A row's block of outputs from its K integer terms: every chunk, then the chunk accumulator, into
// out, each total times 2^-f rounded to odd in double (the total itself where it is below 2^53).
// fill(k, m, buf) writes the integers n of terms k .. k + m - 1 (m rows of fast_lanes), which
// are the products of a gemm or the block terms of a block-scaled one. buf holds a panel of
// terms, or a pairwise chunk's; tree half as many rows. L: the lanes of a chunk (int32 where the
// plan allows it); the total is int64.
template <class L, class Op, class ChunkOp, bool Count, class Fill>
void integer_row(const Fill& fill, std::int64_t K, const integer_plan& plan, const Op& op, const ChunkOp& chunk_op,
                 L* buf, L* tree, double* out, int_lane_events* events) {
    alignas(64) std::int64_t total[fast_lanes] = {};
    alignas(64) L acc[fast_lanes];
    // The rule once on the exact sum: fused, and wrap without events (the same as at every step).
    const bool summed = plan.model == accumulation::fused || (Op::commutes && !Count);
    for (std::int64_t start = 0; start < K; start += plan.chunk) {
        const int n = int(std::min(plan.chunk, K - start));
        if (plan.model == accumulation::pairwise) {
            fill(start, n, buf);
            integer_tree<L, Op, Count>(buf, n, op, acc, tree, events);
        } else {
            std::fill(acc, acc + fast_lanes, L(0));
            for (int k = 0; k < n; k += fast_panel) {
                const int m = std::min(fast_panel, n - k);
                fill(start + k, m, buf);
                if (summed) {
                    for (int t = 0; t < m; ++t)
                        for (int l = 0; l < fast_lanes; ++l) acc[l] = sum(acc[l], buf[t * fast_lanes + l]);
                } else {  // sequential and fma: the rule at every step
                    for (int t = 0; t < m; ++t)
                        for (int l = 0; l < fast_lanes; ++l) {
                            const L x = acc[l], y = buf[t * fast_lanes + l], s = sum(x, y), r = op(s);
                            if constexpr (Count) events->addition(l, x, y, s, r);
                            acc[l] = r;
                        }
                }
            }
            if (summed)
                for (int l = 0; l < fast_lanes; ++l) {
                    const L s = acc[l], r = op(s);
                    if constexpr (Count) events->overflows[l] += std::uint64_t(r != s);  // (fused only)
                    acc[l] = r;
                }
        }
        for (int l = 0; l < fast_lanes; ++l) {
            const std::int64_t x = total[l], y = acc[l], s = x + y, r = chunk_op(s);  // (int64)
            if constexpr (Count && !std::is_same_v<ChunkOp, int_lane_exact>) events->addition(l, x, y, s, r);
            total[l] = r;
        }
    }
    // total, rounded to odd in double (two exact halves, exact_ops.hpp) and scaled exactly
    for (int l = 0; l < fast_lanes; ++l) {
        const std::int64_t low = total[l] & 0xFFFFFFFF;
        out[l] = add_round_odd(double(total[l] - low), double(low)) * plan.unscale;
    }
}

// The integer plan for a spec and its inputs' grids, or nothing (with the reason) when the
// integer chain does not apply.
inline std::optional<integer_plan> make_integer_plan(const gemm_spec& spec, const value_grid& a, const value_grid& b,
                                                     std::int64_t K, std::string& why) {
    const int_quantizer* acc = spec.accumulator.as_int();
    if (acc == nullptr) {
        why = "integer_chain: the accumulator is not an integer quantizer";
        return {};
    }
    const int f = acc->fraction_bits;
    if (spec.model == accumulation::aligned || spec.model == accumulation::two_level) {
        why = "integer_chain: runs sequential, fma, pairwise and fused models";
        return {};
    }
    if (spec.model != accumulation::fma && !spec.product.is_exact()) {
        why = "integer_chain: a product quantizer (leave it unset: integer products are exact)";
        return {};
    }
    // every product an integer n of the accumulator's grid with |n| < 2^31
    if (a.smallest_step + b.smallest_step < -f) {
        why = "integer_chain: products below the accumulator's grid step 2^" + std::to_string(-f);
        return {};
    }
    if (std::ldexp(a.max_magnitude * b.max_magnitude, f) >= 0x1p31) {
        why = "integer_chain: products of 2^31 grid steps or more";
        return {};
    }
    const int_quantizer* chunk_acc = spec.chunk_accumulator.as_int();
    if (!spec.chunk_accumulator.is_exact() && (chunk_acc == nullptr || chunk_acc->fraction_bits != f)) {
        why = "integer_chain: the chunk accumulator must be exact or an integer quantizer with the accumulator's "
              "fraction_bits";
        return {};
    }
    const std::int64_t chunk = spec.chunk == 0 ? K : std::min<std::int64_t>(spec.chunk, K);
    const std::int64_t chunks = (K + chunk - 1) / chunk;
    const double range = std::max(-acc->format.min_value(), acc->format.max_value()) + 1;
    if (chunk_acc == nullptr && double(chunks) * range >= 0x1p62) {
        why = "integer_chain: an exact total that may reach 2^62";
        return {};
    }
    // int32 lanes: wrap (the sums' low 32 bits decide) with a range within int32; saturate when
    // every value and product is below 2^30, so that no sum of two leaves int32 (not fused,
    // whose chunk sums are exact)
    const double largest = std::max({-acc->format.min_value(), acc->format.max_value(),
                                     std::ldexp(a.max_magnitude * b.max_magnitude, f)});
    const bool range32 = acc->format.min_value() >= -0x1p31 && acc->format.max_value() < 0x1p31;
    const bool lanes32 = acc->on_overflow == int_overflow::wrap
                             ? range32
                             : spec.model != accumulation::fused && largest < 0x1p30;
    const bool scale_a = a.smallest_step + f >= -149 && std::ldexp(a.max_magnitude, f) <= double(FLT_MAX);
    integer_plan plan{spec.model, chunk, float(std::ldexp(1.0, f)), scale_a, lanes32, std::ldexp(1.0, -f),
                      int_lane_op_of(*acc), int_lane_exact{}};
    if (chunk_acc != nullptr) std::visit([&](const auto& op) { plan.chunk_step = op; }, int_lane_op_of(*chunk_acc));
    if (plan.scale == 0 || std::isinf(plan.scale)) {
        why = "integer_chain: 2^fraction_bits beyond fp32";
        return {};
    }
    return plan;
}

// Fills c (row-major M x N) from quantized a (M x K) and b (K x N, row-major) on the integer
// chain, or returns false (c and stats untouched, report->reason set) when it does not apply.
template <class MA, class MB, class MC>
bool integer_gemm(const MA& a, const MB& b, MC& c, const gemm_spec& spec, gemm_stats* stats, gemm_report* report) {
    const std::int64_t M = a.rows(), K = a.cols(), N = b.cols();
    std::string why;
    const auto refuse = [&] {
        if (report != nullptr) report->reason = why;
        return false;
    };
    if (spec.accumulator.as_int() == nullptr) return false;  // (not this kernel's spec: keep the reason)
    if (K == 0) return why = "K = 0", refuse();
    if (stats != nullptr && spec.record_lost) return why = "stats: per-product records (record_lost)", refuse();
    const auto grids = input_grids(spec.input_a, a.data(), a.size(), spec.input_b, b.data(), b.size(), why);
    if (!grids) return refuse();
    const auto plan = make_integer_plan(spec, grids->first, grids->second, K, why);
    if (!plan) return refuse();

    const std::int64_t blocks = (N + fast_lanes - 1) / fast_lanes;
    const padded_columns b_padded(b, blocks * fast_lanes);
    const std::ptrdiff_t ldb = blocks * fast_lanes;
    [[maybe_unused]] const int threads = thread_count(spec.threads);
    std::visit(
        [&](const auto& op, const auto& chunk_op) {
            using Op = std::decay_t<decltype(op)>;
            using ChunkOp = std::decay_t<decltype(chunk_op)>;
#pragma omp parallel num_threads(threads)
            {
                const std::int64_t rows = plan->model == accumulation::pairwise
                                              ? std::int64_t(std::bit_ceil(std::uint64_t(plan->chunk)))
                                              : fast_panel;
                const bool lanes32 = stats == nullptr && plan->lanes32;
                std::vector<std::int64_t> scratch(lanes32 ? 0 : std::size_t(2 * rows * fast_lanes));
                std::vector<std::int32_t> scratch32(lanes32 ? std::size_t(2 * rows * fast_lanes) : 0);
                int_lane_events events;
                alignas(64) double out[fast_lanes];
                // (the products of gemm are the terms; ldb captured by value: clang 14 does not
                // find it by reference from a lambda in a lambda in an OpenMP region)
                const auto row = [&, ldb]<class L, bool Count>(const float* a_row, const float* b_block, L* buf) {
                    integer_row<L, Op, ChunkOp, Count>(
                        [&, ldb](std::int64_t k, int m, L* terms) {
                            integer_products<L, Count>(a_row + k, b_block + k * ldb, ldb, m, *plan, terms,
                                                       Count ? &events : nullptr);
                        },
                        K, *plan, op, chunk_op, buf, buf + rows * fast_lanes, out, Count ? &events : nullptr);
                };
#pragma omp for schedule(static) collapse(2)
                for (std::int64_t block = 0; block < blocks; ++block) {
                    for (std::int64_t i = 0; i < M; ++i) {
                        const float* a_row = a.data() + i * K;
                        const float* b_block = b_padded.data() + block * fast_lanes;
                        if (lanes32)
                            row.template operator()<std::int32_t, false>(a_row, b_block, scratch32.data());
                        else if (stats != nullptr)
                            row.template operator()<std::int64_t, true>(a_row, b_block, scratch.data());
                        else
                            row.template operator()<std::int64_t, false>(a_row, b_block, scratch.data());
                        // the nearest float to the exact total (rounding its round-to-odd double
                        // rounds it once), as on the exact path
                        const std::int64_t width = std::min<std::int64_t>(fast_lanes, N - block * fast_lanes);
                        for (std::int64_t l = 0; l < width; ++l) c(i, block * fast_lanes + l) = float(out[l]);
                    }
                }
                if (stats != nullptr) {
                    gemm_stats local;
                    events.add_to(local);
#pragma omp critical(lowbit_integer_gemm_stats)
                    *stats += local;
                }
            }
        },
        plan->accumulate, plan->chunk_step);
    // The padding columns of B (zero products: no other event) counted zero operands.
    if (stats != nullptr) stats->zero_operand -= std::uint64_t(M) * std::uint64_t(K) * std::uint64_t(ldb - N);
    if (report != nullptr) {
        report->kernel = gemm_kernel::integer_chain;
        report->reason.clear();
    }
    return true;
}

}  // namespace lowbit::detail
