// Tests of lowbit/types/minifloat.hpp: storage, conversions, the operators against an MPFR oracle
// (exhaustive for 8-bit and smaller formats, random for bf16, fp16 and wide 32-bit formats),
// negation, comparisons and std::numeric_limits.
#include <lowbit/types/minifloat.hpp>

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/quantize.hpp>
#include <lowbit/types/encoding.hpp>

#include <catch2/catch.hpp>

#include "support/mpfr_exponent_range.hpp"
#include <mpfr.h>

#include <bit>
#include <cmath>
#include <compare>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using lowbit::minifloat;
using e4m3 = minifloat<lowbit::fp8_e4m3>;
using e5m2 = minifloat<lowbit::fp8_e5m2>;
using half = minifloat<lowbit::fp16>;
using bf16 = minifloat<lowbit::bf16>;
using fp4 = minifloat<lowbit::fp4_e2m1>;

constexpr double inf = std::numeric_limits<double>::infinity();
constexpr double qnan = std::numeric_limits<double>::quiet_NaN();

// Formats beyond the presets that stress the exactness argument: 27 significant bits around 1
// (plain double arithmetic then quantize double-rounds for some operands), and double's whole exponent
// range (products and quotients leave double's range).
inline constexpr lowbit::float_format wide_e5m26{.exp_bits = 5, .man_bits = 26, .bias = 30};
inline constexpr lowbit::float_format wide_e11m20{.exp_bits = 11, .man_bits = 20};
inline constexpr lowbit::float_format unsigned_e8m24{.exp_bits = 8, .man_bits = 24, .is_signed = false};

// 2^bits(): the number of codes of a format of at most 32 bits.
constexpr std::uint64_t code_count(const lowbit::float_format& f) { return std::uint64_t(1) << f.bits(); }

enum class op { add, sub, mul, div };
constexpr op all_ops[] = {op::add, op::sub, op::mul, op::div};
const char* name(op o) { return o == op::add ? "+" : o == op::sub ? "-" : o == op::mul ? "*" : "/"; }

template <class T>
T apply(op o, T a, T b) {
    switch (o) {
        case op::add: return a + b;
        case op::sub: return a - b;
        case op::mul: return a * b;
        case op::div: return a / b;
    }
    return a;
}

using exponent_range = lowbit_test::mpfr_exponent_range;

// The code of a op b rounded to f, from the definition: MPFR rounds the exact result to
// nearest-even at precision M + 1 on the grid with subnormal spacing below 2^emin (emin of MPFR set
// to the smallest subnormal, mpfr_subnormalize), unbounded above; then overflow (ieee: +-inf; fn:
// NaN; none: +-largest), flush below 2^emin without subnormals, unsigned formats' negative results
// (0, or the smallest value without zero); then the code (NaN: the canonical code).
std::uint64_t oracle_code(op o, double a, double b, const lowbit::float_format& f) {
    double y;
    {
        exponent_range range(f.emin() - f.man_bits + 1, mpfr_get_emax_max());
        mpfr_t x, z, r;
        mpfr_inits2(53, x, z, static_cast<mpfr_ptr>(nullptr));
        mpfr_init2(r, f.man_bits + 1);
        mpfr_set_d(x, a, MPFR_RNDN);  // exact: a and b are values of f
        mpfr_set_d(z, b, MPFR_RNDN);
        int t = 0;
        switch (o) {
            case op::add: t = mpfr_add(r, x, z, MPFR_RNDN); break;
            case op::sub: t = mpfr_sub(r, x, z, MPFR_RNDN); break;
            case op::mul: t = mpfr_mul(r, x, z, MPFR_RNDN); break;
            case op::div: t = mpfr_div(r, x, z, MPFR_RNDN); break;
        }
        mpfr_subnormalize(r, t, MPFR_RNDN);
        y = mpfr_get_d(r, MPFR_RNDN);  // exact, or inf beyond double (an overflow of f anyway)
        mpfr_clears(x, z, r, static_cast<mpfr_ptr>(nullptr));
    }
    const double smallest = f.has_zero ? 0.0 : f.min_normal();
    if (std::isnan(y)) return lowbit::encode(f, qnan);
    if (!f.is_signed && std::signbit(y)) return lowbit::encode(f, smallest);
    if (std::fabs(y) > f.max_finite()) {
        if (f.specials == lowbit::special_values::ieee) y = std::copysign(inf, y);
        else if (f.specials == lowbit::special_values::fn || f.specials == lowbit::special_values::fnuz) y = qnan;
        else y = std::copysign(f.max_finite(), y);
    } else if (!f.subnormals && std::fabs(y) < f.min_normal()) {
        y = std::copysign(smallest, y);
    }
    if (f.specials == lowbit::special_values::fnuz && y == 0) return 0;  // no -0: +0's code
    return lowbit::encode(f, y);
}

