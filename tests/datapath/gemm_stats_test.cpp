// The input events of gemm_stats (NaN, infinity, overflow, underflow and inexact inputs) and the
// off-grid products of integer accumulators: hand-derived cases, and random matrices against an
// oracle built from the scalar quantizer (MPFR-proven in tests/rounding) and the definitions.
#include <lowbit/datapath/gemm.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>

namespace {

using lowbit::gemm_spec;
using lowbit::gemm_stats;

constexpr float inf = std::numeric_limits<float>::infinity();
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

gemm_stats stats_of(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, const gemm_spec& spec) {
    gemm_stats s;
    lowbit::gemm(A, B, spec, &s);
    return s;
}

// The input events of one matrix, by definition: x as given; its rounding q(x) by the scalar
// quantizer with the matrix's random stream (element e of the row-major matrix has index e);
// an overflow when the same rounding without an upper limit (the same precision, a wider
// exponent field) lands beyond the format's largest value.
struct expected_inputs {
    std::uint64_t nans = 0, infinities = 0, overflows = 0, underflows = 0, inexact = 0;
};

expected_inputs input_oracle(const Eigen::MatrixXf& m, const lowbit::float_quantizer& q, lowbit::gemm_role role) {
    lowbit::float_quantizer keyed = q;
    keyed.seed = lowbit::gemm_random_key(q.seed, role);
    lowbit::float_quantizer wide = keyed;
    wide.format.exp_bits += 1;  // the same significand, as many binades again above: room to
                                // round past the largest value (and to overflow far beyond it)
    wide.format.bias = q.format.exponent_bias();
    wide.format.specials = lowbit::special_values::ieee;
    wide.on_overflow = lowbit::overflow::infinity;
    expected_inputs e;
    std::uint64_t index = 0;
    for (Eigen::Index i = 0; i < m.rows(); ++i)
        for (Eigen::Index j = 0; j < m.cols(); ++j, ++index) {
            const double x = m(i, j);
            if (std::isnan(x)) { ++e.nans; continue; }
            if (std::isinf(x)) { ++e.infinities; continue; }
            const double y = keyed(x, index);
            e.inexact += !(y == x);
            e.underflows += x != 0 && y == 0;
            e.overflows += std::fabs(wide(x, index)) > q.format.max_finite();
        }
    return e;
}

}  // namespace

TEST_CASE("gemm_stats: input NaN, infinity and overflow of the flagship's datapath") {
    // e4m3 (OCP "fn": no infinity, largest 448, smallest subnormal 2^-9): 1e30 overflows to NaN
    // (the paper's default overflow rule), which poisons its output; NaN and +inf are counted as
    // given; 1e-30 underflows to 0; 1.1 rounds to 1.125; 1, 0 and -2 are exact.
    const gemm_spec spec = gemm_spec::parse("input_a=e4m3 input_b=e4m3 product=m7e4 accumulator=m7e4 chunk=16");
    Eigen::MatrixXf A(2, 4), B(4, 1);
    A << 1e30f, 1.0f, 0.0f, -2.0f,  //
        qnan, inf, 1e-30f, 1.1f;
    B << 1, 1, 1, 1;
    gemm_stats s;
    const Eigen::MatrixXf C = lowbit::gemm(A, B, spec, &s);
    CHECK(std::isnan(C(0, 0)));
    CHECK(s.input_nans == 1);
    CHECK(s.input_infinities == 1);
    CHECK(s.input_overflows == 1);
    CHECK(s.input_underflows == 1);
    CHECK(s.inexact_inputs == 3);  // 1e30, 1e-30, 1.1
    CHECK(s.off_grid_products == 0);
    // B's elements count too, with its own quantizer.
    B(2, 0) = 500.0f;  // e4m3: 448 < 500, rounds to 512 without a limit: an overflow
    s = stats_of(A, B, spec);
    CHECK(s.input_overflows == 2);
    CHECK(s.inexact_inputs == 4);
}

