// Tests of lowbit/nn/gemm_datapath.hpp.
//  * range_biased_float::format_for against a brute force over every bias, written from the
//    header's definition ("the largest bias whose largest finite value still holds amax", every
//    code finite): the largest finite value of E-bit exponent, M-bit mantissa, specials none is
//    (2 - 2^-M) 2^(2^E - 1 - bias), computed here with ldexp. amax: random, exactly a largest finite
//    value, one ulp above and below it, powers of two, float's extremes; 0, negative, inf and NaN
//    give the IEEE default bias.
//  * for_tensor: amax over |values| with NaN skipped, saturating overflow, mode and seed kept.
//  * datapath_gemm with a spec equals lowbit::gemm(W, X, spec) with input_a / input_b set to the
//    quantizers resolved here independently (from the brute-force bias), bit for bit, with the
//    same gemm_stats; the kept operands equal lowbit::quantize of every element (deterministic
//    modes), and are what the GEMM multiplied (stochastic: gemm of the kept operands with exact
//    inputs gives the same C; each kept value is a grid neighbour of its input).
//  * Without a spec: the kept operands are quantized the same way and C is their fp32 product,
//    against a naive double product within the float error bound.
#include <lowbit/nn/gemm_datapath.hpp>

#include <lowbit/rounding/quantize.hpp>

#include "support/random_floats.hpp"
#include "support/stats_difference.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <variant>
#include <vector>

namespace {

using lowbit_test::random_matrix;
using lowbit_test::rng;
using lowbit_test::same_bits;

using lowbit::float_format;
using lowbit::float_quantizer;
using lowbit::gemm_spec;
using lowbit::gemm_stats;
using lowbit::overflow;
using lowbit::rounding;
using lowbit::special_values;
using lowbit::nn::gemm_datapath;
using lowbit::nn::gemm_operands;
using lowbit::nn::matrix;
using lowbit::nn::range_biased_float;



// The largest finite value of an ExMy format whose every code is finite (specials none): the top
// exponent field 2^E - 1 with the all-ones significand 2 - 2^-M.
double largest_finite(int exp_bits, int man_bits, int bias) {
    return std::ldexp(2.0 - std::ldexp(1.0, -man_bits), (1 << exp_bits) - 1 - bias);
}

// The definition, by brute force: the largest bias (of those the library accepts as a format) whose
// largest finite value is >= amax; the IEEE default bias when amax is not a positive finite number.
int brute_force_bias(int exp_bits, int man_bits, bool subnormals, double amax) {
    if (!(amax > 0) || !std::isfinite(amax)) return (1 << (exp_bits - 1)) - 1;
    for (int bias = 4096; bias >= -4096; --bias) {
        const float_format f{.exp_bits = exp_bits, .man_bits = man_bits, .bias = bias, .subnormals = subnormals,
                             .specials = special_values::none};
        if (f.is_valid() && largest_finite(exp_bits, man_bits, bias) >= amax) return bias;
    }
    FAIL("no bias holds amax = " << amax);
    return 0;
}

float_format brute_force_format(const range_biased_float& r, double amax) {
    return {.exp_bits = r.exp_bits, .man_bits = r.man_bits, .bias = brute_force_bias(r.exp_bits, r.man_bits, r.subnormals, amax),
            .subnormals = r.subnormals, .specials = special_values::none};
}

double amax_of(const matrix& m) {
    double a = 0;
    for (Eigen::Index i = 0; i < m.size(); ++i)
        if (!std::isnan(m.data()[i])) a = std::max(a, std::fabs(double(m.data()[i])));
    return a;
}

// The quantizer that datapath_gemm should resolve for a range-biased input, built here.
float_quantizer resolved(const range_biased_float& r, const matrix& m) {
    return {.format = brute_force_format(r, amax_of(m)), .mode = r.mode, .on_overflow = overflow::saturate,
            .seed = r.seed};
}


// m with lowbit::quantize applied to every element.
matrix quantized(const matrix& m, const float_format& f, rounding mode, overflow o) {
    matrix out(m.rows(), m.cols());
    for (Eigen::Index i = 0; i < m.size(); ++i) out.data()[i] = lowbit::quantize(m.data()[i], f, mode, o);
    return out;
}

// max over entries of |C - A B| / ((K + 1) 2^-24 sum_k |A_ik B_kj|), the naive product in double:
// <= 1 when C is a float GEMM of A and B.
double float_error_ratio(const matrix& c, const matrix& a, const matrix& b) {
    double worst = 0;
    for (Eigen::Index i = 0; i < a.rows(); ++i)
        for (Eigen::Index j = 0; j < b.cols(); ++j) {
            double sum = 0, magnitude = 0;
            for (Eigen::Index k = 0; k < a.cols(); ++k) {
                sum += double(a(i, k)) * double(b(k, j));
                magnitude += std::fabs(double(a(i, k)) * double(b(k, j)));
            }
            worst = std::max(worst, std::fabs(double(c(i, j)) - sum) /
                                        (double(a.cols() + 1) * 0x1p-24 * magnitude + 1e-300));
        }
    return worst;
}

gemm_spec low_precision_spec() {
    const float_quantizer q_prod{.format = lowbit::lba_m7e4_prod, .mode = rounding::toward_zero};
    const float_quantizer q_acc{.format = lowbit::lba_m7e4_acc, .mode = rounding::toward_zero};
    return {.product = q_prod, .accumulator = q_acc, .chunk = 16, .chunk_accumulator = q_acc};
}

}  // namespace

