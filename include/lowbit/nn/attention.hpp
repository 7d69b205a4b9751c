// lowbit/nn/attention.hpp: multi-head self-attention over tokens, as PyTorch's
// MultiheadAttention (batch first, no masks, no bias_k/v):
//
//   [Q K V] = X W_qkv^T + b_qkv                           (linear dim -> 3 dim, on every token)
//   per sample and head h (channels h*d .. h*d + d - 1, d = dim / heads):
//     S_h = Q_h K_h^T / sqrt(d),  P_h = softmax(S_h) by rows,  O_h = P_h V_h
//   Y = [O_1 ... O_heads] W_proj^T + b_proj                (linear dim -> dim)
//
// Every multiplication is a GEMM on a datapath: the two projections on their own (they are
// linear layers: weights and activations quantized as any), Q K^T and P V on the attention's
// `datapath` with its *activation* quantizer on both operands (both are activations), one GEMM
// per sample and head (so a range-biased quantizer scales each sample's and head's matrix on its
// own). The softmax computes in fp32, its output rounded by `output` (output_quantizer.hpp).
//
// Structured skipping (set_active_channels): only the listed channels of the heads run: their
// rows of Q, K and V (the qkv projection's outputs), their terms of Q K^T, their columns of P V
// and their inputs of the output projection. A head with no channel left is skipped whole. The
// scale stays 1 / sqrt(d) (the network is not retrained for the smaller heads).
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/linear.hpp>
#include <lowbit/nn/output_quantizer.hpp>
#include <lowbit/nn/softmax.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lowbit::nn {

class multi_head_attention : public datapath_layer {
public:
    input_quantizer output{};  // of the softmax

    multi_head_attention(int dim, int heads, std::uint64_t seed = 1);

    int dim() const { return dim_; }
    int heads() const { return heads_; }
    int head_dim() const { return dim_ / heads_; }
    linear& qkv() { return qkv_; }
    linear& proj() { return proj_; }

    LOWBIT_NN_INLINE std::string describe() const override;
    LOWBIT_NN_INLINE shape3 output_shape(shape3 in) const override;

    // Runs only these channels (ascending, in [0, dim)); empty: all.
    void set_active_channels(std::vector<int> channels);
    const std::vector<int>& active_channels() const { return active_; }

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;

    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;

    LOWBIT_NN_INLINE std::vector<parameter*> parameters() override;
    LOWBIT_NN_INLINE std::vector<std::pair<std::string, parameter*>> named_parameters() override;
    std::vector<layer*> sublayers() override { return {&qkv_, &proj_}; }
    std::unique_ptr<layer> clone() const override { return std::make_unique<multi_head_attention>(*this); }

private:
    struct head_state {
        gemm_operands scores, values;  // quantized (Q, K^T) and (P, V)
        matrix probabilities;          // softmax output
    };

    static int checked(int dim, int heads);
    static std::vector<int> shifted(const std::vector<int>& v, int by);
    // datapath_gemm, but plain fp32 inference (no spec, no quantizers, nothing kept) multiplies the
    // tiny matrices directly, without datapath_gemm's copies of its operands.
    static matrix multiply(const matrix& a, const matrix& b, const gemm_datapath& d, gemm_operands* keep);
    // Both operands of Q K^T and P V are activations: the activation quantizer on both.
    gemm_datapath activation_products() const;

