// lowbit::compiled: lowbit::gemm's kernels (gemm_core.hpp), instantiated once for every user of
// the library (src/compiled/nn.cpp says how the pieces fit).
#include <lowbit/datapath/gemm_core.hpp>

namespace lowbit::detail {

template void quantize_rows_piece<>(const quantizer&, gemm_role, float*, std::size_t, std::size_t, gemm_stats*);
template void multiply_quantized<>(const row_major_view&, const row_major_view&, row_major_view&, const gemm_spec&,
                                   gemm_stats*, gemm_report*);

}  // namespace lowbit::detail
