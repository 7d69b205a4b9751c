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
    bool batch_separable() const override { return true; }

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
    // One pass over each sample's values, written as a plain loop that compilers vectorize (-O3):
    // Eigen's unaryExpr of this lambda and its cast of a comparison ran one value at a time, 4x
    // slower in training.
    const Eigen::Index width = x.values.cols();
    lowbit::detail::parallel_for(x.values.rows(), x.values.size(), parallel_threshold, [&](Eigen::Index n) {
        const float* in = x.values.data() + n * width;
        float* out = y.values.data() + n * width;
        for (Eigen::Index i = 0; i < width; ++i) out[i] = in[i] > 0 ? in[i] : (in[i] == in[i] ? 0.0f : in[i]);
        if (training) {
            float* mask = positive_.data() + n * width;
            for (Eigen::Index i = 0; i < width; ++i) mask[i] = in[i] > 0 ? 1.0f : 0.0f;
        }
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
