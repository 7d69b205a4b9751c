// lowbit/nn/conv2d.hpp: a 2-D convolution layer, im2col + GEMM on the layer's datapath.
//
// C = W cols (conv.hpp): A = the filters (filters x channels*k*k, input_a, Q_W), B = the im2col
// matrix of the batch (input_b, Q_A); each output is one dot product over (c, i, j) in order.
#pragma once

#include <lowbit/datapath/conv.hpp>
#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/gemm_layer.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lowbit::nn {

class conv2d : public gemm_layer {
public:
    // `geometry` describes the input (channels, height, width) and the kernel, stride, padding.
    conv2d(const conv_geometry& geometry, int filters, std::uint64_t seed = 1);

    const conv_geometry& geometry() const { return g_; }
    shape3 input_shape() const { return {g_.channels, g_.height, g_.width}; }

    LOWBIT_NN_INLINE std::string describe() const override;
    LOWBIT_NN_INLINE shape3 output_shape(shape3 in) const override;

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;

    // The reduction indices (columns of the weights) of these input channels: what set_active
    // takes to skip whole input channels.
    std::vector<int> channel_columns(const std::vector<int>& channels) const;

    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;

    std::vector<parameter*> parameters() override { return {&weight_, &bias_}; }
    std::unique_ptr<layer> clone() const override { return std::make_unique<conv2d>(*this); }
    parameter& weight() override { return weight_; }
    parameter& bias() override { return bias_; }

private:
    conv_geometry g_;
    int filters_;
    parameter weight_, bias_;
    Eigen::Index batch_ = 0;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE conv2d::conv2d(const conv_geometry& geometry, int filters, std::uint64_t seed) : g_(geometry), filters_(filters) {
    g_.validate();
    if (filters < 1)
        throw std::invalid_argument("lowbit::nn::conv2d: filters = " + std::to_string(filters) + " must be >= 1");
    weight_ = {"weight", matrix(filters, g_.patch()), matrix::Zero(filters, g_.patch())};
    bias_ = {"bias", matrix::Zero(1, filters), matrix::Zero(1, filters)};
    detail::he_uniform(weight_.value, g_.patch(), seed);
}

LOWBIT_NN_INLINE std::string conv2d::describe() const {
    return "conv2d " + std::to_string(g_.channels) + "->" + std::to_string(filters_) + " " +
           std::to_string(g_.kernel) + "x" + std::to_string(g_.kernel) + " stride " + std::to_string(g_.stride) +
           " pad " + std::to_string(g_.padding) + " on " + input_shape().to_string();
}

LOWBIT_NN_INLINE shape3 conv2d::output_shape(shape3 in) const {
    if (in != input_shape())
        throw std::invalid_argument("lowbit::nn: " + describe() + ": input shape " + in.to_string() +
                                    " does not match");
    return {filters_, g_.out_height(), g_.out_width()};
}

LOWBIT_NN_INLINE tensor conv2d::forward(const tensor& x, pass p) {
    detail::check_input(*this, x, input_shape());
    const matrix c = gemm_forward(im2col(x.values, g_), p);  // bias included
    ready_ = p == pass::training;
    batch_ = x.batch();
    return {columns_to_images(c, batch_), {filters_, g_.out_height(), g_.out_width()}};
}

LOWBIT_NN_INLINE std::vector<int> conv2d::channel_columns(const std::vector<int>& channels) const {
    std::vector<int> cols;
    const int k2 = g_.kernel * g_.kernel;
    for (const int c : channels)
        for (int i = 0; i < k2; ++i) cols.push_back(c * k2 + i);
    return cols;
}

LOWBIT_NN_INLINE tensor conv2d::backward(const tensor& dy) {
    detail::check_backward(*this, ready_, dy, {filters_, g_.out_height(), g_.out_width()}, batch_);
    const matrix dcols = gemm_backward(images_to_columns(dy.values, filters_));  // dc: filters x batch*positions
    return {col2im(dcols, batch_, g_), input_shape()};
}
#endif

}  // namespace lowbit::nn
