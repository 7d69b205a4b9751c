// lowbit/nn/definitions.hpp: where the bodies of the layers' functions are compiled.
//
// Header-only use (the CMake target lowbit::lowbit): every nn header defines its functions inline,
// as any header-only library does. Users of lowbit::compiled (LOWBIT_COMPILED_LIB) see only the
// declarations: the bodies, with the Eigen expressions of every forward and backward pass, are
// compiled once, into the library (src/compiled.cpp, which defines LOWBIT_COMPILING_LIB), instead
// of in each of their files. This is fmt's header-only / compiled split; macros, since no template
// can make a non-template function inline in one build and not in the other.
#pragma once

#if !defined(LOWBIT_COMPILED_LIB)
#define LOWBIT_NN_DEFINE 1
#define LOWBIT_NN_INLINE inline
#elif defined(LOWBIT_COMPILING_LIB)
#define LOWBIT_NN_DEFINE 1
#define LOWBIT_NN_INLINE
#else
#define LOWBIT_NN_DEFINE 0
#define LOWBIT_NN_INLINE
#endif
