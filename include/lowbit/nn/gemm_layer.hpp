// lowbit/nn/gemm_layer.hpp: the base of the layers whose work is a GEMM (linear, conv2d): each
// carries its own gemm_datapath, so a network can run one datapath everywhere or one per layer.
//
// Structured skipping (dynamic inference under a compute budget, papers.md section 2): a GEMM
// layer can run only some of its outputs (rows of W) over only some of its reduction indices
// (columns of W):
//
//   fc1.set_active({0, 1, 2, 3, 8, 9}, {});     // six outputs, every input
//   fc2.set_active({}, {0, 1, 2, 3, 8, 9});     // every output, six inputs
//
// Skipped work is not executed: the datapath multiplies the smaller matrices (and counts only
// their multiply-accumulates), a skipped output is 0 (its bias is not added either: nothing of it
// is computed), a skipped input takes no part in any dot product. The quantizers of a
// range-biased datapath see only the active values, as hardware that skips them would.
#pragma once

#include <lowbit/datapath/tile_pool.hpp>
#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/gemm_datapath.hpp>
#include <lowbit/nn/layer.hpp>

#include <random>
#include <string>
#include <utility>
#include <vector>

namespace lowbit::nn {

// A layer that multiplies on a datapath (a GEMM layer, or attention's activation products).
class datapath_layer : public layer {
public:
    gemm_datapath datapath;
};

class gemm_layer : public datapath_layer {
public:
    // The weights (outputs x K) and the bias (1 x outputs): what batch-norm folding rewrites.
    virtual parameter& weight() = 0;
    virtual parameter& bias() = 0;

    // Only these outputs (rows of the weights) and reduction indices (their columns) run; an empty
    // list means all of them. Each list must be ascending, without repeats, within range.
    void set_active(std::vector<int> outputs, std::vector<int> inputs);
    void set_all_active() { active_outputs_.clear(), active_inputs_.clear(); }
    const std::vector<int>& active_outputs() const { return active_outputs_; }
    const std::vector<int>& active_inputs() const { return active_inputs_; }
    bool skips() const { return !active_outputs_.empty() || !active_inputs_.empty(); }

    // On the plain fp32 datapath, without skipping: a datapath's quantizers may take their scale
    // from the whole batch, and lowbit::gemm counts events and keys random bits by position.
    // With datapath.clipping: the clipping scales of the last forward (weights: one, or one per
    // output channel; with skipped work, per active output), what calibrate_clipping averages.
    const clip_scales& last_clip_scales() const { return clip_scales_; }

    bool batch_separable() const override {
        return !skips() && is_plain_fp32(datapath);
    }

protected:
    // C = W X + b (W: outputs x K, X: K x N) on the layer's datapath, the skipped work left out;
    // with pass::training, keeps the quantized operands for gemm_backward (X moved in is kept
    // without a copy).
    matrix gemm_forward(matrix x, pass p);

    // From dL/dC (outputs x N): adds dL/dW and dL/db and returns dL/dX (K x N), straight-through
    // the quantizers; a skipped output has no gradient (its value does not depend on the weights).
    matrix gemm_backward(matrix dc);

    gemm_operands kept_;

private:
    static std::vector<int> all_if_empty(const std::vector<int>& v, Eigen::Index size);

