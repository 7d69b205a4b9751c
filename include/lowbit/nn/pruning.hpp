// lowbit/nn/pruning.hpp: magnitude pruning of conv2d and linear weights (Han et al., "Learning both
// Weights and Connections", NeurIPS 2015): the smallest-magnitude weights of a layer are set to
// zero and kept there by a mask, and pruning proceeds in steps toward a target density with
// fine-tuning between them (iterative prune-and-fine-tune), the way SCNN's sparse networks were
// made.
//
//   lowbit::nn::magnitude_pruner pruner(net, {{"conv1", 0.5}, {"conv2", 0.35}, {"fc1", 0.1}});
//   for (int step = 1; step <= steps; ++step) {
//       pruner.prune(lowbit::nn::pruning_density(target, step, steps))  // or prune_step(step, steps)
//       ... training: after every optimizer step, pruner.apply() ...    // masks kept through training
//   }
//
// A layer's density is the fraction of its weights kept (biases are never pruned). The mask keeps
// exactly round(density x weights) weights: the largest magnitudes, ties broken toward the lower
// index, so a mask is the same on every platform. Once pruned, a weight stays pruned: a later step
// ranks only the surviving weights (pruned ones count as magnitude 0), so densities only fall.
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/gemm_layer.hpp>
#include <lowbit/nn/network.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace lowbit::nn {

// The density of step `step` of `steps` on the way from 1 to `target`: geometric (each step keeps
// the same fraction of the survivors), so early steps, when the network has most slack, prune the
// most weights in absolute terms; step == steps gives target.
LOWBIT_NN_INLINE double pruning_density(double target, int step, int steps);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE double pruning_density(double target, int step, int steps) {
    if (!(target > 0.0 && target <= 1.0) || steps < 1 || step < 0 || step > steps)
        throw std::invalid_argument("lowbit::nn::pruning_density: target = " + std::to_string(target) + ", step = " +
                                    std::to_string(step) + ", steps = " + std::to_string(steps) +
                                    ": need 0 < target <= 1 and 0 <= step <= steps, steps >= 1");
    return std::pow(target, double(step) / double(steps));
}
#endif

// 1 where w's magnitude ranks among the round(density x size) largest, else 0. Entries where
// `previous` (if given) is 0 never come back.
LOWBIT_NN_INLINE matrix magnitude_mask(const matrix& w, double density, const matrix* previous = nullptr);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE matrix magnitude_mask(const matrix& w, double density, const matrix* previous) {
    if (!(density >= 0.0 && density <= 1.0))
        throw std::invalid_argument("lowbit::nn::magnitude_mask: density = " + std::to_string(density) +
                                    " must be in [0, 1]");
    if (previous != nullptr && (previous->rows() != w.rows() || previous->cols() != w.cols()))
        throw std::invalid_argument("lowbit::nn::magnitude_mask: the previous mask's shape differs from the weights'");
    const std::size_t n = std::size_t(w.size());
    const std::size_t keep = std::size_t(std::llround(density * double(n)));
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t(0));
    const auto magnitude = [&](std::size_t i) {
        if (previous != nullptr && previous->data()[i] == 0.0f) return -1.0f;  // below every survivor
        const float m = std::fabs(w.data()[i]);
        return m == m ? m : 0.0f;  // NaN ranks as 0
    };
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return magnitude(a) > magnitude(b); });
    matrix mask = matrix::Zero(w.rows(), w.cols());
    for (std::size_t i = 0; i < keep; ++i)
        if (magnitude(order[i]) >= 0.0f) mask.data()[order[i]] = 1.0f;
    return mask;
}
#endif

class magnitude_pruner {
public:
    struct target {
        std::string layer;  // a conv2d or linear of the network
        double density;     // final fraction of its weights kept, in (0, 1]
    };

    // Layers are found by name; anything but a gemm_layer (conv2d, linear), an unknown name or a
    // density outside (0, 1] is an exception naming it. The network must outlive the pruner.
    magnitude_pruner(network& net, std::vector<target> targets);

    // Step `step` of `steps` of the schedule: every layer to pruning_density(its target, step, steps).
    void prune_step(int step, int steps);
    // Every layer straight to its target density (one-shot pruning).
    void prune_to_targets() { prune_step(1, 1); }

    // Zeroes the pruned weights: call after every optimizer step, so that the masks hold through
    // training (an optimizer with momentum would otherwise move them off zero).
    void apply();
    // Zeroes the pruned weights' gradients (before an optimizer step: keeps their moments at 0).
    void mask_gradients();

    std::size_t size() const { return layers_.size(); }
    const std::string& name(std::size_t i) const { return layers_.at(i).goal.layer; }
    const matrix& mask(std::size_t i) const { return layers_.at(i).mask; }
    // The fraction of the layer's weights that are non-zero now.
    double density(std::size_t i) const;

private:
    struct pruned_layer {
        target goal;
        gemm_layer* layer;
        matrix mask;
    };
    static void prune_layer(pruned_layer& l, double density);
    std::vector<pruned_layer> layers_;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE magnitude_pruner::magnitude_pruner(network& net, std::vector<target> targets) {
    for (const auto& t : targets) {
        auto* g = dynamic_cast<gemm_layer*>(&net.at(t.layer));
        if (g == nullptr)
            throw std::invalid_argument("lowbit::nn::magnitude_pruner: layer '" + t.layer +
                                        "' is not a conv2d or linear");
        if (!(t.density > 0.0 && t.density <= 1.0))
            throw std::invalid_argument("lowbit::nn::magnitude_pruner: layer '" + t.layer +
                                        "': density = " + std::to_string(t.density) + " must be in (0, 1]");
        const matrix& w = g->weight().value;
        layers_.push_back({t, g, matrix::Ones(w.rows(), w.cols())});
    }
}

LOWBIT_NN_INLINE void magnitude_pruner::prune_step(int step, int steps) {
    for (auto& l : layers_) prune_layer(l, pruning_density(l.goal.density, step, steps));
}

LOWBIT_NN_INLINE void magnitude_pruner::apply() {
    for (auto& l : layers_) l.layer->weight().value.array() *= l.mask.array();
}

LOWBIT_NN_INLINE void magnitude_pruner::mask_gradients() {
    for (auto& l : layers_) l.layer->weight().grad.array() *= l.mask.array();
}

LOWBIT_NN_INLINE double magnitude_pruner::density(std::size_t i) const {
    const matrix& w = layers_.at(i).layer->weight().value;
    return w.size() == 0 ? 0.0 : double((w.array() != 0.0f).count()) / double(w.size());
}

LOWBIT_NN_INLINE void magnitude_pruner::prune_layer(pruned_layer& l, double density) {
    l.mask = magnitude_mask(l.layer->weight().value, density, &l.mask);
    l.layer->weight().value.array() *= l.mask.array();
}
#endif

}  // namespace lowbit::nn
