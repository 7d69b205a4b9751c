// lowbit/types/minifloat_eigen.hpp: lowbit::minifloat<F> as an Eigen scalar.
//
//   Eigen::Matrix<lowbit::minifloat<lowbit::fp16>, Eigen::Dynamic, Eigen::Dynamic> a, b;
//   auto c = (a * b).eval();   // every product and every sum rounded to fp16
//
// Eigen's own kernels decide the order of the operations (blocking, unrolling), so a product
// equals a given sequential dot product only when every partial result is exact. For a
// reproducible accumulation model (order, chunking, accumulator format) use lowbit's gemm.
#pragma once

#include <lowbit/types/minifloat.hpp>

#include <Eigen/Core>

#include <algorithm>

namespace Eigen {

template <lowbit::float_format F>
struct NumTraits<lowbit::minifloat<F>> : GenericNumTraits<lowbit::minifloat<F>> {
    using T = lowbit::minifloat<F>;
    enum {
        IsInteger = 0,
        IsSigned = F.is_signed ? 1 : 0,
        IsComplex = 0,
        // Every bit pattern is a valid value, and the type is trivially copyable: Eigen may leave
        // fresh storage uninitialized, as it does for float and Eigen::half.
        RequireInitialization = 0,
        ReadCost = 1,
        // A rounded operation costs several double operations (round to odd, then quantize).
        AddCost = 8,
        MulCost = 8
    };
    using Real = T;
    using NonInteger = T;
    using Nested = T;
    using Literal = T;

    // epsilon, highest, lowest, infinity, quiet_NaN, digits and digits10 come from
    // GenericNumTraits, which reads them from the std::numeric_limits specialization.

    // What isApprox and friends accept as equal: about 2^3 ulps at 1 (Eigen::half uses 1e-2 with
    // its 2^-10 epsilon), but never more than 1/2.
    static T dummy_precision() { return T(double(std::min(8.0 * double(std::numeric_limits<T>::epsilon()), 0.5))); }
};

}  // namespace Eigen
