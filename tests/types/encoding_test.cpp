// Tests of lowbit/types/encoding.hpp: every code of every valid format of up to 12 bits decodes to
// the value an independent formula gives, encodes back to itself, and the values increase with the
// codes; every value encodes and decodes back; IEEE formats agree with the hardware's float and
// double bit patterns; invalid input is rejected.
#include <lowbit/types/encoding.hpp>

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/quantize.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using lowbit::float_format;
using lowbit::special_values;

constexpr double qnan = std::numeric_limits<double>::quiet_NaN();
constexpr double inf = std::numeric_limits<double>::infinity();

// Every valid format with at most `max_bits` bits: all exp_bits / man_bits splits, with and
// without subnormals, sign and zero, all four specials, the IEEE bias and two others.
std::vector<float_format> small_formats(int max_bits) {
    std::vector<float_format> formats;
    for (bool is_signed : {true, false})
        for (int e = 1; e <= 11; ++e)
            for (int m = 0; int(is_signed) + e + m <= max_bits; ++m)
                for (bool subnormals : {true, false})
                    for (bool has_zero : {true, false})
                        for (special_values s : {special_values::ieee, special_values::fn, special_values::none,
                                                 special_values::fnuz})
                            for (int bias_shift : {0, -2, 5}) {
                                float_format f{.exp_bits = e, .man_bits = m, .subnormals = subnormals, .specials = s,
                                               .is_signed = is_signed, .has_zero = has_zero};
                                if (bias_shift != 0) f.bias = (1 << (e - 1)) - 1 + bias_shift;
                                if (f.is_valid()) formats.push_back(f);
                            }
    formats.push_back(lowbit::ue8m0);
    return formats;
}

// The value of a code, written from the field definitions with std::ldexp (independent of
// decode's arithmetic and of float_format's derived constants).
double reference_value(const float_format& f, std::uint64_t code) {
    const int E = f.exp_bits, M = f.man_bits;
    const int bias = f.bias == float_format::ieee_bias ? (1 << (E - 1)) - 1 : f.bias;
    const bool negative = f.is_signed && ((code >> (E + M)) & 1);
    const std::uint64_t field = (code >> M) & ((std::uint64_t(1) << E) - 1);
    const std::uint64_t man = code & ((std::uint64_t(1) << M) - 1);
    const std::uint64_t top = (std::uint64_t(1) << E) - 1;
    double v;
    if (f.specials == special_values::ieee && field == top) {
        if (man != 0) return qnan;
        v = inf;
    } else if (f.specials == special_values::fn && field == top && man == (std::uint64_t(1) << M) - 1) {
        return qnan;
    } else if (f.specials == special_values::fnuz && negative && field == 0 && man == 0) {
        return qnan;  // fnuz: the negative-zero code
    } else if (f.has_zero && field == 0) {
        v = f.subnormals ? std::ldexp(double(man), 1 - bias - M) : 0.0;  // no subnormals: DAZ
    } else {
        v = std::ldexp(1.0 + std::ldexp(double(man), -M), int(field) - bias);
    }
    if (f.specials == special_values::fnuz && v == 0) return 0.0;  // no -0
    return negative ? -v : v;
}

bool same_bits(double x, double y) { return std::bit_cast<std::uint64_t>(x) == std::bit_cast<std::uint64_t>(y); }

// Field 0 with a non-zero mantissa in a format with zero but without subnormals: not a value.
bool is_daz_code(const float_format& f, std::uint64_t code) {
    const std::uint64_t field = (code >> f.man_bits) & ((std::uint64_t(1) << f.exp_bits) - 1);
    const std::uint64_t man = code & ((std::uint64_t(1) << f.man_bits) - 1);
    return f.has_zero && !f.subnormals && field == 0 && man != 0;
}

}  // namespace

TEST_CASE("every code of every format up to 12 bits decodes, encodes back, and increases") {
    const auto formats = small_formats(12);
    INFO(formats.size() << " formats");
    REQUIRE(formats.size() > 1000);
    std::uint64_t codes_checked = 0;
    for (const float_format& f : formats) {
        INFO(lowbit::to_string(f));
        const std::uint64_t magnitude_codes = std::uint64_t(1) << (f.exp_bits + f.man_bits);
        const std::uint64_t nan_code = lowbit::encode(f, qnan);
        double previous = -inf;
        int failures = 0;
        for (std::uint64_t c = 0; c < (std::uint64_t(1) << f.bits()); ++c, ++codes_checked) {
            const double v = lowbit::decode(f, c);
            const double want = reference_value(f, c);
            bool ok = std::isnan(want) ? std::isnan(v) : same_bits(v, want);
            if (std::isnan(v)) {
                ok = ok && nan_code == lowbit::encode(f, v) && std::isnan(lowbit::decode(f, nan_code));
            } else {
                const std::uint64_t back = lowbit::encode(f, v);
                const std::uint64_t sign_code = c & ~(magnitude_codes - 1);
                // (a DAZ code reads as a zero of its sign, which encodes as +0 where there is no -0)
                const bool no_negative_zero = f.specials == special_values::fnuz;
                ok = ok && back == (is_daz_code(f, c) ? (no_negative_zero ? 0 : sign_code) : c);
                ok = ok && same_bits(lowbit::decode(f, back), v);
                // The values are exactly the grid that lowbit::quantize rounds onto.
                ok = ok && same_bits(lowbit::quantize(v, f), v);
                // Strictly increasing magnitudes along the positive codes.
                if (c < magnitude_codes && !is_daz_code(f, c)) {
                    ok = ok && v > previous;
                    previous = v;
                }
            }
            if (!ok && ++failures <= 3)
                FAIL_CHECK("code " << c << ": decode " << v << ", reference " << want << ", encode back "
                                   << (std::isnan(v) ? nan_code : lowbit::encode(f, v)));
        }
        CHECK(failures == 0);
        // The positive codes reach the largest finite value (or infinity) at the top.
        CHECK(previous == (f.has_infinity() ? inf : f.max_finite()));
    }
    INFO(codes_checked << " codes");
    CHECK(codes_checked > 1000000);
}

