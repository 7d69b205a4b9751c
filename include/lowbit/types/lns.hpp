// lowbit/types/lns.hpp: lowbit::lns<F>, a number stored in the bits of a logarithmic format F.
//
//   using l8 = lowbit::lns<lowbit::lns8>;              // one byte: sign + 7-bit k, gamma = 8
//   l8 a{1.3}, b = l8::from_k(false, 8);               // 1.3 rounds to 2^(3/8); b is 2^(8/8) = 2
//   l8 c = a * b / a;                                  // exact: k adds and subtracts
//   l8 d = a + b;                                      // rounded, by the addition policy
//   double v = double(d);                              // 2^(k/8) correctly rounded to double
//
//   lowbit::lns<lowbit::lns8, lowbit::lns_table_add<6>>  // additions by a Gaussian-log table
//
// Codes as in lns_format.hpp: a sign bit above the field e = k - offset + 2^(log_bits-1); e = 0 is
// zero (sign 0) or NaN (sign 1). The storage is the smallest unsigned integer of bits() bits.
// Semantics:
//   - from double, float or an integer: lns_quantize's nearest_log (exact for every double: see
//     lns_quantize.hpp), overflow saturating to +-max, underflow to zero, +-infinity to +-max,
//     NaN to the NaN code, +-0 to the zero code. Integers wider than 53 bits are first rounded to
//     double. Explicit, because it rounds.
//   - to double: 2^(k/gamma) correctly rounded to nearest (lns_format::magnitude); to float:
//     correctly rounded as well (through double rounded to odd). Explicit.
//   - * and /: exact in the log domain, k_a + k_b and k_a - k_b, then saturated to k_max or
//     flushed to zero below k_min (the result is already on the grid: the only rounding is the
//     range). 0 * x = 0, 0 / x = 0, x / 0 = NaN (no infinity to return), NaN in gives NaN.
//   - + and -: by the AddPolicy:
//       lns_exact_add      the double sum of the two decoded values (each correctly rounded),
//                          rounded nearest_log: the correctly rounded LNS sum unless the exact
//                          sum lies within a few 2^-53 (relative to |a| + |b|) of a geometric
//                          midpoint, where rounding the sum to double first may move it across;
//       lns_table_add<B>   the hardware algorithm, Gaussian logarithms: with |a| >= |b|, d =
//                          k_b - k_a <= 0, a +- b = sign_a 2^((k_a + phi(d)) / gamma) with
//                          phi+-(d) = gamma log2(1 +- 2^(d/gamma)); phi is read, already rounded
//                          to an integer, from a table of 2^B entries per sign (see
//                          gaussian_log_table below for its layout and its stated error bound).
//     x + (-x) = 0 exactly in both.
//   - unary minus flips the sign (not of zero or NaN); comparisons by value: NaN is unordered and
//     unequal to itself.
//   - default construction gives zero.
// std::numeric_limits is specialized below; Eigen::NumTraits in lns_eigen.hpp.
#pragma once

#include <lowbit/formats/lns_format.hpp>
#include <lowbit/rounding/lns_quantize.hpp>

#include <algorithm>
#include <cmath>
#include <compare>
#include <concepts>
#include <cstdint>
#include <iosfwd>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace lowbit {

