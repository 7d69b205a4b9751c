// lowbit/formats/lns_format.hpp: what values a logarithmic number system (LNS) has.
//
//   value = sign * 2^(k / gamma),   gamma = 2^frac_bits,   k an integer in [k_min(), k_max()]
//
// (Zhao et al., "LNS-Madam", IEEE TC 2022: an 8-bit LNS is a sign and a 7-bit k with gamma = 8.)
// A code is a sign bit above a log_bits-wide field e (bits() = 1 + log_bits):
//
//   e = 0, sign 0        zero (the only zero: there is no -0 code)
//   e = 0, sign 1        NaN ("not a real", as posits do: the format has no infinity, so this is
//                        the one code left for 0/0, x/0 and NaN inputs)
//   e in [1, 2^L - 1]    sign * 2^(k / gamma) with k = e - 2^(L-1) + offset   (L = log_bits)
//
// so k_min() = offset - 2^(L-1) + 1 and k_max() = offset + 2^(L-1) - 1: a range symmetric about
// 2^(offset / gamma) (1 when offset = 0), with 2^L - 1 magnitudes and 2^(L+1) - 1 values.
// `offset` is the format's fixed scale; a per-tensor scale 2^(j / gamma) is the same thing chosen
// at run time (lns_quantize.hpp: lns_scale_for_max and lns_format::scaled).
//
// Like float_format, lns_format is a structural literal type: one value configures a runtime
// quantizer and is a template argument of a storage type (lowbit::lns<lowbit::lns8>).
//
// The values as doubles. 2^(k / gamma) is irrational unless gamma divides k, so a format cannot
// hold it exactly; magnitude(k) is the correctly rounded double (round to nearest). It is computed
// as 2^q * 2^(r / gamma) with k = q gamma + r, 0 <= r < gamma, and 2^(r / gamma) the product of
// the constants 2^(2^-i) (one per set bit of r, stored as double-double pairs correctly rounded
// to 106 bits) in double-double arithmetic: relative error below 2^-96 (see exp2_dyadic). That
// approximation rounds to the right double whenever the exact value is more than 2^-96
// (relative) away from every midpoint between neighbouring doubles; an exhaustive computation
// with MPFR (tests/rounding/lns_quantize_test.cpp, "distance of LNS constants to doubles") shows
// that every 2^(j / 2^21), 0 < j < 2^21 -- which includes every value and every geometric
// midpoint of every valid format, frac_bits <= 20 -- lies at least 2^-77.8 (relative) away from
// every 54-bit number, i.e. from every double and every midpoint between doubles. Hence
// magnitude() is correctly rounded for every valid format. Needs only the standard library.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace lowbit {

