// The matrix units' conventions (gemm_spec.hpp: align, subnormal_exponent, zero_exponent,
// overflow::infinity_always, groups chained through their rounded result, two_level's floors),
// each on a hand-derived case where it changes the answer. The expected bits are worked out in
// the comments from the definitions, never taken from the code's output; each case also runs the
// spec without the convention, whose (different) answer is derived the same way.
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/hardware.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

using lowbit::gemm_spec;
using lowbit::hw::preset;
using lowbit::hw::unit;

// D = a . b + c on the spec (one output).
float dot_add(const std::vector<float>& a, const std::vector<float>& b, float c, const gemm_spec& spec) {
    const auto K = Eigen::Index(a.size());
    const Eigen::Map<const Eigen::MatrixXf> A(a.data(), 1, K), B(b.data(), K, 1);
    Eigen::MatrixXf C(1, 1);
    C(0, 0) = c;
    return lowbit::gemm_add(A, B, C, spec)(0, 0);
}

bool same_bits(float x, float y) { return std::bit_cast<std::uint32_t>(x) == std::bit_cast<std::uint32_t>(y); }

#define CHECK_BITS(got, expected)                                                              \
    do {                                                                                       \
        const float got_ = (got), expected_ = (expected);                                     \
        INFO("got " << std::hexfloat << got_ << ", expected " << expected_);                   \
        CHECK(same_bits(got_, expected_));                                                     \
    } while (false)

}  // namespace

TEST_CASE("align = operands: a product aligns on e(a) + e(b), its significand in [1, 4)", "[hardware]") {
    // Ampere fp16: F = 24 fraction bits, groups of 8. Products 1.5 * 1.5 = 2.25 and seven of
    // 2^-12 * 2^-12 = 2^-24. On the operands' exponents E = 0 + 0 = 0: the grid is 2^-24, every
    // term is kept, the sum 2.25 + 7 * 2^-24 truncated to fp32 (ulp 2^-22 in [2, 4)) is
    // 2.25 + 2^-22 = 0x1.200002p+1. On the product's own exponent E = floor(log2 2.25) = 1: the grid
    // is 2^-23, each 2^-24 is cut to 0, and the result is 2.25.
    const std::vector<float> a{1.5f, 0x1p-12f, 0x1p-12f, 0x1p-12f, 0x1p-12f, 0x1p-12f, 0x1p-12f, 0x1p-12f};
    const std::vector<float> b{1.5f, 0x1p-12f, 0x1p-12f, 0x1p-12f, 0x1p-12f, 0x1p-12f, 0x1p-12f, 0x1p-12f};
    gemm_spec spec = preset(unit::ampere, lowbit::fp16);
    CHECK_BITS(dot_add(a, b, 0.0f, spec), 0x1.200002p+1f);
    spec.align = lowbit::alignment_exponent::value;
    CHECK_BITS(dot_add(a, b, 0.0f, spec), 0x1.2p+1f);
}

TEST_CASE("subnormal_exponent = min_normal: a subnormal operand aligns at its format's smallest normal", "[hardware]") {
    // Ampere fp16 (F = 24). p0 = 2^-24 (an fp16 subnormal: exponent read as -14, significand 2^-10)
    // times 2^15: read at exponent -14 + 15 = 1, value 2^-9. p1 = 2^-14 * 2^-14 = 2^-28 (both normal).
    // min_normal: E = 1, grid 2^-23, p1 is cut to 0: the result is 2^-9.
    // own exponents: p0 reads floor(log2 2^-9) = -9, E = -9, grid 2^-33, both kept:
    // 2^-9 + 2^-28 = 2^-9 (1 + 2^-19) = 0x1.00002p-9, exact in fp32.
    const std::vector<float> a{0x1p-24f, 0x1p-14f}, b{0x1p15f, 0x1p-14f};
    gemm_spec spec = preset(unit::ampere, lowbit::fp16);
    CHECK_BITS(dot_add(a, b, 0.0f, spec), 0x1p-9f);
    spec.subnormals = lowbit::subnormal_exponent::own;
    CHECK_BITS(dot_add(a, b, 0.0f, spec), 0x1.00002p-9f);
}

