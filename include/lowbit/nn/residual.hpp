// lowbit/nn/residual.hpp: a residual block, y = x + body(x), where the body is a network of its
// own (a pre-LN transformer block is two: x + attention(LN(x)), then x + mlp(LN(x))).
//
//   lowbit::nn::network body(lowbit::nn::token_shape(4, 4, 64));
//   body.add("ln", lowbit::nn::layer_norm(64)).add("attn", lowbit::nn::multi_head_attention(64, 4));
//   net.add("block1_attn", lowbit::nn::residual(std::move(body)));
//
// The body must give back the shape it takes, and the block takes only that shape: otherwise an
// exception names both shapes. Parameters are named "<body layer>.<parameter>".
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/network.hpp>

#include <memory>
#include <string>
#include <utility>

namespace lowbit::nn {

class residual : public layer {
public:
    explicit residual(network body);

    network& body() { return body_; }

    // "residual x + body(x), body: ln (layer_norm 64), attn (multi_head_attention 64, 4 heads)"
    LOWBIT_NN_INLINE std::string describe() const override;
    LOWBIT_NN_INLINE shape3 output_shape(shape3 in) const override;

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;
    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;

    std::vector<parameter*> parameters() override { return body_.parameters(); }
    std::vector<std::pair<std::string, parameter*>> named_parameters() override { return body_.named_parameters(); }
    LOWBIT_NN_INLINE std::vector<layer*> sublayers() override;
    std::unique_ptr<layer> clone() const override { return std::make_unique<residual>(*this); }

private:
    network body_;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE residual::residual(network body) : body_(std::move(body)) {
    if (body_.output_shape() != body_.input_shape())
        throw std::invalid_argument("lowbit::nn::residual: the body takes " + body_.input_shape().to_string() +
                                    " but makes " + body_.output_shape().to_string() +
                                    ": x + body(x) needs both shapes equal");
}

LOWBIT_NN_INLINE std::string residual::describe() const {
    std::string s = "residual x + body(x), body:";
    for (std::size_t i = 0; i < body_.size(); ++i)
        s += (i ? ", " : " ") + body_.name(i) + " (" + body_[i].describe() + ")";
    return s;
}

LOWBIT_NN_INLINE shape3 residual::output_shape(shape3 in) const {
    if (in != body_.input_shape())
        throw std::invalid_argument("lowbit::nn: residual: input shape " + in.to_string() +
                                    " is not the shape its body takes, " + body_.input_shape().to_string());
    return in;
}

LOWBIT_NN_INLINE tensor residual::forward(const tensor& x, pass p) {
    detail::check_input(*this, x, body_.input_shape());
    tensor y = body_.forward(x, p);
    y.values += x.values;
    return y;
}

LOWBIT_NN_INLINE tensor residual::backward(const tensor& dy) {
    tensor dx = body_.backward(dy);
    dx.values += dy.values;
    return dx;
}

LOWBIT_NN_INLINE std::vector<layer*> residual::sublayers() {
    std::vector<layer*> out;
    for (std::size_t i = 0; i < body_.size(); ++i) out.push_back(&body_[i]);
    return out;
}
#endif

}  // namespace lowbit::nn
