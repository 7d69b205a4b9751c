// The AVX-512 chain (scaled_chain.hpp: sequential, fma and pairwise) against the exact path
// (and, where a build has no AVX-512, the portable chain that runs instead on the same setups):
// bit-identical results, zeros' signs included, wherever fast_gemm chooses it; and the two
// hardware facts it rests on:
// vcvtne2ps2bf16 rounds to nearest even on 8 significant bits, and moves lanes as pair_column says.
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/portable_chain.hpp>
#include <lowbit/datapath/scaled_chain.hpp>
#include <lowbit/rounding/quantize.hpp>

#include "support/chain_data.hpp"
#include "support/stats_difference.hpp"

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#if defined(__SSE__)
#include <immintrin.h>
#endif

namespace {

using lowbit::accumulation;
using lowbit_test::data;
using lowbit_test::exact_gemm;
using lowbit_test::same_bits;
using lowbit_test::make;
using lowbit::rounding;

// Which kernel gemm runs for the spec and data (with stats when counted).
std::string kernel_for(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, const lowbit::gemm_spec& spec,
                       bool counted = false) {
    lowbit::gemm_report report;
    lowbit::gemm_stats stats;
    Eigen::MatrixXf C(A.rows(), B.cols());
    lowbit::gemm(A, B, C, spec, counted ? &stats : nullptr, &report);
    return report.kernel == lowbit::gemm_kernel::scaled_chain_avx512     ? "scaled"
           : report.kernel == lowbit::gemm_kernel::scaled_chain_portable ? "portable"
           : report.kernel == lowbit::gemm_kernel::vectorized_chain      ? "vectorized"
                                                                         : "none";
}

const lowbit::float_format m7e4_prod_subnormal{.exp_bits = 4, .man_bits = 7, .bias = 12, .subnormals = true,
                                               .specials = lowbit::special_values::none};
const lowbit::float_format m3e4_acc{.exp_bits = 4, .man_bits = 3, .bias = 10, .subnormals = false,
                                    .specials = lowbit::special_values::none};
const lowbit::float_format m7e3_acc{.exp_bits = 3, .man_bits = 7, .bias = 3, .subnormals = false,
                                    .specials = lowbit::special_values::none};
// FP8 M4E3 (the flagship's inputs, with a bias of its own as range_biased_float picks): products
// of 10 significant bits, which M7E4 must round. toward_zero cuts them in the chain, where the
// product format flushes; nearest_even and subnormal products stay on the vectorized chain.
const lowbit::float_quantizer e3m4{
    .format = {.exp_bits = 3, .man_bits = 4, .bias = 2, .specials = lowbit::special_values::none},
    .on_overflow = lowbit::overflow::saturate};

// What a failed check's setup was.
std::string setup_name(const lowbit::gemm_spec& spec, const lowbit::float_format& product, bool product_set, data kind) {
    return lowbit::to_string(spec.input_a.as_float()->format) + " inputs / " + lowbit::to_string(product) +
           (product_set ? "" : " (unset)") + " / " + lowbit::to_string(spec.accumulator) + " / " +
           lowbit::to_string(spec.model) + " chunk " + std::to_string(spec.chunk) + " data " + std::to_string(int(kind));
}

// Whether this build runs the AVX-512 chain for the setup: toward_zero, or nearest_even with a
// 7-bit accumulator; products exact (unset, or fma chains, which round product and sum at once),
// or on the product format's grid (e4m3 inputs), or truncated (toward_zero) to a format that
// flushes, on sequential chains (the only truncating kernels).
bool chain_runs(const lowbit::gemm_spec& spec, const lowbit::float_format& acc, bool product_set,
                const lowbit::float_format& product) {
    const rounding mode = spec.accumulator.as_float()->mode;
    const bool rounds_products = product_set && spec.model != accumulation::fma &&
                                 spec.input_a.as_float()->format != lowbit::fp8_e4m3;
    return lowbit::detail::has_scaled_chain &&
           (mode == rounding::toward_zero || (lowbit::detail::has_bf16_rounding && acc.man_bits == 7)) &&
           (!rounds_products ||
            (mode == rounding::toward_zero && !product.subnormals && spec.model != accumulation::pairwise));
}

// The kernel this build runs for the setup: the AVX-512 chain where chain_runs says so (and for
// pairwise trees of up to 64 leaves), else, on sequential and fma chains without events, the
// portable chain (portable_chain_test.cpp: every setup here fits it), else the vectorized chain.
std::string expected_kernel(const lowbit::gemm_spec& spec, const lowbit::float_format& acc, bool product_set,
                            const lowbit::float_format& product, bool counted = false) {
    const bool pairwise = spec.model == accumulation::pairwise;
    if (chain_runs(spec, acc, product_set, product) && (!pairwise || (spec.chunk != 0 && spec.chunk <= 64)))
        return "scaled";
    const bool rounds_products = product_set && spec.model != accumulation::fma &&
                                 spec.input_a.as_float()->format != lowbit::fp8_e4m3;
    const bool truncates = spec.accumulator.as_float()->mode == rounding::toward_zero && !product.subnormals;
    return lowbit::detail::has_portable_chain && !counted && !pairwise && (!rounds_products || truncates)
               ? "portable"
               : "vectorized";
}

}  // namespace

