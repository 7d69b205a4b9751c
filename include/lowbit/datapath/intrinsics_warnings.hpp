// lowbit/datapath/intrinsics_warnings.hpp: keeps GCC bug 105593 out of users' builds.
//
// g++ 12's AVX-512 intrinsics build "undefined" vectors as `__m512i __Y = __Y;`, and every kernel
// that inlines one (a max, a reduction, a conversion) draws -Wmaybe-uninitialized or
// -Wuninitialized under -Wall: thousands of warnings in a user's file that calls gemm header-only,
// all inside <avx512fintrin.h>. The headers with vector kernels put them between
// LOWBIT_BEGIN_INTRINSICS and LOWBIT_END_INTRINSICS, which silence just those two warnings, just
// there, for GCC (clang's headers do not have the bug). (Macros because only _Pragma can do it.)
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#define LOWBIT_BEGIN_INTRINSICS                                   \
    _Pragma("GCC diagnostic push")                                \
    _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")   \
    _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#define LOWBIT_END_INTRINSICS _Pragma("GCC diagnostic pop")
#else
#define LOWBIT_BEGIN_INTRINSICS
#define LOWBIT_END_INTRINSICS
#endif
