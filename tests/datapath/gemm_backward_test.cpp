// tests/datapath/gemm_backward_test.cpp: lowbit::gemm_backward and lowbit::gemm_gradient_factors
// against an independent oracle (tests/datapath/gemm_backward_reference.hpp: the chain of each
// output unrolled in MPFR from the definitions of gemm_backward.hpp's top comment), bit for bit
// for the factors and to a tight bound for the gradients; plus hand-derived chains, thread
// invariance, finite differences where the GEMM is smooth, and argument checks.
//
// Choices where the header leaves room (also in the reference's top comment):
//  * "overflow" of a step or a product is the rounding without an upper limit landing beyond the
//    format's largest finite value (gemm_reference.hpp's `overflowed`; gemm_stats' "accumulator
//    roundings beyond the largest value"); for an integer accumulator, the rounded integer
//    outside its range. (The header's "the step's exact sum was beyond" reads the same except
//    for sums in (max, max + ulp) that round down to max: the test counts how often those occur.)
//  * a wrapping integer accumulator's overflow masks nothing; its swamps count as defined.
//  * overflow_only looks at product k's own product overflow and at the overflow of the step that
//    adds it, not at the overflow of its chunk's step.
//  * data with an infinity or NaN anywhere in the chain is not generated (the reference checks):
//    how a rounding of an infinite sum counts is not defined, as for gemm_stats.
#include <lowbit/datapath/gemm_backward.hpp>

#include <lowbit/datapath/gemm.hpp>

#include "datapath/gemm_backward_reference.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using lowbit::gemm_spec;
using lowbit::gradient_mode;
namespace bref = lowbit_test::backward_ref;

constexpr gradient_mode all_modes[] = {gradient_mode::ste, gradient_mode::overflow_only, gradient_mode::immediate,
                                       gradient_mode::recursive};

std::string hexfloat(double x) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%a (%.9g)", x, x);
    return buf;
}

std::string describe_events(std::uint8_t e) {
    std::string s;
    if (e & bref::product_overflow) s += " product_overflow";
    if (e & bref::product_flush) s += " product_flush";
    if (e & bref::step_overflow) s += " step_overflow";
    if (e & bref::addend_swamped) s += " addend_swamped";
    if (e & bref::sum_swamped) s += " sum_swamped";
    return s.empty() ? " -" : s;
}

std::string describe_chunk_events(std::uint8_t e) {
    std::string s;
    if (e & bref::chunk_step_overflow) s += " step_overflow";
    if (e & bref::chunk_addend_swamped) s += " addend_swamped";
    if (e & bref::chunk_sum_swamped) s += " sum_swamped";
    return s.empty() ? " -" : s;
}

// The reference's chain of output (i, j), step by step, for failure messages.
std::string describe_chain(const bref::result& R, const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, std::uint64_t i,
                           std::uint64_t j) {
    std::ostringstream o;
    const std::uint64_t out = i * R.N + j;
    o << "chain of output (" << i << ", " << j << "), K = " << R.K << ", chunk = " << R.chunk << ":\n";
    for (std::uint64_t c = 0; c < R.chunks; ++c) {
        const std::uint64_t start = c * R.chunk, end = std::min(R.K, start + R.chunk);
        for (std::uint64_t k = start; k < end; ++k) {
            const std::uint64_t e = out * R.K + k;
            o << "  k=" << k << " A=" << hexfloat(A(Eigen::Index(i), Eigen::Index(k)))
              << " B=" << hexfloat(B(Eigen::Index(k), Eigen::Index(j))) << " a=" << hexfloat(R.a[i * R.K + k])
              << " b=" << hexfloat(R.b[k * R.N + j]) << " x=" << hexfloat(R.x[e]) << " p=" << hexfloat(R.p[e])
              << " s=" << hexfloat(R.s[e]) << " events:" << describe_events(R.events[e]) << " g(ste,ovf,imm,rec)="
              << int(R.factors[0][e]) << int(R.factors[1][e]) << int(R.factors[2][e]) << int(R.factors[3][e]) << "\n";
        }
        const std::uint64_t ce = out * R.chunks + c;
        o << "  chunk " << c << ": S=" << hexfloat(R.S[ce]) << " T=" << hexfloat(R.T[ce])
          << " events:" << describe_chunk_events(R.chunk_events[ce]) << "\n";
    }
    return o.str();
}

// ---------------------------------------------------------------------------------------------
// Data: random values of a spec's scales, with adversarial ones mixed in.

struct data_scale {
    double typ = 1;     // ordinary values: typ * 2^U(-3, 1)
    double big = 24;    // large: big * U(0.7, 1) (products and sums saturate)
    double small = 0x1p-6;  // values whose products get swamped by ordinary sums
    double tiny = 0x1p-9;   // values whose products flush
    bool integers = false;  // integers: typ in [1, typ], big in [0.75 big, big], small and tiny 1
};

struct class_weights {
    double typ, big, small, tiny, zero;
};

enum value_class { typ_class, big_class, small_class, tiny_class, zero_class };

struct data_maker {
    std::mt19937_64 rng;
    explicit data_maker(std::uint64_t seed) : rng(seed) {}

