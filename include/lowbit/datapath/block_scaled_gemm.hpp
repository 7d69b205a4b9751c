// lowbit/datapath/block_scaled_gemm.hpp: C = A B for block-scaled operands (OCP MX, NVFP4,
// VS-Quant: scaling/block_scaling.hpp) on the accelerator datapath of gemm_spec.hpp.
//
//   auto W = lowbit::quantize_blocks(w.data(), M, K, lowbit::vsquant(4, 4, 16), /*k_axis*/ 1);
//   auto X = lowbit::quantize_blocks(x.data(), K, N, lowbit::vsquant(4, 4, 16, per_tensor), 0);
//   lowbit::gemm_spec spec{.accumulator = lowbit::int_quantizer{.format = {.bits = 24}}};
//   Eigen::MatrixXf C = lowbit::block_scaled_gemm(W, X, spec);            // exact scale products
//   C = lowbit::block_scaled_gemm(W, X, spec, lowbit::int_quantizer{...}, &stats);  // rounded ones
//
// Semantics. A is M x K cut along its rows (k_axis = 1), B is K x N cut down its columns
// (k_axis = 0), with the same block size V; block b covers k in [bV, min(K, (b + 1)V)), and each
// line has nb = ceil(K / V) blocks. For the output (i, j) and each block b:
//
//   d_b = sum over k in block b of a(i, k) b(k, j)   exact: the stored elements (VS-Quant: the
//                                                    integer codes), multiplied and added exactly
//   s_b = Q_s(sA(i, b) sB(b, j))                      the product of the two block scales,
//                                                    rounded by `scale_product` (exact if unset)
//   t_b = Q_prod(d_b s_b)                             spec.product rounds each block term once
//                                                    (not under accumulation::fma, which rounds
//                                                    d_b s_b + acc once, as gemm does a_k b_k + acc)
//
// The nb terms t_b then take the place of gemm_spec.hpp's products: spec.chunk counts blocks, and
// the accumulation model, the accumulator and the chunk accumulator reduce the terms exactly as
// they reduce products in lowbit::gemm (exact_datapath::reduce), to `total`. Finally the coarse
// scales multiply the exact total once and the result is rounded once, to nearest even, to float:
//
//   C(i, j) = RN_float(total cA(i) cB(j))
//
// with cA(i), cB(j) the coarse scales of row i of A and column j of B (VS-Quant's gamma per line
// or per tensor, NVFP4's per-tensor fp32 scale; 1 for MX, which has none).
//
// VS-Quant with an integer accumulator is the datapath of the paper: the elements are integer
// codes and the vector scales M-bit integers, so every d_b s_b is an integer, and
// spec.accumulator = int_quantizer{.format = {.bits = P}} is the P-bit register that adds them:
// it wraps or saturates exactly at the additions whose exact running sum leaves its range
// (gemm_stats::accumulator_overflows counts those). `scale_product` = an integer or float
// quantizer models hardware that keeps fewer bits of the scale product. A NaN block scale (a
// block that held NaN or infinity) makes its term NaN, so the output is NaN.
//
// Random bits of stochastic quantizers: the indices of gemm_spec.hpp with K read as nb and the
// product index k as the block b (product and sequential accumulator: (i*N + j)*nb + b, and so on).
// scale_product draws from gemm_random_key(seed, gemm_role::input_a) at index (i*N + j)*nb + b:
// the operands come already quantized, so the input roles have no roundings of their own here.
//
// Events (gemm_stats): macs = M N K; zero_operand counts the element products with a zero operand;
// product_overflows and product_underflows are those of Q_prod on the terms; the accumulator
// events are gemm's, on the terms. With spec.record_lost, lost[(i*N + j)*K + k] is 1 for every
// element k of a block whose term was lost (underflowed by Q_prod, or swamped by the model).
//
// What the inputs must be (std::invalid_argument naming the field and the value otherwise):
// spec valid, with input_a and input_b unset (the operands are quantized already), float
// accumulators and products of at most 50 mantissa bits; A with k_axis = 1 and B with k_axis = 0,
// A.cols == B.rows, the same block size, storage of the sizes block_scaled_matrix documents; every
// block and coarse scale 0, NaN, or a finite value of magnitude in [2^-300, 2^300] with at most
// 26 significant bits (every scale that quantize_blocks makes: E8M0, ue4m3, M-bit integers, fp32
// coarse scales); scale_product results of magnitude in [2^-600, 2^600] (float formats inside that
// range, integer ones with |fraction_bits| <= 500). Then every product of the kernels is exact in double.
//
// How it is exact and fast: block_scaled_core.hpp, which holds the kernels (included at the end of
// this header in header-only use, and compiled once into lowbit::compiled otherwise; see gemm.hpp).
#pragma once

