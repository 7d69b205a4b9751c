// lowbit/types.hpp: storage types: minifloat<F>, lns<F>, their codes, and Eigen support (one module
// of lowbit/lowbit.hpp).
#pragma once

#include <lowbit/types/encoding.hpp>
#include <lowbit/types/lns.hpp>
#include <lowbit/types/lns_eigen.hpp>
#include <lowbit/types/minifloat.hpp>
#include <lowbit/types/minifloat_eigen.hpp>
