// lowbit/nn/network.hpp: a sequential network of named layers.
//
//   lowbit::nn::network net({1, 28, 28});
//   net.add("conv1", lowbit::nn::conv2d({.channels = 1, .height = 28, .width = 28, .padding = 1}, 32));
//   net.add("relu1", lowbit::nn::relu{});
//   ...
//   net.set_datapath(d);                            // every conv2d and linear
//   tensor logits = net.forward(x, pass::inference);
//   net.save("weights.bin"); net.load("weights.bin");   // weights_file.hpp's format
//
// Shapes are checked when a layer is added: a layer that cannot take the previous output is an
// exception naming both. Parameters are named "<layer>.<parameter>" ("conv1.weight").
#pragma once

#include <lowbit/nn/batch_norm.hpp>
#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/gemm_layer.hpp>
#include <lowbit/nn/layer.hpp>
#include <lowbit/nn/weights_file.hpp>

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace lowbit::nn {

class network {
public:
    explicit network(shape3 input) : input_(input), output_(input) {}

    network(const network& other);
    network& operator=(const network& other) {
        if (this != &other) *this = network(other);
        return *this;
    }
    network(network&&) noexcept = default;
    network& operator=(network&&) noexcept = default;

    template <class Layer>
        requires std::is_base_of_v<layer, std::decay_t<Layer>>
    network& add(std::string name, Layer&& l) {
        return add(std::move(name), std::unique_ptr<layer>(std::make_unique<std::decay_t<Layer>>(std::forward<Layer>(l))));
    }
    network& add(std::string name, std::unique_ptr<layer> l);

    shape3 input_shape() const { return input_; }
    shape3 output_shape() const { return output_; }
    std::size_t size() const { return layers_.size(); }
    layer& operator[](std::size_t i) { return *layers_.at(i); }
    const layer& operator[](std::size_t i) const { return *layers_.at(i); }
    const std::string& name(std::size_t i) const { return names_.at(i); }
    layer& at(const std::string& name);

    tensor forward(tensor x, pass p);
    // After forward(x, pass::training): adds every parameter's gradient; returns dL/dx.
    tensor backward(tensor grad);

    std::vector<parameter*> parameters(bool trainable_only = false);
    void zero_grad();

    // Every layer with a datapath (conv2d, linear, attention's products, ...) runs on `d`, those
    // inside residual blocks included (network::at(name) reaches one layer's datapath).
    void set_datapath(const gemm_datapath& d);

    void save(const std::filesystem::path& path);
    // The file must hold exactly this network's parameters (names, order, shapes): otherwise an
    // exception says what differs, and no parameter changes.
    void load(const std::filesystem::path& path);

    std::vector<std::pair<std::string, parameter*>> named_parameters();

    std::string describe() const;

private:
    shape3 input_, output_;
    std::vector<std::string> names_;
    std::vector<std::unique_ptr<layer>> layers_;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE network::network(const network& other) : input_(other.input_), output_(other.output_), names_(other.names_) {
    for (const auto& l : other.layers_) layers_.push_back(l->clone());
}

LOWBIT_NN_INLINE network& network::add(std::string name, std::unique_ptr<layer> l) {
    if (name.empty() || name.find('.') != std::string::npos)
        throw std::invalid_argument("lowbit::nn::network: layer name '" + name + "' must be non-empty and without '.'");
    for (const auto& n : names_)
        if (n == name) throw std::invalid_argument("lowbit::nn::network: a layer is already named '" + name + "'");
    output_ = l->output_shape(output_);  // throws when the layer does not fit
    names_.push_back(std::move(name));
    layers_.push_back(std::move(l));
    return *this;
}

LOWBIT_NN_INLINE layer& network::at(const std::string& name) {
    for (std::size_t i = 0; i < names_.size(); ++i)
        if (names_[i] == name) return *layers_[i];
    throw std::out_of_range("lowbit::nn::network: no layer named '" + name + "'");
}

LOWBIT_NN_INLINE tensor network::forward(tensor x, pass p) {
    for (auto& l : layers_) x = l->forward(x, p);
    return x;
}

LOWBIT_NN_INLINE tensor network::backward(tensor grad) {
    for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) grad = (*it)->backward(grad);
    return grad;
}

LOWBIT_NN_INLINE std::vector<parameter*> network::parameters(bool trainable_only) {
    std::vector<parameter*> out;
    for (std::size_t i = 0; i < layers_.size(); ++i)
        for (parameter* p : layers_[i]->parameters())
            if (!trainable_only || p->trainable) out.push_back(p);
    return out;
}

LOWBIT_NN_INLINE void network::zero_grad() {
    for (parameter* p : parameters()) p->grad.setZero();
}

LOWBIT_NN_INLINE void network::set_datapath(const gemm_datapath& d) {
    for (auto& l : layers_)
        visit_layers(*l, [&](layer& inner) {
            if (auto* g = dynamic_cast<datapath_layer*>(&inner)) g->datapath = d;
        });
}

LOWBIT_NN_INLINE void network::save(const std::filesystem::path& path) {
    std::vector<tensor_view> views;
    for (auto& [name, p] : named_parameters())
        views.push_back({name, {p->value.rows(), p->value.cols()},
                         std::span<const float>(p->value.data(), std::size_t(p->value.size()))});
    save_weights(path, views);
}

LOWBIT_NN_INLINE void network::load(const std::filesystem::path& path) {
    std::vector<tensor_ref> refs;
    for (auto& [name, p] : named_parameters())
        refs.push_back({name, {p->value.rows(), p->value.cols()},
                        std::span<float>(p->value.data(), std::size_t(p->value.size()))});
    load_weights(path, refs);
}

LOWBIT_NN_INLINE std::vector<std::pair<std::string, parameter*>> network::named_parameters() {
    std::vector<std::pair<std::string, parameter*>> out;
    for (std::size_t i = 0; i < layers_.size(); ++i)
        for (auto& [name, p] : layers_[i]->named_parameters()) out.emplace_back(names_[i] + "." + name, p);
    return out;
}

LOWBIT_NN_INLINE std::string network::describe() const {
    std::string s;
    shape3 shape = input_;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
        shape = layers_[i]->output_shape(shape);
        s += "  " + names_[i] + ": " + layers_[i]->describe() + " -> " + shape.to_string() + "\n";
    }
    return s;
}
#endif

