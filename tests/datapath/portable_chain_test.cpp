// The portable chain (portable_chain.hpp: sequential and fma chains in AVX2 or SSE2 registers, or
// AVX-512 ones where the hand-written chain does not apply) against the exact path: bit-identical
// results, zeros' signs included, wherever fast_gemm chooses it; the sums that fall just below the
// accumulator's smallest normal, which its flush-to-zero scheme must round up or flush as the
// format does; and the setups it must decline.
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/portable_chain.hpp>
#include <lowbit/datapath/scaled_chain.hpp>

#include "support/chain_data.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using lowbit::accumulation;
using lowbit::rounding;
using lowbit_test::data;
using lowbit_test::exact_gemm;
using lowbit_test::same_bits;
using lowbit_test::make;

lowbit::gemm_kernel kernel_for(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, const lowbit::gemm_spec& spec,
                               std::string* reason = nullptr) {
    lowbit::gemm_report report;
    Eigen::MatrixXf C(A.rows(), B.cols());
    lowbit::gemm(A, B, C, spec, nullptr, &report);
    if (reason != nullptr) *reason = report.reason;
    return report.kernel;
}

// The paper's accumulator (smallest normal 2^-9) and products (2^-11: two binades below), an
// accumulator of 3 mantissa bits (which the AVX-512 chain serves in toward_zero only), a narrow
// one that saturates often, and products flushed at the accumulator's own smallest normal (the
// scheme's case without a rescale).
const lowbit::float_format m3e4_acc{.exp_bits = 4, .man_bits = 3, .bias = 10, .subnormals = false,
                                    .specials = lowbit::special_values::none};
const lowbit::float_format m7e3_acc{.exp_bits = 3, .man_bits = 7, .bias = 3, .subnormals = false,
                                    .specials = lowbit::special_values::none};
const lowbit::float_format m7e4_prod_subnormal{.exp_bits = 4, .man_bits = 7, .bias = 12, .subnormals = true,
                                               .specials = lowbit::special_values::none};

// FP8 E4M3 with a bias of 4 (steps of 2^-6): products on the grid of a product format whose
// smallest normal is the accumulator's 2^-9 (e4m3's, of 2^-18, are not: they are rounded).
const lowbit::float_quantizer e4m3_bias4{.format = {.exp_bits = 4, .man_bits = 3, .bias = 4},
                                         .on_overflow = lowbit::overflow::saturate};

// Which kernel this build runs for these setups without events (every one fits the portable chain):
// the AVX-512 chain where it applies (toward_zero, or nearest_even into 7 mantissa bits, with
// AVX512-BF16; not where products flush at the accumulator's own smallest normal, which it wants
// at least a binade above fp32's), else the portable one.
lowbit::gemm_kernel expected_kernel(rounding mode, const lowbit::float_format& acc, bool same_flush = false) {
    const bool avx512 = lowbit::detail::has_scaled_chain && !same_flush &&
                        (mode == rounding::toward_zero || (lowbit::detail::has_bf16_rounding && acc.man_bits == 7));
    return avx512 ? lowbit::gemm_kernel::scaled_chain_avx512
                  : lowbit::detail::has_portable_chain ? lowbit::gemm_kernel::scaled_chain_portable
                                                       : lowbit::gemm_kernel::vectorized_chain;
}

}  // namespace

