// lowbit/datapath/gemm_core.hpp: what runs under lowbit::gemm (gemm.hpp): the rounding of the
// inputs with their events, and the product of quantized matrices on the integer chain, the
// vectorized paths (fast_datapath.hpp) or the exact path (exact_datapath.hpp).
//
// gemm.hpp includes this header at its end in header-only use, so that each file that calls gemm
// instantiates these kernels. Under LOWBIT_COMPILED_LIB (CMake target lowbit::compiled) it does
// not: src/compiled.cpp includes it and instantiates the two entry points once for the program.
#pragma once

#include <lowbit/datapath/exact_datapath.hpp>
#include <lowbit/datapath/fast_datapath.hpp>
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/integer_chain.hpp>
#include <lowbit/datapath/operand_aligned.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

namespace lowbit::detail {

// Applies an input quantizer to the n elements at data, which are elements first.. of an array
// whose element e has random index e (each element's rounding depends only on its index, so any
// split of the array gives the same values).
inline void quantize_piece(const quantizer& q, gemm_role role, float* data, std::size_t first, std::size_t n) {
    if (const auto* f = q.as_float()) {
        float_quantizer keyed = *f;
        keyed.seed = gemm_random_key(f->seed, role);
        keyed(std::span<float>(data, n), first);
    } else if (const auto* i = q.as_int()) {
        int_quantizer keyed = *i;
        keyed.seed = gemm_random_key(i->seed, role);
        keyed(std::span<float>(data, n), first);
    }
}

// The largest magnitude that q never rounds beyond its range: only values above it can overflow.
inline double overflow_free_limit(const quantizer& q) {
    if (const auto* f = q.as_float()) return f->format.max_finite();
    if (const auto* i = q.as_int())
        return std::min(i->format.max_value(), -i->format.min_value()) * std::ldexp(1.0, -i->fraction_bits);
    return std::numeric_limits<double>::infinity();
}

// The input events (gemm_stats.hpp) of n elements: `given` as the caller gave them (cast to
// float), `rounded` what q made of them as elements first.. of its array. Whether a value beyond
// the range overflowed depends on its rounding (toward zero may bring it back to the largest
// value): the datapath's own rounding step decides, with the same random bits, for those few.
inline void count_input_events(const quantizer& q, gemm_role role, const float* given, const float* rounded,
                               std::size_t first, std::size_t n, gemm_stats& stats) {
    const double limit = overflow_free_limit(q);
    const std::uint64_t key = gemm_random_key(exact_datapath::seed_of(q), role);
    for (std::size_t e = 0; e < n; ++e) {
        const float x = given[e], y = rounded[e];
        if (std::isnan(x)) { ++stats.input_nans; continue; }
        if (std::isinf(x)) { ++stats.input_infinities; continue; }
        stats.inexact_inputs += !(y == x);
        stats.input_underflows += x != 0 && y == 0;
        if (std::fabs(x) > limit)
            with_step(q, key, [&](const auto& step) {
                if constexpr (!std::decay_t<decltype(step)>::exact) {
                    bool overflowed = false;
                    step.round_value(double(x), first + e, overflowed);
                    stats.input_overflows += overflowed;
                }
            });
    }
}

template <class>
void quantize_rows_piece(const quantizer& q, gemm_role role, float* piece, std::size_t begin, std::size_t n,
                         gemm_stats* stats) {
    if (stats == nullptr) return quantize_piece(q, role, piece, begin, n);
    const std::vector<float> given(piece, piece + n);
    quantize_piece(q, role, piece, begin, n);
    gemm_stats local;
    count_input_events(q, role, given.data(), piece, begin, n, local);
    static std::mutex adding;  // pieces run on the tile pool's threads
    std::lock_guard lock(adding);
    *stats += local;
}

// C (row-major M x N) from quantized A (row-major M x K) and B (column-major: column j of B
// contiguous), on the exact path; each output's accumulation starts from addend[i*N + j] (or +0).
template <bool Count>
void exact_gemm(const row_major_view& a, const Eigen::MatrixXf& b, row_major_view& c, const gemm_spec& spec,
                gemm_stats* stats, const float* addend) {
    const std::int64_t M = a.rows(), K = a.cols(), N = b.cols();
    const exact_datapath path{spec, N, K};
    const int threads = thread_count(spec.threads);
    std::vector<gemm_stats> per_thread(std::size_t(threads), gemm_stats{});
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t i = 0; i < M; ++i) {
        gemm_stats& local = per_thread[std::size_t(thread_index())];
        std::vector<double> products, tree;
        std::vector<exact_sum> chunk_results;
        for (std::int64_t j = 0; j < N; ++j) {
            const std::uint64_t out = std::uint64_t(i * N + j);
            event_sink<Count> sink{&local, nullptr};
            if constexpr (Count)
                if (spec.record_lost) sink.lost = stats->lost.data() + out * std::uint64_t(K);
            c(i, j) = path.output<Count>(a.data() + i * K, b.data() + j * K, out, products, tree, chunk_results, sink,
                                         addend != nullptr ? std::optional<double>(addend[out]) : std::nullopt);
        }
    }
    if constexpr (Count)
        for (const auto& s : per_thread) *stats += s;
}

template <class>
void multiply_quantized(const row_major_view& a, const row_major_view& b_rows, const float* addend,
                        row_major_view& c, const gemm_spec& spec, gemm_stats* stats, gemm_report* report) {
    const std::int64_t M = a.rows(), K = a.cols(), N = b_rows.cols();
    if (report != nullptr) *report = gemm_report{};
    if (stats != nullptr) {
        stats->macs += std::uint64_t(M) * std::uint64_t(N) * std::uint64_t(K);
        if (spec.record_lost) stats->lost.assign(std::size_t(M * N * K), 0);
    }
    bool fast = false;
    if ((spec.model == accumulation::aligned && spec.align == alignment_exponent::operands) ||
        spec.model == accumulation::two_level) {
        fast = operand_aligned_gemm(a, b_rows, addend, c, spec, stats, report);
    } else if (spec.accumulator.as_int() != nullptr) {
        if (addend == nullptr) fast = integer_gemm(a, b_rows, c, spec, stats, report);
        else if (report != nullptr) report->reason = "an addend C (gemm_add) to an integer accumulator runs on the exact path";
    } else {
        fast = fast_gemm(a, b_rows, c, spec, stats, report, addend);
    }
    if (!fast) {
        const Eigen::MatrixXf b = b_rows;  // column-major: each column's K values contiguous
        if (stats != nullptr)
            exact_gemm<true>(a, b, c, spec, stats, addend);
        else
            exact_gemm<false>(a, b, c, spec, nullptr, addend);
        if (report != nullptr) report->kernel = gemm_kernel::exact;
    }
}

#ifdef LOWBIT_COMPILED_LIB
extern template void quantize_rows_piece<>(const quantizer&, gemm_role, float*, std::size_t, std::size_t, gemm_stats*);
extern template void multiply_quantized<>(const row_major_view&, const row_major_view&, const float*,
                                          row_major_view&, const gemm_spec&, gemm_stats*, gemm_report*);
#endif

}  // namespace lowbit::detail