// The network with every batch_norm that directly follows a conv2d or linear folded into it:
// W'[c] = W[c] s_c, b'_c = (b_c - mean_c) s_c + beta_c with s_c = gamma_c / sqrt(var_c + eps),
// which is what inference hardware runs (one GEMM and a bias, no normalization). A batch_norm
// after anything else is an error: it could not be folded.
LOWBIT_NN_INLINE network fold_batch_norm(const network& net);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE network fold_batch_norm(const network& net) {
    network source(net);
    network out(source.input_shape());
    for (std::size_t i = 0; i < source.size(); ++i) {
        if (dynamic_cast<batch_norm*>(&source[i]) != nullptr)
            throw std::invalid_argument("lowbit::nn::fold_batch_norm: layer '" + source.name(i) +
                                        "' is a batch_norm that does not follow a conv2d or linear");
        std::unique_ptr<layer> l = source[i].clone();
        if (i + 1 < source.size())
            if (auto* g = dynamic_cast<gemm_layer*>(l.get()))
                if (auto* bn = dynamic_cast<batch_norm*>(&source[i + 1])) {
                    for (int c = 0; c < bn->channels(); ++c) {
                        const double s = double(bn->gamma()(0, c)) / std::sqrt(double(bn->running_var()(0, c)) + bn->eps());
                        g->weight().value.row(c) = (g->weight().value.row(c).cast<double>() * s).cast<float>();
                        g->bias().value(0, c) = float((double(g->bias().value(0, c)) - bn->running_mean()(0, c)) * s +
                                                      bn->beta()(0, c));
                    }
                    out.add(source.name(i), std::move(l));
                    ++i;  // the batch_norm is gone
                    continue;
                }
        out.add(source.name(i), std::move(l));
    }
    return out;
}
#endif

}  // namespace lowbit::nn
