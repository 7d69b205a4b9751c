// lowbit/nn/layer.hpp: what every layer of a lowbit::nn network provides.
//
// forward(x, pass::training) keeps what backward needs; backward(dL/dy) then returns dL/dx and
// adds the parameters' gradients into parameter::grad (so gradients of several batches can be
// accumulated; network::zero_grad clears them).
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/tensor.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lowbit::nn {

enum class pass { inference, training };

struct parameter {
    std::string name;        // "weight", "bias", ... (the network prefixes the layer's name)
    matrix value;
    matrix grad;             // same shape as value
    bool trainable = true;   // false: state saved with the weights (batch norm's running statistics)
};

class layer {
public:
    virtual ~layer() = default;

    virtual std::string describe() const = 0;          // e.g. "conv2d 32->64 3x3 pad 1"
    virtual shape3 output_shape(shape3 input) const = 0;  // throws std::invalid_argument if it does not fit
    virtual tensor forward(const tensor& x, pass p) = 0;
    virtual tensor backward(const tensor& grad_output) = 0;
    virtual std::vector<parameter*> parameters() { return {}; }
    virtual std::unique_ptr<layer> clone() const = 0;

    // Layers made of layers (a residual block, attention's projections) name their parts, so that
    // a network reaches every one (set_datapath) and names every parameter uniquely
    // ("block1_attn.attn.qkv.weight").
    virtual std::vector<layer*> sublayers() { return {}; }
    LOWBIT_NN_INLINE virtual std::vector<std::pair<std::string, parameter*>> named_parameters();

    // True when a sample's output depends on that sample and the parameters alone (and so do its
    // input gradient and its share of the parameters' gradients): the network may then train the
    // batch in micro-batches, each on its own copy of the layer (network.hpp). False unless a
    // layer says so: batch statistics, a scale computed from the whole batch, random numbers
    // keyed by the position in the batch, counted events all need the batch together.
    virtual bool batch_separable() const { return false; }
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::vector<std::pair<std::string, parameter*>> layer::named_parameters() {
    std::vector<std::pair<std::string, parameter*>> out;
    for (parameter* p : parameters()) out.emplace_back(p->name, p);
    return out;
}
#endif

// Calls f on l and on every layer inside it, depth first.
template <class F>
void visit_layers(layer& l, F&& f) {
    f(l);
    for (layer* inner : l.sublayers()) visit_layers(*inner, f);
}

namespace detail {
// Throws when a layer is handed an input of the wrong shape, naming the layer and both shapes.
LOWBIT_NN_INLINE void check_input(const layer& l, const tensor& x, shape3 expected);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void check_input(const layer& l, const tensor& x, shape3 expected) {
    if (x.shape != expected || x.values.cols() != expected.size())
        throw std::invalid_argument("lowbit::nn: " + l.describe() + ": input is " + x.shape.to_string() + " (" +
                                    std::to_string(x.values.cols()) + " values per sample) but the layer expects " +
                                    expected.to_string());
}
#endif
LOWBIT_NN_INLINE void check_backward(const layer& l, bool ready);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void check_backward(const layer& l, bool ready) {
    if (!ready)
        throw std::logic_error("lowbit::nn: " + l.describe() + ": backward without a forward(x, pass::training) before it");
}
#endif
// Throws unless dy has the shape and batch of the last training forward's output.
LOWBIT_NN_INLINE void check_backward(const layer& l, bool ready, const tensor& dy, shape3 shape, Eigen::Index batch);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void check_backward(const layer& l, bool ready, const tensor& dy, shape3 shape, Eigen::Index batch) {
    check_backward(l, ready);
    if (dy.shape != shape || dy.values.cols() != shape.size() || dy.batch() != batch)
        throw std::invalid_argument("lowbit::nn: " + l.describe() + ": backward got a gradient of " +
                                    std::to_string(dy.batch()) + " x " + dy.shape.to_string() + " (" +
                                    std::to_string(dy.values.cols()) + " values per sample) but the forward made " +
                                    std::to_string(batch) + " x " + shape.to_string());
}
#endif
}  // namespace detail

}  // namespace lowbit::nn
