// lns<F>: codes, conversions, exact * and / (all pairs of lns8), additions (exact-then-round
// against MPFR, Gaussian-log tables against their stated bound), comparisons, numeric_limits, and
// lns8 as an Eigen scalar.
#include <lowbit/types/lns.hpp>
#include <lowbit/types/lns_eigen.hpp>

#include <lowbit/formats/lns_format.hpp>
#include <lowbit/rounding/lns_quantize.hpp>

#include <catch2/catch.hpp>
#include <mpfr.h>
#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

namespace {

using l8 = lowbit::lns<lowbit::lns8>;
using l16 = lowbit::lns<lowbit::lns16>;
constexpr lowbit::lns_format f8 = lowbit::lns8;

// Every lns8 value but NaN: zero and +-2^(k/8).
std::vector<l8> all_values() {
    std::vector<l8> v;
    for (unsigned c = 0; c < 256; ++c) {
        const l8 x = l8::from_bits(std::uint8_t(c));
        if (!x.is_nan()) v.push_back(x);
    }
    return v;
}

// gamma log2|va +- vb| for two values sign * 2^(k / gamma) at 256 bits (the sum is exact there).
double exact_log_sum(bool na, long ka, bool nb, long kb, int frac_bits) {
    mpfr_t a, b;
    mpfr_inits2(256, a, b, (mpfr_ptr)nullptr);
    mpfr_set_si(a, ka, MPFR_RNDN);
    mpfr_div_2ui(a, a, unsigned(frac_bits), MPFR_RNDN);
    mpfr_exp2(a, a, MPFR_RNDN);
    if (na) mpfr_neg(a, a, MPFR_RNDN);
    mpfr_set_si(b, kb, MPFR_RNDN);
    mpfr_div_2ui(b, b, unsigned(frac_bits), MPFR_RNDN);
    mpfr_exp2(b, b, MPFR_RNDN);
    if (nb) mpfr_neg(b, b, MPFR_RNDN);
    mpfr_add(a, a, b, MPFR_RNDN);
    mpfr_abs(a, a, MPFR_RNDN);
    mpfr_log2(a, a, MPFR_RNDN);
    mpfr_mul_2ui(a, a, unsigned(frac_bits), MPFR_RNDN);
    const double t = mpfr_get_d(a, MPFR_RNDN);
    mpfr_clears(a, b, (mpfr_ptr)nullptr);
    return t;
}

// The reference sum: the exact a + b (at 256 bits) rounded nearest_log, saturated, flushed.
template <class T>
T reference_sum(T a, T b) {
    constexpr lowbit::lns_format F = T::format;
    if (a.is_zero()) return b;
    if (b.is_zero()) return a;
    if (a.k() == b.k() && a.is_negative() != b.is_negative()) return T();
    const double t = exact_log_sum(a.is_negative(), a.k(), b.is_negative(), b.k(), F.frac_bits);
    const long long k = std::llround(t);  // never a tie: t is irrational or an integer
    const bool negative = std::fabs(double(a)) >= std::fabs(double(b)) ? a.is_negative() : b.is_negative();
    if (k < F.k_min()) return T();
    return T::from_k(negative, int(std::min<long long>(k, F.k_max())));
}

}  // namespace