namespace detail {

// An unevaluated sum hi + lo with |lo| <= ulp(hi) / 2.
struct double_double {
    double hi = 0;
    double lo = 0;
};

// a + b = s + e exactly (Knuth's TwoSum; any order of magnitudes).
constexpr double_double two_sum(double a, double b) {
    const double s = a + b;
    const double bb = s - a;
    const double e = (a - (s - bb)) + (b - bb);
    return {s, e};
}

// a + b = s + e exactly when |a| >= |b| (Dekker's Fast2Sum).
constexpr double_double fast_two_sum(double a, double b) {
    const double s = a + b;
    return {s, b - (s - a)};
}

// a * b = p + e exactly (no overflow or underflow: lns uses it on numbers in [1/2, 4]). At run
// time through fma; during constant evaluation, where std::fma is not constexpr, through
// Veltkamp's splitting (Dekker's TwoProduct), which needs only + - *.
constexpr double_double two_prod(double a, double b) {
    const double p = a * b;
    if (!std::is_constant_evaluated()) return {p, std::fma(a, b, -p)};
    const auto split = [](double x) {
        const double c = 134217729.0 * x;  // 2^27 + 1
        const double high = c - (c - x);
        return double_double{high, x - high};
    };
    const double_double sa = split(a), sb = split(b);
    const double e = ((sa.hi * sb.hi - p) + sa.hi * sb.lo + sa.lo * sb.hi) + sa.lo * sb.lo;
    return {p, e};
}

// x * y in double-double: Joldes, Muller & Popescu's DWTimesDW3 ("Tight and rigorous error bounds
// for basic building blocks of double-word arithmetic", ACM TOMS 2017), relative error at most
// 4u^2 = 2^-104 (u = 2^-53). (Their algorithm uses fma for the low terms; the constant-evaluation
// path computes those terms with two roundings instead of one, which adds at most another u^2.)
constexpr double_double dd_mul(double_double x, double_double y) {
    const double_double c = two_prod(x.hi, y.hi);
    const double tl0 = x.lo * y.lo;
    double tl1 = 0, cl2 = 0;
    if (!std::is_constant_evaluated()) {
        tl1 = std::fma(x.hi, y.lo, tl0);
        cl2 = std::fma(x.lo, y.hi, tl1);
    } else {
        tl1 = x.hi * y.lo + tl0;
        cl2 = x.lo * y.hi + tl1;
    }
    const double cl3 = c.lo + cl2;
    return fast_two_sum(c.hi, cl3);
}

// 2^(2^-i) for i = 1..52 as double-double: hi = RN(c), lo = RN(c - hi) (computed with MPFR at
// 300 bits; tests/rounding/lns_quantize_test.cpp checks them), relative error < 2^-106.
inline constexpr double_double exp2_of_inverse_power_of_two[53] = {
    {2.0, 0.0},  // 2^(2^0), unused: keeps the index equal to i
    {0x1.6a09e667f3bcdp+0, -0x1.bdd3413b26456p-54},  {0x1.306fe0a31b715p+0, 0x1.6f46ad23182e4p-55},
    {0x1.172b83c7d517bp+0, -0x1.19041b9d78a76p-55},  {0x1.0b5586cf9890fp+0, 0x1.8a62e4adc610bp-54},
    {0x1.059b0d3158574p+0, 0x1.d73e2a475b465p-55},   {0x1.02c9a3e778061p+0, -0x1.19083535b085dp-56},
    {0x1.0163da9fb3335p+0, 0x1.b61299ab8cdb7p-54},   {0x1.00b1afa5abcbfp+0, -0x1.4f6b2a7609f71p-55},
    {0x1.0058c86da1c0ap+0, -0x1.5e00e62d6b30dp-56},  {0x1.002c605e2e8cfp+0, -0x1.d7c96f201bb2fp-55},
    {0x1.00162f3904052p+0, -0x1.7b5d0d58ea8f4p-58},  {0x1.000b175effdc7p+0, 0x1.ae8e38c59c72ap-54},
    {0x1.00058ba01fbap+0, -0x1.a4a4d4cad39fep-54},   {0x1.0002c5cc37da9p+0, 0x1.247426170d232p-54},
    {0x1.000162e525eep+0, 0x1.51d5115f56655p-54},    {0x1.0000b17255776p+0, -0x1.fdfcf3a05ada9p-55},
    {0x1.000058b91b5bdp+0, -0x1.9474449f85921p-54},  {0x1.00002c5c89d5fp+0, -0x1.c9ad941ba99ffp-55},
    {0x1.0000162e43f5p+0, -0x1.f3be7c7f49f19p-54},   {0x1.00000b1721bdp+0, -0x1.b31303b78afcbp-55},
    {0x1.0000058b90cf2p+0, -0x1.92680635eb243p-56},  {0x1.000002c5c863bp+0, 0x1.cfc0591a3daebp-54},
    {0x1.00000162e430ep+0, 0x1.6863d84678f01p-54},   {0x1.000000b172183p+0, 0x1.5452e1b9b65bcp-54},
    {0x1.00000058b90c1p+0, -0x1.2dce506881ee5p-54},  {0x1.0000002c5c86p+0, 0x1.cc6b9e94213c7p-56},
    {0x1.000000162e43p+0, -0x1.f90418eaba9bdp-61},   {0x1.0000000b17218p+0, -0x1.158e319569f98p-58},
    {0x1.000000058b90cp+0, -0x1.908d29961f189p-59},  {0x1.00000002c5c86p+0, -0x1.ce0ca595cf25ep-60},
    {0x1.0000000162e43p+0, -0x1.eccc63957c8cp-61},   {0x1.00000000b1721p+0, 0x1.fe03d3bd6ab77p-54},
    {0x1.0000000058b91p+0, -0x1.0101ee190a96p-54},   {0x1.000000002c5c8p+0, 0x1.7f7e12f58ab8cp-54},
    {0x1.00000000162e4p+0, 0x1.7f7d97f692babp-55},   {0x1.000000000b172p+0, 0x1.7f7d5a7716bbap-56},
    {0x1.00000000058b9p+0, 0x1.7f7d3bb758bc2p-57},   {0x1.0000000002c5dp+0, -0x1.e8082d3a88644p-54},
    {0x1.000000000162ep+0, 0x1.0bfbe9253c51ep-54},   {0x1.0000000000b17p+0, 0x1.0bfbe9067c93ep-55},
    {0x1.000000000058cp+0, -0x1.bd0105c238d2cp-54},  {0x1.00000000002c6p+0, -0x1.bd0105c424ceap-55},
    {0x1.0000000000163p+0, -0x1.bd0105c51acc9p-56},  {0x1.00000000000b1p+0, 0x1.c85fdf474d469p-54},
    {0x1.0000000000059p+0, -0x1.1bd0105c5d34bp-54},  {0x1.000000000002cp+0, 0x1.7217f7d1d06fbp-54},
    {0x1.0000000000016p+0, 0x1.7217f7d1cff4bp-55},   {0x1.000000000000bp+0, 0x1.7217f7d1cfb73p-56},
    {0x1.0000000000006p+0, -0x1.d1bd0105c60cfp-54},  {0x1.0000000000003p+0, -0x1.d1bd0105c60eep-55},
    {0x1.0000000000001p+0, 0x1.8b90bfbe8e7c1p-54},   {0x1.0000000000001p+0, -0x1.3a37a020b8c21p-54},
};

// 2^(j / 2^m) in [1, 2) for 0 <= j < 2^m, 0 <= m <= 52, as a double-double: the product of
// 2^(2^-(m - i)) over the set bits i of j. With n <= 52 factors, each within 2^-106 (relative),
// and n - 1 products, each within 2^-103 (see dd_mul, constant-evaluation path included), the
// relative error is below 52 * 2^-106 + 51 * 2^-103 < 2^-96.9: "below 2^-96" everywhere in lns.
constexpr double_double exp2_dyadic(std::uint64_t j, int m) {
    double_double r{1.0, 0.0};
    bool first = true;
    for (int i = 0; i < m; ++i) {
        if (((j >> i) & 1u) == 0) continue;
        const double_double f = exp2_of_inverse_power_of_two[m - i];
        r = first ? f : dd_mul(r, f);
        first = false;
    }
    return r;
}

// 2^k for k in double's normal exponent range, constexpr (std::ldexp is not).
constexpr double lns_pow2(int k) { return std::bit_cast<double>(std::uint64_t(k + 1023) << 52); }

// Decoding at run time reads 2^(r / 2^b), 0 <= r < 2^b, from tables for b <= 12 (8191 doubles in
// all, each the hi part of exp2_dyadic, i.e. the same correctly rounded double), built once on
// first use: a decode is then one load and one multiplication instead of up to b double-double
// products.
inline constexpr int exp2_table_max_bits = 12;

// Not constexpr, and not a lambda (lambdas are implicitly constexpr): GCC tries to evaluate a
// static's initializer at compile time when it can, and would evaluate all 8191 exp2_dyadic calls
// in every translation unit that includes this header (1 s and 155 MB each) only to find that a
// std::vector cannot be a constant.
inline std::vector<double> make_exp2_fraction_tables() {
    std::vector<double> t(std::size_t(2) << exp2_table_max_bits);
    // Table b starts at index 2^b: 1, 2, 4, ... entries.
    for (int bb = 0; bb <= exp2_table_max_bits; ++bb)
        for (std::uint64_t r = 0; r < (std::uint64_t(1) << bb); ++r)
            t[std::size_t((std::uint64_t(1) << bb) + r)] = exp2_dyadic(r, bb).hi;
    return t;
}

inline const double* exp2_fraction_table(int b) {
    static const std::vector<double> table = make_exp2_fraction_tables();
    return table.data() + (std::size_t(1) << b);
}

// floor(a / 2^m) and the remainder, for any sign of a.
constexpr std::int64_t floor_shift(std::int64_t a, int m) { return a >= 0 ? a >> m : -((-a - 1) >> m) - 1; }

}  // namespace detail

