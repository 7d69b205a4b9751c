// The integer chain (integer_chain.hpp) against the exact path (the reference lane, taken with
// per-product records) and the MPFR reference of gemm_reference.hpp: result bits and every event,
// for wrapping and saturating accumulators of 8 to 53 bits, signed and unsigned, fixed point,
// every model it runs, chunk accumulators exact or integer, ragged shapes, one and two threads.
#include <lowbit/datapath/gemm.hpp>

#include "gemm_reference.hpp"
#include "support/stats_difference.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>

namespace {

using lowbit::accumulation;
using lowbit::int_overflow;
using lowbit::int_quantizer;

Eigen::MatrixXf normal(Eigen::Index rows, Eigen::Index cols, std::mt19937& gen, float scale, double zeros = 0.1) {
    std::normal_distribution<float> n;
    std::bernoulli_distribution zero(zeros);
    Eigen::MatrixXf m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = zero(gen) ? 0.0f : scale * n(gen);
    return m;
}

bool same_bits(const Eigen::MatrixXf& a, const Eigen::MatrixXf& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.size())) == 0;
}

Eigen::MatrixXf exact_path(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, lowbit::gemm_spec spec,
                           lowbit::gemm_stats& stats) {
    spec.record_lost = true;  // per-product records: the exact path
    lowbit::gemm_report report;
    Eigen::MatrixXf C = lowbit::gemm(A, B, spec, &stats, &report);
    CHECK(report.kernel == lowbit::gemm_kernel::exact);
    return C;
}

}  // namespace

TEST_CASE("integer chain equals the exact path: wrap and saturate, every model, chunks, threads") {
    std::mt19937 gen(5);
    int compared = 0;
    lowbit::gemm_stats all;
    for (const int bits : {8, 12, 16, 24, 32, 53})
        for (const bool is_signed : {true, false})
            for (const int_overflow o : {int_overflow::wrap, int_overflow::saturate})
                for (const auto model : {accumulation::sequential, accumulation::fma, accumulation::pairwise,
                                         accumulation::fused})
                    for (const int chunk : {0, 1, 5, 16}) {
                        const int fraction = compared % 3 == 0 ? 6 : 2;  // (input_b has 2 fraction bits)
                        const int_quantizer acc{.format = {.bits = bits, .is_signed = is_signed},
                                                .on_overflow = o, .fraction_bits = fraction};
                        lowbit::gemm_spec spec{.input_a = int_quantizer{.format = {.bits = 8}},
                                               .input_b = int_quantizer{.format = {.bits = 8}, .fraction_bits = 2},
                                               .accumulator = acc, .model = model, .chunk = chunk};
                        // the chunk accumulator: exact, the same, or a narrower one of the same grid
                        const int which = compared % 3;
                        if (which == 1) spec.chunk_accumulator = acc;
                        if (which == 2)
                            spec.chunk_accumulator = int_quantizer{.format = {.bits = std::max(bits / 2, 2)},
                                                                   .on_overflow = int_overflow::saturate,
                                                                   .fraction_bits = fraction};
                        // fma ignores a product quantizer; a ragged N, and 128 columns on two threads
                        if (model == accumulation::fma) spec.product = lowbit::fp8_e4m3;
                        const Eigen::Index N = compared % 2 == 0 ? 37 : 128;
                        spec.threads = N == 128 ? 2 : 1;
                        const Eigen::Index K = chunk == 16 ? 300 : 131;
                        const auto A = normal(5, K, gen, 60), B = normal(K, N, gen, 20);
                        INFO("bits " << bits << (is_signed ? " signed " : " unsigned ")
                                     << (o == int_overflow::wrap ? "wrap " : "saturate ") << lowbit::to_string(model)
                                     << " chunk " << chunk << " chunk accumulator " << which << " fraction " << fraction);
                        lowbit::gemm_stats exact_stats, fast_stats;
                        const Eigen::MatrixXf exact = exact_path(A, B, spec, exact_stats);
                        lowbit::gemm_report report;
                        CHECK(same_bits(exact, lowbit::gemm(A, B, spec, nullptr, &report)));
                        CHECK(report.kernel == lowbit::gemm_kernel::integer_chain);
                        CHECK(report.reason == "");
                        CHECK(same_bits(exact, lowbit::gemm(A, B, spec, &fast_stats, &report)));
                        CHECK(report.kernel == lowbit::gemm_kernel::integer_chain);
                        CHECK(lowbit_test::stats_difference(exact_stats, fast_stats, false) == "");
                        all += exact_stats;
                        ++compared;
                    }
    // every event this chain counts happened somewhere
    CHECK(all.zero_operand > 0);
    CHECK(all.accumulator_overflows > 0);
    CHECK(all.swamps > 0);
    CHECK(all.inexact_additions > 0);
}

