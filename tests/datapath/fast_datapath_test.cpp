// The vectorized path gives bit-identical results, and counts the same events, as the exact path
// (the reference lane: a call with per-product records, record_lost, runs there) wherever it is
// used, including with the product rounding elided to a range check and the flush-and-saturate
// accumulator.
#include <lowbit/datapath/fast_datapath.hpp>
#include <lowbit/datapath/gemm.hpp>

#include "support/stats_difference.hpp"

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <vector>

namespace {

using lowbit::rounding;

Eigen::MatrixXf scaled_normal(Eigen::Index rows, Eigen::Index cols, std::mt19937& gen, int max_shift) {
    std::normal_distribution<float> normal;
    std::uniform_int_distribution<int> shift(-max_shift, max_shift);
    Eigen::MatrixXf m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = std::ldexp(normal(gen), shift(gen));
    return m;
}

bool same_bits(const Eigen::MatrixXf& a, const Eigen::MatrixXf& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
    for (Eigen::Index i = 0; i < a.size(); ++i) {
        const bool both_nan = std::isnan(a.data()[i]) && std::isnan(b.data()[i]);
        if (!both_nan && std::memcmp(&a.data()[i], &b.data()[i], sizeof(float)) != 0) return false;
    }
    return true;
}

// The exact path's result and events: gemm takes it when per-product records are asked for.
Eigen::MatrixXf exact_gemm(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, lowbit::gemm_spec spec,
                           lowbit::gemm_stats& stats) {
    spec.record_lost = true;
    return lowbit::gemm(A, B, spec, &stats);
}

const rounding deterministic[] = {rounding::nearest_even, rounding::nearest_away, rounding::toward_zero,
                                  rounding::toward_positive, rounding::toward_negative, rounding::odd};

}  // namespace

TEST_CASE("fast path equals the exact path: the paper's M7E4 setup, every mode and chunking") {
    std::mt19937 gen(11);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    for (const rounding mode : deterministic)
        for (const int chunk : {0, 1, 5, 16, 128})
            for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::fma})
                // N = 37: B padded to whole blocks of 64 lanes; N = 128: used as it is, on two threads
                for (const Eigen::Index N : {37, 128}) {
                    const lowbit::float_quantizer prod{.format = lowbit::lba_m7e4_prod, .mode = mode};
                    const lowbit::float_quantizer acc{.format = lowbit::lba_m7e4_acc, .mode = mode};
                    lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .product = prod, .accumulator = acc,
                                           .model = model, .chunk = chunk, .chunk_accumulator = acc};
                    spec.threads = N == 128 ? 2 : 1;
                    const auto A = scaled_normal(7, 131, gen, 6), B = scaled_normal(131, N, gen, 6);
                    lowbit::gemm_stats stats;
                    const Eigen::MatrixXf exact = exact_gemm(A, B, spec, stats);
                    const Eigen::MatrixXf fast = lowbit::gemm(A, B, spec);
                    INFO("mode " << lowbit::to_string(mode) << " chunk " << chunk << " model " << lowbit::to_string(model)
                                 << " N " << N);
                    CHECK(same_bits(exact, fast));
                    // ... and the fast path really was taken for this spec
                    lowbit::detail::row_major_floats a = A, b = B, c(A.rows(), B.cols());
                    lowbit::detail::quantize_input(spec.input_a, lowbit::gemm_role::input_a, a.data(), std::size_t(a.size()));
                    lowbit::detail::quantize_input(spec.input_b, lowbit::gemm_role::input_b, b.data(), std::size_t(b.size()));
                    CHECK(lowbit::detail::fast_gemm(a, b, c, spec));
                    CHECK(stats.swamps > 0);
                }
}

TEST_CASE("fast path equals the exact path: one chunk with an exact chunk accumulator") {
    // total = 0 + the one chunk's result: fp32's addition in lanes (a -0 result becomes +0).
    std::mt19937 gen(23);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    for (const rounding mode : deterministic)
        for (const int chunk : {0, 131, 500})
            for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::pairwise,
                                     lowbit::accumulation::fused})
                for (const auto& acc_format : {lowbit::fp32, lowbit::lba_m7e4_acc, lowbit::bf16}) {
                    const lowbit::float_quantizer acc{.format = acc_format, .mode = mode};
                    lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .accumulator = acc, .model = model,
                                           .chunk = chunk};  // chunk_accumulator unset: exact
                    auto A = scaled_normal(5, 131, gen, 6), B = scaled_normal(131, 70, gen, 6);
                    // row 0: products in pairs p, -p, whose sums cancel to a zero; column 3 all zero
                    for (Eigen::Index k = 0; k + 1 < 131; k += 2) {
                        A(0, k + 1) = -A(0, k);
                        B.row(k + 1) = B.row(k);
                    }
                    A(0, 130) = 0;
                    B.col(3).setZero();
                    lowbit::gemm_stats stats;
                    const Eigen::MatrixXf exact = exact_gemm(A, B, spec, stats);
                    lowbit::gemm_report report;
                    Eigen::MatrixXf fast(5, 70);
                    lowbit::gemm(A, B, fast, spec, nullptr, &report);
                    INFO("mode " << lowbit::to_string(mode) << " chunk " << chunk << " model "
                                 << lowbit::to_string(model) << " accumulator " << lowbit::to_string(acc_format)
                                 << ": " << report.reason);
                    CHECK(same_bits(exact, fast));
                    // (fp32 in lanes is the hardware's addition: nearest_even only)
                    if (acc_format != lowbit::fp32 || mode == rounding::nearest_even)
                        CHECK(report.kernel != lowbit::gemm_kernel::exact);
                }
}

TEST_CASE("fast path equals the exact path: pairwise, fused and aligned models") {
    std::mt19937 gen(13);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    const lowbit::float_format m3e4{.exp_bits = 4, .man_bits = 3, .subnormals = false,
                                    .specials = lowbit::special_values::none};
    for (const rounding mode : deterministic)
        for (const int chunk : {0, 1, 7, 16, 128})
            for (const auto model : {lowbit::accumulation::pairwise, lowbit::accumulation::fused,
                                     lowbit::accumulation::aligned})
                for (const auto& acc_format : {lowbit::lba_m7e4_acc, m3e4})
                    for (const int window : {3, 9, 14})
                        for (const int group : {1, 4, 32})
                            for (const auto cut : {lowbit::alignment_cut::toward_zero, lowbit::alignment_cut::toward_negative}) {
                                if (model != lowbit::accumulation::aligned && (window != 14 || group != 32 ||
                                                                                 cut != lowbit::alignment_cut::toward_zero))
                                    continue;
                                const lowbit::float_quantizer prod{.format = lowbit::lba_m7e4_prod, .mode = mode};
                                const lowbit::float_quantizer acc{.format = acc_format, .mode = mode};
                                lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .product = prod,
                                                       .accumulator = acc, .model = model, .chunk = chunk,
                                                       .chunk_accumulator = lowbit::fp32};
                                spec.window = window;
                                spec.group = group;
                                spec.cut = cut;
                                const auto A = scaled_normal(5, 131, gen, 5), B = scaled_normal(131, 70, gen, 5);
                                lowbit::gemm_stats stats;
                                INFO(lowbit::to_string(model) << " " << lowbit::to_string(mode) << " chunk " << chunk
                                                              << " " << lowbit::to_string(acc_format) << " window " << window
                                                              << " group " << group << " cut " << int(cut));
                                CHECK(same_bits(exact_gemm(A, B, spec, stats), lowbit::gemm(A, B, spec)));
                                lowbit::detail::row_major_floats a = A, b = B, c(A.rows(), B.cols());
                                lowbit::detail::quantize_input(spec.input_a, lowbit::gemm_role::input_a, a.data(), std::size_t(a.size()));
                                lowbit::detail::quantize_input(spec.input_b, lowbit::gemm_role::input_b, b.data(), std::size_t(b.size()));
                                // (M3E4 with M7E4 products needs 27-bit sums: fp32 is not exact there, so
                                // its sums are rounded to odd first, which the aligned adder cannot use.)
                                CHECK(lowbit::detail::fast_gemm(a, b, c, spec) ==
                                      (acc_format == lowbit::lba_m7e4_acc || model != lowbit::accumulation::aligned));
                            }
}