TEST_CASE("IEEE formats agree with the machine's float and double bit patterns") {
    std::mt19937_64 rng(3);
    const float_format fp64{.exp_bits = 11, .man_bits = 52};
    for (int i = 0; i < 200000; ++i) {
        const std::uint64_t c64 = rng();
        const double d = std::bit_cast<double>(c64);
        const auto c32 = std::uint32_t(c64);
        const float x = std::bit_cast<float>(c32);
        if (std::isnan(d)) {
            REQUIRE(std::isnan(lowbit::decode(fp64, c64)));
        } else {
            REQUIRE(same_bits(lowbit::decode(fp64, c64), d));
            REQUIRE(lowbit::encode(fp64, d) == c64);
        }
        if (std::isnan(x)) {
            REQUIRE(std::isnan(lowbit::decode(lowbit::fp32, c32)));
        } else {
            REQUIRE(same_bits(lowbit::decode(lowbit::fp32, c32), double(x)));
            REQUIRE(lowbit::encode(lowbit::fp32, double(x)) == c32);
        }
    }
    // bf16 is the top half of a float.
    for (std::uint32_t c = 0; c < 0x10000; ++c) {
        const float x = std::bit_cast<float>(c << 16);
        if (std::isnan(x)) REQUIRE(std::isnan(lowbit::decode(lowbit::bf16, c)));
        else REQUIRE(same_bits(lowbit::decode(lowbit::bf16, c), double(x)));
    }
    CHECK(lowbit::encode(fp64, qnan) == 0x7FF8000000000000u);
    CHECK(lowbit::encode(lowbit::fp32, qnan) == 0x7FC00000u);
}