TEST_CASE("zero_exponent = -126: zeros take part in the alignment, and a zero sum is +0", "[hardware]") {
    // Ampere bf16 (F = 24). Three products (1.5 * 2^-70) * 2^-80 = 1.5 * 2^-150, read at exponent
    // -70 + -80 = -150, beside C = 0. With C counted at 2^-126: E = -126, grid 2^-150, each product
    // is cut to 2^-150, the sum 3 * 2^-150 = 1.5 * 2^-149 truncates to fp32's 2^-149.
    // Without: E = -150, nothing is cut, 4.5 * 2^-150 = 2.25 * 2^-149 truncates to 2 * 2^-149 = 2^-148.
    const std::vector<float> a(3, 0x1.8p-70f), b(3, 0x1p-80f);
    gemm_spec spec = preset(unit::ampere, lowbit::bf16);
    CHECK_BITS(dot_add(a, b, 0.0f, spec), 0x1p-149f);
    spec.zero_exponent.reset();
    CHECK_BITS(dot_add(a, b, 0.0f, spec), 0x1p-148f);

    // Zeros only, C = -0 and the products -0 * 1 = -0: aligned as fixed point the sum is +0; with
    // zeros left out of the alignment the group is IEEE's sum of -0s, -0.
    const std::vector<float> zeros{-0.0f, -0.0f}, ones{1.0f, 1.0f};
    spec = preset(unit::ampere, lowbit::bf16);
    CHECK_BITS(dot_add(zeros, ones, -0.0f, spec), 0.0f);
    spec.zero_exponent.reset();
    CHECK_BITS(dot_add(zeros, ones, -0.0f, spec), -0.0f);
}

TEST_CASE("overflow::infinity_always: a truncated fp32 result past the largest value is infinite", "[hardware]") {
    // Ampere bf16: 2^64 * 2^64 = 2^128, beyond fp32's largest (2 - 2^-23) 2^127. Truncation toward
    // zero gives the largest value under IEEE (overflow::infinity); the tensor core gives +inf.
    const std::vector<float> a{0x1p64f}, b{0x1p64f}, minus_b{-0x1p64f};
    gemm_spec spec = preset(unit::ampere, lowbit::bf16);
    CHECK_BITS(dot_add(a, b, 0.0f, spec), std::numeric_limits<float>::infinity());
    CHECK_BITS(dot_add(a, minus_b, 0.0f, spec), -std::numeric_limits<float>::infinity());
    spec.accumulator = lowbit::float_quantizer{.format = lowbit::fp32, .mode = lowbit::rounding::toward_zero};
    CHECK_BITS(dot_add(a, b, 0.0f, spec), std::numeric_limits<float>::max());
}

TEST_CASE("groups: each group's rounded result is the next group's C (split-k)", "[hardware]") {
    // Ampere fp16, K = 16 in two groups of 8 (the m16n8k16 instruction). Group 1: 1 * 1 and
    // 2^-12 * 2^-12 = 2^-24: E = 0, grid 2^-24, sum 1 + 2^-24, truncated to fp32 (ulp 2^-23): 1.
    // Group 2: C = 1 and 2^-24: again 1. One group of 16 (Hopper's grouping, with Ampere's F = 24)
    // sums 1 + 2 * 2^-24 = 1 + 2^-23 = 0x1.000002p+0 before truncating it.
    std::vector<float> a(16, 0.0f), b(16, 1.0f);
    a[0] = 1.0f;
    a[1] = 0x1p-12f, b[1] = 0x1p-12f;
    a[8] = 0x1p-12f, b[8] = 0x1p-12f;
    gemm_spec spec = preset(unit::ampere, lowbit::fp16);
    REQUIRE(spec.group == 8);
    CHECK_BITS(dot_add(a, b, 0.0f, spec), 1.0f);
    spec.group = 16;
    CHECK_BITS(dot_add(a, b, 0.0f, spec), 0x1.000002p+0f);
}