    double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
    int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
    bool chance(double p) { return uniform(0, 1) < p; }
    template <class T>
    const T& pick(const std::vector<T>& v) {
        return v[std::size_t(uniform_int(0, int(v.size()) - 1))];
    }

    value_class draw_class(const class_weights& w) {
        const double total = w.typ + w.big + w.small + w.tiny + w.zero;
        double u = uniform(0, total);
        if ((u -= w.typ) < 0) return typ_class;
        if ((u -= w.big) < 0) return big_class;
        if ((u -= w.small) < 0) return small_class;
        if ((u -= w.tiny) < 0) return tiny_class;
        return zero_class;
    }

    float value(const data_scale& s, const class_weights& w) {
        const double sign = chance(0.5) ? -1.0 : 1.0;
        switch (draw_class(w)) {
            case typ_class:
                return float(sign * (s.integers ? double(uniform_int(1, int(s.typ))) : s.typ * std::exp2(uniform(-3, 1))));
            case big_class:
                return float(sign * (s.integers ? double(uniform_int(int(0.75 * s.big), int(s.big)))
                                                : s.big * uniform(0.7, 1.0)));
            case small_class: return float(sign * (s.integers ? 1.0 : s.small * std::exp2(uniform(-1, 1))));
            case tiny_class: return float(sign * (s.integers ? 1.0 : s.tiny * std::exp2(uniform(0, 2))));
            case zero_class: return chance(0.5) ? 0.0f : -0.0f;
        }
        return 0.0f;
    }

    // A (M x K) and B (K x N) in one of three regimes (mixed, saturating, tiny), with exact
    // cancellations: some products k + 1 are the negation of products k (A's column negated, B's
    // row repeated).
    void matrices(Eigen::MatrixXf& A, Eigen::MatrixXf& B, const data_scale& s, int regime) {
        static const class_weights a_weights[3] = {
            {0.50, 0.15, 0.12, 0.13, 0.10}, {0.30, 0.50, 0.05, 0.05, 0.10}, {0.20, 0.05, 0.30, 0.40, 0.05}};
        static const class_weights b_weights[3] = {
            {0.75, 0.05, 0.05, 0.08, 0.07}, {0.60, 0.30, 0.03, 0.02, 0.05}, {0.50, 0.05, 0.10, 0.30, 0.05}};
        for (Eigen::Index e = 0; e < A.size(); ++e) A.data()[e] = value(s, a_weights[regime]);
        for (Eigen::Index e = 0; e < B.size(); ++e) B.data()[e] = value(s, b_weights[regime]);
        for (Eigen::Index k = 0; k + 1 < A.cols(); ++k)
            if (chance(0.12)) {
                A.col(k + 1) = -A.col(k);
                B.row(k + 1) = B.row(k);
            }
    }

    Eigen::MatrixXf gradient(Eigen::Index rows, Eigen::Index cols) {
        Eigen::MatrixXf dC(rows, cols);
        for (Eigen::Index e = 0; e < dC.size(); ++e)
            dC.data()[e] = chance(0.1) ? 0.0f : float((chance(0.5) ? -1 : 1) * uniform(0.5, 2.0));
        return dC;
    }
};

// ---------------------------------------------------------------------------------------------
// Comparisons.

// The first mismatching factors of `got` against the reference, and how many.
struct factor_comparison {
    std::uint64_t mismatches = 0;
    std::string first;
};

factor_comparison compare_factors(const bref::result& R, const std::vector<std::uint8_t>& got, gradient_mode mode,
                                  const Eigen::MatrixXf& A, const Eigen::MatrixXf& B) {
    factor_comparison c;
    const auto& expected = R.factors[int(mode)];
    if (got.size() != expected.size()) {
        c.mismatches = 1;
        c.first = "factors: " + std::to_string(got.size()) + " values, expected " + std::to_string(expected.size());
        return c;
    }
    for (std::uint64_t e = 0; e < got.size(); ++e) {
        if (got[e] == expected[e]) continue;
        if (c.mismatches++ == 0) {
            const std::uint64_t k = e % R.K, out = e / R.K, i = out / R.N, j = out % R.N;
            std::ostringstream o;
            o << "mode " << lowbit::to_string(mode) << ": factor of (i, j, k) = (" << i << ", " << j << ", " << k
              << "): expected " << int(expected[e]) << ", got " << int(got[e]) << "\n"
              << describe_chain(R, A, B, i, j);
            c.first = o.str();
        }
    }
    return c;
}

// Whether got is within the test's bound of ref, given sum |terms|.
bool close(double got, long double ref, long double abs_terms) {
    const long double tolerance = std::ldexp(1.0L, -22) * std::fabs(ref) + std::ldexp(1.0L, -40) * abs_terms;
    return std::fabs((long double)got - ref) <= tolerance;
}