std::string show(double x) {
    char text[64];
    std::snprintf(text, sizeof text, "%a", x);
    return text;
}

// Compares every op on code pairs (ca, cb) with the oracle; reports the first few mismatches.
template <class T, class Pairs>
void check_ops_against_oracle(const Pairs& pairs) {
    constexpr lowbit::float_format f = T::format;
    for (op o : all_ops) {
        int failures = 0;
        for (auto [ca, cb] : pairs) {
            const T a = T::from_bits(typename T::storage_type(ca)), b = T::from_bits(typename T::storage_type(cb));
            const std::uint64_t got = apply(o, a, b).bits();
            const std::uint64_t want = oracle_code(o, double(a), double(b), f);
            if (got != want && ++failures <= 5)
                FAIL_CHECK(lowbit::to_string(f) << ": " << show(double(a)) << " " << name(o) << " " << show(double(b))
                                                << " gave code " << got << ", MPFR " << want);
        }
        CHECK(failures == 0);
    }
}

template <class T>
std::vector<std::pair<std::uint64_t, std::uint64_t>> all_pairs() {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> pairs;
    for (std::uint64_t a = 0; a < code_count(T::format); ++a)
        for (std::uint64_t b = 0; b < code_count(T::format); ++b) pairs.emplace_back(a, b);
    return pairs;
}

// Random code pairs: half uniform, half with b's code near a's or near a's negation (close
// magnitudes: cancellation and carries), so that most results need real rounding.
template <class T>
std::vector<std::pair<std::uint64_t, std::uint64_t>> random_pairs(int n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    const std::uint64_t codes = code_count(T::format);
    const std::uint64_t sign = T::format.is_signed ? codes / 2 : 0;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> pairs;
    for (int i = 0; i < n; ++i) {
        const std::uint64_t a = rng() % codes;
        std::uint64_t b = rng() % codes;
        if (i % 2) b = ((a ^ (rng() & 1 ? sign : 0)) + (rng() % 64) - 32) % codes;
        pairs.emplace_back(a, b);
    }
    return pairs;
}

}  // namespace

TEST_CASE("minifloat is stored in the smallest unsigned integer that holds the format") {
    static_assert(std::is_same_v<e4m3::storage_type, std::uint8_t> && sizeof(e4m3) == 1);
    static_assert(std::is_same_v<fp4::storage_type, std::uint8_t>);
    static_assert(std::is_same_v<half::storage_type, std::uint16_t> && sizeof(half) == 2);
    static_assert(std::is_same_v<minifloat<lowbit::float_format{.exp_bits = 5, .man_bits = 3}>::storage_type, std::uint16_t>);
    static_assert(std::is_same_v<minifloat<lowbit::fp32>::storage_type, std::uint32_t> && sizeof(minifloat<lowbit::fp32>) == 4);
    static_assert(std::is_same_v<minifloat<unsigned_e8m24>::storage_type, std::uint32_t>);
    static_assert(std::is_trivially_copyable_v<half>);
    static_assert(e4m3::from_bits(0x38).bits() == 0x38 && double(e4m3::from_bits(0x38)) == 1.0);
    static_assert(e4m3().bits() == 0);
    for (unsigned c = 0; c < 256; ++c) CHECK(e4m3::from_bits(std::uint8_t(c)).bits() == c);
    CHECK_THROWS_AS(fp4::from_bits(16), std::invalid_argument);
    CHECK_THROWS_AS(minifloat<lowbit::fp6_e3m2>::from_bits(64), std::invalid_argument);
}

