// lowbit/lowbit.hpp: everything lowbit offers, in one include.
#pragma once

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/modes.hpp>
#include <lowbit/rounding/quantize.hpp>
#include <lowbit/rounding/random_bits.hpp>
#include <lowbit/rounding/float_quantizer.hpp>