// gemm_backward's gradients against the contraction of the reference factors (mode index `m`)
// with the quantized inputs, in long double. Returns the number of mismatching elements; `first`
// describes the first.
std::uint64_t compare_gradients(const bref::result& R, const Eigen::MatrixXf& dC, const lowbit::gemm_gradients& g,
                                int m, std::string& first) {
    const std::uint64_t M = R.M, N = R.N, K = R.K;
    std::uint64_t bad = 0;
    if (std::uint64_t(g.a.rows()) != M || std::uint64_t(g.a.cols()) != K || std::uint64_t(g.b.rows()) != K ||
        std::uint64_t(g.b.cols()) != N) {
        first = "gradient shapes: a " + std::to_string(g.a.rows()) + " x " + std::to_string(g.a.cols()) + ", b " +
                std::to_string(g.b.rows()) + " x " + std::to_string(g.b.cols());
        return 1;
    }
    const auto& f = R.factors[m];
    for (std::uint64_t i = 0; i < M; ++i)
        for (std::uint64_t k = 0; k < K; ++k) {
            long double sum = 0, abs_terms = 0;
            for (std::uint64_t j = 0; j < N; ++j) {
                const long double t = (long double)dC(Eigen::Index(i), Eigen::Index(j)) * f[(i * N + j) * K + k] *
                                      (long double)R.b[k * N + j];
                sum += t;
                abs_terms += std::fabs(t);
            }
            const double got = g.a(Eigen::Index(i), Eigen::Index(k));
            if (!close(got, sum, abs_terms) && bad++ == 0)
                first = "dA(" + std::to_string(i) + ", " + std::to_string(k) + "): expected " +
                        hexfloat(double(sum)) + ", got " + hexfloat(got);
        }
    for (std::uint64_t k = 0; k < K; ++k)
        for (std::uint64_t j = 0; j < N; ++j) {
            long double sum = 0, abs_terms = 0;
            for (std::uint64_t i = 0; i < M; ++i) {
                const long double t = (long double)dC(Eigen::Index(i), Eigen::Index(j)) * f[(i * N + j) * K + k] *
                                      (long double)R.a[i * K + k];
                sum += t;
                abs_terms += std::fabs(t);
            }
            const double got = g.b(Eigen::Index(k), Eigen::Index(j));
            if (!close(got, sum, abs_terms) && bad++ == 0)
                first = "dB(" + std::to_string(k) + ", " + std::to_string(j) + "): expected " +
                        hexfloat(double(sum)) + ", got " + hexfloat(got);
        }
    return bad;
}

bool same_bits(const Eigen::MatrixXf& x, const Eigen::MatrixXf& y) {
    if (x.rows() != y.rows() || x.cols() != y.cols()) return false;
    for (Eigen::Index e = 0; e < x.size(); ++e)
        if (std::bit_cast<std::uint32_t>(x.data()[e]) != std::bit_cast<std::uint32_t>(y.data()[e])) return false;
    return true;
}

std::string describe_counts(const bref::event_counts& c) {
    std::ostringstream o;
    o << "product_overflow=" << c.product_overflow << " product_flush=" << c.product_flush
      << " step_overflow=" << c.step_overflow << " addend_swamped=" << c.addend_swamped
      << " sum_swamped=" << c.sum_swamped << " chunk_step_overflow=" << c.chunk_step_overflow
      << " chunk_addend_swamped=" << c.chunk_addend_swamped << " chunk_sum_swamped=" << c.chunk_sum_swamped
      << " overflow_definitions_differ=" << c.overflow_definitions_differ << " wraps=" << c.wraps;
    return o.str();
}

// ---------------------------------------------------------------------------------------------
// The specs of the random test.

struct spec_case {
    const char* text;
    data_scale scale;
    bool flagship = false;  // the fast path must be the one tested (N >= 64)
};

const data_scale m7e4_scale{.typ = 1.5, .big = 24, .small = 0x1p-6, .tiny = 0x1p-9};

