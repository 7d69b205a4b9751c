// lowbit/datapath/tile_pool.hpp: lowbit's own threads for work cut into tiles (the layers' fp32
// products, nn/parallel_product.hpp; lowbit::gemm's input rounding and vectorized chains; im2col,
// pooling and batch norm):
//
//   detail::for_each_tile(tiles, threads, [&](std::int64_t t) { ... tile t ... });
//   detail::for_each_range(n, threads, [&](std::int64_t begin, std::int64_t end) { ... });
//   detail::parallel_for(n, work, min_work, [&](std::int64_t i) { ... });  // OpenMP's default count
//
// Why not an OpenMP parallel loop: at the end of a parallel region every thread of the team must
// arrive, and libgomp's threads spin while they wait. On a machine shared with other work a thread
// that has lost its core holds up the region's end, and a waiting one spins on a core the others
// need: training the flagship's CNN on two threads beside one busy process ran 2.7x slower than
// idle (1.5x with OMP_WAIT_POLICY=passive, which a library cannot set for its users). Here the
// caller and the pool's workers take tiles from a shared counter, the caller waits only for the
// tiles (a worker that wakes up late finds none left and sleeps again), and waiting threads sleep.
//
// One pool per process; its workers start on first use (up to the processors present, less one:
// the caller works too). A call made while the pool is busy (another thread's call, or a tile that
// calls for_each_tile) runs its tiles on the calling thread. Eigen's products inside a tile run on
// that tile's thread alone. An exception from a tile reaches the caller once every other tile has
// run (the first one, when several throw).
#pragma once

#include <lowbit/datapath/thread_count.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace lowbit::detail {

class tile_pool {
public:
    static tile_pool& instance() {
        static tile_pool pool;
        return pool;
    }

    // body(t) for every t in [0, tiles), on the caller and up to threads - 1 workers.
    void run(std::int64_t tiles, int threads, const std::function<void(std::int64_t)>& body) {
        const int helpers = int(std::min<std::int64_t>(std::max(threads, 1), tiles)) - 1;
        bool idle = false;
        if (helpers <= 0 || !busy_.compare_exchange_strong(idle, true)) {
            job_state job(tiles, body);
            single_threaded([&] { job.work(); });
            if (job.error) std::rethrow_exception(job.error);
            return;
        }
        struct release {
            std::atomic<bool>& flag;
            ~release() { flag = false; }
        } on_return{busy_};
        const auto job = std::make_shared<job_state>(tiles, body);
        {
            std::lock_guard lock(mutex_);
            start_workers(helpers);
            current_ = job;
            wanted_ = std::min(helpers, int(workers_.size()));
            ++generation_;
        }
        work_available_.notify_all();
        single_threaded([&] { job->work(); });
        // The last tiles may still run on workers: wait for them, yielding the core at first (they
        // end soon), then asleep.
        const auto ended = [&] { return job->ended.load(std::memory_order_acquire) == job->tiles; };
        yield_until(ended);
        std::unique_lock lock(job->mutex);
        job->finished.wait(lock, ended);
        if (job->error) std::rethrow_exception(job->error);
    }

    ~tile_pool() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        work_available_.notify_all();
        for (std::thread& w : workers_) w.join();
    }

