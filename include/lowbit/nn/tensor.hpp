// lowbit/nn/tensor.hpp: a batch of feature maps or of tokens, the values that flow between layers.
//
// One row per sample. Images (layout::chw): a sample's values are channels x height x width in
// that order, so a flattened feature vector is the same row with shape {features, 1, 1}.
// Tokens (layout::tokens, the transformers' batch x tokens x features): the tokens of a height x
// width grid, row by row, each token's `channels` features contiguous (HWC). A batch of tokens is
// then, in the same memory, one (batch * tokens) x features row-major matrix: a linear layer
// applies to every token with one GEMM, and the grid is still known to a convolution over it.
#pragma once

#include <lowbit/datapath/conv.hpp>
#include <lowbit/nn/definitions.hpp>

#include <Eigen/Core>

#include <string>

namespace lowbit::nn {

using matrix = matrix_rm;  // row-major float matrix

enum class layout : unsigned char { chw, tokens };

struct shape3 {
    int channels = 1, height = 1, width = 1;  // tokens: features, and the token grid's rows and columns
    layout order = layout::chw;

    int size() const { return channels * height * width; }
    int tokens() const { return height * width; }
    bool is_tokens() const { return order == layout::tokens; }
    bool operator==(const shape3&) const = default;
    std::string to_string() const;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::string shape3::to_string() const {
    if (is_tokens())
        return std::to_string(tokens()) + " tokens (" + std::to_string(height) + " x " + std::to_string(width) +
               ") x " + std::to_string(channels) + " features";
    return std::to_string(channels) + " x " + std::to_string(height) + " x " + std::to_string(width);
}
#endif

// The shape of a height x width grid of tokens with `features` values each.
LOWBIT_NN_INLINE shape3 token_shape(int height, int width, int features);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE shape3 token_shape(int height, int width, int features) {
    return {.channels = features, .height = height, .width = width, .order = layout::tokens};
}
#endif

struct tensor {
    matrix values;  // batch x shape.size()
    shape3 shape;

    Eigen::Index batch() const { return values.rows(); }
};

// A token tensor's values as one (batch * tokens) x features matrix (the same memory).
LOWBIT_NN_INLINE Eigen::Map<const matrix> token_rows(const tensor& x);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE Eigen::Map<const matrix> token_rows(const tensor& x) {
    return {x.values.data(), x.batch() * x.shape.tokens(), x.shape.channels};
}
#endif

}  // namespace lowbit::nn
