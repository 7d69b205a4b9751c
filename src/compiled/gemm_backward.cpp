// lowbit::compiled: lowbit::gemm_backward's kernels (gemm_backward_core.hpp), instantiated once
// (src/compiled/nn.cpp says how the pieces fit).
#include <lowbit/datapath/gemm_backward_core.hpp>

namespace lowbit::detail {

template void backward_quantized<>(const row_major_view&, const row_major_view&, strided<const float>,
                                   const gemm_spec&, gradient_mode, const backward_sink&, gemm_report*);

}  // namespace lowbit::detail
