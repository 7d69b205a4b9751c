// float_format: parse and to_string, validation messages, structural use as a template argument.
#include <lowbit/formats/float_format.hpp>

#include <catch2/catch.hpp>

#include "support/exception_message.hpp"

#include <string>

namespace {

using lowbit::float_format;
using lowbit::special_values;

using lowbit_test::message_of;

template <float_format F>
constexpr int bits_of() {
    return F.bits();
}

}  // namespace

TEST_CASE("parse reads preset names, eXmY, the MxEy spelling and options") {
    CHECK(float_format::parse("fp8_e4m3") == lowbit::fp8_e4m3);
    CHECK(float_format::parse("e4m3") == lowbit::fp8_e4m3);  // the OCP element name
    CHECK(float_format::parse("bf16") == lowbit::bf16);
    CHECK(float_format::parse("FP16") == lowbit::fp16);
    CHECK(float_format::parse("e5m10") == lowbit::fp16);
    CHECK(float_format::parse("e8m23") == lowbit::fp32);
    const float_format m7e4 = float_format::parse("m7e4");
    CHECK(m7e4.exp_bits == 4);
    CHECK(m7e4.man_bits == 7);
    CHECK(m7e4.exponent_bias() == 7);
    CHECK(float_format::parse("m7e4,bias=10,subnormals=off,specials=none") == lowbit::lba_m7e4_acc);
    CHECK(float_format::parse(" M7E4 , bias=12 , subnormals=off , specials=none ") == lowbit::lba_m7e4_prod);
    const float_format e4m3_ieee = float_format::parse("e4m3,specials=ieee");
    CHECK(e4m3_ieee.specials == special_values::ieee);
    CHECK(e4m3_ieee.max_finite() == 240.0);
    CHECK(float_format::parse("ue8m0") == lowbit::ue8m0);
    CHECK(float_format::parse("ufp8_e4m3") == lowbit::ue4m3);
    CHECK(float_format::parse("e8m0,bias=127,subnormals=off,specials=fn,unsigned,nozero") == lowbit::ue8m0);
}

