// lowbit/nn/gemm_layer.hpp: the base of the layers whose work is a GEMM (linear, conv2d): each
// carries its own gemm_datapath, so a network can run one datapath everywhere or one per layer.
#pragma once

#include <lowbit/nn/gemm_datapath.hpp>
#include <lowbit/nn/layer.hpp>

#include <random>

namespace lowbit::nn {

class gemm_layer : public layer {
public:
    gemm_datapath datapath;

    // The weights (outputs x K) and the bias (1 x outputs): what batch-norm folding rewrites.
    virtual parameter& weight() = 0;
    virtual parameter& bias() = 0;
};

namespace detail {
// He (Kaiming) uniform initialisation for a ReLU network, seeded: the same weights everywhere.
inline void he_uniform(matrix& w, int fan_in, std::uint64_t seed) {
    std::mt19937_64 engine(seed);  // mt19937_64's output is fixed by the standard
    const double limit = std::sqrt(6.0 / fan_in);
    for (Eigen::Index i = 0; i < w.size(); ++i) {
        const double u = double(engine() >> 11) * 0x1p-53;  // [0, 1), not the implementation-defined distributions
        w.data()[i] = float((2 * u - 1) * limit);
    }
}
}  // namespace detail

}  // namespace lowbit::nn
