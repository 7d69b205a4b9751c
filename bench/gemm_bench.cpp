// The simulated GEMM beside Eigen's float GEMM in the same binary.
// x_eigen = Eigen's time / this time (so 1/x_eigen is "times slower than Eigen").
#include "bench_support.hpp"
#include "eigen_baseline.hpp"

#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/hardware.hpp>

#include <Eigen/Core>

#include <random>
#include <span>
#include <string>

namespace {

using lowbit_bench::normal_matrix;

lowbit::gemm_spec paper_spec(lowbit::rounding mode, lowbit::accumulation model, int threads) {
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    const lowbit::float_quantizer prod{.format = lowbit::lba_m7e4_prod, .mode = mode};
    const lowbit::float_quantizer acc{.format = lowbit::lba_m7e4_acc, .mode = mode};
    lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .product = prod, .accumulator = acc, .model = model,
                           .chunk = 16, .chunk_accumulator = acc};
    spec.threads = threads;
    return spec;
}

void bm_eigen(benchmark::State& state) {
    const auto n = state.range(0);
    lowbit_bench::eigen_gemm_baseline(state, normal_matrix(n, n, 1), normal_matrix(n, n, 2));
}

// lowbit::gemm of two n x n N(0,1) matrices on `spec`, timed beside Eigen's; events counted into
// *stats when given.
void time_gemm(benchmark::State& state, const lowbit::gemm_spec& spec, lowbit::gemm_stats* stats = nullptr) {
    const auto n = state.range(0);
    const Eigen::MatrixXf A = normal_matrix(n, n, 1), B = normal_matrix(n, n, 2);
    Eigen::MatrixXf C(n, n);
    lowbit_bench::timed(state, double(n * n * n), "eigen" + std::to_string(n), false, [&] {
        lowbit::gemm(A, B, C, spec, stats);
        benchmark::DoNotOptimize(C.data());
    });
    state.counters["MACs/s"] = benchmark::Counter(double(n * n * n), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_lowbit(benchmark::State& state, lowbit::rounding mode, lowbit::accumulation model, int threads) {
    time_gemm(state, paper_spec(mode, model, threads));
}

// The flagship's inputs: FP8 M4E3 (e3m4, specials none) with the exponent bias that
// range_biased_float picks for these N(0,1) matrices (5: largest value 7.75), whose 10-bit
// products M7E4 must round (toward_zero: the AVX-512 chain cuts them; nearest_even: the
// vectorized path); counted or not.
void bm_flagship_inputs(benchmark::State& state, lowbit::rounding mode, bool counted) {
    lowbit::gemm_spec spec = paper_spec(mode, lowbit::accumulation::sequential, 1);
    const lowbit::float_quantizer e3m4{.format = {.exp_bits = 3, .man_bits = 4, .bias = 5,
                                                  .specials = lowbit::special_values::none},
                                       .on_overflow = lowbit::overflow::saturate};
    spec.input_a = spec.input_b = e3m4;
    lowbit::gemm_stats stats;
    time_gemm(state, spec, counted ? &stats : nullptr);
}

// The same with the events counted (gemm_stats): the vectorized path counts them for this setup.
void bm_counted(benchmark::State& state, lowbit::rounding mode) {
    lowbit::gemm_stats stats;
    time_gemm(state, paper_spec(mode, lowbit::accumulation::sequential, 1), &stats);
    state.counters["swamp_rate"] = double(stats.swamps) / double(stats.macs);
}

// Other accumulators (e4m3 inputs, exact products, nearest_even, chunk 16 in the same format):
// IEEE-style formats take the general rounding kernel rather than the flush-and-saturate one.
// With `counted`, the events counted too (the counted passes).
void bm_accumulator(benchmark::State& state, lowbit::float_format accumulator, bool counted = false) {
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    const lowbit::float_quantizer acc{.format = accumulator};
    lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .accumulator = acc, .chunk = 16, .chunk_accumulator = acc};
    spec.threads = 1;
    lowbit::gemm_stats stats;
    time_gemm(state, spec, counted ? &stats : nullptr);
}

// The headline setup on inputs the caller quantized to e4m3 beforehand, the spec's input formats
// unset: the kernels read the data's grid (a scan) instead of the declared one.
void bm_undeclared(benchmark::State& state, lowbit::rounding mode) {
    lowbit::gemm_spec spec = paper_spec(mode, lowbit::accumulation::sequential, 1);
    const auto n = state.range(0);
    Eigen::MatrixXf A = normal_matrix(n, n, 1), B = normal_matrix(n, n, 2);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    e4m3(std::span<float>(A.data(), std::size_t(A.size())));
    e4m3(std::span<float>(B.data(), std::size_t(B.size())));
    spec.input_a = spec.input_b = lowbit::quantizer{};
    Eigen::MatrixXf C(n, n);
    lowbit_bench::timed(state, double(n * n * n), "eigen" + std::to_string(n), false, [&] {
        lowbit::gemm(A, B, C, spec);
        benchmark::DoNotOptimize(C.data());
    });
    state.counters["MACs/s"] = benchmark::Counter(double(n * n * n), benchmark::Counter::kIsIterationInvariantRate);
}

// A real matrix unit's preset (lowbit::hw::preset's text) on N(0,1) matrices: the inputs rounded
// to the unit's format (FP8: N(0,1) fits e4m3 / e5m2 without scaling), one thread.
void bm_preset(benchmark::State& state, const char* name) { time_gemm(state, lowbit::hw::preset(name)); }

// The same, counting events (gemm_stats).
void bm_preset_counted(benchmark::State& state, const char* name) {
    lowbit::gemm_stats stats;
    time_gemm(state, lowbit::hw::preset(name), &stats);
    state.counters["swamp_rate"] = double(stats.swamps) / double(stats.macs);
}

// The same as gemm_add, D = A B + C, each chain starting from C (the units' own operation).
void bm_preset_add(benchmark::State& state, const char* name) {
    const auto n = state.range(0);
    const Eigen::MatrixXf A = normal_matrix(n, n, 1), B = normal_matrix(n, n, 2), C = normal_matrix(n, n, 3);
    Eigen::MatrixXf D(n, n);
    const lowbit::gemm_spec spec = lowbit::hw::preset(name);
    lowbit_bench::timed(state, double(n * n * n), "eigen" + std::to_string(n), false, [&] {
        lowbit::gemm_add(A, B, C, D, spec);
        benchmark::DoNotOptimize(D.data());
    });
    state.counters["MACs/s"] = benchmark::Counter(double(n * n * n), benchmark::Counter::kIsIterationInvariantRate);
}

// int8 inputs (fixed point, 5 fraction bits), a 32-bit integer accumulator (10 fraction bits)
// that wraps or saturates, chunk 16 in the same accumulator: the integer chain.
void bm_integer(benchmark::State& state, lowbit::int_overflow on_overflow, bool counted) {
    const lowbit::int_quantizer int8{.format = {.bits = 8}, .fraction_bits = 5};
    const lowbit::int_quantizer acc{.format = {.bits = 32}, .on_overflow = on_overflow, .fraction_bits = 10};
    lowbit::gemm_spec spec{.input_a = int8, .input_b = int8, .accumulator = acc, .chunk = 16, .chunk_accumulator = acc};
    spec.threads = 1;
    lowbit::gemm_stats stats;
    time_gemm(state, spec, counted ? &stats : nullptr);
}

// A spec in its text form (gemm_spec::parse), one thread: the configurations a user writes
// first, with the quantizers they leave unset (exact) left out.
void bm_spec(benchmark::State& state, const char* text) {
    lowbit::gemm_spec spec = lowbit::gemm_spec::parse(text);
    spec.threads = 1;
    time_gemm(state, spec);
}

using lowbit::accumulation;
using lowbit::rounding;
BENCHMARK(bm_eigen)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lowbit, seq_nearest_even_1t, rounding::nearest_even, accumulation::sequential, 1)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lowbit, seq_toward_zero_flush_1t, rounding::toward_zero, accumulation::sequential, 1)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lowbit, seq_nearest_even_2t, rounding::nearest_even, accumulation::sequential, 2)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lowbit, seq_toward_zero_flush_2t, rounding::toward_zero, accumulation::sequential, 2)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lowbit, fma_toward_zero_1t, rounding::toward_zero, accumulation::fma, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lowbit, pairwise_toward_zero_1t, rounding::toward_zero, accumulation::pairwise, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lowbit, fused_toward_zero_1t, rounding::toward_zero, accumulation::fused, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lowbit, aligned_toward_zero_1t, rounding::toward_zero, accumulation::aligned, 1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_counted, seq_nearest_even_stats_1t, rounding::nearest_even)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_counted, seq_toward_zero_flush_stats_1t, rounding::toward_zero)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_flagship_inputs, e3m4_inputs_toward_zero_1t, rounding::toward_zero, false)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_flagship_inputs, e3m4_inputs_toward_zero_stats_1t, rounding::toward_zero, true)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_flagship_inputs, e3m4_inputs_nearest_even_1t, rounding::nearest_even, false)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_undeclared, seq_nearest_even_undeclared_1t, rounding::nearest_even)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_integer, int8_int32_wrap_1t, lowbit::int_overflow::wrap, false)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_integer, int8_int32_saturate_1t, lowbit::int_overflow::saturate, false)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_integer, int8_int32_wrap_stats_1t, lowbit::int_overflow::wrap, true)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_accumulator, fp16_acc_1t, lowbit::fp16)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_accumulator, fp16_acc_counted_1t, lowbit::fp16, true)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_accumulator, bf16_acc_1t, lowbit::bf16)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_accumulator, m10e5_acc_1t, lowbit::float_format{.exp_bits = 5, .man_bits = 10, .bias = 26, .subnormals = false, .specials = lowbit::special_values::none})->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);

