// tests/datapath/block_scaled_gemm_test.cpp: lowbit::block_scaled_gemm against a slow reference
// written from the definition at the top of lowbit/datapath/block_scaled_gemm.hpp, in MPFR
// (every block dot, scale product, term and sum exact; each rounding of the datapath done by
// tests/datapath/gemm_reference.hpp's independent rounding and reduction code), bit for bit and
// with every event counter, for every block-format preset and mixes of them; integer accumulators
// against a plain int64 simulation of a P-bit register; NaN blocks; argument errors; threads.
#include <lowbit/datapath/block_scaled_gemm.hpp>

#include "datapath/gemm_reference.hpp"
#include "support/exception_message.hpp"

#include "support/stats_difference.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using lowbit_test::stats_difference;

using lowbit::accumulation;
using lowbit::block_format;
using lowbit::block_scaled_matrix;
using lowbit::float_format;
using lowbit::float_quantizer;
using lowbit::gemm_spec;
using lowbit::gemm_stats;
using lowbit::int_overflow;
using lowbit::int_quantizer;
using lowbit::quantizer;
using lowbit::rounding;

// =============================================================================================
// The reference: C = A B by the definition, one documented step per line.

struct block_reference_notes {
    bool nonfinite = false;  // some value was NaN or infinite: events are not compared (as in gemm_test)
};

Eigen::MatrixXf reference_block_gemm(const block_scaled_matrix& A, const block_scaled_matrix& B, const gemm_spec& spec,
                                     const quantizer& scale_product, gemm_stats* stats,
                                     block_reference_notes* notes = nullptr) {
    using namespace lowbit_test::gemm_ref;
    const std::uint64_t M = A.rows, K = A.cols, N = B.cols, V = std::uint64_t(A.format.block_size);
    const std::uint64_t nb = (K + V - 1) / V;  // blocks per line
    gemm_stats st;
    st.macs = M * N * K;
    if (spec.record_lost) st.lost.assign(M * N * K, 0);
    bool nonfinite = false;

    // Element (i, k) of A and (k, j) of B as stored, their block scales and coarse scales
    // (block_scaled_matrix's documented layout, written out again here).
    const auto a = [&](std::uint64_t i, std::uint64_t k) { return real(double(A.elements[i * K + k])); };
    const auto b = [&](std::uint64_t k, std::uint64_t j) { return real(double(B.elements[k * N + j])); };
    const auto coarse = [](const block_scaled_matrix& m, std::uint64_t line) {
        if (m.coarse_scales.empty()) return real(1.0);
        return real(m.coarse_scales.size() == 1 ? m.coarse_scales[0] : m.coarse_scales[line]);
    };

    const std::uint64_t chunk = spec.chunk == 0 ? std::max<std::uint64_t>(nb, 1) : std::uint64_t(spec.chunk);
    const std::uint64_t chunks = (nb + chunk - 1) / chunk;
    Eigen::MatrixXf C(static_cast<Eigen::Index>(M), static_cast<Eigen::Index>(N));
    for (std::uint64_t i = 0; i < M; ++i)
        for (std::uint64_t j = 0; j < N; ++j) {
            const std::uint64_t out = i * N + j;
            std::vector<std::uint8_t> term_lost(nb, 0);
            lowbit_test::gemm_ref::lane L{&nonfinite,         spec, out, nb, std::vector<real>(nb), std::vector<real>(nb),
                                          st, spec.record_lost ? term_lost.data() : nullptr};
            for (std::uint64_t k = 0; k < K; ++k)
                if (A.elements[i * K + k] == 0 || B.elements[k * N + j] == 0) ++st.zero_operand;
            for (std::uint64_t blk = 0; blk < nb; ++blk) {
                real d(0.0);  // the exact block dot product
                for (std::uint64_t k = blk * V; k < std::min(K, (blk + 1) * V); ++k) d = add(d, mul(a(i, k), b(k, j)));
                bool ignored = false;
                const real s = quantize(scale_product,
                                        mul(real(A.block_scales[i * nb + blk]), real(B.block_scales[j * nb + blk])),
                                        lowbit::gemm_role::input_a, out * nb + blk, ignored);
                L.exact[blk] = mul(d, s);
                L.note(s);
                L.note(L.exact[blk]);
                if (spec.model == accumulation::fma) continue;  // fma: no Q_prod
                bool overflowed = false;
                L.p[blk] = quantize(spec.product, L.exact[blk], lowbit::gemm_role::product, out * nb + blk, overflowed);
                L.note(L.p[blk]);
                if (overflowed) ++st.product_overflows;
                if (!L.exact[blk].is_zero() && !L.exact[blk].is_nan() && L.p[blk].is_zero()) {
                    ++st.product_underflows;
                    L.mark_lost(blk);
                }
            }
            real total(-0.0);  // (the chunk accumulator starts from -0, addition's identity)
            for (std::uint64_t c = 0; c < chunks; ++c) {
                const std::uint64_t start = c * chunk, n = std::min(chunk, nb - start);
                accumulation model = spec.model;
                if (spec.accumulator.is_exact() && model != accumulation::fma) model = accumulation::fused;
                real r;
                switch (model) {
                    case accumulation::sequential: r = chunk_sequential(L, start, n); break;
                    case accumulation::fma: r = chunk_fma(L, start, n); break;
                    case accumulation::pairwise: r = chunk_pairwise(L, start, n); break;
                    case accumulation::fused: r = chunk_fused(L, start, n); break;
                    case accumulation::aligned: r = chunk_aligned(L, start, n); break;
                    case accumulation::two_level: throw std::logic_error("two_level: refused for block terms");
                }
                const real t = L.round_sum(spec.chunk_accumulator, lowbit::gemm_role::chunk_accumulator, add(total, r),
                                           out * chunks + c);
                if (!r.is_zero() && equal(t, total)) ++st.swamps;
                total = t;
            }
            // The coarse scales multiply the exact total once; one rounding to float.
            C(Eigen::Index(i), Eigen::Index(j)) = to_float(mul(mul(total, coarse(A, i)), coarse(B, j)));
            if (spec.record_lost)
                for (std::uint64_t blk = 0; blk < nb; ++blk)
                    if (term_lost[blk] != 0)
                        for (std::uint64_t k = blk * V; k < std::min(K, (blk + 1) * V); ++k) st.lost[out * K + k] = 1;
        }
    if (stats != nullptr) *stats = std::move(st);
    if (notes != nullptr) notes->nonfinite = nonfinite;
    return C;
}