TEST_CASE("codes: zero, NaN, from_k, from_bits") {
    STATIC_REQUIRE(sizeof(l8) == 1);
    STATIC_REQUIRE(sizeof(l16) == 2);
    using wide = lowbit::lns<lowbit::lns_format{.log_bits = 20, .frac_bits = 10}>;
    STATIC_REQUIRE(sizeof(wide) == 4);
    STATIC_REQUIRE(l8().bits() == 0);
    STATIC_REQUIRE(l8::nan().bits() == 0x80);
    STATIC_REQUIRE(l8::from_k(false, 0).bits() == 64);
    STATIC_REQUIRE(l8::from_k(true, -63).bits() == 0x81);
    STATIC_REQUIRE(l8::from_k(false, 63).bits() == 0x7F);
    STATIC_REQUIRE(double(l8::from_k(false, 8)) == 2.0);
    STATIC_REQUIRE(double(l8::from_k(true, -16)) == -0.25);
    CHECK(double(l8()) == 0.0);
    CHECK(std::isnan(double(l8::nan())));
    CHECK(std::isnan(float(l8::nan())));
    using l15 = lowbit::lns<lowbit::lns_format{.log_bits = 14, .frac_bits = 8}>;
    CHECK_THROWS_WITH(l15::from_bits(0x8000), "lowbit::lns::from_bits: code 32768 has more than 15 bits");
    CHECK(double(l16::from_bits(0xFFFF)) == -lowbit::lns16.max_magnitude());
    using small = lowbit::lns<lowbit::lns_format{.log_bits = 6, .frac_bits = 2}>;
    CHECK_THROWS_AS(small::from_bits(0x80), std::invalid_argument);
    CHECK_THROWS_WITH(l8::from_k(false, 64), "lowbit::lns::from_k: k = 64 is outside [-63, 63]");
    for (unsigned c = 0; c < 256; ++c) {
        const l8 x = l8::from_bits(std::uint8_t(c));
        REQUIRE(x.bits() == c);
        if (x.is_nan()) continue;
        // Decoding is 2^(k/8) correctly rounded; encoding the double gives the code back.
        REQUIRE(l8(double(x)).bits() == c);
        REQUIRE(l8(float(x)).bits() == c);
        if (!x.is_zero()) REQUIRE(std::fabs(double(x)) == f8.magnitude(x.k()));
    }
}

TEST_CASE("conversion from double is lns_quantize nearest_log; to float is correctly rounded") {
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> l(-20, 20);
    for (int i = 0; i < 20000; ++i) {
        const double x = (i % 2 ? -1 : 1) * std::exp2(l(rng));
        REQUIRE(double(l16(x)) == lowbit::lns_quantize(x, lowbit::lns16));
        REQUIRE(double(l8(x)) == lowbit::lns_quantize(x, f8));
    }
    CHECK(l8(std::numeric_limits<double>::infinity()) == std::numeric_limits<l8>::max());
    CHECK(l8(-1e10) == std::numeric_limits<l8>::lowest());
    CHECK(l8(1e-10).is_zero());
    CHECK(l8(-0.0).bits() == 0);
    CHECK(l8(std::numeric_limits<double>::quiet_NaN()).is_nan());
    CHECK(double(l8(3)) == lowbit::lns_quantize(3.0, f8));
    CHECK(double(l8(std::int64_t(-100))) == lowbit::lns_quantize(-100.0, f8));
    // float: every lns16 magnitude against MPFR's rounding to float.
    mpfr_t v;
    mpfr_init2(v, 256);
    for (int k = lowbit::lns16.k_min(); k <= lowbit::lns16.k_max(); ++k) {
        mpfr_set_si(v, k, MPFR_RNDN);
        mpfr_div_2ui(v, v, 8, MPFR_RNDN);
        mpfr_exp2(v, v, MPFR_RNDN);
        REQUIRE(float(l16::from_k(false, k)) == mpfr_get_flt(v, MPFR_RNDN));
        REQUIRE(double(l16::from_k(true, k)) == -mpfr_get_d(v, MPFR_RNDN));
    }
    mpfr_clear(v);
}

