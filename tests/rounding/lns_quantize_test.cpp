// lns_quantize: every mode against an MPFR oracle written from the definition (log2 at 256 bits,
// exact comparisons with midpoints computed at 256 bits), on random inputs and on inputs within a
// few ulps of every kind of decision boundary; the exhaustive computation behind the exactness
// argument of lns_format.hpp / lns_quantize.hpp; round trips; stochastic rounding's mean and
// reproducibility; the per-tensor scale; the array quantizer.
#include <lowbit/rounding/lns_quantize.hpp>

#include <lowbit/formats/lns_format.hpp>

#include <catch2/catch.hpp>
#include <mpfr.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace {

using lowbit::lns_format;
using lowbit::lns_rounding;
using lowbit::lns_underflow;

constexpr mpfr_prec_t precision = 256;

class mp {
public:
    mp() { mpfr_init2(v_, precision); }
    ~mp() { mpfr_clear(v_); }
    mp(const mp&) = delete;
    mp& operator=(const mp&) = delete;
    mpfr_ptr get() { return v_; }

private:
    mpfr_t v_;
};

// 2^(n / 2^m) at 256 bits.
void exp2_ratio(mpfr_ptr out, long long n, int m) {
    mpfr_set_si(out, long(n), MPFR_RNDN);
    mpfr_div_2ui(out, out, unsigned(m), MPFR_RNDN);  // exact
    mpfr_exp2(out, out, MPFR_RNDN);
}

double exp2_ratio_double(long long n, int m, mpfr_rnd_t rnd = MPFR_RNDN) {
    mp v;
    exp2_ratio(v.get(), n, m);
    return mpfr_get_d(v.get(), rnd);
}

// floor(2^m log2 a), a > 0: log2 at 256 bits is exact for powers of two and otherwise irrational,
// never within 2^-200 of an integer for the inputs here.
long long floor_scaled_log2(double a, int m) {
    mp t;
    mpfr_set_d(t.get(), a, MPFR_RNDN);
    mpfr_log2(t.get(), t.get(), MPFR_RNDN);
    mpfr_mul_2ui(t.get(), t.get(), unsigned(m), MPFR_RNDN);
    return mpfr_get_si(t.get(), MPFR_RNDD);
}

// The definition: k on the unbounded grid, then the range (nullopt: zero).
std::optional<int> oracle_k(double a, const lns_format& f, lns_rounding mode, lns_underflow under,
                            std::uint32_t random, int random_bits) {
    const int b = f.frac_bits;
    long long k = 0;
    if (std::isinf(a)) {
        k = f.k_max() + 1;
    } else {
        switch (mode) {
            case lns_rounding::toward_zero: k = floor_scaled_log2(a, b); break;
            case lns_rounding::nearest_log: {
                k = floor_scaled_log2(a, b);
                mp m;  // the geometric midpoint 2^((k + 1/2) / gamma)
                exp2_ratio(m.get(), 2 * k + 1, b + 1);
                if (mpfr_cmp_d(m.get(), a) <= 0) ++k;
                break;
            }
            case lns_rounding::nearest_linear: {
                k = floor_scaled_log2(a, b);
                mp lo, hi;
                exp2_ratio(lo.get(), k, b);
                exp2_ratio(hi.get(), k + 1, b);
                mpfr_add(lo.get(), lo.get(), hi.get(), MPFR_RNDN);
                mpfr_div_2ui(lo.get(), lo.get(), 1, MPFR_RNDN);  // the arithmetic midpoint
                const int c = mpfr_cmp_d(lo.get(), a);
                if (c < 0 || (c == 0 && k % 2 != 0)) ++k;
                break;
            }
            case lns_rounding::stochastic_log: {
                const long long h = floor_scaled_log2(a, b + random_bits);
                const long long one = 1ll << random_bits;
                k = h >= 0 ? h / one : -((-h + one - 1) / one);
                const long long fraction = h - k * one;
                const long long u = (long long)(random_bits == 32 ? random : random % (1u << random_bits));
                if (fraction + u >= one) ++k;
                break;
            }
        }
    }
    if (k > f.k_max()) return f.k_max();
    if (k < f.k_min()) return under == lns_underflow::zero ? std::nullopt : std::optional<int>(f.k_min());
    return int(k);
}