TEST_CASE("fast path equals the exact path: other accumulators and overflow policies") {
    std::mt19937 gen(12);
    const lowbit::float_format m3e4{.exp_bits = 4, .man_bits = 3};
    const lowbit::float_format accumulators[] = {lowbit::bf16, lowbit::fp16, lowbit::lba_m7e4_acc, m3e4,
                                                 lowbit::fp32, lowbit::tf32};
    const lowbit::float_format products[] = {lowbit::fp8_e4m3, lowbit::fp8_e5m2, lowbit::lba_m7e4_prod, lowbit::fp16,
                                             lowbit::bf16};
    for (const auto& acc_format : accumulators)
        for (const auto& prod_format : products)
            for (const auto policy : {lowbit::overflow::infinity, lowbit::overflow::saturate})
                for (const rounding mode : deterministic) {
                    const lowbit::float_quantizer in{.format = lowbit::fp8_e4m3};
                    const lowbit::float_quantizer prod{.format = prod_format, .mode = mode, .on_overflow = policy};
                    const lowbit::float_quantizer acc{.format = acc_format, .mode = mode, .on_overflow = policy};
                    const lowbit::gemm_spec spec{.input_a = in, .input_b = in, .product = prod, .accumulator = acc,
                                                 .chunk = 16, .chunk_accumulator = lowbit::fp32};
                    const auto A = scaled_normal(3, 67, gen, 8), B = scaled_normal(67, 19, gen, 8);
                    lowbit::gemm_stats stats;
                    INFO(lowbit::to_string(acc_format) << " / " << lowbit::to_string(prod_format) << " / "
                                                       << lowbit::to_string(mode) << " / " << lowbit::to_string(policy));
                    CHECK(same_bits(exact_gemm(A, B, spec, stats), lowbit::gemm(A, B, spec)));
                }
}

TEST_CASE("fast path equals the exact path: accumulators wider than fp32's exact sums (round-to-odd sums)") {
    // MxE5 values span more than 24 bits, so fp32 sums are inexact: the fast path rounds them to
    // odd first. Products of large and tiny magnitudes make sums that lose bits in fp32.
    std::mt19937 gen(21);
    const lowbit::float_quantizer in{.format = lowbit::fp8_e4m3};
    for (const int man : {10, 8, 6, 3})
        for (const int bias : {15, 26})
            for (const bool subnormals : {false, true})
                for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::pairwise,
                                         lowbit::accumulation::fused})
                    for (const rounding mode : deterministic) {
                        const lowbit::float_format acc_format{.exp_bits = 5, .man_bits = man, .bias = bias,
                                                              .subnormals = subnormals,
                                                              .specials = lowbit::special_values::none};
                        const lowbit::float_format prod_format{.exp_bits = 5, .man_bits = man, .bias = bias + 2,
                                                               .subnormals = subnormals,
                                                               .specials = lowbit::special_values::none};
                        const lowbit::float_quantizer prod{.format = prod_format, .mode = mode,
                                                           .on_overflow = lowbit::overflow::saturate};
                        const lowbit::float_quantizer acc{.format = acc_format, .mode = mode,
                                                          .on_overflow = lowbit::overflow::saturate};
                        const lowbit::gemm_spec spec{.input_a = in, .input_b = in, .product = prod, .accumulator = acc,
                                                     .model = model, .chunk = 16, .chunk_accumulator = acc};
                        const auto A = scaled_normal(4, 70, gen, 5), B = scaled_normal(70, 67, gen, 5);  // finite in e4m3
                        INFO(lowbit::to_string(acc_format) << " / " << lowbit::to_string(mode) << " / "
                                                           << lowbit::to_string(model));
                        lowbit::gemm_stats stats;
                        CHECK(same_bits(exact_gemm(A, B, spec, stats), lowbit::gemm(A, B, spec)));
                        // and the fast path did take it
                        Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> a = A, b = B, c(4, 67);
                        lowbit::detail::quantize_input(spec.input_a, lowbit::gemm_role::input_a, a.data(), std::size_t(a.size()));
                        lowbit::detail::quantize_input(spec.input_b, lowbit::gemm_role::input_b, b.data(), std::size_t(b.size()));
                        CHECK(lowbit::detail::fast_gemm(a, b, c, spec));
                    }
}

TEST_CASE("fast path counts the same events as the exact path: M7E4 and MxE5 accumulators") {
    // Data scaled by up to 2^6 either way (finite in e4m3): products overflow and underflow, sums
    // swamp, overflow and round. MxE5 accumulators take the round-to-odd sums.
    std::mt19937 gen(31);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    const lowbit::float_format m10e5{.exp_bits = 5, .man_bits = 10, .bias = 26, .subnormals = false,
                                     .specials = lowbit::special_values::none};
    const lowbit::float_format m10e5_prod{.exp_bits = 5, .man_bits = 10, .bias = 28, .subnormals = false,
                                          .specials = lowbit::special_values::none};
    // M7E4 products with bias 9 are not on the grid of e4m3 products (their smallest step is
    // larger): the product rounding runs in full.
    const lowbit::float_format m7e4_prod_bias9{.exp_bits = 4, .man_bits = 7, .bias = 9, .subnormals = false,
                                               .specials = lowbit::special_values::none};
    const std::pair<lowbit::float_format, lowbit::float_format> setups[] = {
        {lowbit::lba_m7e4_prod, lowbit::lba_m7e4_acc}, {m10e5_prod, m10e5}, {m7e4_prod_bias9, lowbit::lba_m7e4_acc}};
    lowbit::gemm_stats all;
    for (const auto& [prod_format, acc_format] : setups)
        for (const rounding mode : deterministic)
            for (const int chunk : {0, 1, 16, 128})
                for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::fma})
                    for (const Eigen::Index N : {37, 128}) {
                        const lowbit::float_quantizer prod{.format = prod_format, .mode = mode,
                                                           .on_overflow = lowbit::overflow::saturate};
                        const lowbit::float_quantizer acc{.format = acc_format, .mode = mode,
                                                          .on_overflow = lowbit::overflow::saturate};
                        lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .product = prod, .accumulator = acc,
                                               .model = model, .chunk = chunk, .chunk_accumulator = acc};
                        spec.threads = N == 128 ? 2 : 1;
                        const auto A = scaled_normal(5, 150, gen, 6), B = scaled_normal(150, N, gen, 6);
                        lowbit::gemm_stats exact_stats, fast_stats;
                        const Eigen::MatrixXf exact = exact_gemm(A, B, spec, exact_stats);
                        const Eigen::MatrixXf fast = lowbit::gemm(A, B, spec, &fast_stats);
                        INFO(lowbit::to_string(acc_format) << " / " << lowbit::to_string(mode) << " chunk " << chunk
                                                           << " " << lowbit::to_string(model) << " N " << N);
                        CHECK(same_bits(exact, fast));
                        CHECK(lowbit_test::stats_difference(exact_stats, fast_stats, false) == "");
                        all += exact_stats;
                        // ... and the vectorized path counted them
                        lowbit::detail::row_major_floats a = A, b = B, c(A.rows(), B.cols());
                        lowbit::detail::quantize_input(spec.input_a, lowbit::gemm_role::input_a, a.data(), std::size_t(a.size()));
                        lowbit::detail::quantize_input(spec.input_b, lowbit::gemm_role::input_b, b.data(), std::size_t(b.size()));
                        lowbit::gemm_stats counted;
                        CHECK(lowbit::detail::fast_gemm(a, b, c, spec, &counted));
                    }
    // every kind of event happened somewhere
    CHECK(all.zero_operand > 0);
    CHECK(all.product_overflows > 0);
    CHECK(all.product_underflows > 0);
    CHECK(all.accumulator_overflows > 0);
    CHECK(all.swamps > 0);
    CHECK(all.inexact_additions > 0);
}

