// The compiled part of lowbit (CMake target lowbit::compiled), in one file per piece so that a
// build compiles the pieces side by side (the datapaths' kernels take minutes each). This one:
// the bodies of the nn layers' functions, the layers' tiled float products and the array
// quantizer's loops. Users of lowbit::compiled are compiled with LOWBIT_COMPILED_LIB, under which
// the nn headers declare those functions without their bodies (lowbit/nn/definitions.hpp), which
// this file defines, out of line, with LOWBIT_COMPILING_LIB; the kernels' files are beside it.
#define LOWBIT_COMPILING_LIB
#include <lowbit/nn.hpp>

#include <lowbit/nn/parallel_product_core.hpp>
#include <lowbit/rounding/float_quantizer.hpp>

namespace lowbit {

template void float_quantizer::many<float>(std::span<const float>, std::span<float>, std::uint64_t) const;
template void float_quantizer::many<double>(std::span<const double>, std::span<double>, std::uint64_t) const;

}  // namespace lowbit

namespace lowbit::nn::detail {

template void product_in_tiles<>(const product_operand&, const product_operand&, matrix&, bool, int);

}  // namespace lowbit::nn::detail
