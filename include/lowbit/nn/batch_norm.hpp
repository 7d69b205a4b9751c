// lowbit/nn/batch_norm.hpp: batch normalization per channel (over the batch and the spatial
// positions), y = gamma (x - mean) / sqrt(var + eps) + beta.
//
// Training normalizes by the batch's mean and biased variance and updates running estimates
// (running = (1 - momentum) running + momentum batch, with the unbiased variance, as PyTorch does);
// inference uses the running estimates. For simulated inference, fold_batch_norm (network.hpp)
// folds the layer into the preceding conv2d or linear, as hardware runs it.
#pragma once

#include <lowbit/datapath/tile_pool.hpp>
#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/layer.hpp>

#include <cmath>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace lowbit::nn {

namespace detail {
// The sum of term(block, at) over one channel's values in a batch held as consecutive blocks of
// samples (one block, or a network's micro-batches): block b has rows[b] runs of `positions`
// values, `stride` apart (at = r * stride + i). Added in double in eight lanes (value i of a run
// into lane i mod 8, the lanes added in order at the end), so that the compiler vectorizes it;
// the order depends on the shape only, and the lanes run on from one block into the next, so the
// sum is the same bits however the batch is cut into blocks. (Eigen's sum of a cast<double>()
// block runs one value at a time: 5x slower.)
template <class Term>
double channel_sum(std::span<const Eigen::Index> rows, Eigen::Index positions, Eigen::Index stride, Term term) {
    constexpr int lanes = 8;
    double lane[lanes] = {};
    for (std::size_t b = 0; b < rows.size(); ++b)
        for (Eigen::Index r = 0, row = 0; r < rows[b]; ++r, row += stride) {
            Eigen::Index i = 0;
            for (; i + lanes <= positions; i += lanes)
                for (int j = 0; j < lanes; ++j) lane[j] += term(b, row + i + j);
            for (; i < positions; ++i) lane[i % lanes] += term(b, row + i);
        }
    double sum = 0;
    for (const double v : lane) sum += v;
    return sum;
}
}  // namespace detail

class batch_norm : public layer {
public:
    explicit batch_norm(int channels, float momentum = 0.1f, float eps = 1e-5f);

    int channels() const { return channels_; }
    float eps() const { return eps_; }
    const matrix& gamma() const { return gamma_.value; }
    const matrix& beta() const { return beta_.value; }
    const matrix& running_mean() const { return mean_.value; }
    const matrix& running_var() const { return var_.value; }

    std::string describe() const override { return "batch_norm " + std::to_string(channels_); }
    LOWBIT_NN_INLINE shape3 output_shape(shape3 in) const override;

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;

    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;

    // One batch cut into micro-batches (a network training in micro-batches, network.hpp): x[b]
    // goes through layers[b], a copy of layers[0] each, with the statistics of the whole batch, as
    // forward would compute them on the batch joined (the same bits). The parameters and running
    // statistics used and updated are layers[0]'s; each layer keeps its micro-batch for backward.
    LOWBIT_NN_INLINE static std::vector<tensor> forward(std::span<batch_norm* const> layers,
                                                        std::span<const tensor* const> x, pass p);
    // The gradients of the same: gamma's and beta's are added to layers[0].
    LOWBIT_NN_INLINE static std::vector<tensor> backward(std::span<batch_norm* const> layers,
                                                         std::span<const tensor* const> dy);