TEST_CASE("parse reads the PyTorch and ml_dtypes names; to_string keeps the preset names") {
    // ml_dtypes: float8_e4m3fn (max 448, NaN only at 0x7F/0xFF), float8_e5m2 (IEEE: inf), the
    // finite-only OCP MX element types, and the E8M0 scale (unsigned, no zero, NaN at 0xFF)
    CHECK(float_format::parse("float8_e4m3fn") == lowbit::fp8_e4m3);
    CHECK(float_format::parse("float8_e4m3fn").max_finite() == 448.0);
    CHECK(float_format::parse("float8_e5m2") == lowbit::fp8_e5m2);
    CHECK(float_format::parse("float8_e5m2").max_finite() == 57344.0);
    CHECK(float_format::parse("float6_e2m3fn").max_finite() == 7.5);
    CHECK(float_format::parse("float6_e3m2fn").max_finite() == 28.0);
    CHECK(float_format::parse("float4_e2m1fn").max_finite() == 6.0);
    CHECK(float_format::parse("float8_e8m0fnu") == lowbit::ue8m0);
    CHECK(float_format::parse("bfloat16") == lowbit::bf16);
    CHECK(float_format::parse("float16") == lowbit::fp16);
    CHECK(float_format::parse("float32") == lowbit::fp32);
    CHECK(float_format::parse("float8_e4m3fn,bias=8") == float_format::parse("e4m3,bias=8"));
    CHECK(lowbit::to_string(float_format::parse("float8_e4m3fn")) == "fp8_e4m3");
    CHECK(lowbit::to_string(float_format::parse("bfloat16")) == "bf16");
    // The fnuz formats (ml_dtypes' definitions: bias one above IEEE's, or 11; NaN at -0's code)
    const float_format e4m3fnuz{.exp_bits = 4, .man_bits = 3, .bias = 8, .specials = special_values::fnuz};
    CHECK(float_format::parse("float8_e4m3fnuz") == e4m3fnuz);
    CHECK(float_format::parse("FLOAT8_E4M3FNUZ") == lowbit::fp8_e4m3fnuz);
    CHECK(float_format::parse("e4m3,bias=8,specials=fnuz") == lowbit::fp8_e4m3fnuz);
    // ... and by their C++ names, which the README lists among the presets (printed as ml_dtypes')
    CHECK(float_format::parse("fp8_e4m3fnuz") == lowbit::fp8_e4m3fnuz);
    CHECK(float_format::parse("fp8_e5m2fnuz") == lowbit::fp8_e5m2fnuz);
    CHECK(float_format::parse("fp8_e4m3b11fnuz") == lowbit::fp8_e4m3b11fnuz);
    CHECK(lowbit::to_string(lowbit::fp8_e4m3fnuz) == "float8_e4m3fnuz");
    CHECK(float_format::parse("float8_e5m2fnuz") ==
          float_format{.exp_bits = 5, .man_bits = 2, .bias = 16, .specials = special_values::fnuz});
    CHECK(float_format::parse("float8_e4m3b11fnuz") ==
          float_format{.exp_bits = 4, .man_bits = 3, .bias = 11, .specials = special_values::fnuz});
    // ml_dtypes' IEEE-style FP8: infinities, NaN in the top exponent field (e4m3: max 240)
    CHECK(float_format::parse("float8_e4m3") == float_format{.exp_bits = 4, .man_bits = 3});
    CHECK(float_format::parse("float8_e4m3").max_finite() == 240.0);
    CHECK(float_format::parse("float8_e4m3").has_infinity());
    CHECK(float_format::parse("float8_e3m4") == float_format{.exp_bits = 3, .man_bits = 4});
    CHECK(float_format::parse("float8_e3m4").max_finite() == 15.5);
    CHECK(float_format::parse(lowbit::to_string(float_format::parse("float8_e4m3"))) == float_format::parse("float8_e4m3"));
    CHECK(lowbit::to_string(e4m3fnuz) == "float8_e4m3fnuz");
    CHECK(lowbit::to_string(lowbit::fp8_e5m2fnuz) == "float8_e5m2fnuz");
    CHECK(lowbit::to_string(lowbit::fp8_e4m3b11fnuz) == "float8_e4m3b11fnuz");
    CHECK(lowbit::to_string(float_format::parse("e5m2,bias=15,specials=fnuz")) == "e5m2,bias=15,specials=fnuz");
    CHECK(e4m3fnuz.max_finite() == 240.0);
    CHECK(lowbit::fp8_e5m2fnuz.max_finite() == 57344.0);
    CHECK(lowbit::fp8_e4m3b11fnuz.max_finite() == 30.0);
    CHECK(e4m3fnuz.has_nan());
    CHECK(!e4m3fnuz.has_infinity());
    CHECK(!e4m3fnuz.has_negative_zero());
    CHECK(lowbit::fp8_e4m3.has_negative_zero());
    // NaN takes the negative-zero code, which an unsigned format or one without zero lacks
    CHECK_THROWS_WITH(float_format::parse("ue4m3,specials=fnuz"), Catch::Contains("signed format with zero"));
    CHECK_THROWS_WITH(float_format::parse("float8_e4m3fnuz,unsigned"), Catch::Contains("fnuz"));
    CHECK_THROWS_WITH(float_format::parse("e4m3,specials=fnu"), Catch::Contains("ieee, fn, none or fnuz"));
}

TEST_CASE("to_string is read back by parse for every small format") {
    for (int e = 1; e <= 11; ++e)
        for (int m = 0; m <= 12; ++m)
            for (const auto specials : {special_values::ieee, special_values::fn, special_values::none,
                                        special_values::fnuz})
                for (const bool subnormals : {true, false})
                    for (const bool is_signed : {true, false})
                        for (const int bias_shift : {0, -3, 2}) {
                            float_format f{.exp_bits = e, .man_bits = m, .subnormals = subnormals,
                                           .specials = specials, .is_signed = is_signed};
                            if (bias_shift != 0) f.bias = f.exponent_bias() + bias_shift;
                            if (!f.is_valid()) continue;
                            INFO(lowbit::to_string(f));
                            CHECK(float_format::parse(lowbit::to_string(f)) == f);
                        }
    for (const auto& f : {lowbit::fp32, lowbit::tf32, lowbit::bf16, lowbit::fp16, lowbit::fp8_e4m3, lowbit::fp8_e5m2,
                          lowbit::fp6_e2m3, lowbit::fp6_e3m2, lowbit::fp4_e2m1, lowbit::ue8m0, lowbit::ue4m3,
                          lowbit::lba_m7e4_acc, lowbit::lba_m7e4_prod})
        CHECK(float_format::parse(lowbit::to_string(f)) == f);
    CHECK(lowbit::to_string(lowbit::fp8_e4m3) == "fp8_e4m3");
    CHECK(lowbit::to_string(float_format{.exp_bits = 4, .man_bits = 3}) == "float8_e4m3");  // ml_dtypes' name
}