namespace detail {

template <int Bits>
using lns_storage_for =
    std::conditional_t<(Bits <= 8), std::uint8_t, std::conditional_t<(Bits <= 16), std::uint16_t, std::uint32_t>>;

// A value as the addition policies see it: zero, or sign * 2^(k / gamma) with k on the unbounded
// grid (the caller saturates or flushes).
struct lns_parts {
    bool zero = true;
    bool negative = false;
    std::int64_t k = 0;
};

// The Gaussian-logarithm tables of format F with 2^B entries each:
//   plus[i]  ~ phi+(d) = gamma log2(1 + 2^(d/gamma)),  minus[i] ~ phi-(d) = gamma log2(1 - 2^(d/gamma))
// for the integer distances |d| in [i step, (i+1) step - 1], step a power of two. Both functions
// round to 0 for |d| >= span (the first |d| where |phi+| and |phi-| are below 1/2): such an
// addend cannot change the larger operand, and the table stops there. step is the smallest power
// of two with step 2^B >= span, so a large enough table (2^B >= span: B = 6 for lns8, 12 for
// lns16) has step 1 and holds round(phi(d)) for every d: additions are then correctly rounded,
// the same as exact-then-round. A coarser table stores, per entry, the integer nearest to the
// middle of phi's range over the entry (phi is monotonic, so its extremes are at the entry's
// ends), and max_error is the largest |entry - phi(d)| over every d, including the 1/2 of the
// cut-off: the result's k is then within max_error of gamma log2|a +- b| (before the range is
// applied). phi is evaluated in long double (log1p, expm1), far more accurately than the 1/2-unit
// decisions need except within ~1e-15 of a half-integer.
struct gaussian_log_table {
    int step_log2 = 0;
    std::int64_t span = 0;
    std::vector<std::int64_t> plus, minus;
    double max_error_plus = 0, max_error_minus = 0;

    static long double phi_plus(long double d, long double gamma) {
        return gamma * std::log1p(std::exp2(d / gamma)) / std::log(2.0L);
    }
    static long double phi_minus(long double d, long double gamma) {  // d < 0
        return gamma * std::log2(-std::expm1(d / gamma * std::log(2.0L)));
    }

    static gaussian_log_table make(const lns_format& f, int table_bits) {
        const long double gamma = f.gamma();
        gaussian_log_table t;
        // span: the first |d| >= 1 with both |phi| < 1/2. phi+ and |phi-| decrease with |d|, so
        // the condition is monotonic: found by doubling, then bisection.
        const auto negligible = [&](std::int64_t d) {
            return phi_plus(-(long double)d, gamma) < 0.5L && phi_minus(-(long double)d, gamma) > -0.5L;
        };
        std::int64_t hi = 1;
        while (!negligible(hi)) hi *= 2;
        std::int64_t lo = hi / 2;  // !negligible(lo) unless lo = 0
        while (hi - lo > 1) {
            const std::int64_t mid = lo + (hi - lo) / 2;
            (negligible(mid) ? hi : lo) = mid;
        }
        const std::int64_t n = hi;
        t.span = n;
        while ((std::int64_t(1) << (t.step_log2 + table_bits)) < n) ++t.step_log2;
        const std::int64_t step = std::int64_t(1) << t.step_log2;
        const std::int64_t entries = (n + step - 1) / step;
        t.plus.resize(std::size_t(entries));
        t.minus.resize(std::size_t(entries));
        t.max_error_plus = t.max_error_minus = 0.5;  // the cut-off beyond span
        for (std::int64_t i = 0; i < entries; ++i) {
            const std::int64_t lo = i * step, hi = std::min((i + 1) * step - 1, n - 1);
            const long double p0 = phi_plus(-(long double)lo, gamma), p1 = phi_plus(-(long double)hi, gamma);
            const long double pe = std::nearbyint((p0 + p1) / 2);
            t.plus[std::size_t(i)] = std::int64_t(pe);
            t.max_error_plus = std::max<double>(t.max_error_plus, double(std::max(std::fabs(pe - p0), std::fabs(pe - p1))));
            // phi-(0) = -infinity: d = 0 with opposite signs is an exact zero, never looked up.
            const std::int64_t mlo = std::max<std::int64_t>(lo, 1);
            if (mlo > hi) continue;
            const long double m0 = phi_minus(-(long double)mlo, gamma), m1 = phi_minus(-(long double)hi, gamma);
            const long double me = std::nearbyint((m0 + m1) / 2);
            t.minus[std::size_t(i)] = std::int64_t(me);
            t.max_error_minus = std::max<double>(t.max_error_minus, double(std::max(std::fabs(me - m0), std::fabs(me - m1))));
        }
        return t;
    }

    // phi+-(d) as the table gives it, for d <= 0 (not d = 0 with opposite signs).
    std::int64_t phi(std::int64_t d, bool same_sign) const {
        const std::int64_t distance = -d;
        if (distance >= span) return 0;
        const auto i = std::size_t(distance >> step_log2);
        return same_sign ? plus[i] : minus[i];
    }
};

}  // namespace detail