TEST_CASE("range_biased_float: format_for is the largest bias that holds amax (brute force)") {
    struct shape {
        int exp_bits, man_bits;
        bool subnormals;
    };
    const std::vector<shape> shapes = {{3, 4, true}, {4, 3, true}, {5, 2, false}, {2, 1, true},
                                       {4, 0, false}, {1, 3, true}, {8, 7, true}, {2, 5, false}};
    rng r(21);
    for (const shape& s : shapes) {
        const range_biased_float rb{.exp_bits = s.exp_bits, .man_bits = s.man_bits, .subnormals = s.subnormals};
        CAPTURE(s.exp_bits, s.man_bits, s.subnormals);
        std::vector<double> amaxes;
        for (int i = 0; i < 60; ++i) amaxes.push_back(std::exp2(r.uniform(-100, 100)));          // doubles
        for (int i = 0; i < 60; ++i) amaxes.push_back(double(float(std::exp2(r.uniform(-60, 60)))));  // floats
        for (int k = -40; k <= 40; ++k) amaxes.push_back(std::ldexp(1.0, k));
        for (int bias = -30; bias <= 40; ++bias) {
            // Exactly a largest finite value, and the doubles and floats right beside it.
            const double exact = largest_finite(s.exp_bits, s.man_bits, bias);
            amaxes.push_back(exact);
            amaxes.push_back(std::nextafter(exact, 0.0));
            amaxes.push_back(std::nextafter(exact, std::numeric_limits<double>::infinity()));
            amaxes.push_back(double(std::nextafter(float(exact), std::numeric_limits<float>::infinity())));
        }
        amaxes.push_back(1.0);
        amaxes.push_back(double(std::numeric_limits<float>::max()));
        amaxes.push_back(double(std::numeric_limits<float>::min()));
        amaxes.push_back(double(std::numeric_limits<float>::denorm_min()));
        int wrong = 0;
        for (const double amax : amaxes) {
            const float_format f = rb.format_for(amax);
            const int expected = brute_force_bias(s.exp_bits, s.man_bits, s.subnormals, amax);
            if (f.exponent_bias() != expected || f.exp_bits != s.exp_bits || f.man_bits != s.man_bits ||
                f.subnormals != s.subnormals || f.specials != special_values::none) {
                if (++wrong <= 5)
                    UNSCOPED_INFO("amax " << amax << " (" << std::hexfloat << amax << std::defaultfloat << "): bias "
                                          << f.exponent_bias() << ", brute force " << expected);
            }
            // The library's own largest finite value agrees with the definition used above.
            if (f.max_finite() != largest_finite(s.exp_bits, s.man_bits, f.exponent_bias())) ++wrong;
        }
        CHECK(wrong == 0);

        // The boundary itself, spelled out: amax == max_finite(b) keeps b; one ulp more needs b - 1.
        const double at_bias_5 = largest_finite(s.exp_bits, s.man_bits, 5);
        CHECK(rb.format_for(at_bias_5).exponent_bias() == 5);
        CHECK(rb.format_for(std::nextafter(at_bias_5, 1e300)).exponent_bias() == 4);
        CHECK(rb.format_for(std::nextafter(at_bias_5, 0.0)).exponent_bias() == 5);
        // Half of it is exactly max_finite(6): the largest bias that holds it is 6, not 5.
        CHECK(rb.format_for(at_bias_5 / 2).exponent_bias() == 6);

        // Not a positive finite amax: the IEEE default bias 2^(E-1) - 1, every code finite.
        const int ieee = (1 << (s.exp_bits - 1)) - 1;
        for (const double amax : {0.0, -0.0, -1.0, std::numeric_limits<double>::infinity(),
                                  -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
            CAPTURE(amax);
            const float_format f = rb.format_for(amax);
            CHECK(f.exponent_bias() == ieee);
            CHECK(f.specials == special_values::none);
        }
    }
}

TEST_CASE("range_biased_float: for_tensor takes amax over |values|, skips NaN, saturates") {
    const range_biased_float rb{.exp_bits = 4, .man_bits = 3, .mode = rounding::stochastic, .seed = 99};
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> values = {0.5f, -7.25f, nan, 3.0f, -0.0f, 6.0f};
    const lowbit::quantizer q = rb.for_tensor(values);
    const float_quantizer* f = q.as_float();
    REQUIRE(f != nullptr);
    CHECK(f->format == brute_force_format(rb, 7.25));
    CHECK(f->format.specials == special_values::none);
    CHECK(f->on_overflow == overflow::saturate);
    CHECK(f->mode == rounding::stochastic);
    CHECK(f->seed == 99);

    // Nothing to measure (all zero, all NaN, empty): the IEEE default bias.
    const int ieee = (1 << 3) - 1;
    for (const std::vector<float>& v :
         {std::vector<float>{0.0f, -0.0f}, std::vector<float>{nan, nan}, std::vector<float>{}}) {
        const lowbit::quantizer d = rb.for_tensor(v);
        REQUIRE(d.as_float() != nullptr);
        CHECK(d.as_float()->format.exponent_bias() == ieee);
    }
    // An infinite value cannot be held by any bias: the default bias, and saturation on overflow.
    const lowbit::quantizer inf = rb.for_tensor(std::vector<float>{1.0f, -std::numeric_limits<float>::infinity()});
    REQUIRE(inf.as_float() != nullptr);
    CHECK(inf.as_float()->format.exponent_bias() == ieee);
}

TEST_CASE("datapath_gemm: with a spec it is lowbit::gemm with the resolved input quantizers") {
    rng r(22);
    const matrix w = random_matrix(5, 37, r, -0.5, 0.5);  // M x K, K > 2 chunks of 16
    matrix x = random_matrix(37, 6, r, -0.5, 3.0);        // K x N
    for (Eigen::Index i = 0; i < x.size(); i += 7) x.data()[i] = 0.0f;

    const range_biased_float weights_rb{};  // FP8 M4E3
    const range_biased_float activations_rb{.exp_bits = 4, .man_bits = 3};
    const range_biased_float stochastic_w{.mode = rounding::stochastic, .seed = 5};
    const range_biased_float stochastic_x{.exp_bits = 4, .man_bits = 3, .mode = rounding::stochastic, .seed = 5};
    const float_quantizer fixed_e4m3{.format = lowbit::fp8_e4m3};

    struct variant {
        const char* name;
        lowbit::nn::input_quantizer weights, activations;
        lowbit::quantizer expected_a, expected_b;
        bool deterministic;
    };
    const std::vector<variant> variants = {
        {"range-biased, nearest", weights_rb, activations_rb, resolved(weights_rb, w), resolved(activations_rb, x), true},
        {"range-biased, stochastic", stochastic_w, stochastic_x, resolved(stochastic_w, w), resolved(stochastic_x, x),
         false},
        {"fixed e4m3 weights, exact activations", lowbit::quantizer(fixed_e4m3), std::monostate{},
         lowbit::quantizer(fixed_e4m3), lowbit::quantizer(), true},
        {"exact inputs", std::monostate{}, std::monostate{}, lowbit::quantizer(), lowbit::quantizer(), true},
    };
    for (const variant& v : variants) {
        CAPTURE(v.name);
        gemm_datapath d{.spec = low_precision_spec(), .weights = v.weights, .activations = v.activations};
        gemm_spec reference_spec = low_precision_spec();
        reference_spec.input_a = v.expected_a;
        reference_spec.input_b = v.expected_b;
        const Eigen::MatrixXf expected = lowbit::gemm(w, x, reference_spec);

        gemm_operands kept;
        const matrix c = lowbit::nn::datapath_gemm(w, x, d, &kept);
        REQUIRE(c.rows() == 5);
        REQUIRE(c.cols() == 6);
        CHECK(same_bits(c, matrix(expected)));
        CHECK(same_bits(lowbit::nn::datapath_gemm(w, x, d), c));  // without keep: the same C

        // The kept operands are what the GEMM multiplied: the same GEMM of them, inputs exact, is C.
        const Eigen::MatrixXf again = lowbit::gemm(kept.weights, kept.activations, low_precision_spec());
        CHECK(same_bits(matrix(again), c));
        // ... and each is the element quantized on its own.
        const auto check_kept = [&](const matrix& in, const matrix& out, const lowbit::quantizer& q) {
            REQUIRE(out.rows() == in.rows());
            REQUIRE(out.cols() == in.cols());
            const float_quantizer* f = q.as_float();
            if (f == nullptr) {
                CHECK(same_bits(out, in));
            } else if (v.deterministic) {
                CHECK(same_bits(out, quantized(in, f->format, f->mode, f->on_overflow)));
            } else {
                // Stochastic: one of the two grid neighbours of the input (both directions seen).
                const matrix down = quantized(in, f->format, rounding::toward_negative, f->on_overflow);
                const matrix up = quantized(in, f->format, rounding::toward_positive, f->on_overflow);
                int elsewhere = 0, ups = 0, downs = 0;
                for (Eigen::Index i = 0; i < in.size(); ++i) {
                    const float o = out.data()[i];
                    if (o != down.data()[i] && o != up.data()[i]) ++elsewhere;
                    if (down.data()[i] != up.data()[i]) (o == up.data()[i] ? ups : downs) += 1;
                }
                CHECK(elsewhere == 0);
                CHECK(ups > 0);
                CHECK(downs > 0);
            }
        };
        check_kept(w, kept.weights, v.expected_a);
        check_kept(x, kept.activations, v.expected_b);

        // Events: counted into datapath.stats exactly as lowbit::gemm counts them, and added up.
        gemm_stats stats, reference_stats;
        d.stats = &stats;
        CHECK(same_bits(lowbit::nn::datapath_gemm(w, x, d), c));
        (void)lowbit::gemm(w, x, reference_spec, &reference_stats);
        CHECK(stats.macs == 5u * 6u * 37u);
        CHECK(lowbit_test::stats_difference(reference_stats, stats, false) == "");
        CHECK(stats.inexact_additions > 0);  // the M7E4 accumulator does round here
        (void)lowbit::nn::datapath_gemm(w, x, d);
        CHECK(stats.macs == 2u * 5u * 6u * 37u);
        CHECK(stats.inexact_additions == 2 * reference_stats.inexact_additions);
    }
}

TEST_CASE("datapath_gemm: without a spec it is the fp32 product of the quantized inputs") {
    rng r(23);
    const matrix w = random_matrix(7, 50, r, -1, 1);
    const matrix x = random_matrix(50, 9, r, -2, 2);
    const range_biased_float rb{};
    const float_format fw = brute_force_format(rb, amax_of(w)), fx = brute_force_format(rb, amax_of(x));
    const matrix wq = quantized(w, fw, rounding::nearest_even, overflow::saturate);
    const matrix xq = quantized(x, fx, rounding::nearest_even, overflow::saturate);
    REQUIRE_FALSE(same_bits(wq, w));  // the quantization does something here

    gemm_datapath d{.spec = std::nullopt, .weights = rb, .activations = rb};
    gemm_stats stats;
    d.stats = &stats;  // ignored without a spec: nothing is simulated
    gemm_operands kept;
    const matrix c = lowbit::nn::datapath_gemm(w, x, d, &kept);
    CHECK(same_bits(kept.weights, wq));
    CHECK(same_bits(kept.activations, xq));
    CHECK(float_error_ratio(c, wq, xq) <= 1.0);
    CHECK(float_error_ratio(c, w, x) > 1.0);  // it did use the quantized values
    CHECK(stats.macs == 0);

    // No quantizers at all: the plain fp32 product.
    const matrix plain = lowbit::nn::datapath_gemm(w, x, gemm_datapath{}, &kept);
    CHECK(same_bits(kept.weights, w));
    CHECK(same_bits(kept.activations, x));
    CHECK(float_error_ratio(plain, w, x) <= 1.0);
}

TEST_CASE("datapath_gemm: a spec's own input quantizers are used, and giving one twice is an error") {
    // W = [0.3, 0.3], X = [1; 1]: e4m3 rounds 0.3 to 0.3125, so the quantized product is 0.625.
    matrix w(1, 2), x(2, 1);
    w << 0.3f, 0.3f;
    x << 1.0f, 1.0f;
    gemm_datapath d;
    d.spec = gemm_spec{.input_a = lowbit::fp8_e4m3};
    CHECK(lowbit::nn::datapath_gemm(w, x, d)(0, 0) == 0.625f);
    d.weights = range_biased_float{};
    REQUIRE_THROWS_WITH(lowbit::nn::datapath_gemm(w, x, d), Catch::Contains("weights and spec.input_a are both set"));
    d.weights = {};
    d.spec->input_b = lowbit::fp8_e4m3;
    d.activations = lowbit::quantizer(lowbit::bf16);
    REQUIRE_THROWS_WITH(lowbit::nn::datapath_gemm(w, x, d), Catch::Contains("activations and spec.input_b are both set"));
}

// ---- block-scaled operands (gemm_datapath::blocks) ----
//
// The reference, written from papers.md section 5 (VS-Quant) and scaling/block_scaling.hpp's
// definition, not from the library's code: per vector v of V elements along K, s_v = amax_v / qmax
// (qmax = 2^(N-1) - 1); per coarse unit (a row of W; all of X) gamma = float(max_v s_v / (2^M - 1));
// s_q = round_half_even(s_v / gamma) clamped to [1, 2^M - 1] (0 for an all-zero vector); codes
// round_half_even(x / (s_q gamma)) clamped to [-qmax, qmax]. The GEMM: per output the exact integer
// sum over vectors of (integer dot of the codes) * s_q(W) * s_q(X), times gamma_W * gamma_X,
// rounded once to float (the integer product in __int128, the power of two applied after: exact
// for these magnitudes).
namespace {

__extension__ typedef __int128 int128;  // (GCC and clang; -Wpedantic otherwise)

struct vsquant_reference {
    std::vector<std::int64_t> codes;   // row-major like the matrix
    std::vector<std::int64_t> scales;  // lines x vectors
    std::vector<float> gammas;         // per line, or one
    std::size_t lines = 0, per_line = 0;
};

// m is rows x cols row-major; k_axis 1: lines are rows, else columns.
vsquant_reference vsquant_by_hand(const matrix& m, int k_axis, int n_bits, int m_bits, int v, bool per_tensor) {
    const std::size_t rows = std::size_t(m.rows()), cols = std::size_t(m.cols());
    const std::size_t lines = k_axis == 1 ? rows : cols, length = k_axis == 1 ? cols : rows;
    const auto at = [&](std::size_t line, std::size_t k) { return k_axis == 1 ? line * cols + k : k * cols + line; };
    const double qmax = double((1 << (n_bits - 1)) - 1), top = double((1 << m_bits) - 1);
    vsquant_reference r;
    r.lines = lines;
    r.per_line = (length + std::size_t(v) - 1) / std::size_t(v);
    std::vector<double> s(lines * r.per_line, 0.0);
    for (std::size_t l = 0; l < lines; ++l)
        for (std::size_t k = 0; k < length; ++k) {
            double& sv = s[l * r.per_line + k / std::size_t(v)];
            sv = std::max(sv, std::fabs(double(m.data()[at(l, k)])) / qmax);
        }
    r.gammas.assign(per_tensor ? 1 : lines, 0.0f);
    for (std::size_t l = 0; l < lines; ++l)
        for (std::size_t b = 0; b < r.per_line; ++b) {
            float& g = r.gammas[per_tensor ? 0 : l];
            g = std::max(g, float(s[l * r.per_line + b] / top));
        }
    r.scales.assign(s.size(), 0);
    r.codes.assign(rows * cols, 0);
    for (std::size_t l = 0; l < lines; ++l) {
        const double g = r.gammas[per_tensor ? 0 : l];
        for (std::size_t b = 0; b < r.per_line; ++b) {
            const double sv = s[l * r.per_line + b];
            r.scales[l * r.per_line + b] = sv == 0 ? 0 : std::int64_t(std::clamp(std::nearbyint(sv / g), 1.0, top));
        }
        for (std::size_t k = 0; k < length; ++k) {
            const double step = double(r.scales[l * r.per_line + k / std::size_t(v)]) * g;
            const double x = m.data()[at(l, k)];
            r.codes[at(l, k)] = step == 0 ? 0 : std::int64_t(std::clamp(std::nearbyint(x / step), -qmax, qmax));
        }
    }
    return r;
}

}  // namespace

TEST_CASE("datapath_gemm with blocks: VS-Quant W4A4 equals the integer reference bit for bit") {
    rng r(20211104);
    for (const auto& [M, K, N, v, m_bits] : std::vector<std::tuple<int, int, int, int, int>>{
             {5, 40, 7, 16, 4}, {3, 16, 4, 16, 6}, {8, 100, 9, 16, 8}, {4, 33, 5, 8, 4}, {6, 288, 11, 16, 6}}) {
        matrix w = random_matrix(M, K, r), x = random_matrix(K, N, r, 0, 3);  // activations post-ReLU-like
        w(0, 1) = 0;
        for (int k = 0; k < std::min(K, v); ++k) w(M - 1, k) = 0;  // an all-zero vector: s_q = 0
        gemm_datapath d;
        d.spec = gemm_spec{.accumulator = lowbit::int_quantizer{.format = {.bits = 32}}};
        d.blocks = lowbit::nn::block_scaled_inputs{
            .weights = lowbit::vsquant(4, m_bits, v),
            .activations = lowbit::vsquant(4, m_bits, v, lowbit::coarse_scope::per_tensor)};
        gemm_stats stats;
        d.stats = &stats;
        gemm_operands kept;
        const matrix c = lowbit::nn::datapath_gemm(w, x, d, &kept);
        REQUIRE(c.rows() == M);
        REQUIRE(c.cols() == N);
        CHECK(stats.macs == std::uint64_t(M) * std::uint64_t(K) * std::uint64_t(N));

        const vsquant_reference rw = vsquant_by_hand(w, 1, 4, m_bits, v, false);
        const vsquant_reference rx = vsquant_by_hand(x, 0, 4, m_bits, v, true);
        matrix expected(M, N), wq(M, K), xq(K, N);
        for (int i = 0; i < M; ++i)
            for (int k = 0; k < K; ++k)
                wq(i, k) = float(double(rw.codes[std::size_t(i * K + k)]) *
                                 double(rw.scales[std::size_t(i) * rw.per_line + std::size_t(k / v)]) * double(rw.gammas[std::size_t(i)]));
        for (int k = 0; k < K; ++k)
            for (int j = 0; j < N; ++j)
                xq(k, j) = float(double(rx.codes[std::size_t(k * N + j)]) *
                                 double(rx.scales[std::size_t(j) * rx.per_line + std::size_t(k / v)]) * double(rx.gammas[0]));
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) {
                std::int64_t total = 0;
                for (int b = 0; b * v < K; ++b) {
                    std::int64_t dot = 0;
                    for (int k = b * v; k < std::min(K, (b + 1) * v); ++k)
                        dot += rw.codes[std::size_t(i * K + k)] * rx.codes[std::size_t(k * N + j)];
                    total += dot * rw.scales[std::size_t(i) * rw.per_line + std::size_t(b)] *
                             rx.scales[std::size_t(j) * rx.per_line + std::size_t(b)];
                }
                // gamma = significand * 2^exponent with 24-bit integer significands
                int ew = 0, ex = 0;
                const auto mw = std::int64_t(std::ldexp(std::frexp(double(rw.gammas[std::size_t(i)]), &ew), 24));
                const auto mx = std::int64_t(std::ldexp(std::frexp(double(rx.gammas[0]), &ex), 24));
                const int128 exact = int128(total) * mw * mx;
                expected(i, j) = std::ldexp(float(exact), ew + ex - 48);
            }
        INFO("M K N V M_bits = " << M << " " << K << " " << N << " " << v << " " << m_bits);
        CHECK(same_bits(c, expected));
        // (values, not bits: a small negative weight is the code -0 there, +0 here)
        CHECK((kept.weights.array() == wq.array()).all());
        CHECK((kept.activations.array() == xq.array()).all());
        CHECK_FALSE(kept.spec.has_value());
    }
}

