// The LNS GEMM (lowbit::lns_gemm) beside the simulated float GEMM (lowbit::gemm, the paper's FP8
// inputs and M7E4 accumulator) and Eigen's float GEMM, in the same binary, at 256^3.
// x_eigen = Eigen's time / this time; x_float_gemm = lowbit::gemm's time / this time.
//
// Every LNS case starts from float matrices (lns8 with per-tensor scales, nearest_log), as
// lowbit::gemm starts from floats and rounds them to e4m3:
//   per_product  each product converted (exact table, a 16-bit table, or Mitchell) and
//                accumulated in fp32 (or bf16), sequentially, in chunks of 16 (the same chunk
//                accumulator); float products (Mitchell, the 16-bit table) take fp32 lanes
//   bucketed     8 exact buckets, or 48-bit integer buckets that wrap: both take the 64-bit
//                shortcut. (Saturating buckets take the path from the definition, 8 passes of
//                exact_datapath::reduce over K: about 3000x slower, so not measured here.)
#include "bench_support.hpp"
#include "eigen_baseline.hpp"

#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/lns_gemm.hpp>

#include <Eigen/Core>

#include <random>
#include <string>

namespace {

constexpr Eigen::Index n = 256;

using lowbit_bench::normal_matrix;

// Times body() as the baseline `name`, then reports its ratio to each baseline registered before.
template <class Body>
void timed_against_baselines(benchmark::State& state, const std::string& name, Body&& body) {
    lowbit_bench::timed(state, double(n * n * n), name, true, body);
    const double self = lowbit_bench::baselines()[name];
    for (const char* base : {"eigen", "float_gemm"})
        if (auto it = lowbit_bench::baselines().find(base); it != lowbit_bench::baselines().end() && name != base)
            state.counters[std::string("x_") + base] = it->second / self;
    state.counters["MACs/s"] = benchmark::Counter(double(n * n * n), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_eigen(benchmark::State& state) {
    const Eigen::MatrixXf A = normal_matrix(n, n, 1), B = normal_matrix(n, n, 2);
    Eigen::MatrixXf C(n, n);
    Eigen::setNbThreads(1);
    timed_against_baselines(state, "eigen", [&] {
        C.noalias() = A * B;
        benchmark::DoNotOptimize(C.data());
    });
}

void bm_float_gemm(benchmark::State& state) {
    const Eigen::MatrixXf A = normal_matrix(n, n, 1), B = normal_matrix(n, n, 2);
    Eigen::MatrixXf C(n, n);
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    const lowbit::float_quantizer prod{.format = lowbit::lba_m7e4_prod, .mode = lowbit::rounding::toward_zero};
    const lowbit::float_quantizer acc{.format = lowbit::lba_m7e4_acc, .mode = lowbit::rounding::toward_zero};
    const lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .product = prod, .accumulator = acc,
                                 .chunk = 16, .chunk_accumulator = acc};
    timed_against_baselines(state, "float_gemm", [&] {
        lowbit::gemm(A, B, C, spec);
        benchmark::DoNotOptimize(C.data());
    });
}

enum class bucket_kind { exact, int48_wrap };

// table_bits: the table's constants (52: the exact table; <= 23: float products, which take fp32
// lanes); bf16: a bf16 per-product accumulator instead of fp32; frac_bits: the inputs' 8-bit LNS
// base 2^(1/2^frac_bits) (3: lns8; 2: gamma 4, whose products span 2^64, beyond 64-bit buckets).
lowbit::lns_gemm_spec lns_spec(lowbit::lns_conversion method, lowbit::lns_accumulation how, bucket_kind buckets,
                               int threads, int table_bits = 52, bool bf16 = false, int frac_bits = 3) {
    lowbit::lns_gemm_spec spec{.conversion = {.method = method, .table_bits = table_bits}, .accumulation = how};
    spec.input_a.quantizer.format = spec.input_b.quantizer.format = lowbit::lns_format{.log_bits = 7, .frac_bits = frac_bits};
    if (how == lowbit::lns_accumulation::per_product) {
        spec.datapath.accumulator = bf16 ? lowbit::bf16 : lowbit::fp32;
        spec.datapath.chunk = 16;
        spec.datapath.chunk_accumulator = spec.datapath.accumulator;
    } else if (buckets != bucket_kind::exact) {
        spec.datapath.accumulator = lowbit::int_quantizer{
            .format = {.bits = 48},
            .on_overflow = lowbit::int_overflow::wrap};
    }
    spec.datapath.threads = threads;
    return spec;
}

void bm_lns(benchmark::State& state, const char* name, lowbit::lns_conversion method, lowbit::lns_accumulation how, bucket_kind buckets,
            int threads, int table_bits = 52, bool bf16 = false, int frac_bits = 3) {
    const Eigen::MatrixXf A = normal_matrix(n, n, 1), B = normal_matrix(n, n, 2);
    const lowbit::lns_gemm_spec spec = lns_spec(method, how, buckets, threads, table_bits, bf16, frac_bits);
    Eigen::MatrixXf C;
    timed_against_baselines(state, name, [&] {
        C = lowbit::lns_gemm(A, B, spec);
        benchmark::DoNotOptimize(C.data());
    });
}

using lowbit::lns_accumulation;
using lowbit::lns_conversion;
BENCHMARK(bm_eigen)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bm_float_gemm)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lns, per_product_table_fp32acc_1t, "per_product_table_fp32acc_1t", lns_conversion::table, lns_accumulation::per_product, bucket_kind::exact, 1)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lns, per_product_mitchell_fp32acc_1t, "per_product_mitchell_fp32acc_1t", lns_conversion::mitchell, lns_accumulation::per_product, bucket_kind::exact, 1)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lns, per_product_mitchell_bf16acc_1t, "per_product_mitchell_bf16acc_1t", lns_conversion::mitchell, lns_accumulation::per_product, bucket_kind::exact, 1, 52, true)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lns, per_product_table16_fp32acc_1t, "per_product_table16_fp32acc_1t", lns_conversion::table, lns_accumulation::per_product, bucket_kind::exact, 1, 16)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lns, per_product_table16_bf16acc_1t, "per_product_table16_bf16acc_1t", lns_conversion::table, lns_accumulation::per_product, bucket_kind::exact, 1, 16, true)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lns, per_product_table16_fp32acc_2t, "per_product_table16_fp32acc_2t", lns_conversion::table, lns_accumulation::per_product, bucket_kind::exact, 2, 16)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lns, bucketed_table_exact_1t, "bucketed_table_exact_1t", lns_conversion::table, lns_accumulation::bucketed, bucket_kind::exact, 1)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lns, bucketed_mitchell_exact_1t, "bucketed_mitchell_exact_1t", lns_conversion::mitchell, lns_accumulation::bucketed, bucket_kind::exact, 1)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lns, bucketed_table_int48_wrap_1t, "bucketed_table_int48_wrap_1t", lns_conversion::table, lns_accumulation::bucketed, bucket_kind::int48_wrap, 1)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lns, per_product_table_fp32acc_2t, "per_product_table_fp32acc_2t", lns_conversion::table, lns_accumulation::per_product, bucket_kind::exact, 2)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lns, bucketed_table_exact_2t, "bucketed_table_exact_2t", lns_conversion::table, lns_accumulation::bucketed, bucket_kind::exact, 2)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_lns, bucketed_table_exact_gamma4_1t, "bucketed_table_exact_gamma4_1t", lns_conversion::table, lns_accumulation::bucketed, bucket_kind::exact, 1, 52, false, 2)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
