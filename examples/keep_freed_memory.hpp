// examples/keep_freed_memory.hpp: the heap setting of the examples and benchmarks that train.
#pragma once

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace examples {

// Keeps freed memory in the process. A training step allocates the same large temporaries in every
// batch (im2col matrices, activations: 1-14 MB each for the flagship's CNN at batch 64). glibc
// maps each block over 128 KB afresh and unmaps it when freed, or gives the top of its heap back
// between batches, so every batch touches its temporaries' pages for the first time again, and a
// page fault is slow on a virtual machine: the flagship's training step took 2.2x its time with
// glibc's defaults (82 against 38 ms on one thread, measured 2026-12-06). Blocks up to 256 MB
// (batch-500 evaluation makes 113 MB ones) now come from the heap, and up to 1 GB of free heap
// stays mapped.
// A process-wide setting, so a program chooses it (lowbit's headers never do); a program of your
// own can call mallopt the same way, or set GLIBC_TUNABLES (README, "Measured").
inline void keep_freed_memory() {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

}  // namespace examples