    int dim_, heads_;
    linear qkv_, proj_;
    std::vector<std::vector<int>> head_channels_;
    std::vector<int> active_;
    std::vector<head_state> kept_;
    shape3 shape_;
    Eigen::Index batch_ = 0;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE multi_head_attention::multi_head_attention(int dim, int heads, std::uint64_t seed) : dim_(dim), heads_(heads), qkv_(checked(dim, heads), 3 * dim, seed), proj_(dim, dim, seed + 1) {
    set_active_channels({});
}

LOWBIT_NN_INLINE std::string multi_head_attention::describe() const {
    return "multi_head_attention " + std::to_string(dim_) + ", " + std::to_string(heads_) + " heads";
}

LOWBIT_NN_INLINE shape3 multi_head_attention::output_shape(shape3 in) const {
    if (!in.is_tokens() || in.channels != dim_)
        throw std::invalid_argument("lowbit::nn: " + describe() + ": input shape " + in.to_string() +
                                    " is not tokens of " + std::to_string(dim_) + " features");
    return in;
}

LOWBIT_NN_INLINE void multi_head_attention::set_active_channels(std::vector<int> channels) {
    std::vector<int> qkv_rows;
    for (int part = 0; part < 3; ++part)
        for (const int c : channels) qkv_rows.push_back(part * dim_ + c);
    qkv_.set_active(qkv_rows, {});          // checks range and order
    proj_.set_active({}, channels);
    head_channels_.assign(std::size_t(heads_), {});
    const int d = head_dim();
    for (int c = 0; c < dim_; ++c)
        if (channels.empty() || std::binary_search(channels.begin(), channels.end(), c))
            head_channels_[std::size_t(c / d)].push_back(c);
    active_ = std::move(channels);
}

LOWBIT_NN_INLINE tensor multi_head_attention::forward(const tensor& x, pass p) {
    detail::check_input(*this, x, output_shape(x.shape));
    const tensor qkv = qkv_.forward(x, p);
    const auto rows = token_rows(qkv);  // (batch * tokens) x 3 dim
    const int t = x.shape.tokens();
    const float scale = float(1 / std::sqrt(double(head_dim())));
    const gemm_datapath products = activation_products();
    batch_ = x.batch(), shape_ = x.shape;
    ready_ = p == pass::training;
    if (ready_) kept_.assign(std::size_t(batch_ * heads_), {});
    tensor heads{matrix::Zero(batch_, x.values.cols()), x.shape};
    Eigen::Map<matrix> o(heads.values.data(), batch_ * t, dim_);
    for (Eigen::Index n = 0; n < batch_; ++n)
        for (int h = 0; h < heads_; ++h) {
            const std::vector<int>& ch = head_channels_[std::size_t(h)];
            if (ch.empty()) continue;
            const auto sample = rows.middleRows(n * t, t);
            const matrix q = sample(Eigen::all, shifted(ch, 0));
            const matrix kt = sample(Eigen::all, shifted(ch, dim_)).transpose();
            const matrix v = sample(Eigen::all, shifted(ch, 2 * dim_));
            head_state* keep = ready_ ? &kept_[std::size_t(n * heads_ + h)] : nullptr;
            matrix probabilities = multiply(q, kt, products, keep ? &keep->scores : nullptr) * scale;
            softmax_rows(probabilities);
            if (keep) keep->probabilities = probabilities;  // before `output`: softmax's own gradient
            detail::quantize_output(output, probabilities);
            o.middleRows(n * t, t)(Eigen::all, ch) = multiply(probabilities, v, products, keep ? &keep->values : nullptr);
        }
    return proj_.forward(heads, p);
}

LOWBIT_NN_INLINE tensor multi_head_attention::backward(const tensor& dy) {
    detail::check_backward(*this, ready_, dy, shape_, batch_);
    const tensor dheads = proj_.backward(dy);
    const auto dout = token_rows(dheads);
    const gemm_datapath products = activation_products();
    const int t = shape_.tokens();
    const float scale = float(1 / std::sqrt(double(head_dim())));
    tensor dqkv{matrix::Zero(batch_, Eigen::Index(t) * 3 * dim_), token_shape(shape_.height, shape_.width, 3 * dim_)};
    Eigen::Map<matrix> g(dqkv.values.data(), batch_ * t, 3 * dim_);
    for (Eigen::Index n = 0; n < batch_; ++n)
        for (int h = 0; h < heads_; ++h) {
            const std::vector<int>& ch = head_channels_[std::size_t(h)];
            if (ch.empty()) continue;
            const head_state& k = kept_[std::size_t(n * heads_ + h)];
            const matrix d_o = dout.middleRows(n * t, t)(Eigen::all, ch);
            // O = P_q V_q: dP = dO V_q^T, dV = P_q^T dO; S = scale Q_q K_q^T (straight-through)
            // (or through the products' quantized accumulation, times clip factors: operand_gradients)
            const auto fine_values = operand_gradients(k.values, d_o, products);
            const matrix dp = fine_values ? matrix(fine_values->a) : matrix(d_o * k.values.activations.transpose());
            const matrix dv = fine_values ? matrix(fine_values->b) : matrix(k.values.weights.transpose() * d_o);
            const matrix ds = softmax_rows_backward(k.probabilities, dp) * scale;
            const auto fine_scores = operand_gradients(k.scores, ds, products);
            const matrix dq = fine_scores ? matrix(fine_scores->a) : matrix(ds * k.scores.activations.transpose());
            const matrix dk = fine_scores ? matrix(fine_scores->b.transpose()) : matrix(ds.transpose() * k.scores.weights);
            auto sample = g.middleRows(n * t, t);
            sample(Eigen::all, shifted(ch, 0)) = dq;
            sample(Eigen::all, shifted(ch, dim_)) = dk;
            sample(Eigen::all, shifted(ch, 2 * dim_)) = dv;
        }
    return qkv_.backward(dqkv);
}

LOWBIT_NN_INLINE std::vector<parameter*> multi_head_attention::parameters() {
    return {&qkv_.weight(), &qkv_.bias(), &proj_.weight(), &proj_.bias()};
}

LOWBIT_NN_INLINE std::vector<std::pair<std::string, parameter*>> multi_head_attention::named_parameters() {
    return {{"qkv.weight", &qkv_.weight()}, {"qkv.bias", &qkv_.bias()},
            {"proj.weight", &proj_.weight()}, {"proj.bias", &proj_.bias()}};
}

LOWBIT_NN_INLINE int multi_head_attention::checked(int dim, int heads) {
    if (dim < 1 || heads < 1 || dim % heads != 0)
        throw std::invalid_argument("lowbit::nn::multi_head_attention: dim = " + std::to_string(dim) +
                                    ", heads = " + std::to_string(heads) + ": heads must divide dim");
    return dim;
}

LOWBIT_NN_INLINE std::vector<int> multi_head_attention::shifted(const std::vector<int>& v, int by) {
    std::vector<int> out(v);
    for (int& x : out) x += by;
    return out;
}

LOWBIT_NN_INLINE matrix multi_head_attention::multiply(const matrix& a, const matrix& b, const gemm_datapath& d, gemm_operands* keep) {
    if (keep == nullptr && is_plain_fp32(d)) return a * b;
    return datapath_gemm(a, b, d, keep);
}

LOWBIT_NN_INLINE gemm_datapath multi_head_attention::activation_products() const {
    gemm_datapath d = datapath;
    d.weights = d.activations;
    if (d.spec) d.spec->input_a = d.spec->input_b;
    if (d.blocks) d.blocks->weights = d.blocks->activations;
    if (d.clipping) d.clipping->weights = d.clipping->activations;
    if (d.lns) d.lns->spec.input_a = d.lns->spec.input_b;
    return d;
}
#endif

}  // namespace lowbit::nn
