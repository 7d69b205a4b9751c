// lowbit/nn/gemm_datapath.hpp: how a layer's GEMM runs: the input quantizers of its weights and
// activations and the accelerator datapath (gemm_spec) that multiplies and accumulates them.
//
//   lowbit::nn::gemm_datapath d{
//       .spec = lowbit::gemm_spec{.product = q_prod, .accumulator = q_acc, .chunk = 16,
//                                 .chunk_accumulator = q_acc},
//       .weights = lowbit::nn::range_biased_float{},       // FP8 M4E3, per-tensor bias
//       .activations = lowbit::nn::range_biased_float{}};
//
// The gradients go straight through the datapath (gradient_mode::ste: those of the fp32 product of
// the quantized operands), or through its quantized accumulation: `gradient` set to
// overflow_only, immediate or recursive masks each product's gradient by the events of its chain
// (lowbit/datapath/gemm_backward.hpp defines them), for every layer that multiplies on it.
//
// No spec: the product is a plain fp32 GEMM (Eigen's, in tiles on lowbit's threads:
// parallel_product.hpp), the fast baseline for training. With a spec, every multiply-accumulate
// goes through lowbit::gemm, and events are counted into `stats` when it is set.
//
// Block-scaled operands (`blocks`: OCP MX, NVFP4, VS-Quant, and per-channel or per-tensor integers
// as VS-Quant's degenerate cases; scaling/block_scaling.hpp): the weights W are cut along their
// rows and the activations X down their columns (both along K) with their block formats, computed
// afresh for each GEMM (activations: per batch), and C = W X runs on lowbit::block_scaled_gemm
// (datapath/block_scaled_gemm.hpp) with the spec's product rounding, accumulation model and
// accumulators (no spec: exact block terms and sum, rounded once to float):
//
//   d.blocks = lowbit::nn::block_scaled_inputs{.weights = lowbit::vsquant(4, 6, 16),
//                                              .activations = lowbit::vsquant(4, 6, 16, lowbit::coarse_scope::per_tensor)};
//
// The gradients go straight through (the dequantized operands' plain product): ste only.
//
// Clipped operands (`clipping`: nn/clipped_inputs.hpp): W and X through OCTAV's clipped uniform
// quantizer, each scale from the tensor as it is quantized (OCTAV, max, percentile) or fixed, and
// their gradients times the clip estimators' factors (ste, pwl, mad); the GEMM then runs on the
// quantized values as the rest of the datapath says (a spec, or the plain fp32 product):
//
//   d.clipping = lowbit::nn::clipped_inputs{.weights = {.bits = 4, .per_channel = true, .gradient = lowbit::clip_gradient::mad},
//                                           .activations = {.bits = 4, .sign = lowbit::signedness::unsigned_values,
//                                                           .gradient = lowbit::clip_gradient::pwl}};
//
// LNS operands (`lns`: logarithmic training, LNS-Madam, papers.md section 4): W and X encoded on
// the LNS grids of lns.spec.input_a and input_b (a per-tensor scale or none), C = W X on
// lowbit::lns_gemm with the spec's conversion, accumulation (per product or bucketed) and
// accumulators (datapath/lns_gemm.hpp), and the two backward products on the same LNS datapath:
// dL/dC encoded by lns.gradients (8- or 5-bit LNS, its own scale; a coarser grid base than the
// inputs', fewer frac_bits, is refined onto theirs exactly: lns_matrix::refined), dL/dX = W^T dC and
// dL/dW = dC X^T, each of the encoded operands transposed (the gradients through the quantizers
// are straight-through; the backward GEMMs are not fp32 but the accelerator's own):
//
//   d.lns = lowbit::nn::lns_inputs{.spec = lns_spec, .gradients = {.quantizer = {.format = lowbit::lns8}}};
//
// A range-biased float format is the paper's per-tensor scaling of FP8 (Blumenfeld et al.): the
// exponent bias of an ExMy format is chosen from the tensor's largest magnitude amax as the
// largest bias whose largest finite value still holds amax, so the tensor uses the top of the
// format's range and nothing overflows. It is computed each time the tensor is quantized (for
// activations: per batch, from the batch's values).
#pragma once

#include <lowbit/datapath/block_scaled_gemm.hpp>
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/gemm_backward.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/datapath/lns_gemm.hpp>
#include <lowbit/datapath/quantizer.hpp>
#include <lowbit/formats/float_format.hpp>
#include <lowbit/nn/clipped_inputs.hpp>
#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/input_quantizer.hpp>
#include <lowbit/nn/parallel_product.hpp>
#include <lowbit/nn/tensor.hpp>
#include <lowbit/scaling/block_scaling.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace lowbit::nn {

