// lns_format: presets, derived values (checked against MPFR), validation messages, structural use.
#include <lowbit/formats/lns_format.hpp>

#include <catch2/catch.hpp>

#include "support/exception_message.hpp"
#include <mpfr.h>

#include <string>

namespace {

using lowbit::lns_format;

using lowbit_test::message_of;

template <lns_format F>
constexpr int bits_of() {
    return F.bits();
}

// 2^(k / 2^b) rounded to nearest double by MPFR.
double mpfr_magnitude(int k, int b) {
    mpfr_t v;
    mpfr_init2(v, 200);
    mpfr_set_si(v, k, MPFR_RNDN);
    mpfr_div_2ui(v, v, unsigned(b), MPFR_RNDN);  // exact
    mpfr_exp2(v, v, MPFR_RNDN);
    const double d = mpfr_get_d(v, MPFR_RNDN);
    mpfr_clear(v);
    return d;
}

}  // namespace

TEST_CASE("lns8 and lns16 presets") {
    STATIC_REQUIRE(lowbit::lns8.bits() == 8);
    STATIC_REQUIRE(lowbit::lns8.gamma() == 8);
    STATIC_REQUIRE(lowbit::lns8.k_min() == -63);
    STATIC_REQUIRE(lowbit::lns8.k_max() == 63);
    STATIC_REQUIRE(lowbit::lns8.codes() == 256);
    STATIC_REQUIRE(lowbit::lns8.values() == 255);  // one code is NaN
    STATIC_REQUIRE(lowbit::lns8.magnitudes() == 127);
    STATIC_REQUIRE(lowbit::lns16.bits() == 16);
    STATIC_REQUIRE(lowbit::lns16.gamma() == 256);
    STATIC_REQUIRE(lowbit::lns16.k_min() == -16383);
    STATIC_REQUIRE(lowbit::lns16.k_max() == 16383);
    STATIC_REQUIRE(bits_of<lowbit::lns8>() == 8);  // structural: a template argument
    CHECK(lowbit::lns8.max_magnitude() == mpfr_magnitude(63, 3));
    CHECK(lowbit::lns8.min_magnitude() == mpfr_magnitude(-63, 3));
    CHECK(lowbit::lns8.max_magnitude() == Approx(234.753035).epsilon(1e-8));
    CHECK(lowbit::lns16.max_magnitude() == mpfr_magnitude(16383, 8));
    CHECK(lowbit::lns16.min_magnitude() == mpfr_magnitude(-16383, 8));
    CHECK(lowbit::lns8.base() == mpfr_magnitude(1, 3));
}

TEST_CASE("magnitude is 2^(k/gamma) correctly rounded, also in constant evaluation") {
    // Constant evaluation multiplies with Dekker's splitting instead of fma: same doubles.
    constexpr lns_format f20{.log_bits = 24, .frac_bits = 20};
    constexpr double c1 = f20.magnitude(123457), c2 = f20.magnitude(-(1 << 23) + 1), c3 = lowbit::lns16.magnitude(-12345);
    CHECK(c1 == mpfr_magnitude(123457, 20));
    CHECK(c2 == mpfr_magnitude(-(1 << 23) + 1, 20));
    CHECK(c3 == mpfr_magnitude(-12345, 8));
    volatile int k = 123457;  // run time: fma path
    CHECK(f20.magnitude(k) == c1);
    for (int b = 0; b <= 20; ++b) {
        const lns_format f{.log_bits = b <= 1 ? 10 : 12, .frac_bits = b};
        REQUIRE(f.is_valid());
        for (int kk = f.k_min() - 1; kk <= f.k_max() + 1; kk += 1 + (kk & 7)) {
            INFO("frac_bits " << b << " k " << kk);
            REQUIRE(f.magnitude(kk) == mpfr_magnitude(kk, b));
        }
    }
}

TEST_CASE("offset shifts the range and scaled() adds to it") {
    constexpr lns_format f{.log_bits = 4, .frac_bits = 1, .offset = -5};
    STATIC_REQUIRE(f.k_min() == -12);
    STATIC_REQUIRE(f.k_max() == 2);
    CHECK(f.max_magnitude() == mpfr_magnitude(2, 1));
    CHECK(f.scaled(3).offset == -2);
    CHECK(f.scaled(3).k_max() == 5);
    CHECK(f.scaled(3) != f);
    CHECK(f.scaled(3).scaled(-3) == f);
}

TEST_CASE("validation names the field and the value") {
    CHECK(message_of([] { lns_format{.log_bits = 1, .frac_bits = 3}.validate(); }) ==
          "lowbit::lns_format: log_bits = 1: must be in [2, 24]");
    CHECK(message_of([] { lns_format{.log_bits = 25, .frac_bits = 3}.validate(); }).find("log_bits = 25") !=
          std::string::npos);
    CHECK(message_of([] { lns_format{.log_bits = 7, .frac_bits = -1}.validate(); }) ==
          "lowbit::lns_format: frac_bits = -1: must be in [0, 20]");
    CHECK(message_of([] { lns_format{.log_bits = 7, .frac_bits = 21}.validate(); }).find("frac_bits = 21") !=
          std::string::npos);
    // 2^24 codes with gamma = 1 span 2^(+-2^23): more than double's exponent range.
    CHECK(message_of([] { lns_format{.log_bits = 24, .frac_bits = 0}.validate(); }).find("log_bits = 24") !=
          std::string::npos);
    CHECK(message_of([] { lns_format{.log_bits = 7, .frac_bits = 3, .offset = 8200}.validate(); })
              .find("offset = 8200") != std::string::npos);
    CHECK(message_of([] { lns_format{.log_bits = 7, .frac_bits = 3, .offset = -8150}.validate(); })
              .find("offset = -8150") != std::string::npos);
    // The edges of the range: k_max + 1 = 1023 gamma and k_min - 1 = -1022 gamma are allowed.
    CHECK(lns_format{.log_bits = 7, .frac_bits = 3, .offset = 1023 * 8 - 64}.is_valid());
    CHECK(!lns_format{.log_bits = 7, .frac_bits = 3, .offset = 1023 * 8 - 63}.is_valid());
    CHECK(lns_format{.log_bits = 7, .frac_bits = 3, .offset = -1022 * 8 + 64}.is_valid());
    CHECK(!lns_format{.log_bits = 7, .frac_bits = 3, .offset = -1022 * 8 + 63}.is_valid());
    CHECK(lns_format{.log_bits = 24, .frac_bits = 20}.is_valid());
    CHECK(lns_format{.log_bits = 2, .frac_bits = 0}.is_valid());
    CHECK(message_of([] { lowbit::lns16.validate(); }).empty());
    STATIC_REQUIRE(lns_format{.log_bits = 1}.is_valid() == false);
}
