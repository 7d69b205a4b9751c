// bench/training_bench.cpp: training throughput of the flagship's CNN (examples/fashion_mnist_cnn.hpp,
// batch 64 as the flagship trains), in images per second, on 1 thread and on every core, on an
// idle machine and beside busy processes that the benchmark itself starts and stops (`yes`
// writing to /dev/null, as a user's other work would).
//
//   fp32:       the training network (batch norm, plain fp32 GEMMs), Adam, in micro-batches of 16
//               (network.hpp)
//   fp32_whole: the same with every batch trained whole (set_micro_batch(0)), idle only: the
//               baseline of the micro-batches
//   m7e4:       the flagship's fine-tuning: batch norm folded, FP8 M4E3 weights and activations,
//               M7E4 products and accumulator in chunks of 16, toward_zero (lowbit::gemm forward,
//               straight-through fp32 backward)
//
// The heap is set as the examples set it (examples::keep_freed_memory: freed temporaries stay
// mapped); with --default_heap, glibc's defaults are kept instead.
//
// x_<name>_1t_idle: this case's images/s over the same network's on one thread, idle (so the
// 2-thread idle row is the speed-up, and the loaded rows what the load costs).
#include "bench_support.hpp"

#include "../examples/accumulator_formats.hpp"
#include "../examples/keep_freed_memory.hpp"
#include "../examples/fashion_mnist_cnn.hpp"

#include <lowbit/nn/batch_norm.hpp>
#include <lowbit/nn/optimizers.hpp>

#include <Eigen/Dense>
#include <benchmark/benchmark.h>

#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <random>
#include <spawn.h>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

extern char** environ;

namespace {

namespace nn = lowbit::nn;

// `count` busy processes (`yes > /dev/null`) for as long as this object lives.
class busy_processes {
public:
    explicit busy_processes(int count) {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        char program[] = "yes";
        char* argv[] = {program, nullptr};
        for (int i = 0; i < count; ++i) {
            pid_t pid = 0;
            if (posix_spawnp(&pid, "yes", &actions, nullptr, argv, environ) != 0)
                throw std::runtime_error("training_bench: cannot start `yes` as a busy process");
            pids_.push_back(pid);
        }
        posix_spawn_file_actions_destroy(&actions);
    }
    ~busy_processes() {
        for (const pid_t pid : pids_) kill(pid, SIGTERM);
        for (const pid_t pid : pids_) waitpid(pid, nullptr, 0);
    }
    busy_processes(const busy_processes&) = delete;
    busy_processes& operator=(const busy_processes&) = delete;

private:
    std::vector<pid_t> pids_;
};

constexpr int batch = 64;

// Random images in [0, 1) and labels: the throughput does not depend on the data.
nn::labeled_images random_batch(std::uint64_t seed) {
    std::mt19937_64 engine(seed);
    nn::labeled_images b;
    b.rows = 28, b.cols = 28;
    b.images.resize(batch, 28 * 28);
    for (Eigen::Index i = 0; i < b.images.size(); ++i) b.images.data()[i] = float(engine() >> 40) * 0x1p-24f;
    for (int i = 0; i < batch; ++i) b.labels.push_back(std::uint8_t(engine() % 10));
    return b;
}

nn::network network_for(const std::string& which, int threads) {
    nn::network net = lowbit_examples::make_cnn(1);
    if (which == "fp32_whole") net.set_micro_batch(0);
    if (which != "m7e4") return net;
    nn::network folded = nn::fold_batch_norm(net);
    lowbit_examples::datapath_settings s;
    s.threads = threads;
    const lowbit_examples::datapath_row m7e4 = lowbit_examples::row_for("m7e4", s);
    folded.set_datapath(lowbit_examples::datapath_for(m7e4.product, m7e4.accumulator, s));
    return folded;
}

void training(benchmark::State& state, const std::string& which, int threads, int busy) {
#if defined(_OPENMP)
    const int cores = omp_get_num_procs();
#else
    const int cores = 1;
#endif
    if (threads == 0) threads = cores;
    if (threads > cores) {
        state.SkipWithError("more threads than cores");
        return;
    }
#if defined(_OPENMP)
    omp_set_num_threads(threads);
#endif
    nn::network net = network_for(which, threads);
    nn::adam opt(net.parameters(), {.learning_rate = 1e-4});
    const nn::labeled_images b = random_batch(7);
    const auto step = [&] {
        net.zero_grad();
        const nn::tensor out = net.forward({b.images, {1, b.rows, b.cols}}, nn::pass::training);
        const nn::loss_and_gradient l = nn::softmax_cross_entropy(out.values, b.labels);
        net.backward({l.gradient, out.shape});
        opt.step();
    };
    step();  // allocations and caches
    busy_processes load(busy);
    const std::string baseline = which + "_1t_idle";
    lowbit_bench::timed(state, batch, baseline, threads == 1 && busy == 0, step);
    state.counters["threads"] = threads;
    state.counters["busy"] = busy;
}

// Inference (the test-set evaluation of the examples): batches of 500, fp32, on every core.
void inference(benchmark::State& state, int threads) {
#if defined(_OPENMP)
    omp_set_num_threads(threads);
#endif
    nn::network net = lowbit_examples::make_cnn(1);
    nn::labeled_images b = random_batch(9);
    nn::labeled_images big;
    big.rows = 28, big.cols = 28;
    big.images.resize(500, 28 * 28);
    for (Eigen::Index i = 0; i < 500; ++i) big.images.row(i) = b.images.row(i % batch);
    const auto step = [&] { benchmark::DoNotOptimize(net.forward({big.images, {1, 28, 28}}, nn::pass::inference)); };
    step();
    lowbit_bench::timed(state, 500, "inference_1t", threads == 1, step);
}

void register_all() {
    for (const int threads : {1, 2})
        benchmark::RegisterBenchmark(("inference/fp32/batch_500/" + std::to_string(threads) + "_threads").c_str(),
                                     [=](benchmark::State& s) { inference(s, threads); })
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond)
            ->MinTime(1.0);
    for (const std::string which : {"fp32", "fp32_whole", "m7e4"})
        for (const int busy : {0, 1, 2}) {
            if (which == "fp32_whole" && busy > 0) continue;
            for (const int threads : {1, 0}) {
                const std::string name = "training/" + which + "/" + (threads == 0 ? "all_cores" : "1_thread") +
                                         "/" + (busy == 0 ? "idle" : "beside_" + std::to_string(busy) + "_busy");
                benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { training(s, which, threads, busy); })
                    ->UseManualTime()
                    ->Unit(benchmark::kMillisecond)
                    ->MinTime(2.0);
            }
        }
}

}  // namespace

int main(int argc, char** argv) {
    bool default_heap = false;
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--default_heap") {
            default_heap = true;
            for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
            --argc;
            break;
        }
    if (!default_heap) examples::keep_freed_memory();
    register_all();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