private:
    struct job_state {
        job_state(std::int64_t n, const std::function<void(std::int64_t)>& f) : tiles(n), body(f) {}
        const std::int64_t tiles;
        const std::function<void(std::int64_t)>& body;  // alive until every tile has ended
        std::atomic<std::int64_t> next{0};
        std::atomic<std::int64_t> ended{0};
        std::exception_ptr error;       // the first exception, guarded by mutex
        std::mutex mutex;
        std::condition_variable finished;

        // Takes tiles until none is left; then counts the ones it ran.
        void work() {
            std::int64_t ran = 0;
            std::exception_ptr failed;
            for (std::int64_t t = next++; t < tiles; t = next++, ++ran) {
                try {
                    body(t);
                } catch (...) {
                    if (!failed) failed = std::current_exception();
                }
            }
            if (ran == 0) return;
            std::lock_guard lock(mutex);
            if (failed && !error) error = failed;
            if (ended.fetch_add(ran, std::memory_order_acq_rel) + ran == tiles) finished.notify_all();
        }
    };

    // f() with OpenMP's thread count of this thread set to 1, which is what Eigen reads before it
    // starts threads of its own inside a product (restored afterwards).
    template <class F>
    static void single_threaded(F&& f) {
#if defined(_OPENMP)
        const int before = omp_get_max_threads();
        omp_set_num_threads(1);
        try {
            f();
        } catch (...) {
            omp_set_num_threads(before);
            throw;
        }
        omp_set_num_threads(before);
#else
        f();
#endif
    }

    void start_workers(int helpers) {  // (with mutex_ held)
        const unsigned processors = std::thread::hardware_concurrency();
        const int most = processors == 0 ? helpers : std::min(helpers, int(processors) - 1);
        while (int(workers_.size()) < most)
            workers_.emplace_back([this, index = int(workers_.size())] { worker(index); });
    }

    // Polls `ready` for a while, giving the core to any other runnable thread between polls: a
    // thread that waits this way starts at once on an idle machine, and costs a busy one little
    // (unlike spinning). True when `ready` came true.
    template <class Ready>
    static bool yield_until(Ready&& ready) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(yield_microseconds);
        while (!ready()) {
            if (std::chrono::steady_clock::now() > until) return false;
            std::this_thread::yield();
        }
        return true;
    }
    static constexpr int yield_microseconds = 2000;

    void worker(int index) {
#if defined(_OPENMP)
        omp_set_num_threads(1);  // this thread's own setting: Eigen stays on it
#endif
        std::uint64_t seen = 0;
        for (;;) {
            std::shared_ptr<job_state> job;
            yield_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
            {
                std::unique_lock lock(mutex_);
                work_available_.wait(lock, [&] { return stop_ || generation_ != seen; });
                if (stop_) return;
                seen = generation_;
                if (index >= wanted_) continue;  // this call asked for fewer threads
                job = current_;
            }
            job->work();
        }
    }

    std::atomic<bool> busy_{false};  // a call is in progress
    std::mutex mutex_;  // guards the fields below
    std::condition_variable work_available_;
    std::vector<std::thread> workers_;
    std::shared_ptr<job_state> current_;
    int wanted_ = 0;
    std::atomic<std::uint64_t> generation_{0};  // written with mutex_ held
    bool stop_ = false;
};

// body(t) for t in [0, tiles) on up to `threads` threads (tile_pool). Results must not depend on
// which thread runs a tile: tiles write disjoint outputs.
template <class Body>
void for_each_tile(std::int64_t tiles, int threads, Body&& body) {
    if (tiles <= 0) return;
    tile_pool::instance().run(tiles, threads, [&](std::int64_t t) { body(t); });
}

// body(begin, end) for consecutive ranges that cover [0, n), on the pool: up to four ranges per
// thread rather than one, so that a thread that lost its core to another process leaves its later
// ranges to the others. One range, on the caller, for one thread.
template <class Body>
void for_each_range(std::int64_t n, int threads, Body&& body) {
    const std::int64_t ranges = std::min<std::int64_t>(n, 4 * std::int64_t(std::max(threads, 1)));
    if (ranges <= 0) return;
    if (threads <= 1 || ranges == 1) return body(std::int64_t(0), n);
    for_each_tile(ranges, threads, [&](std::int64_t t) { body(n * t / ranges, n * (t + 1) / ranges); });
}

// body(i) for every i in [0, n), in place of `#pragma omp parallel for` for a loop whose
// iterations write their own outputs: on OpenMP's default thread count where the loop has more
// than `min_work` units of work (`work` in all), on the caller otherwise.
template <class Body>
void parallel_for(std::int64_t n, std::int64_t work, std::int64_t min_work, Body&& body) {
    for_each_range(n, work > min_work ? thread_count(0) : 1, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) body(i);
    });
}

}  // namespace lowbit::detail