struct lns_format {
    int log_bits = 7;   // width of the log field (k's code); the sign adds one bit
    int frac_bits = 3;  // fractional bits of k / gamma: gamma = 2^frac_bits
    int offset = 0;     // k of the middle code: the range of k is centred on it

    // ---- derived constants (valid for a format that passes validate()) ----
    constexpr int bits() const { return 1 + log_bits; }
    constexpr int gamma() const { return 1 << frac_bits; }
    constexpr int k_min() const { return offset - (1 << (log_bits - 1)) + 1; }
    constexpr int k_max() const { return offset + (1 << (log_bits - 1)) - 1; }
    // Number of bit patterns, 2^bits(); of distinct real values (zero and +-2^(k/gamma) for each
    // k), 2^bits() - 1: the remaining code is NaN.
    constexpr std::uint32_t codes() const { return std::uint32_t(1) << bits(); }
    constexpr std::uint32_t values() const { return codes() - 1; }
    constexpr std::uint32_t magnitudes() const { return (std::uint32_t(1) << log_bits) - 1; }

    // 2^(k / gamma) correctly rounded to double, for k in [k_min() - 1, k_max() + 1] (the
    // validated range; see the header comment for why it is correctly rounded).
    constexpr double magnitude(int k) const {
        const std::int64_t q = detail::floor_shift(k, frac_bits);
        const auto r = std::uint64_t(std::int64_t(k) - (q << frac_bits));
        if (!std::is_constant_evaluated() && frac_bits <= detail::exp2_table_max_bits)
            return detail::exp2_fraction_table(frac_bits)[r] * detail::lns_pow2(int(q));
        return detail::exp2_dyadic(r, frac_bits).hi * detail::lns_pow2(int(q));
    }
    constexpr double min_magnitude() const { return magnitude(k_min()); }
    constexpr double max_magnitude() const { return magnitude(k_max()); }
    // The ratio between neighbouring magnitudes, 2^(1/gamma), correctly rounded.
    constexpr double base() const { return magnitude(1); }