TEST_CASE("scanned grid: the data's own grid, against a value-by-value reading") {
    // floats of every kind: random bits (normal and subnormal), short significands, powers of two,
    // zeros of both signs, the extremes
    std::mt19937 gen(41);
    std::uniform_int_distribution<std::uint32_t> bits;
    std::uniform_int_distribution<int> length(1, 300), kind(0, 3);
    for (int trial = 0; trial < 300; ++trial) {
        std::vector<float> x(std::size_t(length(gen)));
        for (auto& v : x) {
            std::uint32_t b = bits(gen) & 0xFF7FFFFFu;  // (no inf or NaN)
            switch (kind(gen)) {
                case 0: break;
                case 1: b &= 0x807FFFFFu; break;                         // subnormal
                case 2: b &= 0xFFFF0000u; break;                         // short significand
                default: b = trial % 7 == 0 ? 0x80000000u : 0x7F7FFFFFu; // -0 or the largest
            }
            v = std::bit_cast<float>(b);
        }
        int lowest = 1 << 20, widest = 1;
        double largest = 0;
        for (const float v : x) {
            if (v == 0) continue;
            int e = 200;  // the lowest set bit's weight: the largest e with v / 2^e an integer
            while (std::ldexp(double(v), -e) != std::trunc(std::ldexp(double(v), -e))) --e;
            lowest = std::min(lowest, e);
            widest = std::max(widest, std::ilogb(v) - e + 1);
            largest = std::max(largest, std::fabs(double(v)));
        }
        const auto grid = lowbit::detail::scanned_grid(x.data(), Eigen::Index(x.size()));
        REQUIRE(grid);
        if (largest == 0) {
            CHECK(grid->max_magnitude == 0);
            continue;
        }
        CHECK(grid->smallest_step == lowest);
        CHECK(grid->significand_bits == widest);
        CHECK(grid->max_magnitude == largest);
    }
    const float special[] = {1.0f, std::numeric_limits<float>::infinity()};
    CHECK_FALSE(lowbit::detail::scanned_grid(special, 2));
    const float nan[] = {std::numeric_limits<float>::quiet_NaN()};
    CHECK_FALSE(lowbit::detail::scanned_grid(nan, 1));
}

TEST_CASE("fast path: inputs on a grid the spec does not declare take it too") {
    // Data the caller quantized to e4m3 (or to integers) with the spec's inputs unset: the same
    // kernels as with the format declared, and the exact path's bits and events.
    std::mt19937 gen(43);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    for (const rounding mode : {rounding::nearest_even, rounding::toward_zero, rounding::nearest_away})
        for (const bool integers : {false, true}) {
            const lowbit::float_quantizer prod{.format = lowbit::lba_m7e4_prod, .mode = mode,
                                               .on_overflow = lowbit::overflow::saturate};
            const lowbit::float_quantizer acc{.format = lowbit::lba_m7e4_acc, .mode = mode,
                                              .on_overflow = lowbit::overflow::saturate};
            lowbit::gemm_spec declared{.input_a = e4m3, .input_b = e4m3, .product = prod, .accumulator = acc,
                                       .chunk = 16, .chunk_accumulator = acc};
            if (integers) declared.input_a = declared.input_b = lowbit::int_quantizer{.format = {.bits = 4}};
            lowbit::gemm_spec undeclared = declared;
            undeclared.input_a = undeclared.input_b = lowbit::quantizer{};
            Eigen::MatrixXf A = scaled_normal(9, 131, gen, integers ? 2 : 5), B = scaled_normal(131, 70, gen, 2);
            lowbit::detail::row_major_floats a = A, b = B;  // quantized by the caller
            lowbit::detail::quantize_input(declared.input_a, lowbit::gemm_role::input_a, a.data(), std::size_t(a.size()));
            lowbit::detail::quantize_input(declared.input_b, lowbit::gemm_role::input_b, b.data(), std::size_t(b.size()));
            A = a;
            B = b;
            lowbit::gemm_stats exact_stats, stats;
            const Eigen::MatrixXf exact = exact_gemm(A, B, undeclared, exact_stats);
            lowbit::gemm_report with_format, without_format;
            CHECK(same_bits(lowbit::gemm(A, B, declared, nullptr, &with_format), exact));
            CHECK(same_bits(lowbit::gemm(A, B, undeclared, nullptr, &without_format), exact));
            INFO(lowbit::to_string(mode) << (integers ? " integers" : " e4m3") << ": " << without_format.reason);
            CHECK(without_format.kernel != lowbit::gemm_kernel::exact);
            CHECK(without_format.kernel == with_format.kernel);
            CHECK(same_bits(lowbit::gemm(A, B, undeclared, &stats, &without_format), exact));
            // Counting events changes no kernel, but for the portable chain (AVX2 and SSE2
            // builds), which does not count yet: the vectorized chain counts them instead.
            CHECK(without_format.kernel == (with_format.kernel == lowbit::gemm_kernel::scaled_chain_portable
                                                ? lowbit::gemm_kernel::vectorized_chain
                                                : with_format.kernel));
            CHECK(lowbit_test::stats_difference(exact_stats, stats, false) == "");
        }
    // Unquantized N(0,1) data: products of 24-bit significands are not exact in fp32. Lanes add
    // them unrounded as doubles; rounded first, they take the exact path.
    const auto A = scaled_normal(3, 10, gen, 0), B = scaled_normal(10, 3, gen, 0);
    lowbit::gemm_report report;
    lowbit::gemm_stats stats;
    const lowbit::gemm_spec unrounded{.accumulator = lowbit::bf16};
    CHECK(same_bits(lowbit::gemm(A, B, unrounded, nullptr, &report), exact_gemm(A, B, unrounded, stats)));
    CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
    lowbit::gemm(A, B, lowbit::gemm_spec{.product = lowbit::bf16, .accumulator = lowbit::bf16}, nullptr, &report);
    CHECK(report.kernel == lowbit::gemm_kernel::exact);
    CHECK_THAT(report.reason, Catch::Contains("not exact in fp32"));
}

