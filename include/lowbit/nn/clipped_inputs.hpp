// lowbit/nn/clipped_inputs.hpp: a layer's GEMM operands through the clipped uniform quantizer of
// scaling/calibration.hpp (OCTAV's; papers.md section 3), each with a clipping scale chosen from
// the tensor as it is quantized, and a gradient estimator of scaling/clip_gradients.hpp:
// quantization-aware training as the OCTAV paper runs it.
//
//   d.clipping = lowbit::nn::clipped_inputs{
//       .weights = {.bits = 4, .per_channel = true, .gradient = lowbit::clip_gradient::mad},
//       .activations = {.bits = 4, .sign = lowbit::signedness::unsigned_values,
//                       .gradient = lowbit::clip_gradient::pwl}};
//
// The scale s of a tensor (or of each output channel: a row of the weights W, outputs x K):
//   octav       lowbit::octav() on the tensor, every time it is quantized (each training step,
//               each batch: "dynamic" OCTAV), `iterations` Newton steps from the paper's start
//   max         the largest magnitude (clips nothing)
//   percentile  lowbit::calibrate_percentile (e.g. 99.99)
//   fixed       `scales`, given (one, or one per output channel): static calibration, e.g. from
//               calibrate_clipping (nn/clipping_calibration.hpp) or from lowbit::octav_per_channel
// Activations X (K x N: a linear layer's inputs, a convolution's im2col matrix, whose values repeat
// once per kernel tap that reads them) have one scale per tensor, computed over the batch.
// Scales are doubles ("full precision"); the quantized values are floats (quantize_clipped).
//
// A tensor or channel without a value to calibrate on (all zeros; under an unsigned quantizer, no
// positive value) has scale 0 and quantizes to zeros: a pruned channel or a dead ReLU is not an
// error. NaN or infinite values are (std::invalid_argument naming the operand and the element).
//
// Gradients (the clipping scale gets none): dL/dW = factor(W, s) * (dL/dC X_q^T), and dL/dX
// likewise, factor ste, pwl (1 inside [-s, s], 0 outside) or mad (s / |x| outside); the paper's
// recipe is mad for weights and pwl for activations. The factors multiply whatever gradient the
// datapath gives (straight through, or a fine-grained gradient mode through a spec's quantized
// accumulation). The GEMM itself runs as the datapath says on the quantized operands: a spec's
// accumulation, or the plain fp32 product.
#pragma once

#include <lowbit/datapath/tile_pool.hpp>
#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/tensor.hpp>
#include <lowbit/scaling/calibration.hpp>
#include <lowbit/scaling/clip_gradients.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <span>
#include <string>
#include <vector>

namespace lowbit::nn {

enum class clip_scale_rule : std::uint8_t { octav, max, percentile, fixed };

constexpr const char* to_string(clip_scale_rule r) {
    return r == clip_scale_rule::octav ? "octav" : r == clip_scale_rule::max ? "max"
                                               : r == clip_scale_rule::percentile ? "percentile" : "fixed";
}

struct clip_quantizer {
    int bits = 4;                                   // 1..32: 2^B + 1 levels (calibration.hpp)
    signedness sign = signedness::signed_values;    // unsigned_values: [0, s], e.g. after a ReLU
    bool per_channel = false;                       // weights only: one scale per output channel
    clip_scale_rule rule = clip_scale_rule::octav;
    int iterations = 10;                            // octav: Newton-Raphson steps
    octav_step step = octav_step::with_density;     // octav: lowbit::octav's step
    double percentile = 99.99;                      // percentile: in (0, 100]
    std::vector<double> scales{};                   // fixed: one, or one per output channel
    clip_gradient gradient = clip_gradient::ste;