TEST_CASE("known codes of the presets") {
    // constexpr: encode and decode work at compile time.
    static_assert(lowbit::decode(lowbit::fp8_e4m3, 0x7E) == 448.0 && lowbit::encode(lowbit::fp8_e4m3, 448.0) == 0x7E);
    static_assert(lowbit::decode(lowbit::fp8_e4m3, 0x01) == 0x1p-9 && lowbit::encode(lowbit::fp8_e4m3, -0x1p-9) == 0x81);
    static_assert(lowbit::decode(lowbit::fp8_e5m2, 0x7B) == 57344.0 && lowbit::decode(lowbit::fp8_e5m2, 0xFC) == -inf);
    static_assert(lowbit::encode(lowbit::fp16, 1.0) == 0x3C00 && lowbit::encode(lowbit::bf16, 1.0) == 0x3F80);
    static_assert(lowbit::decode(lowbit::ue8m0, 0x7F) == 1.0 && lowbit::decode(lowbit::ue8m0, 0x00) == 0x1p-127);
    static_assert(lowbit::encode(lowbit::ue8m0, 0x1p127) == 0xFE);
    static_assert(lowbit::decode(lowbit::fp4_e2m1, 0x7) == 6.0 && lowbit::decode(lowbit::fp4_e2m1, 0x1) == 0.5);
    static_assert(lowbit::decode(lowbit::fp6_e2m3, 0x1F) == 7.5 && lowbit::decode(lowbit::fp6_e3m2, 0x1F) == 28.0);
    static_assert(lowbit::decode(lowbit::ue4m3, 0x7E) == 448.0);
    static_assert(lowbit::encode(lowbit::lba_m7e4_acc, 1.0) == (10u << 7));
    // Canonical NaN codes; formats without one store NaN as +0.
    static_assert(lowbit::encode(lowbit::fp8_e4m3, qnan) == 0x7F && lowbit::encode(lowbit::fp8_e5m2, qnan) == 0x7E);
    static_assert(lowbit::encode(lowbit::fp16, qnan) == 0x7E00 && lowbit::encode(lowbit::bf16, qnan) == 0x7FC0);
    static_assert(lowbit::encode(lowbit::ue8m0, qnan) == 0xFF && lowbit::encode(lowbit::ue4m3, qnan) == 0x7F);
    static_assert(lowbit::encode(lowbit::fp4_e2m1, qnan) == 0 && !lowbit::has_nan_code(lowbit::fp4_e2m1));
    constexpr float_format ieee_e5m0{.exp_bits = 5, .man_bits = 0};  // top field: only infinity
    static_assert(!lowbit::has_nan_code(ieee_e5m0) && lowbit::encode(ieee_e5m0, qnan) == 0 &&
                  lowbit::encode(ieee_e5m0, inf) == 0x1F);
    // fnuz: every top code finite, NaN at the negative-zero code, -0 encoded as +0 (ml_dtypes' codes).
    static_assert(lowbit::decode(lowbit::fp8_e4m3fnuz, 0x7F) == 240.0 && lowbit::decode(lowbit::fp8_e4m3fnuz, 0x01) == 0x1p-10);
    static_assert(lowbit::decode(lowbit::fp8_e4m3fnuz, 0x08) == 0x1p-7 && lowbit::decode(lowbit::fp8_e4m3fnuz, 0xFF) == -240.0);
    static_assert(lowbit::decode(lowbit::fp8_e5m2fnuz, 0x7F) == 57344.0 && lowbit::decode(lowbit::fp8_e5m2fnuz, 0x01) == 0x1p-17);
    static_assert(lowbit::decode(lowbit::fp8_e4m3b11fnuz, 0x7F) == 30.0 && lowbit::encode(lowbit::fp8_e4m3b11fnuz, 1.0) == 0x58);
    static_assert(lowbit::encode(lowbit::fp8_e4m3fnuz, 1.0) == 0x40 && lowbit::encode(lowbit::fp8_e5m2fnuz, 1.0) == 0x40);
    static_assert(lowbit::encode(lowbit::fp8_e4m3fnuz, qnan) == 0x80 && lowbit::encode(lowbit::fp8_e5m2fnuz, qnan) == 0x80);
    static_assert(lowbit::encode(lowbit::fp8_e4m3fnuz, -0.0) == 0 && lowbit::encode(lowbit::fp8_e4m3fnuz, -1.0) == 0xC0);
    CHECK(std::isnan(lowbit::decode(lowbit::fp8_e4m3fnuz, 0x80)));
    CHECK(std::isnan(lowbit::decode(lowbit::fp8_e5m2fnuz, 0x80)));
    CHECK_THROWS_WITH(lowbit::encode(lowbit::fp8_e4m3fnuz, inf), Catch::Contains("no infinity"));
    // Signed zeros; unsigned formats take -0 as +0.
    static_assert(lowbit::encode(lowbit::fp16, -0.0) == 0x8000 && lowbit::encode(lowbit::ue4m3, -0.0) == 0);
    // Without subnormals field 0 with a mantissa reads as a zero of its sign (DAZ).
    static_assert(lowbit::decode(lowbit::lba_m7e4_acc, 0x001) == 0.0);
    CHECK(std::signbit(lowbit::decode(lowbit::lba_m7e4_acc, 0x801)));
    CHECK(std::isnan(lowbit::decode(lowbit::fp8_e5m2, 0x7D)));  // signaling NaN code
}

TEST_CASE("values that are not in the format and codes that are too wide are rejected") {
    using lowbit::encode;
    CHECK_THROWS_AS(encode(lowbit::fp8_e4m3, 0.3), std::invalid_argument);      // off the grid
    CHECK_THROWS_AS(encode(lowbit::fp8_e4m3, 480.0), std::invalid_argument);    // the NaN code's place
    CHECK_THROWS_AS(encode(lowbit::fp8_e4m3, 512.0), std::invalid_argument);    // beyond the largest
    CHECK_THROWS_AS(encode(lowbit::fp8_e4m3, inf), std::invalid_argument);      // no infinity
    CHECK_THROWS_AS(encode(lowbit::fp8_e4m3, 0x1p-10), std::invalid_argument);  // below the smallest
    CHECK_THROWS_AS(encode(lowbit::fp16, 0x1p-1074), std::invalid_argument);
    CHECK_THROWS_AS(encode(lowbit::ue4m3, -1.0), std::invalid_argument);        // unsigned
    CHECK_THROWS_AS(encode(lowbit::ue8m0, 0.0), std::invalid_argument);         // no zero
    CHECK_THROWS_AS(encode(lowbit::ue8m0, 0x1p-128), std::invalid_argument);
    CHECK_THROWS_AS(encode(lowbit::ue8m0, 3.0), std::invalid_argument);
    CHECK_THROWS_AS(encode(lowbit::lba_m7e4_acc, lowbit::lba_m7e4_acc.min_normal() / 2), std::invalid_argument);
    CHECK_THROWS_AS(lowbit::decode(lowbit::fp8_e4m3, 0x100), std::invalid_argument);
    CHECK_THROWS_AS(lowbit::decode(lowbit::fp4_e2m1, 0x10), std::invalid_argument);
    try {
        encode(lowbit::fp8_e4m3, 0.3);
    } catch (const std::invalid_argument& e) {
        const std::string what = e.what();
        CHECK(what.find("0.29999999999999999") != std::string::npos);
        CHECK(what.find("quantize") != std::string::npos);
    }
}