TEST_CASE("conversion to double and float is exact, and back gives the same code") {
    const auto check_all_codes = [](auto tag) {
        using T = decltype(tag);
        constexpr lowbit::float_format f = T::format;
        for (std::uint64_t c = 0; c < code_count(f); ++c) {
            const T x = T::from_bits(typename T::storage_type(c));
            const double d = lowbit::decode(f, c);
            INFO(lowbit::to_string(f) << " code " << c);
            if (std::isnan(d)) {
                CHECK(std::isnan(double(x)));
                CHECK(std::isnan(float(x)));
                CHECK(T(double(x)).bits() == lowbit::encode(f, qnan));
                continue;
            }
            CHECK(std::bit_cast<std::uint64_t>(double(x)) == std::bit_cast<std::uint64_t>(d));
            CHECK(double(float(x)) == d);
            const bool daz = !f.subnormals && (c & ((std::uint64_t(1) << (f.exp_bits + f.man_bits)) - 1)) != 0 &&
                             (c >> f.man_bits & ((std::uint64_t(1) << f.exp_bits) - 1)) == 0;
            if (!daz) {
                CHECK(T(double(x)).bits() == c);
                CHECK(T(float(x)).bits() == c);
            }
        }
    };
    check_all_codes(e4m3{});
    check_all_codes(e5m2{});
    check_all_codes(fp4{});
    check_all_codes(minifloat<lowbit::ue8m0>{});
    check_all_codes(minifloat<lowbit::ue4m3>{});
    check_all_codes(minifloat<lowbit::fp6_e3m2>{});
    check_all_codes(minifloat<lowbit::lba_m7e4_acc>{});
    check_all_codes(half{});
    check_all_codes(bf16{});
}

TEST_CASE("conversion from double and float rounds to nearest even with IEEE cast overflow") {
    CHECK(e4m3(1.3).bits() == 0x3A);                      // 1.25
    CHECK(double(e4m3(1.0625)) == 1.0);                   // tie between 1 and 1.125: even
    CHECK(double(e4m3(1.1875)) == 1.25);                  // tie between 1.125 and 1.25: even
    CHECK(double(e4m3(464.0)) == 448.0);                  // midpoint to 480 (NaN's code): even
    CHECK(e4m3(1000.0).bits() == 0x7F);                   // fn: overflow is NaN
    CHECK(e4m3(-1000.0).bits() == 0x7F);                  // the canonical NaN has sign 0
    CHECK(e4m3(inf).bits() == 0x7F);
    CHECK(e5m2(1e6).bits() == 0x7C);                      // ieee: +inf
    CHECK(e5m2(-1e6).bits() == 0xFC);
    CHECK(e5m2(qnan).bits() == 0x7E);                      // quiet NaN
    CHECK(double(fp4(100.0)) == 6.0);                     // none: saturates
    CHECK(double(fp4(-inf)) == -6.0);
    CHECK(double(fp4(0.25)) == 0.0);                      // tie between 0 and 0.5: even
    CHECK(fp4(-0.0).bits() == 0x8);                       // -0 keeps its sign
    CHECK(double(half(0x1p-25)) == 0.0);                  // half the smallest subnormal: even
    CHECK(double(half(0x1.0000000000001p-25)) == 0x1p-24);
    CHECK(double(minifloat<lowbit::ue4m3>(-3.0)) == 0.0); // unsigned: negative -> 0
    CHECK(double(minifloat<lowbit::ue8m0>(0.0)) == 0x1p-127);  // no zero: the smallest value
    // from float equals from double of the same value.
    std::mt19937 rng(7);
    for (int i = 0; i < 100000; ++i) {
        const float x = std::bit_cast<float>(std::uint32_t(rng()));
        REQUIRE(bf16(x).bits() == bf16(double(x)).bits());
        REQUIRE(half(x).bits() == lowbit::encode(lowbit::fp16, lowbit::quantize(double(x), lowbit::fp16)));
    }
}

