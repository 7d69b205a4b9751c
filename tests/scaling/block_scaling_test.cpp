// Tests of lowbit/scaling/block_scaling.hpp: the MX exponent rules on worked examples (957
// becomes 896 under the OCP floor rule), every finite element value of every MX element type
// round-tripping through quantize_blocks at several scales, NaN/infinity propagation, amax = 0,
// partial blocks and k_axis, NVFP4 and VS-Quant on hand values, VS-Quant against per-channel
// 4-bit integers on heavy-tailed weights, and the errors.
#include <lowbit/scaling/block_scaling.hpp>

#include <lowbit/types/encoding.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <iterator>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using lowbit::block_format;
using lowbit::block_scaled_matrix;
using lowbit::scale_exponent_rule;

namespace {

block_format with_rule(block_format f, scale_exponent_rule rule) {
    f.exponent_rule = rule;
    return f;
}

std::vector<float> dequantized(const block_scaled_matrix& m) {
    std::vector<float> out(m.rows * m.cols);
    lowbit::dequantize(m, out.data());
    return out;
}

// One 1 x 32 MX block: the given leading values, then zeros.
std::vector<float> block_of(std::initializer_list<float> head, std::size_t size = 32) {
    std::vector<float> b(size, 0.0f);
    std::copy(head.begin(), head.end(), b.begin());
    return b;
}

// Every finite value of the element type of an MX format.
std::vector<double> element_values(const block_format& b) {
    std::vector<double> values;
    if (const auto* f = std::get_if<lowbit::float_format>(&b.element)) {
        for (std::uint64_t code = 0; code < (std::uint64_t(1) << f->bits()); ++code) {
            const double v = lowbit::decode(*f, code);
            if (std::isfinite(v)) values.push_back(v);
        }
    } else {
        const auto& e = std::get<lowbit::int_element>(b.element);
        for (double k = e.format.min_value(); k <= e.format.max_value(); ++k)
            values.push_back(std::ldexp(k, -e.fraction_bits));
    }
    return values;
}

double relative_error(const std::vector<float>& x, const std::vector<float>& q) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double d = double(x[i]) - double(q[i]);
        num += d * d;
        den += double(x[i]) * double(x[i]);
    }
    return std::sqrt(num / den);
}

}  // namespace

TEST_CASE("block formats: presets and emax_elem") {
    CHECK(lowbit::detail::element_grid(lowbit::mxfp8_e4m3).emax == 8);
    CHECK(lowbit::detail::element_grid(lowbit::mxfp8_e5m2).emax == 15);
    CHECK(lowbit::detail::element_grid(lowbit::mxfp6_e2m3).emax == 2);
    CHECK(lowbit::detail::element_grid(lowbit::mxfp6_e3m2).emax == 4);
    CHECK(lowbit::detail::element_grid(lowbit::mxfp4).emax == 2);
    CHECK(lowbit::detail::element_grid(lowbit::mxint8).emax == 0);
    CHECK(lowbit::detail::element_grid(lowbit::mxint8).max_value == 127.0 / 64);
    CHECK(lowbit::mxfp4.block_size == 32);
    CHECK(lowbit::nvfp4.block_size == 16);
    const block_format vs = lowbit::vsquant(4, 6, 16);
    CHECK(vs.block_size == 16);
    CHECK(vs.scale_bits == 6);
    CHECK(std::get<lowbit::int_element>(vs.element).format.bits == 4);
    for (const block_format& f : {lowbit::mxfp8_e4m3, lowbit::mxfp8_e5m2, lowbit::mxfp6_e2m3, lowbit::mxfp6_e3m2,
                                  lowbit::mxfp4, lowbit::mxint8, lowbit::nvfp4, vs})
        CHECK_NOTHROW(f.validate());
}

