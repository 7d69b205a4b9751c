// The models on operands' exponents in double lanes (operand_aligned.hpp: aligned with align =
// operands, two_level) against the exact path (the reference lane), bit for bit: every NVIDIA and
// CDNA3 preset of hardware.hpp and random specs with the conventions, on random and adversarial
// inputs, with and without an addend, on 1 and 2 threads.
// The report must name the vectorized kernel, with and without events counted (gemm_stats), and
// the events must be the exact path's (a call with per-product records runs there).
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/hardware.hpp>
#include <lowbit/datapath/operand_aligned.hpp>  // (group_rounding: its own test below)
#include <lowbit/rounding/quantize.hpp>

#include "support/stats_difference.hpp"

#include <catch2/catch.hpp>

#include <bit>
#include <cfloat>
#include <limits>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using lowbit::gemm_spec;

// Values on a format's grid: random signs, exponents across the whole range (subnormals
// included), zeros, and a few repeated magnitudes for cancellation.
Eigen::MatrixXf random_on_grid(Eigen::Index rows, Eigen::Index cols, const lowbit::float_format& f,
                               std::mt19937_64& gen, int spread) {
    std::uniform_real_distribution<double> unit(1.0, 2.0);
    std::uniform_int_distribution<int> exponent(std::max(f.emin() - f.man_bits, -149),
                                                std::min(f.emax(), f.emin() + spread));
    std::uniform_int_distribution<int> kind(0, 9);
    Eigen::MatrixXf m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) {
        const int k = kind(gen);
        double x = k == 0 ? 0.0 : std::ldexp(unit(gen), exponent(gen));
        if (k == 1 && i > 0) x = -m.data()[i - 1];  // cancellation
        if (gen() % 2) x = -x;
        m.data()[i] = lowbit::quantize(float(x), f, lowbit::rounding::nearest_even, lowbit::overflow::saturate);
    }
    return m;
}

lowbit::float_format input_format(const lowbit::quantizer& q) {
    return q.as_float() != nullptr ? q.as_float()->format : lowbit::fp32;
}

void compare(const gemm_spec& spec, std::mt19937_64& gen, int spread) {
    const Eigen::Index M = 1 + Eigen::Index(gen() % 3), N = 1 + Eigen::Index(gen() % 70), K = Eigen::Index(gen() % 70);
    const Eigen::MatrixXf A = random_on_grid(M, K, input_format(spec.input_a), gen, spread);
    const Eigen::MatrixXf B = random_on_grid(K, N, input_format(spec.input_b), gen, spread);
    const Eigen::MatrixXf C = random_on_grid(M, N, input_format(spec.addend), gen, spread);
    for (const bool with_addend : {false, true})
        for (const int threads : {1, 2}) {
            gemm_spec s = spec;
            s.threads = threads;
            lowbit::gemm_report report, counted_report;
            lowbit::gemm_stats fast_stats, stats;
            const Eigen::MatrixXf fast = with_addend ? lowbit::gemm_add(A, B, C, s, nullptr, &report)
                                                     : lowbit::gemm(A, B, s, nullptr, &report);
            const Eigen::MatrixXf counted = with_addend ? lowbit::gemm_add(A, B, C, s, &fast_stats, &counted_report)
                                                        : lowbit::gemm(A, B, s, &fast_stats, &counted_report);
            gemm_spec recorded = s;  // (per-product records: the exact path)
            recorded.record_lost = true;
            const Eigen::MatrixXf exact = with_addend ? lowbit::gemm_add(A, B, C, recorded, &stats)
                                                      : lowbit::gemm(A, B, recorded, &stats);
            INFO(to_string(s) << ", K = " << K << ", addend " << with_addend << ", report: " << report.reason
                              << ", counted: " << counted_report.reason);
            CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
            CHECK(counted_report.kernel == lowbit::gemm_kernel::vectorized_chain);
            for (const Eigen::MatrixXf* lanes : {&fast, &counted})
                for (Eigen::Index i = 0; i < lanes->size(); ++i) {
                    const float x = lanes->data()[i], y = exact.data()[i];
                    if (!(std::bit_cast<std::uint32_t>(x) == std::bit_cast<std::uint32_t>(y) || (std::isnan(x) && std::isnan(y)))) {
                        FAIL_CHECK("output " << i << ": lanes " << std::hexfloat << x << ", exact " << y
                                             << (lanes == &counted ? " (counting events)" : ""));
                        break;
                    }
                }
            CHECK(lowbit_test::stats_difference(stats, fast_stats, false) == "");  // (the lanes record no `lost`)
        }
}

}  // namespace