TEST_CASE("the portable chain equals the exact path: formats, modes, models, chunking, shapes and data") {
    std::mt19937 gen(61);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    // FP8 M4E3 with the flagship's bias: products of 10 significant bits, truncated (toward_zero)
    // to the product format in the chain
    const lowbit::float_quantizer e3m4{
        .format = {.exp_bits = 3, .man_bits = 4, .bias = 2, .specials = lowbit::special_values::none},
        .on_overflow = lowbit::overflow::saturate};
    struct setup {
        lowbit::float_format product, accumulator;
        bool product_set;
        lowbit::float_quantizer inputs;
        bool toward_zero_only;  // (products rounded: only truncation is a chain's)
    };
    const setup setups[] = {
        {lowbit::lba_m7e4_prod, lowbit::lba_m7e4_acc, true, e4m3, false},  // flushed two binades below
        {lowbit::lba_m7e4_acc, lowbit::lba_m7e4_acc, true, e4m3_bias4, false},  // at the same smallest normal
        {m7e4_prod_subnormal, lowbit::lba_m7e4_acc, true, e4m3, false},    // only saturated
        {lowbit::lba_m7e4_prod, lowbit::lba_m7e4_acc, false, e4m3, false}, // exact products
        {lowbit::lba_m7e4_prod, m3e4_acc, true, e4m3, false},
        {lowbit::lba_m7e4_acc, m3e4_acc, true, e4m3_bias4, false},
        {lowbit::lba_m7e4_prod, m7e3_acc, true, e4m3, false},
        {lowbit::lba_m7e4_prod, lowbit::lba_m7e4_acc, true, e3m4, true},
    };
    int checked = 0;
    for (const auto& [product_format, acc_format, product_set, inputs, toward_zero_only] : setups)
        for (const rounding mode : {rounding::nearest_even, rounding::toward_zero})
            for (const auto model : {accumulation::sequential, accumulation::fma})
                for (const int chunk : {0, 1, 5, 16, 17})
                    for (const data kind : {data::wide, data::small, data::tiny, data::cancelling, data::zero_rows}) {
                        if (toward_zero_only && mode != rounding::toward_zero) continue;
                        const lowbit::float_quantizer prod{.format = product_format, .mode = mode};
                        const lowbit::float_quantizer acc{.format = acc_format, .mode = mode};
                        lowbit::gemm_spec spec{.input_a = inputs, .input_b = inputs, .model = model, .chunk = chunk};
                        if (product_set) spec.product = prod;
                        spec.accumulator = acc;
                        // the chunks' results summed by the accumulator, or (data kinds 1 and 3:
                        // the chunk accumulator unset) exactly, rounded once at the end
                        const bool exact_total = (kind == data::small || kind == data::cancelling) && chunk != 0;
                        if (!exact_total) spec.chunk_accumulator = acc;
                        // K = 1 and K past panels of 16, not a multiple of the chunk (and below
                        // chunk 17); N padded to a block of 64 and beyond one; two threads for some
                        const Eigen::Index M = chunk == 5 ? 1 : 5, K = chunk == 1 ? 1 : chunk == 17 ? 9 : 131,
                                           N = chunk == 5 ? 128 : 70;
                        spec.threads = chunk == 16 ? 2 : 1;
                        const Eigen::MatrixXf A = make(M, K, kind, gen), B = make(K, N, kind, gen);
                        INFO(lowbit::to_string(spec) << " data " << int(kind));
                        std::string reason;
                        // (fma chains leave products unrounded: nothing flushes them)
                        const bool same_flush =
                            product_set && model != accumulation::fma && product_format.bias == acc_format.bias;
                        // (an exact total of several chunks is the portable chain's only; a single
                        // chunk with the chunk accumulator unset is the chunk-same case)
                        CHECK(kernel_for(A, B, spec, &reason) ==
                              (!exact_total || chunk >= K           ? expected_kernel(mode, acc_format, same_flush)
                               : lowbit::detail::has_portable_chain ? lowbit::gemm_kernel::scaled_chain_portable
                                                                    : lowbit::gemm_kernel::vectorized_chain));
                        INFO(reason);
                        CHECK(same_bits(exact_gemm(A, B, spec), lowbit::gemm(A, B, spec)));
                        ++checked;
                    }
    CHECK(checked == 7 * 2 * 2 * 5 * 5 + 2 * 5 * 5);
}