// =============================================================================================
// Printing and comparing.

std::string hexfloat(double x) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%a", x);
    return buf;
}

bool same_bits(float x, float y) {
    return (std::isnan(x) && std::isnan(y)) || std::bit_cast<std::uint32_t>(x) == std::bit_cast<std::uint32_t>(y);
}

std::string matrix_difference(const Eigen::MatrixXf& expected, const Eigen::MatrixXf& got) {
    if (expected.rows() != got.rows() || expected.cols() != got.cols()) return "shapes differ";
    int differing = 0;
    std::string first;
    for (Eigen::Index i = 0; i < expected.rows(); ++i)
        for (Eigen::Index j = 0; j < expected.cols(); ++j)
            if (!same_bits(expected(i, j), got(i, j)) && differing++ == 0)
                first = "C(" + std::to_string(i) + "," + std::to_string(j) + "): expected " + hexfloat(expected(i, j)) +
                        ", got " + hexfloat(got(i, j));
    return differing == 0 ? "" : std::to_string(differing) + " elements differ; first " + first;
}


std::string describe(const quantizer& q) {
    std::ostringstream o;
    if (const auto* f = q.as_float())
        o << lowbit::to_string(f->format) << " " << lowbit::to_string(f->mode) << " " << lowbit::to_string(f->on_overflow);
    else if (const auto* i = q.as_int())
        o << "int" << i->format.bits << " fb=" << i->fraction_bits << " " << lowbit::to_string(i->mode)
          << (i->on_overflow == int_overflow::wrap ? " wrap" : " saturate");
    else
        o << "exact";
    return o.str();
}

std::string describe(const gemm_spec& s, const quantizer& scale_product) {
    std::ostringstream o;
    o << "model=" << lowbit::to_string(s.model) << " chunk=" << s.chunk << " product=" << describe(s.product)
      << " accumulator=" << describe(s.accumulator) << " chunk_accumulator=" << describe(s.chunk_accumulator)
      << " scale_product=" << describe(scale_product) << " window=" << s.window << " group=" << s.group;
    return o.str();
}

// =============================================================================================
// Random specs and data.

struct generator {
    std::mt19937_64 rng;
    explicit generator(std::uint64_t seed) : rng(seed) {}

    int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
    bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
    template <class T>
    T pick(const std::vector<T>& v) {
        return v[std::size_t(uniform(0, int(v.size()) - 1))];
    }
    rounding mode() {
        return pick(std::vector<rounding>{rounding::nearest_even, rounding::nearest_away, rounding::toward_zero,
                                          rounding::toward_positive, rounding::toward_negative, rounding::stochastic,
                                          rounding::odd});
    }
    float_quantizer float_q(const float_format& f) {
        return float_quantizer{.format = f,
                               .mode = chance(0.5) ? rounding::nearest_even : mode(),
                               .on_overflow = chance(0.5) ? lowbit::overflow::saturate : lowbit::overflow::infinity,
                               .seed = std::uint64_t(uniform(0, 3))};
    }
    int_quantizer int_q(int bits, int fraction_bits = 0) {
        return int_quantizer{.format = {.bits = bits},
                             .mode = chance(0.6) ? rounding::nearest_even : mode(),
                             .on_overflow = chance(0.5) ? int_overflow::wrap : int_overflow::saturate,
                             .fraction_bits = fraction_bits,
                             .seed = std::uint64_t(uniform(0, 3))};
    }

