// lowbit/nn/loss.hpp: softmax cross-entropy over class logits, and accuracy.
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/tensor.hpp>

#include <cmath>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

namespace lowbit::nn {

struct loss_and_gradient {
    double loss = 0;   // mean over the batch of -log softmax(logits)[label]
    matrix gradient;   // d loss / d logits: (softmax - one_hot(label)) / batch
};

#if LOWBIT_NN_DEFINE
namespace detail {
LOWBIT_NN_INLINE void check_labels(const matrix& logits, std::span<const std::uint8_t> labels, const char* who) {
    if (std::size_t(logits.rows()) != labels.size())
        throw std::invalid_argument(std::string("lowbit::nn::") + who + ": " + std::to_string(logits.rows()) +
                                    " rows of logits but " + std::to_string(labels.size()) + " labels");
    for (std::size_t i = 0; i < labels.size(); ++i)
        if (labels[i] >= logits.cols())
            throw std::invalid_argument(std::string("lowbit::nn::") + who + ": label " + std::to_string(labels[i]) +
                                        " of sample " + std::to_string(i) + " is not below the " +
                                        std::to_string(logits.cols()) + " classes");
}
}  // namespace detail
#endif

LOWBIT_NN_INLINE loss_and_gradient softmax_cross_entropy(const matrix& logits, std::span<const std::uint8_t> labels);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE loss_and_gradient softmax_cross_entropy(const matrix& logits, std::span<const std::uint8_t> labels) {
    detail::check_labels(logits, labels, "softmax_cross_entropy");
    const Eigen::Index n = logits.rows();
    loss_and_gradient out{0.0, matrix(n, logits.cols())};
    for (Eigen::Index i = 0; i < n; ++i) {
        // log-sum-exp shifted by the row's maximum: no overflow for large logits
        const double top = logits.row(i).maxCoeff();
        const auto shifted = (logits.row(i).cast<double>().array() - top).eval();
        const double log_sum = std::log(shifted.exp().sum());
        out.loss += log_sum - shifted(labels[std::size_t(i)]);
        out.gradient.row(i) = ((shifted - log_sum).exp() / double(n)).cast<float>();
        out.gradient(i, labels[std::size_t(i)]) -= float(1.0 / double(n));
    }
    out.loss /= double(std::max<Eigen::Index>(n, 1));
    return out;
}
#endif

// Samples whose largest logit (the first, on ties) is their label.
LOWBIT_NN_INLINE std::size_t correct_predictions(const matrix& logits, std::span<const std::uint8_t> labels);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::size_t correct_predictions(const matrix& logits, std::span<const std::uint8_t> labels) {
    detail::check_labels(logits, labels, "correct_predictions");
    std::size_t correct = 0;
    for (Eigen::Index i = 0; i < logits.rows(); ++i) {
        Eigen::Index best = 0;
        logits.row(i).maxCoeff(&best);
        correct += best == labels[std::size_t(i)];
    }
    return correct;
}
#endif

}  // namespace lowbit::nn