double oracle(double x, const lns_format& f, lns_rounding mode, lns_underflow under, std::uint32_t random = 0,
              int random_bits = 32) {
    if (std::isnan(x) || x == 0) return x;
    const std::optional<int> k = oracle_k(std::fabs(x), f, mode, under, random, random_bits);
    const double m = k ? exp2_ratio_double(*k, f.frac_bits) : 0.0;
    return std::signbit(x) ? -m : m;
}

bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b)); }

const std::vector<lns_format>& formats() {
    static const std::vector<lns_format> list = {
        lowbit::lns8,
        lowbit::lns16,
        {.log_bits = 10, .frac_bits = 0},              // gamma = 1: linear ties exist
        {.log_bits = 6, .frac_bits = 1, .offset = 5},  // a shifted range
        {.log_bits = 16, .frac_bits = 12, .offset = -3000},
        {.log_bits = 24, .frac_bits = 20},             // the largest gamma
        {.log_bits = 12, .frac_bits = 2, .offset = -1022 * 4 + 2048},  // the bottom of double's range
    };
    return list;
}

// Inputs: random magnitudes over the format's range and beyond, and doubles within a few ulps of
// geometric midpoints, arithmetic midpoints and grid values (each computed at 256 bits and
// rounded both ways), with random signs; sometimes any double at all.
double draw(const lns_format& f, std::mt19937_64& rng) {
    const int gamma = f.gamma();
    std::uniform_int_distribution<int> kind(0, 99), k_dist(f.k_min() - 2, f.k_max() + 1), ulps(-3, 3), coin(0, 1);
    const int what = kind(rng);
    double x = 0;
    if (what < 30) {
        std::uniform_real_distribution<double> l(double(f.k_min()) / gamma - 3, double(f.k_max()) / gamma + 3);
        x = std::exp2(l(rng));
    } else if (what < 35) {
        do x = std::bit_cast<double>(rng()); while (std::isnan(x));
    } else {
        const long long k = k_dist(rng);
        mp m;
        if (what < 70) {
            exp2_ratio(m.get(), 2 * k + 1, f.frac_bits + 1);  // geometric midpoint
        } else if (what < 90) {
            mp hi;  // arithmetic midpoint
            exp2_ratio(m.get(), k, f.frac_bits);
            exp2_ratio(hi.get(), k + 1, f.frac_bits);
            mpfr_add(m.get(), m.get(), hi.get(), MPFR_RNDN);
            mpfr_div_2ui(m.get(), m.get(), 1, MPFR_RNDN);
        } else {
            exp2_ratio(m.get(), k, f.frac_bits);  // grid value
        }
        x = mpfr_get_d(m.get(), coin(rng) ? MPFR_RNDD : MPFR_RNDU);
        const int n = ulps(rng);
        for (int i = 0; i < std::abs(n); ++i) x = std::nextafter(x, n > 0 ? 1e308 : 0.0);
    }
    return coin(rng) ? -x : x;
}

void check_mode(lns_rounding mode, int per_format) {
    std::mt19937_64 rng(1234 + int(mode));
    std::uniform_int_distribution<int> bits_dist(0, 9);
    std::size_t checked = 0;
    for (const lns_format& f : formats()) {
        for (int i = 0; i < per_format; ++i) {
            const double x = draw(f, rng);
            const std::uint32_t random = std::uint32_t(rng());
            const int r = bits_dist(rng);
            const int random_bits = r < 6 ? 32 : r < 8 ? 7 : r < 9 ? 1 : 20;
            const lns_underflow under = (i % 4 == 0) ? lns_underflow::smallest : lns_underflow::zero;
            const double got = lowbit::lns_quantize(x, f, mode, under, random, random_bits);
            const double want = oracle(x, f, mode, under, random, random_bits);
            if (!same(got, want)) {
                INFO("mode " << lowbit::to_string(mode) << " log_bits " << f.log_bits << " frac_bits " << f.frac_bits
                             << " offset " << f.offset << " x " << std::hexfloat << x << " got " << got << " want "
                             << want << " random " << random << " bits " << random_bits);
                REQUIRE(same(got, want));
            }
            ++checked;
        }
    }
    CHECK(checked >= 100000);
}