#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/gemm_report.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/datapath/quantizer.hpp>
#include <lowbit/scaling/block_scaling.hpp>

#include <Eigen/Core>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace lowbit {

namespace detail {

[[noreturn]] inline void bad_block_gemm(const std::string& what) {
    throw std::invalid_argument("lowbit::block_scaled_gemm: " + what);
}

inline std::string number_string(double x) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", x);
    return buf;
}

// Significant bits of a finite non-zero double (53 minus its trailing zero bits).
inline int significant_bits(double x) {
    int e = 0;
    const double f = std::frexp(std::fabs(x), &e);                     // in [1/2, 1)
    const auto m = static_cast<std::uint64_t>(std::ldexp(f, 53));      // 53-bit integer significand
    return 53 - std::countr_zero(m);
}

// A scale that keeps every product of the GEMM exact in double (the header's requirements).
inline void check_scale(double s, const char* matrix, const char* field, std::size_t index) {
    if (std::isnan(s) || s == 0) return;
    const auto fail = [&](const char* why) {
        bad_block_gemm(std::string(matrix) + "." + field + "[" + std::to_string(index) + "] = " + number_string(s) +
                       ": " + why);
    };
    if (!std::isfinite(s)) fail("a scale must be finite (or NaN for a poisoned block)");
    if (std::fabs(s) < 0x1p-300 || std::fabs(s) > 0x1p300) fail("a scale's magnitude must be in [2^-300, 2^300]");
    if (significant_bits(s) > 26) fail("a scale may have at most 26 significant bits");
}

inline void check_operand(const block_scaled_matrix& m, const char* name, int k_axis) {
    const std::string n(name);
    if (m.k_axis != k_axis)
        bad_block_gemm(n + ".k_axis = " + std::to_string(m.k_axis) + ": " + n + " must be cut along " +
                       (k_axis == 1 ? "its rows (k_axis = 1; A is M x K)" : "its columns (k_axis = 0; B is K x N)"));
    try {
        m.format.validate();
    } catch (const std::invalid_argument& e) {
        bad_block_gemm(n + ".format: " + e.what());
    }
    const auto size = [&](const char* field, std::size_t got, std::size_t want) {
        if (got != want)
            bad_block_gemm(n + "." + field + ".size() = " + std::to_string(got) + ", but a " +
                           std::to_string(m.rows) + " x " + std::to_string(m.cols) + " matrix with blocks of " +
                           std::to_string(m.block_size()) + " needs " + std::to_string(want));
    };
    size("elements", m.elements.size(), m.rows * m.cols);
    size("block_scales", m.block_scales.size(), m.lines() * m.blocks_per_line());
    if (m.coarse_scales.size() > 1) size("coarse_scales", m.coarse_scales.size(), m.lines());
    for (std::size_t t = 0; t < m.block_scales.size(); ++t) check_scale(m.block_scales[t], name, "block_scales", t);
    for (std::size_t t = 0; t < m.coarse_scales.size(); ++t) check_scale(m.coarse_scales[t], name, "coarse_scales", t);
}