TEST_CASE("datapath_gemm with blocks: per-channel and per-tensor integers equal int_scaling's") {
    // lowbit::per_channel_int / per_tensor_int are VS-Quant's degenerate cases; the independent
    // path is scaling/int_scaling.hpp (one float scale amax / qmax per row, or per tensor).
    rng r(7);
    const matrix w = random_matrix(6, 50, r), x = random_matrix(50, 4, r, -2, 2);
    for (const int bits : {4, 6, 8}) {
        const lowbit::int_scaling q{.bits = bits, .narrow_range = true};
        const std::span<const float> wd(w.data(), std::size_t(w.size())), xd(x.data(), std::size_t(x.size()));
        matrix wq(w.rows(), w.cols()), xq(x.rows(), x.cols());
        lowbit::quantize_per_channel(wd, 6, 50, 1, lowbit::scales_per_channel(wd, 6, 50, 1, q), q,
                                     std::span<float>(wq.data(), std::size_t(wq.size())));
        lowbit::quantize_scaled(xd, lowbit::scale_for_max(x.cwiseAbs().maxCoeff(), q), q,
                                std::span<float>(xq.data(), std::size_t(xq.size())));
        gemm_datapath d;
        d.blocks = lowbit::nn::block_scaled_inputs{.weights = lowbit::per_channel_int(bits),
                                                   .activations = lowbit::per_tensor_int(bits)};
        gemm_operands kept;
        (void)lowbit::nn::datapath_gemm(w, x, d, &kept);
        INFO("bits " << bits);
        CHECK(same_bits(kept.weights, wq));
        CHECK(same_bits(kept.activations, xq));
    }
}