TEST_CASE("fast path equals the exact path: sums beyond fp32's largest value (wide accumulators)") {
    // bf16-range accumulators sum products near fp32's largest value: fp32's addition overflows
    // to infinity where the exact sum is finite, which toward_zero rounds to the largest value.
    std::mt19937 gen(31);
    std::uniform_real_distribution<float> magnitude(1.0e19f, 1.8e19f);
    std::bernoulli_distribution negative(0.3);
    const lowbit::float_format accumulators[] = {lowbit::bf16, {.exp_bits = 8, .man_bits = 3, .bias = 127},
                                                 {.exp_bits = 8, .man_bits = 3, .bias = 127, .subnormals = false}};
    for (const auto& acc_format : accumulators)
        for (const auto policy : {lowbit::overflow::infinity, lowbit::overflow::saturate})
            for (const rounding mode : deterministic) {
                const lowbit::float_quantizer in{.format = lowbit::bf16};
                const lowbit::float_quantizer acc{.format = acc_format, .mode = mode, .on_overflow = policy};
                const lowbit::gemm_spec spec{.input_a = in, .input_b = in, .accumulator = acc, .chunk = 4,
                                             .chunk_accumulator = acc};
                Eigen::MatrixXf A(3, 9), B(9, 70);
                for (Eigen::Index i = 0; i < A.size(); ++i) A.data()[i] = magnitude(gen) * (negative(gen) ? -1.0f : 1.0f);
                for (Eigen::Index i = 0; i < B.size(); ++i) B.data()[i] = magnitude(gen) * (negative(gen) ? -1.0f : 1.0f);
                INFO(lowbit::to_string(acc_format) << " / " << lowbit::to_string(mode) << " / " << lowbit::to_string(policy));
                lowbit::gemm_stats stats;
                lowbit::gemm_report report;
                Eigen::MatrixXf C(3, 70);
                lowbit::gemm(A, B, C, spec, nullptr, &report);
                if (acc_format.subnormals) CHECK(report.kernel != lowbit::gemm_kernel::exact);  // round_shift
                CHECK(same_bits(exact_gemm(A, B, spec, stats), C));
            }
}

TEST_CASE("fast path equals the exact path: accumulators with subnormals that also sum the chunks") {
    // fp16, bf16, e5m2 and an MxE5 with subnormals as accumulator and chunk accumulator: on
    // AVX-512 the chains of shift_rounding.hpp (fp16 in the hardware's modes by its conversion),
    // elsewhere the auto-vectorized chain. Magnitudes spread wide, so that sums lose bits in fp32,
    // reach the subnormals and overflow; ragged k against the chunk.
    std::mt19937 gen(41);
    const lowbit::float_format accumulators[] = {lowbit::fp16, lowbit::bf16, lowbit::fp8_e5m2,
                                                 {.exp_bits = 5, .man_bits = 6, .bias = 20}};
    const lowbit::float_quantizer in{.format = lowbit::fp8_e4m3, .on_overflow = lowbit::overflow::saturate};  // finite
    for (const auto& acc_format : accumulators)
        for (const auto policy : {lowbit::overflow::infinity, lowbit::overflow::saturate})
            for (const rounding mode : deterministic)
                for (const auto& [k, chunk] : {std::pair{1, 16}, {7, 16}, {45, 16}, {64, 16}, {50, 3}, {33, 64}}) {
                    const lowbit::float_quantizer acc{.format = acc_format, .mode = mode, .on_overflow = policy};
                    const lowbit::gemm_spec spec{.input_a = in, .input_b = in, .accumulator = acc, .chunk = chunk,
                                                 .chunk_accumulator = acc};
                    const auto A = scaled_normal(3, k, gen, 7), B = scaled_normal(k, 70, gen, 7);
                    INFO(lowbit::to_string(acc_format) << " / " << lowbit::to_string(mode) << " / "
                                                       << lowbit::to_string(policy) << " / k " << k << " / chunk " << chunk);
                    lowbit::gemm_stats stats;
                    lowbit::gemm_report report;
                    Eigen::MatrixXf C(3, 70);
                    lowbit::gemm(A, B, C, spec, nullptr, &report);
                    INFO(report.reason);
                    CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
                    CHECK(same_bits(exact_gemm(A, B, spec, stats), C));
                }
}

TEST_CASE("fast path equals the exact path: products that overflow to infinity") {
    // (Found by the gemm_diff fuzz target: fp16 products rounded toward -infinity overflow to
    // -inf, which an e4m3 accumulator in round-to-odd rounds to NaN, as every rounding of an
    // infinite value gives the overflow away from zero; the vectorized chain took the infinite sum
    // for the overflow of a finite one and gave 448.)
    std::mt19937 gen(51);
    const lowbit::float_format accumulators[] = {lowbit::fp8_e4m3, lowbit::fp16, lowbit::bf16};
    for (const auto& acc_format : accumulators)
        for (const rounding product_mode : deterministic)
            for (const rounding acc_mode : deterministic)
                for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::pairwise}) {
                    const lowbit::float_quantizer product{.format = lowbit::fp16, .mode = product_mode};
                    const lowbit::float_quantizer acc{.format = acc_format, .mode = acc_mode};
                    const lowbit::gemm_spec spec{.product = product, .accumulator = acc, .model = model, .chunk = 4,
                                                 .chunk_accumulator = acc};
                    const auto A = scaled_normal(3, 9, gen, 12), B = scaled_normal(9, 70, gen, 12);
                    INFO(lowbit::to_string(spec));
                    lowbit::gemm_stats stats;
                    CHECK(same_bits(exact_gemm(A, B, spec, stats), lowbit::gemm(A, B, spec)));
                }
    // A pairwise chunk of one product is that product, unrounded: an infinite one reaches the
    // chunk accumulator as it is. Chunks {1, 1, 1, 1} and {-2^18 -> -inf}: 4, then
    // e4m3(4 + -inf) in round-to-odd, which is NaN (an infinity rounds to overflow_away).
    {
        const lowbit::float_quantizer product{.format = lowbit::fp16, .mode = rounding::toward_negative};
        const lowbit::float_quantizer acc{.format = lowbit::fp8_e4m3, .mode = rounding::odd};
        const lowbit::gemm_spec spec{.product = product, .accumulator = acc, .model = lowbit::accumulation::pairwise,
                                     .chunk = 4, .chunk_accumulator = acc};
        Eigen::MatrixXf A(1, 5), B(5, 64);
        A << 1, 1, 1, 1, -512;
        B.setOnes();
        B.row(4).setConstant(512);
        lowbit::gemm_stats stats;
        CHECK(std::isnan(exact_gemm(A, B, spec, stats)(0, 0)));
        CHECK(same_bits(exact_gemm(A, B, spec, stats), lowbit::gemm(A, B, spec)));
    }
    // ... and a finite one with its own grid: chunks {-1, 0, 0, 0} and {-2^-24} in fp6_e2m3
    // toward -infinity give -1, then e2m3(-1 - 2^-24) = -1.125, where an fp32 sum (a tie, to
    // -1) would lose the product.
    {
        const lowbit::float_quantizer acc{.format = lowbit::fp6_e2m3, .mode = rounding::toward_negative};
        const lowbit::gemm_spec spec{.accumulator = acc, .model = lowbit::accumulation::pairwise, .chunk = 4,
                                     .chunk_accumulator = acc};
        Eigen::MatrixXf A(1, 5), B(5, 64);
        A << -1, 0, 0, 0, -0x1p-12f;
        B.setOnes();
        B.row(4).setConstant(0x1p-12f);
        lowbit::gemm_stats stats;
        CHECK(exact_gemm(A, B, spec, stats)(0, 0) == -1.125f);
        CHECK(same_bits(exact_gemm(A, B, spec, stats), lowbit::gemm(A, B, spec)));
    }
    // Products that round toward zero stay finite: their sums still take the vectorized chain.
    const lowbit::float_quantizer to_zero{.format = lowbit::bf16, .mode = rounding::toward_zero};
    const lowbit::float_quantizer in{.format = lowbit::bf16};
    const lowbit::gemm_spec spec{.input_a = in, .input_b = in, .product = to_zero, .accumulator = to_zero, .chunk = 4,
                                 .chunk_accumulator = to_zero};
    const auto A = scaled_normal(3, 9, gen, 12), B = scaled_normal(9, 70, gen, 12);
    lowbit::gemm_report report;
    Eigen::MatrixXf C(3, 70);
    lowbit::gemm(A, B, C, spec, nullptr, &report);
    INFO(report.reason);
    CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
    lowbit::gemm_stats stats;
    CHECK(same_bits(exact_gemm(A, B, spec, stats), C));
}