TEST_CASE("vcvtne2ps2bf16 rounds to nearest even on 8 significant bits, and moves lanes as pair_column says") {
    if constexpr (!lowbit::detail::has_bf16_rounding) {
        SUCCEED("no AVX512-BF16 on this build: nearest_even takes the general chain");
    } else {
#if defined(__AVX512BF16__)
        // Every 257th float, and the floats around each rounding boundary: the kept bits
        // even/odd, the dropped bits just below, at and above half.
        std::vector<float> xs;
        for (std::uint64_t bits = 0; bits < (std::uint64_t(1) << 32); bits += 257) xs.push_back(std::bit_cast<float>(std::uint32_t(bits)));
        for (std::uint32_t top = 0; top < (1u << 16); top += 3)
            for (const std::uint32_t low : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu})
                xs.push_back(std::bit_cast<float>((top << 16) | low));
        const lowbit::float_quantizer bf16{.format = lowbit::bf16, .mode = rounding::nearest_even};
        std::uint64_t checked = 0;
        for (std::size_t i = 0; i + 32 <= xs.size(); i += 32) {
            const __m512 lo = _mm512_loadu_ps(&xs[i]), hi = _mm512_loadu_ps(&xs[i + 16]);
            alignas(64) std::uint32_t words[16];
            _mm512_store_si512(words, __m512i(_mm512_cvtne2ps_pbh(hi, lo)));
            for (int j = 0; j < 32; ++j) {
                const float x = xs[i + std::size_t(j)];
                if (std::isnan(x) || std::isinf(x)) continue;
                const std::uint32_t word = (words[j / 2] >> (16 * (j % 2))) & 0xFFFFu;
                const float got = std::bit_cast<float>(word << 16);
                // The chain feeds it normal floats (a subnormal one becomes a zero of its sign).
                const float expected = std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : bf16(x);
                if (std::bit_cast<std::uint32_t>(got) != std::bit_cast<std::uint32_t>(expected)) {
                    INFO("x = " << x << " bits " << std::bit_cast<std::uint32_t>(x));
                    CHECK(got == expected);
                }
                ++checked;
            }
        }
        CHECK(checked > 16'000'000);

        // Lanes: round the pair (position p holds p) e times; position q then holds pair_column(e, q).
        __m512 lo = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        __m512 hi = _mm512_add_ps(lo, _mm512_set1_ps(16));
        for (int e = 1; e <= 10; ++e) {
            const __m512i r = __m512i(_mm512_cvtne2ps_pbh(hi, lo));
            lo = _mm512_castsi512_ps(_mm512_slli_epi32(r, 16));
            hi = _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(int(0xFFFF0000u))));
            alignas(64) float held[32];
            _mm512_store_ps(held, lo);
            _mm512_store_ps(held + 16, hi);
            for (int q = 0; q < 32; ++q) {
                INFO("after " << e << " roundings, position " << q);
                CHECK(held[q] == float(lowbit::detail::pair_column(e, q)));
                CHECK(lowbit::detail::pair_position(e, lowbit::detail::pair_column(e, q)) == q);
            }
        }