TEST_CASE("multiply and divide are exact: k adds and subtracts, saturates, flushes") {
    const std::vector<l8> values = all_values();
    for (const l8 a : values)
        for (const l8 b : values) {
            const l8 p = a * b, q = a / b;
            if (a.is_zero() || b.is_zero()) {
                REQUIRE(p.is_zero());
            } else {
                const int k = a.k() + b.k();
                if (k >= -63) REQUIRE(p.is_negative() == (a.is_negative() != b.is_negative()));
                if (k > 63) REQUIRE(p.k() == 63);
                else if (k < -63) REQUIRE(p.is_zero());
                else REQUIRE(p.k() == k);
                if (k >= -63 && k <= 63) REQUIRE(double(p) == lowbit::lns_quantize(double(a) * double(b), f8));
            }
            if (b.is_zero()) {
                REQUIRE(q.is_nan());
            } else if (a.is_zero()) {
                REQUIRE(q.is_zero());
            } else {
                const int k = a.k() - b.k();
                if (k >= -63) REQUIRE(q.is_negative() == (a.is_negative() != b.is_negative()));
                if (k > 63) REQUIRE(q.k() == 63);
                else if (k < -63) REQUIRE(q.is_zero());
                else REQUIRE(q.k() == k);
            }
        }
    const l8 two = l8::from_k(false, 8), max = std::numeric_limits<l8>::max(), min = std::numeric_limits<l8>::min();
    CHECK(max * two == max);
    CHECK((min * min).is_zero());
    CHECK(min / max == l8());
    CHECK(max / min == max);
    CHECK(two * two * two == l8(8.0));
    CHECK((l8(3.0) * l8(-5.0)).k() == l8(3.0).k() + l8(5.0).k());
    CHECK((l8(1.0) / l8()).is_nan());
    CHECK((l8::nan() * l8(1.0)).is_nan());
    CHECK((l8::nan() * l8()).is_nan());
}

TEST_CASE("exact-then-round addition equals the MPFR sum rounded nearest_log") {
    const std::vector<l8> values = all_values();
    for (const l8 a : values)
        for (const l8 b : values) {
            const l8 s = a + b, d = a - b;
            if (s != reference_sum(a, b)) {
                INFO(double(a) << " + " << double(b) << " = " << double(s) << " want " << double(reference_sum(a, b)));
                REQUIRE(s == reference_sum(a, b));
            }
            REQUIRE(d == reference_sum(a, -b));
        }
    std::mt19937_64 rng(2);
    std::uniform_int_distribution<int> k(lowbit::lns16.k_min(), lowbit::lns16.k_max()), near(-3000, 3000);
    for (int i = 0; i < 20000; ++i) {
        const int ka = k(rng), kb = std::clamp(ka + near(rng), lowbit::lns16.k_min(), lowbit::lns16.k_max());
        const l16 a = l16::from_k(i % 2 == 0, ka), b = l16::from_k(i % 3 == 0, kb);
        REQUIRE(a + b == reference_sum(a, b));
    }
    CHECK((l8(1.3) - l8(1.3)).is_zero());
    CHECK(l8(2.0) + l8(2.0) == l8(4.0));
    CHECK(std::numeric_limits<l8>::max() + std::numeric_limits<l8>::max() == std::numeric_limits<l8>::max());
    CHECK((l8::nan() + l8(1.0)).is_nan());
}