TEST_CASE("gemm_stats: an input beyond the largest value overflows only if its rounding goes beyond") {
    // e4m3 around 448 = 1.75 * 2^8: the grid step there is 32. 460 rounds to nearest 448 (no
    // overflow) and toward zero 448; 470 rounds to nearest 480 (an overflow, saturated to 448 here),
    // toward zero 448. 1000 toward zero is 960 without a limit: beyond 448, an overflow.
    Eigen::MatrixXf A(1, 3), B(3, 1);
    A << 460.0f, 470.0f, 1000.0f;
    B << 1, 1, 1;
    const gemm_stats nearest = stats_of(A, B, gemm_spec::parse("input_a=e4m3:saturate"));
    CHECK(nearest.input_overflows == 2);
    CHECK(nearest.inexact_inputs == 3);
    const gemm_stats toward_zero = stats_of(A, B, gemm_spec::parse("input_a=e4m3:toward_zero:saturate"));
    CHECK(toward_zero.input_overflows == 1);
    // Without an input quantizer nothing is rounded: only NaN and infinity are input events.
    A(0, 0) = -inf;
    const gemm_stats unquantized = stats_of(A, B, gemm_spec{});
    CHECK(unquantized.input_infinities == 1);
    CHECK(unquantized.input_overflows + unquantized.inexact_inputs + unquantized.input_underflows == 0);
}

TEST_CASE("gemm_stats: integer input quantizers and accumulators on unscaled floats") {
    Eigen::MatrixXf A(1, 3), B(3, 1);
    A << 2.15f, 0.4f, 200.0f;
    B << 1, 1, 1;
    // int8 inputs: 2.15 -> 2 and 0.4 -> 0 (an underflow) lose their fractions; 200 is beyond 127
    // and wraps: an overflow.
    const gemm_stats int8 = stats_of(A, B, gemm_spec::parse("input_a=int8 input_b=int8 accumulator=int32"));
    CHECK(int8.inexact_inputs == 3);
    CHECK(int8.input_underflows == 1);
    CHECK(int8.input_overflows == 1);
    CHECK(int8.off_grid_products == 0);
    // The same with 4 fraction bits (steps of 1/16, range [-8, 8 - 1/16]): 2.15 -> 2.125 and
    // 0.4 -> 0.375 are inexact but not zero; 200 overflows.
    const gemm_stats fixed = stats_of(A, B, gemm_spec::parse("input_a=int8:frac=4 accumulator=int32:frac=8"));
    CHECK(fixed.inexact_inputs == 3);
    CHECK(fixed.input_underflows == 0);
    CHECK(fixed.input_overflows == 1);
    // An int16 accumulator fed the floats directly: 2.15 and 0.4 have bits below 2^0, 200 does
    // not. Those are the off-grid products, the reason its result (2 + 0 + 200 = 202) is not the
    // sum 202.55.
    const gemm_stats acc = stats_of(A, B, gemm_spec::parse("accumulator=int16"));
    CHECK(acc.off_grid_products == 2);
    CHECK(acc.inexact_inputs == 0);
    // With 2 fraction bits, 2.15 and 0.4 are still off the grid of quarters; 200 * 1 is on it.
    CHECK(stats_of(A, B, gemm_spec::parse("accumulator=int16:frac=2")).off_grid_products == 2);
    // Products of integers are on the grid: the integer chain runs and counts none.
    A << 2, 3, -5;
    CHECK(stats_of(A, B, gemm_spec::parse("accumulator=int16")).off_grid_products == 0);
    // Float accumulators have no grid to be off.
    A << 2.15f, 0.4f, 200.0f;
    CHECK(stats_of(A, B, gemm_spec::parse("accumulator=bf16")).off_grid_products == 0);
}

