// lowbit/nn/relu.hpp: y = max(x, 0) elementwise (NaN passes through); gradient 1 where x > 0.
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/layer.hpp>

#include <memory>
#include <string>

namespace lowbit::nn {

class relu : public layer {
public:
    std::string describe() const override { return "relu"; }
    shape3 output_shape(shape3 in) const override { return in; }

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;
    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;
    std::unique_ptr<layer> clone() const override { return std::make_unique<relu>(*this); }

private:
    matrix positive_;
    shape3 shape_;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE tensor relu::forward(const tensor& x, pass p) {
    tensor y{x.values.unaryExpr([](float v) { return v > 0 ? v : (v == v ? 0.0f : v); }), x.shape};
    if (p == pass::training) positive_ = (x.values.array() > 0).cast<float>().matrix();
    ready_ = p == pass::training;
    shape_ = x.shape;
    return y;
}

LOWBIT_NN_INLINE tensor relu::backward(const tensor& dy) {
    detail::check_backward(*this, ready_, dy, shape_, positive_.rows());
    return {dy.values.cwiseProduct(positive_), dy.shape};
}
#endif

}  // namespace lowbit::nn
