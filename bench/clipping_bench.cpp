// bench/clipping_bench.cpp: what OCTAV costs (papers.md section 3: "about 10x faster than an MSE
// sweep"), on a tensor and in a training step.
//
//   calibration/<rule>: the clipping scale of 1M Student-t (3 degrees of freedom) floats, 4 bits:
//     max (one pass; the baseline), OCTAV (10 Newton-Raphson steps), the 99.99th percentile, and the
//     brute-force MSE sweep (calibrate_mse_sweep with 100 grid points: 300 passes). x_max: max's time
//     over this one's.
//   qat_step/<method>: one training step (forward, backward, Adam) of the Fashion-MNIST CNN at batch
//     128 with every GEMM on clipped operands, 4 bits (conv1 and fc2 at 8), as examples/octav_qat
//     trains: max_ste, octav_static (scales fixed) and octav_dynamic (OCTAV on every tensor in every
//     step), beside fp32 trained with the batch whole (the clipped layers are not batch-separable,
//     so they train whole too). x_fp32_whole: fp32's time over this one's. On 1 thread and on all
//     cores.
#include "bench_support.hpp"

#include "../examples/fashion_mnist_cnn.hpp"
#include "../examples/keep_freed_memory.hpp"
#include "../examples/octav_methods.hpp"

#include <lowbit/nn/clipping_calibration.hpp>
#include <lowbit/nn/optimizers.hpp>
#include <lowbit/scaling/calibration.hpp>

#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

namespace nn = lowbit::nn;

const std::vector<float>& tensor() {
    static const std::vector<float> x = [] {
        std::vector<float> v(std::size_t(1) << 20);
        std::mt19937_64 engine(3);
        std::student_t_distribution<float> t(3);
        for (auto& e : v) e = t(engine);
        return v;
    }();
    return x;
}

void calibration(benchmark::State& state, const std::string& rule) {
    const std::vector<float>& x = tensor();
    double s = 0;
    lowbit_bench::timed(state, double(x.size()), "max", rule == "max", [&] {
        if (rule == "max") s = lowbit::calibrate_max(x);
        else if (rule == "octav") s = lowbit::octav(x, 4, lowbit::signedness::signed_values).scale;
        else if (rule == "percentile") s = lowbit::calibrate_percentile(x, 99.99);
        else s = lowbit::calibrate_mse_sweep(x, 4, lowbit::signedness::signed_values, 100);
        benchmark::DoNotOptimize(s);
    });
    state.counters["scale"] = s;
}

constexpr int batch = 128;

nn::tensor random_images(std::uint64_t seed) {
    std::mt19937_64 engine(seed);
    nn::tensor t{nn::matrix(batch, 28 * 28), {1, 28, 28}};
    for (Eigen::Index i = 0; i < t.values.size(); ++i) t.values.data()[i] = float(engine() >> 40) * 0x1p-24f;
    return t;
}

void qat_step(benchmark::State& state, const std::string& which, int threads) {
#if defined(_OPENMP)
    omp_set_num_threads(threads);
#endif
    nn::network net = lowbit_examples::make_cnn(1);
    const nn::tensor images = random_images(5);
    if (which == "fp32_whole") {
        net.set_micro_batch(0);
    } else {
        const lowbit_examples::method m = lowbit_examples::method_named(which);
        lowbit_examples::quantize(net, m, 4, 99.99);
        if (m.calibrated_once) nn::calibrate_clipping(net, std::vector<nn::tensor>{images});
    }
    std::vector<std::uint8_t> labels(batch);
    for (int i = 0; i < batch; ++i) labels[std::size_t(i)] = std::uint8_t(i % 10);
    nn::adam opt(net.parameters(true), {.learning_rate = 1e-4});
    const auto step = [&] {
        net.zero_grad();
        const nn::tensor y = net.forward(images, nn::pass::training);
        const nn::loss_and_gradient l = nn::softmax_cross_entropy(y.values, labels);
        net.backward({l.gradient, y.shape});
        opt.step();
    };
    step();  // allocations
    const std::string baseline = "fp32_whole_" + std::to_string(threads);
    lowbit_bench::timed(state, batch, baseline, which == "fp32_whole", step);
    state.counters["threads"] = threads;
}

void register_all() {
    for (const std::string rule : {"max", "octav", "percentile", "mse_sweep_100"})
        benchmark::RegisterBenchmark(("calibration/" + rule).c_str(), [=](benchmark::State& s) { calibration(s, rule); })
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
#if defined(_OPENMP)
    const int cores = omp_get_num_procs();
#else
    const int cores = 1;
#endif
    for (const int threads : {1, cores}) {
        for (const std::string which : {"fp32_whole", "max_ste", "octav_static", "octav_dynamic"})
            benchmark::RegisterBenchmark(("qat_step/" + which + "/" + std::to_string(threads) + "_threads").c_str(),
                                         [=](benchmark::State& s) { qat_step(s, which, threads); })
                ->UseManualTime()
                ->Unit(benchmark::kMillisecond)
                ->MinTime(2.0);
        if (cores == 1) break;
    }
}

}  // namespace

int main(int argc, char** argv) {
    examples::keep_freed_memory();
    register_all();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
