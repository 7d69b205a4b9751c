// lowbit/sparse/zero_skipping.hpp: the multiplies a zero-skipping GEMM or convolution needs: the
// number of pairs (A(i, k) != 0, B(k, j) != 0) of C = A B, i.e. sum over k of (non-zeros in
// column k of A) x (non-zeros in row k of B). For a convolution, A is the weights (filters x K) and
// B its im2col matrix (padding contributes zeros, so taps over the padding are never counted).
// Zero is compared arithmetically: -0 == 0 is skipped too; NaN is not zero.
//
// Skipping cannot change a result bit of the datapath. Why: a product with a zero operand is +-0
// after any product rounding (zero is on every grid). Adding +-0 to a running sum s != 0 gives
// exactly s, and rounding a value already on the accumulator's grid returns it unchanged in every
// rounding mode (stochastic included: no bits are drawn for an exact value). So in the sequential
// and fma models, and in any model where a skipped product simply contributes nothing at its own
// position (chunks, adder trees and aligned groups keep their positions: a hardware zero-skipper
// gates the multiplier, it does not renumber K), every non-zero output is the same.
// Zero outputs (-0): IEEE 754 arithmetic would make +0 + (-0) = -0 under toward_negative, so a
// datapath built from IEEE adders could return -0 where the skipping one returns +0. lowbit's
// datapath sums exactly and returns +0 for every zero result (a -0 operand, a -0 product, a
// flushed negative underflow, x + (-x), in every rounding mode: the test checks such cases), so
// with lowbit skipping is bit-identical, zero signs included. The test compares lowbit::gemm with
// the zero pairs removed from K (each output's dot product over its non-zero pairs only, which
// renumbers K: sequential, fma and fused models without chunks, deterministic rounding modes)
// against the dense run, bit for bit on every output.
#pragma once

#include <lowbit/datapath/conv.hpp>

#include <Eigen/Core>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit::sparse {

// Pairs (A(i, k) != 0, B(k, j) != 0) of C = A B: the multiplies that a zero-skipping datapath does.
template <class DA, class DB>
std::int64_t nonzero_products(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B) {
    if (A.cols() != B.rows())
        throw std::invalid_argument("lowbit::sparse::nonzero_products: A is " + std::to_string(A.rows()) + " x " +
                                    std::to_string(A.cols()) + " and B is " + std::to_string(B.rows()) + " x " +
                                    std::to_string(B.cols()) + ": A's columns must equal B's rows");
    std::int64_t total = 0;
    for (Eigen::Index k = 0; k < A.cols(); ++k) {
        std::int64_t in_column = 0, in_row = 0;
        for (Eigen::Index i = 0; i < A.rows(); ++i) in_column += A(i, k) != 0.0f;
        for (Eigen::Index j = 0; j < B.cols(); ++j) in_row += B(k, j) != 0.0f;
        total += in_column * in_row;
    }
    return total;
}

// The multiplies of one GEMM: dense (M x K x N, what a dense datapath does and what gemm_stats'
// macs counts) and with zeros skipped.
struct multiply_count {
    std::int64_t dense = 0;
    std::int64_t nonzero = 0;

    double fraction() const { return dense == 0 ? 0.0 : double(nonzero) / double(dense); }
    multiply_count& operator+=(const multiply_count& o) { return dense += o.dense, nonzero += o.nonzero, *this; }
};

template <class DA, class DB>
multiply_count count_multiplies(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B) {
    return {std::int64_t(A.rows()) * std::int64_t(A.cols()) * std::int64_t(B.cols()), nonzero_products(A, B)};
}

// A convolution's multiplies: weights (filters x channels*kernel*kernel) over a batch of images
// (batch x channels*height*width), through im2col as lowbit::nn::conv2d runs it.
inline multiply_count count_conv_multiplies(const matrix_rm& weights, const matrix_rm& images, const conv_geometry& g) {
    g.validate();
    if (weights.cols() != g.patch())
        throw std::invalid_argument("lowbit::sparse::count_conv_multiplies: weights have " +
                                    std::to_string(weights.cols()) + " columns but the geometry's patch is " +
                                    std::to_string(g.patch()));
    return count_multiplies(weights, im2col(images, g));
}

}  // namespace lowbit::sparse
