// lowbit/datapath/gemm_backward.hpp: the gradients of a simulated GEMM through its quantized
// accumulation ("fine-grained" gradients of the low bit-width accumulator paper, section 1 of
// ../shared/papers.md; the paper's own text is not available, so the definitions below are ours).
//
//   lowbit::gemm_gradients g = lowbit::gemm_backward(A, B, dC, spec, lowbit::gradient_mode::recursive);
//   g.a;  // dL/dA, M x K          g.b;  // dL/dB, K x N          (dC = dL/dC, M x N)
//   std::vector<std::uint8_t> f = lowbit::gemm_gradient_factors(A, B, spec, lowbit::gradient_mode::immediate);
//   f[(i*N + j)*K + k];  // the factor g of product k of output (i, j): 0 or 1
//
// For output (i, j) the forward pass (gemm_spec.hpp) computes, with a_k = input_a(A(i, k)) and
// b_k = input_b(B(k, j)) the values it multiplies and x_k = a_k b_k exactly:
//   p_k = Q_prod(x_k)                       (x_k itself under fma or with no product quantizer)
//   s_k = Q_acc(s_{k-1} + p_k)              within a chunk, from s = +0 (fma: one rounding of x_k + s_{k-1})
//   T_c = Q_chunk(T_{c-1} + S_c)            over the chunk results S_c, from T = +0
// Each rounding is one step with these events (comparisons are numeric: +0 == -0):
//   product overflow   Q_prod rounded x_k beyond its format's largest finite value (the rounding
//                      without an upper limit lands beyond it: gemm_stats' overflows)
//   product flush      x_k != 0 and p_k == 0
//   step overflow      Q_acc rounded s_{k-1} + p_k beyond the accumulator's largest finite value,
//                      likewise (for an integer accumulator: outside its range, if it saturates; a
//                      wrapping one has derivative 1 on both sides of its wrap, and masks nothing)
//   addend swamped     p_k != 0 and s_k == s_{k-1}  (the addend was lost entirely)
//   sum swamped        s_{k-1} != 0 and s_k == p_k  (the running sum was lost)
// and the same for the chunk steps, with S_c as the addend and T as the running sum. The local
// derivatives are 1 except:
//   dp_k/dx_k = 0            on product overflow or product flush
//   ds_k/dp_k = 0            on product flush, addend swamped or step overflow
//   ds_k/ds_{k-1} = 0        on sum swamped or step overflow
//   dT_c/dS_c, dT_c/dT_{c-1} likewise at the chunk steps
// and the factor g of product k (in chunk c) is, by gradient mode:
//   ste            1: the straight-through estimator (the gradient of the exact product of the
//                  quantized operands)
//   overflow_only  0 on product overflow or step overflow (the saturations), else 1
//   immediate      dp_k/dx_k * ds_k/dp_k
//   recursive      immediate * (ds_j/ds_{j-1} for every later step j of chunk c) * dT_c/dS_c *
//                  (dT_d/dT_{d-1} for every later chunk d): the whole chain, a reverse scan
// The gradients are then dA(i, k) = sum_j dC(i, j) g_ijk b_kj and dB(k, j) = sum_i dC(i, j) g_ijk a_ik,
// summed in double in an order fixed by the shapes alone (the same bits for any thread count and
// instruction set) and rounded to float. The masks are defined for chains: modes other than ste
// need accumulation::sequential or fma.
//
// The backward pass stores no mask per (i, j, k): each output's chain is recomputed, in the
// forward's order and with its rounding decisions (the same steps and random indices), and the
// factors are applied as they come: in fp32 lanes, 64 outputs at a time, where the forward's
// vectorized path counts events (the paper's flush-and-saturate accumulators, sequential or fma
// chains whose chunk accumulator is the accumulator), one output at a time otherwise (report says
// which ran, and why not the faster one).
//
// What runs under it is in gemm_backward_core.hpp (header-only use includes it at the end of this
// header; lowbit::compiled compiles it once).
#pragma once

#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/gemm_report.hpp>
#include <lowbit/datapath/gemm_spec.hpp>

#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lowbit {

enum class gradient_mode : std::uint8_t { ste, overflow_only, immediate, recursive };

constexpr const char* to_string(gradient_mode m) {
    switch (m) {
        case gradient_mode::ste: return "ste";
        case gradient_mode::overflow_only: return "overflow_only";
        case gradient_mode::immediate: return "immediate";
        case gradient_mode::recursive: return "recursive";
    }
    return "?";
}

// The mode named by to_string's text (case-sensitive); std::invalid_argument naming the choices
// otherwise.
inline gradient_mode parse_gradient_mode(std::string_view text) {
    for (const auto m : {gradient_mode::ste, gradient_mode::overflow_only, gradient_mode::immediate,
                         gradient_mode::recursive})
        if (text == to_string(m)) return m;
    throw std::invalid_argument("lowbit::parse_gradient_mode: unknown gradient mode '" + std::string(text) +
                                "': use ste, overflow_only, immediate or recursive");
}

