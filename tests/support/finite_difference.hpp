// tests/support/finite_difference.hpp: a layer's analytic gradient against central differences
// of a scalar loss, one float variable at a time.
//
// The loss must be affine in each variable (a weighted sum of a linear layer's outputs), so the
// central difference has no truncation error: its error is at most (error(L+) + error(L-)) /
// (theta+ - theta-), the rounding of the outputs, which loss_error() bounds.
#pragma once

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <cmath>

namespace lowbit_test {

template <class Loss, class LossError>
struct central_difference_check {
    Loss loss;             // () -> double
    LossError loss_error;  // () -> double: a bound on the loss's rounding error
    float h = 0x1p-4f;
    int checked = 0, outside = 0;

    // Moves v by +-h (restoring it), and counts (and reports) a gradient outside the bound.
    void operator()(float& v, double analytic, const char* what, Eigen::Index index) {
        const float saved = v;
        v = saved + h;
        const double up = loss(), up_error = loss_error();
        const float v_up = v;
        v = saved - h;
        const double down = loss(), down_error = loss_error();
        const double step = double(v_up) - double(v);
        v = saved;
        const double fd = (up - down) / step;
        const double tolerance = (up_error + down_error) / step + 4 * 0x1p-24 * std::fabs(analytic);
        ++checked;
        if (std::fabs(fd - analytic) > tolerance) {
            ++outside;
            UNSCOPED_INFO(what << "[" << index << "]: backward " << analytic << ", finite difference " << fd
                               << ", tolerance " << tolerance);
        }
    }
};

template <class Loss, class LossError>
central_difference_check(Loss, LossError) -> central_difference_check<Loss, LossError>;

}  // namespace lowbit_test