TEST_CASE("integer chain equals the MPFR reference (gemm_reference.hpp)") {
    std::mt19937 gen(8);
    for (const int bits : {10, 16, 32})
        for (const int_overflow o : {int_overflow::wrap, int_overflow::saturate})
            for (const auto model : {accumulation::sequential, accumulation::pairwise, accumulation::fused})
                for (const int chunk : {0, 3, 16}) {
                    const int_quantizer acc{.format = {.bits = bits}, .on_overflow = o, .fraction_bits = 1};
                    lowbit::gemm_spec spec{.input_a = int_quantizer{.format = {.bits = 8}},
                                           .input_b = int_quantizer{.format = {.bits = 6}},
                                           .accumulator = acc, .model = model, .chunk = chunk,
                                           .chunk_accumulator = acc};
                    const auto A = normal(3, 70, gen, 50), B = normal(70, 4, gen, 15);
                    lowbit::gemm_stats expected_stats, got_stats;
                    const Eigen::MatrixXf expected = lowbit_test::reference_gemm(A, B, spec, &expected_stats);
                    lowbit::gemm_report report;
                    const Eigen::MatrixXf got = lowbit::gemm(A, B, spec, &got_stats, &report);
                    INFO("bits " << bits << " " << lowbit::to_string(model) << " chunk " << chunk);
                    CHECK(report.kernel == lowbit::gemm_kernel::integer_chain);
                    CHECK(same_bits(expected, got));
                    CHECK(lowbit_test::stats_difference(expected_stats, got_stats, false).empty());
                }
}

TEST_CASE("integer chain: edge shapes and values") {
    std::mt19937 gen(9);
    const int_quantizer acc{.format = {.bits = 16}, .on_overflow = int_overflow::saturate};
    const lowbit::gemm_spec spec{.input_a = int_quantizer{.format = {.bits = 8}},
                                 .input_b = int_quantizer{.format = {.bits = 8}}, .accumulator = acc, .chunk = 4,
                                 .chunk_accumulator = acc};
    // K = 1, chunk > K, a single output, all zeros, a column count of exactly 64
    for (const auto& [M, K, N] : {std::tuple{1, 1, 1}, std::tuple{2, 3, 64}, std::tuple{4, 1, 65}, std::tuple{3, 2, 5}}) {
        for (const float scale : {0.0f, 1.0f, 100.0f}) {
            const auto A = normal(M, K, gen, scale), B = normal(K, N, gen, scale);
            lowbit::gemm_stats exact_stats, fast_stats;
            const Eigen::MatrixXf exact = exact_path(A, B, spec, exact_stats);
            lowbit::gemm_report report;
            INFO("M " << M << " K " << K << " N " << N << " scale " << scale);
            CHECK(same_bits(exact, lowbit::gemm(A, B, spec, &fast_stats, &report)));
            CHECK(report.kernel == lowbit::gemm_kernel::integer_chain);
            CHECK(lowbit_test::stats_difference(exact_stats, fast_stats, false).empty());
        }
    }
}

TEST_CASE("integer chain: where it does not apply, the report says why and the exact path runs") {
    std::mt19937 gen(10);
    const auto A = normal(3, 20, gen, 10), B = normal(20, 5, gen, 10);
    const int_quantizer acc{.format = {.bits = 16}};
    const auto why = [&](lowbit::gemm_spec spec) {
        lowbit::gemm_report report;
        lowbit::gemm_stats exact_stats;
        const Eigen::MatrixXf exact = exact_path(A, B, spec, exact_stats);
        CHECK(same_bits(exact, lowbit::gemm(A, B, spec, nullptr, &report)));
        CHECK(report.kernel == lowbit::gemm_kernel::exact);
        return report.reason;
    };
    // unquantized N(0,1) * 10 data: products not exact in fp32; fixed-point inputs: below the grid
    CHECK_THAT(why({.accumulator = acc}), Catch::Contains("not exact in fp32"));
    CHECK_THAT(why({.input_a = int_quantizer{.fraction_bits = 3}, .input_b = int_quantizer{}, .accumulator = acc}),
               Catch::Contains("below the accumulator's grid"));
    CHECK_THAT(why({.input_a = int_quantizer{}, .input_b = int_quantizer{}, .product = lowbit::fp16,
                    .accumulator = acc}),
               Catch::Contains("product quantizer"));
    CHECK_THAT(why({.input_a = int_quantizer{}, .input_b = int_quantizer{}, .accumulator = acc,
                    .model = accumulation::aligned}),
               Catch::Contains("runs sequential, fma, pairwise and fused"));
    CHECK_THAT(why({.input_a = int_quantizer{}, .input_b = int_quantizer{}, .accumulator = acc, .chunk = 4,
                    .chunk_accumulator = lowbit::fp32}),
               Catch::Contains("chunk accumulator"));
}
