// Quantizing 16M N(0,1) floats, beside a memcpy of the same arrays (the memory-bound ceiling).
// x_memcpy = memcpy's time / this time: 1.0 means as fast as copying.
#include "bench_support.hpp"

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/float_quantizer.hpp>

#include <cstring>
#include <random>
#include <vector>

namespace {

constexpr std::size_t n = std::size_t(1) << 24;

const std::vector<float>& input() {
    static const std::vector<float> x = [] {
        std::vector<float> v(n);
        std::mt19937 gen(1);
        std::normal_distribution<float> dist;
        for (auto& e : v) e = dist(gen);
        return v;
    }();
    return x;
}

std::vector<float>& output() {
    static std::vector<float> y(n, 1.0f);  // touched once so no page faults are timed
    return y;
}

void bm_memcpy(benchmark::State& state) {
    const auto& x = input();
    auto& y = output();
    lowbit_bench::timed(state, n, "memcpy", true, [&] {
        std::memcpy(y.data(), x.data(), n * sizeof(float));
        benchmark::ClobberMemory();
    });
}

void bm_quantize(benchmark::State& state, lowbit::float_format format, lowbit::rounding mode) {
    const auto& x = input();
    auto& y = output();
    const lowbit::float_quantizer q{.format = format, .mode = mode, .seed = 7};
    lowbit_bench::timed(state, n, "memcpy", false, [&] {
        q(std::span<const float>(x), std::span<float>(y));
        benchmark::ClobberMemory();
    });
}

using lowbit::rounding;
BENCHMARK(bm_memcpy)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_quantize, e4m3_nearest_even, lowbit::fp8_e4m3, rounding::nearest_even)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_quantize, e4m3_toward_zero, lowbit::fp8_e4m3, rounding::toward_zero)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_quantize, e4m3_stochastic, lowbit::fp8_e4m3, rounding::stochastic)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_quantize, bf16_nearest_even, lowbit::bf16, rounding::nearest_even)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_quantize, bf16_toward_zero, lowbit::bf16, rounding::toward_zero)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_quantize, bf16_stochastic, lowbit::bf16, rounding::stochastic)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_quantize, m7e4_nearest_even, lowbit::lba_m7e4_acc, rounding::nearest_even)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_quantize, m7e4_toward_zero, lowbit::lba_m7e4_acc, rounding::toward_zero)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_quantize, m7e4_stochastic, lowbit::lba_m7e4_acc, rounding::stochastic)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