TEST_CASE("fast path equals the exact path: products on the format's grid beyond its largest value") {
    // (Found while checking the fix above on a sweep of specs: products that lie on the product
    // format's grid take a range check instead of the rounding, and the check's overflow was read
    // from the float just above the largest value, which the nearest modes round back down to it:
    // a product of 2^18 became 65504 in fp16 instead of infinity, 448 in e4m3 instead of NaN.)
    const lowbit::float_quantizer in{.format = lowbit::bf16};
    const lowbit::float_quantizer fp32{.format = lowbit::fp32};
    Eigen::MatrixXf A(3, 2), B(2, 70);
    std::mt19937 gen(61);
    std::uniform_int_distribution<int> exponent(-4, 10);
    std::bernoulli_distribution negative(0.5);
    for (Eigen::Index i = 0; i < A.size(); ++i) A.data()[i] = std::ldexp(negative(gen) ? -1.0f : 1.0f, exponent(gen));
    for (Eigen::Index i = 0; i < B.size(); ++i) B.data()[i] = std::ldexp(negative(gen) ? -1.0f : 1.0f, exponent(gen));
    for (const auto& format : {lowbit::fp16, lowbit::fp8_e4m3, lowbit::fp8_e5m2})
        for (const auto policy : {lowbit::overflow::infinity, lowbit::overflow::saturate})
            for (const rounding mode : deterministic) {
                const lowbit::float_quantizer product{.format = format, .mode = mode, .on_overflow = policy};
                const lowbit::gemm_spec spec{.input_a = in, .input_b = in, .product = product, .accumulator = fp32,
                                             .chunk_accumulator = fp32};
                INFO(lowbit::to_string(spec));
                lowbit::gemm_report report;
                Eigen::MatrixXf C(3, 70);
                lowbit::gemm(A, B, C, spec, nullptr, &report);
                CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
                lowbit::gemm_stats stats;
                CHECK(same_bits(exact_gemm(A, B, spec, stats), C));
            }
}

TEST_CASE("fast path equals the exact path: an accumulator without normal values") {
    // (Found by the gemm_diff fuzz target: an IEEE e1m2 holds 0, 0.5, 1 and 1.5, all subnormal.
    // The subnormal rounding of round_shift sent a sum of -1.75 up to -2, the smallest normal of
    // formats that have one, which e1m2 does not: it saturates to -1.5.)
    const lowbit::float_quantizer in{.format = lowbit::fp4_e2m1};
    const lowbit::float_format e1m2{.exp_bits = 1, .man_bits = 2};
    const lowbit::float_format e4m2{.exp_bits = 4, .man_bits = 2};
    std::mt19937 gen(71);
    for (const auto policy : {lowbit::overflow::infinity, lowbit::overflow::saturate})
        for (const rounding mode : deterministic) {
            const lowbit::float_quantizer acc{.format = e1m2, .mode = mode, .on_overflow = policy};
            const lowbit::float_quantizer chunk_acc{.format = e4m2, .mode = mode, .on_overflow = policy};
            const lowbit::gemm_spec spec{.input_a = in, .input_b = in, .accumulator = acc, .chunk_accumulator = chunk_acc};
            const auto A = scaled_normal(4, 3, gen, 1), B = scaled_normal(3, 70, gen, 1);
            INFO(lowbit::to_string(spec));
            lowbit::gemm_stats stats;
            CHECK(same_bits(exact_gemm(A, B, spec, stats), lowbit::gemm(A, B, spec)));
        }
}

TEST_CASE("fast path equals the exact path: an all-zero input, unquantized, in every model") {
    // (Found by the gemm_diff fuzz target under UBSan: the data's grid of an all-zero matrix has
    // largest magnitude 0, whose std::ilogb is INT_MIN, and the fused model's check of its chunk
    // width overflowed int. Run under -fsanitize=undefined, as CI's baseline build does, this case
    // fails without the fix.)
    const lowbit::float_quantizer acc{.format = lowbit::fp16};
    std::mt19937 gen(72);
    const Eigen::MatrixXf zeros = Eigen::MatrixXf::Zero(3, 40), B = scaled_normal(40, 20, gen, 1);
    for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::pairwise,
                             lowbit::accumulation::fused, lowbit::accumulation::aligned}) {
        const lowbit::gemm_spec spec{.accumulator = acc, .model = model, .chunk = 16};
        INFO(lowbit::to_string(spec));
        lowbit::gemm_stats stats;
        CHECK(same_bits(exact_gemm(zeros, B, spec, stats), lowbit::gemm(zeros, B, spec)));
        CHECK(same_bits(exact_gemm(B.transpose(), zeros.transpose(), spec, stats),
                        lowbit::gemm(B.transpose(), zeros.transpose(), spec)));
    }
}