TEST_CASE("conversion from integers rounds once, 64-bit integers included") {
    using fp32 = minifloat<lowbit::fp32>;
    CHECK(double(e4m3(7)) == 7.0);
    CHECK(double(e4m3(17)) == 16.0);  // tie between 16 and 18: even
    CHECK(double(e4m3(-300)) == -288.0);
    CHECK(double(half(std::uint8_t(255))) == 255.0);
    // 2^60 + 2^36 is a tie of fp32 (spacing 2^37 there): even, down. One more is above the tie,
    // but double(2^60 + 2^36 + 1) is the tie itself: rounding through double would go down.
    const std::int64_t tie = (std::int64_t(1) << 60) + (std::int64_t(1) << 36);
    CHECK(double(fp32(tie)) == 0x1p60);
    CHECK(double(fp32(tie + 1)) == 0x1p60 + 0x1p37);
    CHECK(double(fp32(-tie - 1)) == -(0x1p60 + 0x1p37));
    CHECK(double(fp32(std::uint64_t(tie) + 1)) == 0x1p60 + 0x1p37);
    CHECK(double(fp32(std::numeric_limits<std::uint64_t>::max())) == 0x1p64);
    CHECK(double(fp32(std::numeric_limits<std::int64_t>::min())) == -0x1p63);
}

TEST_CASE("operators equal MPFR exhaustively for 8-bit and smaller formats") {
    SECTION("fp8_e4m3") { check_ops_against_oracle<e4m3>(all_pairs<e4m3>()); }
    SECTION("fp8_e5m2") { check_ops_against_oracle<e5m2>(all_pairs<e5m2>()); }
    SECTION("fp4_e2m1 (no NaN, no infinity)") { check_ops_against_oracle<fp4>(all_pairs<fp4>()); }
    SECTION("fp6_e3m2") { check_ops_against_oracle<minifloat<lowbit::fp6_e3m2>>(all_pairs<minifloat<lowbit::fp6_e3m2>>()); }
    SECTION("ue8m0 (unsigned, no zero)") { check_ops_against_oracle<minifloat<lowbit::ue8m0>>(all_pairs<minifloat<lowbit::ue8m0>>()); }
    SECTION("ue4m3 (unsigned)") { check_ops_against_oracle<minifloat<lowbit::ue4m3>>(all_pairs<minifloat<lowbit::ue4m3>>()); }
    SECTION("float8_e4m3fnuz") {
        using T = minifloat<lowbit::fp8_e4m3fnuz>;
        check_ops_against_oracle<T>(all_pairs<T>());
    }
    SECTION("float8_e5m2fnuz") {
        using T = minifloat<lowbit::fp8_e5m2fnuz>;
        check_ops_against_oracle<T>(all_pairs<T>());
    }
    SECTION("e3m4 without subnormals, no specials, bias 2") {
        using T = minifloat<lowbit::float_format{.exp_bits = 3, .man_bits = 4, .bias = 2, .subnormals = false,
                                                 .specials = lowbit::special_values::none}>;
        check_ops_against_oracle<T>(all_pairs<T>());
    }
}

