// examples/octav_methods.hpp: the clipping methods of octav_qat (and of bench/clipping_bench.cpp,
// which times their training steps), and how they set the CNN's datapaths.
#pragma once

#include "fashion_mnist_cnn.hpp"

#include <lowbit/nn/clipped_inputs.hpp>
#include <lowbit/nn/gemm_layer.hpp>

#include <stdexcept>
#include <string>

namespace lowbit_examples {

struct method {
    std::string name;
    nn::clip_scale_rule rule;
    lowbit::clip_gradient weights, activations;
    bool calibrated_once;  // scales computed once (nn::calibrate_clipping), then fixed
};

inline method method_named(const std::string& name) {
    using nn::clip_scale_rule;
    using lowbit::clip_gradient;
    if (name == "max_ste") return {name, clip_scale_rule::max, clip_gradient::ste, clip_gradient::ste, false};
    if (name == "percentile") return {name, clip_scale_rule::percentile, clip_gradient::ste, clip_gradient::ste, true};
    if (name == "octav_static") return {name, clip_scale_rule::octav, clip_gradient::mad, clip_gradient::pwl, true};
    if (name == "octav_dynamic") return {name, clip_scale_rule::octav, clip_gradient::mad, clip_gradient::pwl, false};
    throw std::invalid_argument("--methods: '" + name + "' is not one of max_ste, percentile, octav_static, octav_dynamic");
}

// Every GEMM of the CNN on clipped operands: `bits` inside, 8 bits for conv1 and fc2.
inline void quantize(nn::network& net, const method& m, int bits, double percentile) {
    for (const std::string layer : {"conv1", "conv2", "fc1", "fc2"}) {
        const int b = layer == "conv1" || layer == "fc2" ? 8 : bits;
        const bool conv = layer.starts_with("conv");
        auto& l = dynamic_cast<nn::gemm_layer&>(net.at(layer));
        l.datapath = {};
        l.datapath.clipping = nn::clipped_inputs{
            .weights = {.bits = b, .per_channel = conv, .rule = m.rule, .gradient = m.weights},
            .activations = {.bits = b, .sign = lowbit::signedness::unsigned_values, .rule = m.rule,
                            .gradient = m.activations}};
        if (m.rule == nn::clip_scale_rule::percentile)
            l.datapath.clipping->weights.percentile = l.datapath.clipping->activations.percentile = percentile;
    }
}

}  // namespace lowbit_examples