// The block formats of a layer's block-scaled GEMM (see above), and the rounding of the product
// of each pair of block scales (block_scaled_gemm's scale_product; unset: exact).
struct block_scaled_inputs {
    block_format weights = mxfp8_e4m3;      // W, cut along its rows (k_axis = 1)
    block_format activations = mxfp8_e4m3;  // X, cut down its columns (k_axis = 0)
    quantizer scale_product{};
};

// The LNS grids and datapath of a layer's GEMMs (see above): the forward's spec, whose conversion,
// accumulation and accumulators the backward products share, and the encoding of dL/dC.
struct lns_inputs {
    lns_gemm_spec spec{};   // input_a: the weights W; input_b: the activations X
    lns_input gradients{};  // dL/dC for dL/dX = W^T dC and dL/dW = dC X^T (frac_bits <= the inputs')
};

struct gemm_datapath {
    std::optional<gemm_spec> spec{};  // unset: plain fp32 GEMM (or exact, for block-scaled operands)
    input_quantizer weights{};
    input_quantizer activations{};
    gemm_stats* stats = nullptr;    // events of every GEMM of the layer add up here (spec or blocks)
    gradient_mode gradient = gradient_mode::ste;  // other modes need a spec
    std::optional<block_scaled_inputs> blocks{};  // set: block-scaled operands instead of weights/activations
    std::optional<clipped_inputs> clipping{};     // set: clipped operands instead of weights/activations
    std::optional<lns_inputs> lns{};              // set: LNS operands and products, forward and backward
    // How a GEMM layer's bias b enters (linear, conv2d): false, added in fp32 to the datapath's
    // rounded output; true, as the GEMM's addend (lowbit::gemm_add: C(i, j) = b(i), rounded by
    // spec.addend), which the accumulation starts from, as a matrix unit computing D = A B + C does
    // (gemm_spec.hpp says where C enters each accumulation model). Needs a spec and gradient = ste
    // (fine-grained gradients recompute chains that start from +0); not with blocks or lns.
    bool bias_as_addend = false;
};

// What a layer's GEMM used, kept for its backward pass: the quantized operands, the spec as it
// ran (with the input quantizers of that batch), which fine-grained gradients recompute, and the
// clipped operands' gradient factors (empty where there are none).
struct gemm_operands {
    matrix weights, activations;
    std::optional<gemm_spec> spec;
    matrix weight_factors{}, activation_factors{};
    lns_matrix lns_weights{}, lns_activations{};  // LNS operands: their codes (weights, activations: the values)
};

// The clipping scales a GEMM's operands had (clipping set): one, or one per output channel.
struct clip_scales {
    std::vector<double> weights, activations;
};

// dL/dW (outputs x K) and dL/dX (K x N) of C = W X.
struct datapath_gradients {
    matrix a, b;
};

// The gradients of C = W X from the operands the forward kept and dL/dC, where they are not the
// plain products dC X_q^T and W_q^T dC (the caller's own): through the datapath's quantized
// accumulation (a gradient mode other than ste), times the clipped operands' factors, or the LNS
// datapath's products. Nothing otherwise.
LOWBIT_NN_INLINE std::optional<datapath_gradients> operand_gradients(const gemm_operands& kept, const matrix& dc,
                                                                     const gemm_datapath& d);

namespace detail {
// datapath_gemm with d.blocks set.
LOWBIT_NN_INLINE matrix block_scaled_product(const matrix& w, const matrix& x, const gemm_datapath& d,
                                             gemm_operands* keep);
// datapath_gemm with d.lns set.
LOWBIT_NN_INLINE matrix lns_product(const matrix& w, const matrix& x, const gemm_datapath& d, gemm_operands* keep);
// datapath_gemm with d.clipping set.
LOWBIT_NN_INLINE matrix clipped_product(const matrix& w, const matrix& x, const gemm_datapath& d, gemm_operands* keep,
                                        clip_scales* scales, const matrix* addend);
}  // namespace detail

// Whether the datapath is the plain fp32 product (no spec, no quantizers, no blocks): then a
// layer's output for one sample does not depend on the rest of the batch.
inline bool is_plain_fp32(const gemm_datapath& d) {
    return !d.spec && !d.blocks && !d.clipping && !d.lns && std::holds_alternative<std::monostate>(d.weights) &&
           std::holds_alternative<std::monostate>(d.activations);
}