TEST_CASE("operators equal MPFR on random pairs of 16-bit and 32-bit formats") {
    SECTION("bf16") { check_ops_against_oracle<bf16>(random_pairs<bf16>(100000, 1)); }
    SECTION("fp16") { check_ops_against_oracle<half>(random_pairs<half>(100000, 2)); }
    SECTION("lba_m7e4_acc (12 bits, no subnormals)") {
        using T = minifloat<lowbit::lba_m7e4_acc>;
        check_ops_against_oracle<T>(random_pairs<T>(100000, 3));
    }
    SECTION("fp32") { check_ops_against_oracle<minifloat<lowbit::fp32>>(random_pairs<minifloat<lowbit::fp32>>(50000, 4)); }
    SECTION("e5m26: more bits than plain double arithmetic rounds correctly") {
        check_ops_against_oracle<minifloat<wide_e5m26>>(random_pairs<minifloat<wide_e5m26>>(50000, 5));
    }
    SECTION("e11m20: double's exponent range, products beyond it") {
        check_ops_against_oracle<minifloat<wide_e11m20>>(random_pairs<minifloat<wide_e11m20>>(50000, 6));
    }
    SECTION("unsigned e8m24") {
        check_ops_against_oracle<minifloat<unsigned_e8m24>>(random_pairs<minifloat<unsigned_e8m24>>(50000, 7));
    }
}

TEST_CASE("operators are correct where rounding the double result would double-round") {
    // a + b for a = 1 and b just above half of e5m26's spacing at 1 (2^-27), but by less than
    // half of double's spacing (2^-53): plain double addition lands exactly on the midpoint, which
    // then rounds to even (1); the exact sum is above it and rounds up.
    using T = minifloat<wide_e5m26>;
    const T one(1.0), b(0x1p-27 + 0x1p-53);  // b's significand has 27 bits: a value of the format
    REQUIRE(double(b) == 0x1p-27 + 0x1p-53);
    CHECK(lowbit::quantize(1.0 + double(b), wide_e5m26) == 1.0);  // the double-rounding error
    CHECK(double(one + b) == 1.0 + 0x1p-26);
    CHECK((one + b).bits() == oracle_code(op::add, 1.0, double(b), wide_e5m26));
    // e11m20 spans double's exponent range: the square of its smallest subnormal (2^-2084) is far
    // below double's, and its quotients by small numbers are in double's subnormal range.
    using W = minifloat<wide_e11m20>;
    const W tiny = std::numeric_limits<W>::denorm_min();
    CHECK(double(tiny * tiny) == 0.0);
    CHECK(double(tiny / W(4.0)) == 0.0);                         // a quarter: rounds to 0
    CHECK(double(tiny / W(1.5)) == double(tiny));                // 2/3: rounds up
    CHECK(double(std::numeric_limits<W>::max() * W(2.0)) == inf);  // beyond double, exactly
    CHECK(double(std::numeric_limits<W>::max() + std::numeric_limits<W>::max()) == inf);
}

TEST_CASE("compound assignment equals the binary operators") {
    const auto pairs = random_pairs<half>(20000, 11);
    for (auto [ca, cb] : pairs) {
        const half a = half::from_bits(std::uint16_t(ca)), b = half::from_bits(std::uint16_t(cb));
        half x = a;
        x += b;
        REQUIRE(x.bits() == (a + b).bits());
        x = a;
        x -= b;
        REQUIRE(x.bits() == (a - b).bits());
        x = a;
        x *= b;
        REQUIRE(x.bits() == (a * b).bits());
        x = a;
        x /= b;
        REQUIRE(x.bits() == (a / b).bits());
    }
}

