// lowbit/nn/pooling.hpp: max and average pooling over non-overlapping size x size windows
// (stride = size; rows and columns that do not fill a window are dropped, as floor mode does).
#pragma once

#include <lowbit/datapath/tile_pool.hpp>
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
        // Locals, not members, in the loop: the stores to argmax_ (ints) could otherwise alias them.
        const shape3 in_shape = in_, out_shape = out_;
        const int size = size_;
        int* const argmax = argmax_.data();
        lowbit::detail::parallel_for(x.batch(), x.values.size(), parallel_threshold, [&](Eigen::Index n) {
            const float* in = x.values.row(n).data();
            float* out = y.values.row(n).data();
            for (int c = 0; c < out_shape.channels; ++c)
                for (int oy = 0; oy < out_shape.height; ++oy)
                    for (int ox = 0; ox < out_shape.width; ++ox) {
                        const int o = (c * out_shape.height + oy) * out_shape.width + ox;
                        float acc = Kind == pooling_kind::max ? -std::numeric_limits<float>::infinity() : 0.0f;
                        int best = -1;
                        for (int i = 0; i < size; ++i)
                            for (int j = 0; j < size; ++j) {
                                const int at = (c * in_shape.height + oy * size + i) * in_shape.width + ox * size + j;
                                if constexpr (Kind == pooling_kind::max) {
                                    // NaN wins, as in PyTorch: a NaN input is not silently dropped.
                                    if (best < 0 || in[at] > acc || std::isnan(in[at])) acc = in[at], best = at;
                                    if (std::isnan(acc)) i = size, j = size;
                                } else {
                                    acc += in[at];
                                }
                            }
                        out[o] = Kind == pooling_kind::max ? acc : acc * inv_area;
                        if constexpr (Kind == pooling_kind::max) argmax[n * out_shape.size() + o] = best;
                    }
        });
        ready_ = p == pass::training;
        return y;
    }

    tensor backward(const tensor& dy) override {
        detail::check_backward(*this, ready_, dy, out_, batch_);
        tensor dx{matrix::Zero(dy.batch(), in_.size()), in_};
        const float inv_area = 1.0f / float(size_ * size_);
        lowbit::detail::parallel_for(dy.batch(), dx.values.size(), parallel_threshold, [&](Eigen::Index n) {
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
        });
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