// Addition policy: the double sum of the decoded values, rounded nearest_log (see the header).
struct lns_exact_add {
    template <lns_format F>
    static detail::lns_parts add(detail::lns_parts a, detail::lns_parts b) {
        const double va = a.negative ? -F.magnitude(int(a.k)) : F.magnitude(int(a.k));
        const double vb = b.negative ? -F.magnitude(int(b.k)) : F.magnitude(int(b.k));
        const double s = va + vb;
        if (s == 0) return {};
        const std::optional<int> k = lns_round_magnitude(std::fabs(s), F, lns_rounding::nearest_log);
        if (!k) return {};
        return {false, s < 0, *k};
    }
};

// Addition policy: Gaussian logarithms from a table of 2^TableBits entries per sign (see
// detail::gaussian_log_table). max_error<F>() is the table's bound on |k - gamma log2|a +- b||.
template <int TableBits>
struct lns_table_add {
    static_assert(TableBits >= 0 && TableBits <= 20,
                  "lowbit::lns_table_add<TableBits>: TableBits is log2 of the entries per table, 0..20");

    template <lns_format F>
    static const detail::gaussian_log_table& table() {
        static const detail::gaussian_log_table t = detail::gaussian_log_table::make(F, TableBits);
        return t;
    }
    template <lns_format F>
    static double max_error() {
        return std::max(table<F>().max_error_plus, table<F>().max_error_minus);
    }

    template <lns_format F>
    static detail::lns_parts add(detail::lns_parts a, detail::lns_parts b) {
        if (b.k > a.k) std::swap(a, b);
        const bool same_sign = a.negative == b.negative;
        if (!same_sign && a.k == b.k) return {};  // x + (-x)
        return {false, a.negative, a.k + table<F>().phi(b.k - a.k, same_sign)};
    }
};

template <lns_format F, class AddPolicy = lns_exact_add>
class lns {
    static_assert(F.is_valid(),
                  "lowbit::lns<F>: F is not a valid lowbit::lns_format (call F.validate() at run time: "
                  "its exception names the field to fix)");

public:
    using storage_type = detail::lns_storage_for<F.bits()>;
    using add_policy = AddPolicy;
    static constexpr lns_format format = F;

    constexpr lns() = default;

    // Rounded to F: nearest_log, saturating, underflow to zero.
    explicit lns(double x) : code_(encode(x)) {}
    explicit lns(float x) : lns(double(x)) {}
    template <std::integral I>
    explicit lns(I i) : lns(double(i)) {}

    // The number whose code is `code`; throws std::invalid_argument if it has bits above bits().
    static constexpr lns from_bits(storage_type code) {
        if ((std::uint64_t(code) >> F.bits()) != 0)
            throw std::invalid_argument("lowbit::lns::from_bits: code " + std::to_string(code) + " has more than " +
                                        std::to_string(F.bits()) + " bits");
        return from_code(code);
    }
    // sign * 2^(k / gamma); throws std::invalid_argument if k is outside [k_min, k_max].
    static constexpr lns from_k(bool negative, int k) {
        if (k < F.k_min() || k > F.k_max())
            throw std::invalid_argument("lowbit::lns::from_k: k = " + std::to_string(k) + " is outside [" +
                                        std::to_string(F.k_min()) + ", " + std::to_string(F.k_max()) + "]");
        return from_code(code_of(negative, k));
    }
    static constexpr lns zero() { return lns(); }
    static constexpr lns nan() { return from_code(sign_bit); }

    constexpr storage_type bits() const { return code_; }
    constexpr bool is_zero() const { return code_ == 0; }
    constexpr bool is_nan() const { return code_ == sign_bit; }
    constexpr bool is_negative() const { return (code_ & sign_bit) != 0 && !is_nan(); }
    // k of a non-zero, non-NaN value.
    constexpr int k() const { return int(code_ & field_mask) - half + F.offset; }

    explicit constexpr operator double() const {
        if (is_zero()) return 0.0;
        if (is_nan()) return std::numeric_limits<double>::quiet_NaN();
        const double m = F.magnitude(k());
        return is_negative() ? -m : m;
    }
    explicit operator float() const {
        if (is_zero()) return 0.0f;
        if (is_nan()) return std::numeric_limits<float>::quiet_NaN();
        const float m = lns_magnitude_float(k(), F);
        return is_negative() ? -m : m;
    }