const std::vector<spec_case>& spec_cases() {
    static const std::vector<spec_case> cases{
        // The flagship, in both of its rounding modes.
        {"input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:toward_zero accumulator=lba_m7e4_acc:toward_zero "
         "chunk_accumulator=lba_m7e4_acc:toward_zero",
         m7e4_scale, true},
        {"input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:nearest_even accumulator=lba_m7e4_acc:nearest_even "
         "chunk_accumulator=lba_m7e4_acc:nearest_even",
         m7e4_scale, true},
        // Small flush-and-saturate accumulators: M3E4 (max 60, min normal 2^-9) and M4E3 (bias 4:
        // max 15.5, min normal 2^-3).
        {"input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:toward_zero "
         "accumulator=m3e4,bias=10,subnormals=off,specials=none:toward_zero "
         "chunk_accumulator=m3e4,bias=10,subnormals=off,specials=none:toward_zero",
         m7e4_scale},
        {"input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:nearest_even "
         "accumulator=m4e3,bias=4,subnormals=off,specials=none:nearest_even "
         "chunk_accumulator=m4e3,bias=4,subnormals=off,specials=none:nearest_even",
         {.typ = 1, .big = 8, .small = 0x1p-4, .tiny = 0x1p-9}},
        // No product quantizer.
        {"input_a=fp8_e4m3 input_b=fp8_e4m3 accumulator=lba_m7e4_acc:toward_zero "
         "chunk_accumulator=lba_m7e4_acc:toward_zero",
         m7e4_scale},
        // fp16 that saturates (products up to 9e4: sums overflow), bf16 and fp32.
        {"input_a=fp8_e4m3 input_b=fp8_e4m3 accumulator=fp16:saturate chunk_accumulator=fp16:saturate",
         {.typ = 4, .big = 300, .small = 0x1p-6, .tiny = 0x1p-9}},
        {"accumulator=bf16 chunk_accumulator=bf16", {.typ = 1, .big = 64, .small = 0x1p-6, .tiny = 0x1p-12}},
        {"accumulator=fp32 chunk_accumulator=fp32", {.typ = 1, .big = 0x1p13, .small = 0x1p-13, .tiny = 0x1p-20}},
        // Stochastic accumulators (the chunk steps draw from their own stream).
        {"input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:toward_zero "
         "accumulator=lba_m7e4_acc:stochastic:seed=7 chunk_accumulator=lba_m7e4_acc:stochastic:seed=7",
         m7e4_scale},
        {"accumulator=bf16:stochastic:seed=3:random_bits=9 chunk_accumulator=fp32",
         {.typ = 1, .big = 64, .small = 0x1p-6, .tiny = 0x1p-12}},
        // A chunk accumulator other than the accumulator.
        {"input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:toward_zero "
         "accumulator=m3e4,bias=10,subnormals=off,specials=none:toward_zero "
         "chunk_accumulator=lba_m7e4_acc:nearest_even",
         m7e4_scale},
        {"accumulator=bf16:toward_zero chunk_accumulator=fp16:saturate",
         {.typ = 8, .big = 300, .small = 0x1p-6, .tiny = 0x1p-16}},
        // Integer accumulators on integer inputs (products on the grid): saturating and wrapping.
        {"input_a=int8:saturate input_b=int8:saturate accumulator=int16:saturate chunk_accumulator=int16:saturate",
         {.typ = 20, .big = 127, .small = 1, .tiny = 1, .integers = true}},
        {"input_a=int8:saturate input_b=int8:saturate accumulator=int16 chunk_accumulator=int16",
         {.typ = 20, .big = 127, .small = 1, .tiny = 1, .integers = true}},
        // An exact accumulator: only product events.
        {"input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:toward_zero", m7e4_scale},
    };
    return cases;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("gemm_backward: factors bit for bit and gradients against the MPFR oracle, every mode") {
    data_maker maker(20240611);
    bref::event_counts totals;
    std::uint64_t vectorized_checked = 0;
    const std::vector<int> Ms{1, 2, 3}, Ns{1, 3, 70, 130}, Ks{1, 2, 5, 17, 40};
    int case_number = 0;
    for (const spec_case& sc : spec_cases()) {
        const gemm_spec base = gemm_spec::parse(sc.text);
        for (int combo = 0; combo < 6; ++combo, ++case_number) {
            // Shapes: the first two combos have ragged blocks of 64 columns (70, 130).
            const int N = combo == 0 ? 130 : combo == 1 ? 70 : maker.pick(Ns);
            const int K = combo == 0 ? 40 : combo == 1 ? 17 : maker.pick(Ks);
            int M = maker.pick(Ms);
            if (M * N * K > 8000) M = 1;
            const std::vector<int> chunks{0, 1, 3, 16, K + 3};
            gemm_spec spec = base;
            spec.chunk = maker.pick(chunks);
            spec.model = combo % 2 == 0 ? lowbit::accumulation::sequential : lowbit::accumulation::fma;
            const int regime = combo % 3;
            Eigen::MatrixXf A(M, K), B(K, N);
            maker.matrices(A, B, sc.scale, regime);
            const Eigen::MatrixXf dC = maker.gradient(M, N);

            INFO("case " << case_number << ": spec '" << lowbit::to_string(spec) << "', M=" << M << " N=" << N
                         << " K=" << K << " regime=" << regime);
            const bref::result R = bref::reference_factors(A, B, spec);
            REQUIRE_FALSE(R.nonfinite);  // the data is meant to keep every chain finite
            totals += R.counts;

            for (const gradient_mode mode : all_modes) {
                INFO("mode " << lowbit::to_string(mode));
                lowbit::gemm_report report;
                const std::vector<std::uint8_t> got = lowbit::gemm_gradient_factors(A, B, spec, mode, &report);
                INFO("factors: kernel " << lowbit::to_string(report.kernel) << " (" << report.isa << "), reason '"
                                        << report.reason << "'");
                if (sc.flagship && N >= 64) {  // the fast path is the one tested
                    REQUIRE(report.kernel == lowbit::gemm_kernel::vectorized_chain);
                    ++vectorized_checked;
                }
                const factor_comparison c = compare_factors(R, got, mode, A, B);
                INFO(c.first);
                CHECK(c.mismatches == 0);

                lowbit::gemm_report backward_report;
                const lowbit::gemm_gradients g = lowbit::gemm_backward(A, B, dC, spec, mode, &backward_report);
                INFO("backward: kernel " << lowbit::to_string(backward_report.kernel) << ", reason '"
                                         << backward_report.reason << "'");
                if (sc.flagship && N >= 64) REQUIRE(backward_report.kernel == lowbit::gemm_kernel::vectorized_chain);
                std::string first;
                const std::uint64_t bad = compare_gradients(R, dC, g, int(mode), first);
                INFO(first);
                CHECK(bad == 0);
            }
        }
    }
    // Every event occurred somewhere (else the test could not fail on it).
    INFO("events over all cases: " << describe_counts(totals));
    CHECK(totals.product_overflow > 0);
    CHECK(totals.product_flush > 0);
    CHECK(totals.step_overflow > 0);
    CHECK(totals.addend_swamped > 0);
    CHECK(totals.sum_swamped > 0);
    CHECK(totals.chunk_step_overflow > 0);
    CHECK(totals.chunk_addend_swamped > 0);
    CHECK(totals.chunk_sum_swamped > 0);
    CHECK(totals.wraps > 0);
    CHECK(vectorized_checked > 0);
}

TEST_CASE("gemm_backward: each spec of the random test meets the events it is there for") {
    // The flagship alone, on saturating and tiny data, has every event of its own; so do the
    // integer accumulator that saturates (overflow) and the one that wraps (wraps, no overflow).
    data_maker maker(7);
    const auto events_of = [&](const spec_case& sc, int regime, int chunk, int N, int K) {
        gemm_spec spec = gemm_spec::parse(sc.text);
        spec.chunk = chunk;
        Eigen::MatrixXf A(2, K), B(K, N);
        maker.matrices(A, B, sc.scale, regime);
        const bref::result R = bref::reference_factors(A, B, spec);
        REQUIRE_FALSE(R.nonfinite);
        return R.counts;
    };
    bref::event_counts flagship;
    for (int regime = 0; regime < 3; ++regime)
        for (int chunk : {1, 3, 16}) flagship += events_of(spec_cases()[0], regime, chunk, 24, 40);
    INFO("flagship: " << describe_counts(flagship));
    CHECK(flagship.product_overflow > 0);
    CHECK(flagship.product_flush > 0);
    CHECK(flagship.step_overflow > 0);
    CHECK(flagship.addend_swamped > 0);
    CHECK(flagship.sum_swamped > 0);
    CHECK(flagship.chunk_step_overflow > 0);
    CHECK(flagship.chunk_addend_swamped > 0);
    CHECK(flagship.chunk_sum_swamped > 0);

    const spec_case& saturating = spec_cases()[12];
    const spec_case& wrapping = spec_cases()[13];
    REQUIRE(std::string(saturating.text).find("int16:saturate") != std::string::npos);
    REQUIRE(std::string(wrapping.text).find("accumulator=int16 ") != std::string::npos);
    const bref::event_counts sat = events_of(saturating, 1, 0, 16, 40);
    const bref::event_counts wrap = events_of(wrapping, 1, 0, 16, 40);
    INFO("int16 saturate: " << describe_counts(sat));
    INFO("int16 wrap: " << describe_counts(wrap));
    CHECK(sat.step_overflow > 0);
    CHECK(wrap.wraps > 0);
    CHECK(wrap.step_overflow == 0);
    CHECK(wrap.chunk_step_overflow == 0);
}

TEST_CASE("gemm_backward: ste is the gradient of the quantized operands' exact product, for any model") {
    data_maker maker(99);
    for (const char* model : {"pairwise", "fused", "aligned", "sequential"}) {
        const gemm_spec spec = gemm_spec::parse(
            std::string("input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:toward_zero "
                        "accumulator=lba_m7e4_acc:toward_zero chunk=16 chunk_accumulator=lba_m7e4_acc:toward_zero "
                        "model=") +
            model);
        INFO("spec '" << lowbit::to_string(spec) << "'");
        Eigen::MatrixXf A(3, 37), B(37, 70);
        maker.matrices(A, B, m7e4_scale, 0);
        const Eigen::MatrixXf dC = maker.gradient(3, 70);
        // The quantized operands (the reference's input quantization) and plain products with dC.
        gemm_spec sequential = spec;
        sequential.model = lowbit::accumulation::sequential;
        const bref::result R = bref::reference_factors(A, B, sequential);  // (its a, b; ste's factors are 1)
        const lowbit::gemm_gradients g = lowbit::gemm_backward(A, B, dC, spec, gradient_mode::ste);
        std::string first;
        const std::uint64_t bad = compare_gradients(R, dC, g, int(gradient_mode::ste), first);
        INFO(first);
        CHECK(bad == 0);
        const std::vector<std::uint8_t> f = lowbit::gemm_gradient_factors(A, B, spec, gradient_mode::ste);
        CHECK(f == std::vector<std::uint8_t>(std::size_t(3 * 70 * 37), 1));
    }
}

TEST_CASE("gemm_backward: results do not depend on the thread count") {
    data_maker maker(5);
    for (const std::size_t s : {0, 8, 13}) {  // the flagship, a stochastic accumulator, a wrapping integer one
        const spec_case& sc = spec_cases()[s];
        for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::fma}) {
            gemm_spec spec = gemm_spec::parse(sc.text);
            spec.chunk = 16;
            spec.model = model;
            Eigen::MatrixXf A(5, 40), B(40, 130);
            maker.matrices(A, B, sc.scale, 0);
            const Eigen::MatrixXf dC = maker.gradient(5, 130);
            for (const gradient_mode mode : all_modes) {
                INFO("spec '" << lowbit::to_string(spec) << "', mode " << lowbit::to_string(mode));
                gemm_spec one = spec, two = spec;
                one.threads = 1;
                two.threads = 2;
                const lowbit::gemm_gradients g1 = lowbit::gemm_backward(A, B, dC, one, mode);
                const lowbit::gemm_gradients g2 = lowbit::gemm_backward(A, B, dC, two, mode);
                CHECK(same_bits(g1.a, g2.a));
                CHECK(same_bits(g1.b, g2.b));
                CHECK(lowbit::gemm_gradient_factors(A, B, one, mode) == lowbit::gemm_gradient_factors(A, B, two, mode));
            }
        }
    }
}

