// lowbit/nn/token_pooling.hpp: the mean of a sample's tokens, a feature vector {features, 1, 1}
// for the classifier (a ViT's "mean pooling", instead of a class token).
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/layer.hpp>

#include <memory>
#include <string>

namespace lowbit::nn {

class token_mean_pool : public layer {
public:
    std::string describe() const override { return "token_mean_pool"; }
    LOWBIT_NN_INLINE shape3 output_shape(shape3 in) const override;

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;
    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;
    std::unique_ptr<layer> clone() const override { return std::make_unique<token_mean_pool>(*this); }

private:
    shape3 in_;
    Eigen::Index batch_ = 0;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE shape3 token_mean_pool::output_shape(shape3 in) const {
    if (!in.is_tokens())
        throw std::invalid_argument("lowbit::nn: token_mean_pool: input shape " + in.to_string() + " is not tokens");
    return {in.channels, 1, 1};
}

LOWBIT_NN_INLINE tensor token_mean_pool::forward(const tensor& x, pass p) {
    const shape3 out = output_shape(x.shape);
    detail::check_input(*this, x, x.shape);
    tensor y{matrix::Zero(x.batch(), out.size()), out};
    const int t = x.shape.tokens(), f = x.shape.channels;
    for (int k = 0; k < t; ++k) y.values += x.values.middleCols(Eigen::Index(k) * f, f);
    y.values /= float(t);
    ready_ = p == pass::training;
    in_ = x.shape;
    batch_ = x.batch();
    return y;
}

LOWBIT_NN_INLINE tensor token_mean_pool::backward(const tensor& dy) {
    detail::check_backward(*this, ready_);
    detail::check_backward(*this, ready_, dy, output_shape(in_), batch_);
    return {(dy.values / float(in_.tokens())).replicate(1, in_.tokens()), in_};
}
#endif

}  // namespace lowbit::nn
