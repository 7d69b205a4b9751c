// lowbit/nn/clipping_calibration.hpp: static calibration of clipped operands (nn/clipped_inputs.hpp):
// the scales computed once, from a few batches, then fixed, the baseline the OCTAV paper sets
// against computing them in every training step.
//
//   net.set_datapath(d);                                   // d.clipping: rule octav (or max, percentile)
//   lowbit::nn::calibrate_clipping(net, five_batches);     // now rule fixed, with the mean scales
//
// Each batch runs through the network at inference; every conv2d and linear layer with clipping
// then takes, for its weights and for its activations, the mean over the batches of the scales its
// rules gave (one, or one per output channel; the weights' are the same in every batch), as
// clip_scale_rule::fixed. The other fields (bits, sign, gradient) stay.
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/gemm_layer.hpp>
#include <lowbit/nn/network.hpp>

#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit::nn {

// std::invalid_argument, with nothing changed: no batch; no layer with clipping; a layer with
// clipping that is not a conv2d or linear (attention's products, a depthwise convolution: they
// keep no scales), or that skips work (set_active: its scales cover only the active outputs).
LOWBIT_NN_INLINE void calibrate_clipping(network& net, std::span<const tensor> batches);

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void calibrate_clipping(network& net, std::span<const tensor> batches) {
    const auto fail = [](const std::string& why) { throw std::invalid_argument("lowbit::nn::calibrate_clipping: " + why); };
    if (batches.empty()) fail("no batch to calibrate on");
    std::vector<gemm_layer*> layers;
    for (std::size_t i = 0; i < net.size(); ++i)
        visit_layers(net[i], [&](layer& l) {
            auto* d = dynamic_cast<datapath_layer*>(&l);
            if (d == nullptr || !d->datapath.clipping) return;
            auto* g = dynamic_cast<gemm_layer*>(&l);
            if (g == nullptr)
                fail(l.describe() + " has clipping but keeps no scales: only conv2d and linear layers can be "
                     "calibrated (give the others clip_scale_rule::fixed yourself)");
            if (g->skips()) fail(l.describe() + " skips work (set_active): calibrate with every output and input active");
            layers.push_back(g);
        });
    if (layers.empty()) fail("no conv2d or linear layer of the network has datapath.clipping set");
    std::vector<clip_scales> sums(layers.size());
    for (const tensor& batch : batches) {
        net.forward(batch, pass::inference);
        for (std::size_t l = 0; l < layers.size(); ++l) {
            const clip_scales& s = layers[l]->last_clip_scales();
            const auto add = [](std::vector<double>& sum, const std::vector<double>& v) {
                sum.resize(v.size(), 0.0);
                for (std::size_t i = 0; i < v.size(); ++i) sum[i] += v[i];
            };
            add(sums[l].weights, s.weights);
            add(sums[l].activations, s.activations);
        }
    }
    for (std::size_t l = 0; l < layers.size(); ++l) {
        clipped_inputs& c = *layers[l]->datapath.clipping;
        const auto fix = [&](clip_quantizer& q, std::vector<double> sum) {
            for (double& s : sum) s /= double(batches.size());
            q.rule = clip_scale_rule::fixed;
            q.scales = std::move(sum);
        };
        fix(c.weights, std::move(sums[l].weights));
        fix(c.activations, std::move(sums[l].activations));
    }
}
#endif

}  // namespace lowbit::nn