TEST_CASE("gemm_backward: A, B and dC in any storage order, or expressions, give the same bits") {
    data_maker maker(13);
    using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    for (const std::size_t s : {0, 5}) {  // the fast path and the one-output-at-a-time path
        gemm_spec spec = gemm_spec::parse(spec_cases()[s].text);
        spec.chunk = 16;
        Eigen::MatrixXf A(3, 21), B(21, 70);
        maker.matrices(A, B, spec_cases()[s].scale, 0);
        const Eigen::MatrixXf dC = maker.gradient(3, 70);
        const row_major A_rows = A, B_rows = B, dC_rows = dC;
        const Eigen::MatrixXf dC_t = dC.transpose();
        Eigen::MatrixXf dC_wide = Eigen::MatrixXf::Zero(5, 75);  // dC as a block with an outer stride
        dC_wide.block(1, 2, 3, 70) = dC;
        for (const gradient_mode mode : all_modes) {
            INFO("spec '" << lowbit::to_string(spec) << "', mode " << lowbit::to_string(mode));
            const lowbit::gemm_gradients g = lowbit::gemm_backward(A, B, dC, spec, mode);
            const lowbit::gemm_gradients rows = lowbit::gemm_backward(A_rows, B_rows, dC_rows, spec, mode);
            const lowbit::gemm_gradients transposed = lowbit::gemm_backward(A, B, dC_t.transpose(), spec, mode);
            const lowbit::gemm_gradients block = lowbit::gemm_backward(A, B, dC_wide.block(1, 2, 3, 70), spec, mode);
            const lowbit::gemm_gradients doubled = lowbit::gemm_backward(A, B, dC.cast<double>(), spec, mode);
            const lowbit::gemm_gradients expression = lowbit::gemm_backward(A, B, 2.0f * dC, spec, mode);
            for (const auto* other : {&rows, &transposed, &block, &doubled}) {
                CHECK(same_bits(g.a, other->a));
                CHECK(same_bits(g.b, other->b));
            }
            // 2 dC: every term doubles, and so does every sum, exactly.
            CHECK(same_bits(Eigen::MatrixXf(2.0f * g.a), expression.a));
            CHECK(same_bits(Eigen::MatrixXf(2.0f * g.b), expression.b));
            CHECK(lowbit::gemm_gradient_factors(A, B, spec, mode) ==
                  lowbit::gemm_gradient_factors(A_rows, B_rows, spec, mode));
        }
    }
}