// The threads a layer's GEMMs run on: the spec's (an LNS spec's datapath's), or all cores without one.
LOWBIT_NN_INLINE int datapath_threads(const gemm_datapath& d);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE int datapath_threads(const gemm_datapath& d) {
    return lowbit::detail::thread_count(d.lns ? d.lns->spec.datapath.threads : d.spec ? d.spec->threads : 0);
}
#endif

// C = W X on the layer's datapath: W (M x K) weights, X (K x N) activations. When `keep` is given,
// it receives the quantized W and X (the values the GEMM multiplied). X is taken by value: a layer
// that moves its im2col matrix in keeps it for the backward pass without a copy.
// The input quantizers may be given either by the datapath (weights, activations) or by the spec
// (input_a, input_b), not both: a spec's own input quantizer is used when the datapath has none.
// With clipping set, `scales` (when given) receives the clipping scales of this call.
// With `addend` (M x N), C = W X + addend, the addend entering the accumulation as gemm_add's C
// (what a layer passes for d.bias_as_addend): it needs a spec, and no blocks or lns.
LOWBIT_NN_INLINE matrix datapath_gemm(const matrix& w, matrix x, const gemm_datapath& d, gemm_operands* keep = nullptr,
                                      clip_scales* scales = nullptr, const matrix* addend = nullptr);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE matrix datapath_gemm(const matrix& w, matrix x, const gemm_datapath& d, gemm_operands* keep,
                                      clip_scales* scales, const matrix* addend) {
    if (addend != nullptr && (!d.spec || d.blocks || d.lns))
        throw std::invalid_argument(std::string("lowbit::nn::gemm_datapath: an addend (bias_as_addend) enters a spec's "
                                                "accumulation, and this datapath ") +
                                    (d.lns      ? "has lns set (lns_gemm takes no addend)"
                                     : d.blocks ? "has blocks set (block_scaled_gemm takes no addend)"
                                                : "has no spec (the plain fp32 product)") +
                                    ": set bias_as_addend = false to add the bias after the product");
    if (addend != nullptr && d.gradient != gradient_mode::ste)
        throw std::invalid_argument(std::string("lowbit::nn::gemm_datapath: gradient = ") + to_string(d.gradient) +
                                    " with an addend (bias_as_addend): fine-grained gradients recompute chains "
                                    "that start from +0; set gradient = ste or bias_as_addend = false");
    if (d.clipping) return detail::clipped_product(w, x, d, keep, scales, addend);
    if (d.lns) return detail::lns_product(w, x, d, keep);
    if (d.blocks) return detail::block_scaled_product(w, x, d, keep);
    if (d.gradient != gradient_mode::ste && !d.spec)
        throw std::invalid_argument(std::string("lowbit::nn::gemm_datapath: gradient = ") + to_string(d.gradient) +
                                    " masks the steps of a quantized accumulation: set a spec (or gradient = ste)");
    const auto input = [&](const input_quantizer& q, const quantizer gemm_spec::*field, const matrix& m,
                           const char* names) {
        const bool in_spec = d.spec && !((*d.spec).*field).is_exact();
        if (in_spec && !std::holds_alternative<std::monostate>(q))
            throw std::invalid_argument(std::string("lowbit::nn::gemm_datapath: ") + names +
                                        " are both set: give the input quantizer once");
        return in_spec ? (*d.spec).*field : quantizer_for(q, std::span<const float>(m.data(), std::size_t(m.size())));
    };
    const quantizer qw = input(d.weights, &gemm_spec::input_a, w, "weights and spec.input_a");
    const quantizer qx = input(d.activations, &gemm_spec::input_b, x, "activations and spec.input_b");
    const int threads = datapath_threads(d);
    // The same quantization lowbit::gemm applies to its inputs (same roles, same random indices).
    const auto quantized = [&](matrix m, const quantizer& q, gemm_role role) {
        if (!q.is_exact()) lowbit::detail::quantize_input(q, role, m.data(), std::size_t(m.size()), threads);
        return m;
    };
    matrix c;
    if (d.spec) {
        gemm_spec spec = *d.spec;
        spec.input_a = qw;
        spec.input_b = qx;
        c.resize(w.rows(), x.cols());
        if (addend != nullptr)
            gemm_add(w, x, *addend, c, spec, d.stats);
        else
            gemm(w, x, c, spec, d.stats);
        if (keep != nullptr)
            *keep = {quantized(w, qw, gemm_role::input_a), quantized(std::move(x), qx, gemm_role::input_b), spec};
    } else {
        gemm_operands q{quantized(w, qw, gemm_role::input_a), quantized(std::move(x), qx, gemm_role::input_b), {}};
        c = detail::tiled_product(q.weights, q.activations, threads);
        if (keep != nullptr) *keep = std::move(q);
    }
    return c;
}