TEST_CASE("unary minus, abs, signbit and classification") {
    for (unsigned c = 0; c < 256; ++c) {
        const e4m3 x = e4m3::from_bits(std::uint8_t(c));
        CHECK((-x).bits() == (c ^ 0x80));  // the sign bit, NaN and zero included
        CHECK((+x).bits() == c);
        CHECK(abs(x).bits() == (c & 0x7F));
        CHECK(signbit(x) == (c >= 0x80));
        CHECK(isnan(x) == ((c & 0x7F) == 0x7F));
        CHECK(!isinf(x));
        CHECK(isfinite(x) == !isnan(x));
    }
    CHECK(isinf(e5m2(inf)));
    CHECK(isinf(-e5m2(inf)));
    using ue4m3 = minifloat<lowbit::ue4m3>;
    CHECK(double(-ue4m3(2.0)) == 0.0);  // unsigned: -x rounded, 0
    CHECK(double(abs(ue4m3(2.0))) == 2.0);
    CHECK(!signbit(ue4m3(2.0)));
    // fnuz: 0x80 is NaN, not -0; minus and abs keep NaN NaN and zero +0
    using fnuz = minifloat<lowbit::fp8_e4m3fnuz>;
    for (unsigned c = 0; c < 256; ++c) {
        const fnuz x = fnuz::from_bits(std::uint8_t(c));
        INFO(c);
        CHECK((-x).bits() == (c == 0 || c == 0x80 ? c : c ^ 0x80));
        CHECK(abs(x).bits() == (c == 0x80 ? c : c & 0x7F));
        CHECK(isnan(x) == (c == 0x80));
        CHECK(!isinf(x));
    }
    CHECK(fnuz(-0.0).bits() == 0);
    CHECK(fnuz(-1e-9).bits() == 0);     // a negative value that rounds to zero
    CHECK(isnan(fnuz(1000.0)));         // overflow: NaN, there is no infinity
    CHECK((fnuz(1.0) - fnuz(1.0)).bits() == 0);
    CHECK(double(std::numeric_limits<fnuz>::max()) == 240.0);
    CHECK(std::numeric_limits<fnuz>::quiet_NaN().bits() == 0x80);
    CHECK(!std::numeric_limits<fnuz>::has_infinity);
    CHECK(!std::numeric_limits<fnuz>::has_signaling_NaN);
    CHECK(double(std::numeric_limits<fnuz>::denorm_min()) == std::ldexp(1.0, -10));
}

TEST_CASE("comparisons follow IEEE: NaN unordered, -0 == +0") {
    for (unsigned i = 0; i < 256; ++i) {
        for (unsigned j = 0; j < 256; ++j) {
            const e5m2 a = e5m2::from_bits(std::uint8_t(i)), b = e5m2::from_bits(std::uint8_t(j));
            const double x = double(a), y = double(b);
            REQUIRE((a == b) == (x == y));
            REQUIRE((a != b) == (x != y));
            REQUIRE((a < b) == (x < y));
            REQUIRE((a <= b) == (x <= y));
            REQUIRE((a > b) == (x > y));
            REQUIRE((a >= b) == (x >= y));
            REQUIRE(((a <=> b) == std::partial_ordering::unordered) == (std::isnan(x) || std::isnan(y)));
        }
    }
    const e4m3 nan_value = std::numeric_limits<e4m3>::quiet_NaN();
    CHECK(nan_value != nan_value);
    CHECK(!(nan_value == nan_value));
    CHECK(e4m3(0.0) == e4m3(-0.0));
    CHECK(e4m3(0.0).bits() != e4m3(-0.0).bits());
    static_assert(e4m3::from_bits(0x38) < e4m3::from_bits(0x40));  // constexpr: 1 < 2
}

TEST_CASE("minifloat prints its value") {
    std::ostringstream out;
    out << e4m3(1.3) << ' ' << e4m3(-448.0) << ' ' << half(0.1);
    CHECK(out.str() == "1.25 -448 0.0999756");
}

TEST_CASE("numeric_limits of fp8_e4m3") {
    using L = std::numeric_limits<e4m3>;
    static_assert(L::is_specialized && L::is_signed && !L::is_integer && !L::is_exact && L::is_bounded);
    static_assert(!L::has_infinity && L::has_quiet_NaN && !L::has_signaling_NaN && !L::is_iec559);
    static_assert(L::has_denorm == std::denorm_present && L::round_style == std::round_to_nearest);
    static_assert(L::radix == 2 && L::digits == 4 && L::digits10 == 0 && L::max_digits10 == 3);
    static_assert(L::min_exponent == -5 && L::max_exponent == 9);
    static_assert(L::min_exponent10 == -1 && L::max_exponent10 == 2);
    static_assert(double(L::max()) == 448.0 && double(L::lowest()) == -448.0);
    static_assert(double(L::min()) == 0x1p-6 && double(L::denorm_min()) == 0x1p-9);
    static_assert(double(L::epsilon()) == 0.125 && double(L::round_error()) == 0.5);
    static_assert(L::max().bits() == 0x7E && L::quiet_NaN().bits() == 0x7F && L::infinity().bits() == 0);
    CHECK(std::isnan(double(L::quiet_NaN())));
}