TEST_CASE("MX scale rules on worked examples: 957 becomes 896") {
    // E4M3 block with largest magnitude 960. Floor (OCP): X = 2^(floor(log2 960) - 8) = 2, and
    // 957 / 2 = 478.5 and 960 / 2 = 480 are beyond 448: both saturate, to 896.
    const auto x = block_of({960.0f, 957.0f, 1.0f, -3.0f, 104.0f});
    const auto floor = lowbit::quantize_blocks(x.data(), 1, 32, lowbit::mxfp8_e4m3, 1);
    REQUIRE(floor.block_scales.size() == 1);
    CHECK(floor.block_scales[0] == 2.0);
    CHECK(floor.coarse_scales.empty());
    const auto f = dequantized(floor);
    CHECK(f[0] == 896.0f);
    CHECK(f[1] == 896.0f);  // "957 becomes 896"
    CHECK(f[2] == 1.0f);    // 0.5 is an E4M3 value
    CHECK(f[3] == -3.0f);
    CHECK(f[4] == 104.0f);  // 52 = 1.625 * 2^5 is one
    CHECK(floor.elements[1] == 448.0f);

    // Ceil: X = 2^ceil(log2(960 / 448)) = 4, nothing clips: 957 / 4 = 239.25 lies between the
    // E4M3 neighbours 224 and 240 (spacing 16 in [128, 256)) and rounds to 240 -> 960.
    const auto ceil = lowbit::quantize_blocks(x.data(), 1, 32, with_rule(lowbit::mxfp8_e4m3, scale_exponent_rule::ceil), 1);
    CHECK(ceil.block_scales[0] == 4.0);
    const auto c = dequantized(ceil);
    CHECK(c[0] == 960.0f);
    CHECK(c[1] == 960.0f);
    CHECK(c[2] == 1.0f);   // 0.25
    CHECK(c[3] == -3.0f);  // 0.75
    CHECK(c[4] == 104.0f); // 26 = 1.625 * 2^4

    // Nearest: log2(960 / 448) = 1.0995 -> 1, the floor rule's X here.
    const auto nearest =
        lowbit::quantize_blocks(x.data(), 1, 32, with_rule(lowbit::mxfp8_e4m3, scale_exponent_rule::nearest), 1);
    CHECK(nearest.block_scales[0] == 2.0);

    // amax 1182: log2(1182 / 448) = 1.3996. Floor: 2^(10 - 8) = 4; ceil: 4; nearest: 2, which
    // clips 1182 / 2 = 591 to 448 -> 896.
    const auto y = block_of({1182.0f, -5.0f});
    CHECK(lowbit::quantize_blocks(y.data(), 1, 32, lowbit::mxfp8_e4m3, 1).block_scales[0] == 4.0);
    CHECK(lowbit::quantize_blocks(y.data(), 1, 32, with_rule(lowbit::mxfp8_e4m3, scale_exponent_rule::ceil), 1)
              .block_scales[0] == 4.0);
    const auto yn =
        lowbit::quantize_blocks(y.data(), 1, 32, with_rule(lowbit::mxfp8_e4m3, scale_exponent_rule::nearest), 1);
    CHECK(yn.block_scales[0] == 2.0);
    CHECK(dequantized(yn)[0] == 896.0f);
    // Just either side of the nearest rule's boundary 448 * 2^1.5 = 1267.14: 1267 -> 2, 1268 -> 4.
    const auto lo = block_of({1267.0f});
    const auto hi = block_of({1268.0f});
    const auto nearest_e4m3 = with_rule(lowbit::mxfp8_e4m3, scale_exponent_rule::nearest);
    CHECK(lowbit::quantize_blocks(lo.data(), 1, 32, nearest_e4m3, 1).block_scales[0] == 2.0);
    CHECK(lowbit::quantize_blocks(hi.data(), 1, 32, nearest_e4m3, 1).block_scales[0] == 4.0);
    // Exactly max_elem * 2^k: ceil and nearest give 2^k.
    const auto exact = block_of({448.0f * 8});
    CHECK(lowbit::quantize_blocks(exact.data(), 1, 32, with_rule(lowbit::mxfp8_e4m3, scale_exponent_rule::ceil), 1)
              .block_scales[0] == 8.0);
    CHECK(lowbit::quantize_blocks(exact.data(), 1, 32, nearest_e4m3, 1).block_scales[0] == 8.0);

    // MXFP4: amax 7. Floor: 2^(2 - 2) = 1, 7 saturates to 6. Ceil: 2^ceil(log2(7/6)) = 2 and
    // 7 / 2 = 3.5 ties between 3 (mantissa 1, odd) and 4 (even) -> 4 -> 8.
    const auto z = block_of({7.0f, 2.5f});
    const auto z_floor = lowbit::quantize_blocks(z.data(), 1, 32, lowbit::mxfp4, 1);
    CHECK(z_floor.block_scales[0] == 1.0);
    CHECK(dequantized(z_floor)[0] == 6.0f);
    CHECK(dequantized(z_floor)[1] == 2.0f);  // 2.5 ties between 2 (even) and 3
    const auto z_ceil = lowbit::quantize_blocks(z.data(), 1, 32, with_rule(lowbit::mxfp4, scale_exponent_rule::ceil), 1);
    CHECK(z_ceil.block_scales[0] == 2.0);
    CHECK(dequantized(z_ceil)[0] == 8.0f);
    CHECK(dequantized(z_ceil)[1] == 2.0f);  // 1.25 ties between 1 (even) and 1.5

    // MXINT8: emax_elem = 0, elements k / 64. amax 3 -> X = 2^1; 3 / 2 = 1.5 = 96 / 64;
    // 0.01 / 2 = 0.005 -> 0.3125 / 64 -> 0; -3.99 / 2 = -1.995 -> -127.68 / 64 -> -128 / 64 = -2.
    const auto w = block_of({3.0f, 0.01f, -3.99f, 1.0f / 64});
    const auto wi = lowbit::quantize_blocks(w.data(), 1, 32, lowbit::mxint8, 1);
    CHECK(wi.block_scales[0] == 2.0);
    CHECK(wi.elements[0] == 1.5f);
    CHECK(wi.elements[1] == 0.0f);
    CHECK(wi.elements[2] == -2.0f);
    CHECK(wi.elements[3] == 0.0f);  // 1/128 = 0.5 / 64 ties to 0
    CHECK(dequantized(wi)[2] == -4.0f);
}

