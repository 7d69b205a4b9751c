// lowbit::compiled: lowbit::lns_gemm's kernels (lns_core.hpp), instantiated once (src/compiled/nn.cpp
// says how the pieces fit).
#include <lowbit/datapath/lns_core.hpp>

namespace lowbit::detail {

template Eigen::MatrixXf lns_multiply<>(const lns_matrix&, const lns_matrix&, const lns_gemm_spec&,
                                        const lns_product_range&, gemm_stats*, gemm_report*);

}  // namespace lowbit::detail