TEST_CASE("Gaussian-log table addition: full tables are exact, coarse ones within their bound") {
    using full = lowbit::lns_table_add<6>;  // lns8 needs 37 distances: 64 entries have step 1
    using l8_table = lowbit::lns<lowbit::lns8, full>;
    const auto& table = full::table<f8>();
    CHECK(table.span == 37);
    CHECK(table.step_log2 == 0);
    CHECK(full::max_error<f8>() == 0.5);
    const std::vector<l8> values = all_values();
    for (const l8 a : values)
        for (const l8 b : values) {
            const l8_table ta = l8_table::from_bits(a.bits()), tb = l8_table::from_bits(b.bits());
            REQUIRE((ta + tb).bits() == (a + b).bits());
            REQUIRE((ta - tb).bits() == (a - b).bits());
        }
    // Coarse tables: |k - gamma log2|a +- b|| <= max_error before the range applies.
    const auto check_bound = [&](auto policy) {
        using P = decltype(policy);
        const double bound = P::template max_error<f8>();
        double worst = 0;
        for (const l8 a : values)
            for (const l8 b : values) {
                if (a.is_zero() || b.is_zero()) continue;
                const lowbit::detail::lns_parts r =
                    P::template add<f8>({false, a.is_negative(), a.k()}, {false, b.is_negative(), b.k()});
                if (r.zero) {
                    REQUIRE(a.k() == b.k());
                    REQUIRE(a.is_negative() != b.is_negative());
                    continue;
                }
                const double t = exact_log_sum(a.is_negative(), a.k(), b.is_negative(), b.k(), 3);
                worst = std::max(worst, std::fabs(double(r.k) - t));
            }
        INFO("stated bound " << bound << ", worst " << worst);
        CHECK(worst <= bound + 1e-9);
        return bound;
    };
    CHECK(check_bound(lowbit::lns_table_add<6>{}) == 0.5);
    const double b4 = check_bound(lowbit::lns_table_add<4>{});  // step 4
    const double b2 = check_bound(lowbit::lns_table_add<2>{});  // step 16
    CHECK(b4 > 0.5);
    CHECK(b2 >= b4);
    CHECK(lowbit::lns_table_add<4>::table<f8>().step_log2 == 2);
    // lns16: a 2^12-entry table has step 1 and is exact as well.
    using l16_table = lowbit::lns<lowbit::lns16, lowbit::lns_table_add<12>>;
    CHECK(lowbit::lns_table_add<12>::table<lowbit::lns16>().step_log2 == 0);
    std::mt19937_64 rng(3);
    std::uniform_int_distribution<int> k(-16000, 16000), near(-3000, 3000);
    for (int i = 0; i < 20000; ++i) {
        const int ka = k(rng), kb = std::clamp(ka + near(rng), -16383, 16383);
        const l16 a = l16::from_k(i % 2 == 0, ka), b = l16::from_k(i % 3 == 0, kb);
        REQUIRE((l16_table::from_bits(a.bits()) + l16_table::from_bits(b.bits())).bits() == (a + b).bits());
    }
}

TEST_CASE("comparisons order by value; negation and abs") {
    const std::vector<l8> values = all_values();
    for (const l8 a : values)
        for (const l8 b : values) {
            REQUIRE((a < b) == (double(a) < double(b)));
            REQUIRE((a == b) == (double(a) == double(b)));
            REQUIRE((a >= b) == (double(a) >= double(b)));
        }
    const l8 nan = l8::nan();
    CHECK_FALSE(nan == nan);
    CHECK(nan != nan);
    CHECK_FALSE(nan < l8(1.0));
    CHECK_FALSE(nan > l8(1.0));
    CHECK((-l8(2.0)).bits() == (l8(-2.0)).bits());
    CHECK((-l8()).bits() == 0);
    CHECK((-nan).is_nan());
    CHECK(abs(l8(-3.0)) == l8(3.0));
    CHECK(signbit(l8(-3.0)));
    CHECK_FALSE(signbit(l8()));
    CHECK(isnan(nan));
    CHECK_FALSE(isinf(std::numeric_limits<l8>::max()));
    std::ostringstream out;
    out << l8(2.0);
    CHECK(out.str() == "2");
}