    std::vector<int> active_outputs_, active_inputs_;
    clip_scales clip_scales_;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void gemm_layer::set_active(std::vector<int> outputs, std::vector<int> inputs) {
    const auto check = [&](const std::vector<int>& v, Eigen::Index size, const char* what) {
        for (std::size_t i = 0; i < v.size(); ++i)
            if (v[i] < 0 || v[i] >= size || (i > 0 && v[i] <= v[i - 1]))
                throw std::invalid_argument("lowbit::nn: " + describe() + ": active " + what + " " +
                                            std::to_string(i) + " is " + std::to_string(v[i]) +
                                            ": the list must ascend, without repeats, within [0, " +
                                            std::to_string(size) + ")");
    };
    check(outputs, weight().value.rows(), "output");
    check(inputs, weight().value.cols(), "input");
    active_outputs_ = std::move(outputs);
    active_inputs_ = std::move(inputs);
}

LOWBIT_NN_INLINE matrix gemm_layer::gemm_forward(matrix x, pass p) {
    const matrix& w = weight().value;
    gemm_operands* keep = p == pass::training ? &kept_ : nullptr;
    if (keep != nullptr && skips() && datapath.gradient != gradient_mode::ste)
        throw std::invalid_argument("lowbit::nn: " + describe() + ": gradient = " + to_string(datapath.gradient) +
                                    " with skipped work (set_active) is not supported: train with gradient = ste, "
                                    "or with every output and input active");
    if (keep != nullptr && skips() && (datapath.clipping || datapath.lns))
        throw std::invalid_argument("lowbit::nn: " + describe() + ": training " +
                                    (datapath.clipping ? "clipped" : "LNS") +
                                    " operands with skipped work (set_active) is not supported: train with every "
                                    "output and input active");
    const matrix& b = bias().value;
    // the bias as the GEMM's addend: b(r) in every column of output row r (of the active rows)
    const auto addend = [&](const std::vector<int>& rows, Eigen::Index n) {
        matrix m(Eigen::Index(rows.size()), n);
        for (Eigen::Index i = 0; i < m.rows(); ++i) m.row(i).setConstant(b(0, rows[std::size_t(i)]));
        return m;
    };
    matrix c;
    if (!skips()) {
        const matrix bias_addend = datapath.bias_as_addend ? addend(all_if_empty({}, w.rows()), x.cols()) : matrix();
        c = datapath_gemm(w, std::move(x), datapath, keep, &clip_scales_,
                          datapath.bias_as_addend ? &bias_addend : nullptr);
    } else {
        const std::vector<int> rows = all_if_empty(active_outputs_, w.rows());
        const std::vector<int> cols = all_if_empty(active_inputs_, w.cols());
        const matrix ws = w(rows, cols), xs = x(cols, Eigen::all);
        gemm_operands small;
        const matrix bias_addend = datapath.bias_as_addend ? addend(rows, x.cols()) : matrix();
        const matrix cs = datapath_gemm(ws, xs, datapath, keep != nullptr ? &small : nullptr, &clip_scales_,
                                        datapath.bias_as_addend ? &bias_addend : nullptr);
        c = matrix::Zero(w.rows(), x.cols());
        c(rows, Eigen::all) = cs;
        if (keep != nullptr) {
            // Full-size operands with zeros where nothing ran: the gradients below are then
            // those of the computation that ran (no gradient reaches a skipped input).
            kept_.weights = matrix::Zero(w.rows(), w.cols());
            kept_.weights(rows, cols) = small.weights;
            kept_.activations = matrix::Zero(x.rows(), x.cols());
            kept_.activations(cols, Eigen::all) = small.activations;
        }
    }
    if (datapath.bias_as_addend) return c;  // the bias is in C already
    if (active_outputs_.empty())  // over the output rows on lowbit's threads (a conv's rows are long)
        lowbit::detail::parallel_for(c.rows(), c.size(), parallel_threshold,
                                     [&](Eigen::Index r) { c.row(r).array() += b(0, r); });
    else
        for (const int r : active_outputs_) c.row(r).array() += b(0, r);
    return c;
}

LOWBIT_NN_INLINE matrix gemm_layer::gemm_backward(matrix dc) {
    if (!active_outputs_.empty()) {
        Eigen::Array<bool, Eigen::Dynamic, 1> active = Eigen::Array<bool, Eigen::Dynamic, 1>::Constant(dc.rows(), false);
        for (const int r : active_outputs_) active(r) = true;
        for (Eigen::Index r = 0; r < dc.rows(); ++r)
            if (!active(r)) dc.row(r).setZero();
    }
    bias().grad += dc.rowwise().sum().transpose();
    if (auto g = operand_gradients(kept_, dc, datapath)) {
        weight().grad += g->a;
        return std::move(g->b);
    }
    const int threads = datapath_threads(datapath);
    detail::add_tiled_product(weight().grad, dc, kept_.activations.transpose(), threads);
    return detail::tiled_product(kept_.weights.transpose(), dc, threads);
}

LOWBIT_NN_INLINE std::vector<int> gemm_layer::all_if_empty(const std::vector<int>& v, Eigen::Index size) {
    if (!v.empty()) return v;
    std::vector<int> all(static_cast<std::size_t>(size));
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = int(i);
    return all;
}
#endif

namespace detail {
// He (Kaiming) uniform initialisation for a ReLU network, seeded: the same weights everywhere.
LOWBIT_NN_INLINE void he_uniform(matrix& w, int fan_in, std::uint64_t seed);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void he_uniform(matrix& w, int fan_in, std::uint64_t seed) {
    std::mt19937_64 engine(seed);  // mt19937_64's output is fixed by the standard
    const double limit = std::sqrt(6.0 / fan_in);
    for (Eigen::Index i = 0; i < w.size(); ++i) {
        const double u = double(engine() >> 11) * 0x1p-53;  // [0, 1), not the implementation-defined distributions
        w.data()[i] = float((2 * u - 1) * limit);
    }
}
#endif
}  // namespace detail

}  // namespace lowbit::nn