TEST_CASE("signed zeros: IEEE's where a result is rounded", "[hardware]") {
    // Ampere bf16: one product (-1.5 * 2^-70) * 2^-80 = -1.5 * 2^-150 beside C = 0 (E = -126, grid
    // 2^-150): cut toward zero to -2^-150, nonzero; truncated to fp32 it is a negative zero.
    CHECK_BITS(dot_add({-0x1.8p-70f}, {0x1p-80f}, 0.0f, preset(unit::ampere, lowbit::bf16)), -0.0f);
    // CDNA3 fp32, a chain of IEEE fmas from C = +0: fma(-2^-100, 2^-100, +0) = -2^-200 rounds to -0.
    CHECK_BITS(dot_add({-0x1p-100f}, {0x1p-100f}, 0.0f, preset(unit::cdna3, lowbit::fp32)), -0.0f);
}

TEST_CASE("two_level (CDNA3): the product sum and C floored on the larger exponent", "[hardware]") {
    const gemm_spec cdna3_fp16 = preset(unit::cdna3, lowbit::fp16);
    // C = -2^-30 beside the product 1 * 1: E = 0, C floored to 24 bits below it, floor(-2^-6) 2^-24
    // = -2^-24, and 1 - 2^-24 = 0x1.fffffep-1 is a float. (The exact sum 1 - 2^-30 rounds to 1.)
    CHECK_BITS(dot_add({1.0f}, {1.0f}, -0x1p-30f, cdna3_fp16), 0x1.fffffep-1f);
    // C = 1, products 2^-12 * 2^-12 = 2^-24 and 2^-20 * 2^-20 = 2^-40 (fp16 subnormals, read at
    // -14 each: exponent -28). Level 1: E_p = -24, grid 2^-48, P = 2^-24 + 2^-40 exactly. Level 2:
    // E = 0, P floored to 31 bits below it (grid 2^-31): 2^-24. 1 + 2^-24 is a tie between 1 and
    // 1 + 2^-23, to even: 1. The exact sum 1 + 2^-24 + 2^-40 rounds up to 0x1.000002p+0.
    CHECK_BITS(dot_add({0x1p-12f, 0x1p-20f}, {0x1p-12f, 0x1p-20f}, 1.0f, cdna3_fp16), 1.0f);
    gemm_spec exact_fp32 = cdna3_fp16;
    exact_fp32.model = lowbit::accumulation::fused;
    exact_fp32.align = lowbit::alignment_exponent::value;
    exact_fp32.subnormals = lowbit::subnormal_exponent::own;
    exact_fp32.zero_exponent.reset();
    exact_fp32.accumulator = {};
    exact_fp32.chunk_accumulator = lowbit::fp32;
    CHECK_BITS(dot_add({0x1p-12f, 0x1p-20f}, {0x1p-12f, 0x1p-20f}, 1.0f, exact_fp32), 0x1.000002p+0f);
}

TEST_CASE("two_level (CDNA3 FP8): two interleaved sub-dots, and a small C dropped", "[hardware]") {
    const gemm_spec fp8 = preset(unit::cdna3, lowbit::fp8_e4m3fnuz);
    REQUIRE(fp8.sub_dots == 2);
    // Products 2^7 * 2^7 = 2^14 (position 0, even) and -2^-10 * 2^-10 = -2^-20 (position 1, odd;
    // e4m3fnuz subnormals). Each sub-dot is aligned on its own exponent (the odd one keeps -2^-20),
    // then floored 24 bits below the larger, 14: floor(-2^-20 / 2^-10) 2^-10 = -2^-10. The sum
    // 2^14 - 2^-10 = 0x1.fffffep+13 is a float. In one sub-dot the -2^-20 is truncated toward zero
    // to 0, and the result is 2^14.
    CHECK_BITS(dot_add({0x1p7f, -0x1p-10f}, {0x1p7f, 0x1p-10f}, 0.0f, fp8), 0x1.fffffep+13f);
    gemm_spec one = fp8;
    one.sub_dots = 1;
    CHECK_BITS(dot_add({0x1p7f, -0x1p-10f}, {0x1p7f, 0x1p-10f}, 0.0f, one), 0x1p+14f);
    // C = -2^-20 beside the product 2^14: e(C) = -20 < E - 25 = -11, so C is dropped: 2^14. With one
    // sub-dot it is floored instead, to -2^-10: 0x1.fffffep+13.
    CHECK_BITS(dot_add({0x1p7f}, {0x1p7f}, -0x1p-20f, fp8), 0x1p+14f);
    CHECK_BITS(dot_add({0x1p7f}, {0x1p7f}, -0x1p-20f, one), 0x1.fffffep+13f);
}

