// lowbit/datapath/thread_count.hpp: the number of OpenMP threads a spec asks for, and which one
// is running.
#pragma once

#include <algorithm>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace lowbit::detail {

// gemm_spec::threads: 0 means OpenMP's default; without OpenMP everything runs on one thread.
// A request beyond the processors OpenMP sees (omp_get_num_procs) is capped to them: more
// threads would only take turns on the same cores (and 1000 would start 1000), and results never
// depend on the count.
inline int thread_count(int requested) {
#if defined(_OPENMP)
    return requested == 0 ? omp_get_max_threads() : std::min(requested, omp_get_num_procs());
#else
    return (void)requested, 1;
#endif
}

// The calling thread's number inside a parallel region (0 outside one, or without OpenMP): the
// slot of its per-thread event counts.
inline int thread_index() {
#if defined(_OPENMP)
    return omp_get_thread_num();
#else
    return 0;
#endif
}

}  // namespace lowbit::detail