TEST_CASE("datapath_gemm with blocks: refusals name what is wrong") {
    const matrix w = matrix::Ones(2, 16), x = matrix::Ones(16, 2);
    gemm_datapath d;
    d.blocks = lowbit::nn::block_scaled_inputs{};
    d.weights = range_biased_float{};
    CHECK_THROWS_WITH(lowbit::nn::datapath_gemm(w, x, d), Catch::Contains("blocks and weights/activations are both set"));
    d.weights = {};
    d.spec = gemm_spec{};
    d.gradient = lowbit::gradient_mode::recursive;
    CHECK_THROWS_WITH(lowbit::nn::datapath_gemm(w, x, d), Catch::Contains("set gradient = ste"));
    d.gradient = lowbit::gradient_mode::ste;
    d.blocks->weights = lowbit::vsquant(4, 4, 8);  // activations in blocks of 32
    CHECK_THROWS_WITH(lowbit::nn::datapath_gemm(w, x, d), Catch::Contains("block_size"));
    d.blocks->weights.block_size = -1;
    CHECK_THROWS_WITH(lowbit::nn::datapath_gemm(w, x, d), Catch::Contains("blocks.weights: lowbit::block_format: block_size = -1"));
}

// LNS operands: the forward is lowbit::lns_gemm of the float operands (bit for bit, events
// included); the backward products are checked against double products of the operands' LNS
// values (lns_matrix::values, correctly rounded 2^(k / gamma)), written here from the definition:
// dW = G X_q^T and dX = W_q^T G with G the encoded dL/dC. With the 52-bit table and exact
// accumulation each converted product is within 2^-52 of the product of the values and the sum is
// rounded once to float, so they agree within float's rounding of the sum (of sum |terms|).
TEST_CASE("datapath_gemm with lns: lns_gemm forward, backward on the LNS datapath against double products") {
    rng r(91);
    const matrix w = random_matrix(5, 40, r, -0.5, 0.5), x = random_matrix(40, 7, r, 0, 2), dc = random_matrix(5, 7, r);
    lowbit::lns_gemm_spec spec;  // lns8, per-tensor scales, the 52-bit table, exact per-product sums
    gemm_datapath d;
    d.lns = lowbit::nn::lns_inputs{.spec = spec, .gradients = {.quantizer = {.format = lowbit::lns8}}};
    gemm_stats stats, direct_stats;
    d.stats = &stats;
    gemm_operands kept;
    const matrix c = lowbit::nn::datapath_gemm(w, x, d, &kept);
    CHECK(same_bits(c, matrix(lowbit::lns_gemm(w, x, spec, &direct_stats))));
    CHECK(stats.macs == direct_stats.macs);
    CHECK(stats.macs == 5 * 40 * 7);

    const auto encoded = [](const matrix& m, lowbit::gemm_role role) {
        lowbit::lns_quantizer q{.format = lowbit::lns8};
        q.seed = lowbit::gemm_random_key(0, role);
        return lowbit::lns_encode(m, q, lowbit::lns_input_scale::per_tensor_max);
    };
    const Eigen::MatrixXd wq = encoded(w, lowbit::gemm_role::input_a).values();
    const Eigen::MatrixXd xq = encoded(x, lowbit::gemm_role::input_b).values();
    CHECK(kept.weights == matrix(wq.cast<float>()));
    CHECK(kept.activations == matrix(xq.cast<float>()));
    // the gradient's encoding: nearest in the log domain, per-tensor scale (independent of the seed)
    const Eigen::MatrixXd g = encoded(dc, lowbit::gemm_role::accumulator).values();
    const auto gradients = lowbit::nn::operand_gradients(kept, dc, d);
    REQUIRE(gradients);
    const Eigen::MatrixXd dw = g * xq.transpose(), dx = wq.transpose() * g;
    const Eigen::MatrixXd dw_scale = g.cwiseAbs() * xq.cwiseAbs().transpose(), dx_scale = wq.cwiseAbs().transpose() * g.cwiseAbs();
    REQUIRE(gradients->a.rows() == 5);
    REQUIRE(gradients->a.cols() == 40);
    REQUIRE(gradients->b.rows() == 40);
    REQUIRE(gradients->b.cols() == 7);
    for (Eigen::Index i = 0; i < dw.rows(); ++i)
        for (Eigen::Index j = 0; j < dw.cols(); ++j) {
            CAPTURE(i, j);
            CHECK(std::fabs(gradients->a(i, j) - dw(i, j)) <= 0x1p-23 * dw_scale(i, j) + 1e-30);
        }
    for (Eigen::Index i = 0; i < dx.rows(); ++i)
        for (Eigen::Index j = 0; j < dx.cols(); ++j) {
            CAPTURE(i, j);
            CHECK(std::fabs(gradients->b(i, j) - dx(i, j)) <= 0x1p-23 * dx_scale(i, j) + 1e-30);
        }
    // a gradient that differs in one element changes the products it enters (the oracle can fail)
    CHECK((gradients->a - matrix(dw.cast<float>())).cwiseAbs().maxCoeff() < 1e-4f * float(dw.cwiseAbs().maxCoeff()));

    // Mitchell's conversion, bucketed: the backward products are lns_gemm's of the transposed codes
    d.lns->spec.conversion = {.method = lowbit::lns_conversion::mitchell};
    d.lns->spec.accumulation = lowbit::lns_accumulation::bucketed;
    d.lns->gradients.quantizer.format = lowbit::lns8.scaled(-8);
    gemm_operands kept_m;
    (void)lowbit::nn::datapath_gemm(w, x, d, &kept_m);
    const auto gm = lowbit::nn::operand_gradients(kept_m, dc, d);
    lowbit::lns_quantizer qg{.format = lowbit::lns8.scaled(-8)};
    qg.seed = lowbit::gemm_random_key(0, lowbit::gemm_role::accumulator);
    const lowbit::lns_matrix ge = lowbit::lns_encode(dc, qg, lowbit::lns_input_scale::per_tensor_max);
    const lowbit::lns_matrix we = kept_m.lns_weights, xe = kept_m.lns_activations;
    const lowbit::lns_matrix wt{we.format, we.k.transpose(), we.sign.transpose()};
    const lowbit::lns_matrix xt{xe.format, xe.k.transpose(), xe.sign.transpose()};
    CHECK(same_bits(gm->a, matrix(lowbit::lns_gemm(ge, xt, d.lns->spec))));
    CHECK(same_bits(gm->b, matrix(lowbit::lns_gemm(wt, ge, d.lns->spec))));
    // Mitchell overestimates every product by up to 6.15%: the gradients move, within that
    CHECK(!same_bits(gm->a, gradients->a));
}

