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
//
// Training in micro-batches. When every layer is batch-separable (layer::batch_separable: the
// plain fp32 conv2d and linear, relu, pooling, flatten) or a batch_norm, forward(x,
// pass::training) cuts the batch into micro-batches of about micro_batch() samples (16; near-equal
// sizes, at least two of them) and runs each through its own copy of the layers (made once; their
// parameters set from the network's before every batch), on lowbit's threads, one micro-batch per
// thread at a time; a batch_norm normalizes by the statistics of the whole batch, summed in the
// same order as over the batch joined. Backward runs the micro-batches the same way and adds
// their parameter gradients into the network's in micro-batch order. Threads then meet only at
// the batch norms, not inside every layer's products (31 times per step of the flagship's CNN),
// and each thread's micro-batch stays in its cache. The cut depends on the batch size only, so
// results are the same bits for any number of threads; they differ from training the batch
// whole (set_micro_batch(0)) only in how parameter gradients are summed (per micro-batch, then
// added) and in the float products' blocking.
#pragma once

#include <lowbit/datapath/thread_count.hpp>
#include <lowbit/datapath/tile_pool.hpp>
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

namespace detail {
// A batch cut into consecutive micro-batches of rows[b] samples, and joined back.
inline std::vector<tensor> split_rows(const tensor& t, const std::vector<Eigen::Index>& rows) {
    std::vector<tensor> parts;
    Eigen::Index begin = 0;
    for (const Eigen::Index r : rows) parts.push_back({t.values.middleRows(begin, r), t.shape}), begin += r;
    return parts;
}
inline tensor join_rows(const std::vector<tensor>& parts) {
    Eigen::Index batch = 0;
    for (const tensor& p : parts) batch += p.batch();
    tensor t{matrix(batch, parts.front().values.cols()), parts.front().shape};
    Eigen::Index begin = 0;
    for (const tensor& p : parts) t.values.middleRows(begin, p.batch()) = p.values, begin += p.batch();
    return t;
}
inline std::vector<const tensor*> pointers_to(const std::vector<tensor>& parts) {
    std::vector<const tensor*> out;
    for (const tensor& p : parts) out.push_back(&p);
    return out;
}
}  // namespace detail

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

    // Samples per micro-batch in training (see above); 0 trains every batch whole.
    void set_micro_batch(int samples);
    int micro_batch() const { return micro_batch_; }

private:
    LOWBIT_NN_INLINE std::vector<Eigen::Index> micro_batches(Eigen::Index batch);
    LOWBIT_NN_INLINE tensor forward_in_micro_batches(const tensor& x, const std::vector<Eigen::Index>& rows);
    LOWBIT_NN_INLINE tensor backward_in_micro_batches(const tensor& grad);
    bool is_batch_norm(std::size_t i) const { return dynamic_cast<const batch_norm*>(layers_[i].get()) != nullptr; }
    // Batch norm i of every micro-batch, and each micro-batch's tensor: what batch_norm's
    // forward and backward over micro-batches take.
    LOWBIT_NN_INLINE std::vector<batch_norm*> batch_norms_at(std::size_t i, std::size_t blocks);
    // Layer i of micro-batch b: the network's own for b = 0, a copy otherwise.
    layer& layer_for(std::size_t b, std::size_t i) { return b == 0 ? *layers_[i] : *copies_[b - 1][i]; }

    shape3 input_, output_;
    std::vector<std::string> names_;
    std::vector<std::unique_ptr<layer>> layers_;
    int micro_batch_ = 16;
    std::vector<std::vector<std::unique_ptr<layer>>> copies_;  // copies_[b - 1]: the layers of micro-batch b
    std::vector<Eigen::Index> split_;  // samples per micro-batch of the last training forward; empty: whole
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE network::network(const network& other)
    : input_(other.input_), output_(other.output_), names_(other.names_), micro_batch_(other.micro_batch_) {
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
    copies_.clear();
    split_.clear();
    return *this;
}

LOWBIT_NN_INLINE layer& network::at(const std::string& name) {
    for (std::size_t i = 0; i < names_.size(); ++i)
        if (names_[i] == name) return *layers_[i];
    throw std::out_of_range("lowbit::nn::network: no layer named '" + name + "'");
}

LOWBIT_NN_INLINE tensor network::forward(tensor x, pass p) {
    split_.clear();
    if (p == pass::training) {
        std::vector<Eigen::Index> rows = micro_batches(x.batch());
        if (rows.size() > 1) {
            tensor y = forward_in_micro_batches(x, rows);
            split_ = std::move(rows);
            return y;
        }
    }
    for (auto& l : layers_) x = l->forward(x, p);
    return x;
}

LOWBIT_NN_INLINE tensor network::backward(tensor grad) {
    if (!split_.empty()) return backward_in_micro_batches(grad);
    for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) grad = (*it)->backward(grad);
    return grad;
}

LOWBIT_NN_INLINE void network::set_micro_batch(int samples) {
    if (samples < 0)
        throw std::invalid_argument("lowbit::nn::network::set_micro_batch: " + std::to_string(samples) +
                                    " samples; give a positive number, or 0 to train every batch whole");
    micro_batch_ = samples;
    split_.clear();
    if (samples == 0) copies_.clear();  // (their memory: they keep their micro-batches' activations)
}

