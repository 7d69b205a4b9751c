// tests/datapath/lns_gemm_test.cpp: lowbit::lns_gemm against a slow reference written from the
// definition (lns_gemm.hpp's header): the converter's constants from MPFR, the products' logs
// from integer arithmetic, and every accumulation through the MPFR datapath reference of
// tests/datapath/gemm_reference.hpp (its chunk models, run over the converted terms instead of
// float products). Bit for bit, with events. Then the relation between per-product and bucketed
// accumulation (identity, and measured differences against the documented bounds), the error
// of the conversion against the exact linear products, the float entry points, threads and
// argument checks.
#include <lowbit/datapath/lns_core.hpp>  // the exact conversions checked below
#include <lowbit/datapath/lns_gemm.hpp>
#include <lowbit/types/lns_eigen.hpp>

#include "datapath/gemm_reference.hpp"
#include "support/exception_message.hpp"

#include "support/stats_difference.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>
#include <mpfr.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using lowbit_test::stats_difference;

using lowbit::accumulation;
using lowbit::float_format;
using lowbit::float_quantizer;
using lowbit::gemm_spec;
using lowbit::gemm_stats;
using lowbit::int_overflow;
using lowbit::int_quantizer;
using lowbit::lns_accumulation;
using lowbit::lns_conversion;
using lowbit::lns_converter;
using lowbit::lns_format;
using lowbit::lns_gemm_spec;
using lowbit::lns_matrix;
using lowbit::quantizer;
using lowbit::rounding;
using lowbit_test::message_of;
namespace ref = lowbit_test::gemm_ref;

// ---------------------------------------------------------------------------------------------
// The reference, from the definition.

// floor(s / g) for g > 0, any sign of s.
std::int64_t floor_div(std::int64_t s, std::int64_t g) {
    const std::int64_t q = s / g;
    return (s % g != 0 && s < 0) ? q - 1 : q;
}

// c_r: 2^(r/gamma) correctly rounded by MPFR to T fractional bits (T + 1 significant bits: the
// constant is in [1, 2]), or Mitchell's 1 + r/gamma.
ref::real constant_of(const lns_converter& c, std::int64_t r, int frac_bits) {
    if (c.method == lns_conversion::mitchell) return ref::add(ref::real(1.0), ref::scale2(ref::real(double(r)), -frac_bits));
    mpfr_t x, y;
    mpfr_init2(x, 64);
    mpfr_init2(y, c.table_bits + 1);
    mpfr_set_si_2exp(x, long(r), -frac_bits, MPFR_RNDN);
    mpfr_exp2(y, x, MPFR_RNDN);
    const ref::real v(mpfr_get_d(y, MPFR_RNDN));  // at most 53 bits: exact
    mpfr_clear(x);
    mpfr_clear(y);
    return v;
}

// The chunks, model, accumulator and chunk accumulator of gemm_spec.hpp applied to K exact terms,
// with the reference's own chunk models (reference_gemm's chunk loop, over given terms).
ref::real reference_reduce(const std::vector<ref::real>& terms, const gemm_spec& spec, std::uint64_t out,
                           gemm_stats& st, std::uint8_t* lost) {
    bool nonfinite = false;
    const std::uint64_t K = terms.size();
    ref::lane L{&nonfinite, spec, out, K, terms, terms, st, lost};
    const std::uint64_t chunk = spec.chunk == 0 ? std::max<std::uint64_t>(K, 1) : std::uint64_t(spec.chunk);
    const std::uint64_t chunks = (K + chunk - 1) / chunk;
    ref::real total(-0.0);  // (the chunk accumulator starts from -0, addition's identity)
    for (std::uint64_t c = 0; c < chunks; ++c) {
        const std::uint64_t start = c * chunk, n = std::min(chunk, K - start);
        accumulation model = spec.model;
        if (spec.accumulator.is_exact() && model != accumulation::fma) model = accumulation::fused;
        ref::real r;
        switch (model) {
            case accumulation::sequential: r = ref::chunk_sequential(L, start, n); break;
            case accumulation::fma: r = ref::chunk_fma(L, start, n); break;
            case accumulation::pairwise: r = ref::chunk_pairwise(L, start, n); break;
            case accumulation::fused: r = ref::chunk_fused(L, start, n); break;
            case accumulation::aligned: r = ref::chunk_aligned(L, start, n); break;
            case accumulation::two_level: throw std::logic_error("two_level: refused for LNS terms");
        }
        const ref::real t = L.round_sum(spec.chunk_accumulator, lowbit::gemm_role::chunk_accumulator, ref::add(total, r),
                                        L.out * chunks + c);
        if (!r.is_zero() && ref::equal(t, total)) ++st.swamps;
        total = t;
    }
    return total;
}

quantizer seed_plus(const quantizer& q, std::uint64_t r) {
    if (const auto* f = q.as_float()) {
        float_quantizer g = *f;
        g.seed += r;
        return g;
    }
    if (const auto* i = q.as_int()) {
        int_quantizer g = *i;
        g.seed += r;
        return g;
    }
    return q;
}

// C = A B on the LNS datapath, one definition per line. Every bucket is reduced (empty or not).
Eigen::MatrixXf reference_lns_gemm(const lns_matrix& A, const lns_matrix& B, const lns_gemm_spec& spec,
                                   gemm_stats* stats = nullptr) {
    const std::int64_t M = A.rows(), K = A.cols(), N = B.cols();
    const int b = A.format.frac_bits;
    const std::int64_t gamma = std::int64_t(1) << b;
    std::vector<ref::real> c;
    for (std::int64_t r = 0; r < gamma; ++r) c.push_back(constant_of(spec.conversion, r, b));
    const std::int64_t q_min = floor_div(std::int64_t(A.format.k_min()) + B.format.k_min(), gamma);
    gemm_stats st;
    st.macs = std::uint64_t(M * N * K);
    if (spec.datapath.record_lost) st.lost.assign(std::size_t(M * N * K), 0);
    Eigen::MatrixXf C(M, N);
    for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = 0; j < N; ++j) {
            const std::uint64_t out = std::uint64_t(i * N + j);
            std::uint8_t* lost = spec.datapath.record_lost ? st.lost.data() + out * std::uint64_t(K) : nullptr;
            std::vector<int> sign(static_cast<std::size_t>(K));
            std::vector<std::int64_t> q(static_cast<std::size_t>(K)), r(static_cast<std::size_t>(K));
            for (std::int64_t k = 0; k < K; ++k) {
                sign[std::size_t(k)] = A.sign(i, k) * B.sign(k, j);
                if (sign[std::size_t(k)] == 0) ++st.zero_operand;
                const std::int64_t s = std::int64_t(A.k(i, k)) + B.k(k, j);  // the product's log, exactly
                q[std::size_t(k)] = floor_div(s, gamma);
                r[std::size_t(k)] = s - q[std::size_t(k)] * gamma;
            }
            ref::real total;
            if (spec.accumulation == lns_accumulation::per_product) {
                std::vector<ref::real> t(static_cast<std::size_t>(K));
                for (std::size_t k = 0; k < t.size(); ++k)
                    if (sign[k] != 0) {
                        const ref::real v = ref::scale2(c[std::size_t(r[k])], long(q[k]));
                        t[k] = sign[k] < 0 ? ref::neg(v) : v;
                    }
                total = reference_reduce(t, spec.datapath, out, st, lost);
            } else {
                ref::real sum(0.0);
                for (std::int64_t bucket = 0; bucket < gamma; ++bucket) {
                    std::vector<ref::real> u(static_cast<std::size_t>(K));
                    for (std::size_t k = 0; k < u.size(); ++k)
                        if (sign[k] != 0 && r[k] == bucket) {
                            const ref::real v = ref::pow2(long(q[k] - q_min));
                            u[k] = sign[k] < 0 ? ref::neg(v) : v;
                        }
                    gemm_spec spec_r = spec.datapath;
                    spec_r.accumulator = seed_plus(spec_r.accumulator, std::uint64_t(bucket));
                    spec_r.chunk_accumulator = seed_plus(spec_r.chunk_accumulator, std::uint64_t(bucket));
                    const ref::real B_r = reference_reduce(u, spec_r, out, st, lost);
                    sum = ref::add(sum, ref::scale2(ref::mul(c[std::size_t(bucket)], B_r), long(q_min)));
                }
                bool nonfinite = false;
                ref::lane L{&nonfinite, spec.datapath, out, std::uint64_t(K), {}, {}, st, nullptr};
                total = L.round_sum(spec.bucket_sum, lowbit::gemm_role::product, sum, out);
            }
            C(i, j) = ref::to_float(total);
        }
    if (stats != nullptr) *stats = st;
    return C;
}

