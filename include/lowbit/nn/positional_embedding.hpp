// lowbit/nn/positional_embedding.hpp: a learned positional embedding, one vector per token added
// to every sample (tokens x features parameters, initialised N(0, 0.02^2) and seeded, as ViTs do).
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/layer.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <numbers>
#include <random>
#include <string>

namespace lowbit::nn {

namespace detail {
// Normal(0, sigma^2) values by Box-Muller on mt19937_64's bits (fixed by the standard, unlike the
// library's distributions): the same values on every platform.
LOWBIT_NN_INLINE void normal_init(matrix& w, double sigma, std::uint64_t seed);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void normal_init(matrix& w, double sigma, std::uint64_t seed) {
    std::mt19937_64 engine(seed);
    const auto uniform = [&] { return (double(engine() >> 11) + 0.5) * 0x1p-53; };  // (0, 1)
    for (Eigen::Index i = 0; i < w.size(); ++i) {
        const double u1 = uniform(), u2 = uniform();
        w.data()[i] = float(sigma * std::sqrt(-2 * std::log(u1)) * std::cos(2 * std::numbers::pi * u2));
    }
}
#endif
}  // namespace detail

class positional_embedding : public layer {
public:
    // For inputs of shape `tokens` (a token shape: token_shape(height, width, features)).
    explicit positional_embedding(shape3 tokens, std::uint64_t seed = 1);

    std::string describe() const override { return "positional_embedding " + shape_.to_string(); }
    LOWBIT_NN_INLINE shape3 output_shape(shape3 in) const override;
    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;
    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;
    std::vector<parameter*> parameters() override { return {&embedding_}; }
    std::unique_ptr<layer> clone() const override { return std::make_unique<positional_embedding>(*this); }

private:
    shape3 shape_;
    parameter embedding_;
    Eigen::Index batch_ = 0;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE positional_embedding::positional_embedding(shape3 tokens, std::uint64_t seed) : shape_(tokens) {
    if (!tokens.is_tokens() || tokens.size() < 1)
        throw std::invalid_argument("lowbit::nn::positional_embedding: shape " + tokens.to_string() +
                                    " is not a token shape (token_shape(height, width, features))");
    embedding_ = {"embedding", matrix(1, tokens.size()), matrix::Zero(1, tokens.size())};
    detail::normal_init(embedding_.value, 0.02, seed);
}

LOWBIT_NN_INLINE shape3 positional_embedding::output_shape(shape3 in) const {
    if (in != shape_)
        throw std::invalid_argument("lowbit::nn: " + describe() + ": input shape " + in.to_string() + " does not match");
    return in;
}

LOWBIT_NN_INLINE tensor positional_embedding::forward(const tensor& x, pass p) {
    detail::check_input(*this, x, shape_);
    tensor y{x.values.rowwise() + embedding_.value.row(0), shape_};
    ready_ = p == pass::training;
    batch_ = x.batch();
    return y;
}

LOWBIT_NN_INLINE tensor positional_embedding::backward(const tensor& dy) {
    detail::check_backward(*this, ready_, dy, shape_, batch_);
    embedding_.grad += dy.values.colwise().sum();
    return dy;
}
#endif

}  // namespace lowbit::nn