namespace {

// gemm_add on the exact path (per-product records force it) and as gemm_add runs it.
Eigen::MatrixXf exact_gemm_add(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, const Eigen::MatrixXf& C,
                               lowbit::gemm_spec spec) {
    spec.record_lost = true;
    lowbit::gemm_stats stats;
    Eigen::MatrixXf D;
    lowbit::gemm_add(A, B, C, D, spec, &stats);
    return D;
}

// An addend matrix with zeros of both signs among normal values of magnitudes 2^-shift .. 2^shift.
Eigen::MatrixXf addends(Eigen::Index rows, Eigen::Index cols, std::mt19937& gen, int max_shift) {
    Eigen::MatrixXf c = scaled_normal(rows, cols, gen, max_shift);
    for (Eigen::Index i = 0; i < c.size(); i += 7) c.data()[i] = i % 2 ? -0.0f : 0.0f;
    return c;
}

// One random trial of a spec: the call without stats, the counted one and the exact path's (a
// call with per-product records), with the addend C when given; the two fast calls' results and
// the counted events are checked bit for bit against the exact path's.
struct trial_result {
    Eigen::MatrixXf exact;
    lowbit::gemm_stats exact_stats;
    bool plain_in_lanes = false, counted_in_lanes = false;
};
trial_result check_against_exact_path(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, const Eigen::MatrixXf* C,
                                      const lowbit::gemm_spec& spec) {
    const auto run = [&](const lowbit::gemm_spec& s, lowbit::gemm_stats* stats, lowbit::gemm_report* report) {
        Eigen::MatrixXf D;
        if (C != nullptr) lowbit::gemm_add(A, B, *C, D, s, stats, report);
        else lowbit::gemm(A, B, D, s, stats, report);
        return D;
    };
    lowbit::gemm_report plain_report, counted_report;
    lowbit::gemm_stats counted_stats;
    trial_result r;
    const Eigen::MatrixXf plain = run(spec, nullptr, &plain_report);
    const Eigen::MatrixXf counted = run(spec, &counted_stats, &counted_report);
    lowbit::gemm_spec recorded = spec;
    recorded.record_lost = true;
    r.exact = run(recorded, &r.exact_stats, nullptr);
    INFO(lowbit::to_string(spec) << ", addend " << (C != nullptr) << ", M " << A.rows() << " K " << A.cols() << " N "
                                 << B.cols() << "; without stats: " << lowbit::to_string(plain_report.kernel) << " "
                                 << plain_report.reason << "; counted: " << lowbit::to_string(counted_report.kernel)
                                 << " " << counted_report.reason);
    CHECK(same_bits(r.exact, plain));
    CHECK(same_bits(r.exact, counted));
    CHECK(lowbit_test::stats_difference(r.exact_stats, counted_stats, false) == "");
    r.plain_in_lanes = plain_report.kernel != lowbit::gemm_kernel::exact;
    r.counted_in_lanes = counted_report.kernel != lowbit::gemm_kernel::exact;
    return r;
}

}  // namespace

TEST_CASE("fast path equals the exact path: an addend (gemm_add) in every model") {
    // C starts the first chunk's chain (sequential, fma, aligned) or the chunk accumulator's total
    // (pairwise, fused): gemm_spec.hpp. Rows of cancelling products make zero sums, to which C's
    // signed zeros add.
    std::mt19937 gen(41);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::fma, lowbit::accumulation::pairwise,
                             lowbit::accumulation::fused, lowbit::accumulation::aligned})
        for (const int chunk : {0, 5, 16})
            for (const auto& acc_format : {lowbit::lba_m7e4_acc, lowbit::bf16, lowbit::fp16, lowbit::fp32})
                for (const bool addend_on_accumulator_grid : {true, false})
                    for (const rounding mode : {rounding::nearest_even, rounding::toward_zero}) {
                        if (acc_format == lowbit::fp32 && mode != rounding::nearest_even) continue;
                        const lowbit::float_quantizer acc{.format = acc_format, .mode = mode};
                        lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .accumulator = acc, .model = model,
                                               .chunk = chunk, .chunk_accumulator = acc};
                        spec.window = 12;
                        spec.group = 4;
                        if (addend_on_accumulator_grid) spec.addend = acc_format;  // else C as given (fp32)
                        auto A = scaled_normal(6, 67, gen, 4), B = scaled_normal(67, 70, gen, 4);
                        for (Eigen::Index k = 0; k + 1 < 67; k += 2) {  // row 0: p, -p pairs
                            A(0, k + 1) = -A(0, k);
                            B.row(k + 1) = B.row(k);
                        }
                        A(0, 66) = 0;
                        const Eigen::MatrixXf C = addends(6, 70, gen, 4);
                        lowbit::gemm_report report;
                        Eigen::MatrixXf fast;
                        lowbit::gemm_add(A, B, C, fast, spec, nullptr, &report);
                        INFO(lowbit::to_string(spec) << ": " << lowbit::to_string(report.kernel) << " " << report.reason);
                        CHECK(same_bits(exact_gemm_add(A, B, C, spec), fast));
                        // Lanes take every one of these but the aligned adder's: an accumulator that
                        // saturates (M7E4), and sums that fit fp32 (C on its grid).
                        const bool aligned = model == lowbit::accumulation::aligned;
                        if (!aligned || (acc_format == lowbit::lba_m7e4_acc && addend_on_accumulator_grid))
                            CHECK(report.kernel != lowbit::gemm_kernel::exact);
                    }
}

TEST_CASE("fast path equals the exact path: fp32 inputs (products of 48 bits) in sequential and fma chains") {
    // Products wider than fp32 are doubles in lanes (fp32's own fma for an fp32 accumulator in
    // nearest_even); magnitudes from 2^-70 to 2^70 make subnormal and overflowing products.
    std::mt19937 gen(43);
    for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::fma})
        for (const int chunk : {0, 16})
            for (const auto& acc_format : {lowbit::fp32, lowbit::bf16, lowbit::fp16, lowbit::tf32, lowbit::lba_m7e4_acc})
                for (const rounding mode : deterministic)
                    for (const auto policy : {lowbit::overflow::infinity, lowbit::overflow::saturate})
                        for (const int shift : {4, 70}) {
                            const bool fp32_nearest = acc_format == lowbit::fp32 && mode == rounding::nearest_even;
                            if (acc_format == lowbit::fp32 && !fp32_nearest && shift == 70) continue;
                            const lowbit::float_quantizer acc{.format = acc_format, .mode = mode, .on_overflow = policy};
                            lowbit::gemm_spec spec{.accumulator = acc, .model = model, .chunk = chunk,
                                                   .chunk_accumulator = acc};
                            const auto A = scaled_normal(5, 75, gen, shift), B = scaled_normal(75, 67, gen, shift);
                            for (const bool with_addend : {false, true}) {
                                const Eigen::MatrixXf C = with_addend ? addends(5, 67, gen, 4) : Eigen::MatrixXf::Zero(5, 67);
                                lowbit::gemm_report report;
                                Eigen::MatrixXf fast;
                                if (with_addend) lowbit::gemm_add(A, B, C, fast, spec, nullptr, &report);
                                else lowbit::gemm(A, B, fast, spec, nullptr, &report);
                                lowbit::gemm_stats stats;
                                const Eigen::MatrixXf exact =
                                    with_addend ? exact_gemm_add(A, B, C, spec) : exact_gemm(A, B, spec, stats);
                                INFO(lowbit::to_string(spec) << " shift " << shift << " addend " << with_addend << ": "
                                                             << lowbit::to_string(report.kernel) << " " << report.reason);
                                CHECK(same_bits(exact, fast));
                                // (fp32 in other modes keeps 24 bits: no round-to-odd sums for it)
                                if (acc_format != lowbit::fp32 || fp32_nearest)
                                    CHECK(report.kernel != lowbit::gemm_kernel::exact);
                            }
                        }
}

