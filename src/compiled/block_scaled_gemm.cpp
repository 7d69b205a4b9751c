// lowbit::compiled: lowbit::block_scaled_gemm's kernels (block_scaled_core.hpp), instantiated once
// (src/compiled/nn.cpp says how the pieces fit).
#include <lowbit/datapath/block_scaled_core.hpp>

namespace lowbit::detail {

template Eigen::MatrixXf block_scaled_multiply<>(const block_scaled_matrix&, const block_scaled_matrix&,
                                                 const gemm_spec&, const quantizer&, gemm_stats*, gemm_report*);

}  // namespace lowbit::detail
