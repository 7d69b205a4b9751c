// lowbit/sparse.hpp: sparse convolution: shapes, planar tiling, zero-run encoding, zero skipping
// (one module of lowbit/lowbit.hpp).
#pragma once

#include <lowbit/sparse/conv_shape.hpp>
#include <lowbit/sparse/planar_tiling.hpp>
#include <lowbit/sparse/zero_run_encoding.hpp>
#include <lowbit/sparse/zero_skipping.hpp>
