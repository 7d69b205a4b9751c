// lowbit/nn/dropout.hpp: inverted dropout. Training zeroes each value with probability `rate`
// and scales the others by 1 / (1 - rate); inference is the identity (nothing to simulate on
// hardware). The mask of forward call t comes from mt19937_64(seed + t): runs are repeatable.
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/layer.hpp>

#include <cstdint>
#include <memory>
#include <random>
#include <string>

namespace lowbit::nn {

class dropout : public layer {
public:
    explicit dropout(double rate, std::uint64_t seed = 1);

    std::string describe() const override { return "dropout " + std::to_string(rate_).substr(0, 4); }
    shape3 output_shape(shape3 in) const override { return in; }

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;
    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;
    std::unique_ptr<layer> clone() const override { return std::make_unique<dropout>(*this); }

private:
    double rate_;
    std::uint64_t seed_, calls_ = 0;
    matrix mask_;
    shape3 shape_;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE dropout::dropout(double rate, std::uint64_t seed) : rate_(rate), seed_(seed) {
    if (!(rate >= 0 && rate < 1))
        throw std::invalid_argument("lowbit::nn::dropout: rate = " + std::to_string(rate) + " must be in [0, 1)");
}

LOWBIT_NN_INLINE tensor dropout::forward(const tensor& x, pass p) {
    detail::check_input(*this, x, x.shape);
    shape_ = x.shape;
    ready_ = p == pass::training;
    if (p == pass::inference || rate_ == 0) {
        mask_ = matrix::Ones(x.batch(), x.values.cols());
        return x;
    }
    std::mt19937_64 engine(seed_ + calls_++);
    const float keep = float(1 / (1 - rate_));
    mask_.resize(x.batch(), x.values.cols());
    for (Eigen::Index i = 0; i < mask_.size(); ++i)
        mask_.data()[i] = double(engine() >> 11) * 0x1p-53 < rate_ ? 0.0f : keep;
    return {x.values.cwiseProduct(mask_), x.shape};
}

LOWBIT_NN_INLINE tensor dropout::backward(const tensor& dy) {
    detail::check_backward(*this, ready_, dy, shape_, mask_.rows());
    return {dy.values.cwiseProduct(mask_), shape_};
}
#endif

}  // namespace lowbit::nn