const std::vector<double> specials = {0.0, -0.0, std::numeric_limits<double>::infinity(),
                                      -std::numeric_limits<double>::infinity(),
                                      std::numeric_limits<double>::quiet_NaN(),
                                      std::numeric_limits<double>::denorm_min(),
                                      -std::numeric_limits<double>::max(),
                                      std::numeric_limits<double>::min()};

}  // namespace

TEST_CASE("the table of 2^(2^-i) is correctly rounded double-double") {
    for (int i = 1; i <= 52; ++i) {
        mp c, r;
        exp2_ratio(c.get(), 1, i);
        const double hi = mpfr_get_d(c.get(), MPFR_RNDN);
        mpfr_sub_d(r.get(), c.get(), hi, MPFR_RNDN);
        INFO("i = " << i);
        CHECK(lowbit::detail::exp2_of_inverse_power_of_two[i].hi == hi);
        CHECK(lowbit::detail::exp2_of_inverse_power_of_two[i].lo == mpfr_get_d(r.get(), MPFR_RNDN));
    }
}

TEST_CASE("exp2_dyadic is within 2^-96 (relative)") {
    std::mt19937_64 rng(5);
    double worst = 0;
    for (int m = 0; m <= 52; ++m) {
        for (int i = 0; i < 200; ++i) {
            const std::uint64_t j = m == 0 ? 0 : (i == 0 ? (std::uint64_t(1) << m) - 1 : rng() >> (64 - m));
            const lowbit::detail::double_double d = lowbit::detail::exp2_dyadic(j, m);
            mp exact, err;
            exp2_ratio(exact.get(), (long long)j, m);
            mpfr_sub_d(err.get(), exact.get(), d.hi, MPFR_RNDN);
            mpfr_sub_d(err.get(), err.get(), d.lo, MPFR_RNDN);
            mpfr_div(err.get(), err.get(), exact.get(), MPFR_RNDN);
            worst = std::max(worst, std::fabs(mpfr_get_d(err.get(), MPFR_RNDN)));
        }
    }
    INFO("worst relative error 2^" << std::log2(worst));
    CHECK(worst < 0x1p-96);
}

// The computation that makes the double-double comparisons exact: scaled into [1, 2), every
// threshold of toward_zero and nearest_log (2^(j / 2^21), which includes every 2^(h / 2^m) with
// m <= 21) and every arithmetic midpoint 2^(r / 2^b) (1 + 2^(2^-b)) / 2 (b = 1..20; b = 0 gives the
// double 1.5) is farther than 2^-96 (relative) from every 54-bit number: from every double and
// every midpoint between doubles. Hence comparisons with doubles are decided by the < 2^-96
// approximations, and rounding those approximations to double (or to odd, then to float) is
// correct. Takes about a second.
TEST_CASE("distance of LNS constants to doubles") {
    mp c, t, step, frac;
    const auto relative_distance = [&]() {
        mpfr_mul_2ui(t.get(), c.get(), 53, MPFR_RNDN);  // exact; the 54-bit grid on [1, 2) is Z 2^-53
        mpfr_frac(frac.get(), t.get(), MPFR_RNDN);
        double d = mpfr_get_d(frac.get(), MPFR_RNDN);
        d = std::min(d, 1 - d);
        return d * 0x1p-53 / mpfr_get_d(c.get(), MPFR_RNDN);
    };
    constexpr int m = 21;
    exp2_ratio(step.get(), 1, m);
    mpfr_set_ui(c.get(), 1, MPFR_RNDN);
    double nearest = 1;
    for (long j = 1; j < (1l << m); ++j) {
        mpfr_mul(c.get(), c.get(), step.get(), MPFR_RNDN);  // 2^(j/2^21), error ~2^21 * 2^-256
        nearest = std::min(nearest, relative_distance());
    }
    INFO("2^(j/2^21): nearest 54-bit number at 2^" << std::log2(nearest));
    CHECK(nearest > 0x1p-78);
    double nearest_linear = 1;
    for (int b = 1; b <= 20; ++b) {
        exp2_ratio(step.get(), 1, b);
        mpfr_add_ui(c.get(), step.get(), 1, MPFR_RNDN);
        mpfr_div_2ui(c.get(), c.get(), 1, MPFR_RNDN);
        for (long r = 0; r < (1l << b); ++r) {
            nearest_linear = std::min(nearest_linear, relative_distance());
            mpfr_mul(c.get(), c.get(), step.get(), MPFR_RNDN);
        }
    }
    INFO("arithmetic midpoints: nearest 54-bit number at 2^" << std::log2(nearest_linear));
    CHECK(nearest_linear > 0x1p-78);
}

