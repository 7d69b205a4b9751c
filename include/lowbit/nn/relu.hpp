// lowbit/nn/relu.hpp: y = max(x, 0) elementwise (NaN passes through); gradient 1 where x > 0.
#pragma once

#include <lowbit/datapath/tile_pool.hpp>
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
    const bool training = p == pass::training;
    tensor y{matrix(x.values.rows(), x.values.cols()), x.shape};
    if (training) positive_.resize(x.values.rows(), x.values.cols());
    // Over the batch on lowbit's threads: run on one thread, these passes over every activation
    // were the largest serial part of a training step.
    lowbit::detail::parallel_for(x.values.rows(), x.values.size(), parallel_threshold, [&](Eigen::Index n) {
        y.values.row(n) = x.values.row(n).unaryExpr([](float v) { return v > 0 ? v : (v == v ? 0.0f : v); });
        if (training) positive_.row(n) = (x.values.row(n).array() > 0).cast<float>().matrix();
    });
    ready_ = training;
    shape_ = x.shape;
    return y;
}

LOWBIT_NN_INLINE tensor relu::backward(const tensor& dy) {
    detail::check_backward(*this, ready_, dy, shape_, positive_.rows());
    tensor dx{matrix(dy.values.rows(), dy.values.cols()), dy.shape};
    lowbit::detail::parallel_for(dy.values.rows(), dy.values.size(), parallel_threshold, [&](Eigen::Index n) {
        dx.values.row(n) = dy.values.row(n).cwiseProduct(positive_.row(n));
    });
    return dx;
}
#endif

}  // namespace lowbit::nn