// 5-bit LNS gradients (sign + 4-bit k, base 2^(1/2)) with lns8 operands (base 2^(1/8)): dL/dC is
// rounded to the 5-bit grid (checked element by element against lns_quantize's scalar rounding)
// and the backward products are the double products of those values, as above.
TEST_CASE("datapath_gemm with lns: a coarser gradient grid (5-bit LNS) is refined onto the operands' base") {
    rng r(92);
    const matrix w = random_matrix(4, 30, r, -0.5, 0.5), x = random_matrix(30, 6, r, 0, 2), dc = random_matrix(4, 6, r);
    const lowbit::lns_format five{.log_bits = 4, .frac_bits = 1};
    gemm_datapath d;
    d.lns = lowbit::nn::lns_inputs{.gradients = {.quantizer = {.format = five}}};
    gemm_operands kept;
    (void)lowbit::nn::datapath_gemm(w, x, d, &kept);
    const auto gradients = lowbit::nn::operand_gradients(kept, dc, d);
    REQUIRE(gradients);
    const int j = lowbit::lns_scale_exponent_for_max(double(dc.cwiseAbs().maxCoeff()), five);
    const lowbit::lns_quantizer q{.format = five.scaled(j)};
    Eigen::MatrixXd g(dc.rows(), dc.cols());
    for (Eigen::Index i = 0; i < dc.rows(); ++i)
        for (Eigen::Index c = 0; c < dc.cols(); ++c) g(i, c) = q(double(dc(i, c)), 0);
    // 15 magnitudes 2^(-3.5) .. 2^(3.5) around the scale: few distinct values, a few flushed to zero
    CHECK(g.cwiseAbs().maxCoeff() <= double(dc.cwiseAbs().maxCoeff()) * 1.2);
    const Eigen::MatrixXd xq = kept.lns_activations.values(), wq = kept.lns_weights.values();
    const Eigen::MatrixXd dw = g * xq.transpose(), dx = wq.transpose() * g;
    const Eigen::MatrixXd dw_scale = g.cwiseAbs() * xq.cwiseAbs().transpose(), dx_scale = wq.cwiseAbs().transpose() * g.cwiseAbs();
    for (Eigen::Index i = 0; i < dw.rows(); ++i)
        for (Eigen::Index c = 0; c < dw.cols(); ++c) CHECK(std::fabs(gradients->a(i, c) - dw(i, c)) <= 0x1p-23 * dw_scale(i, c) + 1e-30);
    for (Eigen::Index i = 0; i < dx.rows(); ++i)
        for (Eigen::Index c = 0; c < dx.cols(); ++c) CHECK(std::fabs(gradients->b(i, c) - dx(i, c)) <= 0x1p-23 * dx_scale(i, c) + 1e-30);
    // and the 8-bit gradient's products differ (the oracle sees the coarser grid)
    d.lns->gradients.quantizer.format = lowbit::lns8;
    const auto fine = lowbit::nn::operand_gradients(kept, dc, d);
    CHECK(!same_bits(fine->a, gradients->a));
}