    // The same codes scaled by 2^(j / gamma): value(code) * 2^(j / gamma). Quantizing x to
    // scaled(j) is quantizing x / 2^(j / gamma) to *this and multiplying back, exactly.
    constexpr lns_format scaled(int j) const {
        lns_format f = *this;
        f.offset += j;
        return f;
    }

    // Throws std::invalid_argument naming the field and the value when the format is impossible.
    constexpr const lns_format& validate() const;
    constexpr bool is_valid() const noexcept;

    friend constexpr bool operator==(const lns_format&, const lns_format&) = default;
};

namespace detail {

struct lns_format_problem {
    const char* field = nullptr;
    long long value = 0;
    const char* why = nullptr;
};

// What is wrong with a format (field == nullptr: nothing). The range condition keeps every value,
// and the neighbours one step beyond each end (which rounding decisions compare against), inside
// double's normal range [2^-1022, 2^1023]: there doubles have a fixed relative spacing, which the
// correct-rounding argument of the header comment needs.
constexpr lns_format_problem find_problem(const lns_format& f) {
    if (f.log_bits < 2 || f.log_bits > 24) return {"log_bits", f.log_bits, "must be in [2, 24]"};
    if (f.frac_bits < 0 || f.frac_bits > 20) return {"frac_bits", f.frac_bits, "must be in [0, 20]"};
    const long long gamma = 1ll << f.frac_bits;
    const long long half = 1ll << (f.log_bits - 1);
    // k_min - 1 .. k_max + 1 spans 2 half + 1 steps; double's normal range spans 2045 gamma.
    if (2 * half + 1 > 2045 * gamma)
        return {"log_bits", f.log_bits,
                "gives more codes than double's exponent range holds at this frac_bits "
                "(need 2^log_bits + 1 <= 2045 * 2^frac_bits)"};
    const long long lowest = f.offset - half;   // k_min - 1
    const long long highest = f.offset + half;  // k_max + 1
    if (lowest < -1022 * gamma)
        return {"offset", f.offset,
                "puts the smallest magnitude too low for double (need offset - 2^(log_bits-1) >= "
                "-1022 * 2^frac_bits)"};
    if (highest > 1023 * gamma)
        return {"offset", f.offset,
                "puts the largest magnitude too high for double (need offset + 2^(log_bits-1) <= "
                "1023 * 2^frac_bits)"};
    return {};
}

}  // namespace detail

constexpr bool lns_format::is_valid() const noexcept { return detail::find_problem(*this).field == nullptr; }

constexpr const lns_format& lns_format::validate() const {
    const detail::lns_format_problem p = detail::find_problem(*this);
    if (p.field != nullptr)
        throw std::invalid_argument(std::string("lowbit::lns_format: ") + p.field + " = " +
                                    std::to_string(p.value) + ": " + p.why);
    return *this;
}

// ---- presets ----
// The paper's 8-bit LNS: sign + 7-bit k, gamma = 8; magnitudes 2^(-63/8) ~ 0.0043 .. 2^(63/8) ~ 235.
inline constexpr lns_format lns8{.log_bits = 7, .frac_bits = 3};
// 16 bits: sign + 15-bit k, gamma = 2^8. A step of 2^(1/256) (0.27%, finer than bf16's 2^-8
// spacing at the bottom of a binade) over 2^(+-64): about bf16's precision with the dynamic range
// that scaled training tensors need (gamma = 2^10 would leave only 2^(+-16)).
inline constexpr lns_format lns16{.log_bits = 15, .frac_bits = 8};

static_assert(lns8.is_valid() && lns16.is_valid());
static_assert(lns8.k_min() == -63 && lns8.k_max() == 63 && lns8.values() == 255);
static_assert(lns8.magnitude(8) == 2.0 && lns8.magnitude(-16) == 0.25 && lns8.magnitude(0) == 1.0);

}  // namespace lowbit
