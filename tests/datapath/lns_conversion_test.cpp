// tests/datapath/lns_conversion_test.cpp: the log-to-linear constants of an LNS datapath against
// MPFR, and Mitchell's error against its closed form.
#include <lowbit/datapath/lns_conversion.hpp>

#include "support/exception_message.hpp"

#include <catch2/catch.hpp>
#include <mpfr.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using lowbit::lns_conversion;
using lowbit::lns_converter;
using lowbit_test::message_of;

// 2^(r / 2^b) correctly rounded by MPFR to T + 1 significant bits (T fractional bits in [1, 2)).
double mpfr_table_constant(std::uint32_t r, int b, int T) {
    mpfr_t x, y;
    mpfr_init2(x, 64);
    mpfr_init2(y, T + 1);
    mpfr_set_ui_2exp(x, r, -b, MPFR_RNDN);  // exact
    mpfr_exp2(y, x, MPFR_RNDN);
    const double d = mpfr_get_d(y, MPFR_RNDN);  // exact: at most 53 bits
    mpfr_clear(x);
    mpfr_clear(y);
    return d;
}

// c / 2^(r / 2^b) - 1 at 128 bits, as a double.
double relative_error_of(double c, std::uint32_t r, int b) {
    mpfr_t x, p, e;
    mpfr_inits2(128, x, p, e, static_cast<mpfr_ptr>(nullptr));
    mpfr_set_ui_2exp(x, r, -b, MPFR_RNDN);
    mpfr_exp2(p, x, MPFR_RNDN);
    mpfr_set_d(e, c, MPFR_RNDN);
    mpfr_div(e, e, p, MPFR_RNDN);
    mpfr_sub_ui(e, e, 1, MPFR_RNDN);
    const double d = mpfr_get_d(e, MPFR_RNDN);
    mpfr_clears(x, p, e, static_cast<mpfr_ptr>(nullptr));
    return d;
}

}  // namespace

TEST_CASE("table constants are 2^(r/gamma) correctly rounded to T fractional bits (MPFR)", "[lns][conversion]") {
    // Every r for gamma <= 2^12, a sample for 2^20; T from the coarsest to double's 52.
    const std::vector<int> table_bits{1, 2, 3, 4, 7, 10, 16, 23, 24, 31, 40, 51, 52};
    std::mt19937 rng(5);
    for (const int b : {0, 1, 2, 3, 4, 6, 8, 12, 20}) {
        const std::uint32_t gamma = std::uint32_t(1) << b;
        for (const int T : table_bits) {
            const std::vector<double> c = lowbit::lns_conversion_constants({.method = lns_conversion::table, .table_bits = T}, b);
            REQUIRE(c.size() == gamma);
            std::vector<std::uint32_t> rs;
            if (b <= 12) {
                for (std::uint32_t r = 0; r < gamma; ++r) rs.push_back(r);
            } else {
                for (int t = 0; t < 3000; ++t) rs.push_back(std::uniform_int_distribution<std::uint32_t>(0, gamma - 1)(rng));
                rs.push_back(gamma - 1);
            }
            int wrong = 0, beyond_bound = 0;
            for (const std::uint32_t r : rs) {
                const double expected = mpfr_table_constant(r, b, T);
                if (c[r] != expected && wrong++ < 3) {
                    INFO("frac_bits " << b << " T " << T << " r " << r << ": expected " << expected << " got " << c[r]);
                    CHECK(c[r] == expected);
                }
                // The stated error bound, |c_r - 2^(r/gamma)| <= 2^-(T+1).
                if (b <= 8) beyond_bound += std::fabs(relative_error_of(c[r], r, b)) > std::ldexp(1.0, -(T + 1));
            }
            CHECK(wrong == 0);
            CHECK(beyond_bound == 0);
        }
    }
    // T = 52 is the double nearest to 2^(r/gamma), which lns_format::magnitude also returns.
    for (std::uint32_t r = 0; r < 256; ++r) CHECK(lowbit::lns_table_constant(r, 8, 52) == lowbit::lns16.magnitude(int(r)));
    // Coarse tables may round the last constant up to 2: 2^(7/8) = 1.83 is 2 with one fractional bit.
    CHECK(lowbit::lns_table_constant(7, 3, 1) == 2.0);
}

