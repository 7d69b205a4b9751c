// lowbit/nn/output_quantizer.hpp: the rounding of what an fp32 unit hands on.
//
// Layer norm, softmax and GELU compute in fp32 (an accelerator's vector unit does them beside the
// MAC array, in its own precision) and round their outputs to the format of the buffers that feed
// the next GEMM: this quantizer, unset (fp32 out) by default. Backward passes straight through it.
// (Stochastic rounding draws element i's bits from index i of the quantizer's seed.)
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/input_quantizer.hpp>
#include <lowbit/nn/tensor.hpp>

#include <span>
#include <variant>

namespace lowbit::nn {

namespace detail {
LOWBIT_NN_INLINE void quantize_output(const input_quantizer& q, matrix& m);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void quantize_output(const input_quantizer& q, matrix& m) {
    if (std::holds_alternative<std::monostate>(q)) return;
    const quantizer resolved = quantizer_for(q, std::span<const float>(m.data(), std::size_t(m.size())));
    const std::span<float> values(m.data(), std::size_t(m.size()));
    if (const auto* f = resolved.as_float()) (*f)(values, 0);
    if (const auto* i = resolved.as_int()) (*i)(values, 0);
}
#endif
}  // namespace detail

}  // namespace lowbit::nn