// Decoding rounds the irrational 2^(k/gamma) to the nearest double, which lies on one side of it:
// the nearest modes (and stochastic_log with u = 2^32 - 1) give k back; toward_zero gives k when
// the double is at or above 2^(k/gamma) and k - 1 when it is below (it truncates the exact value).
// The exact floor(2^m log2 s) behind every mode, for every m up to 52 (stochastic_log with 20
// fractional bits and 32 random bits), at doubles within a few ulps of its thresholds 2^(h/2^m),
// where the log2 guess is not trusted and the double-double comparisons decide.
TEST_CASE("floor_scaled_log2 is exact next to its thresholds") {
    std::mt19937_64 rng(21);
    std::uniform_int_distribution<int> ulps(-3, 3), coin(0, 1);
    std::uniform_real_distribution<double> l(-1070, 1020);
    for (int m = 0; m <= 52; ++m) {
        for (int i = 0; i < 400; ++i) {
            const long long h = (long long)std::floor(std::ldexp(l(rng), m));
            mp t;
            exp2_ratio(t.get(), h, m);
            double x = mpfr_get_d(t.get(), coin(rng) ? MPFR_RNDD : MPFR_RNDU);
            const int n = ulps(rng);
            for (int j = 0; j < std::abs(n); ++j) x = std::nextafter(x, n > 0 ? 1e308 : 0.0);
            if (x == 0) continue;
            INFO("m " << m << " x " << std::hexfloat << x);
            REQUIRE(lowbit::detail::floor_scaled_log2(x, m) == floor_scaled_log2(x, m));
        }
    }
}

TEST_CASE("floor_scaled_log2 is exact next to every threshold of its table (m <= 8)") {
    // Every 2^(e + i / 2^m), i = 1 .. 2^m - 1, for exponents across double's normal range, and the
    // doubles two ulps either side of it.
    for (int m = 0; m <= lowbit::detail::table_log2_bits; ++m)
        for (long long i = 1; i < (1LL << m); ++i)
            for (const long long e : {-1021LL, -1LL, 0LL, 7LL, 1000LL}) {
                mp t;
                exp2_ratio(t.get(), e * (1LL << m) + i, m);
                double x = mpfr_get_d(t.get(), MPFR_RNDD);
                for (int j = 0; j < 2; ++j) x = std::nextafter(x, 0.0);
                for (int step = 0; step < 5; ++step, x = std::nextafter(x, 1e308)) {
                    INFO("m " << m << " i " << i << " x " << std::hexfloat << x);
                    REQUIRE(lowbit::detail::floor_scaled_log2(x, m) == floor_scaled_log2(x, m));
                }
            }
}