TEST_CASE("MX: every finite element value round-trips at several scales, along either axis") {
    const block_format formats[] = {lowbit::mxfp8_e4m3, lowbit::mxfp8_e5m2, lowbit::mxfp6_e2m3,
                                    lowbit::mxfp6_e3m2, lowbit::mxfp4,      lowbit::mxint8};
    const char* names[] = {"mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4", "mxint8"};
    for (std::size_t fi = 0; fi < std::size(formats); ++fi) {
        const block_format& format = formats[fi];
        const double max_elem = lowbit::detail::element_grid(format).max_value;
        std::vector<double> values = element_values(format);
        // MXINT8's -2 (code -128) has a magnitude above max_elem = 127/64: a block holding -2 X
        // has floor(log2 amax) one higher, so it would get the scale 2X (checked below).
        if (std::holds_alternative<lowbit::int_element>(format.element)) std::erase(values, -2.0);
        for (const int e : {-120, -3, 0, 5, 100}) {
            INFO(names[fi] << ", X = 2^" << e);
            const double X = std::ldexp(1.0, e);
            // Blocks of 32: max_elem * X first (it pins the floor rule's exponent to e), then 31 values.
            const std::size_t blocks = (values.size() + 30) / 31;
            std::vector<float> row(blocks * 32, 0.0f);
            std::vector<double> expected(row.size(), 0.0);
            for (std::size_t b = 0; b < blocks; ++b) {
                row[b * 32] = float(max_elem * X);
                expected[b * 32] = max_elem;
                for (std::size_t j = 0; j < 31 && b * 31 + j < values.size(); ++j) {
                    row[b * 32 + 1 + j] = float(values[b * 31 + j] * X);
                    expected[b * 32 + 1 + j] = values[b * 31 + j];
                }
            }
            // k_axis = 1 on a 1 x n row, k_axis = 0 on the n x 1 column: the same numbers.
            for (const int k_axis : {1, 0}) {
                const auto m = k_axis == 1 ? lowbit::quantize_blocks(row.data(), 1, row.size(), format, 1)
                                           : lowbit::quantize_blocks(row.data(), row.size(), 1, format, 0);
                REQUIRE(m.block_scales.size() == blocks);
                for (const double s : m.block_scales) REQUIRE(s == X);
                const auto back = dequantized(m);
                for (std::size_t i = 0; i < row.size(); ++i) {
                    REQUIRE(m.elements[i] == expected[i]);
                    REQUIRE(back[i] == row[i]);
                }
            }
        }
    }
    // MXINT8: -2 X alone in a block gets the scale 2X and the element -1.
    const auto b = block_of({-2.0f * 8});
    const auto m = lowbit::quantize_blocks(b.data(), 1, 32, lowbit::mxint8, 1);
    CHECK(m.block_scales[0] == 16.0);
    CHECK(m.elements[0] == -1.0f);
}

TEST_CASE("MX: NaN and infinity make the block scale NaN and the whole block NaN") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    for (const float bad : {nan, inf, -inf}) {
        INFO("bad = " << bad);
        std::vector<float> x(64, 1.0f);
        x[5] = bad;
        x[40] = 3.0f;
        for (const block_format& f : {lowbit::mxfp8_e4m3, lowbit::mxfp4, lowbit::mxint8}) {
            const auto m = lowbit::quantize_blocks(x.data(), 1, 64, f, 1);
            CHECK(std::isnan(m.block_scales[0]));
            CHECK_FALSE(std::isnan(m.block_scales[1]));
            const auto back = dequantized(m);
            for (std::size_t i = 0; i < 32; ++i) CHECK(std::isnan(back[i]));
            for (std::size_t i = 32; i < 64; ++i) CHECK_FALSE(std::isnan(back[i]));
            CHECK(back[40] == 3.0f);
        }
    }
}