TEST_CASE("datapath_gemm with lns: refusals name what is wrong") {
    const matrix w = matrix::Ones(2, 16), x = matrix::Ones(16, 2);
    gemm_datapath d;
    d.lns = lowbit::nn::lns_inputs{};
    d.spec = gemm_spec{};
    CHECK_THROWS_WITH(lowbit::nn::datapath_gemm(w, x, d), Catch::Contains("spec and lns are both set"));
    d.spec.reset();
    d.gradient = lowbit::gradient_mode::immediate;
    CHECK_THROWS_WITH(lowbit::nn::datapath_gemm(w, x, d), Catch::Contains("with lns: the gradient modes mask"));
    d.gradient = lowbit::gradient_mode::ste;
    d.activations = range_biased_float{};
    CHECK_THROWS_WITH(lowbit::nn::datapath_gemm(w, x, d), Catch::Contains("lns and weights/activations are both set"));
    d.activations = {};
    d.lns->gradients.quantizer.format = lowbit::lns16;
    CHECK_THROWS_WITH(lowbit::nn::datapath_gemm(w, x, d),
                      Catch::Contains("lns.gradients.quantizer.format.frac_bits = 8 but lns.spec.input_a's is 3"));
    d.lns->gradients.quantizer.format = lowbit::lns8;
    d.blocks = lowbit::nn::block_scaled_inputs{};
    CHECK_THROWS_WITH(lowbit::nn::datapath_gemm(w, x, d), Catch::Contains("blocks and lns are both set"));
}