TEST_CASE("gemm_backward: central differences of a smooth GEMM (fp32 accumulator, exact inputs)") {
    // L(A, B) = sum dC .* gemm(A, B): linear in each element up to fp32's roundings of the sums
    // (no swamps at these magnitudes), so the central difference with h = 2^-6 matches the
    // gradient to about N * 2^-24 * |C| / h.
    const gemm_spec spec = gemm_spec::parse("accumulator=fp32 chunk=3 chunk_accumulator=fp32");
    data_maker maker(11);
    const Eigen::Index M = 3, K = 7, N = 5;
    Eigen::MatrixXf A(M, K), B(K, N), dC(M, N);
    for (Eigen::Index e = 0; e < A.size(); ++e) A.data()[e] = float(maker.uniform(-1, 1));
    for (Eigen::Index e = 0; e < B.size(); ++e) B.data()[e] = float(maker.uniform(-1, 1));
    for (Eigen::Index e = 0; e < dC.size(); ++e) dC.data()[e] = float(maker.uniform(-1, 1));
    const auto loss = [&] {
        const Eigen::MatrixXf C = lowbit::gemm(A, B, spec);
        double L = 0;
        for (Eigen::Index e = 0; e < C.size(); ++e) L += double(dC.data()[e]) * double(C.data()[e]);
        return L;
    };
    for (const gradient_mode mode : {gradient_mode::ste, gradient_mode::immediate, gradient_mode::recursive}) {
        INFO("mode " << lowbit::to_string(mode));
        const lowbit::gemm_gradients g = lowbit::gemm_backward(A, B, dC, spec, mode);
        const float h = 0x1p-6f;
        const auto check = [&](float& v, double analytic, const char* what, Eigen::Index r, Eigen::Index c) {
            const float saved = v;
            v = saved + h;
            const double up = loss();
            const float v_up = v;
            v = saved - h;
            const double down = loss();
            const double step = double(v_up) - double(v);
            v = saved;
            const double fd = (up - down) / step;
            INFO(what << "(" << r << ", " << c << "): backward " << analytic << ", central difference " << fd);
            CHECK(std::fabs(fd - analytic) <= 1e-3 * std::fabs(analytic) + 1e-4);
        };
        for (const auto& [r, c] : {std::pair{0, 0}, std::pair{1, 3}, std::pair{2, 6}, std::pair{2, 2}})
            check(A(r, c), g.a(r, c), "dA", r, c);
        for (const auto& [r, c] : {std::pair{0, 0}, std::pair{3, 1}, std::pair{6, 4}, std::pair{5, 2}})
            check(B(r, c), g.b(r, c), "dB", r, c);
    }
}

