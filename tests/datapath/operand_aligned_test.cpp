// The models on operands' exponents in double lanes (operand_aligned.hpp: aligned with align =
// operands, two_level) against the exact path (the reference lane: a call with a gemm_stats runs
// there), bit for bit: every NVIDIA and CDNA3 preset of hardware.hpp and random specs with the
// conventions, on random and adversarial inputs, with and without an addend, on 1 and 2 threads.
// The report must name the vectorized kernel.
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/hardware.hpp>
#include <lowbit/rounding/quantize.hpp>

#include <catch2/catch.hpp>

#include <bit>
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
            lowbit::gemm_report report;
            lowbit::gemm_stats stats;  // (a call with stats runs on the exact path)
            const Eigen::MatrixXf fast = with_addend ? lowbit::gemm_add(A, B, C, s, nullptr, &report)
                                                     : lowbit::gemm(A, B, s, nullptr, &report);
            const Eigen::MatrixXf exact = with_addend ? lowbit::gemm_add(A, B, C, s, &stats) : lowbit::gemm(A, B, s, &stats);
            INFO(to_string(s) << ", K = " << K << ", addend " << with_addend << ", report: " << report.reason);
            CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
            for (Eigen::Index i = 0; i < fast.size(); ++i) {
                const bool same = std::bit_cast<std::uint32_t>(fast.data()[i]) == std::bit_cast<std::uint32_t>(exact.data()[i]) ||
                                  (std::isnan(fast.data()[i]) && std::isnan(exact.data()[i]));
                if (!same) {
                    FAIL_CHECK("output " << i << ": fast " << std::hexfloat << fast.data()[i] << ", exact " << exact.data()[i]);
                    break;
                }
            }
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
    const lowbit::float_format accumulators[] = {lowbit::fp32, lowbit::fp16, lowbit::bf16,
                                                 lowbit::float_format{.exp_bits = 5, .man_bits = 3}};
    for (int trial = 0; trial < 200; ++trial) {
        gemm_spec spec;
        spec.model = lowbit::accumulation::two_level;
        spec.input_a = inputs[gen() % 5];
        spec.input_b = inputs[gen() % 5];
        spec.accumulator = lowbit::float_quantizer{.format = accumulators[gen() % 4],
                                                   .mode = lowbit::rounding(gen() % 5),
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
                                                 lowbit::float_format{.exp_bits = 5, .man_bits = 3}};
    const lowbit::rounding modes[] = {lowbit::rounding::toward_zero, lowbit::rounding::nearest_even,
                                      lowbit::rounding::toward_negative, lowbit::rounding::nearest_away};
    for (int trial = 0; trial < 300; ++trial) {
        gemm_spec spec;
        spec.model = lowbit::accumulation::aligned;
        spec.align = lowbit::alignment_exponent::operands;
        spec.input_a = inputs[gen() % 5];
        spec.input_b = inputs[gen() % 5];
        spec.accumulator = lowbit::float_quantizer{.format = accumulators[gen() % 5], .mode = modes[gen() % 4],
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

TEST_CASE("operand_aligned: where it does not apply, the report says why", "[operand_aligned]") {
    const gemm_spec h = lowbit::hw::preset(lowbit::hw::unit::hopper, lowbit::fp16);
    Eigen::MatrixXf A = Eigen::MatrixXf::Ones(2, 40), B = Eigen::MatrixXf::Ones(40, 3);
    lowbit::gemm_report report;
    gemm_spec chunked = h;
    chunked.chunk = 16;
    lowbit::gemm(A, B, chunked, nullptr, &report);
    CHECK(report.kernel == lowbit::gemm_kernel::exact);
    CHECK(report.reason.find("chunks") != std::string::npos);
    A(0, 0) = std::numeric_limits<float>::infinity();
    const Eigen::MatrixXf D = lowbit::gemm(A, B, h, nullptr, &report);
    CHECK(report.kernel == lowbit::gemm_kernel::exact);
    CHECK(report.reason.find("infinite or NaN") != std::string::npos);
    CHECK(std::isinf(D(0, 0)));
    CHECK(D(1, 0) == 40.0f);
}