struct gemm_gradients {
    Eigen::MatrixXf a;  // dL/dA (M x K)
    Eigen::MatrixXf b;  // dL/dB (K x N)
};

namespace detail {

using row_major_view = Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

// A matrix of floats anywhere in memory: element (i, j) at data[i * row + j * col].
template <class T>
struct strided {
    T* data = nullptr;
    std::ptrdiff_t row = 0, col = 0;
    T& operator()(std::int64_t i, std::int64_t j) const { return data[i * row + j * col]; }
};

// Where the backward pass writes: the gradients (da: M x K, db: K x N), or the factors of every
// product ((i*N + j)*K + k).
struct backward_sink {
    strided<float> da, db;
    std::uint8_t* factors = nullptr;
};

// The backward pass over the quantized operands a (row-major M x K) and b (row-major K x N), with
// dC (M x N; unused for factors). Defined in gemm_backward_core.hpp.
template <class = void>
void backward_quantized(const row_major_view& a, const row_major_view& b, strided<const float> dc,
                        const gemm_spec& spec, gradient_mode mode, const backward_sink& out, gemm_report* report);

inline void check_backward_spec(const gemm_spec& spec, gradient_mode mode, const char* function) {
    spec.validate();
    check_accumulator_format(spec.accumulator, "accumulator");
    check_accumulator_format(spec.chunk_accumulator, "chunk_accumulator");
    if (mode != gradient_mode::ste && spec.model != accumulation::sequential && spec.model != accumulation::fma)
        throw std::invalid_argument(std::string(function) + ": gradient mode " + to_string(mode) +
                                    " masks the steps of a chain: it needs model=sequential or model=fma, not " +
                                    to_string(spec.model) + " (or use gradient_mode::ste)");
}

// A and B checked against the spec and each other, and quantized by its input quantizers (as gemm
// does: the same roles and random indices) into row-major buffers.
template <class DA, class DB>
std::pair<row_major_view, row_major_view> backward_operands(const Eigen::MatrixBase<DA>& A,
                                                            const Eigen::MatrixBase<DB>& B, const gemm_spec& spec,
                                                            gradient_mode mode, const char* function) {
    check_backward_spec(spec, mode, function);
    if (A.cols() != B.rows())
        throw std::invalid_argument(std::string(function) + ": shape mismatch: A is " + std::to_string(A.rows()) +
                                    " x " + std::to_string(A.cols()) + " and B is " + std::to_string(B.rows()) + " x " +
                                    std::to_string(B.cols()) + ": A's columns (K) must equal B's rows");
    const int threads = thread_count(spec.threads);
    return {quantized_rows(A, spec.input_a, gemm_role::input_a, threads, buffer_slot::input_a),
            quantized_rows(B, spec.input_b, gemm_role::input_b, threads, buffer_slot::input_b)};
}

}  // namespace detail

// dL/dA and dL/dB of C = gemm(A, B, spec) for dL/dC = dC (M x N), by gradient mode (above).
// A, B and dC in any storage order.
template <class DA, class DB, class DC>
gemm_gradients gemm_backward(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B,
                             const Eigen::MatrixBase<DC>& dC, const gemm_spec& spec, gradient_mode mode,
                             gemm_report* report = nullptr) {
    constexpr const char* function = "lowbit::gemm_backward";
    const Eigen::Index M = A.rows(), K = A.cols(), N = B.cols();
    if (dC.rows() != M || dC.cols() != N)
        throw std::invalid_argument(std::string(function) + ": dC is " + std::to_string(dC.rows()) + " x " +
                                    std::to_string(dC.cols()) + ", but C = A B is " + std::to_string(M) + " x " +
                                    std::to_string(N));
    const auto [a, b] = detail::backward_operands(A, B, spec, mode, function);
    // (dC where it lies, in either storage order; a copy only for other scalars or expressions)
    const Eigen::Ref<const Eigen::MatrixXf, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>> dc(dC.template cast<float>());
    gemm_gradients g{Eigen::MatrixXf(M, K), Eigen::MatrixXf(K, N)};
    detail::backward_quantized(a, b, {dc.data(), dc.innerStride(), dc.outerStride()}, spec, mode,
                               {{g.a.data(), 1, M}, {g.b.data(), 1, K}, nullptr}, report);
    return g;
}

// The factor g of every product, (i*N + j)*K + k, as gemm_backward applies them: M*N*K bytes, for
// inspection and tests of small GEMMs.
template <class DA, class DB>
std::vector<std::uint8_t> gemm_gradient_factors(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B,
                                                const gemm_spec& spec, gradient_mode mode,
                                                gemm_report* report = nullptr) {
    const auto [a, b] = detail::backward_operands(A, B, spec, mode, "lowbit::gemm_gradient_factors");
    std::vector<std::uint8_t> factors(std::size_t(A.rows() * B.cols() * A.cols()));
    detail::backward_quantized(a, b, {}, spec, mode, {{}, {}, factors.data()}, report);
    return factors;
}

}  // namespace lowbit

#ifndef LOWBIT_COMPILED_LIB
#include <lowbit/datapath/gemm_backward_core.hpp>
#endif
