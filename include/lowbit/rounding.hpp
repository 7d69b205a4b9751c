// lowbit/rounding.hpp: correctly rounded quantization in every mode: quantize, float_quantizer,
// int_quantizer, LNS rounding (one module of lowbit/lowbit.hpp).
#pragma once

#include <lowbit/rounding/exact_ops.hpp>
#include <lowbit/rounding/float_quantizer.hpp>
#include <lowbit/rounding/int_quantizer.hpp>
#include <lowbit/rounding/lns_quantize.hpp>
#include <lowbit/rounding/modes.hpp>
#include <lowbit/rounding/quantize.hpp>
#include <lowbit/rounding/random_bits.hpp>