TEST_CASE("two_level (CDNA3): products of 2^128 or more are infinite", "[hardware]") {
    // bf16: 2^64 * 2^64 = 2^128: +inf whatever C is; with -2^128 beside it, NaN.
    const gemm_spec bf16 = preset(unit::cdna3, lowbit::bf16);
    CHECK_BITS(dot_add({0x1p64f}, {0x1p64f}, -1.0f, bf16), std::numeric_limits<float>::infinity());
    CHECK(std::isnan(dot_add({0x1p64f, 0x1p64f}, {0x1p64f, -0x1p64f}, 0.0f, bf16)));
    // 2^127 * 1.5 is below 2^128: the ordinary path, RNE to fp32: 1.5 * 2^127.
    CHECK_BITS(dot_add({0x1p64f}, {0x1.8p63f}, 0.0f, bf16), 0x1.8p127f);
}

TEST_CASE("hw::preset: names, text, and what a unit does not take", "[hardware]") {
    CHECK(preset("hopper:e4m3") == preset(unit::hopper, lowbit::fp8_e4m3));
    CHECK(preset("HOPPER:fp8_e4m3:fp16") == preset(unit::hopper, lowbit::fp8_e4m3, lowbit::fp16));
    CHECK(preset("ada:e4m3:e5m2:fp32") == preset(unit::ada, lowbit::fp8_e4m3, lowbit::fp8_e5m2, lowbit::fp32));
    for (const unit u : lowbit::hw::units)
        for (const auto& f : {lowbit::fp32, lowbit::tf32, lowbit::fp16, lowbit::bf16, lowbit::fp8_e4m3,
                              lowbit::fp8_e5m2fnuz}) {
            gemm_spec s;
            try {
                s = preset(u, f);
            } catch (const std::invalid_argument&) {
                continue;
            }
            INFO(to_string(s));
            CHECK(gemm_spec::parse(to_string(s)) == s);  // printable and parseable
        }
    CHECK_THROWS_WITH(preset(unit::volta, lowbit::bf16), Catch::Contains("volta: inputs bf16: its instructions take fp16"));
    CHECK_THROWS_WITH(preset(unit::ampere, lowbit::bf16, lowbit::fp16), Catch::Contains("output fp16"));
    CHECK_THROWS_WITH(preset(unit::cdna3, lowbit::fp16, lowbit::bf16, lowbit::fp32), Catch::Contains("both the same format"));
    CHECK_THROWS_WITH(preset("pascal:fp16"), Catch::Contains("names no unit"));
    CHECK_THROWS_WITH(preset("hopper"), Catch::Contains("unit:inputs"));
    CHECK_THROWS_WITH(preset("hopper:fp99"), Catch::Contains("hopper:fp99"));
    // Ada and Hopper FP8 results are truncated to 13 fraction bits (e8m13), Blackwell's to fp32
    CHECK(preset(unit::hopper, lowbit::fp8_e4m3).accumulator.as_float()->format == lowbit::hw::e8m13);
    CHECK(preset(unit::blackwell, lowbit::fp8_e4m3).accumulator.as_float()->format == lowbit::fp32);
}
