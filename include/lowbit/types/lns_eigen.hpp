// lowbit/types/lns_eigen.hpp: lowbit::lns<F> as an Eigen scalar.
//
//   Eigen::Matrix<lowbit::lns<lowbit::lns8>, Eigen::Dynamic, Eigen::Dynamic> a, b;
//   auto c = (a * b).eval();   // products exact in the log domain, each sum rounded by the policy
//
// Eigen's kernels choose the order of the additions, so a product equals a given sequential dot
// product only when the partial sums are exact (as in a hand example with few terms on the grid).
// LNS additions are not associative; for a fixed accumulation order use lowbit's datapath.
#pragma once

#include <lowbit/types/lns.hpp>

#include <Eigen/Core>

#include <algorithm>

namespace Eigen {

template <lowbit::lns_format F, class AddPolicy>
struct NumTraits<lowbit::lns<F, AddPolicy>> : GenericNumTraits<lowbit::lns<F, AddPolicy>> {
    using T = lowbit::lns<F, AddPolicy>;
    enum {
        IsInteger = 0,
        IsSigned = 1,
        IsComplex = 0,
        // Every bit pattern is a value (zero, NaN or +-2^(k/gamma)) and the type is trivially
        // copyable: Eigen may leave fresh storage uninitialized.
        RequireInitialization = 0,
        ReadCost = 1,
        // A product is an integer add; a sum decodes, adds and rounds (or reads a table).
        AddCost = 8,
        MulCost = 2
    };
    using Real = T;
    using NonInteger = T;
    using Nested = T;
    using Literal = T;

    // epsilon, highest, lowest, infinity, quiet_NaN, digits and digits10 come from
    // GenericNumTraits, which reads them from the std::numeric_limits specialization.

    // What isApprox and friends accept as equal: a few steps of the grid, at most 1/2.
    static T dummy_precision() { return T(std::min(4.0 * double(std::numeric_limits<T>::epsilon()), 0.5)); }
};

}  // namespace Eigen