inline void check_scale_product(const quantizer& q) {
    try {
        q.validate();
    } catch (const std::invalid_argument& e) {
        bad_block_gemm(std::string("scale_product: ") + e.what());
    }
    if (const auto* f = q.as_float()) {
        if (f->format.min_positive() < 0x1p-600 || f->format.max_finite() > 0x1p600)
            bad_block_gemm("scale_product: a float format with bias = " + std::to_string(f->format.exponent_bias()) +
                           " and exp_bits = " + std::to_string(f->format.exp_bits) +
                           " reaches beyond [2^-600, 2^600]; scale products must stay inside");
    } else if (const auto* i = q.as_int()) {
        if (i->fraction_bits < -500 || i->fraction_bits > 500)
            bad_block_gemm("scale_product: fraction_bits = " + std::to_string(i->fraction_bits) +
                           " must be in [-500, 500]");
    }
}

inline void check_block_gemm(const block_scaled_matrix& A, const block_scaled_matrix& B, const gemm_spec& spec,
                             const quantizer& scale_product, const gemm_stats* stats) {
    spec.validate();
    if (!spec.input_a.is_exact())
        bad_block_gemm("spec.input_a must be unset: the block-scaled operands are quantized already");
    if (!spec.input_b.is_exact())
        bad_block_gemm("spec.input_b must be unset: the block-scaled operands are quantized already");
    if (spec.model == accumulation::two_level)
        bad_block_gemm("spec.model = two_level aligns products on their operands' exponents, and a block term has "
                       "no such pair");
    if (spec.align == alignment_exponent::operands)
        bad_block_gemm("spec.align = operands aligns a product on its operands' exponents, and a block term has "
                       "no such pair: use align = value");
    check_accumulator_format(spec.accumulator, "accumulator");
    check_accumulator_format(spec.chunk_accumulator, "chunk_accumulator");
    if (const auto* f = spec.product.as_float(); f != nullptr && f->format.man_bits > 50)
        bad_block_gemm("spec.product: man_bits = " + std::to_string(f->format.man_bits) +
                       ": a block term can be wider than a double, and rounding it exactly needs at most 50 "
                       "mantissa bits; leave the quantizer unset for exact terms");
    if (spec.record_lost && stats == nullptr)
        bad_block_gemm("spec.record_lost = true needs a gemm_stats to record into");
    check_scale_product(scale_product);
    check_operand(A, "A", 1);
    check_operand(B, "B", 0);
    if (A.cols != B.rows)
        bad_block_gemm("shape mismatch: A is " + std::to_string(A.rows) + " x " + std::to_string(A.cols) + " and B is " +
                       std::to_string(B.rows) + " x " + std::to_string(B.cols) + ": A's columns (K) must equal B's rows");
    if (A.block_size() != B.block_size())
        bad_block_gemm("A.format.block_size = " + std::to_string(A.block_size()) + " but B.format.block_size = " +
                       std::to_string(B.block_size()) + ": both operands must share the blocks along K");
}

// block_scaled_gemm, once the arguments are checked (block_scaled_core.hpp). A template only so
// that the compiled library can instantiate it once for a whole program (see gemm.hpp).
template <class = void>
Eigen::MatrixXf block_scaled_multiply(const block_scaled_matrix& A, const block_scaled_matrix& B,
                                      const gemm_spec& spec, const quantizer& scale_product, gemm_stats* stats,
                                      gemm_report* report);

}  // namespace detail

// C = A B on the datapath `spec`, the block-scale products rounded by `scale_product` (unset:
// exact). See the top of this header. *report, when given, says which kernel ran and why no
// faster one (gemm_report.hpp).
inline Eigen::MatrixXf block_scaled_gemm(const block_scaled_matrix& A, const block_scaled_matrix& B,
                                         const gemm_spec& spec, const quantizer& scale_product,
                                         gemm_stats* stats = nullptr, gemm_report* report = nullptr) {
    detail::check_block_gemm(A, B, spec, scale_product, stats);
    return detail::block_scaled_multiply(A, B, spec, scale_product, stats, report);
}

inline Eigen::MatrixXf block_scaled_gemm(const block_scaled_matrix& A, const block_scaled_matrix& B,
                                         const gemm_spec& spec, gemm_stats* stats = nullptr,
                                         gemm_report* report = nullptr) {
    return block_scaled_gemm(A, B, spec, quantizer{}, stats, report);
}

}  // namespace lowbit

#ifndef LOWBIT_COMPILED_LIB
#include <lowbit/datapath/block_scaled_core.hpp>
#endif