    // Accumulators and products: exact, fp32, bf16, fp16, the paper's M7E4, e4m3; integers for
    // integer-valued terms (VS-Quant).
    quantizer float_step() {
        const float_format m7e4{.exp_bits = 4, .man_bits = 7, .bias = 10, .subnormals = false,
                                .specials = lowbit::special_values::none};
        return float_q(pick(std::vector<float_format>{lowbit::fp32, lowbit::fp32, lowbit::bf16, lowbit::fp16, m7e4,
                                                      lowbit::fp8_e4m3, lowbit::tf32}));
    }
    gemm_spec spec(bool integer_terms) {
        gemm_spec s;
        s.model = accumulation(uniform(0, 4));
        s.chunk = pick(std::vector<int>{0, 0, 1, 2, 3, 5});
        s.window = chance(0.5) ? uniform(13, 14) : uniform(2, 70);
        s.group = pick(std::vector<int>{1, 2, 3, 32});
        s.cut = chance(0.5) ? lowbit::alignment_cut::toward_zero : lowbit::alignment_cut::toward_negative;
        const bool integer = integer_terms && chance(0.6);
        const auto step = [&]() -> quantizer {
            if (chance(0.15)) return quantizer{};
            return integer ? quantizer(int_q(uniform(12, 40))) : float_step();
        };
        s.product = chance(0.4) ? quantizer{} : step();
        s.accumulator = step();
        s.chunk_accumulator = chance(0.4) ? quantizer{} : step();
        return s;
    }
    // Scale-product quantizers: exact, fewer bits of an integer (VS-Quant), a short float.
    quantizer scale_product(bool integer_scales) {
        if (chance(0.5)) return quantizer{};
        if (integer_scales && chance(0.6)) {
            int_quantizer q = int_q(uniform(4, 12), -uniform(0, 6));  // keep the top bits of sA sB
            q.format.is_signed = false;
            return q;
        }
        return float_q(pick(std::vector<float_format>{lowbit::bf16, lowbit::fp8_e4m3, lowbit::fp8_e5m2, lowbit::fp16,
                                                      float_format{.exp_bits = 8, .man_bits = 3}}));
    }

    // Heavy-tailed data (Student t, 3 degrees of freedom) with a random range per line, zeros,
    // and on request NaNs and values spread over 2^-20 .. 2^20 (wide blocks).
    std::vector<float> data(std::size_t rows, std::size_t cols, bool wide, double nan_rate) {
        std::student_t_distribution<double> t(3.0);
        std::vector<float> x(rows * cols);
        const int shift = uniform(-8, 8);
        for (auto& v : x) {
            double value = std::ldexp(t(rng), shift);
            if (wide) value = std::ldexp(value, uniform(-20, 20));
            if (chance(0.08)) value = 0;
            if (chance(nan_rate)) value = std::numeric_limits<double>::quiet_NaN();
            v = float(value);
        }
        return x;
    }
};

struct failure_log {
    int failures = 0;
    void report(const std::string& what, const std::string& detail) {
        if (++failures <= 10) {
            UNSCOPED_INFO(what << ": " << detail);
            CHECK(false);
        }
    }
};

struct named_format {
    std::string name;
    block_format format;
};

std::vector<named_format> presets() {
    return {{"mxfp8_e4m3", lowbit::mxfp8_e4m3},
            {"mxfp8_e5m2", lowbit::mxfp8_e5m2},
            {"mxfp6_e2m3", lowbit::mxfp6_e2m3},
            {"mxfp6_e3m2", lowbit::mxfp6_e3m2},
            {"mxfp4", lowbit::mxfp4},
            {"mxint8", lowbit::mxint8},
            {"nvfp4", lowbit::nvfp4},
            {"vsquant(4,4,16)", lowbit::vsquant(4, 4, 16)},
            {"vsquant(4,6,16) per tensor", lowbit::vsquant(4, 6, 16, lowbit::coarse_scope::per_tensor)},
            {"vsquant(8,8,32)", lowbit::vsquant(8, 8, 32)},
            {"vsquant(3,2,16)", lowbit::vsquant(3, 2, 16)}};
}

bool integer_valued(const block_format& f) { return f.scale == lowbit::block_scale_kind::int_two_level; }

// Compares block_scaled_gemm with the reference, without and with stats (events compared when
// no value was NaN or infinite).
void compare(const block_scaled_matrix& A, const block_scaled_matrix& B, gemm_spec s, const quantizer& scale_product,
             const std::string& what, failure_log& log, gemm_stats* totals = nullptr) {
    s.record_lost = true;
    gemm_stats expected_stats;
    block_reference_notes notes;
    const Eigen::MatrixXf expected = reference_block_gemm(A, B, s, scale_product, &expected_stats, &notes);
    if (totals != nullptr) *totals += expected_stats;
    const std::string where = what + " " + std::to_string(A.rows) + "x" + std::to_string(A.cols) + "x" +
                              std::to_string(B.cols) + "\n  " + describe(s, scale_product);
    gemm_stats got_stats;
    const Eigen::MatrixXf with_stats = lowbit::block_scaled_gemm(A, B, s, scale_product, &got_stats);
    s.record_lost = false;
    const Eigen::MatrixXf without = lowbit::block_scaled_gemm(A, B, s, scale_product);
    if (const auto d = matrix_difference(expected, without); !d.empty()) log.report("result " + where, d);
    if (const auto d = matrix_difference(expected, with_stats); !d.empty()) log.report("result (stats) " + where, d);
    if (!notes.nonfinite)
        if (const auto d = stats_difference(expected_stats, got_stats); !d.empty()) log.report("stats " + where, d);
}

}  // namespace

