// lowbit/nn/pooling.hpp: max and average pooling over non-overlapping size x size windows
// (stride = size; rows and columns that do not fill a window are dropped, as floor mode does).
#pragma once

#include <lowbit/datapath/tile_pool.hpp>
#include <lowbit/nn/layer.hpp>

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
        const bool track = p == pass::training;  // only the backward pass needs the winners
        lowbit::detail::parallel_for(x.batch(), x.values.size(), parallel_threshold, [&](Eigen::Index n) {
            const float* in = x.values.row(n).data();
            float* out = y.values.row(n).data();
            int* const best = Kind == pooling_kind::max ? argmax + n * out_shape.size() : nullptr;
            if (Kind == pooling_kind::max && size == 2 && in_shape.width % 2 == 0) {
                const int plane_in = in_shape.height * in_shape.width, plane_out = out_shape.height * out_shape.width;
                std::vector<float> pair_max(std::size_t(2 * plane_out));
                std::vector<int> pair_best(track ? pair_max.size() : 0);
                for (int c = 0; c < out_shape.channels; ++c)
                    (track ? max_2x2<true> : max_2x2<false>)(in + c * plane_in, c * plane_in, out_shape.height,
                                                             out_shape.width, out + c * plane_out,
                                                             best + c * plane_out, pair_max.data(), pair_best.data());
                return;
            }
            for (int c = 0; c < out_shape.channels; ++c)
                for (int oy = 0; oy < out_shape.height; ++oy) {
                    const int o = (c * out_shape.height + oy) * out_shape.width;
                    const int first = (c * in_shape.height + oy * size) * in_shape.width;
                    int* const row_best = Kind == pooling_kind::max ? best + o : nullptr;
                    if (size == 2)  // the usual window: a constant stride, which compilers vectorize
                        pool_row<2>(in, first, in_shape.width, 2, out_shape.width, out + o, row_best, inv_area);
                    else
                        pool_row<0>(in, first, in_shape.width, size, out_shape.width, out + o, row_best, inv_area);
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
    bool batch_separable() const override { return true; }

private:
    // The maxima of one channel plane in 2 x 2 windows when the input's width is even
    // (the usual case): first the larger of each horizontal pair over the whole plane (one long
    // loop: the pairs of consecutive rows are contiguous), then the larger of the two pairs of each
    // window. The rule is the one below (the first maximum in the order (0,0), (0,1), (1,0), (1,1)
    // wins ties, the first NaN wins over everything): pairs keep their first element on ties and
    // the lower pair wins only when strictly larger (or NaN where the upper is not). With Track,
    // best receives the winners' indices (plane_index + their index in the plane).
    template <bool Track>
    static void max_2x2(const float* __restrict in, int plane_index, int out_height, int out_width,
                        float* __restrict out, int* __restrict best, float* __restrict pair_max,
                        int* __restrict pair_best) {
        const auto second_wins = [](float first, float second) { return (second > first) | ((second != second) & (first == first)); };
        const int pairs = 2 * out_height * out_width;
        for (int k = 0; k < pairs; ++k) {
            const float a = in[2 * k], b = in[2 * k + 1];
            const bool take = second_wins(a, b);
            pair_max[k] = take ? b : a;
            if constexpr (Track) pair_best[k] = plane_index + 2 * k + int(take);
        }
        for (int oy = 0; oy < out_height; ++oy) {
            const int upper = 2 * oy * out_width, lower = upper + out_width, o = oy * out_width;
            for (int ox = 0; ox < out_width; ++ox) {
                const float a = pair_max[upper + ox], b = pair_max[lower + ox];
                const bool take = second_wins(a, b);
                out[o + ox] = take ? b : a;
                if constexpr (Track) best[o + ox] = take ? pair_best[lower + ox] : pair_best[upper + ox];
            }
        }
    }

    // One row of outputs: the window's elements in order (row i, column j) in the outer loops and
    // the row's outputs inside, so that the inner loop has no branch and a fixed stride (Stride, or
    // `size` when Stride is 0) and compilers vectorize it. (Per output, element by element, the
    // comparison was a mispredicted branch per input on real data: most of the layer's time.)
    template <int Stride>
    static void pool_row(const float* in, int first, int in_width, int size, int width, float* __restrict acc,
                         int* __restrict best, float inv_area) {
        const int stride = Stride != 0 ? Stride : size;
        for (int i = 0; i < stride; ++i)
            for (int j = 0; j < stride; ++j) {
                const int start = first + i * in_width + j;
                const float* __restrict v = in + start;
                if constexpr (Kind == pooling_kind::max) {
                    if (i == 0 && j == 0) {
                        for (int ox = 0; ox < width; ++ox) acc[ox] = v[ox * stride], best[ox] = start + ox * stride;
                        continue;
                    }
                    // The first maximum wins ties; the first NaN wins over everything, as in
                    // PyTorch (a NaN input is not silently dropped). The running maximum is NaN
                    // exactly when a NaN has been taken. (Bitwise & and |: no branches.)
                    for (int ox = 0; ox < width; ++ox) {
                        const float x = v[ox * stride], a = acc[ox];
                        const bool take = (x > a) | ((x != x) & (a == a));
                        acc[ox] = take ? x : a;
                        best[ox] = take ? start + ox * stride : best[ox];
                    }
                } else {
                    if (i == 0 && j == 0)
                        for (int ox = 0; ox < width; ++ox) acc[ox] = 0.0f;
                    for (int ox = 0; ox < width; ++ox) acc[ox] += v[ox * stride];
                }
            }
        if constexpr (Kind == pooling_kind::average)
            for (int ox = 0; ox < width; ++ox) acc[ox] *= inv_area;
    }

    shape3 in_, out_;
    int size_;
    std::vector<int> argmax_;  // max: per output, the input index it came from
    Eigen::Index batch_ = 0;
    bool ready_ = false;
};

using max_pool2d = pool2d<pooling_kind::max>;
using avg_pool2d = pool2d<pooling_kind::average>;

}  // namespace lowbit::nn
