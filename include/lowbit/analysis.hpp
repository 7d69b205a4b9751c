// lowbit/analysis.hpp: analyses: A2Q accumulator widths, the SCNN cycle model (one module of
// lowbit/lowbit.hpp).
#pragma once

#include <lowbit/analysis/a2q.hpp>
#include <lowbit/analysis/scnn_model.hpp>