TEST_CASE("MX: amax = 0, partial blocks, k_axis and transposes") {
    // An all-zero block gets the smallest E8M0 scale, 2^-127, under every rule.
    const std::vector<float> zeros(32, 0.0f);
    for (const auto rule : {scale_exponent_rule::floor, scale_exponent_rule::ceil, scale_exponent_rule::nearest}) {
        const auto m = lowbit::quantize_blocks(zeros.data(), 1, 32, with_rule(lowbit::mxfp8_e4m3, rule), 1);
        CHECK(m.block_scales[0] == std::ldexp(1.0, -127));
        CHECK(dequantized(m) == zeros);
    }
    // Exponents clamp to E8M0's range: tiny data hits 2^-127 (and underflows to zero elements).
    const auto tiny = block_of({1e-44f});
    CHECK(lowbit::quantize_blocks(tiny.data(), 1, 32, lowbit::mxfp8_e4m3, 1).block_scales[0] == std::ldexp(1.0, -127));

    // A 3 x 40 matrix with blocks of 32 along rows: two blocks per row, the second of 8.
    std::vector<float> a(3 * 40);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(std::sin(double(i)) * (1.0 + double(i % 40)));
    const auto m = lowbit::quantize_blocks(a.data(), 3, 40, lowbit::mxfp4, 1);
    CHECK(m.lines() == 3);
    CHECK(m.blocks_per_line() == 2);
    REQUIRE(m.block_scales.size() == 6);
    for (std::size_t r = 0; r < 3; ++r) {
        double amax = 0;
        for (std::size_t c = 32; c < 40; ++c) amax = std::max(amax, std::fabs(double(a[r * 40 + c])));
        CHECK(m.block_scales[r * 2 + 1] == std::ldexp(1.0, std::ilogb(amax) - 2));
    }
    // The transpose with k_axis = 0 gives the same elements and scales.
    std::vector<float> t(a.size());
    for (std::size_t r = 0; r < 3; ++r)
        for (std::size_t c = 0; c < 40; ++c) t[c * 3 + r] = a[r * 40 + c];
    const auto mt = lowbit::quantize_blocks(t.data(), 40, 3, lowbit::mxfp4, 0);
    CHECK(mt.block_scales == m.block_scales);
    const auto back = dequantized(m), back_t = dequantized(mt);
    for (std::size_t r = 0; r < 3; ++r)
        for (std::size_t c = 0; c < 40; ++c) {
            REQUIRE(mt.elements[c * 3 + r] == m.elements[r * 40 + c]);
            REQUIRE(back_t[c * 3 + r] == back[r * 40 + c]);
        }
}

TEST_CASE("NVFP4 on hand values") {
    // Two blocks of 16. Tensor amax 2688 = 6 * 448: global scale 1. Block 0: s_b = 448.
    // Block 1: amax 264, s_b = 264 / 6 = 44 (an E4M3 value); elements x / 44 on the E2M1 grid.
    std::vector<float> x(32, 0.0f);
    const float b0[] = {2688.0f, 672.0f, 112.0f, -896.0f, 1344.0f};        // / 448: 6, 1.5, 0.25, -2, 3
    const float b1[] = {264.0f, 100.0f, 130.0f, 66.0f, 11.0f, 33.0f, -264.0f, 200.0f};
    std::copy(std::begin(b0), std::end(b0), x.begin());
    std::copy(std::begin(b1), std::end(b1), x.begin() + 16);
    const auto m = lowbit::quantize_blocks(x.data(), 1, 32, lowbit::nvfp4, 1);
    REQUIRE(m.coarse_scales.size() == 1);
    CHECK(m.coarse_scales[0] == 1.0);
    CHECK(m.block_scales == std::vector<double>{448.0, 44.0});
    const auto back = dequantized(m);
    // 112 / 448 = 0.25 ties between 0 and 0.5 (odd code): 0.
    CHECK(std::vector<float>(back.begin(), back.begin() + 5) == std::vector<float>{2688, 672, 0, -896, 1344});
    // 264/44 = 6; 100/44 = 2.27 -> 2; 130/44 = 2.95 -> 3; 66/44 = 1.5; 11/44 = 0.25 -> 0 (tie);
    // 33/44 = 0.75 ties between 0.5 (odd) and 1 (even) -> 1; 200/44 = 4.55 -> 4.
    CHECK(std::vector<float>(back.begin() + 16, back.begin() + 24) ==
          std::vector<float>{264, 88, 132, 66, 0, 44, -264, 176});
    CHECK(m.elements[16 + 5] == 1.0f);

    // Twice the data: global scale 2, same block scales and elements, values doubled.
    std::vector<float> x2(x);
    for (float& v : x2) v *= 2;
    const auto m2 = lowbit::quantize_blocks(x2.data(), 1, 32, lowbit::nvfp4, 1);
    CHECK(m2.coarse_scales[0] == 2.0);
    CHECK(m2.block_scales == m.block_scales);
    CHECK(m2.elements == m.elements);
    const auto back2 = dequantized(m2);
    for (std::size_t i = 0; i < 32; ++i) CHECK(back2[i] == 2 * back[i]);

    // A global scale that is not a power of two: g = float(1000 / 2688); the block holding 1000
    // gets s_b = quantize(1000 / (6 g)) = 448 (448.00000x saturates or rounds to 448), the other
    // quantize(10 / (6 g), ue4m3).
    std::vector<float> x3(32, 0.0f);
    x3[0] = 1000.0f;
    x3[16] = 10.0f;
    x3[17] = -7.0f;
    const auto m3 = lowbit::quantize_blocks(x3.data(), 1, 32, lowbit::nvfp4, 1);
    const double g = double(float(1000.0 / 2688.0));
    CHECK(m3.coarse_scales[0] == g);
    CHECK(m3.block_scales[0] == 448.0);
    const double s1 = lowbit::quantize(10.0 / (6 * g), lowbit::ue4m3, lowbit::rounding::nearest_even,
                                       lowbit::overflow::saturate);
    CHECK(m3.block_scales[1] == s1);
    CHECK(s1 == 4.5);  // 10 / (6 g) = 4.48: E4M3 spacing 0.5 in [4, 8)
    CHECK(m3.elements[17] == float(lowbit::quantize(-7.0 / (s1 * g), lowbit::fp4_e2m1)));
    CHECK(dequantized(m3)[0] == float(6 * 448 * g));

    // NaN in a block: its scale and values are NaN; the tensor scale ignores it.
    x[20] = std::numeric_limits<float>::quiet_NaN();
    const auto mn = lowbit::quantize_blocks(x.data(), 1, 32, lowbit::nvfp4, 1);
    CHECK(mn.coarse_scales[0] == 1.0);
    CHECK(mn.block_scales[0] == 448.0);
    CHECK(std::isnan(mn.block_scales[1]));
    const auto backn = dequantized(mn);
    for (std::size_t i = 16; i < 32; ++i) CHECK(std::isnan(backn[i]));

    // All-zero tensor: global 1, scales 0, values 0.
    const std::vector<float> zeros(32, 0.0f);
    const auto mz = lowbit::quantize_blocks(zeros.data(), 1, 32, lowbit::nvfp4, 1);
    CHECK(mz.coarse_scales[0] == 1.0);
    CHECK(dequantized(mz) == zeros);
}

