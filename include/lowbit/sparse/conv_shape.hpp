// lowbit/sparse/conv_shape.hpp: the shape of one (possibly grouped) convolution layer as the sparse
// accelerator models see it: K output channels, C input channels, an H x W input plane (before
// padding), R x S filters, a stride, zero padding on every side and `groups` (AlexNet's conv2,
// conv4 and conv5 have 2: output channel k reads only the C / groups input channels of its group).
//
// Layouts used with it (row-major, one sample):
//   weights      K x (C / groups) x R x S    (lowbit's conv weights: filters x (c, r, s))
//   activations  C x H x W
// A fully connected layer of n inputs and m outputs is the shape {m, n, 1, 1, 1, 1, 1, 0}.
//
// parse_conv_shape reads "K,C,H,W,R,S,stride,pad[,groups]", the scnn program's --layer.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit::sparse {

struct conv_shape {
    int K = 1, C = 1, H = 1, W = 1, R = 1, S = 1;
    int stride = 1, pad = 0, groups = 1;

    int out_h() const { return (H + 2 * pad - R) / stride + 1; }
    int out_w() const { return (W + 2 * pad - S) / stride + 1; }
    int channels_per_group() const { return C / groups; }   // input channels each output channel reads
    int filters_per_group() const { return K / groups; }
    std::int64_t weight_count() const { return std::int64_t(K) * channels_per_group() * R * S; }
    std::int64_t activation_count() const { return std::int64_t(C) * H * W; }
    // Filter rows r in [0, R) that input row y meets at an output row inside the plane, i.e. with
    // (y + pad - r) a multiple of the stride and (y + pad - r) / stride in [0, out_h()); the same
    // for columns with S and out_w().
    int useful_rows(int y) const { return useful_taps(y, R, out_h()); }
    int useful_cols(int x) const { return useful_taps(x, S, out_w()); }

    // Multiplies of the dense layer: every output of every channel over the filter taps that meet
    // an input value; taps over the zero padding are no multiplies (a dense accelerator does not
    // fetch the padding either). So with no zero anywhere, the zero-skipping count equals this.
    std::int64_t dense_macs() const {
        std::int64_t rows = 0, cols = 0;
        for (int y = 0; y < H; ++y) rows += useful_rows(y);
        for (int x = 0; x < W; ++x) cols += useful_cols(x);
        return std::int64_t(K) * channels_per_group() * rows * cols;
    }
    // The GEMM's multiply-accumulates after im2col, padding included: K x out_h x out_w x C/groups x R x S.
    std::int64_t im2col_macs() const {
        return std::int64_t(K) * out_h() * out_w() * channels_per_group() * R * S;
    }

    std::string to_string() const {
        return std::to_string(K) + "," + std::to_string(C) + "," + std::to_string(H) + "," + std::to_string(W) + "," +
               std::to_string(R) + "," + std::to_string(S) + "," + std::to_string(stride) + "," + std::to_string(pad) +
               "," + std::to_string(groups);
    }

    // Throws std::invalid_argument naming the first field that makes the layer impossible.
    const conv_shape& validate() const {
        const auto fail = [&](const std::string& why) {
            throw std::invalid_argument("lowbit::sparse::conv_shape " + to_string() + ": " + why);
        };
        // Bounds keep every count of the models inside 64 bits and every index inside int.
        const int limit = 1 << 20;
        const auto in_range = [&](const char* name, int v, int lowest) {
            if (v < lowest || v > limit)
                fail(std::string(name) + " = " + std::to_string(v) + " must be in [" + std::to_string(lowest) + ", " +
                     std::to_string(limit) + "]");
        };
        in_range("K", K, 1), in_range("C", C, 1), in_range("H", H, 1), in_range("W", W, 1);
        in_range("R", R, 1), in_range("S", S, 1), in_range("stride", stride, 1), in_range("pad", pad, 0);
        in_range("groups", groups, 1);
        if (C % groups != 0 || K % groups != 0)
            fail("groups = " + std::to_string(groups) + " must divide both K and C");
        if (R > H + 2 * pad || S > W + 2 * pad) fail("the R x S filter is larger than the padded input plane");
        if (std::int64_t(H) * W > std::int64_t(1) << 26 || weight_count() > std::int64_t(1) << 32 ||
            activation_count() > std::int64_t(1) << 32)
            fail("the layer is too large to model");
        return *this;
    }

private:
    int useful_taps(int y, int taps, int out) const {
        int n = 0;
        for (int r = 0; r < taps; ++r) {
            const int v = y + pad - r;
            n += v >= 0 && v % stride == 0 && v / stride < out;
        }
        return n;
    }
};

// "K,C,H,W,R,S,stride,pad[,groups]" -> a validated shape; throws std::invalid_argument saying what
// is malformed.
inline conv_shape parse_conv_shape(const std::string& text) {
    std::vector<int> fields;
    std::size_t begin = 0;
    for (;;) {
        const std::size_t end = text.find(',', begin);
        const std::string field = text.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
        std::size_t used = 0;
        long value = 0;
        try {
            value = std::stol(field, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (field.empty() || used != field.size() || value < -(1L << 30) || value > (1L << 30))
            throw std::invalid_argument("lowbit::sparse::parse_conv_shape: '" + text + "': field " +
                                        std::to_string(fields.size() + 1) + " ('" + field +
                                        "') is not an integer; expected K,C,H,W,R,S,stride,pad[,groups]");
        fields.push_back(int(value));
        if (end == std::string::npos) break;
        begin = end + 1;
    }
    if (fields.size() != 8 && fields.size() != 9)
        throw std::invalid_argument("lowbit::sparse::parse_conv_shape: '" + text + "' has " +
                                    std::to_string(fields.size()) +
                                    " fields; expected 8 or 9: K,C,H,W,R,S,stride,pad[,groups]");
    conv_shape s{fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], fields[7],
                 fields.size() == 9 ? fields[8] : 1};
    s.validate();
    return s;
}

}  // namespace lowbit::sparse