namespace {

// The factors of a 1 x K by K x 1 product (B = ones unless given) in every mode, from the
// implementation and from the reference, against the hand-derived ones.
void check_hand_case(const char* spec_text, const std::vector<float>& a, const std::vector<std::vector<int>>& expected,
                     const char* model = "sequential") {
    const gemm_spec spec = gemm_spec::parse(std::string(spec_text) + " model=" + model);
    const Eigen::Index K = Eigen::Index(a.size());
    Eigen::MatrixXf A(1, K), B = Eigen::MatrixXf::Ones(K, 1);
    for (Eigen::Index k = 0; k < K; ++k) A(0, k) = a[std::size_t(k)];
    const bref::result R = bref::reference_factors(A, B, spec);
    INFO("spec '" << lowbit::to_string(spec) << "'\n" << describe_chain(R, A, B, 0, 0));
    for (const gradient_mode mode : all_modes) {
        INFO("mode " << lowbit::to_string(mode));
        const std::vector<std::uint8_t> want(expected[std::size_t(mode)].begin(), expected[std::size_t(mode)].end());
        CHECK(R.factors[int(mode)] == want);  // the oracle agrees with the paper
        CHECK(lowbit::gemm_gradient_factors(A, B, spec, mode) == want);
        // dC = 2: dA(0, k) = 2 g_k (b = 1), dB(k, 0) = 2 g_k a_k.
        const lowbit::gemm_gradients g = lowbit::gemm_backward(A, B, Eigen::MatrixXf::Constant(1, 1, 2.0f), spec, mode);
        for (Eigen::Index k = 0; k < K; ++k) {
            CHECK(g.a(0, k) == 2.0f * float(want[std::size_t(k)]));
            CHECK(g.b(k, 0) == 2.0f * float(want[std::size_t(k)]) * A(0, k));
        }
    }
}

}  // namespace

TEST_CASE("gemm_backward: hand-derived chains") {
    // M7E4 accumulator (bias 10: min normal 2^-9, max 63.75, 7 mantissa bits), toward zero, no
    // input or product quantizer, one chunk.
    //   k0: 0 + 2^-5 = 2^-5
    //   k1: 2^-5 + 2^-13: the spacing at 2^-5 is 2^-12, so 2^-5: addend swamped
    //   k2: 2^-5 + 32: the spacing at 32 is 2^-2, so 32 = p2: sum swamped (ds2/ds1 = 0)
    //   k3: 32 + 1 = 33; chunk step 0 + 33 = 33
    // immediate: k1 only is 0; recursive: k0 also (the sum swamp at k2 cuts it), k1 0.
    const char* m7e4 = "accumulator=lba_m7e4_acc:toward_zero chunk_accumulator=lba_m7e4_acc:toward_zero";
    for (const char* model : {"sequential", "fma"})
        check_hand_case(m7e4, {0x1p-5f, 0x1p-13f, 32.0f, 1.0f}, {{1, 1, 1, 1}, {1, 1, 1, 1}, {1, 0, 1, 1}, {0, 0, 1, 1}},
                        model);

    // With the M7E4 product format (bias 12: min normal 2^-11, max 15.9375), toward zero:
    //   k0: p = 15, s = 15;  k1: s = 30
    //   k2: x = 20 > 15.9375: product overflow, p = 15.9375; s = 45.9375 -> 45.75 (spacing 1/4)
    //   k3: x = 2^-12 < 2^-11: product flush, p = 0, s = 45.75 (no addend to swamp)
    //   k4: s = 60.75;  k5: 75.75 beyond 63.75: step overflow, s = 63.75 (ds5/ds4 = 0)
    //   k6: p = -10, s = 53.75;  k7: p = 1/8, 53.875 -> 53.75: addend swamped
    //   chunk step: 0 + 53.75 = 53.75
    // overflow_only: k2, k5; immediate: k2, k3, k5, k7; recursive: everything up to k5 (the step
    // overflow at k5), and k7.
    check_hand_case("product=lba_m7e4_prod:toward_zero accumulator=lba_m7e4_acc:toward_zero "
                    "chunk_accumulator=lba_m7e4_acc:toward_zero",
                    {15, 15, 20, 0x1p-12f, 15, 15, -10, 0.125f},
                    {{1, 1, 1, 1, 1, 1, 1, 1},
                     {1, 1, 0, 1, 1, 0, 1, 1},
                     {1, 1, 0, 0, 1, 0, 1, 0},
                     {0, 0, 0, 0, 0, 0, 1, 0}});

    // Chunks of 2 (M7E4 accumulator and chunk accumulator, toward zero, no product quantizer):
    //   chunk 0: 2^-6 + 2^-6 = 2^-5; T0 = 2^-5
    //   chunk 1: 16 + 16 = 32; T1 = 2^-5 + 32 -> 32 = S1: chunk sum swamped (dT1/dT0 = 0)
    //   chunk 2: 2^-5 + 2^-5 = 2^-4; T2 = 32 + 2^-4 -> 32: chunk addend swamped (dT2/dS2 = 0)
    //   chunk 3: 20 + 10 = 30; T3 = 62
    // recursive: chunk 0 cut by T1's sum swamp, chunk 2 by its own addend swamp.
    check_hand_case("accumulator=lba_m7e4_acc:toward_zero chunk=2 chunk_accumulator=lba_m7e4_acc:toward_zero",
                    {0x1p-6f, 0x1p-6f, 16, 16, 0x1p-5f, 0x1p-5f, 20, 10},
                    {{1, 1, 1, 1, 1, 1, 1, 1},
                     {1, 1, 1, 1, 1, 1, 1, 1},
                     {1, 1, 1, 1, 1, 1, 1, 1},
                     {0, 0, 1, 1, 0, 0, 1, 1}});

    // A chunk step that overflows: chunk 0: 30 + 30 = 60; chunk 1: 10 + 0 = 10; T1 = 70 -> 63.75.
    // It cuts every product in recursive; overflow_only looks at the products' own steps only.
    check_hand_case("accumulator=lba_m7e4_acc:toward_zero chunk=2 chunk_accumulator=lba_m7e4_acc:toward_zero",
                    {30, 30, 10, 0}, {{1, 1, 1, 1}, {1, 1, 1, 1}, {1, 1, 1, 1}, {0, 0, 0, 0}});

    // Integer accumulators (int8): 100, 100 + 100 = 200 beyond 127, then - 100.
    //   saturate: 127 (step overflow), then 27: overflow_only and immediate cut k1, recursive k0 too
    //   wrap: -56, then -156 -> 100: the wrap masks nothing
    check_hand_case("accumulator=int8:saturate chunk_accumulator=int8:saturate", {100, 100, -100},
                    {{1, 1, 1}, {1, 0, 1}, {1, 0, 1}, {0, 0, 1}});
    check_hand_case("accumulator=int8 chunk_accumulator=int8", {100, 100, -100},
                    {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}});
}