    friend constexpr lns operator*(lns a, lns b) {
        if (a.is_nan() || b.is_nan()) return nan();
        if (a.is_zero() || b.is_zero()) return lns();
        return from_parts({false, a.is_negative() != b.is_negative(), std::int64_t(a.k()) + b.k()});
    }
    friend constexpr lns operator/(lns a, lns b) {
        if (a.is_nan() || b.is_nan() || b.is_zero()) return nan();
        if (a.is_zero()) return lns();
        return from_parts({false, a.is_negative() != b.is_negative(), std::int64_t(a.k()) - b.k()});
    }
    friend lns operator+(lns a, lns b) {
        if (a.is_nan() || b.is_nan()) return nan();
        if (a.is_zero()) return b;
        if (b.is_zero()) return a;
        return from_parts(AddPolicy::template add<F>(a.parts(), b.parts()));
    }
    friend lns operator-(lns a, lns b) { return a + (-b); }
    lns& operator+=(lns b) { return *this = *this + b; }
    lns& operator-=(lns b) { return *this = *this - b; }
    lns& operator*=(lns b) { return *this = *this * b; }
    lns& operator/=(lns b) { return *this = *this / b; }

    constexpr lns operator+() const { return *this; }
    constexpr lns operator-() const { return (is_zero() || is_nan()) ? *this : from_code(code_ ^ sign_bit); }

    friend constexpr bool operator==(lns a, lns b) { return !a.is_nan() && a.code_ == b.code_; }
    friend constexpr std::partial_ordering operator<=>(lns a, lns b) {
        if (a.is_nan() || b.is_nan()) return std::partial_ordering::unordered;
        return a.order_key() <=> b.order_key();
    }

    friend constexpr bool isnan(lns a) { return a.is_nan(); }
    friend constexpr bool isinf(lns) { return false; }
    friend constexpr bool isfinite(lns a) { return !a.is_nan(); }
    friend constexpr bool signbit(lns a) { return a.is_negative(); }
    friend constexpr lns abs(lns a) { return a.is_nan() ? a : from_code(a.code_ & field_mask); }

    template <class Char, class Traits>
    friend std::basic_ostream<Char, Traits>& operator<<(std::basic_ostream<Char, Traits>& out, lns a) {
        return out << double(a);
    }

private:
    static constexpr int half = 1 << (F.log_bits - 1);
    static constexpr storage_type sign_bit = storage_type(std::uint32_t(1) << F.log_bits);
    static constexpr storage_type field_mask = storage_type(sign_bit - 1);

    static constexpr lns from_code(std::uint32_t code) {
        lns v;
        v.code_ = storage_type(code);
        return v;
    }
    static constexpr std::uint32_t code_of(bool negative, int k) {
        return (negative ? std::uint32_t(sign_bit) : 0u) | std::uint32_t(k - F.offset + half);
    }
    // Saturates above k_max, flushes to zero below k_min.
    static constexpr lns from_parts(detail::lns_parts p) {
        if (p.zero || p.k < F.k_min()) return lns();
        return from_code(code_of(p.negative, int(std::min<std::int64_t>(p.k, F.k_max()))));
    }
    constexpr detail::lns_parts parts() const { return {false, is_negative(), k()}; }
    // Increasing with the value: -max .. -min, 0, min .. max.
    constexpr int order_key() const {
        const int field = int(code_ & field_mask);
        return is_negative() ? -field : field;
    }
    static storage_type encode(double x) {
        if (x != x) return sign_bit;
        if (x == 0) return 0;
        const std::optional<int> k = lns_round_magnitude(std::fabs(x), F, lns_rounding::nearest_log);
        return k ? storage_type(code_of(x < 0, *k)) : storage_type(0);
    }

    storage_type code_ = 0;
};