// ---------------------------------------------------------------------------------------------
// Data, printing and comparisons.

lns_matrix random_lns(std::int64_t rows, std::int64_t cols, const lns_format& f, std::mt19937_64& rng,
                      double zero_rate = 0.1) {
    lns_matrix m;
    m.format = f;
    m.k.resize(rows, cols);
    m.sign.resize(rows, cols);
    std::uniform_int_distribution<int> k(f.k_min(), f.k_max());
    std::uniform_real_distribution<double> u(0, 1);
    for (Eigen::Index t = 0; t < m.k.size(); ++t) {
        m.k.data()[t] = k(rng);
        const double v = u(rng);
        m.sign.data()[t] = std::int8_t(v < zero_rate ? 0 : v < (1 + zero_rate) / 2 ? -1 : 1);
    }
    return m;
}

Eigen::MatrixXf normal_matrix(Eigen::Index rows, Eigen::Index cols, std::mt19937_64& rng) {
    std::normal_distribution<float> d;
    Eigen::MatrixXf m(rows, cols);
    for (Eigen::Index t = 0; t < m.size(); ++t) m.data()[t] = d(rng);
    return m;
}

std::string describe(const quantizer& q) {
    std::ostringstream o;
    if (const auto* f = q.as_float())
        o << "float{e" << f->format.exp_bits << "m" << f->format.man_bits << "} " << lowbit::to_string(f->mode)
          << " seed " << f->seed;
    else if (const auto* i = q.as_int())
        o << "int{" << i->format.bits << ", fb " << i->fraction_bits << "} " << lowbit::to_string(i->mode)
          << (i->on_overflow == int_overflow::wrap ? " wrap" : " saturate") << " seed " << i->seed;
    else
        o << "exact";
    return o.str();
}

std::string describe(const lns_gemm_spec& s) {
    std::ostringstream o;
    o << lowbit::to_string(s.accumulation) << ", " << lowbit::to_string(s.conversion.method) << " T "
      << s.conversion.table_bits << ", model " << lowbit::to_string(s.datapath.model) << " chunk " << s.datapath.chunk
      << "\n  accumulator " << describe(s.datapath.accumulator) << "\n  chunk_accumulator "
      << describe(s.datapath.chunk_accumulator) << "\n  bucket_sum " << describe(s.bucket_sum);
    if (s.datapath.model == accumulation::aligned) o << "\n  window " << s.datapath.window << " group " << s.datapath.group;
    return o.str();
}

// The number of outputs whose bits differ.
int differing(const Eigen::MatrixXf& a, const Eigen::MatrixXf& b) {
    int n = 0;
    for (Eigen::Index t = 0; t < a.size(); ++t)
        n += std::bit_cast<std::uint32_t>(a.data()[t]) != std::bit_cast<std::uint32_t>(b.data()[t]);
    return n;
}


// lns_gemm with and without events equals the reference, bit for bit, events included.
void check_against_reference(const lns_matrix& A, const lns_matrix& B, const lns_gemm_spec& spec) {
    INFO(describe(spec));
    gemm_stats expected_stats, got_stats;
    const Eigen::MatrixXf expected = reference_lns_gemm(A, B, spec, &expected_stats);
    const Eigen::MatrixXf counted = lowbit::lns_gemm(A, B, spec, &got_stats);
    lns_gemm_spec uncounted = spec;  // the path without events (and the bucket shortcut)
    uncounted.datapath.record_lost = false;
    const Eigen::MatrixXf fast = lowbit::lns_gemm(A, B, uncounted);
    CHECK(differing(expected, counted) == 0);
    CHECK(differing(expected, fast) == 0);
    INFO(stats_difference(expected_stats, got_stats));
    CHECK(stats_difference(expected_stats, got_stats).empty());
}

const float_format narrow_acc{.exp_bits = 5, .man_bits = 4};  // 10 bits: rounds and swamps a lot
const std::vector<lns_converter> converters{
    {.method = lns_conversion::table, .table_bits = 52},
    {.method = lns_conversion::table, .table_bits = 3},
    {.method = lns_conversion::mitchell},
};

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("per-product LNS GEMM equals the reference for every accumulator, model and chunking",
          "[lns_gemm][reference]") {
    std::mt19937_64 rng(11);
    // Scaled so that no accumulator overflows to infinity (gemm_stats.hpp leaves the events of
    // infinite sums open): lns8_low products lie in 2^-25.75 .. 2^5.75.
    const lns_format lns8_low = lowbit::lns8.scaled(-40);
    const lns_format lns8_scaled = lowbit::lns8.scaled(-13);
    const lns_format small{.log_bits = 5, .frac_bits = 3, .offset = 4};
    std::vector<gemm_spec> specs;
    specs.push_back({});  // exact: fused over the whole K
    specs.push_back({.accumulator = lowbit::bf16});
    specs.push_back({.accumulator = float_quantizer{.format = lowbit::fp16, .mode = rounding::toward_zero},
                     .chunk = 4,
                     .chunk_accumulator = lowbit::fp32});
    specs.push_back({.accumulator = narrow_acc, .model = accumulation::pairwise, .chunk = 8, .chunk_accumulator = narrow_acc});
    specs.push_back({.accumulator = float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = rounding::toward_zero,
                                                    .on_overflow = lowbit::overflow::saturate},
                     .model = accumulation::fused,
                     .chunk = 16,
                     .chunk_accumulator = lowbit::lba_m7e4_acc});
    specs.push_back({.accumulator = lowbit::fp16, .model = accumulation::aligned, .window = 6, .group = 4});
    specs.push_back({.accumulator = lowbit::fp16, .model = accumulation::fma, .chunk = 5});
    specs.push_back({.accumulator = int_quantizer{.format = {.bits = 12}, .on_overflow = int_overflow::wrap, .fraction_bits = 4},
                     .chunk = 8,
                     .chunk_accumulator = int_quantizer{.format = {.bits = 16}, .on_overflow = int_overflow::saturate,
                                                        .fraction_bits = 4}});
    specs.push_back({.accumulator = float_quantizer{.format = lowbit::bf16, .mode = rounding::stochastic, .seed = 5},
                     .chunk = 4,
                     .chunk_accumulator = float_quantizer{.format = narrow_acc, .mode = rounding::stochastic, .seed = 9}});
    for (gemm_spec d : specs) {
        d.record_lost = true;
        for (const lns_converter& conversion : converters) {
            const lns_gemm_spec spec{.conversion = conversion, .datapath = d};
            check_against_reference(random_lns(3, 37, lns8_low, rng), random_lns(37, 4, lns8_low, rng), spec);
            check_against_reference(random_lns(2, 20, lns8_scaled, rng), random_lns(20, 3, small, rng), spec);
        }
    }
    // gamma = 1 (an integer log: plain powers of two) and gamma = 2^8.
    const lns_gemm_spec bf16_spec{.datapath = {.accumulator = lowbit::bf16, .chunk = 3}};
    check_against_reference(random_lns(2, 9, {.log_bits = 6, .frac_bits = 0}, rng),
                            random_lns(9, 2, {.log_bits = 4, .frac_bits = 0, .offset = 3}, rng), bf16_spec);
    check_against_reference(random_lns(2, 9, lowbit::lns16.scaled(-4000), rng),
                            random_lns(9, 2, lowbit::lns16.scaled(-4000), rng), bf16_spec);
}