// Exact sums in double lanes: an unset accumulator, an unset chunk accumulator over chunks of 16.
BENCHMARK_CAPTURE(bm_spec, e4m3_exact_sum_1t, "input_a=fp8_e4m3 input_b=fp8_e4m3")->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_spec, m7e4_chunk16_exact_total_1t, "input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod accumulator=lba_m7e4_acc chunk=16")->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_spec, fp16_chunk16_exact_total_1t, "input_a=fp8_e4m3 input_b=fp8_e4m3 accumulator=fp16 chunk=16")->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_spec, bf16_chunk16_exact_total_1t, "input_a=fp8_e4m3 input_b=fp8_e4m3 accumulator=bf16 chunk=16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_spec, fp32_chunk16_exact_total_1t, "input_a=fp8_e4m3 input_b=fp8_e4m3 accumulator=fp32 chunk=16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_CAPTURE(bm_preset, volta_fp16_1t, "volta:fp16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset, ampere_bf16_1t, "ampere:bf16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset, ampere_tf32_1t, "ampere:tf32")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset, hopper_e4m3_1t, "hopper:e4m3")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset, hopper_fp16_fp16_1t, "hopper:fp16:fp16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset, blackwell_e4m3_1t, "blackwell:e4m3")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset, cdna1_fp16_1t, "cdna1:fp16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset, cdna2_bf16_1t, "cdna2:bf16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset, cdna3_bf16_1t, "cdna3:bf16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset, cdna3_fp8_1t, "cdna3:float8_e4m3fnuz")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset, cdna3_fp32_1t, "cdna3:fp32")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset, cdna2_fp16_1t, "cdna2:fp16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset_counted, hopper_e4m3_1t, "hopper:e4m3")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset_counted, ampere_bf16_1t, "ampere:bf16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset_counted, cdna3_bf16_1t, "cdna3:bf16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset_counted, cdna1_fp16_1t, "cdna1:fp16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset_counted, cdna2_bf16_1t, "cdna2:bf16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset_counted, cdna3_fp32_1t, "cdna3:fp32")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset_add, hopper_e4m3_1t, "hopper:e4m3")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset_add, cdna1_fp16_1t, "cdna1:fp16")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_preset_add, cdna3_fp32_1t, "cdna3:fp32")->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
