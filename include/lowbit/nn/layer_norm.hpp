// lowbit/nn/layer_norm.hpp: layer normalization over each token's features (or over a feature
// vector's), y = gamma (x - mean) / sqrt(var + eps) + beta, with the biased variance, as
// PyTorch's LayerNorm over the last dimension.
//
// fp32 arithmetic (the statistics of a token accumulate in double, then round once), the output
// rounded by `output` (output_quantizer.hpp).
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/layer.hpp>
#include <lowbit/nn/output_quantizer.hpp>

#include <cmath>
#include <memory>
#include <string>

namespace lowbit::nn {

class layer_norm : public layer {
public:
    input_quantizer output{};

    explicit layer_norm(int features, float eps = 1e-5f);

    std::string describe() const override { return "layer_norm " + std::to_string(features_); }
    LOWBIT_NN_INLINE shape3 output_shape(shape3 in) const override;

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;

    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;

    std::vector<parameter*> parameters() override { return {&gamma_, &beta_}; }
    std::unique_ptr<layer> clone() const override { return std::make_unique<layer_norm>(*this); }

private:
    int features_;
    float eps_;
    parameter gamma_, beta_;
    matrix xhat_;
    Eigen::VectorXf inv_std_;
    shape3 shape_;
    Eigen::Index batch_ = 0;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE layer_norm::layer_norm(int features, float eps) : features_(features), eps_(eps) {
    if (features < 1)
        throw std::invalid_argument("lowbit::nn::layer_norm: features = " + std::to_string(features) + " must be >= 1");
    if (!(eps > 0)) throw std::invalid_argument("lowbit::nn::layer_norm: eps = " + std::to_string(eps) + " must be > 0");
    gamma_ = {"gamma", matrix::Ones(1, features), matrix::Zero(1, features)};
    beta_ = {"beta", matrix::Zero(1, features), matrix::Zero(1, features)};
}

LOWBIT_NN_INLINE shape3 layer_norm::output_shape(shape3 in) const {
    const bool fits = in.is_tokens() ? in.channels == features_ : in == shape3{features_, 1, 1};
    if (!fits)
        throw std::invalid_argument("lowbit::nn: " + describe() + ": input shape " + in.to_string() +
                                    " does not have " + std::to_string(features_) + " features (per token)");
    return in;
}

LOWBIT_NN_INLINE tensor layer_norm::forward(const tensor& x, pass p) {
    detail::check_input(*this, x, output_shape(x.shape));
    const auto rows = token_rows(x);
    tensor y{matrix(x.batch(), x.values.cols()), x.shape};
    Eigen::Map<matrix> out(y.values.data(), rows.rows(), rows.cols());
    xhat_.resize(rows.rows(), rows.cols());
    inv_std_.resize(rows.rows());
    for (Eigen::Index t = 0; t < rows.rows(); ++t) {
        const auto v = rows.row(t).cast<double>().array();
        const double mean = v.mean();
        const double var = (v - mean).square().mean();
        const float inv_std = float(1.0 / std::sqrt(var + double(eps_)));
        xhat_.row(t) = (rows.row(t).array() - float(mean)) * inv_std;
        inv_std_(t) = inv_std;
        out.row(t) = xhat_.row(t).cwiseProduct(gamma_.value.row(0)) + beta_.value.row(0);
    }
    detail::quantize_output(output, y.values);
    ready_ = p == pass::training;
    shape_ = x.shape;
    batch_ = x.batch();
    return y;
}

LOWBIT_NN_INLINE tensor layer_norm::backward(const tensor& dy) {
    detail::check_backward(*this, ready_, dy, shape_, batch_);
    const auto g = token_rows(dy);
    tensor dx{matrix(batch_, dy.values.cols()), shape_};
    Eigen::Map<matrix> out(dx.values.data(), g.rows(), g.cols());
    gamma_.grad += g.cwiseProduct(xhat_).colwise().sum();
    beta_.grad += g.colwise().sum();
    // dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy gamma
    for (Eigen::Index t = 0; t < g.rows(); ++t) {
        const Eigen::RowVectorXf dxhat = g.row(t).cwiseProduct(gamma_.value.row(0));
        const float m1 = dxhat.mean(), m2 = dxhat.cwiseProduct(xhat_.row(t)).mean();
        out.row(t) = inv_std_(t) * (dxhat.array() - m1 - xhat_.row(t).array() * m2);
    }
    return dx;
}
#endif

}  // namespace lowbit::nn