// =============================================================================================

TEST_CASE("block_scaled_gemm equals the MPFR reference bit for bit, for every preset", "[block_gemm][reference]") {
    generator g(20240917);
    failure_log log;
    gemm_stats totals;
    int trials = 0;
    for (const auto& [name, format] : presets())
        for (int trial = 0; trial < 80; ++trial) {
            const std::size_t M = std::size_t(g.chance(0.2) ? g.uniform(5, 9) : g.uniform(1, 4));
            const std::size_t N = std::size_t(g.chance(0.15) ? g.uniform(30, 40) : g.uniform(1, 5));
            const auto K = std::size_t(g.pick(std::vector<int>{1, 7, 16, 17, 32, 33, 64, 100}));
            const bool wide = g.chance(0.3), nans = g.chance(0.1);
            const auto a = g.data(M, K, wide, nans ? 0.02 : 0.0), b = g.data(K, N, wide, nans ? 0.02 : 0.0);
            const auto A = lowbit::quantize_blocks(a.data(), M, K, format, 1);
            const auto B = lowbit::quantize_blocks(b.data(), K, N, format, 0);
            const gemm_spec s = g.spec(integer_valued(format));
            const quantizer scale_product = g.scale_product(integer_valued(format));
            compare(A, B, s, scale_product, name, log, &totals);
            ++trials;
        }
    CHECK(log.failures == 0);
    std::cout << "block_scaled_gemm reference comparison: " << trials << " trials; reference events: product "
              << "overflows " << totals.product_overflows << ", underflows " << totals.product_underflows
              << ", accumulator overflows " << totals.accumulator_overflows << ", swamps " << totals.swamps
              << ", inexact additions " << totals.inexact_additions << "\n";
    CHECK(totals.accumulator_overflows > 0);  // the random specs reach every kind of event
    CHECK(totals.swamps > 0);
    CHECK(totals.product_underflows > 0);
}

TEST_CASE("block_scaled_gemm equals the reference on mixed and wide formats", "[block_gemm][reference]") {
    // Operands of different element formats (one block size), block dots beyond double (e5m2
    // blocks spanning 2^-16 .. 2^15, bf16 elements) with coarse scales (a NVFP4-like e5m2 format),
    // and blocks of 8 and 64.
    const block_format e5m2_two_level{.element = lowbit::fp8_e5m2, .block_size = 16,
                                      .scale = lowbit::block_scale_kind::float_two_level};
    const block_format bf16_mx{.element = lowbit::bf16};
    const block_format fp16_two_level{.element = lowbit::fp16, .block_size = 16,
                                      .scale = lowbit::block_scale_kind::float_two_level};
    block_format mxfp4_8 = lowbit::mxfp4, e4m3_64 = lowbit::mxfp8_e4m3, e5m2_8 = lowbit::mxfp8_e5m2;
    mxfp4_8.block_size = 8;
    e4m3_64.block_size = 64;
    e5m2_8.block_size = 8;
    const std::vector<std::pair<block_format, block_format>> pairs{
        {lowbit::mxfp4, lowbit::mxfp8_e4m3},   {lowbit::mxfp8_e4m3, lowbit::mxfp8_e5m2},
        {lowbit::mxint8, lowbit::mxfp6_e3m2},  {e5m2_two_level, e5m2_two_level},
        {bf16_mx, bf16_mx},                    {bf16_mx, lowbit::mxfp4},
        {fp16_two_level, lowbit::nvfp4},       {lowbit::nvfp4, lowbit::vsquant(4, 4, 16)},
        {mxfp4_8, e5m2_8},                     {e4m3_64, e4m3_64},
        {lowbit::mxfp8_e5m2, lowbit::mxfp8_e5m2}};
    generator g(99);
    failure_log log;
    int index = 0;
    for (const auto& [fa, fb] : pairs) {
        for (int trial = 0; trial < 40; ++trial) {
            const std::size_t M = std::size_t(g.uniform(1, 6)), N = std::size_t(g.uniform(1, 6));
            const auto K = std::size_t(g.pick(std::vector<int>{16, 33, 64, 128}));
            const auto a = g.data(M, K, true, 0.0), b = g.data(K, N, true, 0.0);
            const auto A = lowbit::quantize_blocks(a.data(), M, K, fa, 1);
            const auto B = lowbit::quantize_blocks(b.data(), K, N, fb, 0);
            gemm_spec s = g.spec(false);
            if (trial % 4 == 0) s.accumulator = quantizer{};  // exact reductions keep wide totals
            if (trial % 4 <= 1) s.chunk_accumulator = quantizer{};
            compare(A, B, s, g.scale_product(false), "pair " + std::to_string(index), log);
        }
        ++index;
    }
    CHECK(log.failures == 0);
}

