// The backward pass through the quantized accumulation (gemm_backward, by gradient mode) beside
// the forward GEMM of the same spec and Eigen's float GEMM of the same shape, in the same binary:
// x_forward = the forward's time / this time (0.25: four times the forward's), x_eigen likewise.
// Shapes: n x n x n, and a convolution layer's (64 filters, K = 32 channels x 3 x 3, 8192 columns:
// the flagship CNN's second convolution over a batch of 32 at 16 x 16 positions).
#include "bench_support.hpp"
#include "eigen_baseline.hpp"

#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/gemm_backward.hpp>

#include <Eigen/Core>

#include <string>

namespace {

using lowbit_bench::normal_matrix;

// The paper's (and the flagship's) datapath: e4m3 inputs, M7E4 products and accumulator, chunk 16.
lowbit::gemm_spec paper_spec(lowbit::rounding mode) {
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    const lowbit::float_quantizer prod{.format = lowbit::lba_m7e4_prod, .mode = mode};
    const lowbit::float_quantizer acc{.format = lowbit::lba_m7e4_acc, .mode = mode};
    lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .product = prod, .accumulator = acc, .chunk = 16,
                           .chunk_accumulator = acc};
    spec.threads = 1;
    return spec;
}

struct shape {
    Eigen::Index m, k, n;
    std::string name() const { return std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n); }
};
shape shape_of(const benchmark::State& state) {
    return state.range(0) == 0 ? shape{64, 288, 8192} : shape{state.range(0), state.range(0), state.range(0)};
}
double macs(const shape& s) { return double(s.m * s.k * s.n); }

void bm_eigen(benchmark::State& state) {
    const shape s = shape_of(state);
    const Eigen::MatrixXf A = normal_matrix(s.m, s.k, 1), B = normal_matrix(s.k, s.n, 2);
    Eigen::MatrixXf C(s.m, s.n);
    Eigen::setNbThreads(1);
    lowbit_bench::timed(state, macs(s), "eigen" + s.name(), true, [&] {
        C.noalias() = A * B;
        benchmark::DoNotOptimize(C.data());
    });
}

void bm_forward(benchmark::State& state, lowbit::rounding mode) {
    const shape s = shape_of(state);
    const Eigen::MatrixXf A = normal_matrix(s.m, s.k, 1), B = normal_matrix(s.k, s.n, 2);
    Eigen::MatrixXf C(s.m, s.n);
    const lowbit::gemm_spec spec = paper_spec(mode);
    const double t = lowbit_bench::timed(state, macs(s), "eigen" + s.name(), false, [&] {
        lowbit::gemm(A, B, C, spec);
        benchmark::DoNotOptimize(C.data());
    });
    lowbit_bench::compare(state, t, std::string("forward_") + to_string(mode) + s.name(), true);
    state.counters["MACs/s"] = benchmark::Counter(macs(s), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_backward(benchmark::State& state, lowbit::rounding mode, lowbit::gradient_mode gradient) {
    const shape s = shape_of(state);
    const Eigen::MatrixXf A = normal_matrix(s.m, s.k, 1), B = normal_matrix(s.k, s.n, 2),
                          dC = normal_matrix(s.m, s.n, 3);
    const lowbit::gemm_spec spec = paper_spec(mode);
    lowbit::gemm_report report;
    const double t = lowbit_bench::timed(state, macs(s), "eigen" + s.name(), false, [&] {
        const lowbit::gemm_gradients g = lowbit::gemm_backward(A, B, dC, spec, gradient, &report);
        benchmark::DoNotOptimize(g.a.data());
        benchmark::DoNotOptimize(g.b.data());
    });
    lowbit_bench::compare(state, t, std::string("forward_") + to_string(mode) + s.name(), false);
    state.counters["MACs/s"] = benchmark::Counter(macs(s), benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel(to_string(report.kernel));
}

using lowbit::gradient_mode;
using lowbit::rounding;
// n = 256, 512, and 0 for the convolution's shape.
void shapes(benchmark::internal::Benchmark* b) {
    b->Arg(256)->Arg(512)->Arg(0)->UseManualTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK(bm_eigen)->Apply(shapes);
BENCHMARK_CAPTURE(bm_forward, nearest_even, rounding::nearest_even)->Apply(shapes);
BENCHMARK_CAPTURE(bm_backward, nearest_even_ste, rounding::nearest_even, gradient_mode::ste)->Apply(shapes);
BENCHMARK_CAPTURE(bm_backward, nearest_even_overflow_only, rounding::nearest_even, gradient_mode::overflow_only)->Apply(shapes);
BENCHMARK_CAPTURE(bm_backward, nearest_even_immediate, rounding::nearest_even, gradient_mode::immediate)->Apply(shapes);
BENCHMARK_CAPTURE(bm_backward, nearest_even_recursive, rounding::nearest_even, gradient_mode::recursive)->Apply(shapes);
BENCHMARK_CAPTURE(bm_forward, toward_zero, rounding::toward_zero)->Apply(shapes);
BENCHMARK_CAPTURE(bm_backward, toward_zero_immediate, rounding::toward_zero, gradient_mode::immediate)->Apply(shapes);
BENCHMARK_CAPTURE(bm_backward, toward_zero_recursive, rounding::toward_zero, gradient_mode::recursive)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
