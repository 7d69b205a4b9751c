// lowbit/lowbit.hpp: everything lowbit offers, in one include (CTest checks that every header
// under lowbit/ is reached from here). Each module has its own umbrella header too, cheaper to
// compile: lowbit/formats.hpp, rounding.hpp, types.hpp, datapath.hpp, scaling.hpp, analysis.hpp,
// sparse.hpp and nn.hpp.
#pragma once

#include <lowbit/formats.hpp>
#include <lowbit/rounding.hpp>
#include <lowbit/types.hpp>
#include <lowbit/datapath.hpp>
#include <lowbit/scaling.hpp>
#include <lowbit/analysis.hpp>
#include <lowbit/sparse.hpp>
#include <lowbit/nn.hpp>