TEST_CASE("invalid formats name the field and the value") {
    CHECK(message_of([] { float_format{.exp_bits = 0, .man_bits = 3}.validate(); }).find("exp_bits = 0") !=
          std::string::npos);
    CHECK(message_of([] { float_format{.exp_bits = 12, .man_bits = 3}.validate(); }).find("exp_bits = 12") !=
          std::string::npos);
    CHECK(message_of([] { float_format{.exp_bits = 5, .man_bits = -1}.validate(); }).find("man_bits = -1") !=
          std::string::npos);
    CHECK(message_of([] { float_format{.exp_bits = 5, .man_bits = 53}.validate(); }).find("man_bits = 53") !=
          std::string::npos);
    CHECK(message_of([] { float_format{.exp_bits = 11, .man_bits = 3, .bias = 0}.validate(); }).find("bias") !=
          std::string::npos);
    CHECK(message_of([] { float_format{.exp_bits = 8, .man_bits = 3, .bias = 2000}.validate(); }).find("bias = 2000") !=
          std::string::npos);
    CHECK(message_of([] { float_format{.exp_bits = 4, .man_bits = 3, .has_zero = false}.validate(); })
              .find("has_zero") != std::string::npos);
    // an ieee e1m0 holds no finite non-zero value
    CHECK(message_of([] { float_format{.exp_bits = 1, .man_bits = 0}.validate(); }).find("no finite non-zero") !=
          std::string::npos);
    CHECK_FALSE(float_format{.exp_bits = 1, .man_bits = 0}.is_valid());
    CHECK(float_format{.exp_bits = 1, .man_bits = 2}.is_valid());  // subnormals only
}

TEST_CASE("parse errors name what was wrong") {
    CHECK(message_of([] { float_format::parse("e4x3"); }).find("name 'e4x3'") != std::string::npos);
    CHECK(message_of([] { float_format::parse(""); }).find("name") != std::string::npos);
    CHECK(message_of([] { float_format::parse("e4m3,bias=ten"); }).find("bias 'ten'") != std::string::npos);
    CHECK(message_of([] { float_format::parse("e4m3,subnormals=maybe"); }).find("subnormals 'maybe'") !=
          std::string::npos);
    CHECK(message_of([] { float_format::parse("e4m3,specials=nan"); }).find("specials 'nan'") != std::string::npos);
    CHECK(message_of([] { float_format::parse("e4m3,,bias=3"); }).find("option") != std::string::npos);
    CHECK(message_of([] { float_format::parse("e4m3,color=red"); }).find("option 'color=red'") != std::string::npos);
    CHECK(message_of([] { float_format::parse("e12m3"); }).find("exp_bits = 12") != std::string::npos);
}

TEST_CASE("parse refuses a setting made twice, naming both options") {
    CHECK(message_of([] { float_format::parse("e4m3,bias=10,bias=11"); })
              .find("option 'bias=11' sets what 'bias=10' already set") != std::string::npos);
    CHECK(message_of([] { float_format::parse("e4m3,bias=7,bias=7"); }).find("bias=7") != std::string::npos);
    CHECK(message_of([] { float_format::parse("e4m3,unsigned,signed"); })
              .find("option 'signed' sets what 'unsigned' already set") != std::string::npos);
    CHECK(message_of([] { float_format::parse("e5m2,subnormals=off,specials=fn,subnormals=on"); })
              .find("'subnormals=off'") != std::string::npos);
    CHECK(message_of([] { float_format::parse("e8m0,nozero,zero,subnormals=off"); }).find("'nozero'") !=
          std::string::npos);
    CHECK(message_of([] { float_format::parse("e5m2,specials=fn,specials=none"); }).find("'specials=fn'") !=
          std::string::npos);
    // Each setting once, in any order, is fine.
    CHECK(float_format::parse("e4m3,specials=ieee,unsigned,bias=3,subnormals=off") ==
          float_format{.exp_bits = 4, .man_bits = 3, .bias = 3, .subnormals = false, .is_signed = false});
}

TEST_CASE("a format is a structural template argument and a constexpr value") {
    STATIC_REQUIRE(bits_of<lowbit::fp8_e4m3>() == 8);
    STATIC_REQUIRE(bits_of<float_format{.exp_bits = 4, .man_bits = 7, .bias = 10}>() == 12);
    STATIC_REQUIRE(lowbit::fp8_e4m3.max_finite() == 448.0);
    STATIC_REQUIRE(lowbit::fp16.min_subnormal() == 1.0 / 16777216.0);
    STATIC_REQUIRE(lowbit::fp16.emin() == -14 && lowbit::fp16.emax() == 15);
    STATIC_REQUIRE(lowbit::fp8_e4m3.emax() == 8 && lowbit::fp8_e4m3.epsilon() == 0.125);
    STATIC_REQUIRE(float_format{.exp_bits = 5, .man_bits = 10} == float_format{.exp_bits = 5, .man_bits = 10, .bias = 15});
}