// ---------------------------------------------------------------------------------------------
// Integer accumulators, against a plain simulation of a P-bit two's complement register.

namespace {

// A 1 x K by K x 1 VS-Quant product with the given integer codes and vector scales, gamma = 1
// (so that every term is the integer d_b s_b and C is the register's final value).
std::pair<block_scaled_matrix, block_scaled_matrix> vsquant_pair(const std::vector<float>& codes_a,
                                                                 const std::vector<float>& codes_b,
                                                                 const std::vector<double>& scales_a,
                                                                 const std::vector<double>& scales_b, int V) {
    const block_format f = lowbit::vsquant(8, 8, V);
    block_scaled_matrix A{.rows = 1, .cols = codes_a.size(), .k_axis = 1, .format = f, .elements = codes_a,
                          .block_scales = scales_a, .coarse_scales = {1.0}};
    block_scaled_matrix B{.rows = codes_b.size(), .cols = 1, .k_axis = 0, .format = f, .elements = codes_b,
                          .block_scales = scales_b, .coarse_scales = {1.0}};
    return {A, B};
}

struct register_result {
    std::int64_t value = 0;
    std::uint64_t overflows = 0;
};

// acc = overflow(acc + t) for each term in order; wrap keeps acc modulo 2^P in
// [-2^(P-1), 2^(P-1)), saturate clamps.
register_result p_bit_register(const std::vector<std::int64_t>& terms, int P, bool wrap) {
    const std::int64_t lo = -(std::int64_t(1) << (P - 1)), hi = (std::int64_t(1) << (P - 1)) - 1;
    register_result r;
    for (const std::int64_t t : terms) {
        std::int64_t acc = r.value + t;  // |acc| < 2^62 here
        if (acc < lo || acc > hi) {
            ++r.overflows;
            if (wrap) {
                const std::int64_t span = std::int64_t(1) << P;
                acc = ((acc - lo) % span + span) % span + lo;
            } else {
                acc = acc < lo ? lo : hi;
            }
        }
        r.value = acc;
    }
    return r;
}

}  // namespace

TEST_CASE("VS-Quant integer accumulators wrap and saturate exactly where a P-bit register does",
          "[block_gemm][int]") {
    // Hand case: 8 vectors of 16 codes 127 (times codes -127 from vector 5 on) with scales 255 x
    // 255: each term is +-T, T = 16 * 127^2 * 255^2 = 16 780 611 600 (about 2^33.97). A 36-bit
    // register (range [-2^35, 2^35 - 1], 2^35 = 34 359 738 368) holds 2T and overflows on the
    // third term. Wrapping: 3T - 2^36 = -18 377 641 936, then -T twice more reaches -35.1e9 and
    // wraps again on the sixth term. Saturating: the third and fourth terms clip at 2^35 - 1,
    // and the negative terms then bring it down without overflow.
    const int V = 16, blocks = 8;
    const std::int64_t T = 16780611600;
    const std::vector<std::uint64_t> overflows_after_wrap{0, 0, 1, 1, 1, 2, 2, 2};
    const std::vector<std::uint64_t> overflows_after_saturate{0, 0, 1, 2, 2, 2, 2, 2};
    std::vector<float> codes_a(std::size_t(V * blocks), 127.0f), codes_b(std::size_t(V * blocks), 127.0f);
    for (int k = 4 * V; k < V * blocks; ++k) codes_b[std::size_t(k)] = -127.0f;
    for (const bool wrap : {true, false})
        for (int used = 1; used <= blocks; ++used) {
            // The first `used` vectors only: the register after each term.
            std::vector<float> a(codes_a.begin(), codes_a.begin() + used * V), b(codes_b.begin(), codes_b.begin() + used * V);
            const auto [A, B] = vsquant_pair(a, b, std::vector<double>(std::size_t(used), 255.0),
                                             std::vector<double>(std::size_t(used), 255.0), V);
            std::vector<std::int64_t> terms;
            for (int blk = 0; blk < used; ++blk) terms.push_back(blk < 4 ? T : -T);
            const register_result expected = p_bit_register(terms, 36, wrap);
            gemm_spec s;
            s.accumulator = int_quantizer{.format = {.bits = 36}, .on_overflow = wrap ? int_overflow::wrap : int_overflow::saturate};
            gemm_stats stats;
            const Eigen::MatrixXf C = lowbit::block_scaled_gemm(A, B, s, &stats);
            INFO((wrap ? "wrap" : "saturate") << ", " << used << " vectors");
            CHECK(expected.overflows == (wrap ? overflows_after_wrap : overflows_after_saturate)[std::size_t(used - 1)]);
            if (wrap && used == 3) CHECK(expected.value == -18377641936);
            if (!wrap && used == 4) CHECK(expected.value == (std::int64_t(1) << 35) - 1);
            CHECK(C(0, 0) == float(expected.value));
            CHECK(stats.accumulator_overflows == expected.overflows);
        }

    // Random codes, scales and register widths: every term, wrap and saturate.
    generator g(5);
    for (int trial = 0; trial < 300; ++trial) {
        const int N = g.pick(std::vector<int>{4, 6, 8}), M = g.uniform(1, 8), Vr = g.pick(std::vector<int>{8, 16, 32});
        const int nb = g.uniform(1, 12), K = nb * Vr - (g.chance(0.3) ? g.uniform(1, Vr - 1) : 0);
        const int qmax = (1 << (N - 1)) - 1;
        std::vector<float> a(static_cast<std::size_t>(K)), b(static_cast<std::size_t>(K));
        for (auto& x : a) x = float(g.uniform(-qmax, qmax));
        for (auto& x : b) x = float(g.uniform(-qmax, qmax));
        std::vector<double> sa(static_cast<std::size_t>(nb)), sb(static_cast<std::size_t>(nb));
        for (auto& x : sa) x = g.uniform(0, (1 << M) - 1);
        for (auto& x : sb) x = g.uniform(0, (1 << M) - 1);
        const auto [A, B] = vsquant_pair(a, b, sa, sb, Vr);
        std::vector<std::int64_t> terms;
        for (int blk = 0; blk < nb; ++blk) {
            std::int64_t d = 0;
            for (int k = blk * Vr; k < std::min(K, (blk + 1) * Vr); ++k)
                d += std::int64_t(a[std::size_t(k)]) * std::int64_t(b[std::size_t(k)]);
            terms.push_back(d * std::int64_t(sa[std::size_t(blk)]) * std::int64_t(sb[std::size_t(blk)]));
        }
        const int P = g.uniform(2 * N + M, 2 * N + 2 * M + 4);
        const bool wrap = g.chance(0.5);
        const register_result expected = p_bit_register(terms, P, wrap);
        gemm_spec s;
        s.accumulator = int_quantizer{.format = {.bits = P}, .on_overflow = wrap ? int_overflow::wrap : int_overflow::saturate};
        gemm_stats stats;
        const Eigen::MatrixXf C = lowbit::block_scaled_gemm(A, B, s, &stats);
        INFO("trial " << trial << ": P = " << P << (wrap ? " wrap" : " saturate") << ", " << nb << " vectors of " << Vr);
        CHECK(C(0, 0) == float(expected.value));
        CHECK(stats.accumulator_overflows == expected.overflows);
    }
}

