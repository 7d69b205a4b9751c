// lowbit/nn/linear.hpp: a fully connected layer, y = W x + b, on the layer's datapath.
//
// The GEMM is C = W X^T (outputs x batch): A = the weights (input_a, Q_W), B = the activations
// (input_b, Q_A), each output one dot product over the `inputs` features in order.
// On tokens (a transformer's projections and MLP) it applies to every token, as PyTorch's Linear
// does to the last dimension: X is then the (batch * tokens) x inputs matrix of all tokens, one
// GEMM, and the output keeps the token grid.
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/gemm_layer.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

namespace lowbit::nn {

class linear : public gemm_layer {
public:
    linear(int inputs, int outputs, std::uint64_t seed = 1);

    LOWBIT_NN_INLINE std::string describe() const override;
    int inputs() const { return inputs_; }
    int outputs() const { return outputs_; }

    LOWBIT_NN_INLINE shape3 output_shape(shape3 in) const override;

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;

    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;

    std::vector<parameter*> parameters() override { return {&weight_, &bias_}; }
    std::unique_ptr<layer> clone() const override { return std::make_unique<linear>(*this); }
    parameter& weight() override { return weight_; }
    parameter& bias() override { return bias_; }

private:
    int inputs_, outputs_;
    parameter weight_, bias_;
    shape3 in_;
    Eigen::Index batch_ = 0;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE linear::linear(int inputs, int outputs, std::uint64_t seed) : inputs_(inputs), outputs_(outputs) {
    if (inputs < 1 || outputs < 1)
        throw std::invalid_argument("lowbit::nn::linear: inputs = " + std::to_string(inputs) + ", outputs = " +
                                    std::to_string(outputs) + ": both must be >= 1");
    weight_ = {"weight", matrix(outputs, inputs), matrix::Zero(outputs, inputs)};
    bias_ = {"bias", matrix::Zero(1, outputs), matrix::Zero(1, outputs)};
    detail::he_uniform(weight_.value, inputs, seed);
}

LOWBIT_NN_INLINE std::string linear::describe() const {
    return "linear " + std::to_string(inputs_) + "->" + std::to_string(outputs_);
}

LOWBIT_NN_INLINE shape3 linear::output_shape(shape3 in) const {
    if (in.is_tokens()) {
        if (in.channels != inputs_)
            throw std::invalid_argument("lowbit::nn: " + describe() + ": input shape " + in.to_string() +
                                        " does not have " + std::to_string(inputs_) + " features per token");
        return token_shape(in.height, in.width, outputs_);
    }
    if (in != shape3{inputs_, 1, 1})
        throw std::invalid_argument("lowbit::nn: " + describe() + ": input shape " + in.to_string() +
                                    " is not " + std::to_string(inputs_) + " x 1 x 1 (add a flatten before it)");
    return {outputs_, 1, 1};
}

LOWBIT_NN_INLINE tensor linear::forward(const tensor& x, pass p) {
    detail::check_input(*this, x, x.shape.is_tokens() ? x.shape : shape3{inputs_, 1, 1});
    const shape3 out = output_shape(x.shape);  // tokens: checks the features
    const Eigen::Index rows = x.batch() * x.shape.tokens();  // one row per token (per sample)
    matrix xt = Eigen::Map<const matrix>(x.values.data(), rows, inputs_).transpose();  // inputs x rows
    const matrix c = gemm_forward(std::move(xt), p);
    ready_ = p == pass::training;
    in_ = x.shape;
    batch_ = x.batch();
    tensor y{matrix(x.batch(), out.size()), out};
    Eigen::Map<matrix>(y.values.data(), rows, outputs_) = c.transpose();
    return y;
}

LOWBIT_NN_INLINE tensor linear::backward(const tensor& dy) {
    detail::check_backward(*this, ready_);
    detail::check_backward(*this, ready_, dy, output_shape(in_), batch_);
    // dL/dW = dY^T X_q, dL/db = column sums of dY, dL/dX = dY W_q (straight-through).
    const Eigen::Index rows = batch_ * in_.tokens();
    const matrix dxt = gemm_backward(Eigen::Map<const matrix>(dy.values.data(), rows, outputs_).transpose());
    tensor dx{matrix(batch_, in_.size()), in_};
    Eigen::Map<matrix>(dx.values.data(), rows, inputs_) = dxt.transpose();
    return dx;
}
#endif

}  // namespace lowbit::nn
