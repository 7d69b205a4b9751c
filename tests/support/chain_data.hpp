// tests/support/chain_data.hpp: what the tests of the scaled chains (scaled_chain.hpp,
// portable_chain.hpp) share: matrices of several kinds, each a test of something the chains do
// (saturation, flush, the raise to the smallest normal, exact cancellation, zeros of both signs),
// and their oracle, the exact path.
#pragma once

#include <lowbit/datapath/gemm.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstring>
#include <random>

namespace lowbit_test {

// Data of several kinds, each a test of something the chain does:
enum class data { wide, small, tiny, cancelling, zero_rows };
inline Eigen::MatrixXf make(Eigen::Index rows, Eigen::Index cols, data kind, std::mt19937& gen) {
    std::normal_distribution<float> normal;
    std::uniform_int_distribution<int> shift(-6, 6);
    Eigen::MatrixXf m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) {
        switch (kind) {
            case data::wide:  // products saturate and flush; sums saturate, flush and round up to min_normal
                m.data()[i] = std::ldexp(normal(gen), shift(gen));
                break;
            case data::small:  // nothing saturates (the saturations are left out), much flushes
                m.data()[i] = std::ldexp(normal(gen), shift(gen) / 2 - 4);
                break;
            case data::tiny:  // most products flush: many outputs are zeros, of either sign
                m.data()[i] = std::ldexp(normal(gen), -5 + shift(gen) / 3);
                break;
            case data::cancelling:  // small integers: sums cancel to exact zeros
                m.data()[i] = float(std::uniform_int_distribution<int>(-2, 2)(gen));
                break;
            case data::zero_rows:  // zero or negative-zero rows and columns among normal ones
                m.data()[i] = normal(gen);
                break;
        }
    }
    if (kind == data::zero_rows) {
        for (Eigen::Index i = 0; i < rows; i += 3) m.row(i).setConstant(i % 2 == 0 ? 0.0f : -0.0f);
        for (Eigen::Index j = 1; j < cols; j += 4) m.col(j).setConstant(-0.0f);
    }
    return m;
}

inline bool same_bits(const Eigen::MatrixXf& a, const Eigen::MatrixXf& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.size())) == 0;
}

// The exact path's result: gemm takes it when per-product records are asked for.
inline Eigen::MatrixXf exact_gemm(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, lowbit::gemm_spec spec) {
    spec.record_lost = true;
    lowbit::gemm_stats stats;
    return lowbit::gemm(A, B, spec, &stats);
}

}  // namespace lowbit_test
