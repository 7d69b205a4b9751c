// bench/bench_support.hpp: timing against a baseline measured in the same run.
//
// Each benchmark times its own iterations (manual time) and reports `x_baseline`: the baseline's
// time per item divided by this benchmark's, so 0.8 means 80% of the baseline's throughput.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <string>

namespace lowbit_bench {

// Seconds per item of each baseline, filled in when the baseline runs (register it first).
inline std::map<std::string, double>& baselines() {
    static std::map<std::string, double> b;
    return b;
}

// Runs body() once per iteration with manual timing; records or compares per-item time, and
// returns it (for a second comparison: compare()).
template <class Body>
double timed(benchmark::State& state, double items_per_iteration, const std::string& baseline,
           bool is_baseline, Body&& body) {
    double total = 0;
    for (auto _ : state) {
        const auto start = std::chrono::steady_clock::now();
        body();
        const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
        state.SetIterationTime(elapsed.count());
        total += elapsed.count();
    }
    const double per_item = total / (double(state.iterations()) * items_per_iteration);
    state.SetItemsProcessed(std::int64_t(double(state.iterations()) * items_per_iteration));
    if (is_baseline) {
        baselines()[baseline] = per_item;
    } else if (auto it = baselines().find(baseline); it != baselines().end()) {
        state.counters["x_" + baseline] = it->second / per_item;
    }
    return per_item;
}

// Records per_item as baseline `name` too, or (is_baseline false) reports x_<name> against it.
inline void compare(benchmark::State& state, double per_item, const std::string& name, bool is_baseline) {
    if (is_baseline) baselines()[name] = per_item;
    else if (auto it = baselines().find(name); it != baselines().end()) state.counters["x_" + name] = it->second / per_item;
}

}  // namespace lowbit_bench
