// lowbit/nn/depthwise_conv.hpp: a depth-wise 3 x 3 convolution over the token grid (padding 1,
// stride 1): each feature (channel) convolved with its own 3 x 3 filter, as in SegFormer's Mix-FFN
// (fc1 -> depth-wise conv -> GELU -> fc2), which gives a ViT's MLP a sense of position.
//
// Each channel is a GEMM of its own on the layer's datapath: its filter (1 x 9, taps (i, j) in
// order) times the im2col matrix of that channel (9 x batch*tokens; zeros where a tap falls off
// the grid, multiplied all the same, as a convolution engine does). Weights are channels x 9 and
// the layer is a gemm_layer: set_active skips channels (outputs) or taps (inputs).
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/gemm_layer.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lowbit::nn {

class depthwise_conv : public gemm_layer {
public:
    static constexpr int kernel = 3;

    // For tokens of `grid` (token_shape(height, width, channels)).
    depthwise_conv(shape3 grid, std::uint64_t seed = 1);

    std::string describe() const override { return "depthwise_conv 3x3 pad 1 on " + shape_.to_string(); }
    LOWBIT_NN_INLINE shape3 output_shape(shape3 in) const override;

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;

    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;

    std::vector<parameter*> parameters() override { return {&weight_, &bias_}; }
    std::unique_ptr<layer> clone() const override { return std::make_unique<depthwise_conv>(*this); }
    parameter& weight() override { return weight_; }
    parameter& bias() override { return bias_; }

private:
    bool plain_fp32() const;
    static std::vector<int> all_or(const std::vector<int>& v, int size);
    // f(output token row, input token row) for every output token whose tap at offset (di, dj)
    // falls on the grid (rows of the (batch * tokens) matrix).
    template <class F>
    void for_each_pair(Eigen::Index batch, int di, int dj, F&& f) const {
        const int h = shape_.height, w = shape_.width;
        for (Eigen::Index s = 0; s < batch; ++s)
            for (int y = 0; y < h; ++y)
                for (int x = 0; x < w; ++x) {
                    const int sy = y + di, sx = x + dj;
                    if (sy >= 0 && sy < h && sx >= 0 && sx < w)
                        f(s * h * w + y * w + x, s * h * w + sy * w + sx);
                }
    }
    // Channel c's im2col matrix: 9 x (batch * tokens).
    template <class Rows>
    matrix columns(const Rows& in, int c, Eigen::Index batch) const {
        matrix cols = matrix::Zero(kernel * kernel, batch * shape_.tokens());
        for (int tap = 0; tap < kernel * kernel; ++tap)
            for_each_pair(batch, tap / kernel - 1, tap % kernel - 1,
                          [&](Eigen::Index out_row, Eigen::Index in_row) { cols(tap, out_row) = in(in_row, c); });
        return cols;
    }

    shape3 shape_;
    parameter weight_, bias_;
    std::vector<gemm_operands> kept_channels_;
    Eigen::Index batch_ = 0;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE depthwise_conv::depthwise_conv(shape3 grid, std::uint64_t seed) : shape_(grid) {
    if (!grid.is_tokens() || grid.size() < 1)
        throw std::invalid_argument("lowbit::nn::depthwise_conv: shape " + grid.to_string() +
                                    " is not a token shape (token_shape(height, width, channels))");
    weight_ = {"weight", matrix(grid.channels, kernel * kernel), matrix::Zero(grid.channels, kernel * kernel)};
    bias_ = {"bias", matrix::Zero(1, grid.channels), matrix::Zero(1, grid.channels)};
    detail::he_uniform(weight_.value, kernel * kernel, seed);
}

LOWBIT_NN_INLINE shape3 depthwise_conv::output_shape(shape3 in) const {
    if (in != shape_)
        throw std::invalid_argument("lowbit::nn: " + describe() + ": input shape " + in.to_string() + " does not match");
    return in;
}

LOWBIT_NN_INLINE tensor depthwise_conv::forward(const tensor& x, pass p) {
    detail::check_input(*this, x, shape_);
    const Eigen::Index n = x.batch() * shape_.tokens();
    const auto in = token_rows(x);
    tensor y{matrix::Zero(x.batch(), shape_.size()), shape_};
    Eigen::Map<matrix> out(y.values.data(), n, shape_.channels);
    const std::vector<int> channels = all_or(active_outputs(), shape_.channels);
    const std::vector<int> taps = all_or(active_inputs(), kernel * kernel);
    batch_ = x.batch();
    ready_ = p == pass::training;
    if (!ready_ && plain_fp32()) {
        // Plain fp32 inference (no spec, no quantizers): the same dot products by direct loops,
        // all channels of a token at once (a GEMM per channel is slow at this size).
        for (const int tap : taps) {
            const Eigen::RowVectorXf w = weight_.value.col(tap).transpose();
            for_each_pair(batch_, tap / kernel - 1, tap % kernel - 1, [&](Eigen::Index out_row, Eigen::Index in_row) {
                out.row(out_row) += w.cwiseProduct(in.row(in_row));
            });
        }
        out.rowwise() += bias_.value.row(0);
        if (!active_outputs().empty()) {
            matrix kept = matrix::Zero(n, shape_.channels);
            kept(Eigen::all, channels) = out(Eigen::all, channels);
            out = kept;
        }
        return y;
    }
    if (ready_) kept_channels_.assign(std::size_t(shape_.channels), {});
    for (const int c : channels) {
        matrix cols = columns(in, c, batch_)(taps, Eigen::all);
        const matrix w = weight_.value(Eigen::seqN(c, 1), taps);
        gemm_operands* keep = ready_ ? &kept_channels_[std::size_t(c)] : nullptr;
        const matrix r = datapath_gemm(w, std::move(cols), datapath, keep);  // 1 x n
        out.col(c) = r.row(0).transpose().array() + bias_.value(0, c);
    }
    return y;
}

LOWBIT_NN_INLINE tensor depthwise_conv::backward(const tensor& dy) {
    detail::check_backward(*this, ready_, dy, shape_, batch_);
    const Eigen::Index n = batch_ * shape_.tokens();
    const auto g = token_rows(dy);
    tensor dx{matrix::Zero(batch_, shape_.size()), shape_};
    Eigen::Map<matrix> din(dx.values.data(), n, shape_.channels);
    const std::vector<int> taps = all_or(active_inputs(), kernel * kernel);
    for (const int c : all_or(active_outputs(), shape_.channels)) {
        const gemm_operands& k = kept_channels_[std::size_t(c)];
        const matrix dr = g.col(c).transpose();  // 1 x n
        const auto fine = operand_gradients(k, dr, datapath);
        const matrix dw = fine ? matrix(fine->a) : matrix(dr * k.activations.transpose());
        for (std::size_t i = 0; i < taps.size(); ++i) weight_.grad(c, taps[i]) += dw(0, Eigen::Index(i));
        bias_.grad(0, c) += dr.sum();
        const matrix dcols = fine ? matrix(fine->b) : matrix(k.weights.transpose() * dr);  // taps x n
        // col2im of one channel: each tap's gradient goes back to the token it read
        for (std::size_t i = 0; i < taps.size(); ++i) {
            const int di = taps[i] / kernel - 1, dj = taps[i] % kernel - 1;
            for_each_pair(batch_, di, dj, [&](Eigen::Index out_row, Eigen::Index in_row) {
                din(in_row, c) += dcols(Eigen::Index(i), out_row);
            });
        }
    }
    return dx;
}

LOWBIT_NN_INLINE bool depthwise_conv::plain_fp32() const {
    return is_plain_fp32(datapath);
}

LOWBIT_NN_INLINE std::vector<int> depthwise_conv::all_or(const std::vector<int>& v, int size) {
    if (!v.empty()) return v;
    std::vector<int> all(std::size_t(size), 0);
    for (int i = 0; i < size; ++i) all[std::size_t(i)] = i;
    return all;
}
#endif

}  // namespace lowbit::nn
