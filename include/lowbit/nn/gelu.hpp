// lowbit/nn/gelu.hpp: the Gaussian error linear unit, elementwise,
//   erf form (default):  y = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2
//   tanh form (option):  y = x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2
// as PyTorch's GELU(approximate = "none" | "tanh"). fp32 arithmetic, the output rounded by
// `output` (output_quantizer.hpp).
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/layer.hpp>
#include <lowbit/nn/output_quantizer.hpp>

#include <cmath>
#include <memory>
#include <numbers>
#include <string>

namespace lowbit::nn {

enum class gelu_form { erf, tanh };

class gelu : public layer {
public:
    input_quantizer output{};

    explicit gelu(gelu_form form = gelu_form::erf) : form_(form) {}

    std::string describe() const override { return form_ == gelu_form::erf ? "gelu" : "gelu (tanh form)"; }
    shape3 output_shape(shape3 in) const override { return in; }

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;
    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;
    std::unique_ptr<layer> clone() const override { return std::make_unique<gelu>(*this); }

private:
    static constexpr float inv_sqrt2 = float(1 / std::numbers::sqrt2);
    static constexpr float tanh_scale = float(0.7978845608028654);  // sqrt(2 / pi)
    static constexpr float cubic = 0.044715f;

    float value(float v) const;
    float derivative(float v) const;

    gelu_form form_;
    matrix x_;
    shape3 shape_;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE tensor gelu::forward(const tensor& x, pass p) {
    detail::check_input(*this, x, x.shape);
    tensor y{x.values.unaryExpr([this](float v) { return value(v); }), x.shape};
    detail::quantize_output(output, y.values);
    if (p == pass::training) x_ = x.values;
    ready_ = p == pass::training;
    shape_ = x.shape;
    return y;
}

LOWBIT_NN_INLINE tensor gelu::backward(const tensor& dy) {
    detail::check_backward(*this, ready_, dy, shape_, x_.rows());
    return {dy.values.cwiseProduct(x_.unaryExpr([this](float v) { return derivative(v); })), shape_};
}

LOWBIT_NN_INLINE float gelu::value(float v) const {
    if (form_ == gelu_form::erf) return 0.5f * v * (1 + std::erf(v * inv_sqrt2));
    return 0.5f * v * (1 + std::tanh(tanh_scale * (v + cubic * v * v * v)));
}

LOWBIT_NN_INLINE float gelu::derivative(float v) const {
    if (form_ == gelu_form::erf) {
        const float pdf = float(std::exp(-0.5 * double(v) * v) / std::sqrt(2 * std::numbers::pi));
        return 0.5f * (1 + std::erf(v * inv_sqrt2)) + v * pdf;
    }
    const float t = std::tanh(tanh_scale * (v + cubic * v * v * v));
    return 0.5f * (1 + t) + 0.5f * v * (1 - t * t) * tanh_scale * (1 + 3 * cubic * v * v);
}
#endif

}  // namespace lowbit::nn