TEST_CASE("block terms in fp32 and integer lanes equal the reference, and the report names them",
          "[block_gemm][lanes]") {
    // Formats whose block dots and terms are exact floats, or exact doubles (MXFP8 e4m3): the
    // lanes serve them where the spec allows (without stats). Ragged widths around the 64 lanes,
    // K around the block sizes.
    const std::vector<named_format> formats{{"mxfp8_e4m3 (double terms)", lowbit::mxfp8_e4m3},
                                            {"vsquant(8,8,32) (double terms)", lowbit::vsquant(8, 8, 32)},
                                            {"mxfp4", lowbit::mxfp4},
                                            {"mxfp6_e2m3", lowbit::mxfp6_e2m3},
                                            {"mxfp6_e3m2", lowbit::mxfp6_e3m2},
                                            {"mxint8", lowbit::mxint8},
                                            {"nvfp4", lowbit::nvfp4},
                                            {"vsquant(4,4,16)", lowbit::vsquant(4, 4, 16)},
                                            {"vsquant(3,2,16)", lowbit::vsquant(3, 2, 16)},
                                            {"vsquant(4,6,16) per tensor",
                                             lowbit::vsquant(4, 6, 16, lowbit::coarse_scope::per_tensor)}};
    generator g(4242);
    failure_log log;
    int trials = 0, in_lanes = 0;
    const auto check = [&](const block_scaled_matrix& A, const block_scaled_matrix& B, const gemm_spec& s,
                           const std::string& what) {
        gemm_stats unused;
        const Eigen::MatrixXf expected = reference_block_gemm(A, B, s, quantizer{}, &unused);
        lowbit::gemm_report report;
        const Eigen::MatrixXf got = lowbit::block_scaled_gemm(A, B, s, nullptr, &report);
        const std::string where = what + " " + std::to_string(A.rows) + "x" + std::to_string(A.cols) + "x" +
                                  std::to_string(B.cols) + "\n  " + describe(s, quantizer{});
        if (const auto d = matrix_difference(expected, got); !d.empty()) log.report("result " + where, d);
        return report;
    };
    for (const auto& [name, format] : formats)
        for (int trial = 0; trial < 50; ++trial) {
            const auto M = std::size_t(g.uniform(1, 9));
            const auto N = std::size_t(g.pick(std::vector<int>{1, 5, 63, 64, 65, 130}));
            const auto K = std::size_t(g.pick(std::vector<int>{1, 15, 16, 17, 64, 100}));
            const auto a = g.data(M, K, false, 0.0), b = g.data(K, N, false, 0.0);
            const auto A = lowbit::quantize_blocks(a.data(), M, K, format, 1);
            const auto B = lowbit::quantize_blocks(b.data(), K, N, format, 0);
            const auto report = check(A, B, g.spec(integer_valued(format)), name);
            in_lanes += report.kernel == lowbit::gemm_kernel::vectorized_chain;
            ++trials;
        }
    INFO(in_lanes << " of " << trials << " random specs ran in lanes");
    CHECK(in_lanes * 4 > trials);

    // The benchmarked configurations always do.
    const float_quantizer m7e4{.format = lowbit::lba_m7e4_acc, .mode = rounding::toward_zero};
    std::vector<std::pair<std::string, gemm_spec>> specs{
        {"fp32", gemm_spec{.accumulator = lowbit::fp32}},
        {"M7E4, chunks of 4 blocks in fp32", gemm_spec{.accumulator = m7e4, .chunk = 4, .chunk_accumulator = lowbit::fp32}},
        {"fp16 pairwise, chunks of 2", gemm_spec{.accumulator = lowbit::fp16, .model = lowbit::accumulation::pairwise,
                                                 .chunk = 2, .chunk_accumulator = lowbit::fp16}}};
    for (const auto& [name, format] : formats) {
        const auto a = g.data(9, 100, false, 0.0), b = g.data(100, 70, false, 0.0);
        const auto A = lowbit::quantize_blocks(a.data(), 9, 100, format, 1);
        const auto B = lowbit::quantize_blocks(b.data(), 100, 70, format, 0);
        auto all = specs;
        const bool double_terms = name.find("double terms") != std::string::npos;
        if (double_terms) all.pop_back();  // double terms: sequential and fma chains only
        if (integer_valued(format) && !double_terms)  // (integer lanes: terms below 2^31)
            for (const auto overflow : {int_overflow::wrap, int_overflow::saturate})
                all.push_back({"a 16-bit integer register, chunks of 3", gemm_spec{.accumulator = int_quantizer{.format = {.bits = 16}, .on_overflow = overflow},
                                                  .chunk = 3}});
        for (auto& [spec_name, s] : all) {
            const auto report = check(A, B, s, name + ", " + spec_name);
            INFO(name << ", " << spec_name << ": " << report.reason);
            CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
            s.threads = 1;
            const Eigen::MatrixXf one = lowbit::block_scaled_gemm(A, B, s);
            for (const int threads : {2, 3}) {  // the same bits for any thread count
                s.threads = threads;
                CHECK(matrix_difference(one, lowbit::block_scaled_gemm(A, B, s)).empty());
            }
        }
    }
    CHECK(log.failures == 0);
}