TEST_CASE("per-product LNS GEMM runs in lanes: fp32 where the converted products are floats, else double",
          "[lns_gemm][reference][lanes]") {
    // Mitchell's constants and tables of up to 23 fraction bits make float products: the
    // vectorized reduction runs (float accumulators; sequential, fma, pairwise and fused models; the
    // aligned model where its cut sums fit fp32, which these wide products do not), bit for bit the
    // reference.
    // 70 columns: a full block of 64 and a padded one; two threads for some.
    std::mt19937_64 rng(13);
    const lns_format lns8_low = lowbit::lns8.scaled(-40);
    std::vector<gemm_spec> specs;
    specs.push_back({.accumulator = lowbit::fp32, .chunk = 16, .chunk_accumulator = lowbit::fp32});
    specs.push_back({.accumulator = lowbit::bf16, .chunk = 5, .chunk_accumulator = lowbit::fp32, .threads = 2});
    specs.push_back({.accumulator = narrow_acc, .model = accumulation::pairwise, .chunk = 8, .chunk_accumulator = narrow_acc});
    specs.push_back({.accumulator = float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = rounding::toward_zero,
                                                    .on_overflow = lowbit::overflow::saturate},
                     .model = accumulation::fused,
                     .chunk = 16,
                     .chunk_accumulator = lowbit::lba_m7e4_acc});
    specs.push_back({.accumulator = float_quantizer{.format = lowbit::fp16, .mode = rounding::toward_negative},
                     .model = accumulation::fma,
                     .chunk = 7,
                     .chunk_accumulator = lowbit::bf16});
    // (23-bit tables: the largest that are floats; their sums span too much for the fused model)
    for (const gemm_spec& d : specs)
        for (const int T : {0, 3, 12, 23}) {
            if (T == 23 && d.model == accumulation::fused) continue;
            const lns_converter conversion = T == 0 ? lns_converter{.method = lns_conversion::mitchell}
                                                    : lns_converter{.method = lns_conversion::table, .table_bits = T};
            const lns_gemm_spec spec{.conversion = conversion, .datapath = d};
            INFO(describe(spec));
            const lns_matrix A = random_lns(3, 37, lns8_low, rng), B = random_lns(37, 70, lns8_low, rng);
            const Eigen::MatrixXf expected = reference_lns_gemm(A, B, spec, nullptr);
            lowbit::gemm_report report;
            const Eigen::MatrixXf got = lowbit::lns_gemm(A, B, spec, nullptr, &report);
            INFO(report.reason);
            CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
            CHECK(differing(expected, got) == 0);
        }
    // Where the products are not floats (wider tables, the default T = 52 included, or products
    // beyond float's range), double lanes run the sequential and fma chains, bit for bit the reference.
    std::vector<gemm_spec> chains;
    chains.push_back({.accumulator = lowbit::fp32, .chunk = 16, .chunk_accumulator = lowbit::fp32});
    chains.push_back({.accumulator = lowbit::bf16, .chunk = 5, .chunk_accumulator = lowbit::fp32, .threads = 2});
    chains.push_back({.accumulator = float_quantizer{.format = lowbit::fp16, .mode = rounding::toward_negative},
                      .model = accumulation::fma,
                      .chunk = 7,
                      .chunk_accumulator = lowbit::bf16});
    chains.push_back({.accumulator = float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = rounding::toward_zero,
                                                     .on_overflow = lowbit::overflow::saturate},
                      .chunk = 16,
                      .chunk_accumulator = lowbit::lba_m7e4_acc});
    chains.push_back({.accumulator = narrow_acc});
    const lns_format lns16_low = lowbit::lns16.scaled(-4000), lns16_high = lowbit::lns16.scaled(2000);
    for (const gemm_spec& d : chains)
        for (const int T : {24, 37, 52}) {
            const lns_gemm_spec spec{.conversion = {.method = lns_conversion::table, .table_bits = T}, .datapath = d};
            INFO(describe(spec));
            for (const auto& [fa, fb] : {std::pair{lns8_low, lns8_low}, std::pair{lns16_low, lns16_high}}) {
                const lns_matrix A = random_lns(3, 37, fa, rng), B = random_lns(37, 70, fb, rng);
                const Eigen::MatrixXf expected = reference_lns_gemm(A, B, spec, nullptr);
                lowbit::gemm_report report;
                const Eigen::MatrixXf got = lowbit::lns_gemm(A, B, spec, nullptr, &report);
                INFO(report.reason);
                CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
                CHECK(differing(expected, got) == 0);
            }
        }
    // Float products beyond float's range take double lanes too (Mitchell, lns16 scaled far down).
    {
        const lns_gemm_spec spec{.conversion = {.method = lns_conversion::mitchell}, .datapath = chains[1]};
        const lns_matrix A = random_lns(4, 33, lns16_low, rng), B = random_lns(33, 65, lns16_low, rng);
        lowbit::gemm_report report;
        const Eigen::MatrixXf got = lowbit::lns_gemm(A, B, spec, nullptr, &report);
        CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
        CHECK(differing(reference_lns_gemm(A, B, spec, nullptr), got) == 0);
    }
    // Wide products in the other models: the exact path runs and says why.
    const lns_gemm_spec table52{.datapath = {.accumulator = lowbit::fp32, .model = accumulation::pairwise, .chunk = 4}};
    lowbit::gemm_report report;
    const lns_matrix A = random_lns(2, 5, lns8_low, rng), B = random_lns(5, 3, lns8_low, rng);
    const Eigen::MatrixXf got = lowbit::lns_gemm(A, B, table52, nullptr, &report);
    CHECK(differing(reference_lns_gemm(A, B, table52, nullptr), got) == 0);
    CHECK(report.kernel == lowbit::gemm_kernel::exact);
    CHECK_THAT(report.reason, Catch::Contains("52 fraction bits") && Catch::Contains("sequential and fma chains only"));
}