#endif
    }
}

TEST_CASE("the AVX-512 chain equals the exact path: formats, modes, models, chunking, shapes and data") {
    std::mt19937 gen(41);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    struct setup {
        lowbit::float_format product, accumulator;
        bool product_set;
        lowbit::float_quantizer inputs;
    };
    const setup setups[] = {
        {lowbit::lba_m7e4_prod, lowbit::lba_m7e4_acc, true, e4m3},  // the paper's: products flushed and saturated
        {m7e4_prod_subnormal, lowbit::lba_m7e4_acc, true, e4m3},    // products only saturated
        {lowbit::lba_m7e4_prod, lowbit::lba_m7e4_acc, false, e4m3}, // exact products
        {lowbit::lba_m7e4_prod, m3e4_acc, true, e4m3},              // toward_zero only: 3 mantissa bits
        {lowbit::lba_m7e4_prod, m7e3_acc, true, e4m3},              // a narrow accumulator: saturates often
        {lowbit::lba_m7e4_prod, lowbit::lba_m7e4_acc, true, e3m4},  // the flagship's: products rounded
        {lowbit::lba_m7e4_prod, m3e4_acc, true, e3m4},
        {m7e4_prod_subnormal, lowbit::lba_m7e4_acc, true, e3m4},    // rounded to subnormals: not cut
    };
    for (const auto& [product_format, acc_format, product_set, inputs] : setups)
        for (const rounding mode : {rounding::nearest_even, rounding::toward_zero})
            for (const auto model : {accumulation::sequential, accumulation::fma, accumulation::pairwise})
                for (const int chunk : {0, 1, 5, 8, 16, 17})
                    for (const data kind : {data::wide, data::small, data::tiny, data::cancelling, data::zero_rows}) {
                        const lowbit::float_quantizer prod{.format = product_format, .mode = mode};
                        const lowbit::float_quantizer acc{.format = acc_format, .mode = mode};
                        lowbit::gemm_spec spec{.input_a = inputs, .input_b = inputs, .model = model, .chunk = chunk};
                        if (product_set) spec.product = prod;
                        spec.accumulator = acc;
                        spec.chunk_accumulator = acc;
                        // M odd (a last single row), K past a panel of 16 and not a multiple of the chunk,
                        // N padded to a block of 64 and more than one block; two threads for some
                        const Eigen::Index M = 5, K = chunk == 17 ? 75 : chunk == 8 ? 64 : 131, N = chunk == 5 ? 128 : 70;
                        spec.threads = chunk == 16 ? 2 : 1;
                        const Eigen::MatrixXf A = make(M, K, kind, gen), B = make(K, N, kind, gen);
                        INFO(setup_name(spec, product_format, product_set, kind));
                        CHECK(kernel_for(A, B, spec) == expected_kernel(spec, acc_format, product_set, product_format));
                        CHECK(same_bits(exact_gemm(A, B, spec), lowbit::gemm(A, B, spec)));
                    }
}

TEST_CASE("gemm_report says why products rounded toward zero stay off the AVX-512 chain") {
    if (!lowbit::detail::has_scaled_chain) return;
    std::mt19937 gen(43);
    const lowbit::float_quantizer prod{.format = lowbit::lba_m7e4_prod, .mode = rounding::toward_zero};
    const lowbit::float_quantizer acc{.format = lowbit::lba_m7e4_acc, .mode = rounding::toward_zero};
    lowbit::gemm_spec spec{.input_a = e3m4, .input_b = e3m4, .product = prod, .accumulator = acc,
                           .model = accumulation::pairwise, .chunk = 16, .chunk_accumulator = acc};
    const Eigen::MatrixXf A = make(3, 40, data::small, gen), B = make(40, 70, data::small, gen);
    lowbit::gemm_report report;
    Eigen::MatrixXf C(3, 70);
    lowbit::gemm(A, B, C, spec, nullptr, &report);
    CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
    CHECK(report.reason == "scaled_chain_avx512: products rounded toward zero run on sequential and fma chains only");
    spec.product = lowbit::float_quantizer{.format = m7e4_prod_subnormal, .mode = rounding::toward_zero};
    spec.model = accumulation::sequential;
    lowbit::gemm(A, B, C, spec, nullptr, &report);
    CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
    CHECK(report.reason.find("products rounded toward zero to a format with subnormals") != std::string::npos);
}

