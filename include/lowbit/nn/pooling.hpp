// lowbit/nn/pooling.hpp: max and average pooling over non-overlapping size x size windows
// (stride = size; rows and columns that do not fill a window are dropped, as floor mode does).
#pragma once

#include <lowbit/nn/layer.hpp>

#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace lowbit::nn {

enum class pooling_kind { max, average };

template <pooling_kind Kind>
class pool2d : public layer {
public:
    pool2d(shape3 input, int size) : in_(input), size_(size) {
        if (size < 1 || size > input.height || size > input.width)
            throw std::invalid_argument("lowbit::nn::pool2d: size = " + std::to_string(size) +
                                        " must be in [1, min(height, width)] of the input " + input.to_string());
        out_ = {in_.channels, in_.height / size, in_.width / size};
    }

    std::string describe() const override {
        return std::string(Kind == pooling_kind::max ? "max_pool " : "avg_pool ") + std::to_string(size_) + "x" +
               std::to_string(size_) + " on " + in_.to_string();
    }
    shape3 output_shape(shape3 in) const override {
        if (in != in_) throw std::invalid_argument("lowbit::nn: " + describe() + ": input shape " + in.to_string() + " does not match");
        return out_;
    }

    tensor forward(const tensor& x, pass p) override {
        detail::check_input(*this, x, in_);
        tensor y{matrix(x.batch(), out_.size()), out_};
        argmax_.resize(Kind == pooling_kind::max ? std::size_t(x.batch() * out_.size()) : 0);
        batch_ = x.batch();
        const float inv_area = 1.0f / float(size_ * size_);
#pragma omp parallel for schedule(static) if (x.values.size() > parallel_threshold)
        for (Eigen::Index n = 0; n < x.batch(); ++n) {
            const float* in = x.values.row(n).data();
            float* out = y.values.row(n).data();
            for (int c = 0; c < out_.channels; ++c)
                for (int oy = 0; oy < out_.height; ++oy)
                    for (int ox = 0; ox < out_.width; ++ox) {
                        const int o = (c * out_.height + oy) * out_.width + ox;
                        float acc = Kind == pooling_kind::max ? -std::numeric_limits<float>::infinity() : 0.0f;
                        int best = -1;
                        for (int i = 0; i < size_; ++i)
                            for (int j = 0; j < size_; ++j) {
                                const int at = (c * in_.height + oy * size_ + i) * in_.width + ox * size_ + j;
                                if constexpr (Kind == pooling_kind::max) {
                                    // NaN wins, as in PyTorch: a NaN input is not silently dropped.
                                    if (best < 0 || in[at] > acc || std::isnan(in[at])) acc = in[at], best = at;
                                    if (std::isnan(acc)) i = size_, j = size_;
                                } else {
                                    acc += in[at];
                                }
                            }
                        out[o] = Kind == pooling_kind::max ? acc : acc * inv_area;
                        if constexpr (Kind == pooling_kind::max) argmax_[std::size_t(n * out_.size() + o)] = best;
                    }
        }
        ready_ = p == pass::training;
        return y;
    }

    tensor backward(const tensor& dy) override {
        detail::check_backward(*this, ready_, dy, out_, batch_);
        tensor dx{matrix::Zero(dy.batch(), in_.size()), in_};
        const float inv_area = 1.0f / float(size_ * size_);
#pragma omp parallel for schedule(static) if (dx.values.size() > parallel_threshold)
        for (Eigen::Index n = 0; n < dy.batch(); ++n)
            for (int o = 0; o < out_.size(); ++o) {
                if constexpr (Kind == pooling_kind::max) {
                    dx.values(n, argmax_[std::size_t(n * out_.size() + o)]) += dy.values(n, o);
                } else {
                    const int c = o / (out_.height * out_.width), oy = o / out_.width % out_.height, ox = o % out_.width;
                    for (int i = 0; i < size_; ++i)
                        for (int j = 0; j < size_; ++j)
                            dx.values(n, (c * in_.height + oy * size_ + i) * in_.width + ox * size_ + j) +=
                                dy.values(n, o) * inv_area;
                }
            }
        return dx;
    }

    std::unique_ptr<layer> clone() const override { return std::make_unique<pool2d>(*this); }

private:
    shape3 in_, out_;
    int size_;
    std::vector<int> argmax_;  // max: per output, the input index it came from
    Eigen::Index batch_ = 0;
    bool ready_ = false;
};

using max_pool2d = pool2d<pooling_kind::max>;
using avg_pool2d = pool2d<pooling_kind::average>;

}  // namespace lowbit::nn
