// lowbit/nn/linear.hpp: a fully connected layer, y = W x + b, on the layer's datapath.
//
// The GEMM is C = W X^T (outputs x batch): A = the weights (input_a, Q_W), B = the activations
// (input_b, Q_A), each output one dot product over the `inputs` features in order.
#pragma once

#include <lowbit/nn/gemm_layer.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace lowbit::nn {

class linear : public gemm_layer {
public:
    linear(int inputs, int outputs, std::uint64_t seed = 1) : inputs_(inputs), outputs_(outputs) {
        if (inputs < 1 || outputs < 1)
            throw std::invalid_argument("lowbit::nn::linear: inputs = " + std::to_string(inputs) + ", outputs = " +
                                        std::to_string(outputs) + ": both must be >= 1");
        weight_ = {"weight", matrix(outputs, inputs), matrix::Zero(outputs, inputs)};
        bias_ = {"bias", matrix::Zero(1, outputs), matrix::Zero(1, outputs)};
        detail::he_uniform(weight_.value, inputs, seed);
    }

    std::string describe() const override {
        return "linear " + std::to_string(inputs_) + "->" + std::to_string(outputs_);
    }
    shape3 output_shape(shape3 in) const override {
        if (in != shape3{inputs_, 1, 1})
            throw std::invalid_argument("lowbit::nn: " + describe() + ": input shape " + in.to_string() +
                                        " is not " + std::to_string(inputs_) + " x 1 x 1 (add a flatten before it)");
        return {outputs_, 1, 1};
    }

    tensor forward(const tensor& x, pass p) override {
        detail::check_input(*this, x, {inputs_, 1, 1});
        const matrix xt = x.values.transpose();  // inputs x batch
        const matrix c = datapath_gemm(weight_.value, xt, datapath, p == pass::training ? &kept_ : nullptr);
        ready_ = p == pass::training;
        tensor y{c.transpose(), {outputs_, 1, 1}};
        y.values.rowwise() += bias_.value.row(0);
        return y;
    }

    tensor backward(const tensor& dy) override {
        detail::check_backward(*this, ready_, dy, {outputs_, 1, 1}, kept_.activations.cols());
        // dL/dW = dY^T X_q, dL/db = column sums of dY, dL/dX = dY W_q (straight-through).
        weight_.grad.noalias() += dy.values.transpose() * kept_.activations.transpose();
        bias_.grad += dy.values.colwise().sum();
        return {dy.values * kept_.weights, {inputs_, 1, 1}};
    }

    std::vector<parameter*> parameters() override { return {&weight_, &bias_}; }
    std::unique_ptr<layer> clone() const override { return std::make_unique<linear>(*this); }
    parameter& weight() override { return weight_; }
    parameter& bias() override { return bias_; }

private:
    int inputs_, outputs_;
    parameter weight_, bias_;
    gemm_operands kept_;
    bool ready_ = false;
};

}  // namespace lowbit::nn