namespace detail {

// log2(x) for a positive finite double during constant evaluation (numeric_limits' members), in
// long double: the binary exponent by scaling, then 2 atanh((m-1)/(m+1)) / ln 2 by its series.
constexpr long double constexpr_log2(long double x) {
    int e = 0;
    while (x >= 2) x /= 2, ++e;
    while (x < 1) x *= 2, --e;
    const long double z = (x - 1) / (x + 1), z2 = z * z;
    long double term = z, sum = 0;
    for (int i = 1; i < 200; i += 2) {
        sum += term / i;
        term *= z2;
    }
    return e + 2 * sum / 0.693147180559945309417232121458176568L;
}

constexpr long long constexpr_floor(long double x) {
    const auto t = static_cast<long long>(x);
    return (x < 0 && static_cast<long double>(t) != x) ? t - 1 : t;
}

}  // namespace detail

}  // namespace lowbit

namespace std {

template <lowbit::lns_format F, class AddPolicy>
struct numeric_limits<lowbit::lns<F, AddPolicy>> {
private:
    using T = lowbit::lns<F, AddPolicy>;
    static constexpr long double log10_2 = 0.301029995663981195213738894724493027L;
    // The code nearest (in the log domain) to a positive value v, clamped into the range.
    static constexpr T nearest(long double v) {
        const long long k = lowbit::detail::constexpr_floor(F.gamma() * lowbit::detail::constexpr_log2(v) + 0.5L);
        return T::from_k(false, int(std::clamp<long long>(k, F.k_min(), F.k_max())));
    }

public:
    static constexpr bool is_specialized = true;
    static constexpr bool is_signed = true;
    static constexpr bool is_integer = false;
    static constexpr bool is_exact = false;
    static constexpr bool has_infinity = false;
    static constexpr bool has_quiet_NaN = true;  // the code with sign 1 and field 0
    static constexpr bool has_signaling_NaN = false;
    static constexpr float_denorm_style has_denorm = denorm_absent;
    static constexpr bool has_denorm_loss = false;
    static constexpr float_round_style round_style = round_to_nearest;  // nearest in the log domain
    static constexpr bool is_iec559 = false;
    static constexpr bool is_bounded = true;
    static constexpr bool is_modulo = false;
    // Neighbouring values differ by a factor 2^(1/gamma), a relative step of about 2^-(frac_bits +
    // 0.53): as fine as a binary float with frac_bits + 1 significand bits (at its coarsest).
    static constexpr int digits = F.frac_bits + 1;
    static constexpr int digits10 = int((digits - 1) * 30103LL / 100000);
    static constexpr int max_digits10 = 2 + int(digits * 30103LL / 100000);
    static constexpr int radix = 2;
    // 2^(e-1) representable: e - 1 in [k_min / gamma, k_max / gamma].
    static constexpr int min_exponent =
        int(-lowbit::detail::constexpr_floor(-(long double)F.k_min() / F.gamma())) + 1;
    static constexpr int max_exponent = int(lowbit::detail::constexpr_floor((long double)F.k_max() / F.gamma())) + 1;
    // The smallest n with 10^n >= the smallest magnitude, the largest n with 10^n <= the largest.
    static constexpr int min_exponent10 =
        int(-lowbit::detail::constexpr_floor(-(long double)F.k_min() / F.gamma() * log10_2));
    static constexpr int max_exponent10 =
        int(lowbit::detail::constexpr_floor((long double)F.k_max() / F.gamma() * log10_2));
    static constexpr bool traps = false;
    static constexpr bool tinyness_before = false;

    static constexpr T min() noexcept { return T::from_k(false, F.k_min()); }
    static constexpr T max() noexcept { return T::from_k(false, F.k_max()); }
    static constexpr T lowest() noexcept { return T::from_k(true, F.k_max()); }
    // 2^(1/gamma) - 1, the step above 1, and 1/2, each as the nearest code (clamped into the
    // range in formats that do not reach them).
    static constexpr T epsilon() noexcept { return nearest((long double)F.base() - 1); }
    static constexpr T round_error() noexcept { return nearest(0.5L); }
    static constexpr T denorm_min() noexcept { return min(); }
    static constexpr T infinity() noexcept { return T(); }
    static constexpr T quiet_NaN() noexcept { return T::nan(); }
    static constexpr T signaling_NaN() noexcept { return T::nan(); }
};

}  // namespace std