TEST_CASE("operand_aligned: every NVIDIA preset equals the exact path", "[operand_aligned]") {
    std::mt19937_64 gen(11);
    using lowbit::hw::unit;
    for (const unit u : {unit::volta, unit::turing, unit::ampere, unit::ada, unit::hopper, unit::blackwell,
                         unit::rtx_blackwell})
        for (const auto& in : {lowbit::fp16, lowbit::bf16, lowbit::tf32, lowbit::fp8_e4m3, lowbit::fp8_e5m2})
            for (const auto& out : {lowbit::fp32, lowbit::fp16}) {
                gemm_spec spec;
                try {
                    spec = lowbit::hw::preset(u, in, out);
                } catch (const std::invalid_argument&) {
                    continue;
                }
                for (int trial = 0; trial < 6; ++trial) compare(spec, gen, trial % 2 == 0 ? 12 : 400);
            }
}

TEST_CASE("operand_aligned: every CDNA3 two_level preset equals the exact path", "[operand_aligned]") {
    std::mt19937_64 gen(13);
    for (const auto& in : {lowbit::fp16, lowbit::bf16, lowbit::tf32, lowbit::fp8_e4m3fnuz, lowbit::fp8_e5m2fnuz}) {
        const gemm_spec spec = lowbit::hw::preset(lowbit::hw::unit::cdna3, in);
        for (int trial = 0; trial < 10; ++trial) compare(spec, gen, trial % 2 == 0 ? 12 : 400);
    }
}

TEST_CASE("operand_aligned: random two_level specs equal the exact path", "[operand_aligned]") {
    std::mt19937_64 gen(14);
    const lowbit::float_format inputs[] = {lowbit::fp16, lowbit::bf16, lowbit::fp8_e4m3fnuz, lowbit::fp8_e5m2, lowbit::fp32};
    // (fp32 and formats of at most 21 mantissa bits round their group sums in float lanes, with or
    // without subnormals; e8m22 on doubles)
    const lowbit::float_format accumulators[] = {lowbit::fp32, lowbit::fp16, lowbit::bf16,
                                                 lowbit::float_format{.exp_bits = 5, .man_bits = 3},
                                                 lowbit::float_format{.exp_bits = 8, .man_bits = 23, .subnormals = false},
                                                 lowbit::float_format{.exp_bits = 8, .man_bits = 22},
                                                 lowbit::float_format{.exp_bits = 8, .man_bits = 10, .subnormals = false}};
    for (int trial = 0; trial < 300; ++trial) {
        gemm_spec spec;
        spec.model = lowbit::accumulation::two_level;
        spec.input_a = inputs[gen() % 5];
        spec.input_b = inputs[gen() % 5];
        spec.accumulator = lowbit::float_quantizer{.format = accumulators[gen() % 7],
                                                   .mode = gen() % 6 == 0 ? lowbit::rounding::odd : lowbit::rounding(gen() % 5),
                                                   .on_overflow = lowbit::overflow(gen() % 3)};
        spec.addend = accumulators[gen() % 4];
        spec.window = 1 + int(gen() % 30);
        spec.sum_window = 1 + int(gen() % 40);
        spec.group = 1 + int(gen() % 20);
        spec.sub_dots = 1 + int(gen() % 3);
        spec.subnormals = lowbit::subnormal_exponent(gen() % 2);
        if (gen() % 2) spec.zero_exponent = -126 - int(gen() % 20);
        compare(spec, gen, trial % 2 == 0 ? 20 : 400);
    }
}

