// tests/support/mpfr_exponent_range.hpp: sets MPFR's exponent range for the duration of a scope.
#pragma once

#include <mpfr.h>

namespace lowbit_test {

struct mpfr_exponent_range {
    mpfr_exp_t saved_emin = mpfr_get_emin(), saved_emax = mpfr_get_emax();
    mpfr_exponent_range(mpfr_exp_t emin, mpfr_exp_t emax) {
        mpfr_set_emin(emin);
        mpfr_set_emax(emax);
    }
    ~mpfr_exponent_range() {
        mpfr_set_emin(saved_emin);
        mpfr_set_emax(saved_emax);
    }
    mpfr_exponent_range(const mpfr_exponent_range&) = delete;
    mpfr_exponent_range& operator=(const mpfr_exponent_range&) = delete;
};

}  // namespace lowbit_test