TEST_CASE("numeric_limits of fp8_e5m2") {
    using L = std::numeric_limits<e5m2>;
    static_assert(L::has_infinity && L::has_quiet_NaN && L::has_signaling_NaN && L::is_iec559);
    static_assert(L::digits == 3 && L::min_exponent == -13 && L::max_exponent == 16);
    static_assert(double(L::max()) == 57344.0 && double(L::min()) == 0x1p-14 && double(L::denorm_min()) == 0x1p-16);
    static_assert(double(L::epsilon()) == 0.25);
    static_assert(L::infinity().bits() == 0x7C && L::quiet_NaN().bits() == 0x7E && L::signaling_NaN().bits() == 0x7D);
    CHECK(double(L::infinity()) == inf);
    CHECK(std::isnan(double(L::signaling_NaN())));
}

TEST_CASE("numeric_limits of fp16 are IEEE half's") {
    using L = std::numeric_limits<half>;
    // IEEE 754 binary16 (as std::numeric_limits<std::float16_t> and Eigen::half give them).
    static_assert(L::is_iec559 && L::has_infinity && L::has_quiet_NaN && L::has_signaling_NaN);
    static_assert(L::has_denorm == std::denorm_present && !L::has_denorm_loss && !L::traps && !L::tinyness_before);
    static_assert(L::digits == 11 && L::digits10 == 3 && L::max_digits10 == 5 && L::radix == 2);
    static_assert(L::min_exponent == -13 && L::max_exponent == 16);
    static_assert(L::min_exponent10 == -4 && L::max_exponent10 == 4);
    static_assert(double(L::max()) == 65504.0 && double(L::lowest()) == -65504.0);
    static_assert(double(L::min()) == 0x1p-14 && double(L::denorm_min()) == 0x1p-24);
    static_assert(double(L::epsilon()) == 0x1p-10 && double(L::round_error()) == 0.5);
    static_assert(L::infinity().bits() == 0x7C00 && L::quiet_NaN().bits() == 0x7E00 && L::signaling_NaN().bits() == 0x7C01);
    // float and double as the same rules see them: the constants std gives for them.
    using F32 = std::numeric_limits<minifloat<lowbit::fp32>>;
    using SF = std::numeric_limits<float>;
    static_assert(F32::digits == SF::digits && F32::digits10 == SF::digits10 && F32::max_digits10 == SF::max_digits10);
    static_assert(F32::min_exponent == SF::min_exponent && F32::max_exponent == SF::max_exponent);
    static_assert(F32::min_exponent10 == SF::min_exponent10 && F32::max_exponent10 == SF::max_exponent10);
    static_assert(float(F32::max()) == SF::max() && float(F32::min()) == SF::min() && float(F32::denorm_min()) == SF::denorm_min());
    static_assert(float(F32::epsilon()) == SF::epsilon() && F32::is_iec559 == SF::is_iec559);
}

