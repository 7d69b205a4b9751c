// lowbit/datapath/conv.hpp: 2-D convolution as im2col + lowbit::gemm, so that every
// multiply-accumulate of a convolution runs through a gemm_spec.
//
//   lowbit::conv_geometry g{.channels = 32, .height = 14, .width = 14, .kernel = 3, .padding = 1};
//   lowbit::matrix_rm cols = lowbit::im2col(images, g);      // K x (batch * OH * OW)
//   lowbit::matrix_rm out  = weights * cols;                 // or lowbit::gemm(weights, cols, spec)
//
// Layouts (row-major float matrices):
//   images   batch x (channels * height * width), each sample in CHW order;
//   weights  filters x K, K = channels * kernel * kernel, each filter in (c, i, j) order;
//   cols     K x (batch * OH * OW): row (c, i, j), column (n, oy, ox) holds
//            images(n, c, oy * stride + i - padding, ox * stride + j - padding), 0 outside the image.
// So C = weights * cols holds, in row f and column (n, oy, ox), output channel f of sample n at
// (oy, ox): each output is one dot product over K, in the order (c, i, j), on the datapath.
#pragma once

#include <lowbit/datapath/tile_pool.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace lowbit {

using matrix_rm = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Below this many values the loops run on one thread: starting threads would cost more.
inline constexpr Eigen::Index parallel_threshold = Eigen::Index(1) << 16;

struct conv_geometry {
    int channels = 1, height = 1, width = 1;  // input
    int kernel = 3;                           // square kernel size
    int stride = 1;
    int padding = 0;                          // zeros on every side

    int out_height() const { return (height + 2 * padding - kernel) / stride + 1; }
    int out_width() const { return (width + 2 * padding - kernel) / stride + 1; }
    int patch() const { return channels * kernel * kernel; }  // K of the GEMM
    int input_size() const { return channels * height * width; }

    const conv_geometry& validate() const {
        const auto fail = [](const char* field, int value, const char* why) {
            throw std::invalid_argument(std::string("lowbit::conv_geometry: ") + field + " = " +
                                        std::to_string(value) + " " + why);
        };
        if (channels < 1) fail("channels", channels, "must be >= 1");
        if (height < 1) fail("height", height, "must be >= 1");
        if (width < 1) fail("width", width, "must be >= 1");
        if (kernel < 1) fail("kernel", kernel, "must be >= 1");
        if (stride < 1) fail("stride", stride, "must be >= 1");
        if (padding < 0) fail("padding", padding, "must be >= 0");
        if (kernel > height + 2 * padding || kernel > width + 2 * padding)
            fail("kernel", kernel, "is larger than the padded input");
        return *this;
    }
};

namespace detail {
inline void check_images(Eigen::Index cols, const conv_geometry& g, const char* who) {
    if (cols != g.input_size())
        throw std::invalid_argument(std::string("lowbit::") + who + ": each image has " + std::to_string(cols) +
                                    " values but the geometry's channels x height x width is " +
                                    std::to_string(g.channels) + " x " + std::to_string(g.height) + " x " +
                                    std::to_string(g.width) + " = " + std::to_string(g.input_size()));
}
// The output positions o in [0, count) whose input coordinate o * stride + offset lies in [0, size):
// one range [first, last) (first == last when there is none). im2col and col2im loop over it
// instead of testing every position: no branch per element, and a plain copy when stride is 1.
struct valid_positions {
    int first = 0, last = 0;
};
inline valid_positions positions_inside(int offset, int stride, int size, int count) {
    const int first = std::min(count, offset >= 0 ? 0 : (-offset + stride - 1) / stride);
    const int beyond = size - 1 - offset;  // o * stride <= beyond
    const int last = beyond < 0 ? first : std::clamp(beyond / stride + 1, first, count);
    return {first, last};
}
}  // namespace detail