LOWBIT_NN_INLINE matrix detail::block_scaled_product(const matrix& w, const matrix& x, const gemm_datapath& d,
                                                     gemm_operands* keep) {
    const auto fail = [](const std::string& why) {
        throw std::invalid_argument("lowbit::nn::gemm_datapath: " + why);
    };
    if (!std::holds_alternative<std::monostate>(d.weights) || !std::holds_alternative<std::monostate>(d.activations))
        fail("blocks and weights/activations are both set: block-scaled operands are quantized by blocks' formats, "
             "leave weights and activations unset");
    if (d.gradient != gradient_mode::ste)
        fail(std::string("gradient = ") + to_string(d.gradient) +
             " with blocks: the gradients of a block-scaled GEMM go straight through, set gradient = ste");
    gemm_spec spec = d.spec.value_or(gemm_spec{});
    spec.threads = datapath_threads(d);
    const auto quantized = [&](const matrix& m, const block_format& f, int k_axis, const char* name) {
        try {
            return quantize_blocks(m.data(), std::size_t(m.rows()), std::size_t(m.cols()), f, k_axis);
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(std::string("lowbit::nn::gemm_datapath: blocks.") + name + ": " + e.what());
        }
    };
    const block_scaled_matrix qw = quantized(w, d.blocks->weights, 1, "weights");
    const block_scaled_matrix qx = quantized(x, d.blocks->activations, 0, "activations");
    matrix c = block_scaled_gemm(qw, qx, spec, d.blocks->scale_product, d.stats);
    if (keep != nullptr) {
        gemm_operands kept{matrix(w.rows(), w.cols()), matrix(x.rows(), x.cols()), std::nullopt};
        dequantize(qw, kept.weights.data());
        dequantize(qx, kept.activations.data());
        *keep = std::move(kept);
    }
    return c;
}

LOWBIT_NN_INLINE matrix detail::clipped_product(const matrix& w, const matrix& x, const gemm_datapath& d,
                                                gemm_operands* keep, clip_scales* scales, const matrix* addend) {
    const auto fail = [](const std::string& why) {
        throw std::invalid_argument("lowbit::nn::gemm_datapath: " + why);
    };
    if (d.blocks || d.lns)
        fail(std::string(d.blocks ? "blocks" : "lns") + " and clipping are both set: choose one way to quantize the operands");
    if (!std::holds_alternative<std::monostate>(d.weights) || !std::holds_alternative<std::monostate>(d.activations))
        fail("clipping and weights/activations are both set: clipped operands are quantized by clipping's "
             "quantizers, leave weights and activations unset");
    if (d.spec && (!d.spec->input_a.is_exact() || !d.spec->input_b.is_exact()))
        fail("clipping and spec.input_a/input_b are both set: clipped operands are quantized by clipping's "
             "quantizers, leave the spec's input quantizers exact");
    if (d.clipping->activations.per_channel)
        fail("clipping.activations.per_channel is set: activations have one scale per tensor (a scale per row of "
             "X would differ along each dot product); per_channel is for the weights");
    const bool factors = keep != nullptr;
    clipped_operand qw = clip_operand(w, d.clipping->weights, factors, "gemm_datapath: clipping.weights");
    clipped_operand qx = clip_operand(x, d.clipping->activations, factors, "gemm_datapath: clipping.activations");
    gemm_datapath rest = d;
    rest.clipping.reset();
    matrix c = datapath_gemm(qw.values, std::move(qx.values), rest, keep, nullptr, addend);
    if (keep != nullptr) {
        keep->weight_factors = std::move(qw.factors);
        keep->activation_factors = std::move(qx.factors);
    }
    if (scales != nullptr) *scales = {std::move(qw.scales), std::move(qx.scales)};
    return c;
}