TEST_CASE("numeric_limits of fp4_e2m1, bf16 and ue8m0") {
    using L = std::numeric_limits<fp4>;
    static_assert(!L::has_infinity && !L::has_quiet_NaN && !L::has_signaling_NaN && !L::is_iec559);
    static_assert(L::digits == 2 && L::min_exponent == 1 && L::max_exponent == 3);
    static_assert(double(L::max()) == 6.0 && double(L::lowest()) == -6.0 && double(L::min()) == 1.0);
    static_assert(double(L::denorm_min()) == 0.5 && double(L::epsilon()) == 0.5);
    static_assert(L::infinity().bits() == 0 && L::quiet_NaN().bits() == 0);  // T() where meaningless
    using B = std::numeric_limits<bf16>;
    static_assert(B::digits == 8 && B::digits10 == 2 && B::max_digits10 == 4 && B::is_iec559);
    static_assert(B::min_exponent == -125 && B::max_exponent == 128 && B::min_exponent10 == -37 && B::max_exponent10 == 38);
    static_assert(double(B::max()) == 0x1.fep127 && double(B::denorm_min()) == 0x1p-133 && double(B::epsilon()) == 0x1p-7);
    using U = std::numeric_limits<minifloat<lowbit::ue8m0>>;
    static_assert(!U::is_signed && !U::has_infinity && U::has_quiet_NaN && U::has_denorm == std::denorm_absent);
    static_assert(double(U::min()) == 0x1p-127 && double(U::lowest()) == 0x1p-127 && double(U::max()) == 0x1p127);
    static_assert(double(U::denorm_min()) == 0x1p-127 && double(U::epsilon()) == 1.0 && U::quiet_NaN().bits() == 0xFF);
    static_assert(U::digits == 1 && U::min_exponent == -126 && U::max_exponent == 128);
}

TEST_CASE("NaN into a format without a NaN code: +0 by default, counted by convert, or refused") {
    using e2m1 = minifloat<lowbit::fp4_e2m1>;  // OCP FP4: every code finite, no NaN
    using ue8m0 = minifloat<lowbit::ue8m0>;    // has a NaN code (0xFF)
    constexpr double qnan = std::numeric_limits<double>::quiet_NaN();
    // The constructor's documented default: +0, the code 0.
    CHECK(e2m1(qnan).bits() == 0);
    CHECK(e2m1::from(qnan, lowbit::nan_policy::zero).bits() == 0);
    CHECK_THROWS_AS(e2m1::from(qnan, lowbit::nan_policy::raise), std::domain_error);
    CHECK(double(e2m1::from(2.6, lowbit::nan_policy::raise)) == 3.0);  // other values round as usual
    // Formats with a NaN code keep NaN under either policy.
    CHECK(isnan(e4m3::from(qnan, lowbit::nan_policy::raise)));
    CHECK(ue8m0::from(qnan, lowbit::nan_policy::raise).bits() == 0xFF);

    const std::vector<float> in = {1.0f, std::numeric_limits<float>::quiet_NaN(), -0.7f,
                                   std::numeric_limits<float>::quiet_NaN(), 9.0f};
    std::vector<e2m1> out(in.size(), e2m1(4.0));
    CHECK(lowbit::convert(in, out) == 2);  // two NaN stored as +0
    const double expected[] = {1.0, 0.0, -0.5, 0.0, 6.0};  // e2m1: 0.7 -> 0.5, 9 -> 6 (its largest)
    for (std::size_t i = 0; i < in.size(); ++i) CHECK(double(out[i]) == expected[i]);
    // raise: the message names the first NaN, and nothing is written.
    std::vector<e2m1> untouched(in.size(), e2m1(4.0));
    try {
        lowbit::convert(in, untouched, lowbit::nan_policy::raise);
        FAIL("convert should have thrown");
    } catch (const std::domain_error& e) {
        CHECK(std::string(e.what()).find("in[1] is NaN") != std::string::npos);
    }
    for (const e2m1 m : untouched) CHECK(double(m) == 4.0);
    // Where the format has NaN: nothing is lost.
    std::vector<e4m3> out8(in.size());
    CHECK(lowbit::convert(std::span<const float>(in), out8, lowbit::nan_policy::raise) == 0);
    CHECK(isnan(out8[1]));
    // Sizes must match.
    std::vector<e4m3> short_out(2);
    CHECK_THROWS_AS(lowbit::convert(in, short_out), std::invalid_argument);
}
