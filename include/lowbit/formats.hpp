// lowbit/formats.hpp: the number formats: float_format, int_format, lns_format, and their names
// (one module of lowbit/lowbit.hpp).
#pragma once

#include <lowbit/formats/float_format.hpp>
#include <lowbit/formats/int_format.hpp>
#include <lowbit/formats/lns_format.hpp>