// cols (K x batch * OH * OW) of `images` (batch x channels * height * width).
inline matrix_rm im2col(const matrix_rm& images, const conv_geometry& g) {
    g.validate();
    detail::check_images(images.cols(), g, "im2col");
    const Eigen::Index batch = images.rows();
    const int oh = g.out_height(), ow = g.out_width(), k = g.kernel;
    const Eigen::Index positions = Eigen::Index(oh) * ow;
    matrix_rm cols(g.patch(), batch * positions);
    detail::parallel_for(g.patch(), cols.size(), parallel_threshold, [&](Eigen::Index row) {
        const int c = int(row / (k * k)), i = int(row / k % k), j = int(row % k);
        float* out = cols.row(row).data();
        const int s = g.stride, offset = j - g.padding;  // x = ox * s + offset
        const detail::valid_positions xs = detail::positions_inside(offset, s, g.width, ow);
        for (Eigen::Index n = 0; n < batch; ++n) {
            const float* image = images.row(n).data() + std::ptrdiff_t(c) * g.height * g.width;
            for (int oy = 0; oy < oh; ++oy, out += ow) {
                const int y = oy * s + i - g.padding;
                if (y < 0 || y >= g.height) {
                    std::fill_n(out, ow, 0.0f);
                    continue;
                }
                const float* in = image + y * g.width;
                std::fill_n(out, xs.first, 0.0f);
                for (int ox = xs.first; ox < xs.last; ++ox) out[ox] = in[ox * s + offset];
                std::fill_n(out + xs.last, ow - xs.last, 0.0f);
            }
        }
    });
    return cols;
}

// The adjoint of im2col: every column entry added back to the pixel it was copied from
// (batch x channels * height * width). This is the input gradient of a convolution.
inline matrix_rm col2im(const matrix_rm& cols, Eigen::Index batch, const conv_geometry& g) {
    g.validate();
    const int oh = g.out_height(), ow = g.out_width(), k = g.kernel;
    const Eigen::Index positions = Eigen::Index(oh) * ow;
    if (cols.rows() != g.patch() || cols.cols() != batch * positions)
        throw std::invalid_argument("lowbit::col2im: cols is " + std::to_string(cols.rows()) + " x " +
                                    std::to_string(cols.cols()) + " but the geometry and batch need " +
                                    std::to_string(g.patch()) + " x " + std::to_string(batch * positions));
    matrix_rm images = matrix_rm::Zero(batch, g.input_size());
    // Parallel over samples: each sample's pixels are written by one thread only.
    detail::parallel_for(batch, cols.size(), parallel_threshold, [&](Eigen::Index n) {
        for (Eigen::Index row = 0; row < g.patch(); ++row) {
            const int c = int(row / (k * k)), i = int(row / k % k), j = int(row % k);
            const float* in = cols.row(row).data() + n * positions;
            float* image = images.row(n).data() + std::ptrdiff_t(c) * g.height * g.width;
            const int s = g.stride, offset = j - g.padding;  // x = ox * s + offset
            const detail::valid_positions xs = detail::positions_inside(offset, s, g.width, ow);
            for (int oy = 0; oy < oh; ++oy, in += ow) {
                const int y = oy * s + i - g.padding;
                if (y < 0 || y >= g.height) continue;
                float* pixels = image + y * g.width;
                for (int ox = xs.first; ox < xs.last; ++ox) pixels[ox * s + offset] += in[ox];
            }
        }
    });
    return images;
}

// C = weights * cols (filters x batch * OH * OW) back to images of the output: batch x
// (filters * OH * OW), each sample in CHW order.
inline matrix_rm columns_to_images(const matrix_rm& c, Eigen::Index batch) {
    const Eigen::Index filters = c.rows(), positions = batch == 0 ? 0 : c.cols() / batch;
    matrix_rm out(batch, filters * positions);
    detail::parallel_for(batch, c.size(), parallel_threshold, [&](Eigen::Index n) {
        for (Eigen::Index f = 0; f < filters; ++f)
            out.row(n).segment(f * positions, positions) = c.row(f).segment(n * positions, positions);
    });
    return out;
}

// The inverse of columns_to_images: images (batch x filters * positions) to filters x batch * positions.
inline matrix_rm images_to_columns(const matrix_rm& images, Eigen::Index filters) {
    const Eigen::Index batch = images.rows(), positions = filters == 0 ? 0 : images.cols() / filters;
    matrix_rm c(filters, batch * positions);
    detail::parallel_for(filters, c.size(), parallel_threshold, [&](Eigen::Index f) {
        for (Eigen::Index n = 0; n < batch; ++n)
            c.row(f).segment(n * positions, positions) = images.row(n).segment(f * positions, positions);
    });
    return c;
}

}  // namespace lowbit