TEST_CASE("floor_scaled_log2 is exact at every bucket edge of its table's lookup (m <= 8)") {
    // The table cuts [1, 2) into 2^(m + 2) buckets: their edges 1 + j 2^-(m + 2) and the doubles
    // two ulps either side, at several exponents.
    for (int m = 0; m <= lowbit::detail::table_log2_bits; ++m)
        for (long long j = 0; j < (4LL << m); ++j)
            for (const int e : {-1022, -3, 0, 9, 1000}) {
                double x = std::ldexp(1 + std::ldexp(double(j), -(m + 2)), e);
                for (int u = 0; u < 2; ++u) x = std::nextafter(x, 0.0);
                for (int step = 0; step < 5; ++step, x = std::nextafter(x, 1e308)) {
                    INFO("m " << m << " j " << j << " x " << std::hexfloat << x);
                    REQUIRE(lowbit::detail::floor_scaled_log2(x, m) == floor_scaled_log2(x, m));
                }
            }
}

TEST_CASE("every code of lns8 and lns16 round-trips") {
    for (const lns_format& f : {lowbit::lns8, lowbit::lns16}) {
        for (int k = f.k_min(); k <= f.k_max(); ++k) {
            mp exact;
            exp2_ratio(exact.get(), k, f.frac_bits);
            const bool below = mpfr_cmp_d(exact.get(), f.magnitude(k)) > 0;
            for (const double v : {f.magnitude(k), -f.magnitude(k)}) {
                INFO("k " << k);
                REQUIRE(lowbit::lns_quantize(v, f, lns_rounding::nearest_log) == v);
                REQUIRE(lowbit::lns_quantize(v, f, lns_rounding::nearest_linear) == v);
                REQUIRE(lowbit::lns_quantize(v, f, lns_rounding::stochastic_log, lns_underflow::zero, 0xFFFFFFFFu) == v);
                const double t = lowbit::lns_quantize(v, f, lns_rounding::toward_zero);
                if (below) REQUIRE(std::fabs(t) == (k == f.k_min() ? 0.0 : f.magnitude(k - 1)));
                else REQUIRE(t == v);
                const std::optional<int> back = lowbit::lns_round_magnitude(std::fabs(v), f, lns_rounding::nearest_log);
                REQUIRE(back);
                REQUIRE(*back == k);
            }
        }
    }
}

TEST_CASE("nearest_log equals the MPFR oracle") { check_mode(lns_rounding::nearest_log, 15000); }
TEST_CASE("nearest_linear equals the MPFR oracle") { check_mode(lns_rounding::nearest_linear, 15000); }
TEST_CASE("toward_zero equals the MPFR oracle") { check_mode(lns_rounding::toward_zero, 15000); }
TEST_CASE("stochastic_log equals the MPFR oracle") { check_mode(lns_rounding::stochastic_log, 15000); }

TEST_CASE("special inputs, saturation, underflow") {
    for (const lns_format& f : formats())
        for (const auto mode : {lns_rounding::nearest_log, lns_rounding::nearest_linear, lns_rounding::toward_zero,
                                lns_rounding::stochastic_log})
            for (const auto under : {lns_underflow::zero, lns_underflow::smallest})
                for (const double x : specials) CHECK(same(lowbit::lns_quantize(x, f, mode, under, 77), oracle(x, f, mode, under, 77)));
    const lns_format f = lowbit::lns8;
    CHECK(lowbit::lns_quantize(1e30, f) == f.max_magnitude());
    CHECK(lowbit::lns_quantize(-std::numeric_limits<double>::infinity(), f) == -f.max_magnitude());
    CHECK(std::isnan(lowbit::lns_quantize(std::numeric_limits<double>::quiet_NaN(), f)));
    CHECK(std::signbit(lowbit::lns_quantize(-0.0, f)));
    CHECK(std::signbit(lowbit::lns_quantize(-1e-30, f)));
    CHECK(lowbit::lns_quantize(-1e-30, f) == 0);
    CHECK(lowbit::lns_quantize(-1e-30, f, lns_rounding::nearest_log, lns_underflow::smallest) == -f.min_magnitude());
    // Just below the geometric midpoint under the smallest magnitude: zero; just above: the smallest.
    const double m = exp2_ratio_double(2 * f.k_min() - 1, f.frac_bits + 1, MPFR_RNDD);
    CHECK(lowbit::lns_quantize(m, f) == 0);
    CHECK(lowbit::lns_quantize(std::nextafter(m, 1.0), f) == f.min_magnitude());
}

