// lowbit/datapath.hpp: the simulated multiply-accumulate datapath: gemm, dot, block_scaled_gemm,
// lns_gemm, conv (one module of lowbit/lowbit.hpp).
#pragma once

#include <lowbit/datapath/block_scaled_gemm.hpp>
#include <lowbit/datapath/conv.hpp>
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/gemm_backward.hpp>
#include <lowbit/datapath/gemm_report.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/datapath/hardware.hpp>
#include <lowbit/datapath/lns_conversion.hpp>
#include <lowbit/datapath/lns_gemm.hpp>
#include <lowbit/datapath/quantizer.hpp>