TEST_CASE("fast path equals the exact path: fp32's grid without subnormals (AMD CDNA2's accumulator)") {
    // Sums rounded by fp32's addition and then flushed: the format's nearest_even rounding. Inputs
    // near 2^-63 make products and sums around fp32's smallest normal, 2^-126.
    std::mt19937 gen(47);
    lowbit::float_format flushed = lowbit::fp32, bf16_flushed = lowbit::bf16;
    flushed.subnormals = bf16_flushed.subnormals = false;
    // (fused sums of fp32 values need more than double's 53 bits: the exact path's)
    for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::pairwise})
        for (const int chunk : {0, 4})
            for (const int scale : {0, -63}) {
                lowbit::gemm_spec spec{.input_a = bf16_flushed, .input_b = bf16_flushed, .product = flushed,
                                       .accumulator = flushed, .model = model, .chunk = chunk,
                                       .chunk_accumulator = flushed};
                spec.addend = flushed;
                Eigen::MatrixXf A = scaled_normal(4, 37, gen, 3), B = scaled_normal(37, 66, gen, 3);
                A *= std::ldexp(1.0f, scale);
                B *= std::ldexp(1.0f, scale);
                const Eigen::MatrixXf C = addends(4, 66, gen, 3) * std::ldexp(1.0f, 2 * scale);
                lowbit::gemm_report report;
                Eigen::MatrixXf fast;
                lowbit::gemm_add(A, B, C, fast, spec, nullptr, &report);
                INFO(lowbit::to_string(spec) << " scale " << scale << ": " << report.reason);
                CHECK(same_bits(exact_gemm_add(A, B, C, spec), fast));
                CHECK(report.kernel != lowbit::gemm_kernel::exact);
            }
}

TEST_CASE("fast path equals the exact path: products rounded to fp32's grid by fp32's multiplication") {
    // fp32 inputs with products rounded to fp32 (nearest_even, with or without subnormals, either
    // overflow policy): fp32's multiply is that rounding but for the flush and the overflow.
    std::mt19937 gen(53);
    lowbit::float_format flushed = lowbit::fp32;
    flushed.subnormals = false;
    for (const auto& format : {lowbit::fp32, flushed})
        for (const auto policy : {lowbit::overflow::infinity, lowbit::overflow::saturate})
            for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::pairwise})
                for (const int shift : {4, 70}) {
                    const lowbit::float_quantizer prod{.format = format, .on_overflow = policy};
                    lowbit::gemm_spec spec{.product = prod, .accumulator = prod, .model = model, .chunk = 8,
                                           .chunk_accumulator = prod};
                    const auto A = scaled_normal(5, 75, gen, shift), B = scaled_normal(75, 67, gen, shift);
                    lowbit::gemm_report report;
                    lowbit::gemm_stats stats;
                    const Eigen::MatrixXf fast = lowbit::gemm(A, B, spec, nullptr, &report);
                    INFO(lowbit::to_string(spec) << " shift " << shift << ": " << report.reason);
                    CHECK(same_bits(exact_gemm(A, B, spec, stats), fast));
                    CHECK(report.kernel != lowbit::gemm_kernel::exact);
                }
}

TEST_CASE("fast path counts the same events as the exact path: any accumulator, pairwise trees, addends, fp32 inputs") {
    // Random specs on the lanes' counted passes (every accumulator the lanes take, chunk
    // accumulators of their own, sequential, fma and pairwise models, products rounded or not,
    // overflow to infinity or saturation, fp32 inputs as double terms, gemm_add): results and events
    // bit for bit the exact path's (a call with per-product records runs there), and wherever the
    // call without stats runs in lanes, the counted call does too.
    std::mt19937 gen(47);
    const lowbit::float_format m10e5{.exp_bits = 5, .man_bits = 10, .bias = 26, .subnormals = false,
                                     .specials = lowbit::special_values::none};
    const lowbit::float_format fp32_flushing{.exp_bits = 8, .man_bits = 23, .subnormals = false};
    const lowbit::float_format accumulators[] = {lowbit::fp16, lowbit::bf16, lowbit::fp32, fp32_flushing, m10e5,
                                                 lowbit::fp8_e5m2, lowbit::lba_m7e4_acc};
    const lowbit::quantizer inputs[] = {lowbit::fp8_e4m3, lowbit::fp16, lowbit::bf16, lowbit::quantizer{}};
    const lowbit::accumulation models[] = {lowbit::accumulation::sequential, lowbit::accumulation::fma,
                                           lowbit::accumulation::pairwise};
    lowbit::gemm_stats all;
    int in_lanes = 0;
    for (int trial = 0; trial < 400; ++trial) {
        const auto acc_format = accumulators[gen() % 7];
        const rounding mode = deterministic[gen() % 6];
        const auto policy = lowbit::overflow(gen() % 3);
        const lowbit::float_quantizer acc{.format = acc_format, .mode = mode, .on_overflow = policy};
        lowbit::gemm_spec spec{.input_a = inputs[gen() % 4], .input_b = inputs[gen() % 4], .accumulator = acc,
                               .model = models[gen() % 3], .chunk = int(gen() % 5 == 0 ? 0 : 1 + gen() % 20)};
        spec.chunk_accumulator = gen() % 3 == 0 ? lowbit::quantizer(lowbit::float_quantizer{.format = lowbit::fp32})
                                                : lowbit::quantizer(acc);
        if (gen() % 3 == 0)
            spec.product = lowbit::float_quantizer{.format = gen() % 2 ? lowbit::fp32 : lowbit::fp16, .mode = mode,
                                                   .on_overflow = lowbit::overflow(gen() % 3)};
        spec.threads = 1 + int(gen() % 2);
        const int shift = gen() % 4 == 0 ? 12 : 4;
        const Eigen::Index M = 1 + Eigen::Index(gen() % 4), K = 1 + Eigen::Index(gen() % 70), N = 1 + Eigen::Index(gen() % 80);
        Eigen::MatrixXf A = scaled_normal(M, K, gen, shift), B = scaled_normal(K, N, gen, shift);
        for (Eigen::Index i = 0; i < A.size(); i += 5) A.data()[i] = 0;
        if (trial % 8 == 0) A *= 3e3f, B *= 3e3f;  // sums past fp16's range, products past e5m2's
        const bool with_addend = gen() % 3 == 0;
        const Eigen::MatrixXf C = addends(M, N, gen, shift);
        const trial_result r = check_against_exact_path(A, B, with_addend ? &C : nullptr, spec);
        INFO(lowbit::to_string(spec));
        if (r.plain_in_lanes) CHECK(r.counted_in_lanes);
        in_lanes += r.counted_in_lanes;
        all += r.exact_stats;
    }
    CHECK(in_lanes > 150);  // (the others run on the exact path with or without stats)
    CHECK(all.product_overflows > 0);
    CHECK(all.product_underflows > 0);
    CHECK(all.accumulator_overflows > 0);
    CHECK(all.swamps > 0);
    CHECK(all.inexact_additions > 0);
}