TEST_CASE("operand_aligned: random specs with the conventions equal the exact path", "[operand_aligned]") {
    std::mt19937_64 gen(12);
    const lowbit::float_format inputs[] = {lowbit::fp16, lowbit::bf16, lowbit::fp8_e4m3, lowbit::fp8_e5m2, lowbit::fp32};
    const lowbit::float_format accumulators[] = {lowbit::fp32, lowbit::fp16, lowbit::bf16, lowbit::hw::e8m13,
                                                 lowbit::float_format{.exp_bits = 5, .man_bits = 3},
                                                 lowbit::float_format{.exp_bits = 8, .man_bits = 23, .subnormals = false},
                                                 lowbit::float_format{.exp_bits = 8, .man_bits = 13, .bias = 140}};
    const lowbit::rounding modes[] = {lowbit::rounding::toward_zero, lowbit::rounding::nearest_even,
                                      lowbit::rounding::toward_negative, lowbit::rounding::nearest_away};
    for (int trial = 0; trial < 400; ++trial) {
        gemm_spec spec;
        spec.model = lowbit::accumulation::aligned;
        spec.align = lowbit::alignment_exponent::operands;
        spec.input_a = inputs[gen() % 5];
        spec.input_b = inputs[gen() % 5];
        spec.accumulator = lowbit::float_quantizer{.format = accumulators[gen() % 7], .mode = modes[gen() % 4],
                                                   .on_overflow = lowbit::overflow(gen() % 3)};
        spec.addend = accumulators[gen() % 5];
        spec.window = 1 + int(gen() % 30);
        spec.group = 1 + int(gen() % 40);
        spec.cut = lowbit::alignment_cut(gen() % 2);
        spec.subnormals = lowbit::subnormal_exponent(gen() % 2);
        if (gen() % 2) spec.zero_exponent = int(gen() % 300) - 250;
        if (gen() % 4 == 0) spec.chunk = 100;  // one chunk still
        compare(spec, gen, trial % 2 == 0 ? 20 : 400);
    }
}

TEST_CASE("operand_aligned: events of a worked case", "[operand_aligned]") {
    // Hopper fp16 (window 25, groups of 16, cut toward zero, fp32 toward zero): one group of
    // 1 * 1, 2^-14 * 2^-14, 0 * 5 and 2^-23 * 3 (fp16 values). The largest operand exponent is 0,
    // so the grid is 2^-25: 2^-28 is cut to 0 (one swamp), 3 * 2^-23 stays; 0 * 5 has a zero
    // operand. The cut
    // sum 1 + 3 * 2^-23 is a float: its rounding is exact.
    const gemm_spec h = lowbit::hw::preset(lowbit::hw::unit::hopper, lowbit::fp16);
    Eigen::MatrixXf A(1, 4), B(4, 1);
    A << 1.0f, 0x1p-14f, 0.0f, 0x1p-23f;
    B << 1.0f, 0x1p-14f, 5.0f, 3.0f;
    lowbit::gemm_stats stats;
    lowbit::gemm_report report;
    const Eigen::MatrixXf D = lowbit::gemm(A, B, h, &stats, &report);
    CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
    CHECK(D(0, 0) == 1.0f + 0x1.8p-22f);
    CHECK(stats.macs == 4);
    CHECK(stats.zero_operand == 1);
    CHECK(stats.swamps == 1);
    CHECK(stats.inexact_additions == 0);
    CHECK(stats.accumulator_overflows == 0);
    // 2^-24 * 1 instead: 2^-24 = 2 * 2^-25 stays, and 1 + 2^-24 is not a float: cut to 1 (toward
    // zero), an inexact rounding.
    A(0, 3) = 0x1p-24f;
    B(3, 0) = 1.0f;
    stats = {};
    CHECK(lowbit::gemm(A, B, h, &stats)(0, 0) == 1.0f);
    CHECK(stats.swamps == 1);
    CHECK(stats.inexact_additions == 1);
    // Past fp32's range: 2^127 * 1.5 + 2^127 * 1.5 = 3 * 2^127 overflows (toward zero, but this
    // unit's policy is infinity_always: +inf), one overflow.
    Eigen::MatrixXf A2(1, 2), B2(2, 1);
    A2 << 0x1.8p15f, 0x1.8p15f;
    B2 << 0x1p112f, 0x1p112f;
    gemm_spec fp32_inputs = h;
    fp32_inputs.input_a = fp32_inputs.input_b = lowbit::quantizer{};
    stats = {};
    CHECK(std::isinf(lowbit::gemm(A2, B2, fp32_inputs, &stats, &report)(0, 0)));
    CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
    CHECK(stats.accumulator_overflows == 1);
    CHECK(stats.inexact_additions == 1);
}