    std::vector<parameter*> parameters() override { return {&gamma_, &beta_, &mean_, &var_}; }
    std::unique_ptr<layer> clone() const override { return std::make_unique<batch_norm>(*this); }

private:
    int channels_;
    float momentum_, eps_;
    parameter gamma_, beta_, mean_, var_;
    matrix xhat_;
    Eigen::VectorXd inv_std_;
    shape3 shape_;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE batch_norm::batch_norm(int channels, float momentum, float eps) : channels_(channels), momentum_(momentum), eps_(eps) {
    if (channels < 1) throw std::invalid_argument("lowbit::nn::batch_norm: channels = " + std::to_string(channels) + " must be >= 1");
    if (!(momentum >= 0 && momentum <= 1))
        throw std::invalid_argument("lowbit::nn::batch_norm: momentum = " + std::to_string(momentum) + " must be in [0, 1]");
    if (!(eps > 0)) throw std::invalid_argument("lowbit::nn::batch_norm: eps = " + std::to_string(eps) + " must be > 0");
    gamma_ = {"gamma", matrix::Ones(1, channels), matrix::Zero(1, channels)};
    beta_ = {"beta", matrix::Zero(1, channels), matrix::Zero(1, channels)};
    mean_ = {"running_mean", matrix::Zero(1, channels), matrix::Zero(1, channels), false};
    var_ = {"running_var", matrix::Ones(1, channels), matrix::Zero(1, channels), false};
}

LOWBIT_NN_INLINE shape3 batch_norm::output_shape(shape3 in) const {
    if (in.channels != channels_)
        throw std::invalid_argument("lowbit::nn: " + describe() + ": input shape " + in.to_string() + " has " +
                                    std::to_string(in.channels) + " channels");
    return in;
}

LOWBIT_NN_INLINE tensor batch_norm::forward(const tensor& x, pass p) {
    batch_norm* const self = this;
    const tensor* const in = &x;
    return std::move(forward(std::span(&self, 1), std::span(&in, 1), p)[0]);
}

LOWBIT_NN_INLINE tensor batch_norm::backward(const tensor& dy) {
    batch_norm* const self = this;
    const tensor* const in = &dy;
    return std::move(backward(std::span(&self, 1), std::span(&in, 1))[0]);
}

LOWBIT_NN_INLINE std::vector<tensor> batch_norm::forward(std::span<batch_norm* const> layers,
                                                         std::span<const tensor* const> x, pass p) {
    batch_norm& bn = *layers[0];
    const std::size_t blocks = x.size();
    std::vector<Eigen::Index> rows(blocks);
    Eigen::Index n = 0;
    for (std::size_t b = 0; b < blocks; ++b) {
        detail::check_input(bn, *x[b], bn.output_shape(x[b]->shape));
        if (x[b]->shape != x[0]->shape)
            throw std::invalid_argument("lowbit::nn: " + bn.describe() + ": micro-batches of different shapes");
        n += rows[b] = x[b]->batch();
    }
    const shape3 shape = x[0]->shape;
    const Eigen::Index positions = shape.height * shape.width, stride = x[0]->values.cols();
    const double count = double(n * positions);
    std::vector<tensor> y(blocks);
    for (std::size_t b = 0; b < blocks; ++b) {
        y[b] = {matrix(rows[b], stride), shape};
        if (p == pass::training) {
            layers[b]->xhat_.resize(rows[b], stride);
            layers[b]->inv_std_.resize(bn.channels_);
        }
    }
    if (p == pass::training && n * positions < 2)
        throw std::invalid_argument("lowbit::nn: " + bn.describe() + ": training needs more than one value per channel");
    // Channels are independent (each writes its own columns and statistics): split among threads.
    lowbit::detail::parallel_for(bn.channels_, n * stride, parallel_threshold, [&](std::int64_t c) {
        const auto value = [&](std::size_t b, Eigen::Index at) { return x[b]->values.data()[c * positions + at]; };
        double mean, var;
        if (p == pass::training) {
            mean = detail::channel_sum(rows, positions, stride, [&](std::size_t b, Eigen::Index at) { return double(value(b, at)); }) / count;
            var = detail::channel_sum(rows, positions, stride, [&](std::size_t b, Eigen::Index at) {
                      const double d = value(b, at) - mean;
                      return d * d;
                  }) / count;
            bn.mean_.value(0, c) = float((1 - bn.momentum_) * bn.mean_.value(0, c) + bn.momentum_ * mean);
            bn.var_.value(0, c) = float((1 - bn.momentum_) * bn.var_.value(0, c) + bn.momentum_ * var * count / (count - 1));
        } else {
            mean = bn.mean_.value(0, c);
            var = bn.var_.value(0, c);
        }
        const double inv_std = 1 / std::sqrt(var + bn.eps_), gamma = bn.gamma_.value(0, c), beta = bn.beta_.value(0, c);
        for (std::size_t b = 0; b < blocks; ++b) {
            const float* in = x[b]->values.data() + c * positions;
            float* out = y[b].values.data() + c * positions;
            float* kept = nullptr;
            if (p == pass::training) kept = layers[b]->xhat_.data() + c * positions, layers[b]->inv_std_[c] = inv_std;
            for (Eigen::Index r = 0; r < rows[b]; ++r, in += stride, out += stride) {
                for (Eigen::Index i = 0; i < positions; ++i) out[i] = float((in[i] - mean) * inv_std * gamma + beta);
                if (kept != nullptr) {
                    for (Eigen::Index i = 0; i < positions; ++i) kept[i] = float((in[i] - mean) * inv_std);
                    kept += stride;
                }
            }
        }
    });
    for (batch_norm* l : layers) l->ready_ = p == pass::training, l->shape_ = shape;
    return y;
}

LOWBIT_NN_INLINE std::vector<tensor> batch_norm::backward(std::span<batch_norm* const> layers,
                                                          std::span<const tensor* const> dy) {
    batch_norm& bn = *layers[0];
    const std::size_t blocks = dy.size();
    std::vector<Eigen::Index> rows(blocks);
    Eigen::Index n = 0;
    for (std::size_t b = 0; b < blocks; ++b) {
        detail::check_backward(*layers[b], layers[b]->ready_, *dy[b], layers[b]->shape_, layers[b]->xhat_.rows());
        n += rows[b] = dy[b]->batch();
    }
    const shape3 shape = dy[0]->shape;
    const Eigen::Index positions = shape.height * shape.width, stride = dy[0]->values.cols();
    const double count = double(n * positions);
    std::vector<tensor> dx(blocks);
    for (std::size_t b = 0; b < blocks; ++b) dx[b] = {matrix(rows[b], stride), shape};
    lowbit::detail::parallel_for(bn.channels_, n * stride, parallel_threshold, [&](std::int64_t c) {
        const auto g = [&](std::size_t b, Eigen::Index at) { return dy[b]->values.data()[c * positions + at]; };
        const auto xhat = [&](std::size_t b, Eigen::Index at) { return layers[b]->xhat_.data()[c * positions + at]; };
        const double sum_g = detail::channel_sum(rows, positions, stride, [&](std::size_t b, Eigen::Index at) { return double(g(b, at)); });
        const double sum_g_xhat = detail::channel_sum(rows, positions, stride, [&](std::size_t b, Eigen::Index at) {
            return double(g(b, at)) * xhat(b, at);
        });
        bn.gamma_.grad(0, c) += float(sum_g_xhat);
        bn.beta_.grad(0, c) += float(sum_g);
        // d/dx of gamma * xhat with the batch's mean and variance depending on x.
        const double mean_g = sum_g / count, mean_g_xhat = sum_g_xhat / count, scale = bn.gamma_.value(0, c) * bn.inv_std_[c];
        for (std::size_t b = 0; b < blocks; ++b) {
            const float* gb = dy[b]->values.data() + c * positions;
            const float* xb = layers[b]->xhat_.data() + c * positions;
            float* out = dx[b].values.data() + c * positions;
            for (Eigen::Index r = 0; r < rows[b]; ++r, gb += stride, xb += stride, out += stride)
                for (Eigen::Index i = 0; i < positions; ++i) out[i] = float((gb[i] - mean_g - xb[i] * mean_g_xhat) * scale);
        }
    });
    return dx;
}
#endif

}  // namespace lowbit::nn
