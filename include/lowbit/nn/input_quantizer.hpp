// lowbit/nn/input_quantizer.hpp: how a tensor is quantized before a GEMM (or after an fp32 unit,
// output_quantizer.hpp): not at all, a fixed quantizer, or a float format biased from the tensor's
// range (range_biased_float; gemm_datapath.hpp says more). Apart from gemm_datapath.hpp so that
// the layers that only round their outputs do not compile the GEMM kernels.
#pragma once

#include <lowbit/datapath/quantizer.hpp>
#include <lowbit/formats/float_format.hpp>
#include <lowbit/nn/definitions.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <variant>

namespace lowbit::nn {

struct range_biased_float {
    int exp_bits = 3, man_bits = 4;  // FP8 M4E3
    rounding mode = rounding::nearest_even;
    bool subnormals = true;
    std::uint64_t seed = 0;          // stochastic mode

    // Every code of the format is finite (specials none): a per-tensor format has no use for
    // infinities, and the top binade holds values.
    float_format format_for(double amax) const;

    quantizer for_tensor(std::span<const float> values) const;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE float_format range_biased_float::format_for(double amax) const {
    float_format f{.exp_bits = exp_bits, .man_bits = man_bits, .bias = 0, .subnormals = subnormals,
                   .specials = special_values::none};
    if (!(amax > 0) || !std::isfinite(amax)) return (f.bias = (1 << (exp_bits - 1)) - 1, f.validate());
    // max_finite(bias) = 2^(top field - bias) * (2 - 2^-man_bits) >= amax
    const int top_field = (1 << exp_bits) - 1;
    const double top_significand = 2.0 - std::ldexp(1.0, -man_bits);
    int e = int(std::ceil(std::log2(amax / top_significand)));
    if (std::ldexp(top_significand, e - 1) >= amax) --e;  // log2's rounding: take the smallest e that holds
    if (std::ldexp(top_significand, e) < amax) ++e;
    f.bias = top_field - e;
    return f.validate();
}

LOWBIT_NN_INLINE quantizer range_biased_float::for_tensor(std::span<const float> values) const {
    float amax = 0;
    for (const float v : values) amax = std::max(amax, std::fabs(v));  // NaN is skipped
    return float_quantizer{.format = format_for(amax), .mode = mode, .on_overflow = overflow::saturate,
                           .seed = seed};
}
#endif

// How a tensor is quantized before it enters a GEMM: not at all, a fixed quantizer, or a float
// format biased from the tensor's range.
using input_quantizer = std::variant<std::monostate, quantizer, range_biased_float>;

LOWBIT_NN_INLINE quantizer quantizer_for(const input_quantizer& q, std::span<const float> values);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE quantizer quantizer_for(const input_quantizer& q, std::span<const float> values) {
    if (const auto* fixed = std::get_if<quantizer>(&q)) return *fixed;
    if (const auto* biased = std::get_if<range_biased_float>(&q)) return biased->for_tensor(values);
    return {};
}
#endif

}  // namespace lowbit::nn
