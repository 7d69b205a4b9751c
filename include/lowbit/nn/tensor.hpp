// lowbit/nn/tensor.hpp: a batch of feature maps, the values that flow between layers.
//
// One row per sample; a sample's values are channels x height x width in that (CHW) order, so a
// flattened feature vector is the same row with shape {features, 1, 1}.
#pragma once

#include <lowbit/datapath/conv.hpp>

#include <Eigen/Core>

#include <string>

namespace lowbit::nn {

using matrix = matrix_rm;  // row-major float matrix

struct shape3 {
    int channels = 1, height = 1, width = 1;

    int size() const { return channels * height * width; }
    bool operator==(const shape3&) const = default;
    std::string to_string() const {
        return std::to_string(channels) + " x " + std::to_string(height) + " x " + std::to_string(width);
    }
};

struct tensor {
    matrix values;  // batch x shape.size()
    shape3 shape;

    Eigen::Index batch() const { return values.rows(); }
};

}  // namespace lowbit::nn