TEST_CASE("exact sums run in integer lanes: exact per-product accumulation and buckets that cannot overflow",
          "[lns_gemm][reference][lanes]") {
    // Outputs whose value is the exact sum of the converted products (rounded once by bucket_sum)
    // are summed 64 at a time in int64 lanes (int32 or int64 copies of B): bit for bit the
    // reference, for Mitchell's constants and a 16-bit table (the 52-bit one goes elsewhere),
    // narrow and wide products, every chunk model but aligned, 70 columns, one and two threads.
    std::mt19937_64 rng(19);
    const auto int_acc = [](int bits, int_overflow o) {
        return quantizer(int_quantizer{.format = {.bits = bits}, .on_overflow = o});
    };
    const lns_format lns8_low = lowbit::lns8.scaled(-40), lns16_narrow{.log_bits = 12, .frac_bits = 8};
    struct setting {
        lns_accumulation how;
        gemm_spec datapath;
        quantizer bucket_sum;
    };
    const std::vector<setting> settings{
        {lns_accumulation::per_product, {}, {}},
        {lns_accumulation::per_product, {.model = accumulation::pairwise, .chunk = 8, .threads = 2}, {}},
        {lns_accumulation::bucketed, {}, lowbit::bf16},
        {lns_accumulation::bucketed, {.accumulator = int_acc(48, int_overflow::wrap), .chunk = 16}, {}},
        {lns_accumulation::bucketed,
         {.accumulator = int_acc(44, int_overflow::saturate), .model = accumulation::fused, .chunk = 5,
          .chunk_accumulator = int_acc(50, int_overflow::wrap), .threads = 2},
         float_quantizer{.format = lowbit::fp16, .mode = rounding::toward_zero}},
    };
    for (const setting& set : settings)
        for (const int T : {0, 16, 52})
            for (const auto& [fa, fb] : {std::pair{lns8_low, lns8_low}, std::pair{lowbit::lns8, lowbit::lns8.scaled(30)},
                                         std::pair{lns16_narrow, lns16_narrow.scaled(-900)}}) {
                const lns_converter conversion = T == 0 ? lns_converter{.method = lns_conversion::mitchell}
                                                        : lns_converter{.method = lns_conversion::table, .table_bits = T};
                const lns_gemm_spec spec{.conversion = conversion, .accumulation = set.how, .datapath = set.datapath,
                                         .bucket_sum = set.bucket_sum};
                INFO(describe(spec) << " A " << fa.k_min() << ".." << fa.k_max());
                const lns_matrix A = random_lns(2, 29, fa, rng), B = random_lns(29, 70, fb, rng);
                lowbit::gemm_report report;
                const Eigen::MatrixXf got = lowbit::lns_gemm(A, B, spec, nullptr, &report);
                INFO(report.reason);
                // (the 52-bit table's constants leave too few bits: it goes elsewhere)
                CHECK((report.kernel == lowbit::gemm_kernel::integer_sum_lanes) == (T < 52));
                CHECK(differing(reference_lns_gemm(A, B, spec, nullptr), got) == 0);
            }
    // Buckets that a sum can overflow keep their own kernel (the 64-bit shortcut).
    const lns_gemm_spec narrow{.accumulation = lns_accumulation::bucketed,
                               .datapath = {.accumulator = int_acc(20, int_overflow::wrap)}};
    lowbit::gemm_report report;
    const lns_matrix A = random_lns(3, 37, lns8_low, rng), B = random_lns(37, 5, lns8_low, rng);
    const Eigen::MatrixXf got = lowbit::lns_gemm(A, B, narrow, nullptr, &report);
    CHECK(report.kernel == lowbit::gemm_kernel::integer_buckets);
    CHECK(differing(reference_lns_gemm(A, B, narrow, nullptr), got) == 0);
}

// lns8 at gamma 4 (sign + 7-bit k, base 2^(1/4)): products span 2^64, beyond the 64-bit shortcut,
// so exact buckets run in 128-bit integers (the final sum split in two halves of the constants).
// Bit for bit the reference: random codes, and codes at the top of the range (sums near 2^(126+)
// beyond which the split's second branch rounds the midpoint), for the exact table, a 16-bit table
// and Mitchell, bucketed and exact per-product, one and two threads. (The second branch is reached
// here: checked by moving its exponent, which fails the test. Its round-to-odd bit decides a
// float only when every bit of the sum between 2^26 and the float's guard bit cancels, which
// random or constructed-by-hand data do not reach; the argument is in the code's comment.)
TEST_CASE("wide exact bucket sums (lns8 at gamma 4) run in 128-bit integers", "[lns_gemm][reference][bucketed]") {
    std::mt19937_64 rng(44);
    const lns_format g4{.log_bits = 7, .frac_bits = 2};
    for (const auto& conversion : {lns_converter{}, lns_converter{.table_bits = 16}, lns_converter{.method = lns_conversion::mitchell}})
        for (const auto how : {lns_accumulation::bucketed, lns_accumulation::per_product})
            for (const int threads : {1, 2}) {
                const lns_gemm_spec spec{.conversion = conversion, .accumulation = how, .datapath = {.chunk = 16, .threads = threads}};
                INFO(describe(spec));
                for (const std::int64_t K : {45, 600}) {
                    const lns_matrix A = random_lns(3, K, g4.scaled(-20), rng), B = random_lns(K, 5, g4.scaled(7), rng);
                    lowbit::gemm_report report;
                    const Eigen::MatrixXf got = lowbit::lns_gemm(A, B, spec, nullptr, &report);
                    CHECK(report.kernel == lowbit::gemm_kernel::integer_buckets);
                    CHECK(differing(reference_lns_gemm(A, B, spec, nullptr), got) == 0);
                }
                // the largest codes: |sum| near K 2^63 units times 2^53 constants, past 2^126; a few
                // small and negative terms leave low bits that only the round-to-odd bit carries
                const std::int64_t K = 3136;
                lns_matrix A = random_lns(2, K, g4, rng, 0.0), B = random_lns(K, 3, g4, rng, 0.0);
                A.k.setConstant(g4.k_max());
                A.sign.setConstant(1);
                B.k.setConstant(g4.k_max() - 1);
                B.sign.setConstant(1);
                for (int t = 0; t < 20; ++t) {
                    A.k(t % 2, std::int64_t(rng() % K)) = g4.k_min() + int(rng() % 9);
                    B.sign(std::int64_t(rng() % K), t % 3) = -1;
                }
                lowbit::gemm_report report;
                const Eigen::MatrixXf got = lowbit::lns_gemm(A, B, spec, nullptr, &report);
                // (the data's own narrow spread lets Mitchell and the 16-bit table into int64 lanes)
                CHECK(report.kernel == (conversion.table_bits == 52 && conversion.method == lns_conversion::table
                                            ? lowbit::gemm_kernel::integer_buckets
                                            : lowbit::gemm_kernel::integer_sum_lanes));
                CHECK(differing(reference_lns_gemm(A, B, spec, nullptr), got) == 0);
            }
    // With a rounding bucket_sum or an accumulator the wide sums keep the exact path.
    const lns_gemm_spec rounded{.accumulation = lns_accumulation::bucketed, .bucket_sum = lowbit::bf16};
    lowbit::gemm_report report;
    (void)lowbit::lns_gemm(random_lns(2, 9, g4, rng), random_lns(9, 2, g4, rng), rounded, nullptr, &report);
    CHECK(report.kernel == lowbit::gemm_kernel::exact);
}

TEST_CASE("bucketed LNS GEMM equals its reference: integer buckets that wrap, saturate, truncate", "[lns_gemm][reference][bucketed]") {
    std::mt19937_64 rng(12);
    // lns8 products span q = -16 .. 15: unit terms up to 2^31.
    const auto int_acc = [](int bits, int_overflow o, int fraction_bits = 0, rounding mode = rounding::nearest_even,
                            std::uint64_t seed = 0) {
        return quantizer(int_quantizer{.format = {.bits = bits}, .mode = mode, .on_overflow = o,
                                       .fraction_bits = fraction_bits, .seed = seed});
    };
    std::vector<std::pair<gemm_spec, quantizer>> cases;  // datapath, bucket_sum
    cases.push_back({{}, {}});                            // exact buckets
    cases.push_back({{.accumulator = int_acc(20, int_overflow::wrap)}, {}});
    cases.push_back({{.accumulator = int_acc(26, int_overflow::wrap), .chunk = 6,
                      .chunk_accumulator = int_acc(22, int_overflow::wrap)}, lowbit::bf16});
    cases.push_back({{.accumulator = int_acc(24, int_overflow::saturate), .chunk = 8,
                      .chunk_accumulator = int_acc(30, int_overflow::saturate)},
                     float_quantizer{.format = lowbit::fp16, .mode = rounding::toward_zero}});
    cases.push_back({{.accumulator = int_acc(16, int_overflow::wrap, -6, rounding::toward_zero),
                      .model = accumulation::pairwise, .chunk = 16},
                     {}});
    cases.push_back({{.accumulator = int_acc(20, int_overflow::saturate, -4, rounding::stochastic, 3), .chunk = 7},
                     float_quantizer{.format = narrow_acc, .mode = rounding::stochastic, .seed = 4}});
    cases.push_back({{.accumulator = int_acc(40, int_overflow::wrap), .model = accumulation::aligned, .window = 8, .group = 4},
                     int_quantizer{.format = {.bits = 20}, .fraction_bits = 2}});
    cases.push_back({{.accumulator = int_acc(36, int_overflow::wrap), .model = accumulation::fused, .chunk = 9,
                      .chunk_accumulator = {}},
                     {}});
    // Shortcut-eligible buckets with the bucket_sum roundings that need the exact value.
    cases.push_back({{.accumulator = int_acc(30, int_overflow::wrap), .chunk = 10},
                     float_quantizer{.format = lowbit::bf16, .mode = rounding::stochastic, .seed = 8, .random_bits = 9}});
    cases.push_back({{}, int_quantizer{.format = {.bits = 24}, .mode = rounding::toward_negative, .fraction_bits = 4}});
    for (auto [d, bucket_sum] : cases) {
        d.record_lost = true;
        for (const lns_converter& conversion : converters) {
            const lns_gemm_spec spec{.conversion = conversion, .accumulation = lns_accumulation::bucketed, .datapath = d,
                                     .bucket_sum = bucket_sum};
            check_against_reference(random_lns(3, 33, lowbit::lns8, rng), random_lns(33, 3, lowbit::lns8, rng), spec);
            check_against_reference(random_lns(2, 21, lowbit::lns8.scaled(7), rng),
                                    random_lns(21, 2, {.log_bits = 5, .frac_bits = 3, .offset = -9}, rng), spec);
        }
    }
    // gamma = 2^8: 256 buckets.
    const lns_gemm_spec wide{.accumulation = lns_accumulation::bucketed,
                             .datapath = {.accumulator = int_acc(40, int_overflow::saturate)}};
    check_against_reference(random_lns(2, 12, lowbit::lns16.scaled(-3000), rng),
                            random_lns(12, 2, lowbit::lns16.scaled(-3000), rng), wide);
}

