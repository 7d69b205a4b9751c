// Tests of lowbit/datapath/tile_pool.hpp (lowbit's threads for work cut into tiles).
//  * Every tile runs exactly once, for tile counts below, at and above the thread count, and for
//    thread counts beyond the processors (capped).
//  * Work runs on more than one thread when asked and the machine has several processors.
//  * An exception in a tile reaches the caller after every other tile has run; the pool works
//    afterwards.
//  * A tile that calls for_each_tile (nested), and two threads calling at once, complete with every
//    tile run once (the second runs on its own thread).
//  * The caller's OpenMP thread count is unchanged; Eigen-style code inside a tile sees 1.
//  * for_each_range and parallel_for (the loops on the pool) cover every index once, in ranges;
//    parallel_for keeps small loops on the caller.
#include <lowbit/datapath/tile_pool.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

using lowbit::detail::for_each_tile;

namespace {

// Runs tiles [0, n) on `threads` threads; true when each ran exactly once.
bool each_once(std::int64_t n, int threads) {
    std::vector<std::atomic<int>> runs(static_cast<std::size_t>(n));
    for_each_tile(n, threads, [&](std::int64_t t) { ++runs[std::size_t(t)]; });
    for (const auto& r : runs)
        if (r != 1) return false;
    return true;
}

}  // namespace

TEST_CASE("every tile runs exactly once") {
    for (const int threads : {1, 2, 3, 64, 1000})
        for (const std::int64_t n : {1, 2, 3, 7, 64, 1000, 100000}) {
            CAPTURE(threads, n);
            CHECK(each_once(n, threads));
        }
    int calls = 0;
    for_each_tile(0, 2, [&](std::int64_t) { ++calls; });
    for_each_tile(-5, 2, [&](std::int64_t) { ++calls; });
    CHECK(calls == 0);
}

TEST_CASE("tiles run on several threads when asked") {
    if (std::thread::hardware_concurrency() < 2) return;
    std::mutex m;
    std::set<std::thread::id> ids;
    // Tiles long enough that a worker wakes before the caller has taken them all.
    for (int attempt = 0; attempt < 20 && ids.size() < 2; ++attempt)
        for_each_tile(64, 2, [&](std::int64_t) {
            const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(1000);
            while (std::chrono::steady_clock::now() < until) {
            }
            std::lock_guard lock(m);
            ids.insert(std::this_thread::get_id());
        });
    CHECK(ids.size() == 2);
    // One thread asked: only the caller.
    ids.clear();
    for_each_tile(64, 1, [&](std::int64_t) {
        std::lock_guard lock(m);
        ids.insert(std::this_thread::get_id());
    });
    CHECK(ids == std::set<std::thread::id>{std::this_thread::get_id()});
}

TEST_CASE("an exception in a tile reaches the caller after the other tiles ran") {
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH(for_each_tile(100, 2,
                                    [&](std::int64_t t) {
                                        ++ran;
                                        if (t == 37) throw std::runtime_error("tile 37 failed");
                                    }),
                      "tile 37 failed");
    CHECK(ran == 100);
    CHECK(each_once(1000, 2));  // and the pool still works
}

TEST_CASE("nested and concurrent calls complete, each tile once") {
    std::vector<std::atomic<int>> runs(64 * 16);
    for_each_tile(64, 2, [&](std::int64_t outer) {
        for_each_tile(16, 2, [&](std::int64_t inner) { ++runs[std::size_t(outer * 16 + inner)]; });
    });
    for (const auto& r : runs) CHECK(r == 1);

    bool first = false, second = false;
    std::thread other([&] { first = each_once(20000, 2); });
    second = each_once(20000, 2);
    other.join();
    CHECK(first);
    CHECK(second);
}

#if defined(_OPENMP)
TEST_CASE("OpenMP's thread count: unchanged for the caller, 1 inside a tile") {
    const int before = omp_get_max_threads();
    std::atomic<int> largest{0};
    for_each_tile(64, 2, [&](std::int64_t) {
        int seen = omp_get_max_threads(), now = largest;
        while (seen > now && !largest.compare_exchange_weak(now, seen)) {
        }
    });
    CHECK(largest == 1);
    CHECK(omp_get_max_threads() == before);
}
#endif

TEST_CASE("for_each_range: consecutive ranges cover every index once for any thread count") {
    for (const int threads : {0, 1, 2, 3, 1000})
        for (const std::int64_t n : {0, 1, 2, 5, 8, 9, 1000, 100003}) {
            CAPTURE(threads, n);
            std::vector<std::atomic<int>> covered(static_cast<std::size_t>(n));
            std::atomic<int> empty{0}, calls{0};
            lowbit::detail::for_each_range(n, threads, [&](std::int64_t begin, std::int64_t end) {
                ++calls;
                if (begin >= end || begin < 0 || end > n) ++empty;
                for (std::int64_t i = begin; i < end; ++i) ++covered[std::size_t(i)];
            });
            CHECK(empty == 0);
            CHECK(calls <= std::max(1, 4 * std::max(threads, 1)));
            for (const auto& c : covered) REQUIRE(c == 1);
        }
}

TEST_CASE("parallel_for: every index once and on the caller below the work threshold") {
    for (const std::int64_t n : {0, 1, 7, 4096}) {
        std::vector<std::atomic<int>> runs(static_cast<std::size_t>(n));
        lowbit::detail::parallel_for(n, n * 100, 1000, [&](std::int64_t i) { ++runs[std::size_t(i)]; });
        for (const auto& r : runs) REQUIRE(r == 1);
    }
    const auto caller = std::this_thread::get_id();
    std::atomic<int> elsewhere{0};
    lowbit::detail::parallel_for(1000, 10, 1000, [&](std::int64_t) { elsewhere += std::this_thread::get_id() != caller; });
    CHECK(elsewhere == 0);
}
