// lowbit/nn/softmax.hpp: softmax over each token's features (or a feature vector's), as PyTorch's
// softmax over the last dimension; attention applies the same functions to its score rows.
//
// fp32 arithmetic, shifted by the row's maximum (no overflow), the output rounded by `output`
// (output_quantizer.hpp).
#pragma once

#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/layer.hpp>
#include <lowbit/nn/output_quantizer.hpp>

#include <memory>
#include <string>

namespace lowbit::nn {

// Each row of m replaced by its softmax.
template <class Derived>
void softmax_rows(Eigen::MatrixBase<Derived>& m) {
    for (Eigen::Index r = 0; r < m.rows(); ++r) {
        auto row = m.row(r).array();
        row = (row - row.maxCoeff()).exp();
        row /= row.sum();
    }
}
template <class Derived>
void softmax_rows(Eigen::MatrixBase<Derived>&& m) {
    softmax_rows(m);
}

// dL/ds from dL/dy and y = softmax(s), row by row: y (dy - sum(dy y)).
LOWBIT_NN_INLINE matrix softmax_rows_backward(const matrix& y, const matrix& dy);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE matrix softmax_rows_backward(const matrix& y, const matrix& dy) {
    const Eigen::VectorXf dots = dy.cwiseProduct(y).rowwise().sum();
    return y.cwiseProduct(dy - dots.replicate(1, dy.cols()));
}
#endif

class softmax : public layer {
public:
    input_quantizer output{};

    std::string describe() const override { return "softmax"; }
    LOWBIT_NN_INLINE shape3 output_shape(shape3 in) const override;

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;
    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;
    std::unique_ptr<layer> clone() const override { return std::make_unique<softmax>(*this); }

private:
    matrix y_;
    shape3 shape_;
    bool ready_ = false;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE shape3 softmax::output_shape(shape3 in) const {
    if (!in.is_tokens() && in.tokens() != 1)
        throw std::invalid_argument("lowbit::nn: softmax: input shape " + in.to_string() +
                                    " is neither tokens nor a feature vector (add a flatten before it)");
    return in;
}

LOWBIT_NN_INLINE tensor softmax::forward(const tensor& x, pass p) {
    detail::check_input(*this, x, output_shape(x.shape));
    tensor y = x;
    softmax_rows(Eigen::Map<matrix>(y.values.data(), x.batch() * x.shape.tokens(), x.shape.channels));
    if (p == pass::training) y_ = y.values;  // before `output`: the gradient passes straight through it
    detail::quantize_output(output, y.values);
    ready_ = p == pass::training;
    shape_ = x.shape;
    return y;
}

LOWBIT_NN_INLINE tensor softmax::backward(const tensor& dy) {
    detail::check_backward(*this, ready_, dy, shape_, y_.rows());
    const Eigen::Index rows = y_.rows() * shape_.tokens();
    const matrix y = Eigen::Map<const matrix>(y_.data(), rows, shape_.channels);
    const matrix g = Eigen::Map<const matrix>(dy.values.data(), rows, shape_.channels);
    tensor dx{matrix(y_.rows(), y_.cols()), shape_};
    Eigen::Map<matrix>(dx.values.data(), rows, shape_.channels) = softmax_rows_backward(y, g);
    return dx;
}
#endif

}  // namespace lowbit::nn