TEST_CASE("the bucket shortcut's 128-bit sums round to odd and convert exactly (MPFR)", "[lns_gemm][shortcut]") {
    // lns_round_odd(v, e): v 2^e truncated to 53 bits, the last bit set when inexact;
    // lns_exact_value(v, e): v 2^e exactly.
    std::mt19937_64 rng(19);
    for (int t = 0; t < 3000; ++t) {
        const int bits = 1 + int(rng() % 126);
        lowbit::detail::lns_int128 v = (lowbit::detail::lns_int128(rng() >> 1) << 63) | lowbit::detail::lns_int128(rng() >> 1);
        v >>= (126 - bits);
        if (rng() % 2) v = -v;
        if (t < 3) v = t == 0 ? 0 : t == 1 ? lowbit::detail::lns_int128(1) << 100 : -((lowbit::detail::lns_int128(1) << 60) + 1);
        const int e = int(rng() % 200) - 150;
        // v in MPFR from its 64-bit halves, exactly.
        const bool negative = v < 0;
        const auto m = negative ? lowbit::detail::lns_uint128(0) - lowbit::detail::lns_uint128(v)
                                : lowbit::detail::lns_uint128(v);
        mpfr_t x, hi, z;
        mpfr_inits2(256, x, hi, static_cast<mpfr_ptr>(nullptr));
        mpfr_init2(z, 53);
        mpfr_set_ui_2exp(hi, std::uint64_t(m >> 64) >> 32, 96, MPFR_RNDN);
        mpfr_set_ui_2exp(x, std::uint64_t(m >> 64) & 0xFFFFFFFFu, 64, MPFR_RNDN);
        mpfr_add(x, x, hi, MPFR_RNDN);
        mpfr_set_ui_2exp(hi, std::uint64_t(m) >> 32, 32, MPFR_RNDN);
        mpfr_add(x, x, hi, MPFR_RNDN);
        mpfr_add_ui(x, x, std::uint64_t(m) & 0xFFFFFFFFu, MPFR_RNDN);
        if (negative) mpfr_neg(x, x, MPFR_RNDN);
        mpfr_mul_2si(x, x, e, MPFR_RNDN);
        const int inexact = mpfr_set(z, x, MPFR_RNDZ);
        double expected = mpfr_get_d(z, MPFR_RNDN);
        if (inexact != 0 && (std::bit_cast<std::uint64_t>(expected) & 1) == 0)
            expected = std::nextafter(expected, negative ? -INFINITY : INFINITY);
        INFO("v bits " << bits << ", e " << e);
        CHECK(lowbit::detail::lns_round_odd(v, e) == expected);
        const lowbit::exact_sum s = lowbit::detail::lns_exact_value(v, e);
        CHECK(s.to_double_round_odd() == expected);
        lowbit::exact_sum difference = s;  // s - v 2^e = 0: subtract MPFR's value in 53-bit pieces
        for (int piece = 0; piece < 4 && mpfr_zero_p(x) == 0; ++piece) {
            mpfr_set(z, x, MPFR_RNDZ);
            difference.add(-mpfr_get_d(z, MPFR_RNDN));
            mpfr_sub(x, x, z, MPFR_RNDN);
        }
        CHECK(difference.is_zero());
        mpfr_clears(x, hi, z, static_cast<mpfr_ptr>(nullptr));
    }
}

TEST_CASE("bucketed = per-product, bit for bit, when both accumulate exactly (any table, Mitchell)",
          "[lns_gemm][identity]") {
    std::mt19937_64 rng(13);
    for (const lns_format f : {lowbit::lns8, lowbit::lns8.scaled(21), lns_format{.log_bits = 9, .frac_bits = 5, .offset = -40},
                               lowbit::lns16}) {
        const std::int64_t K = 64;
        const lns_matrix A = random_lns(6, K, f, rng), B = random_lns(K, 5, f, rng);
        const int gamma = f.gamma();
        const int span = int(floor_div(2 * f.k_max(), gamma) - floor_div(2 * f.k_min(), gamma));
        // A signed P-bit bucket holds K 2^span exactly when P >= span + ceil(log2 K) + 2.
        const int P = span + 6 + 2;
        for (const lns_converter& conversion : {converters[0], converters[1], converters[2],
                                               lns_converter{.method = lns_conversion::table, .table_bits = 20}}) {
            INFO("frac_bits " << f.frac_bits << ", offset " << f.offset << ", " << lowbit::to_string(conversion.method)
                              << " T " << conversion.table_bits << ", P " << P);
            // Per product through exact_datapath::reduce (with events: the path from the
            // definition; without, exact per-product accumulation takes the bucket shortcut).
            const lns_gemm_spec per_product{.conversion = conversion};
            gemm_stats ignored;
            const Eigen::MatrixXf exact = lowbit::lns_gemm(A, B, per_product, &ignored);
            CHECK(differing(exact, lowbit::lns_gemm(A, B, per_product)) == 0);
            lns_gemm_spec bucketed{.conversion = conversion, .accumulation = lns_accumulation::bucketed};
            CHECK(differing(exact, lowbit::lns_gemm(A, B, bucketed)) == 0);
            CHECK(differing(exact, lowbit::lns_gemm(A, B, bucketed, &ignored)) == 0);
            if (P <= 53) {  // integer buckets wide enough: wrap and saturate never act
                for (const int_overflow o : {int_overflow::wrap, int_overflow::saturate}) {
                    bucketed.datapath.accumulator = int_quantizer{.format = {.bits = P}, .on_overflow = o};
                    bucketed.datapath.chunk = 8;
                    bucketed.datapath.chunk_accumulator = bucketed.datapath.accumulator;
                    gemm_stats stats;
                    CHECK(differing(exact, lowbit::lns_gemm(A, B, bucketed, &stats)) == 0);
                    CHECK(differing(exact, lowbit::lns_gemm(A, B, bucketed)) == 0);
                    CHECK(stats.accumulator_overflows == 0);
                }
                // Wrapping buckets give the exact sum modulo 2^P whenever the total fits, whatever
                // the partial sums did: buckets of P bits that overflow on the way still agree when
                // the final bucket values fit (here: the same data with K = 2 terms per bucket
                // repeated with opposite signs cancels exactly).
                lns_matrix A2 = A, B2 = B;
                A2.k.conservativeResize(6, 2 * K);
                A2.sign.conservativeResize(6, 2 * K);
                B2.k.conservativeResize(2 * K, 5);
                B2.sign.conservativeResize(2 * K, 5);
                A2.k.rightCols(K) = A.k;
                A2.sign.rightCols(K) = (-A.sign.cast<int>()).cast<std::int8_t>();
                B2.k.bottomRows(K) = B.k;
                B2.sign.bottomRows(K) = B.sign;
                lns_gemm_spec narrow{.conversion = conversion, .accumulation = lns_accumulation::bucketed};
                narrow.datapath.accumulator = int_quantizer{.format = {.bits = std::max(2, span - 4)}, .on_overflow = int_overflow::wrap};
                const Eigen::MatrixXf cancelled = lowbit::lns_gemm(A2, B2, narrow);
                CHECK(cancelled.cwiseAbs().maxCoeff() == 0.0f);
                gemm_stats stats;
                (void)lowbit::lns_gemm(A2, B2, narrow, &stats);
                CHECK(stats.accumulator_overflows > 0);  // the partial sums did overflow
            }
        }
    }
}

