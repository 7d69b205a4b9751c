// round_shift, the accumulator rounding of formats with subnormals on a float's bits, against the
// rounding core (round_with_plan, MPFR-checked in tests/rounding). Its AVX-512 chain is checked
// against the exact path in fast_datapath_test.cpp.
#include <lowbit/datapath/shift_rounding.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>

namespace {

using lowbit::rounding;

template <rounding Mode>
void check_against_core(const lowbit::float_format& format, lowbit::overflow policy) {
    const auto r = lowbit::detail::make_round_shift<Mode>(format, policy, -149);
    const auto plan = lowbit::rounding_plan<float>::make(format, policy, 32);
    const auto core = [&](float x) { return lowbit::round_with_plan<Mode, float>(x, plan); };
    std::uint64_t mismatches = 0;
    float first = 0;
    const auto check = [&](float x) {
        const float expected = core(x), got = r(x);
        const bool same = (std::isnan(expected) && std::isnan(got)) ||
                          std::bit_cast<std::uint32_t>(expected) == std::bit_cast<std::uint32_t>(got);
        if (!same && mismatches++ == 0) first = x;
    };
    // every 4099th bit pattern (NaNs included) ...
    for (std::uint64_t b = 0; b < (std::uint64_t(1) << 32); b += 4099) check(std::bit_cast<float>(std::uint32_t(b)));
    // ... every point of the subnormal grid and the binade above, the midpoints and their neighbours ...
    const double step = format.min_normal() * format.epsilon();
    for (int k = 0; k <= (2 << format.man_bits) + 2; ++k)
        for (const double at : {k * step, (k + 0.5) * step})
            for (const float sign : {1.0f, -1.0f}) {
                const float x = sign * float(at);
                check(x);
                check(std::nextafter(x, 0.0f));
                check(std::nextafter(x, 2 * x + sign));
            }
    // ... and the floats around the smallest normal and the largest finite value.
    for (const double edge : {format.max_finite(), format.min_normal()})
        for (const float sign : {1.0f, -1.0f}) {
            float x = sign * float(edge);
            for (int i = 0; i < 64; ++i) x = std::nextafter(x, 0.0f);
            for (int i = 0; i < 128 && std::isfinite(x); ++i, x = std::nextafter(x, 2 * x)) check(x);
        }
    INFO("first mismatch at " << first);
    CHECK(mismatches == 0);
    // An infinite sum is an overflow (an exact sum beyond fp32's range, or an infinity that the
    // overflow itself put in the chain): it rounds as fp32's largest value does.
    for (const float sign : {1.0f, -1.0f})
        CHECK(std::bit_cast<std::uint32_t>(r(sign * std::numeric_limits<float>::infinity())) ==
              std::bit_cast<std::uint32_t>(core(sign * FLT_MAX)));
}

}  // namespace

TEST_CASE("round_shift equals the rounding core for formats with subnormals, every mode and overflow policy") {
    const lowbit::float_format formats[] = {
        lowbit::fp16, lowbit::bf16, lowbit::fp8_e5m2,
        {.exp_bits = 8, .man_bits = 1, .bias = 127},  // g = -127: 2^-g is fp32's largest power of two
        {.exp_bits = 6, .man_bits = 21, .bias = 20, .specials = lowbit::special_values::none},
        {.exp_bits = 5, .man_bits = 3, .bias = 15, .specials = lowbit::special_values::fn}};  // overflow to NaN
    for (const auto& format : formats)
        for (const auto policy : {lowbit::overflow::infinity, lowbit::overflow::saturate})
            for (const rounding mode : {rounding::nearest_even, rounding::nearest_away, rounding::toward_zero,
                                        rounding::toward_positive, rounding::toward_negative, rounding::odd}) {
                INFO(lowbit::to_string(format) << " / " << lowbit::to_string(mode) << " / " << lowbit::to_string(policy));
                REQUIRE(lowbit::detail::round_shift_applies(format));
                lowbit::dispatch_rounding(mode, [&](auto m) {
                    if constexpr (m() != rounding::stochastic) check_against_core<m()>(format, policy);
                });
            }
}

TEST_CASE("round_shift: where it applies, and which hardware conversion may run it") {
    using lowbit::detail::round_shift_applies;
    CHECK_FALSE(round_shift_applies({.exp_bits = 4, .man_bits = 3, .subnormals = false}));  // no subnormals
    CHECK_FALSE(round_shift_applies({.exp_bits = 4, .man_bits = 3, .is_signed = false}));
    CHECK_FALSE(round_shift_applies({.exp_bits = 5, .man_bits = 0}));                    // no bit to drop ...
    CHECK_FALSE(round_shift_applies(lowbit::fp32));                                      // ... here neither
    CHECK_FALSE(round_shift_applies({.exp_bits = 8, .man_bits = 4, .bias = 120}));       // beyond fp32's range
    CHECK_FALSE(round_shift_applies({.exp_bits = 7, .man_bits = 10, .bias = 121}));      // 2^-g = 2^130
    CHECK(round_shift_applies({.exp_bits = 7, .man_bits = 10, .bias = 117}));            // 2^-g = 2^126
    CHECK_THROWS_WITH(lowbit::detail::make_round_shift<rounding::nearest_even>(lowbit::fp32, lowbit::overflow::infinity, 0),
                      Catch::Contains("round_shift for"));

    using conversion = lowbit::detail::round_shift<rounding::nearest_even>::conversion;
    const auto fp16_ne = lowbit::detail::make_round_shift<rounding::nearest_even>(lowbit::fp16, lowbit::overflow::infinity, -149);
    CHECK(fp16_ne.hardware == conversion::binary16);
    const auto fp16_sat = lowbit::detail::make_round_shift<rounding::nearest_even>(lowbit::fp16, lowbit::overflow::saturate, -149);
    CHECK(fp16_sat.hardware == conversion::none);  // the conversion overflows to infinity
    const auto fp16_away = lowbit::detail::make_round_shift<rounding::nearest_away>(lowbit::fp16, lowbit::overflow::infinity, -149);
    CHECK(fp16_away.hardware == decltype(fp16_away)::conversion::none);  // not one of its modes
    // bf16's conversion flushes subnormal floats: only for sums that cannot be one
    CHECK(lowbit::detail::make_round_shift<rounding::nearest_even>(lowbit::bf16, lowbit::overflow::infinity, -18).hardware ==
          conversion::bfloat16);
    CHECK(lowbit::detail::make_round_shift<rounding::nearest_even>(lowbit::bf16, lowbit::overflow::infinity, -133).hardware ==
          conversion::none);
    // the conversion is how it runs, not what it gives: the operations compare equal
    CHECK(fp16_ne == lowbit::detail::make_round_shift<rounding::nearest_even>(lowbit::fp16, lowbit::overflow::infinity, 0));
}