LOWBIT_NN_INLINE matrix detail::lns_product(const matrix& w, const matrix& x, const gemm_datapath& d, gemm_operands* keep) {
    const auto fail = [](const std::string& why) { throw std::invalid_argument("lowbit::nn::gemm_datapath: " + why); };
    if (d.blocks) fail("blocks and lns are both set: choose one way to quantize the operands");
    if (d.spec) fail("spec and lns are both set: an LNS datapath's accumulation is lns.spec.datapath, leave spec unset");
    if (!std::holds_alternative<std::monostate>(d.weights) || !std::holds_alternative<std::monostate>(d.activations))
        fail("lns and weights/activations are both set: LNS operands are encoded by lns.spec.input_a and input_b, "
             "leave weights and activations unset");
    if (d.gradient != gradient_mode::ste)
        fail(std::string("gradient = ") + to_string(d.gradient) +
             " with lns: the gradient modes mask a gemm_spec's accumulation; an LNS datapath's backward products "
             "run on the LNS datapath itself, set gradient = ste");
    const lns_gemm_spec& spec = d.lns->spec;
    try {
        spec.validate();
        d.lns->gradients.quantizer.format.validate();
    } catch (const std::invalid_argument& e) {
        fail(std::string("lns: ") + e.what());
    }
    if (d.lns->gradients.quantizer.format.frac_bits > spec.input_a.quantizer.format.frac_bits)
        fail("lns.gradients.quantizer.format.frac_bits = " + std::to_string(d.lns->gradients.quantizer.format.frac_bits) +
             " but lns.spec.input_a's is " + std::to_string(spec.input_a.quantizer.format.frac_bits) +
             ": the backward products multiply the gradients by the weights and activations, on one grid base "
             "(a gradient grid as fine or coarser, such as 5-bit LNS of base 2^(1/2), is refined onto it exactly)");
    // the encodings lns_gemm(w, x, spec) makes (the same keyed seeds), kept for the backward products
    lns_quantizer qw = spec.input_a.quantizer, qx = spec.input_b.quantizer;
    qw.seed = gemm_random_key(qw.seed, gemm_role::input_a);
    qx.seed = gemm_random_key(qx.seed, gemm_role::input_b);
    lns_matrix lw = lns_encode(w, qw, spec.input_a.scale), lx = lns_encode(x, qx, spec.input_b.scale);
    const matrix c = lns_gemm(lw, lx, spec, d.stats);
    if (keep != nullptr) {
        *keep = {lw.values().cast<float>(), lx.values().cast<float>(), std::nullopt};
        keep->lns_weights = std::move(lw);
        keep->lns_activations = std::move(lx);
    }
    return c;
}

LOWBIT_NN_INLINE std::optional<datapath_gradients> operand_gradients(const gemm_operands& kept, const matrix& dc,
                                                                     const gemm_datapath& d) {
    if (d.lns) {
        if (kept.lns_weights.rows() == 0 && kept.weights.size() != 0)
            throw std::logic_error("lowbit::nn: LNS gradients without the forward's LNS operands (was the forward run "
                                   "with pass::training on this datapath?)");
        const auto transposed = [](const lns_matrix& m) { return lns_matrix{m.format, m.k.transpose(), m.sign.transpose()}; };
        lns_quantizer q = d.lns->gradients.quantizer;
        q.seed = gemm_random_key(q.seed, gemm_role::accumulator);  // a stream of its own
        // a coarser gradient grid (fewer frac_bits) holds the same values on the inputs' finer one
        const lns_matrix g = lns_encode(dc, q, d.lns->gradients.scale).refined(d.lns->spec.input_a.quantizer.format.frac_bits);
        return datapath_gradients{matrix(lns_gemm(g, transposed(kept.lns_activations), d.lns->spec)),
                                  matrix(lns_gemm(transposed(kept.lns_weights), g, d.lns->spec))};
    }
    const bool factors = kept.weight_factors.size() != 0 || kept.activation_factors.size() != 0;
    if (d.gradient == gradient_mode::ste && !factors) return std::nullopt;
    datapath_gradients g;
    if (d.gradient != gradient_mode::ste) {
        if (!kept.spec)
            throw std::logic_error("lowbit::nn: fine-grained gradients without the forward's spec (was the forward "
                                   "run with pass::training on a datapath with a spec?)");
        // (the kept operands are on their formats' grids: the spec's input quantizers leave them as they are)
        gemm_gradients fine = lowbit::gemm_backward(kept.weights, kept.activations, dc, *kept.spec, d.gradient);
        g = {matrix(fine.a), matrix(fine.b)};
    } else {
        const int threads = datapath_threads(d);
        g = {detail::tiled_product(dc, kept.activations.transpose(), threads),
             detail::tiled_product(kept.weights.transpose(), dc, threads)};
    }
    if (kept.weight_factors.size() != 0) g.a.array() *= kept.weight_factors.array();
    if (kept.activation_factors.size() != 0) g.b.array() *= kept.activation_factors.array();
    return g;
}
#endif

}  // namespace lowbit::nn