TEST_CASE("per-product and bucketed differ by the accumulators' errors, within the documented bounds",
          "[lns_gemm][identity][bounds]") {
    // Per product with a float accumulator of unit roundoff u: each term is rounded at most d
    // times (sequential: chunk length + chunks; pairwise: ceil(log2 chunk) + chunks), so
    // |per_product - exact| <= ((1 + u)^d - 1) sum|t_k|; the exact buckets have no error; both
    // results are then rounded to float (2^-24 relative each).
    std::mt19937_64 rng(14);
    const std::int64_t M = 8, N = 8, K = 256;
    const lowbit::lns_quantizer q8{.format = lowbit::lns8};
    const lns_matrix A = lowbit::lns_encode(normal_matrix(M, K, rng), q8, lowbit::lns_input_scale::per_tensor_max);
    const lns_matrix B = lowbit::lns_encode(normal_matrix(K, N, rng), q8, lowbit::lns_input_scale::per_tensor_max);
    const float_format bf16_range_5bits{.exp_bits = 8, .man_bits = 4};  // no overflow or underflow at these sizes
    struct acc_case {
        float_quantizer q;
        accumulation model;
        int chunk;
    };
    const std::vector<acc_case> accs{{{.format = lowbit::fp32}, accumulation::sequential, 0},
                                     {{.format = lowbit::bf16}, accumulation::sequential, 0},
                                     {{.format = lowbit::bf16}, accumulation::sequential, 16},
                                     {{.format = lowbit::bf16, .mode = rounding::toward_zero}, accumulation::pairwise, 16},
                                     {{.format = bf16_range_5bits}, accumulation::sequential, 32},
                                     {{.format = bf16_range_5bits, .mode = rounding::toward_zero}, accumulation::sequential, 0}};
    for (const lns_converter& conversion : converters) {
        const lns_gemm_spec bucketed{.conversion = conversion, .accumulation = lns_accumulation::bucketed};
        const Eigen::MatrixXf exact = lowbit::lns_gemm(A, B, bucketed);
        const Eigen::MatrixXf absolute = lowbit::lns_gemm(  // sum |t_k|: the same terms, all positive
            lns_matrix{A.format, A.k, A.sign.cwiseAbs()}, lns_matrix{B.format, B.k, B.sign.cwiseAbs()},
            lns_gemm_spec{.conversion = conversion});
        for (const acc_case& a : accs) {
            const lns_gemm_spec per_product{.conversion = conversion,
                                            .datapath = {.accumulator = a.q, .model = a.model, .chunk = a.chunk,
                                                         .chunk_accumulator = a.q}};
            const Eigen::MatrixXf C = lowbit::lns_gemm(A, B, per_product);
            const bool nearest = a.q.mode == rounding::nearest_even;
            const double u = std::ldexp(1.0, -a.q.format.man_bits - (nearest ? 1 : 0));
            const std::int64_t chunk = a.chunk == 0 ? K : a.chunk, chunks = (K + chunk - 1) / chunk;
            const double d = double(a.model == accumulation::pairwise ? std::bit_width(std::uint64_t(chunk - 1)) : chunk) +
                             double(chunks);
            double worst = 0;
            for (Eigen::Index t = 0; t < C.size(); ++t) {
                const double diff = std::fabs(double(C.data()[t]) - double(exact.data()[t]));
                const double bound = std::expm1(d * std::log1p(u)) * double(absolute.data()[t]) * (1 + 0x1p-23) +
                                     0x1p-23 * (std::fabs(double(C.data()[t])) + std::fabs(double(exact.data()[t])));
                worst = std::max(worst, diff / bound);
            }
            // Norm-wise: ||per_product - bucketed|| / ||bucketed|| (outputs near 0 make elementwise
            // relative differences meaningless).
            const double normwise = (C - exact).cast<double>().norm() / exact.cast<double>().norm();
            INFO(lowbit::to_string(conversion.method) << " T " << conversion.table_bits << ", accumulator e"
                 << a.q.format.exp_bits << "m" << a.q.format.man_bits << " " << lowbit::to_string(a.q.mode) << " "
                 << lowbit::to_string(a.model) << " chunk " << a.chunk << ": largest difference / bound " << worst
                 << ", norm-wise relative difference " << normwise);
            CHECK(worst <= 1.0);
            if (a.q.format.man_bits < 23) CHECK(normwise > 0);  // they do differ
        }
    }
}

TEST_CASE("the conversion error against the exact linear products stays within its bound", "[lns_gemm][conversion]") {
    // sum_k sign 2^(s_k / gamma), exactly enough in MPFR, against the exactly accumulated
    // converted products: |difference| <= 2^-(T+1) sum|t| for a table, and for Mitchell at most
    // mitchell_max_relative_error of sum|exact| (and one-signed per term: Mitchell overestimates).
    std::mt19937_64 rng(15);
    const std::int64_t M = 4, N = 4, K = 200;
    const lns_matrix A = random_lns(M, K, lowbit::lns8, rng, 0.0), B = random_lns(K, N, lowbit::lns8, rng, 0.0);
    lns_matrix Bpos = B;  // all-positive products: the Mitchell error then has one sign
    Bpos.sign = A.sign.row(0).transpose().replicate(1, N);
    for (const lns_converter& conversion : {lns_converter{.table_bits = 2}, lns_converter{.table_bits = 8},
                                            lns_converter{.table_bits = 52}, lns_converter{.method = lns_conversion::mitchell}}) {
        const Eigen::MatrixXf C = lowbit::lns_gemm(A, Bpos, {.conversion = conversion});
        double worst = 0, worst_relative = 0;
        for (std::int64_t j = 0; j < N; ++j) {
            // Row 0 only: its products A(0, k) B(k, j) are all positive by construction.
            mpfr_t sum, sum_abs, term;
            mpfr_inits2(200, sum, sum_abs, term, static_cast<mpfr_ptr>(nullptr));
            mpfr_set_zero(sum, 1);
            for (std::int64_t k = 0; k < K; ++k) {
                mpfr_set_si_2exp(term, long(A.k(0, k)) + Bpos.k(k, j), -A.format.frac_bits, MPFR_RNDN);
                mpfr_exp2(term, term, MPFR_RNDN);
                mpfr_add(sum, sum, term, MPFR_RNDN);
            }
            const double exact = mpfr_get_d(sum, MPFR_RNDN);
            mpfr_clears(sum, sum_abs, term, static_cast<mpfr_ptr>(nullptr));
            const double got = double(C(0, j));
            const double allowed = conversion.method == lns_conversion::mitchell
                                       ? lowbit::mitchell_max_relative_error
                                       : std::ldexp(1.0, -(conversion.table_bits + 1));
            const double relative = (got - exact) / exact;
            worst = std::max(worst, std::fabs(relative) / (allowed + 0x1p-23));
            worst_relative = std::max(worst_relative, std::fabs(relative));
            if (conversion.method == lns_conversion::mitchell) CHECK(relative > 0);
        }
        INFO(lowbit::to_string(conversion.method) << " T " << conversion.table_bits << ": largest relative error "
             << worst_relative << ", / bound " << worst);
        CHECK(worst <= 1.0);
        if (conversion.method == lns_conversion::mitchell) CHECK(worst_relative > 0.02);  // a few percent, as expected
    }
}

