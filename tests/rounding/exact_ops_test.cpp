// Tests of lowbit/rounding/exact_ops.hpp: add/sub/mul/div_round_odd against MPFR's round-to-odd
// (round toward zero onto double's grid with its exponent range and subnormals, then set the last
// bit when inexact), on random doubles chosen to reach every path: any bit patterns, far-apart
// exponents, cancellation, results at and near double ties, subnormal results, overflow, and the
// special operands. Then the theorem the helpers exist for: rounding their result once more to a
// format with up to 50 mantissa bits is the correctly rounded result.
#include <lowbit/rounding/exact_ops.hpp>

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/quantize.hpp>

#include <catch2/catch.hpp>

#include "support/mpfr_exponent_range.hpp"
#include <mpfr.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();
constexpr double qnan = std::numeric_limits<double>::quiet_NaN();
constexpr double dbl_max = std::numeric_limits<double>::max();

enum class op { add, sub, mul, div };
constexpr op all_ops[] = {op::add, op::sub, op::mul, op::div};

const char* name(op o) {
    switch (o) {
        case op::add: return "add";
        case op::sub: return "sub";
        case op::mul: return "mul";
        case op::div: return "div";
    }
    return "?";
}

double round_odd(op o, double a, double b) {
    switch (o) {
        case op::add: return lowbit::add_round_odd(a, b);
        case op::sub: return lowbit::sub_round_odd(a, b);
        case op::mul: return lowbit::mul_round_odd(a, b);
        case op::div: return lowbit::div_round_odd(a, b);
    }
    return qnan;
}

int mpfr_op(op o, mpfr_ptr y, double a, double b, mpfr_rnd_t rnd) {
    mpfr_t x, z;
    mpfr_init2(x, 53);
    mpfr_init2(z, 53);
    mpfr_set_d(x, a, MPFR_RNDN);  // exact
    mpfr_set_d(z, b, MPFR_RNDN);
    int t = 0;
    switch (o) {
        case op::add: t = mpfr_add(y, x, z, rnd); break;
        case op::sub: t = mpfr_sub(y, x, z, rnd); break;
        case op::mul: t = mpfr_mul(y, x, z, rnd); break;
        case op::div: t = mpfr_div(y, x, z, rnd); break;
    }
    mpfr_clear(x);
    mpfr_clear(z);
    return t;
}

using exponent_range = lowbit_test::mpfr_exponent_range;

// Round to odd at double precision, from MPFR: RZ with double's exponent range (MPFR's exponent
// of 0.1b x 2^E: smallest subnormal 2^-1074 is E = -1073, largest binade E = 1024), then the last
// bit set when inexact, i.e. the truncated value moved one ulp away from zero when it is even.
double mpfr_round_odd(op o, double a, double b) {
    double d;
    int t;
    {
        exponent_range range(-1073, 1024);
        mpfr_t y;
        mpfr_init2(y, 53);
        t = mpfr_op(o, y, a, b, MPFR_RNDZ);
        t = mpfr_subnormalize(y, t, MPFR_RNDZ);
        d = mpfr_get_d(y, MPFR_RNDZ);  // exact
        mpfr_clear(y);
    }
    if (t != 0 && (std::bit_cast<std::uint64_t>(d) & 1) == 0) d = std::nextafter(d, std::copysign(inf, d));
    return d;
}

bool same(double x, double y) {
    return (std::isnan(x) && std::isnan(y)) || std::bit_cast<std::uint64_t>(x) == std::bit_cast<std::uint64_t>(y);
}

std::string show(double x) {
    char text[64];
    std::snprintf(text, sizeof text, "%a", x);
    return text;
}

// Checks every op on every pair; reports the first few mismatches with their operands.
void check_pairs(const std::vector<std::pair<double, double>>& pairs) {
    for (op o : all_ops) {
        int failures = 0;
        for (auto [a, b] : pairs) {
            const double got = round_odd(o, a, b);
            const double want = mpfr_round_odd(o, a, b);
            if (!same(got, want) && ++failures <= 5)
                FAIL_CHECK(name(o) << "(" << show(a) << ", " << show(b) << ") = " << show(got) << ", MPFR: " << show(want));
        }
        CHECK(failures == 0);
    }
}

struct generator {
    std::mt19937_64 rng{20240611};