TEST_CASE("a NaN block scale makes exactly the outputs that use the block NaN", "[block_gemm][nan]") {
    generator g(3);
    for (const auto& [name, format] : presets()) {
        auto a = g.data(6, 64, false, 0.0), b = g.data(64, 5, false, 0.0);
        a[2 * 64 + 40] = std::numeric_limits<float>::quiet_NaN();  // row 2, second block (of 32 or 16)
        b[10 * 5 + 3] = std::numeric_limits<float>::infinity();     // column 3, first block
        const auto A = lowbit::quantize_blocks(a.data(), 6, 64, format, 1);
        const auto B = lowbit::quantize_blocks(b.data(), 64, 5, format, 0);
        const Eigen::MatrixXf C = lowbit::block_scaled_gemm(A, B, gemm_spec{.accumulator = lowbit::fp32});
        INFO(name);
        for (Eigen::Index i = 0; i < 6; ++i)
            for (Eigen::Index j = 0; j < 5; ++j) CHECK(std::isnan(C(i, j)) == (i == 2 || j == 3));
    }
}

TEST_CASE("block_scaled_gemm gives the same bits and events for any thread count", "[block_gemm][threads]") {
    generator g(17);
    for (const block_format& format : {lowbit::mxfp4, lowbit::mxfp8_e5m2, lowbit::vsquant(4, 4, 16)}) {
        const auto a = g.data(37, 300, true, 0.001), b = g.data(300, 70, true, 0.001);
        const auto A = lowbit::quantize_blocks(a.data(), 37, 300, format, 1);
        const auto B = lowbit::quantize_blocks(b.data(), 300, 70, format, 0);
        gemm_spec s{.accumulator = float_quantizer{.format = lowbit::bf16, .mode = rounding::stochastic, .seed = 9},
                    .chunk = 3, .chunk_accumulator = lowbit::fp32};
        s.threads = 1;
        gemm_stats one;
        const Eigen::MatrixXf C1 = lowbit::block_scaled_gemm(A, B, s, &one);
        for (const int threads : {2, 3}) {
            s.threads = threads;
            gemm_stats many;
            const Eigen::MatrixXf Cn = lowbit::block_scaled_gemm(A, B, s, &many);
            CHECK(matrix_difference(C1, Cn).empty());
            CHECK(stats_difference(one, many).empty());
        }
    }
}