TEST_CASE("lns_gemm on float matrices quantizes with the inputs' quantizers and per-tensor scales",
          "[lns_gemm][entry]") {
    std::mt19937_64 rng(16);
    const Eigen::MatrixXf A = normal_matrix(5, 23, rng), B = 3.0f * normal_matrix(23, 4, rng);
    lns_gemm_spec spec{.datapath = {.accumulator = lowbit::bf16, .chunk = 4}};
    spec.input_a.quantizer = {.format = lowbit::lns8, .mode = lowbit::lns_rounding::stochastic_log, .seed = 77};
    spec.input_b.quantizer = {.format = lowbit::lns8, .mode = lowbit::lns_rounding::nearest_linear};
    // The encodings, element by element, from lns_quantize (MPFR-tested in tests/rounding):
    const int ja = lowbit::lns_scale_exponent_for_max(double(A.cwiseAbs().maxCoeff()), lowbit::lns8);
    const int jb = lowbit::lns_scale_exponent_for_max(double(B.cwiseAbs().maxCoeff()), lowbit::lns8);
    lowbit::lns_quantizer qa = spec.input_a.quantizer, qb = spec.input_b.quantizer;
    qa.seed = lowbit::gemm_random_key(qa.seed, lowbit::gemm_role::input_a);
    qb.seed = lowbit::gemm_random_key(qb.seed, lowbit::gemm_role::input_b);
    const lns_matrix a = lowbit::lns_encode(A, qa, lowbit::lns_input_scale::per_tensor_max);
    const lns_matrix b = lowbit::lns_encode(B, qb, lowbit::lns_input_scale::per_tensor_max);
    CHECK(a.format == lowbit::lns8.scaled(ja));
    CHECK(b.format == lowbit::lns8.scaled(jb));
    lowbit::lns_quantizer qa_scaled = qa, qb_scaled = qb;
    qa_scaled.format = a.format;
    qb_scaled.format = b.format;
    for (Eigen::Index i = 0; i < A.rows(); ++i)
        for (Eigen::Index k = 0; k < A.cols(); ++k)
            CHECK(a.value(i, k) == qa_scaled(double(A(i, k)), std::uint64_t(i * A.cols() + k)));
    for (Eigen::Index k = 0; k < B.rows(); ++k)
        for (Eigen::Index j = 0; j < B.cols(); ++j)
            CHECK(b.value(k, j) == qb_scaled(double(B(k, j)), std::uint64_t(k * B.cols() + j)));
    CHECK(differing(lowbit::lns_gemm(A, B, spec), reference_lns_gemm(a, b, spec)) == 0);

    // Matrices of lns<F> numbers give their own codes.
    using l8 = lowbit::lns<lowbit::lns8>;
    Eigen::Matrix<l8, 2, 3> x;
    x << l8::from_k(false, 5), l8::zero(), l8::from_k(true, -63), l8::from_k(true, 63), l8(1.0), l8(-0.5);
    const lns_matrix e = lowbit::lns_encode(x);
    CHECK(e.format == lowbit::lns8);
    CHECK(e.sign(0, 1) == 0);
    CHECK((e.k(0, 0) == 5 && e.sign(0, 0) == 1 && e.k(0, 2) == -63 && e.sign(0, 2) == -1));
    CHECK((e.k(1, 1) == 0 && e.k(1, 2) == -8 && e.sign(1, 2) == -1));
    for (Eigen::Index i = 0; i < 2; ++i)
        for (Eigen::Index j = 0; j < 3; ++j) CHECK(e.value(i, j) == double(x(i, j)));
}

// refined(f): the same values (MPFR-correct magnitudes of both grids are the one real number
// 2^(k / 2^f0) = 2^(k 2^(f - f0) / 2^f), so the doubles are equal), the whole range of the coarse
// format inside the fine one's, and a product with an operand of the fine grid equals the
// reference's product of the values.
TEST_CASE("lns_matrix::refined holds the same values on a finer grid base", "[lns_gemm][entry]") {
    std::mt19937_64 rng(23);
    const lns_format five{.log_bits = 4, .frac_bits = 1, .offset = -5};  // 5-bit LNS, base 2^(1/2)
    const lns_matrix g = random_lns(6, 9, five, rng);
    for (int f = 1; f <= 4; ++f) {
        CAPTURE(f);
        const lns_matrix r = g.refined(f);
        REQUIRE_NOTHROW(r.validate("refined"));
        CHECK(r.format.frac_bits == f);
        CHECK(r.format.magnitude(r.format.k_min()) <= five.min_magnitude());
        CHECK(r.format.magnitude(r.format.k_max()) >= five.max_magnitude());
        for (Eigen::Index i = 0; i < g.rows(); ++i)
            for (Eigen::Index j = 0; j < g.cols(); ++j) CHECK(r.value(i, j) == g.value(i, j));
    }
    // every code of the coarse format, its extremes included
    lns_matrix all{five, Eigen::Matrix<std::int32_t, 1, Eigen::Dynamic>(five.magnitudes()),
                   Eigen::Matrix<std::int8_t, 1, Eigen::Dynamic>::Ones(five.magnitudes())};
    for (int k = five.k_min(); k <= five.k_max(); ++k) all.k(0, k - five.k_min()) = k;
    const lns_matrix all3 = all.refined(3);
    for (Eigen::Index j = 0; j < all.cols(); ++j) CHECK(all3.value(0, j) == all.value(0, j));
    // an lns8 operand times the refined one: the reference's product of the values
    const lns_matrix w = random_lns(9, 5, lowbit::lns8.scaled(4), rng);
    lns_gemm_spec spec;
    CHECK(differing(lowbit::lns_gemm(g.refined(3), w, spec), reference_lns_gemm(g.refined(3), w, spec)) == 0);
    CHECK_THAT(message_of([&] { (void)g.refined(0); }), Catch::Contains("coarser than the matrix's frac_bits = 1"));
    CHECK_THAT(message_of([&] { (void)random_lns(1, 1, {.log_bits = 13, .frac_bits = 3}, rng).refined(15); }),
               Catch::Contains("no valid lns_format"));
}

