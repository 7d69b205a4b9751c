// bench/eigen_baseline.hpp: Eigen's float GEMM on one thread, the baseline "eigen<n>" that the
// GEMM benchmarks report their x_eigen<n> against (bench_support.hpp).
#pragma once

#include "bench_support.hpp"

#include <Eigen/Core>

#include <random>
#include <string>

namespace lowbit_bench {

// A rows x cols matrix of N(0, 1) floats, fixed by the seed (the GEMM benchmarks' operands).
inline Eigen::MatrixXf normal_matrix(Eigen::Index rows, Eigen::Index cols, unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> dist;
    Eigen::MatrixXf m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(gen);
    return m;
}

// Times C = A B (n x n) with Eigen on one thread and records it as the baseline "eigen<n>".
inline void eigen_gemm_baseline(benchmark::State& state, const Eigen::MatrixXf& A, const Eigen::MatrixXf& B) {
    const auto n = A.rows();
    Eigen::MatrixXf C(n, n);
    Eigen::setNbThreads(1);
    timed(state, double(n * n * n), "eigen" + std::to_string(n), true, [&] {
        C.noalias() = A * B;
        benchmark::DoNotOptimize(C.data());
    });
    state.counters["MACs/s"] = benchmark::Counter(double(n * n * n), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace lowbit_bench