TEST_CASE("VS-Quant on hand values") {
    // 4-bit elements (qmax 7), 4-bit scales (top 15), vectors of 4, gamma per row.
    // v0 = [6.5625, -3.5, 1, 0]: s_v = 0.9375, the largest, so gamma = 0.9375 / 15 = 1/16, s_q = 15.
    //   codes: 7, -3.5/0.9375 = -3.73 -> -4, 1.07 -> 1, 0.
    // v1 = [0.875, 0.4375, -0.125, 0]: s_v = 0.125 = 2 gamma: s_q = 2, step 1/8:
    //   codes 7, 3.5 -> 4 (tie to even), -1, 0.
    // v2 = [0.09375, ...]: s_v / gamma = 0.21 rounds to 0, clamped to 1: step 1/16, 1.5 -> 2.
    // v3 = 0: s_q = 0, codes 0.
    std::vector<float> x{6.5625f, -3.5f, 1.0f, 0.0f, 0.875f, 0.4375f, -0.125f, 0.0f,
                         0.09375f, 0.0f, -0.03f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    const block_format vs = lowbit::vsquant(4, 4, 4);
    const auto m = lowbit::quantize_blocks(x.data(), 1, 16, vs, 1);
    CHECK(m.coarse_scales == std::vector<double>{0.0625});
    CHECK(m.block_scales == std::vector<double>{15, 2, 1, 0});
    CHECK(m.elements == std::vector<float>{7, -4, 1, 0, 7, 4, -1, 0, 2, 0, 0, 0, 0, 0, 0, 0});
    CHECK(dequantized(m) == std::vector<float>{6.5625f, -3.75f, 0.9375f, 0, 0.875f, 0.5f, -0.125f, 0, 0.125f, 0,
                                               0, 0, 0, 0, 0, 0});

    // Two rows, the second half the first: per-row gammas halve; a per-tensor gamma is shared and
    // the second row's scales halve instead (15 / 2 = 7.5 -> 8, 2 / 2 = 1, 1 / 2 -> 0 -> 1).
    std::vector<float> two(x);
    for (const float v : x) two.push_back(v / 2);
    const auto per_row = lowbit::quantize_blocks(two.data(), 2, 16, vs, 1);
    CHECK(per_row.coarse_scales == std::vector<double>{0.0625, 0.03125});
    CHECK(per_row.block_scales == std::vector<double>{15, 2, 1, 0, 15, 2, 1, 0});
    const auto per_tensor =
        lowbit::quantize_blocks(two.data(), 2, 16, lowbit::vsquant(4, 4, 4, lowbit::coarse_scope::per_tensor), 1);
    CHECK(per_tensor.coarse_scales == std::vector<double>{0.0625});
    CHECK(per_tensor.block_scales == std::vector<double>{15, 2, 1, 0, 8, 1, 1, 0});
    // Row 1, v0 with step 8/16 = 0.5: 3.28125 -> 6.56 -> 7; -1.75 -> -3.5 -> -4.
    CHECK(per_tensor.elements[16] == 7.0f);
    CHECK(per_tensor.elements[17] == -4.0f);

    // k_axis = 0: gamma per column.
    const auto mc = lowbit::quantize_blocks(x.data(), 16, 1, vs, 0);
    CHECK(mc.block_scales == m.block_scales);
    CHECK(mc.elements == m.elements);

    // NaN poisons its vector only.
    x[9] = std::numeric_limits<float>::quiet_NaN();
    const auto mn = lowbit::quantize_blocks(x.data(), 1, 16, vs, 1);
    CHECK(mn.coarse_scales == std::vector<double>{0.0625});
    CHECK(std::isnan(mn.block_scales[2]));
    const auto back = dequantized(mn);
    for (std::size_t i = 8; i < 12; ++i) CHECK(std::isnan(back[i]));
    CHECK(back[0] == 6.5625f);

    // Data so small that gamma = amax / (qmax (2^M - 1)) underflows float (found by the
    // block_scaled fuzz target): gamma is the smallest positive float, not 0, so that the vectors
    // keep s_q >= 1 and their values. amax = 2^-142: s_q = round(2^-142 / (7 * 2^-149)) = 18 -> 15,
    // codes round(x / (15 * 2^-149)) clipped to 7.
    const std::vector<float> tiny{-0x1p-142f, 0x1p-145f, 0.0f, 0.0f};
    const auto mt = lowbit::quantize_blocks(tiny.data(), 1, 4, vs, 1);
    CHECK(mt.coarse_scales == std::vector<double>{double(std::numeric_limits<float>::denorm_min())});
    CHECK(mt.block_scales == std::vector<double>{15});
    CHECK(mt.elements == std::vector<float>{-7, 1, 0, 0});
}

TEST_CASE("VS-Quant at 4 bits beats per-channel 4-bit integers on heavy-tailed weights") {
    // 256 x 1024 weights (rows are output channels, K along rows), Student t with 3 degrees of
    // freedom: heavy tails make a per-row max scale coarse for most of the row.
    const std::size_t rows = 256, cols = 1024;
    std::mt19937_64 engine(20210405);
    std::student_t_distribution<double> t3(3.0);
    std::vector<float> w(rows * cols);
    for (float& v : w) v = float(0.02 * t3(engine));

    const lowbit::int_scaling int4{.bits = 4, .narrow_range = true};
    const auto scales = lowbit::scales_per_channel(w, rows, cols, 1, int4);
    std::vector<float> per_channel(w.size());
    lowbit::quantize_per_channel(w, rows, cols, 1, scales, int4, per_channel);
    const double e_channel = relative_error(w, per_channel);

    const double e_vs4 = relative_error(w, dequantized(lowbit::quantize_blocks(w.data(), rows, cols,
                                                                               lowbit::vsquant(4, 4, 16), 1)));
    const double e_vs6 = relative_error(w, dequantized(lowbit::quantize_blocks(w.data(), rows, cols,
                                                                               lowbit::vsquant(4, 6, 16), 1)));
    const double e_nvfp4 = relative_error(w, dequantized(lowbit::quantize_blocks(w.data(), rows, cols,
                                                                                 lowbit::nvfp4, 1)));
    const double e_mxfp4 = relative_error(w, dequantized(lowbit::quantize_blocks(w.data(), rows, cols,
                                                                                 lowbit::mxfp4, 1)));
    std::cout << "relative RMS error, 256 x 1024 Student-t(3) weights, 4-bit elements:\n"
              << "  per-channel INT4 (scale amax/7 per row): " << e_channel << "\n"
              << "  VS-Quant N=4, V=16, M=4:                 " << e_vs4 << "\n"
              << "  VS-Quant N=4, V=16, M=6:                 " << e_vs6 << "\n"
              << "  NVFP4 (E2M1, V=16, ue4m3 + fp32):        " << e_nvfp4 << "\n"
              << "  MXFP4 (E2M1, V=32, E8M0, floor rule):    " << e_mxfp4 << "\n";
    WARN("per-channel INT4 " << e_channel << ", VS-Quant M=4 " << e_vs4 << ", VS-Quant M=6 " << e_vs6
                             << ", NVFP4 " << e_nvfp4 << ", MXFP4 " << e_mxfp4);
    CHECK(e_vs4 < e_channel);
    CHECK(e_vs6 < e_channel);
    CHECK(e_vs6 <= e_vs4);
}

TEST_CASE("block size 0: each line is one block, whatever its length") {
    // Rows of 5 and 7 (k_axis 1) and columns of 6 (k_axis 0): one scale per line, as with a block
    // size equal to the line's length.
    std::mt19937_64 engine(5);
    std::normal_distribution<double> normal;
    for (const auto& [rows, cols, axis] : std::vector<std::tuple<std::size_t, std::size_t, int>>{
             {3, 5, 1}, {4, 7, 1}, {6, 3, 0}}) {
        std::vector<float> x(rows * cols);
        for (float& v : x) v = float(normal(engine));
        const std::size_t length = axis == 1 ? cols : rows;
        for (const block_format& f : {lowbit::vsquant(4, 4, 0), lowbit::mxfp4, lowbit::nvfp4}) {
            block_format whole = f, explicit_size = f;
            whole.block_size = 0;
            explicit_size.block_size = int(length);
            const auto a = lowbit::quantize_blocks(x.data(), rows, cols, whole, axis);
            const auto b = lowbit::quantize_blocks(x.data(), rows, cols, explicit_size, axis);
            CHECK(a.block_size() == int(length));
            CHECK(a.blocks_per_line() == 1);
            CHECK(a.block_scales == b.block_scales);
            CHECK(a.coarse_scales == b.coarse_scales);
            CHECK(a.elements == b.elements);
        }
    }
}

TEST_CASE("per_channel_int and per_tensor_int: one float scale amax / qmax per row, or per tensor") {
    // 2 x 4: row 0 amax 3.5 -> scale 0.5 (qmax 7), row 1 amax 0.7 -> scale 0.1f.
    const std::vector<float> x{3.5f, -1.2f, 0.26f, 0.0f, 0.7f, 0.05f, -0.35f, 0.0f};
    const auto pc = lowbit::quantize_blocks(x.data(), 2, 4, lowbit::per_channel_int(4), 1);
    CHECK(pc.coarse_scales == std::vector<double>{0.5, double(0.7f / 7.0f)});
    CHECK(pc.block_scales == std::vector<double>{1, 1});
    // 3.5 / 0.5 = 7, -1.2 / 0.5 = -2.4 -> -2, 0.26 / 0.5 = 0.52 -> 1; 0.05f / 0.1f is exactly 0.5
    // (0.05f is half of 0.1f): a tie, to even, 0; -0.35f / 0.1f = -3.4999999 -> -3.
    CHECK(pc.elements == std::vector<float>{7, -2, 1, 0, 7, 0, -3, 0});
    const auto pt = lowbit::quantize_blocks(x.data(), 2, 4, lowbit::per_tensor_int(4), 1);
    CHECK(pt.coarse_scales == std::vector<double>{0.5});
    CHECK(pt.block_scales == std::vector<double>{1, 1});
    CHECK(pt.elements == std::vector<float>{7, -2, 1, 0, 1, 0, -1, 0});
}

TEST_CASE("VS-Quant with OCTAV clips: each vector's clip is OCTAV's, and the MSE drops") {
    // One outlier in a vector of 16: [1 x 15, 40]. OCTAV's clip, with VS-Quant's noise constant
    // 1 / (12 * 49) (step clip / 7), is the Newton fixed point near 38.9 (worked by hand: from the
    // start 55 / 16, the update 40 / (15 c + 1 + density term) gives 38.86, then 38.89): below the
    // outlier, which clips to the code 7, and it is what calibration.hpp's iteration gives on the
    // vector; s_q gamma = clip / 7 within the rounding of a 16-bit vector scale.
    std::vector<float> x(16, 1.0f);
    x[15] = 40.0f;
    const auto clipped = lowbit::quantize_blocks(x.data(), 1, 16,
                                                 lowbit::vsquant(4, 16, 16, lowbit::coarse_scope::per_line,
                                                                 lowbit::vector_clip::octav), 1);
    std::vector<double> magnitudes(x.begin(), x.end());
    const double clip = lowbit::detail::octav_with_noise(std::span<const double>(magnitudes), 1.0 / (12 * 49), 10, 0,
                                                         lowbit::octav_step::with_density).scale;
    CHECK(clip == Approx(38.9).epsilon(0.002));
    const double step = clipped.block_scales[0] * clipped.coarse_scales[0];
    CHECK(step == Approx(clip / 7).epsilon(1e-4));
    CHECK(clipped.elements[15] == 7.0f);  // 40 / step = 7.2: clipped
    CHECK(dequantized(clipped)[15] < 39.0f);

    // Heavy-tailed rows (Student t, 3 degrees of freedom): per vector, OCTAV's clip gives a lower
    // mean squared error than the max on the whole matrix, at 4 bits.
    const std::size_t rows = 64, cols = 512;
    std::mt19937_64 engine(31);
    std::student_t_distribution<double> t3(3.0);
    std::vector<float> w(rows * cols);
    for (float& v : w) v = float(t3(engine));
    const double e_max = relative_error(w, dequantized(lowbit::quantize_blocks(w.data(), rows, cols,
                                                                               lowbit::vsquant(4, 8, 16), 1)));
    const double e_octav = relative_error(
        w, dequantized(lowbit::quantize_blocks(w.data(), rows, cols,
                                               lowbit::vsquant(4, 8, 16, lowbit::coarse_scope::per_line,
                                                               lowbit::vector_clip::octav), 1)));
    WARN("VS-Quant 4-bit, V = 16, 8-bit scales on Student-t(3): relative RMS error max " << e_max << ", OCTAV "
                                                                                         << e_octav);
    CHECK(e_octav < e_max);
    // A vector with a single non-zero value keeps it exactly (OCTAV would give 0 there).
    const std::vector<float> single{0, 0, 2.5f, 0};
    const auto one = lowbit::quantize_blocks(single.data(), 1, 4,
                                             lowbit::vsquant(4, 4, 4, lowbit::coarse_scope::per_line,
                                                             lowbit::vector_clip::octav), 1);
    CHECK(dequantized(one) == single);
}

TEST_CASE("block scaling: errors name the argument") {
    using Catch::Matchers::Contains;
    const std::vector<float> x(32, 1.0f);
    CHECK_THROWS_WITH(lowbit::quantize_blocks(x.data(), 1, 32, lowbit::mxfp4, 2), Contains("k_axis = 2"));
    CHECK_THROWS_WITH(lowbit::quantize_blocks(x.data(), 0, 32, lowbit::mxfp4, 1), Contains("rows = 0"));
    CHECK_THROWS_WITH(lowbit::quantize_blocks(nullptr, 1, 32, lowbit::mxfp4, 1), Contains("data is null"));
    block_format bad = lowbit::mxfp4;
    bad.block_size = -1;
    CHECK_THROWS_WITH(lowbit::quantize_blocks(x.data(), 1, 32, bad, 1), Contains("block_size = -1"));
    CHECK_THROWS_WITH(lowbit::vsquant(4, 0, 16), Contains("scale_bits = 0"));
    CHECK_THROWS_WITH(lowbit::vsquant(4, 17, 16), Contains("scale_bits = 17"));
    CHECK_THROWS_WITH(lowbit::vsquant(1, 4, 16), Contains("bits = 1"));
    CHECK_THROWS_WITH(lowbit::vsquant(17, 4, 16), Contains("bits = 17"));
    CHECK_THROWS_WITH(lowbit::vsquant(4, 4, -16), Contains("block_size = -16"));
    block_format mx_octav = lowbit::mxfp4;
    mx_octav.clip = lowbit::vector_clip::octav;
    CHECK_THROWS_WITH(mx_octav.validate(), Contains("clip = octav: applies to VS-Quant"));
    block_format vs_float = lowbit::vsquant(4, 4, 16);
    vs_float.element = lowbit::fp4_e2m1;
    CHECK_THROWS_WITH(vs_float.validate(), Contains("needs signed integer elements"));
    // VS-Quant elements are symmetric integer codes (found by the block_scaled fuzz target: a
    // fraction_bits of 57 made the elements 2^-57 codes clipped at 7 * 2^-57, so that every value
    // came back 2^57 times too small, and the full two's complement range gave codes of -8).
    block_format vs_fraction = lowbit::vsquant(4, 4, 16);
    std::get<lowbit::int_element>(vs_fraction.element).fraction_bits = 57;
    CHECK_THROWS_WITH(vs_fraction.validate(), Contains("element.fraction_bits = 57"));
    block_format vs_full_range = lowbit::vsquant(4, 4, 16);
    std::get<lowbit::int_element>(vs_full_range.element).narrow_range = false;
    CHECK_THROWS_WITH(lowbit::quantize_blocks(x.data(), 1, 32, vs_full_range, 1), Contains("element.narrow_range"));
    // NVFP4 formats whose largest block value max_elem * max_scale is below 1 would need an fp32
    // tensor scale g above FLT_MAX for large data (found by the block_scaled fuzz target: g became
    // infinite and every block zero).
    block_format tiny_scales = lowbit::nvfp4;
    tiny_scales.block_scale_format = {.exp_bits = 4, .man_bits = 3, .bias = 20, .specials = lowbit::special_values::fn,
                                      .is_signed = false};  // largest 448 * 2^-13: 6 times that is below 1
    CHECK_THROWS_WITH(lowbit::quantize_blocks(x.data(), 1, 32, tiny_scales, 1), Contains("max_elem * max_scale must be >= 1"));
    tiny_scales.block_scale_format.bias = 17;  // 6 * 448 * 2^-10 = 2.6: fine
    CHECK_NOTHROW(tiny_scales.validate());
    // Elements are stored as floats, so their format's values must be floats (found by the
    // block_scaled fuzz target: e10m11 elements of a block of 2^99 were 2^226, stored as inf).
    block_format beyond_float = lowbit::mxfp8_e4m3;
    beyond_float.element = lowbit::float_format{.exp_bits = 10, .man_bits = 11};
    CHECK_THROWS_WITH(lowbit::quantize_blocks(x.data(), 1, 32, beyond_float, 1), Contains("beyond float's range"));
    beyond_float.element = lowbit::float_format{.exp_bits = 8, .man_bits = 3, .bias = 137};  // steps down to 2^-139
    CHECK_NOTHROW(beyond_float.validate());
    beyond_float.element = lowbit::float_format{.exp_bits = 8, .man_bits = 3, .bias = 148};  // 2^-150: below float's
    CHECK_THROWS_WITH(beyond_float.validate(), Contains("beyond float's range"));
    block_format wide = lowbit::mxint8;
    wide.element = lowbit::int_element{.format = {.bits = 24, .is_signed = true}};
    CHECK_THROWS_WITH(wide.validate(), Contains("element.format.bits = 24"));
    block_scaled_matrix broken = lowbit::quantize_blocks(x.data(), 1, 32, lowbit::mxfp4, 1);
    broken.elements.pop_back();
    std::vector<float> out(32);
    CHECK_THROWS_WITH(lowbit::dequantize(broken, out.data()), Contains("m.elements has 31"));
    CHECK_THROWS_WITH(lowbit::dequantize(broken, nullptr), Contains("out is null"));
}
