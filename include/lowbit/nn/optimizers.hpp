// lowbit/nn/optimizers.hpp: optimizers over a network's trainable parameters.
//
//   lowbit::nn::adam opt(net.parameters(true), {.learning_rate = 1e-3});
//   net.zero_grad(); net.forward(...); net.backward(...); opt.step();
//
// Each optimizer keeps its state per parameter in the order it was given; step() reads
// parameter::grad and updates parameter::value. Arithmetic in float, as fp32 training does.
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/layer.hpp>
#include <lowbit/nn/madam.hpp>

#include <cmath>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit::nn {

namespace detail {
LOWBIT_NN_INLINE void check_rate(double value, const char* who, const char* field);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void check_rate(double value, const char* who, const char* field) {
    if (!(value > 0) || !std::isfinite(value))
        throw std::invalid_argument(std::string("lowbit::nn::") + who + ": " + field + " = " + std::to_string(value) +
                                    " must be a positive number");
}
#endif
LOWBIT_NN_INLINE void check_unit(double value, const char* who, const char* field);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void check_unit(double value, const char* who, const char* field) {
    if (!(value >= 0 && value < 1))
        throw std::invalid_argument(std::string("lowbit::nn::") + who + ": " + field + " = " + std::to_string(value) +
                                    " must be in [0, 1)");
}
#endif
}  // namespace detail

struct sgd_options {
    double learning_rate = 0.01;
    double momentum = 0.9;      // v = momentum v + g (+ weight_decay w); w -= learning_rate v
    double weight_decay = 0.0;
};

class sgd {
public:
    sgd(std::vector<parameter*> params, sgd_options options = {});
    void set_learning_rate(double lr) { detail::check_rate(lr, "sgd", "learning_rate"), o_.learning_rate = lr; }

    void step();

private:
    std::vector<parameter*> params_;
    sgd_options o_;
    std::vector<matrix> velocity_;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE sgd::sgd(std::vector<parameter*> params, sgd_options options) : params_(std::move(params)), o_(options) {
    detail::check_rate(o_.learning_rate, "sgd", "learning_rate");
    detail::check_unit(o_.momentum, "sgd", "momentum");
    if (!(o_.weight_decay >= 0 && std::isfinite(o_.weight_decay)))
        throw std::invalid_argument("lowbit::nn::sgd: weight_decay = " + std::to_string(o_.weight_decay) +
                                    " must be >= 0");
    for (parameter* p : params_) velocity_.push_back(matrix::Zero(p->value.rows(), p->value.cols()));
}

LOWBIT_NN_INLINE void sgd::step() {
    for (std::size_t i = 0; i < params_.size(); ++i) {
        parameter& p = *params_[i];
        velocity_[i] = float(o_.momentum) * velocity_[i] + p.grad + float(o_.weight_decay) * p.value;
        p.value -= float(o_.learning_rate) * velocity_[i];
    }
}
#endif

struct adam_options {
    double learning_rate = 1e-3;
    double beta1 = 0.9, beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0;  // decoupled (AdamW): w -= learning_rate * weight_decay * w before the step
};

// Adam (Kingma and Ba) with bias correction; AdamW (Loshchilov and Hutter) when weight_decay > 0,
// as PyTorch's AdamW: the decay scales the weights, it is not added to the gradient.
class adam {
public:
    adam(std::vector<parameter*> params, adam_options options = {});
    void set_learning_rate(double lr) { detail::check_rate(lr, "adam", "learning_rate"), o_.learning_rate = lr; }

    void step();

private:
    std::vector<parameter*> params_;
    adam_options o_;
    std::vector<matrix> m_, v_;
    int t_ = 0;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE adam::adam(std::vector<parameter*> params, adam_options options) : params_(std::move(params)), o_(options) {
    detail::check_rate(o_.learning_rate, "adam", "learning_rate");
    detail::check_unit(o_.beta1, "adam", "beta1");
    detail::check_unit(o_.beta2, "adam", "beta2");
    detail::check_rate(o_.eps, "adam", "eps");
    if (!(o_.weight_decay >= 0 && std::isfinite(o_.weight_decay)))
        throw std::invalid_argument("lowbit::nn::adam: weight_decay = " + std::to_string(o_.weight_decay) +
                                    " must be >= 0");
    for (parameter* p : params_) {
        m_.push_back(matrix::Zero(p->value.rows(), p->value.cols()));
        v_.push_back(matrix::Zero(p->value.rows(), p->value.cols()));
    }
}

LOWBIT_NN_INLINE void adam::step() {
    ++t_;
    const float c1 = float(1 - std::pow(o_.beta1, t_)), c2 = float(1 - std::pow(o_.beta2, t_));
    const float b1 = float(o_.beta1), b2 = float(o_.beta2), lr = float(o_.learning_rate), eps = float(o_.eps);
    for (std::size_t i = 0; i < params_.size(); ++i) {
        parameter& p = *params_[i];
        if (o_.weight_decay > 0) p.value *= float(1 - o_.learning_rate * o_.weight_decay);
        m_[i] = b1 * m_[i] + (1 - b1) * p.grad;
        v_[i] = b2 * v_[i] + (1 - b2) * p.grad.cwiseProduct(p.grad);
        p.value.array() -= lr * (m_[i].array() / c1) / ((v_[i].array() / c2).sqrt() + eps);
    }
}
#endif

// Madam / LNS-Madam (madam.hpp) over a network's parameters: one lowbit::madam per parameter,
// whose weight clamp comes from the parameter's values when this optimizer is made.
// per_parameter gives each parameter options of its own (LNS-Madam: each layer's weights on the
// grid of their own scale, biases and norms without integer steps); a parameter's problem is
// reported with its name.
class madam_optimizer {
public:
    madam_optimizer(std::vector<parameter*> params, madam_options options = {});
    // options[i] for params[i]; std::invalid_argument when the counts differ.
    static madam_optimizer per_parameter(std::vector<parameter*> params, const std::vector<madam_options>& options);
    void step();

private:
    madam_optimizer() = default;
    std::vector<parameter*> params_;
    std::vector<madam> steps_;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE madam_optimizer::madam_optimizer(std::vector<parameter*> params, madam_options options) {
    const std::size_t n = params.size();
    *this = per_parameter(std::move(params), std::vector<madam_options>(n, options));
}

LOWBIT_NN_INLINE madam_optimizer madam_optimizer::per_parameter(std::vector<parameter*> params,
                                                                const std::vector<madam_options>& options) {
    if (options.size() != params.size())
        throw std::invalid_argument("lowbit::nn::madam_optimizer::per_parameter: " + std::to_string(options.size()) +
                                    " options for " + std::to_string(params.size()) + " parameters");
    madam_optimizer o;
    o.params_ = std::move(params);
    for (std::size_t i = 0; i < o.params_.size(); ++i) {
        const parameter& p = *o.params_[i];
        try {
            o.steps_.emplace_back(std::span<const float>(p.value.data(), std::size_t(p.value.size())), options[i]);
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument("lowbit::nn::madam_optimizer: parameter " + std::to_string(i) + " ('" + p.name +
                                        "'): " + e.what());
        }
    }
    return o;
}

LOWBIT_NN_INLINE void madam_optimizer::step() {
    for (std::size_t i = 0; i < params_.size(); ++i) {
        parameter& p = *params_[i];
        steps_[i].step(std::span<float>(p.value.data(), std::size_t(p.value.size())),
                       std::span<const float>(p.grad.data(), std::size_t(p.grad.size())));
    }
}
#endif

}  // namespace lowbit::nn