TEST_CASE("the portable chain rounds the sums just below the smallest normal as the format does") {
    // Two products: a first one on the accumulator's grid at or above its smallest normal
    // M = 2^-9, and a second one of the opposite sign on the products' finer grid (both operands
    // in [2^-6, 2^-5): multiples of 2^-18, flushed below 2^-11), so that many sums land in the
    // step below M, [M - q, M) with q = 2^-16: those from M - q/2 round up to M, the others are
    // flushed; with exact products (unset) the same sums arrive unflushed.
    std::vector<float> wide, narrow;  // e4m3 values in [2^-6, 1) and in [2^-6, 2^-5)
    for (int e = -6; e < 0; ++e)
        for (int m = 0; m < 8; ++m) {
            const float x = std::ldexp(1.0f + float(m) / 8, e);
            wide.push_back(x);
            if (e == -6) narrow.push_back(x);
        }
    Eigen::MatrixXf A(Eigen::Index(2 * wide.size() * narrow.size()), 2), B(2, Eigen::Index(2 * 16 * narrow.size()));
    Eigen::Index r = 0;
    for (const float sign : {1.0f, -1.0f})
        for (const float a1 : wide)
            for (const float a2 : narrow) A(r, 0) = sign * a1, A(r, 1) = -sign * a2, ++r;
    Eigen::Index c = 0;
    for (const float sign : {1.0f, -1.0f})
        for (int m = 0; m < 16; ++m)
            for (const float b2 : narrow) B(0, c) = std::ldexp(1.0f + float(m % 8) / 8, -4 - m / 8), B(1, c) = sign * b2, ++c;
    // How many first sums (a1 b1 kept, then a2 b2 added) land in [M - q, M)
    int in_band = 0;
    for (Eigen::Index i = 0; i < A.rows(); ++i)
        for (Eigen::Index j = 0; j < B.cols(); ++j) {
            const double p1 = double(A(i, 0)) * B(0, j), s = std::fabs(p1 + double(A(i, 1)) * B(1, j));
            in_band += std::fabs(p1) >= 0x1p-9 && s >= 0x1p-9 - 0x1p-16 && s < 0x1p-9;
        }
    INFO(in_band << " sums in the band");
    CHECK(in_band > 100);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    for (const rounding mode : {rounding::nearest_even, rounding::toward_zero})
        for (const bool product_set : {true, false})
            for (const int chunk : {0, 1}) {
                const lowbit::float_quantizer prod{.format = lowbit::lba_m7e4_prod, .mode = mode};
                const lowbit::float_quantizer acc{.format = lowbit::lba_m7e4_acc, .mode = mode};
                lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .accumulator = acc, .chunk = chunk,
                                       .chunk_accumulator = acc};
                if (product_set) spec.product = prod;
                INFO(lowbit::to_string(spec));
                CHECK(kernel_for(A, B, spec) == expected_kernel(mode, lowbit::lba_m7e4_acc));
                CHECK(same_bits(exact_gemm(A, B, spec), lowbit::gemm(A, B, spec)));
            }
}

TEST_CASE("the portable chain declines where a sum could fall just below the smallest normal unflushed") {
    // Products flushed at the accumulator's own smallest normal M = 2^-9 (no rescale: the add's
    // flush-to-zero is the sums' flush) but on a finer grid than its step q there: operands of FP8
    // E4M3 with a bias of 5 (steps of 2^-7) make products on steps of 2^-14, against 2^-12 for an
    // accumulator of 3 mantissa bits, so a sum between M - q/2 and M, which nearest_even rounds
    // up to M, would be flushed. The vectorized chain runs instead (and agrees).
    std::mt19937 gen(67);
    const lowbit::float_quantizer inputs{.format = {.exp_bits = 4, .man_bits = 3, .bias = 5},
                                         .on_overflow = lowbit::overflow::saturate};
    const lowbit::float_quantizer prod{.format = lowbit::lba_m7e4_acc};
    const lowbit::float_quantizer acc{.format = m3e4_acc};
    const lowbit::gemm_spec spec{.input_a = inputs, .input_b = inputs, .product = prod, .accumulator = acc,
                                 .chunk = 16, .chunk_accumulator = acc};
    const Eigen::MatrixXf A = make(4, 40, data::small, gen), B = make(40, 70, data::small, gen);
    std::string reason;
    CHECK(kernel_for(A, B, spec, &reason) == lowbit::gemm_kernel::vectorized_chain);
    INFO(reason);
    if (!lowbit::detail::has_scaled_chain && lowbit::detail::has_portable_chain)
        CHECK(reason.find("smallest step") != std::string::npos);
    CHECK(same_bits(exact_gemm(A, B, spec), lowbit::gemm(A, B, spec)));
    // The same in toward_zero, where the add's flush is the format's own: the chain runs.
    lowbit::gemm_spec to_zero = spec;
    to_zero.product = lowbit::float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = rounding::toward_zero};
    to_zero.accumulator = to_zero.chunk_accumulator = lowbit::float_quantizer{.format = m3e4_acc, .mode = rounding::toward_zero};
    CHECK(kernel_for(A, B, to_zero) == expected_kernel(rounding::toward_zero, m3e4_acc, true));
    CHECK(same_bits(exact_gemm(A, B, to_zero), lowbit::gemm(A, B, to_zero)));
}