TEST_CASE("block_scaled_gemm rejects bad operands and specs, naming the field", "[block_gemm][args]") {
    using lowbit_test::message_of;
    std::vector<float> x(64 * 64, 0.5f);
    const auto A = lowbit::quantize_blocks(x.data(), 4, 64, lowbit::mxfp4, 1);
    const auto B = lowbit::quantize_blocks(x.data(), 64, 3, lowbit::mxfp4, 0);
    const gemm_spec fine{};
    const auto check_message = [](const std::string& message, std::initializer_list<const char*> parts) {
        INFO(message);
        CHECK(!message.empty());
        for (const char* p : parts) CHECK(message.find(p) != std::string::npos);
    };
    const auto B48 = lowbit::quantize_blocks(x.data(), 48, 3, lowbit::mxfp4, 0);
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(A, B48, fine); }), {"shape mismatch", "4 x 64", "48 x 3"});
    const auto B16 = lowbit::quantize_blocks(x.data(), 64, 3, lowbit::nvfp4, 0);
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(A, B16, fine); }),
                  {"A.format.block_size = 32", "B.format.block_size = 16"});
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(B, B, fine); }), {"A.k_axis = 0", "k_axis = 1"});
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(A, A, fine); }), {"B.k_axis = 1", "k_axis = 0"});
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(A, B, gemm_spec{.input_a = lowbit::fp8_e4m3}); }),
                  {"spec.input_a", "unset"});
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(A, B, gemm_spec{.input_b = lowbit::fp8_e4m3}); }),
                  {"spec.input_b", "unset"});
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(A, B, gemm_spec{.chunk = -2}); }), {"chunk = -2"});
    check_message(message_of([&] {
                      (void)lowbit::block_scaled_gemm(A, B, gemm_spec{.product = float_format{.exp_bits = 11, .man_bits = 52}});
                  }),
                  {"spec.product", "man_bits = 52"});
    gemm_spec lost;
    lost.record_lost = true;
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(A, B, lost); }), {"record_lost", "gemm_stats"});
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(A, B, fine, quantizer(float_format{.exp_bits = 11, .man_bits = 10})); }),
                  {"scale_product", "exp_bits = 11", "2^-600"});
    check_message(message_of([&] {
                      (void)lowbit::block_scaled_gemm(A, B, fine, int_quantizer{.format = {.bits = 8}, .fraction_bits = 600});
                  }),
                  {"scale_product", "fraction_bits = 600"});
    auto bad = A;
    bad.block_scales[3] = 1.0 + 0x1p-30;
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(bad, B, fine); }),
                  {"A.block_scales[3] = 1.0000000009313226", "26 significant bits"});
    bad = A;
    bad.block_scales[1] = 0x1p-400;
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(bad, B, fine); }), {"A.block_scales[1]", "2^-300"});
    auto bad_b = B;
    bad_b.coarse_scales = {1.0, std::numeric_limits<double>::infinity(), 1.0};
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(A, bad_b, fine); }), {"B.coarse_scales[1] = inf", "finite"});
    bad = A;
    bad.elements.pop_back();
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(bad, B, fine); }), {"A.elements.size() = 255", "256"});
    bad = A;
    bad.block_scales.push_back(1.0);
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(bad, B, fine); }), {"A.block_scales.size() = 9", "8"});
    bad_b = B;
    bad_b.coarse_scales = {1.0, 1.0};
    check_message(message_of([&] { (void)lowbit::block_scaled_gemm(A, bad_b, fine); }), {"B.coarse_scales.size() = 2", "3"});
}

TEST_CASE("hand: MX scales and an fp32 accumulator give the dequantized product's value", "[block_gemm][hand]") {
    // A = [1.5 x 32 | 3 x 32] in MXFP4 with scales 2^0 and 2^1 (3 = 1.5 * 2), B = ones: C =
    // 32 * 1.5 + 32 * 3 = 144: the elements are 6 (= 1.5 / 2^-2, = 3 / 2^-1) and 4 (= 1 / 2^-2), so
    // the block terms are 32 * 24 / 16 = 48 and 32 * 24 / 8 = 96.
    std::vector<float> a(64, 1.5f), b(64, 1.0f);
    std::fill(a.begin() + 32, a.end(), 3.0f);
    const auto A = lowbit::quantize_blocks(a.data(), 1, 64, lowbit::mxfp4, 1);
    const auto B = lowbit::quantize_blocks(b.data(), 64, 1, lowbit::mxfp4, 0);
    REQUIRE(A.block_scales == std::vector<double>{0.25, 0.5});  // floor(log2 1.5) - 2 = -2; floor(log2 3) - 2 = -1
    CHECK(lowbit::block_scaled_gemm(A, B, gemm_spec{.accumulator = lowbit::fp32})(0, 0) == 144.0f);
    // A 4-bit accumulator (e2m1, saturating at 6) clips the first term, 48, to 6, then 6 + 96 to 6.
    gemm_stats stats;
    const float clipped = lowbit::block_scaled_gemm(
        A, B, gemm_spec{.accumulator = float_quantizer{.format = lowbit::fp4_e2m1, .on_overflow = lowbit::overflow::saturate}},
        &stats)(0, 0);
    CHECK(clipped == 6.0f);
    CHECK(stats.accumulator_overflows == 2);
    CHECK(stats.swamps == 1);
    CHECK(stats.macs == 64);
}
