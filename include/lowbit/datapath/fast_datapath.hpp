// lowbit/datapath/fast_datapath.hpp: (being written) the vectorized path.
#pragma once
#include <lowbit/datapath/gemm_spec.hpp>
#include <Eigen/Core>
namespace lowbit::detail {
inline bool fast_gemm(const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>&,
                      const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>&,
                      Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>&, const gemm_spec&) {
    return false;
}
}  // namespace lowbit::detail
