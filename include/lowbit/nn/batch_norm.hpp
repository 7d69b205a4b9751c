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
#include <string>

namespace lowbit::nn {

namespace detail {
// The sum of term(at) over one channel's values: `rows` runs of `positions` values, `stride` apart
// (at = r * stride + i). Added in double in eight lanes (value i of a run into lane i mod 8, the
// lanes added in order at the end), so that the compiler vectorizes it; the order depends on the
// shape only. (Eigen's sum of a cast<double>() block runs one value at a time: 5x slower.)
template <class Term>
double channel_sum(Eigen::Index rows, Eigen::Index positions, Eigen::Index stride, Term term) {
    constexpr int lanes = 8;
    double lane[lanes] = {};
    for (Eigen::Index r = 0, row = 0; r < rows; ++r, row += stride) {
        Eigen::Index i = 0;
        for (; i + lanes <= positions; i += lanes)
            for (int j = 0; j < lanes; ++j) lane[j] += term(row + i + j);
        for (; i < positions; ++i) lane[i % lanes] += term(row + i);
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
    detail::check_input(*this, x, output_shape(x.shape));
    const Eigen::Index n = x.batch(), positions = x.shape.height * x.shape.width;
    const double count = double(n * positions);
    tensor y{matrix(n, x.values.cols()), x.shape};
    if (p == pass::training) {
        if (n * positions < 2)
            throw std::invalid_argument("lowbit::nn: " + describe() + ": training needs more than one value per channel");
        xhat_.resize(n, x.values.cols());
        inv_std_.resize(channels_);
    }
    // Channels are independent (each writes its own columns and statistics): split among threads.
    const Eigen::Index stride = x.values.cols();
    lowbit::detail::parallel_for(channels_, x.values.size(), parallel_threshold, [&](std::int64_t c) {
        const float* in = x.values.data() + c * positions;
        double mean, var;
        if (p == pass::training) {
            mean = detail::channel_sum(n, positions, stride, [&](Eigen::Index at) { return double(in[at]); }) / count;
            var = detail::channel_sum(n, positions, stride, [&](Eigen::Index at) {
                      const double d = in[at] - mean;
                      return d * d;
                  }) / count;
            mean_.value(0, c) = float((1 - momentum_) * mean_.value(0, c) + momentum_ * mean);
            var_.value(0, c) = float((1 - momentum_) * var_.value(0, c) + momentum_ * var * count / (count - 1));
        } else {
            mean = mean_.value(0, c);
            var = var_.value(0, c);
        }
        const double inv_std = 1 / std::sqrt(var + eps_), gamma = gamma_.value(0, c), beta = beta_.value(0, c);
        float* out = y.values.data() + c * positions;
        float* kept = nullptr;
        if (p == pass::training) kept = xhat_.data() + c * positions, inv_std_[c] = inv_std;
        for (Eigen::Index r = 0; r < n; ++r, in += stride, out += stride) {
            for (Eigen::Index i = 0; i < positions; ++i) out[i] = float((in[i] - mean) * inv_std * gamma + beta);
            if (kept != nullptr) {
                for (Eigen::Index i = 0; i < positions; ++i) kept[i] = float((in[i] - mean) * inv_std);
                kept += stride;
            }
        }
    });
    ready_ = p == pass::training;
    shape_ = x.shape;
    return y;
}

LOWBIT_NN_INLINE tensor batch_norm::backward(const tensor& dy) {
    detail::check_backward(*this, ready_, dy, shape_, xhat_.rows());
    const Eigen::Index n = dy.batch(), positions = dy.shape.height * dy.shape.width;
    const double count = double(n * positions);
    tensor dx{matrix(n, dy.values.cols()), dy.shape};
    const Eigen::Index stride = dy.values.cols();
    lowbit::detail::parallel_for(channels_, dy.values.size(), parallel_threshold, [&](std::int64_t c) {
        const float* g = dy.values.data() + c * positions;
        const float* xhat = xhat_.data() + c * positions;
        const double sum_g = detail::channel_sum(n, positions, stride, [&](Eigen::Index at) { return double(g[at]); });
        const double sum_g_xhat =
            detail::channel_sum(n, positions, stride, [&](Eigen::Index at) { return double(g[at]) * xhat[at]; });
        gamma_.grad(0, c) += float(sum_g_xhat);
        beta_.grad(0, c) += float(sum_g);
        // d/dx of gamma * xhat with the batch's mean and variance depending on x.
        const double mean_g = sum_g / count, mean_g_xhat = sum_g_xhat / count, scale = gamma_.value(0, c) * inv_std_[c];
        float* out = dx.values.data() + c * positions;
        for (Eigen::Index r = 0; r < n; ++r, g += stride, xhat += stride, out += stride)
            for (Eigen::Index i = 0; i < positions; ++i) out[i] = float((g[i] - mean_g - xhat[i] * mean_g_xhat) * scale);
    });
    return dx;
}
#endif

}  // namespace lowbit::nn
