// lowbit/scaling.hpp: calibration (OCTAV and the others), clipping gradients, scaled integers and
// block-scaled formats (one module of lowbit/lowbit.hpp).
#pragma once

#include <lowbit/scaling/block_scaling.hpp>
#include <lowbit/scaling/calibration.hpp>
#include <lowbit/scaling/clip_gradients.hpp>
#include <lowbit/scaling/int_scaling.hpp>