TEST_CASE("fast path equals the exact path: exact sums in double lanes (unset accumulator or chunk accumulator)") {
    // An unset accumulator (every sum exact), or an unset chunk accumulator over several chunks
    // (the exact total of rounded chunk results): double lanes where every sum fits double's 53
    // bits. Random specs in every model, with and without an addend and events, rows whose
    // products cancel to zeros, signed zero inputs, and sums past fp16's range (infinite chunk
    // results of both signs: NaN totals); results and events bit for bit the exact path's.
    std::mt19937 gen(53);
    const lowbit::float_format accumulators[] = {lowbit::fp16, lowbit::bf16, lowbit::fp32, lowbit::fp8_e5m2,
                                                 lowbit::lba_m7e4_acc};
    const lowbit::quantizer inputs[] = {lowbit::fp8_e4m3, lowbit::fp8_e5m2, lowbit::fp16, lowbit::bf16,
                                        lowbit::quantizer{}};
    const lowbit::accumulation models[] = {lowbit::accumulation::sequential, lowbit::accumulation::fma,
                                           lowbit::accumulation::pairwise, lowbit::accumulation::fused,
                                           lowbit::accumulation::aligned};
    int in_lanes = 0, exact_accumulators_in_lanes = 0, nan_totals = 0;
    for (int trial = 0; trial < 500; ++trial) {
        const bool exact_accumulator = trial % 3 == 0;
        const rounding mode = deterministic[gen() % 6];
        const lowbit::float_quantizer acc{.format = accumulators[gen() % 5], .mode = mode,
                                          .on_overflow = lowbit::overflow(gen() % 3)};
        lowbit::gemm_spec spec{.input_a = inputs[gen() % 5], .input_b = inputs[gen() % 5],
                               .model = models[gen() % 5], .chunk = int(1 + gen() % 20)};
        if (!exact_accumulator) spec.accumulator = acc;  // the chunk accumulator stays unset ...
        else if (trial % 9 == 0) spec.chunk_accumulator = acc;  // ... or rounds an unset accumulator's chunks
        // (products rounded to a format whose largest value is not on the data's grid: e4m3's 448
        // is a multiple of 2^6 only, and saturating products land there)
        const lowbit::float_format products[] = {lowbit::bf16, lowbit::fp16, lowbit::fp8_e4m3, lowbit::fp8_e5m2};
        if (gen() % 3 == 0)
            spec.product = lowbit::float_quantizer{.format = products[gen() % 4], .mode = mode,
                                                   .on_overflow = gen() % 2 ? lowbit::overflow::saturate
                                                                            : lowbit::overflow::infinity};
        spec.window = 10 + int(gen() % 6);
        spec.group = 1 + int(gen() % 8);
        spec.threads = 1 + int(gen() % 2);
        const int shift = gen() % 4 == 0 ? 12 : 4;
        const Eigen::Index M = 1 + Eigen::Index(gen() % 4), K = 1 + Eigen::Index(gen() % 90), N = 1 + Eigen::Index(gen() % 80);
        Eigen::MatrixXf A = scaled_normal(M, K, gen, shift), B = scaled_normal(K, N, gen, shift);
        for (Eigen::Index i = 0; i < A.size(); i += 5) A.data()[i] = i % 2 ? -0.0f : 0.0f;
        for (Eigen::Index k = 0; k + 1 < K; k += 2) {  // row 0: p, -p pairs (zero sums of either sign)
            A(0, k + 1) = -A(0, k);
            B.row(k + 1) = B.row(k);
        }
        if (trial % 8 == 0) A *= 3e3f, B *= 3e3f;  // chunk sums past fp16's range
        const bool with_addend = gen() % 3 == 0;
        const Eigen::MatrixXf C = addends(M, N, gen, shift);
        const trial_result r = check_against_exact_path(A, B, with_addend ? &C : nullptr, spec);
        INFO(lowbit::to_string(spec));
        const bool lanes = r.plain_in_lanes;
        in_lanes += lanes;
        exact_accumulators_in_lanes += lanes && exact_accumulator;
        nan_totals += int(r.exact.array().isNaN().count() > 0);
        // Small formats' sums fit double: the declared FP8 inputs into an unset accumulator (at
        // most 2^17 * 90 on a grid of 2^-36) always take the lanes, where they are finite (e4m3
        // makes NaN of what passes its range).
        const auto* fa = spec.input_a.as_float();
        const auto* fb = spec.input_b.as_float();
        if (exact_accumulator && spec.chunk_accumulator.is_exact() && fa != nullptr && fb != nullptr &&
            fa->format.exp_bits <= 4 && fb->format.exp_bits <= 4 && spec.product.is_exact() && !with_addend &&
            A.array().abs().maxCoeff() < 464 && B.array().abs().maxCoeff() < 464)
            CHECK(lanes);
    }
    // (the others: unquantized or wide inputs whose sums may pass 53 bits, infinite inputs, and
    // the refusals of the rounding accumulators' own)
    CHECK(in_lanes > 100);
    CHECK(exact_accumulators_in_lanes > 25);
    CHECK(nan_totals > 0);
}

TEST_CASE("fast path: an unset chunk accumulator or accumulator with FP8 inputs takes the lanes") {
    // The spec a user writes first for "sums in chunks of 16" leaves chunk_accumulator unset
    // (exact), and "FP8 inputs alone" leaves the accumulator unset too: both in lanes, in every
    // model, products rounded to bf16 or not, bit for bit the exact path.
    std::mt19937 gen(59);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3}, e5m2{.format = lowbit::fp8_e5m2};
    for (const auto& inputs : {e4m3, e5m2})
        for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::fma,
                                 lowbit::accumulation::pairwise, lowbit::accumulation::fused})
            for (const int chunk : {0, 16, 64})
                for (const std::optional<lowbit::float_format> acc_format :
                     {std::optional<lowbit::float_format>{}, std::optional(lowbit::fp16), std::optional(lowbit::bf16),
                      std::optional(lowbit::fp32), std::optional(lowbit::lba_m7e4_acc)}) {
                    lowbit::gemm_spec spec{.input_a = inputs, .input_b = inputs, .model = model, .chunk = chunk};
                    if (acc_format) spec.accumulator = lowbit::float_quantizer{.format = *acc_format};
                    if (gen() % 2 == 0) spec.product = lowbit::bf16;  // (its grid: the data's products')
                    const auto A = scaled_normal(9, 300, gen, 3), B = scaled_normal(300, 70, gen, 3);
                    lowbit::gemm_report report;
                    Eigen::MatrixXf fast;
                    lowbit::gemm(A, B, fast, spec, nullptr, &report);
                    lowbit::gemm_stats stats;
                    INFO(lowbit::to_string(spec) << ": " << report.reason);
                    CHECK(same_bits(exact_gemm(A, B, spec, stats), fast));
                    CHECK(report.kernel != lowbit::gemm_kernel::exact);
                }
}