TEST_CASE("numeric_limits of lns") {
    using L = std::numeric_limits<l8>;
    STATIC_REQUIRE(L::is_specialized);
    STATIC_REQUIRE(L::is_signed);
    STATIC_REQUIRE(!L::is_integer);
    STATIC_REQUIRE(!L::is_exact);
    STATIC_REQUIRE(!L::has_infinity);
    STATIC_REQUIRE(L::has_quiet_NaN);
    STATIC_REQUIRE(!L::is_iec559);
    STATIC_REQUIRE(L::is_bounded);
    STATIC_REQUIRE(L::digits == 4);
    STATIC_REQUIRE(L::radix == 2);
    // 2^(e-1) representable for e - 1 in [-7, 7] (k in [-63, 63], gamma 8).
    STATIC_REQUIRE(L::min_exponent == -6);
    STATIC_REQUIRE(L::max_exponent == 8);
    // 10^-2 >= 2^(-63/8) ~ 0.0043 > 10^-3; 10^2 <= 235 < 10^3.
    STATIC_REQUIRE(L::min_exponent10 == -2);
    STATIC_REQUIRE(L::max_exponent10 == 2);
    STATIC_REQUIRE(L::max().bits() == 0x7F);
    STATIC_REQUIRE(L::min().bits() == 0x01);
    STATIC_REQUIRE(L::lowest().bits() == 0xFF);
    STATIC_REQUIRE(L::denorm_min().bits() == 0x01);
    STATIC_REQUIRE(L::quiet_NaN().bits() == 0x80);
    // epsilon: 2^(1/8) - 1 = 0.0905 = 2^(-27.7/8), the code k = -28; round_error 1/2 = 2^(-8/8).
    STATIC_REQUIRE(L::epsilon().k() == -28);
    STATIC_REQUIRE(L::round_error().k() == -8);
    CHECK(double(L::max()) == f8.max_magnitude());
    CHECK(double(L::lowest()) == -f8.max_magnitude());
    CHECK(double(L::epsilon()) == lowbit::lns_quantize(f8.base() - 1, f8));
    using L16 = std::numeric_limits<l16>;
    STATIC_REQUIRE(L16::digits == 9);
    STATIC_REQUIRE(L16::min_exponent == -62);
    STATIC_REQUIRE(L16::max_exponent == 64);
    CHECK(double(L16::epsilon()) == lowbit::lns_quantize(lowbit::lns16.base() - 1, lowbit::lns16));
}

TEST_CASE("an Eigen matrix of lns8 multiplies") {
    using N = Eigen::NumTraits<l8>;
    STATIC_REQUIRE(!N::IsComplex);
    STATIC_REQUIRE(!N::IsInteger);
    STATIC_REQUIRE(N::IsSigned);
    STATIC_REQUIRE(!N::RequireInitialization);
    CHECK(N::highest() == std::numeric_limits<l8>::max());
    using matrix = Eigen::Matrix<l8, Eigen::Dynamic, Eigen::Dynamic>;
    // By hand: every product is a power of two and every sum of two equal powers doubles, so every
    // step is exact on the lns8 grid whatever order Eigen picks.
    //   [1 1] [1 2]   [2 4]
    //   [2 2] [1 2] = [4 8]
    matrix a(2, 2), b(2, 2);
    a << l8(1.0), l8(1.0), l8(2.0), l8(2.0);
    b << l8(1.0), l8(2.0), l8(1.0), l8(2.0);
    const matrix c = (a * b).eval();
    CHECK(double(c(0, 0)) == 2.0);
    CHECK(double(c(0, 1)) == 4.0);
    CHECK(double(c(1, 0)) == 4.0);
    CHECK(double(c(1, 1)) == 8.0);
    // Irrational entries: with two terms per dot product there is one rounded addition, so the
    // result is the exact sum of the exact products rounded once.
    matrix x(2, 2), y(2, 3);
    x << l8::from_k(false, 3), l8(-0.5), l8(6.0), l8::from_k(true, -20);
    y << l8(2.0), l8::from_k(false, 5), l8(1.0), l8(0.25), l8(3.0), l8::from_k(false, 40);
    const matrix z = (x * y).eval();
    for (Eigen::Index i = 0; i < 2; ++i)
        for (Eigen::Index j = 0; j < 3; ++j) CHECK(z(i, j) == x(i, 0) * y(0, j) + x(i, 1) * y(1, j));
    CHECK(z(0, 0) == reference_sum(x(0, 0) * y(0, 0), x(0, 1) * y(1, 0)));
    // A matrix-vector product with products that saturate.
    Eigen::Matrix<l8, 2, 1> v;
    v << std::numeric_limits<l8>::max(), l8(1.0);
    const Eigen::Matrix<l8, 2, 1> w = (a * v).eval();
    CHECK(w(0) == std::numeric_limits<l8>::max());
}