TEST_CASE("gamma = 1: linear ties go to the even k") {
    const lns_format f{.log_bits = 6, .frac_bits = 0};
    // 1.5 is halfway between 2^0 and 2^1, 3 between 2^1 and 2^2, 6 between 2^2 and 2^3.
    CHECK(lowbit::lns_quantize(1.5, f, lns_rounding::nearest_linear) == 1.0);
    CHECK(lowbit::lns_quantize(3.0, f, lns_rounding::nearest_linear) == 4.0);
    CHECK(lowbit::lns_quantize(6.0, f, lns_rounding::nearest_linear) == 4.0);
    CHECK(lowbit::lns_quantize(-0.75, f, lns_rounding::nearest_linear) == -1.0);
    CHECK(lowbit::lns_quantize(std::nextafter(1.5, 9.0), f, lns_rounding::nearest_linear) == 2.0);
    CHECK(lowbit::lns_quantize(std::nextafter(3.0, 0.0), f, lns_rounding::nearest_linear) == 2.0);
    // The geometric midpoint sqrt(2) is irrational: no tie, and the doubles around it split.
    CHECK(lowbit::lns_quantize(0x1.6a09e667f3bccp+0, f) == 1.0);  // below sqrt(2)
    CHECK(lowbit::lns_quantize(0x1.6a09e667f3bcdp+0, f) == 2.0);  // RN(sqrt(2)) is above it
}

TEST_CASE("stochastic_log is unbiased in the log domain and reproducible") {
    const lns_format f = lowbit::lns8;
    const lowbit::lns_quantizer q{.format = f, .mode = lns_rounding::stochastic_log, .seed = 99};
    constexpr int n = 20000;
    for (const double x : {1.3, -0.07, 17.0, 0.005}) {
        const double t = f.gamma() * std::log2(std::fabs(x));
        const double p = t - std::floor(t);
        double sum_k = 0;
        for (int i = 0; i < n; ++i) {
            const double v = q(x, std::uint64_t(i));
            sum_k += f.gamma() * std::log2(std::fabs(v));
        }
        const double mean = sum_k / n;
        const double sigma = std::sqrt(p * (1 - p) / n);
        INFO("x " << x << " mean k " << mean << " t " << t << " sigma " << sigma);
        CHECK(std::fabs(mean - t) < 4 * sigma + 1e-9);
    }
    // Reproducible: the same seed gives the same values, element k of an array equals the scalar
    // call with index k, whatever the first index; another seed differs.
    std::vector<double> in(1000), a(1000), b(1000);
    std::mt19937_64 rng(3);
    for (double& x : in) x = std::exp2(std::uniform_real_distribution<double>(-7, 7)(rng));
    q(in, a, 500);
    q(in, b, 500);
    CHECK(a == b);
    for (std::size_t i = 0; i < in.size(); ++i) REQUIRE(a[i] == q(in[i], 500 + i));
    lowbit::lns_quantizer other = q;
    other.seed = 100;
    other(in, b, 500);
    CHECK(a != b);
    std::vector<double> c = in;
    q(std::span<double>(c), 500);  // in place
    CHECK(c == a);
}