TEST_CASE("the AVX-512 chain counts the exact path's events, and counting changes no result") {
    // The exact path's events (it runs when per-product records are asked for) are the oracle.
    std::mt19937 gen(47);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    struct setup {
        lowbit::float_format product, accumulator;
        lowbit::float_quantizer inputs;
    };
    const setup formats[] = {{lowbit::lba_m7e4_prod, lowbit::lba_m7e4_acc, e4m3},
                             {m7e4_prod_subnormal, lowbit::lba_m7e4_acc, e4m3},
                             {lowbit::lba_m7e4_prod, m3e4_acc, e4m3},
                             {lowbit::lba_m7e4_prod, m7e3_acc, e4m3},
                             {lowbit::lba_m7e4_prod, lowbit::lba_m7e4_acc, e3m4},  // products rounded
                             {lowbit::lba_m7e4_prod, m7e3_acc, e3m4}};
    lowbit::gemm_stats all;
    for (const auto& [product_format, acc_format, inputs] : formats)
        for (const bool product_set : {true, false})
            for (const rounding mode : {rounding::nearest_even, rounding::toward_zero})
                for (const auto model : {accumulation::sequential, accumulation::fma})
                    for (const int chunk : {0, 1, 5, 16})
                        for (const data kind : {data::wide, data::small, data::tiny, data::cancelling, data::zero_rows}) {
                            const lowbit::float_quantizer prod{.format = product_format, .mode = mode};
                            const lowbit::float_quantizer acc{.format = acc_format, .mode = mode};
                            lowbit::gemm_spec spec{.input_a = inputs, .input_b = inputs, .accumulator = acc,
                                                   .model = model, .chunk = chunk, .chunk_accumulator = acc};
                            if (product_set) spec.product = prod;
                            spec.threads = chunk == 5 ? 2 : 1;
                            const Eigen::Index M = 5, K = chunk == 5 ? 37 : 131, N = chunk == 1 ? 128 : 70;
                            const Eigen::MatrixXf A = make(M, K, kind, gen), B = make(K, N, kind, gen);
                            INFO(setup_name(spec, product_format, product_set, kind));
                            CHECK(kernel_for(A, B, spec, true) ==
                                  expected_kernel(spec, acc_format, product_set, product_format, true));
                            lowbit::gemm_spec recorded = spec;
                            recorded.record_lost = true;
                            lowbit::gemm_stats expected, got;
                            const Eigen::MatrixXf exact = lowbit::gemm(A, B, recorded, &expected);
                            CHECK(same_bits(exact, lowbit::gemm(A, B, spec, &got)));
                            INFO(lowbit_test::stats_difference(expected, got, false));
                            CHECK(lowbit_test::stats_difference(expected, got, false).empty());
                            all += expected;
                        }
    // Every kind of event happened.
    CHECK(all.zero_operand > 0);
    CHECK(all.product_overflows > 0);
    CHECK(all.product_underflows > 0);
    CHECK(all.accumulator_overflows > 0);
    CHECK(all.swamps > 0);
    CHECK(all.inexact_additions > 0);
}