TEST_CASE("lns_encode gives each element's lns_round_magnitude, by the threshold table or not", "[lns_gemm][entry]") {
    // The table's branch-free loop (nearest_log and toward_zero up to 7 fraction bits) and the
    // general one, against lns_round_magnitude (MPFR-tested in tests/rounding) element by element:
    // zeros of both signs, infinities, values beyond both ends of the range, values next to the
    // thresholds 2^(i / 2^m) and subnormal doubles (which no float is).
    std::mt19937_64 rng(18);
    std::vector<double> values{0.0, -0.0, INFINITY, -INFINITY, 1e-300, -3e300, 0x1p-1074, -0x1p-1060, 1.0, -2.0};
    std::uniform_real_distribution<double> exponent(-30, 30);
    for (int t = 0; t < 300; ++t) values.push_back((t % 2 ? -1 : 1) * std::exp2(exponent(rng)));
    for (int m = 0; m <= 8; ++m)
        for (int i = 1; i < (1 << m); i += 1 + m) {
            const double x = std::exp2(double(i) / double(1 << m) - 3);
            for (const double y : {x, std::nextafter(x, 0.0), std::nextafter(x, 1.0), double(float(x)),
                                   double(std::nextafter(float(x), 0.0f)), double(std::nextafter(float(x), 1.0f))})
                values.push_back(y);
        }
    const auto n = Eigen::Index(values.size());
    const Eigen::MatrixXd as_doubles = Eigen::Map<const Eigen::MatrixXd>(values.data(), 2, n / 2);
    const Eigen::MatrixXf as_floats = as_doubles.cast<float>();
    for (const int frac_bits : {0, 1, 3, 5, 7, 8})
        for (const auto mode : {lowbit::lns_rounding::nearest_log, lowbit::lns_rounding::toward_zero})
            for (const auto under : {lowbit::lns_underflow::zero, lowbit::lns_underflow::smallest}) {
                const lns_format f = lns_format{.log_bits = frac_bits + 5, .frac_bits = frac_bits}.scaled(-frac_bits * 5);
                const lowbit::lns_quantizer q{.format = f, .mode = mode, .on_underflow = under};
                INFO("frac_bits " << frac_bits << " mode " << int(mode) << " underflow " << int(under));
                const auto check = [&](const auto& x) {
                    const lns_matrix e = lowbit::lns_encode(x, q);
                    for (Eigen::Index j = 0; j < x.cols(); ++j)
                        for (Eigen::Index i = 0; i < x.rows(); ++i) {
                            const double v = double(x(i, j));
                            const std::optional<int> k =
                                v == 0 ? std::nullopt : lowbit::lns_round_magnitude(std::fabs(v), f, mode, under);
                            INFO(std::hexfloat << v);
                            REQUIRE(int(e.sign(i, j)) == (!k ? 0 : v < 0 ? -1 : 1));
                            REQUIRE(e.k(i, j) == (k ? *k : f.k_min()));
                        }
                };
                check(as_floats);
                check(as_doubles);
                check(as_doubles.leftCols(3));  // (no subnormal: the table's loop alone)
            }
}

TEST_CASE("lns_gemm results and events do not depend on the thread count", "[lns_gemm][threads]") {
    std::mt19937_64 rng(17);
    const lns_matrix A = random_lns(37, 40, lowbit::lns8, rng), B = random_lns(40, 9, lowbit::lns8, rng);
    for (const lns_accumulation how : {lns_accumulation::per_product, lns_accumulation::bucketed}) {
        lns_gemm_spec spec{.accumulation = how};
        spec.datapath.accumulator = how == lns_accumulation::bucketed
                                        ? quantizer(int_quantizer{.format = {.bits = 24}, .mode = rounding::stochastic,
                                                                  .on_overflow = int_overflow::wrap, .fraction_bits = -3})
                                        : quantizer(float_quantizer{.format = lowbit::bf16, .mode = rounding::stochastic});
        spec.datapath.chunk = 8;
        gemm_stats one;
        spec.datapath.threads = 1;
        const Eigen::MatrixXf C1 = lowbit::lns_gemm(A, B, spec, &one);
        const Eigen::MatrixXf F1 = lowbit::lns_gemm(A, B, spec);
        for (const int t : {2, 3, 0}) {
            spec.datapath.threads = t;
            gemm_stats many;
            CHECK(differing(C1, lowbit::lns_gemm(A, B, spec, &many)) == 0);
            CHECK(differing(F1, lowbit::lns_gemm(A, B, spec)) == 0);
            CHECK(stats_difference(one, many).empty());
        }
        CHECK(differing(C1, F1) == 0);
    }
}

TEST_CASE("lns_gemm rejects bad specs and operands, naming the field and the value", "[lns_gemm][args]") {
    std::mt19937_64 rng(18);
    const lns_matrix A = random_lns(2, 3, lowbit::lns8, rng), B = random_lns(3, 2, lowbit::lns8, rng);
    const auto message = [&](const lns_matrix& a, const lns_matrix& b, const lns_gemm_spec& s) {
        return message_of([&] { (void)lowbit::lns_gemm(a, b, s); });
    };
    const auto has = [](const std::string& m, const std::string& part) {
        INFO("message: " << m << "\nexpected to contain: " << part);
        CHECK(m.find(part) != std::string::npos);
    };
    has(message(A, B, {.conversion = {.table_bits = 0}}), "conversion: lowbit::lns_converter: table_bits = 0");
    has(message(A, B, {.conversion = {.table_bits = 53}}), "table_bits = 53 must be in [1, 52]");
    has(message(A, B, {.accumulation = lns_accumulation(4)}), "accumulation = 4");
    has(message(A, B, {.datapath = {.accumulator = int_quantizer{.format = {.bits = 1}}}}), "bits = 1");
    has(message(A, B, {.datapath = {.chunk = -2}}), "chunk = -2");
    has(message(A, B, {.datapath = {.product = lowbit::bf16}}), "datapath.product must be unset");
    has(message(A, B, {.datapath = {.input_a = lowbit::bf16}}), "datapath.input_a must be unset");
    has(message(A, B, {.bucket_sum = lowbit::bf16}), "bucket_sum must be unset");
    has(message(A, B, {.accumulation = lns_accumulation::bucketed, .datapath = {.accumulator = lowbit::bf16}}),
        "datapath.accumulator is a float quantizer");
    has(message(A, B, {.accumulation = lns_accumulation::bucketed,
                       .datapath = {.chunk_accumulator = int_quantizer{.fraction_bits = 2}}}),
        "datapath.chunk_accumulator.fraction_bits = 2 must be <= 0");
    has(message(A, B, {.datapath = {.accumulator = float_format{.exp_bits = 8, .man_bits = 52}}}), "man_bits = 52");
    has(message(A, A, {}), "shape mismatch: A is 2 x 3 and B is 2 x 3");
    lns_matrix other = B;
    other.format.frac_bits = 4;
    has(message(A, other, {}), "B.format.frac_bits = 4 differs from A.format.frac_bits = 3");
    lns_matrix bad_k = A;
    bad_k.k(1, 2) = 64;
    bad_k.sign(1, 2) = 1;
    has(message(bad_k, B, {}), "A.k(1, 2) = 64 is outside [-63, 63]");
    lns_matrix bad_sign = B;
    bad_sign.sign(0, 1) = 2;
    has(message(A, bad_sign, {}), "B.sign(0, 1) = 2 must be -1, 0 or +1");
    lns_matrix bad_format = B;
    bad_format.format.log_bits = 1;
    has(message(A, bad_format, {}), "B.format: lowbit::lns_format: log_bits = 1");
    lns_matrix far = A, far_b = B;  // products up to 2^(2 * 8063 / 8)
    far.format.offset = far_b.format.offset = 8000;
    far.k.array() += 8000;
    far_b.k.array() += 8000;
    has(message(far, far_b, {}), "outside [2^-1022, 2^961]");
    lns_matrix wide_a = A, wide_b = B;  // a span of q over 1023 fits per product, not as bucket units
    wide_a.format = wide_b.format = {.log_bits = 12, .frac_bits = 3, .offset = -99};  // q in [-537, 487]
    wide_a.k.setConstant(0);
    wide_b.k.setConstant(0);
    CHECK(message(wide_a, wide_b, {}).empty());
    has(message(wide_a, wide_b, {.accumulation = lns_accumulation::bucketed}), "q_max - q_min = 1024 > 1023");
    has(message_of([&] { (void)lowbit::lns_gemm(A, B, {.datapath = {.record_lost = true}}); }),
        "record_lost = true needs a gemm_stats");
    Eigen::MatrixXf with_nan = Eigen::MatrixXf::Ones(2, 2);
    with_nan(1, 0) = std::nanf("");
    has(message_of([&] { (void)lowbit::lns_encode(with_nan, lowbit::lns_quantizer{}); }), "element (1, 0) is NaN");
    has(message_of([&] { (void)lowbit::lns_gemm(with_nan, Eigen::MatrixXf::Ones(2, 2), lns_gemm_spec{}); }),
        "element (1, 0) is NaN");
}
