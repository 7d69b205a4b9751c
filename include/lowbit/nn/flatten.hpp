// lowbit/nn/flatten.hpp: channels x height x width feature maps to one feature vector per sample.
// The values do not move (a sample is already one CHW row): only the shape changes.
#pragma once

#include <lowbit/nn/layer.hpp>

#include <memory>
#include <string>

namespace lowbit::nn {

class flatten : public layer {
public:
    std::string describe() const override { return "flatten"; }
    shape3 output_shape(shape3 in) const override { return {in.size(), 1, 1}; }
    tensor forward(const tensor& x, pass) override {
        in_ = x.shape;
        return {x.values, output_shape(x.shape)};
    }
    tensor backward(const tensor& dy) override { return {dy.values, in_}; }
    std::unique_ptr<layer> clone() const override { return std::make_unique<flatten>(*this); }

private:
    shape3 in_;
};

}  // namespace lowbit::nn