TEST_CASE("the AVX-512 chain gives zeros their signs: flushed sums, cancelling sums, zero products") {
    // Rows of signed zeros, of small values whose products or sums are flushed, and of values that
    // cancel, against columns of either sign: outputs are zeros of both signs, from every rule.
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    // (With M7E4, 2^-8 - 1.125 * 2^-8 = -2^-11 is flushed to -0: the last rounding of the total
    // makes a -0 output; earlier ones are undone by a later +0 + -0 = +0.)
    const float x = 0x1p-4f, y = -1.125f * 0x1p-4f;
    const float rows[][6] = {{-0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f}, {0.0f, -0.0f, 0.0f, -0.0f, 0.0f, -0.0f},
                             {0.5f, -0.5f, 0.25f, -0.25f, 0.0f, -0.0f},  {-0x1p-6f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f},
                             {0x1p-6f, -0x1p-6f, 0.0f, -0.0f, 0.0f, -0.0f}, {-0x1p-8f, 0x1p-9f, -0x1p-9f, 0, 0, 0},
                             {x, 0, 0, 0, y, 0},        {0, 0, 0, 0, x, y},
                             {x, -0.0f, 0, y, -0.0f, -0.0f}, {-x, 0, 0, 0, -y, 0}};
    const float columns[] = {1.0f, -1.0f, 0.0625f, -0.0625f, 0.0f, -0.0f, 0.125f};
    constexpr int row_count = sizeof(rows) / sizeof(rows[0]);
    Eigen::MatrixXf A(row_count, 6), B(6, 7);
    for (int i = 0; i < row_count; ++i)
        for (int k = 0; k < 6; ++k) A(i, k) = rows[i][k];
    for (int k = 0; k < 6; ++k)
        for (int j = 0; j < 7; ++j) B(k, j) = columns[j];
    B(0, 6) = -B(0, 6);
    int negative_zeros = 0, positive_zeros = 0;
    for (const rounding mode : {rounding::nearest_even, rounding::toward_zero})
        for (const int chunk : {0, 1, 2, 4})
            for (const auto model : {accumulation::sequential, accumulation::fma, accumulation::pairwise}) {
                const lowbit::float_quantizer prod{.format = lowbit::lba_m7e4_prod, .mode = mode};
                const lowbit::float_quantizer acc{.format = lowbit::lba_m7e4_acc, .mode = mode};
                const lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .product = prod, .accumulator = acc,
                                             .model = model, .chunk = chunk, .chunk_accumulator = acc};
                INFO(lowbit::to_string(mode) << " chunk " << chunk << " " << lowbit::to_string(model));
                if constexpr (lowbit::detail::has_bf16_rounding) CHECK(kernel_for(A, B, spec) == "scaled");
                else if (!lowbit::detail::has_scaled_chain && lowbit::detail::has_portable_chain &&
                         model != accumulation::pairwise)
                    CHECK(kernel_for(A, B, spec) == "portable");
                const Eigen::MatrixXf expected = exact_gemm(A, B, spec);
                CHECK(same_bits(expected, lowbit::gemm(A, B, spec)));
                for (Eigen::Index i = 0; i < expected.size(); ++i)
                    if (expected.data()[i] == 0) (std::signbit(expected.data()[i]) ? negative_zeros : positive_zeros)++;
            }
    INFO(negative_zeros << " negative and " << positive_zeros << " positive zeros");
    CHECK(negative_zeros >= 10);
    CHECK(positive_zeros >= 10);
}

TEST_CASE("the AVX-512 chain neither depends on nor changes the caller's MXCSR") {
#if defined(__SSE__)
    std::mt19937 gen(43);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    for (const rounding mode : {rounding::nearest_even, rounding::toward_zero}) {
        const lowbit::float_quantizer prod{.format = lowbit::lba_m7e4_prod, .mode = mode};
        const lowbit::float_quantizer acc{.format = lowbit::lba_m7e4_acc, .mode = mode};
        const lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .product = prod, .accumulator = acc,
                                     .chunk = 16, .chunk_accumulator = acc};
        const Eigen::MatrixXf A = make(6, 90, data::wide, gen), B = make(90, 70, data::wide, gen);
        const Eigen::MatrixXf expected = exact_gemm(A, B, spec);
        const unsigned saved = _mm_getcsr();
        // flush-to-zero and denormals-are-zero on; round toward zero; toward plus infinity
        for (const unsigned csr : {0x9FC0u, 0x7F80u, 0x5F80u}) {
            _mm_setcsr(csr);
            const Eigen::MatrixXf got = lowbit::gemm(A, B, spec);
            const unsigned after = _mm_getcsr() & ~0x3Fu;  // (the status flags may change)
            _mm_setcsr(saved);
            INFO(lowbit::to_string(mode) << " MXCSR " << csr);
            CHECK(same_bits(expected, got));
            CHECK(after == (csr & ~0x3Fu));
        }
    }
#else
    SUCCEED("not x86");
#endif
}
