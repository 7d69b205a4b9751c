// tests/support/random_floats.hpp: seeded uniform test data (mt19937_64 is fixed by the standard,
// and the doubles are made from its bits, not by an implementation-defined distribution), and a
// bit-for-bit comparison of float matrices.
#pragma once

#include <Eigen/Core>

#include <bit>
#include <cstdint>
#include <random>

namespace lowbit_test {

using floats_rm = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

inline constexpr double float_unit_roundoff = 0x1p-24;

struct rng {
    std::mt19937_64 engine;
    explicit rng(std::uint64_t seed) : engine(seed) {}
    double uniform(double lo, double hi) { return lo + (hi - lo) * (double(engine() >> 11) * 0x1p-53); }
};

inline floats_rm random_matrix(Eigen::Index rows, Eigen::Index cols, rng& r, double lo = -1, double hi = 1) {
    floats_rm m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = float(r.uniform(lo, hi));
    return m;
}

inline bool same_bits(const floats_rm& a, const floats_rm& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
    for (Eigen::Index i = 0; i < a.size(); ++i)
        if (std::bit_cast<std::uint32_t>(a.data()[i]) != std::bit_cast<std::uint32_t>(b.data()[i])) return false;
    return true;
}

}  // namespace lowbit_test
