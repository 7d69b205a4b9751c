// lowbit/datapath/thread_count.hpp: 0 asks for OpenMP's default, a count beyond the processors
// present is capped to them, and the thread index is 0 outside a parallel region.
#include <lowbit/datapath/thread_count.hpp>

#include <catch2/catch.hpp>

#include <omp.h>

TEST_CASE("thread_count: OpenMP's default for 0, the request up to the processors, capped beyond") {
    const int processors = omp_get_num_procs();
    REQUIRE(processors >= 1);
    CHECK(lowbit::detail::thread_count(0) == omp_get_max_threads());
    CHECK(lowbit::detail::thread_count(1) == 1);
    CHECK(lowbit::detail::thread_count(processors) == processors);
    CHECK(lowbit::detail::thread_count(processors + 1) == processors);
    CHECK(lowbit::detail::thread_count(1000) == processors);
    CHECK(lowbit::detail::thread_index() == 0);
    int seen = -1;
#pragma omp parallel num_threads(lowbit::detail::thread_count(2))
    {
#pragma omp master
        seen = lowbit::detail::thread_index();
    }
    CHECK(seen == 0);  // the master thread is thread 0
}