LOWBIT_NN_INLINE std::vector<Eigen::Index> network::micro_batches(Eigen::Index batch) {
    if (micro_batch_ == 0 || batch < 2 * Eigen::Index(micro_batch_) || layers_.empty()) return {};
    for (std::size_t i = 0; i < layers_.size(); ++i)
        if (!layers_[i]->batch_separable() && !is_batch_norm(i)) return {};
    const Eigen::Index blocks = (batch + micro_batch_ - 1) / micro_batch_;
    std::vector<Eigen::Index> rows(static_cast<std::size_t>(blocks));
    for (Eigen::Index b = 0; b < blocks; ++b) rows[std::size_t(b)] = batch * (b + 1) / blocks - batch * b / blocks;
    // A copy per micro-batch beyond the first, made once (again when a layer has changed kind).
    for (auto& copy : copies_)
        for (std::size_t i = 0; i < layers_.size(); ++i)
            if (copy[i]->batch_separable() != layers_[i]->batch_separable() || copy[i]->describe() != layers_[i]->describe()) {
                copies_.clear();
                break;
            }
    while (copies_.size() + 1 < rows.size()) {
        std::vector<std::unique_ptr<layer>> copy;
        for (const auto& l : layers_) copy.push_back(l->clone());
        copies_.push_back(std::move(copy));
    }
    return rows;
}

LOWBIT_NN_INLINE tensor network::forward_in_micro_batches(const tensor& x, const std::vector<Eigen::Index>& rows) {
    const std::size_t blocks = rows.size();
    const int threads = lowbit::detail::thread_count(0);
    std::vector<tensor> xs = detail::split_rows(x, rows);
    lowbit::detail::for_each_tile(std::int64_t(blocks) - 1, threads, [&](std::int64_t t) {
        for (std::size_t i = 0; i < layers_.size(); ++i) {  // the copies' parameters are the network's
            const std::vector<parameter*> from = layers_[i]->parameters(), to = copies_[std::size_t(t)][i]->parameters();
            for (std::size_t k = 0; k < from.size(); ++k) to[k]->value = from[k]->value;
        }
    });
    for (std::size_t i = 0; i < layers_.size();) {
        if (is_batch_norm(i)) {
            xs = batch_norm::forward(batch_norms_at(i, blocks), detail::pointers_to(xs), pass::training);
            ++i;
            continue;
        }
        std::size_t end = i;
        while (end < layers_.size() && !is_batch_norm(end)) ++end;
        lowbit::detail::for_each_tile(std::int64_t(blocks), threads, [&](std::int64_t b) {
            for (std::size_t k = i; k < end; ++k) xs[std::size_t(b)] = layer_for(std::size_t(b), k).forward(xs[std::size_t(b)], pass::training);
        });
        i = end;
    }
    return detail::join_rows(xs);
}

LOWBIT_NN_INLINE tensor network::backward_in_micro_batches(const tensor& grad) {
    const std::vector<Eigen::Index>& rows = split_;
    const std::size_t blocks = rows.size();
    Eigen::Index batch = 0;
    for (const Eigen::Index r : rows) batch += r;
    if (grad.batch() != batch || grad.shape != output_ || grad.values.cols() != output_.size())
        throw std::invalid_argument("lowbit::nn::network::backward: the gradient is " + std::to_string(grad.batch()) +
                                    " x " + grad.shape.to_string() + " but the last training forward gave " +
                                    std::to_string(batch) + " x " + output_.to_string());
    const int threads = lowbit::detail::thread_count(0);
    std::vector<tensor> gs = detail::split_rows(grad, rows);
    lowbit::detail::for_each_tile(std::int64_t(blocks) - 1, threads, [&](std::int64_t t) {
        for (auto& l : copies_[std::size_t(t)])
            for (parameter* p : l->parameters()) p->grad.setZero();
    });
    for (std::size_t i = layers_.size(); i > 0;) {
        if (is_batch_norm(i - 1)) {
            gs = batch_norm::backward(batch_norms_at(i - 1, blocks), detail::pointers_to(gs));
            --i;
            continue;
        }
        std::size_t begin = i;
        while (begin > 0 && !is_batch_norm(begin - 1)) --begin;
        lowbit::detail::for_each_tile(std::int64_t(blocks), threads, [&](std::int64_t b) {
            for (std::size_t k = i; k-- > begin;) gs[std::size_t(b)] = layer_for(std::size_t(b), k).backward(gs[std::size_t(b)]);
        });
        i = begin;
    }
    // The micro-batches' parameter gradients, added into the network's in their order (each
    // parameter on one thread).
    std::vector<std::vector<parameter*>> sums;  // the network's parameter, then its copies'
    Eigen::Index values = 0;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
        const std::vector<parameter*> into = layers_[i]->parameters();
        for (std::size_t k = 0; k < into.size(); ++k) {
            if (!into[k]->trainable) continue;
            sums.push_back({into[k]});
            for (std::size_t b = 1; b < blocks; ++b) sums.back().push_back(copies_[b - 1][i]->parameters()[k]);
            values += into[k]->grad.size() * Eigen::Index(blocks - 1);
        }
    }
    lowbit::detail::parallel_for(std::int64_t(sums.size()), values, parallel_threshold, [&](std::int64_t j) {
        const std::vector<parameter*>& p = sums[std::size_t(j)];
        for (std::size_t b = 1; b < p.size(); ++b) p[0]->grad += p[b]->grad;
    });
    return detail::join_rows(gs);
}

LOWBIT_NN_INLINE std::vector<batch_norm*> network::batch_norms_at(std::size_t i, std::size_t blocks) {
    std::vector<batch_norm*> norms(blocks);
    for (std::size_t b = 0; b < blocks; ++b) norms[b] = static_cast<batch_norm*>(&layer_for(b, i));
    return norms;
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
    copies_.clear();
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