TEST_CASE("gemm_stats: input events of random matrices equal their definition, for any thread count") {
    // Values over a wide exponent range with NaN, infinity, zeros and subnormals of float, through
    // every rounding mode and overflow rule of a few formats. Input events never depend on the
    // kernel: the counts are those of the oracle whichever path ran.
    std::mt19937 gen(20261204);
    std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
    std::uniform_int_distribution<int> exponent(-140, 40), pick(0, 99);
    const auto random_value = [&] {
        const int p = pick(gen);
        if (p < 2) return qnan;
        if (p < 4) return p == 2 ? inf : -inf;
        if (p < 8) return 0.0f;
        const float v = std::ldexp(mantissa(gen), exponent(gen));
        return pick(gen) < 50 ? -v : v;
    };
    const char* formats[] = {"e4m3", "e5m2", "e2m1", "e3m2,subnormals=off", "bf16", "fp16", "e4m3,specials=ieee"};
    const char* modes[] = {"", ":toward_zero", ":toward_positive", ":toward_negative", ":nearest_away",
                           ":stochastic:seed=7", ":stochastic:random_bits=3", ":odd"};
    const char* rules[] = {"", ":saturate"};
    int cases = 0;
    expected_inputs total;  // what the cases exercised, all kinds of event
    for (const char* format : formats)
        for (const char* mode : modes)
            for (const char* rule : rules) {
                const std::string qa = std::string(format) + mode + rule;
                const std::string qb = std::string(formats[(cases + 3) % 7]) + modes[(cases + 5) % 8];
                gemm_spec spec = gemm_spec::parse("input_a=" + qa + " input_b=" + qb + " accumulator=fp32");
                const Eigen::Index M = 1 + pick(gen) % 9, K = 1 + pick(gen) % 40, N = 1 + pick(gen) % 9;
                Eigen::MatrixXf A(M, K), B(K, N);
                for (auto* m : {&A, &B})
                    for (Eigen::Index e = 0; e < m->size(); ++e) m->data()[e] = random_value();
                const expected_inputs ea = input_oracle(A, *spec.input_a.as_float(), lowbit::gemm_role::input_a);
                const expected_inputs eb = input_oracle(B, *spec.input_b.as_float(), lowbit::gemm_role::input_b);
                for (const expected_inputs& e : {ea, eb}) {
                    total.nans += e.nans, total.infinities += e.infinities, total.overflows += e.overflows;
                    total.underflows += e.underflows, total.inexact += e.inexact;
                }
                for (int threads : {1, 2}) {
                    spec.threads = threads;
                    const gemm_stats s = stats_of(A, B, spec);
                    INFO("input_a=" << qa << " input_b=" << qb << " threads=" << threads);
                    CHECK(s.input_nans == ea.nans + eb.nans);
                    CHECK(s.input_infinities == ea.infinities + eb.infinities);
                    CHECK(s.input_overflows == ea.overflows + eb.overflows);
                    CHECK(s.input_underflows == ea.underflows + eb.underflows);
                    CHECK(s.inexact_inputs == ea.inexact + eb.inexact);
                }
                ++cases;
            }
    CHECK(cases == 7 * 8 * 2);
    CHECK(total.nans > 100);
    CHECK(total.infinities > 100);
    CHECK(total.overflows > 1000);
    CHECK(total.underflows > 1000);
    CHECK(total.inexact > 10000);
}

TEST_CASE("gemm_stats: input events of a large matrix split among threads") {
    // Big enough (40,000 elements: two pieces of 16,384 or more) for the input rounding to be split into pieces.
    std::mt19937 gen(5);
    std::normal_distribution<float> normal(0.0f, 300.0f);
    Eigen::MatrixXf A(400, 100), B(100, 3);
    for (auto* m : {&A, &B})
        for (Eigen::Index e = 0; e < m->size(); ++e) m->data()[e] = normal(gen);
    gemm_spec spec = gemm_spec::parse("input_a=e4m3:stochastic input_b=e4m3 accumulator=fp32");
    const expected_inputs ea = input_oracle(A, *spec.input_a.as_float(), lowbit::gemm_role::input_a);
    const expected_inputs eb = input_oracle(B, *spec.input_b.as_float(), lowbit::gemm_role::input_b);
    REQUIRE(ea.overflows > 100);  // |x| > 448 is 1.4 sigma: about 16% of A
    for (int threads : {1, 2, 3}) {
        spec.threads = threads;
        const gemm_stats s = stats_of(A, B, spec);
        CHECK(s.input_overflows == ea.overflows + eb.overflows);
        CHECK(s.inexact_inputs == ea.inexact + eb.inexact);
        CHECK(s.input_underflows == ea.underflows + eb.underflows);
    }
}