    std::uint64_t bits() { return rng(); }
    double any_bits() { return std::bit_cast<double>(bits()); }
    double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
    int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
    double sign() { return (bits() & 1) ? -1.0 : 1.0; }
    // A random 53-bit significand in [1, 2) times 2^e.
    double with_exponent(int e) {
        const double m = std::bit_cast<double>((bits() >> 12) | std::bit_cast<std::uint64_t>(1.0));
        return sign() * std::ldexp(m, e);
    }
    // A significand of `width` random bits (top bit set) times 2^e.
    double short_significand(int width, int e) {
        const std::uint64_t m = (bits() >> (64 - width)) | (std::uint64_t(1) << (width - 1));
        return sign() * std::ldexp(double(m), e - width + 1);
    }
};

}  // namespace

TEST_CASE("round-odd helpers on special operands give the IEEE results") {
    const std::vector<double> specials = {0.0, -0.0, inf, -inf, qnan, 1.0, -1.0, 3.0, 0x1p-1074, -0x1p-1074,
                                          0x1p-1022, dbl_max, -dbl_max, 0x1.8p1023, 0x1p-537};
    std::vector<std::pair<double, double>> pairs;
    for (double a : specials)
        for (double b : specials) pairs.emplace_back(a, b);
    check_pairs(pairs);
    CHECK(same(lowbit::add_round_odd(dbl_max, dbl_max), dbl_max));   // RO never overflows to inf
    CHECK(same(lowbit::mul_round_odd(-dbl_max, 2.0), -dbl_max));
    CHECK(same(lowbit::mul_round_odd(0x1p-600, 0x1p-600), 0x1p-1074));  // underflow: odd = smallest
    CHECK(same(lowbit::div_round_odd(-0x1p-1074, 3.0), -0x1p-1074));
    CHECK(same(lowbit::add_round_odd(1.0, -1.0), 0.0));                // exact zero sum is +0
    CHECK(same(lowbit::mul_round_odd(-0.0, 5.0), -0.0));
    CHECK(same(lowbit::add_round_odd(1.0, 0x1p-60), 1.0 + 0x1p-52));   // sticky bit
    CHECK(same(lowbit::add_round_odd(1.0, -0x1p-60), 1.0 - 0x1p-53));
    CHECK(same(lowbit::div_round_odd(1.0, 3.0), 1.0 / 3.0));           // RN(1/3) is odd already
}

TEST_CASE("round-odd helpers equal MPFR on random doubles") {
    generator g;
    std::vector<std::pair<double, double>> pairs;
    const int n = 40000;
    SECTION("any bit patterns (all magnitudes, subnormals, inf, NaN)") {
        for (int i = 0; i < n; ++i) pairs.emplace_back(g.any_bits(), g.any_bits());
    }
    SECTION("moderate exponents, random significands") {
        for (int i = 0; i < n; ++i) pairs.emplace_back(g.with_exponent(g.integer(-30, 30)), g.with_exponent(g.integer(-30, 30)));
    }
    SECTION("far-apart exponents") {
        for (int i = 0; i < n; ++i) {
            const int e = g.integer(-500, 500);
            pairs.emplace_back(g.with_exponent(e), g.with_exponent(e - g.integer(50, 600)));
        }
    }
    SECTION("cancellation: b within a few ulps of -a or a") {
        for (int i = 0; i < n; ++i) {
            const double a = g.with_exponent(g.integer(-1070, 1020));
            double b = -a;
            for (int k = g.integer(-4, 4); k != 0; k += k > 0 ? -1 : 1) b = std::nextafter(b, k > 0 ? inf : -inf);
            pairs.emplace_back(a, (i & 1) ? b : -b);
        }
    }
    SECTION("results at and near double ties") {
        for (int i = 0; i < n; ++i) {
            // Sums: b is about half an ulp of a, exactly or off by a little.
            const double a = g.with_exponent(g.integer(-100, 100));
            const double half_ulp = std::ldexp(1.0, std::ilogb(a) - 53);
            const double b = half_ulp * (1.0 + g.integer(-2, 2) * std::ldexp(1.0, -g.integer(1, 60)));
            pairs.emplace_back(a, g.sign() * b);
            // Products and quotients of 27- and 28-bit significands: exact, ties, or just off.
            pairs.emplace_back(g.short_significand(g.integer(20, 28), g.integer(-40, 40)),
                               g.short_significand(g.integer(20, 28), g.integer(-40, 40)));
            // Quotients near a midpoint: a = b * m for a significand m of 54 bits.
            const double bq = g.short_significand(g.integer(1, 53), g.integer(-10, 10));
            const double m = g.short_significand(53, 0) + g.sign() * std::ldexp(1.0, -53);
            pairs.emplace_back(bq * m, bq);
        }
    }
    SECTION("subnormal and underflowing results") {
        for (int i = 0; i < n; ++i) {
            const int ea = g.integer(-1074, -400);
            const int eb = g.integer(-1140, -600) - ea;  // product exponent in [-1140, -600]
            pairs.emplace_back(g.with_exponent(ea), g.with_exponent(eb));
            pairs.emplace_back(g.with_exponent(g.integer(-1140, -900) + 200), g.with_exponent(g.integer(150, 260)));
            pairs.emplace_back(g.short_significand(g.integer(1, 53), g.integer(-1074, -1000)),
                               g.short_significand(g.integer(1, 53), g.integer(-1074, -1000)));
        }
    }
    SECTION("overflowing results") {
        for (int i = 0; i < n; ++i) {
            const int ea = g.integer(400, 1023);
            pairs.emplace_back(g.with_exponent(ea), g.with_exponent(g.integer(1000, 1100) - ea));
            pairs.emplace_back(g.with_exponent(g.integer(1000, 1023)), g.with_exponent(g.integer(-100, -1)));
            pairs.emplace_back(g.with_exponent(1023), g.with_exponent(g.integer(960, 1023)));
        }
    }
    check_pairs(pairs);
}

