// lowbit/datapath/thread_count.hpp: the number of OpenMP threads a spec asks for.
#pragma once

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace lowbit::detail {

// gemm_spec::threads: 0 means OpenMP's default; without OpenMP everything runs on one thread.
inline int thread_count(int requested) {
#if defined(_OPENMP)
    return requested == 0 ? omp_get_max_threads() : requested;
#else
    return (void)requested, 1;
#endif
}

}  // namespace lowbit::detail
