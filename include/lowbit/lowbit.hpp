// lowbit/lowbit.hpp: everything lowbit offers, in one include.
#pragma once

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/modes.hpp>
#include <lowbit/rounding/quantize.hpp>
#include <lowbit/rounding/random_bits.hpp>
#include <lowbit/rounding/float_quantizer.hpp>
#include <lowbit/rounding/exact_ops.hpp>
#include <lowbit/rounding/int_quantizer.hpp>
#include <lowbit/formats/int_format.hpp>
#include <lowbit/types/encoding.hpp>
#include <lowbit/types/minifloat.hpp>
#include <lowbit/types/minifloat_eigen.hpp>
#include <lowbit/datapath/quantizer.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/scaling/calibration.hpp>
#include <lowbit/scaling/clip_gradients.hpp>
#include <lowbit/analysis/a2q.hpp>
#include <lowbit/scaling/int_scaling.hpp>
#include <lowbit/scaling/block_scaling.hpp>
#include <lowbit/formats/lns_format.hpp>
#include <lowbit/rounding/lns_quantize.hpp>
#include <lowbit/types/lns.hpp>
#include <lowbit/types/lns_eigen.hpp>
#include <lowbit/nn/madam.hpp>
