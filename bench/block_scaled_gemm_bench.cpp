// The block-scaled GEMM (MX, NVFP4, VS-Quant through the datapath) beside Eigen's float GEMM in
// the same binary. x_eigen = Eigen's time / this time (so 1/x_eigen is "times slower than
// Eigen"). The operands are quantized once, outside the timed loop: the GEMM is what is timed.
#include "bench_support.hpp"
#include "eigen_baseline.hpp"

#include <lowbit/datapath/block_scaled_gemm.hpp>

#include <Eigen/Core>

#include <random>
#include <string>

namespace {

// Heavy-tailed (Student t, 3 degrees of freedom) values, as trained weights and activations are.
std::vector<float> heavy_tailed(std::size_t count, unsigned seed) {
    std::mt19937 gen(seed);
    std::student_t_distribution<float> dist(3.0f);
    std::vector<float> x(count);
    for (auto& v : x) v = dist(gen);
    return x;
}

void bm_eigen(benchmark::State& state) {
    const auto n = state.range(0);
    const auto a = heavy_tailed(std::size_t(n * n), 1), b = heavy_tailed(std::size_t(n * n), 2);
    lowbit_bench::eigen_gemm_baseline(state, Eigen::Map<const Eigen::MatrixXf>(a.data(), n, n),
                                      Eigen::Map<const Eigen::MatrixXf>(b.data(), n, n));
}

// The accumulators benchmarked: fp32 (nearest even), the paper's M7E4 (bias 10, no subnormals,
// saturating, toward zero) with chunks of 4 blocks accumulated in fp32, and for VS-Quant a 32-bit
// integer register that wraps.
enum class accumulator_kind { fp32, m7e4_chunked, int32 };

lowbit::gemm_spec spec_for(accumulator_kind kind, int threads) {
    lowbit::gemm_spec spec;
    switch (kind) {
        case accumulator_kind::fp32: spec.accumulator = lowbit::fp32; break;
        case accumulator_kind::m7e4_chunked:
            spec.accumulator = lowbit::float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = lowbit::rounding::toward_zero};
            spec.chunk = 4;
            spec.chunk_accumulator = lowbit::fp32;
            break;
        case accumulator_kind::int32:
            spec.accumulator = lowbit::int_quantizer{.format = {.bits = 32}, .on_overflow = lowbit::int_overflow::wrap};
            break;
    }
    spec.threads = threads;
    return spec;
}

void bm_block(benchmark::State& state, lowbit::block_format format, accumulator_kind kind, int threads) {
    const auto n = state.range(0);
    const auto a = heavy_tailed(std::size_t(n * n), 1), b = heavy_tailed(std::size_t(n * n), 2);
    const auto A = lowbit::quantize_blocks(a.data(), std::size_t(n), std::size_t(n), format, 1);
    const auto B = lowbit::quantize_blocks(b.data(), std::size_t(n), std::size_t(n), format, 0);
    const auto spec = spec_for(kind, threads);
    lowbit_bench::timed(state, double(n * n * n), "eigen" + std::to_string(n), false, [&] {
        Eigen::MatrixXf C = lowbit::block_scaled_gemm(A, B, spec);
        benchmark::DoNotOptimize(C.data());
    });
    state.counters["MACs/s"] = benchmark::Counter(double(n * n * n), benchmark::Counter::kIsIterationInvariantRate);
}

using kind = accumulator_kind;
BENCHMARK(bm_eigen)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_block, mxfp8_e4m3_fp32, lowbit::mxfp8_e4m3, kind::fp32, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_block, mxfp4_fp32, lowbit::mxfp4, kind::fp32, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_block, nvfp4_fp32, lowbit::nvfp4, kind::fp32, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_block, vsquant_4_4_16_fp32, lowbit::vsquant(4, 4, 16), kind::fp32, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_block, vsquant_8_8_32_fp32, lowbit::vsquant(8, 8, 32), kind::fp32, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_block, vsquant_4_4_16_int32, lowbit::vsquant(4, 4, 16), kind::int32, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_block, mxfp8_e4m3_m7e4_chunk4, lowbit::mxfp8_e4m3, kind::m7e4_chunked, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_block, nvfp4_m7e4_chunk4, lowbit::nvfp4, kind::m7e4_chunked, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_block, mxfp8_e5m2_fp32, lowbit::mxfp8_e5m2, kind::fp32, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_block, mxfp4_fp32_2t, lowbit::mxfp4, kind::fp32, 2)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