// ---- the theorem: RN_F(RO(a op b)) = RN_F(a op b) when man_bits <= 50 ----

namespace {

// a op b rounded to nearest-even onto a signed ieee format with subnormals (MPFR: precision
// M + 1, the exponent range of F, mpfr_subnormalize; overflow gives +-inf).
double mpfr_to_format(op o, double a, double b, const lowbit::float_format& f) {
    exponent_range range(f.emin() - f.man_bits + 1, f.emax() + 1);
    mpfr_t y;
    mpfr_init2(y, f.man_bits + 1);
    int t = mpfr_op(o, y, a, b, MPFR_RNDN);
    mpfr_subnormalize(y, t, MPFR_RNDN);
    const double d = mpfr_get_d(y, MPFR_RNDN);
    mpfr_clear(y);
    return d;
}

}  // namespace

TEST_CASE("rounding the round-odd result once more is correctly rounded, up to 50 mantissa bits") {
    // Double's own exponent range, and the largest precision the theorem allows.
    const lowbit::float_format formats[] = {
        {.exp_bits = 11, .man_bits = 50}, {.exp_bits = 11, .man_bits = 40}, {.exp_bits = 11, .man_bits = 20},
        {.exp_bits = 8, .man_bits = 23}};
    generator g;
    for (const lowbit::float_format& f : formats) {
        INFO(lowbit::to_string(f));
        const auto q = [&](double x) { return lowbit::quantize(x, f); };
        int failures = 0;
        for (int i = 0; i < 30000; ++i) {
            // Operands of F; b either anywhere or placed so that a + b is at or next to a midpoint
            // of F (half a spacing of F, off by a bit far below double's precision).
            const double a = q(g.with_exponent(g.integer(f.emin() - 5, std::min(f.emax(), 60))));
            const double mid = std::ldexp(1.0, std::max(std::ilogb(a), f.emin()) - f.man_bits - 1);
            const double b_tie = q(g.sign() * mid * (1.0 + g.integer(-1, 1) * std::ldexp(1.0, -f.man_bits)));
            const double b_any = q(g.with_exponent(g.integer(f.emin() - 5, std::min(f.emax(), 60))));
            for (double b : {b_tie, b_any}) {
                for (op o : all_ops) {
                    const double got = q(round_odd(o, a, b));
                    const double want = mpfr_to_format(o, a, b, f);
                    if (!same(got, want) && ++failures <= 5)
                        FAIL_CHECK(name(o) << "(" << show(a) << ", " << show(b) << "): " << show(got) << " vs " << show(want));
                }
            }
        }
        CHECK(failures == 0);
    }
}

TEST_CASE("the bound is tight: with 51 mantissa bits rounding the round-odd result can fail") {
    // 1 + b with b = 2^-52 + 2^-103 (52 significant bits): the exact sum lies just above the
    // midpoint 1 + 2^-52 between 1 and 1 + 2^-51, but its double round-to-odd is that midpoint
    // (already odd), which then rounds to even.
    const lowbit::float_format f{.exp_bits = 11, .man_bits = 51};
    const double b = 0x1p-52 + 0x1p-103;
    REQUIRE(lowbit::quantize(b, f) == b);
    CHECK(lowbit::add_round_odd(1.0, b) == 1.0 + 0x1p-52);
    CHECK(lowbit::quantize(lowbit::add_round_odd(1.0, b), f) == 1.0);
    CHECK(mpfr_to_format(op::add, 1.0, b, f) == 1.0 + 0x1p-51);
}
