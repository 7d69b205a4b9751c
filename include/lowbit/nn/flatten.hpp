// lowbit/nn/flatten.hpp: channels x height x width feature maps to one feature vector per sample.
// The values do not move (a sample is already one CHW row): only the shape changes.
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/layer.hpp>

#include <memory>
#include <string>

namespace lowbit::nn {

class flatten : public layer {
public:
    std::string describe() const override { return "flatten"; }
    shape3 output_shape(shape3 in) const override { return {in.size(), 1, 1}; }
    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;
    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;
    std::unique_ptr<layer> clone() const override { return std::make_unique<flatten>(*this); }
    bool batch_separable() const override { return true; }

private:
    shape3 in_;
    Eigen::Index batch_ = 0;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE tensor flatten::forward(const tensor& x, pass p) {
    in_ = x.shape;
    batch_ = x.batch();
    ready_ = p == pass::training;
    return {x.values, output_shape(x.shape)};
}

LOWBIT_NN_INLINE tensor flatten::backward(const tensor& dy) {
    detail::check_backward(*this, ready_, dy, output_shape(in_), batch_);
    return {dy.values, in_};
}
#endif

}  // namespace lowbit::nn