TEST_CASE("Mitchell constants are 1 + r/gamma", "[lns][conversion]") {
    for (const int b : {0, 1, 3, 8, 20}) {
        const std::vector<double> c = lowbit::lns_conversion_constants({.method = lns_conversion::mitchell}, b);
        for (std::uint32_t r = 0; r < c.size(); r += 1 + (r >> 6)) {
            mpfr_t x;
            mpfr_init2(x, 64);
            mpfr_set_ui_2exp(x, r, -b, MPFR_RNDN);
            mpfr_add_ui(x, x, 1, MPFR_RNDN);  // exact: 1 + r 2^-b has at most 21 bits
            CHECK(c[r] == mpfr_get_d(x, MPFR_RNDN));
            mpfr_clear(x);
        }
    }
}

TEST_CASE("Mitchell's largest relative error matches its closed form 2/(e ln 2) - 1", "[lns][conversion][mitchell]") {
    // The closed form, from MPFR: x* = 1/ln 2 - 1, e(x*) = 2 / (e ln 2) - 1.
    mpfr_t e_const, ln2, v;
    mpfr_inits2(200, e_const, ln2, v, static_cast<mpfr_ptr>(nullptr));
    mpfr_set_ui(e_const, 1, MPFR_RNDN);
    mpfr_exp(e_const, e_const, MPFR_RNDN);
    mpfr_const_log2(ln2, MPFR_RNDN);
    mpfr_mul(v, e_const, ln2, MPFR_RNDN);
    mpfr_ui_div(v, 2, v, MPFR_RNDN);
    mpfr_sub_ui(v, v, 1, MPFR_RNDN);
    const double closed_form = mpfr_get_d(v, MPFR_RNDN);
    mpfr_clears(e_const, ln2, v, static_cast<mpfr_ptr>(nullptr));
    CHECK(lowbit::mitchell_max_relative_error == closed_form);  // the library's constant, correctly rounded
    CHECK(closed_form == Approx(0.0614757).margin(1e-7));      // "about 6.1%"
    const double x_star = 1 / std::log(2.0) - 1;

    // The discrete maximum over r = 0 .. gamma - 1 of the library's Mitchell constants, against
    // 2^(r/gamma) in MPFR: never above the closed form, short of it by at most 0.12 / gamma^2
    // (the header's bound), and its argument next to x*.
    double previous_gap = 1;
    for (int b = 0; b <= 20; ++b) {
        const double gamma = std::ldexp(1.0, b);
        const std::vector<double> c = lowbit::lns_conversion_constants({.method = lns_conversion::mitchell}, b);
        double worst = -1;
        std::uint32_t arg = 0, below = 0;
        for (std::uint32_t r = 0; r < c.size(); ++r) {
            const double err = relative_error_of(c[r], r, b);
            below += err < 0;
            if (err > worst) worst = err, arg = r;
        }
        CHECK(below == 0);  // the chord 1 + x lies above the convex 2^x: Mitchell overestimates
        INFO("gamma = 2^" << b << ": largest error " << worst << " at r = " << arg);
        CHECK(worst <= closed_form);
        CHECK(closed_form - worst <= 0.12 / (gamma * gamma));
        if (b >= 1) CHECK(std::fabs(double(arg) / gamma - x_star) <= 1 / gamma);
        CHECK(closed_form - worst <= previous_gap);  // approaches the limit as gamma grows
        previous_gap = closed_form - worst;
    }
    CHECK(previous_gap < 1e-13);  // gamma = 2^20
}

TEST_CASE("lns_converter rejects bad settings, naming the field", "[lns][conversion][args]") {
    CHECK(message_of([] { lowbit::lns_converter{.table_bits = 0}.validate(); }).find("table_bits = 0") != std::string::npos);
    CHECK(message_of([] { lowbit::lns_converter{.table_bits = 53}.validate(); }).find("table_bits = 53") != std::string::npos);
    CHECK(message_of([] { lowbit::lns_converter{.method = lns_conversion::mitchell, .table_bits = 0}.validate(); }).empty());
    CHECK(message_of([] { lowbit::lns_converter{.method = lns_conversion(7)}.validate(); }).find("method = 7") != std::string::npos);
    CHECK(message_of([] { (void)lowbit::lns_conversion_constants({}, 21); }).find("frac_bits = 21") != std::string::npos);
}