TEST_CASE("lns_quantizer: arrays equal scalars, float results correctly rounded") {
    std::mt19937_64 rng(8);
    for (const auto mode : {lns_rounding::nearest_log, lns_rounding::nearest_linear, lns_rounding::toward_zero,
                            lns_rounding::stochastic_log}) {
        const lowbit::lns_quantizer q{.format = lowbit::lns16, .mode = mode, .seed = 4, .random_bits = 12};
        std::vector<float> in(3000), out(3000);
        for (float& x : in) x = float(draw(lowbit::lns16, rng));
        q(in, out, 7);
        for (std::size_t i = 0; i < in.size(); ++i) {
            const double d = q(double(in[i]), 7 + i);
            const std::uint32_t random = mode == lns_rounding::stochastic_log ? lowbit::random_bits_at(4, 7 + i) : 0u;
            float want = in[i];
            if (in[i] != 0) {
                const std::optional<int> k = oracle_k(std::fabs(double(in[i])), lowbit::lns16, mode, lns_underflow::zero, random, 12);
                mp v;
                if (k) exp2_ratio(v.get(), *k, lowbit::lns16.frac_bits);
                want = k ? mpfr_get_flt(v.get(), MPFR_RNDN) : 0.0f;
                if (std::signbit(in[i])) want = -want;
            }
            INFO("x " << in[i] << " mode " << lowbit::to_string(mode));
            REQUIRE(same(out[i], want));
            REQUIRE(same(d, oracle(double(in[i]), lowbit::lns16, mode, lns_underflow::zero, random, 12)));
        }
    }
    const lowbit::lns_quantizer q{};
    std::vector<double> a(3), b(4);
    CHECK_THROWS_AS(q(a, b), std::invalid_argument);
    const lowbit::lns_quantizer bad{.mode = lns_rounding::stochastic_log, .random_bits = 33};
    CHECK_THROWS_WITH(bad(1.5), "lowbit::lns_quantize: random_bits = 33: must be in [1, 32]");
    const lowbit::lns_quantizer bad_format{.format = {.log_bits = 30}};
    CHECK_THROWS_WITH(bad_format(1.5), "lowbit::lns_format: log_bits = 30: must be in [2, 24]");
}

TEST_CASE("per-tensor scale: the largest magnitude lands on the top code or one step below") {
    std::mt19937_64 rng(11);
    for (const lns_format& f : {lowbit::lns8, lowbit::lns16, lns_format{.log_bits = 5, .frac_bits = 0}}) {
        for (int i = 0; i < 2000; ++i) {
            const double amax = std::exp2(std::uniform_real_distribution<double>(-60, 60)(rng));
            const int j = lowbit::lns_scale_exponent_for_max(amax, f);
            const lns_format s = f.scaled(j);
            // amax <= 2^((k_max + j) / gamma) < amax 2^(1/gamma), decided by the oracle's floor.
            const long long k = floor_scaled_log2(amax, f.frac_bits);
            const bool on_grid = exp2_ratio_double(k, f.frac_bits) == amax && std::ilogb(amax) * f.gamma() == k;
            REQUIRE(s.k_max() == (on_grid ? k : k + 1));
            REQUIRE(lowbit::lns_quantize(amax, s) <= s.max_magnitude());
            REQUIRE(lowbit::lns_scale_for_max(amax, f) == exp2_ratio_double(j, f.frac_bits));
        }
    }
    // On the grid: amax = 128 = 2^(56/8) becomes exactly the largest magnitude.
    CHECK(lowbit::lns_scale_exponent_for_max(128.0, lowbit::lns8) == 56 - 63);
    CHECK(lowbit::lns8.scaled(56 - 63).max_magnitude() == 128.0);
    CHECK(lowbit::lns_scale_exponent_for_max(0.0, lowbit::lns8) == 0);
    CHECK_THROWS_WITH(lowbit::lns_scale_for_max(-1.0, lowbit::lns8),
                      Catch::Matchers::StartsWith("lowbit::lns_scale_for_max: amax = -1"));
    CHECK_THROWS_AS(lowbit::lns_scale_for_max(std::numeric_limits<double>::infinity(), lowbit::lns8), std::invalid_argument);
    // Scales that would push the format out of double's range.
    CHECK_THROWS_WITH(lowbit::lns_scale_for_max(std::numeric_limits<double>::max(), lowbit::lns8),
                      Catch::Matchers::EndsWith("the scaled format would leave double's range"));
    CHECK_THROWS_AS(lowbit::lns_scale_for_max(1e-300, lowbit::lns16), std::invalid_argument);
    CHECK_NOTHROW(lowbit::lns_scale_for_max(1e300, lowbit::lns8));
}