TEST_CASE("operand_aligned: where it does not apply, the report says why", "[operand_aligned]") {
    const gemm_spec h = lowbit::hw::preset(lowbit::hw::unit::hopper, lowbit::fp16);
    Eigen::MatrixXf A = Eigen::MatrixXf::Ones(2, 40), B = Eigen::MatrixXf::Ones(40, 3);
    lowbit::gemm_report report;
    gemm_spec chunked = h;
    chunked.chunk = 16;
    lowbit::gemm(A, B, chunked, nullptr, &report);
    CHECK(report.kernel == lowbit::gemm_kernel::exact);
    CHECK(report.reason.find("chunks") != std::string::npos);
    gemm_spec recorded = h;
    recorded.record_lost = true;
    lowbit::gemm_stats stats;
    lowbit::gemm(A, B, recorded, &stats, &report);
    CHECK(report.kernel == lowbit::gemm_kernel::exact);
    CHECK(report.reason.find("record_lost") != std::string::npos);
    A(0, 0) = std::numeric_limits<float>::infinity();
    const Eigen::MatrixXf D = lowbit::gemm(A, B, h, nullptr, &report);
    CHECK(report.kernel == lowbit::gemm_kernel::exact);
    CHECK(report.reason.find("infinite or NaN") != std::string::npos);
    CHECK(std::isinf(D(0, 0)));
    CHECK(D(1, 0) == 40.0f);
}

TEST_CASE("operand_aligned: a group's sum rounded in float lanes equals the double plan", "[operand_aligned]") {
    // round_group_sums rounds exact doubles through fp32 (round-to-odd, or fp32's own grid) where it
    // can; the reference is round_with_plan on the double itself. Values: random 53-bit significands
    // and short ones (ties) from 2^-160 to 2^130, and the edges: fp32's largest, 2^128 and half an
    // ulp around them, the subnormal boundary, zeros, infinities, NaN.
    std::mt19937_64 gen(31);
    std::vector<double> values;
    std::uniform_int_distribution<int> exponent(-160, 130);
    for (int i = 0; i < 4000; ++i) {
        const int bits = i % 3 == 0 ? 53 : 1 + int(gen() % 30);
        const double significand = std::ldexp(double(gen() >> (64 - bits)) + 1.0, -bits);  // [0.5, 1)
        double x = std::ldexp(1.0 + significand, exponent(gen));
        values.push_back(gen() % 2 ? -x : x);
    }
    for (const double edge : {double(FLT_MAX), 0x1p128, 0x1p128 - 0x1p103, 0x1p128 - 0x1p104 + 0x1p102,
                              0x1p-126, 0x1p-126 - 0x1p-150, 0x1p-149, 0x1p-150, 0x1.8p-150, 0x1p-160, 0.0,
                              std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
        values.push_back(edge);
        values.push_back(-edge);
    }
    while (values.size() % lowbit::detail::fast_lanes != 0) values.push_back(1.0);
    const lowbit::float_format formats[] = {lowbit::fp32,
                                            lowbit::float_format{.exp_bits = 8, .man_bits = 23, .subnormals = false},
                                            lowbit::hw::e8m13, lowbit::fp16, lowbit::bf16,
                                            lowbit::float_format{.exp_bits = 5, .man_bits = 3, .subnormals = false},
                                            lowbit::float_format{.exp_bits = 8, .man_bits = 22},
                                            lowbit::float_format{.exp_bits = 8, .man_bits = 13, .bias = 140}};
    for (const auto& format : formats)
        for (const auto mode : {lowbit::rounding::nearest_even, lowbit::rounding::nearest_away, lowbit::rounding::toward_zero,
                                lowbit::rounding::toward_positive, lowbit::rounding::toward_negative, lowbit::rounding::odd})
            for (const auto policy : {lowbit::overflow::infinity, lowbit::overflow::saturate, lowbit::overflow::infinity_always}) {
                const lowbit::float_quantizer q{.format = format, .mode = mode, .on_overflow = policy};
                const auto r = lowbit::detail::group_rounding::make(q);
                std::vector<double> lanes = values;
                lowbit::detail::dispatch_deterministic(mode, [&](auto m) {
                    for (std::size_t at = 0; at < lanes.size(); at += lowbit::detail::fast_lanes)
                        lowbit::detail::round_group_sums<m()>(r, lanes.data() + at);
                });
                long wrong = 0;
                for (std::size_t i = 0; i < values.size(); ++i) {
                    const double expected = lowbit::detail::dispatch_deterministic(
                        mode, [&](auto m) { return lowbit::round_with_plan<m()>(values[i], r.double_plan); });
                    const bool same = std::bit_cast<std::uint64_t>(expected) == std::bit_cast<std::uint64_t>(lanes[i]) ||
                                      (std::isnan(expected) && std::isnan(lanes[i]));
                    if (!same && wrong++ < 3)
                        FAIL_CHECK(lowbit::to_string(q) << ": " << std::hexfloat << values[i] << " -> " << lanes[i]
                                                        << ", the double plan " << expected);
                }
                CHECK(wrong == 0);
            }
}