TEST_CASE("gemm_backward: argument checks and gradient_mode names") {
    const Eigen::MatrixXf A = Eigen::MatrixXf::Ones(2, 3), B = Eigen::MatrixXf::Ones(3, 4),
                          dC = Eigen::MatrixXf::Ones(2, 4);
    const std::string flagship = "input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:toward_zero "
                                 "accumulator=lba_m7e4_acc:toward_zero chunk=16 "
                                 "chunk_accumulator=lba_m7e4_acc:toward_zero model=";
    for (const char* model : {"pairwise", "fused", "aligned"}) {
        const gemm_spec spec = gemm_spec::parse(flagship + model);
        INFO("model " << model);
        for (const gradient_mode mode : {gradient_mode::overflow_only, gradient_mode::immediate, gradient_mode::recursive}) {
            INFO("mode " << lowbit::to_string(mode));
            CHECK_THROWS_AS(lowbit::gemm_backward(A, B, dC, spec, mode), std::invalid_argument);
            CHECK_THROWS_AS(lowbit::gemm_gradient_factors(A, B, spec, mode), std::invalid_argument);
        }
        CHECK_NOTHROW(lowbit::gemm_backward(A, B, dC, spec, gradient_mode::ste));
        CHECK_NOTHROW(lowbit::gemm_gradient_factors(A, B, spec, gradient_mode::ste));
    }
    for (const char* model : {"sequential", "fma"}) {
        const gemm_spec spec = gemm_spec::parse(flagship + model);
        for (const gradient_mode mode : all_modes) {
            INFO("model " << model << ", mode " << lowbit::to_string(mode));
            CHECK_NOTHROW(lowbit::gemm_backward(A, B, dC, spec, mode));
            // A's columns != B's rows; dC of the wrong shape.
            CHECK_THROWS_AS(lowbit::gemm_backward(A, Eigen::MatrixXf::Ones(4, 4), dC, spec, mode), std::invalid_argument);
            CHECK_THROWS_AS(lowbit::gemm_gradient_factors(A, Eigen::MatrixXf::Ones(2, 4), spec, mode),
                            std::invalid_argument);
            CHECK_THROWS_AS(lowbit::gemm_backward(A, B, Eigen::MatrixXf::Ones(2, 3), spec, mode), std::invalid_argument);
            CHECK_THROWS_AS(lowbit::gemm_backward(A, B, Eigen::MatrixXf::Ones(4, 2), spec, mode), std::invalid_argument);
            CHECK_THROWS_AS(lowbit::gemm_backward(A, B, Eigen::MatrixXf::Ones(3, 4), spec, mode), std::invalid_argument);
        }
    }
    for (const gradient_mode mode : all_modes) CHECK(lowbit::parse_gradient_mode(lowbit::to_string(mode)) == mode);
    CHECK(std::string(lowbit::to_string(gradient_mode::overflow_only)) == "overflow_only");
    CHECK_THROWS_AS(lowbit::parse_gradient_mode("foo"), std::invalid_argument);
    CHECK_THROWS_AS(lowbit::parse_gradient_mode("STE"), std::invalid_argument);
    CHECK_THROWS_AS(lowbit::parse_gradient_mode(""), std::invalid_argument);
}
