// The compiled part of lowbit (CMake target lowbit::compiled): the datapaths' kernels and the
// layers' tiled float products, instantiated once here instead of in every file that multiplies,
// and the bodies of the nn layers' functions. Its users are compiled with LOWBIT_COMPILED_LIB,
// under which the headers leave out the *_core.hpp files that define the kernels (each front-end
// header includes its core at its end otherwise) and declare the nn functions without their bodies
// (lowbit/nn/definitions.hpp), which this file defines, out of line, with LOWBIT_COMPILING_LIB.
// One file, not one per datapath: split five ways it compiled in 304 s of CPU instead of 204 (each
// piece instantiates the shared lane kernels again), which a 2-core CI build pays in full.
#define LOWBIT_COMPILING_LIB
#include <lowbit/nn.hpp>

#include <lowbit/datapath/block_scaled_core.hpp>
#include <lowbit/datapath/gemm_backward_core.hpp>
#include <lowbit/datapath/gemm_core.hpp>
#include <lowbit/datapath/lns_core.hpp>
#include <lowbit/nn/parallel_product_core.hpp>
#include <lowbit/rounding/float_quantizer.hpp>

namespace lowbit {

template void float_quantizer::many<float>(std::span<const float>, std::span<float>, std::uint64_t) const;
template void float_quantizer::many<double>(std::span<const double>, std::span<double>, std::uint64_t) const;

}  // namespace lowbit

namespace lowbit::detail {

template void quantize_rows_piece<>(const quantizer&, gemm_role, float*, std::size_t, std::size_t, gemm_stats*);
template void multiply_quantized<>(const row_major_view&, const row_major_view&, const float*, row_major_view&,
                                   const gemm_spec&, gemm_stats*, gemm_report*);
template void backward_quantized<>(const row_major_view&, const row_major_view&, strided<const float>,
                                   const gemm_spec&, gradient_mode, const backward_sink&, gemm_report*);
template Eigen::MatrixXf block_scaled_multiply<>(const block_scaled_matrix&, const block_scaled_matrix&,
                                                 const gemm_spec&, const quantizer&, gemm_stats*, gemm_report*);
template Eigen::MatrixXf lns_multiply<>(const lns_matrix&, const lns_matrix&, const lns_gemm_spec&,
                                        const lns_product_range&, gemm_stats*, gemm_report*);

}  // namespace lowbit::detail

namespace lowbit::nn::detail {

template void product_in_tiles<>(const product_operand&, const product_operand&, matrix&, bool, int);

}  // namespace lowbit::nn::detail