    // std::invalid_argument naming the field, prefixed by `name` ("clipping.weights").
    void validate(const std::string& name) const;
};

struct clipped_inputs {
    clip_quantizer weights{};
    clip_quantizer activations{};
};

// An operand after its clip_quantizer: the quantized values, the gradient factors (empty when
// not asked for, or for ste), and the scales used (one, or one per row).
struct clipped_operand {
    matrix values, factors;
    std::vector<double> scales;
};

// m through q: rows are channels when q.per_channel. `name` prefixes error messages.
LOWBIT_NN_INLINE clipped_operand clip_operand(const matrix& m, const clip_quantizer& q, bool with_factors,
                                              const std::string& name);

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void clip_quantizer::validate(const std::string& name) const {
    const auto fail = [&](const std::string& why) { throw std::invalid_argument("lowbit::nn: " + name + "." + why); };
    if (bits < 1 || bits > 32) fail("bits = " + std::to_string(bits) + " must be in [1, 32]");
    if (rule == clip_scale_rule::octav && iterations < 0)
        fail("iterations = " + std::to_string(iterations) + " must be at least 0");
    if (rule == clip_scale_rule::percentile && !(percentile > 0 && percentile <= 100))
        fail("percentile = " + lowbit::detail::calibration_number(percentile) + " must be in (0, 100]");
    if (rule == clip_scale_rule::fixed) {
        if (scales.empty()) fail("scales is empty: rule = fixed needs the scales (one, or one per output channel)");
        for (std::size_t i = 0; i < scales.size(); ++i)
            if (!(scales[i] >= 0) || !std::isfinite(scales[i]))
                fail("scales[" + std::to_string(i) + "] = " + lowbit::detail::calibration_number(scales[i]) +
                     " must be finite and not negative");
    } else if (!scales.empty()) {
        fail("scales is set but rule = " + std::string(to_string(rule)) + ": set rule = fixed to use them");
    }
}

LOWBIT_NN_INLINE clipped_operand clip_operand(const matrix& m, const clip_quantizer& q, bool with_factors,
                                              const std::string& name) {
    q.validate(name);
    const Eigen::Index channels = q.per_channel ? m.rows() : 1;
    const auto length = std::size_t(m.size() / std::max<Eigen::Index>(channels, 1));
    const auto values_of = [&](Eigen::Index c) { return std::span<const float>(m.data() + std::size_t(c) * length, length); };
    if (q.rule == clip_scale_rule::fixed && q.scales.size() != std::size_t(channels))
        throw std::invalid_argument("lowbit::nn: " + name + ".scales has " + std::to_string(q.scales.size()) +
                                    " scales for " + std::to_string(channels) +
                                    (q.per_channel ? " output channels" : " tensor (per_channel is false)"));
    clipped_operand out{matrix(m.rows(), m.cols()), matrix(), std::vector<double>(std::size_t(channels))};
    if (with_factors && q.gradient != clip_gradient::ste) out.factors.resize(m.rows(), m.cols());
    if (m.size() == 0) return out;
    for (Eigen::Index i = 0; i < m.size(); ++i)
        if (!std::isfinite(m.data()[i]))
            throw std::invalid_argument("lowbit::nn: " + name + ": the value at row " + std::to_string(i / m.cols()) +
                                        ", column " + std::to_string(i % m.cols()) + " is " +
                                        lowbit::detail::calibration_number(m.data()[i]) +
                                        ": a clipping scale needs finite values");
    const auto scale_of = [&](std::span<const float> x, Eigen::Index c) {
        if (q.rule == clip_scale_rule::fixed) return q.scales[std::size_t(c)];
        const double amax = calibrate_max(x, q.sign);
        if (amax == 0) return 0.0;                     // nothing to calibrate on
        if (q.rule == clip_scale_rule::max) return amax;
        if (q.rule == clip_scale_rule::percentile) return calibrate_percentile(x, q.percentile, q.sign);
        return octav(x, q.bits, q.sign, q.iterations, 0, q.step).scale;
    };
    // Channels in parallel (weights); one tensor's elements in parallel row blocks below.
    lowbit::detail::parallel_for(channels, m.size(), 1 << 16, [&](std::int64_t c) {
        out.scales[std::size_t(c)] = scale_of(values_of(Eigen::Index(c)), Eigen::Index(c));
    });
    const Eigen::Index rows_per_channel = m.rows() / channels;
    lowbit::detail::parallel_for(m.rows(), m.size(), 1 << 16, [&](std::int64_t r) {
        const double s = out.scales[std::size_t(r / rows_per_channel)];
        const std::span<const float> x(m.data() + r * m.cols(), std::size_t(m.cols()));
        const std::span<float> y(out.values.data() + r * m.cols(), std::size_t(m.cols()));
        if (s > 0) quantize_clipped(x, s, q.bits, q.sign, y);
        else std::fill(y.begin(), y.end(), 0.0f);
        if (out.factors.size() != 0)
            for (std::size_t i = 0; i < x.size(); ++i)
                out.factors.data()[r * m.cols() + Eigen::Index(i)] = float(clip_factor(q.gradient, double(x[i]), s));
    });
    return out;
}
#endif

}  // namespace lowbit::nn
