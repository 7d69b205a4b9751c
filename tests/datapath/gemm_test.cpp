// tests/datapath/gemm_test.cpp: lowbit::gemm against an independent MPFR reference
// (tests/datapath/gemm_reference.hpp), bit for bit, with its events; plus hand-derived cases,
// argument checks, layout and thread invariance, and the "chunking helps" experiment.
#include <lowbit/datapath/gemm.hpp>

#include "datapath/gemm_reference.hpp"

#include "support/stats_difference.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using lowbit_test::stats_difference;

using lowbit::accumulation;
using lowbit::alignment_cut;
using lowbit::float_format;
using lowbit::float_quantizer;
using lowbit::gemm_spec;
using lowbit::gemm_stats;
using lowbit::int_format;
using lowbit::int_overflow;
using lowbit::int_quantizer;
using lowbit::quantizer;
using lowbit::rounding;
using lowbit::special_values;

// ---------------------------------------------------------------------------------------------
// Printing (for failure messages).

std::string hexfloat(double x) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%a", x);
    return buf;
}

std::string bits_of(float x) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", std::bit_cast<std::uint32_t>(x));
    return buf;
}

std::string describe(const float_format& f) {
    std::ostringstream o;
    o << "{e" << f.exp_bits << "m" << f.man_bits << " bias=" << f.exponent_bias()
      << (f.subnormals ? "" : " flush")
      << (f.specials == special_values::ieee ? " ieee" : f.specials == special_values::fn ? " fn" : " none")
      << (f.is_signed ? "" : " unsigned") << (f.has_zero ? "" : " nozero") << "}";
    return o.str();
}

std::string describe(const quantizer& q) {
    std::ostringstream o;
    if (const auto* f = q.as_float()) {
        o << "float" << describe(f->format) << " " << lowbit::to_string(f->mode) << " "
          << lowbit::to_string(f->on_overflow);
        if (f->mode == rounding::stochastic) o << " seed=" << f->seed << " R=" << f->random_bits;
    } else if (const auto* i = q.as_int()) {
        o << "int{" << i->format.bits << (i->format.is_signed ? " signed" : " unsigned") << " fb=" << i->fraction_bits
          << "} " << lowbit::to_string(i->mode) << (i->on_overflow == int_overflow::wrap ? " wrap" : " saturate");
        if (i->mode == rounding::stochastic) o << " seed=" << i->seed << " R=" << i->random_bits;
    } else {
        o << "exact";
    }
    return o.str();
}

std::string describe(const gemm_spec& s) {
    std::ostringstream o;
    o << "model=" << lowbit::to_string(s.model) << " chunk=" << s.chunk << "\n  input_a=" << describe(s.input_a)
      << "\n  input_b=" << describe(s.input_b) << "\n  product=" << describe(s.product)
      << "\n  accumulator=" << describe(s.accumulator) << "\n  chunk_accumulator=" << describe(s.chunk_accumulator);
    if (s.model == accumulation::aligned)
        o << "\n  window=" << s.window << " group=" << s.group
          << " cut=" << (s.cut == alignment_cut::toward_zero ? "toward_zero" : "toward_negative");
    return o.str();
}

std::string describe(const Eigen::MatrixXf& m) {
    std::ostringstream o;
    o << m.rows() << "x" << m.cols() << " [";
    for (Eigen::Index i = 0; i < m.rows(); ++i) {
        o << (i ? "; " : "");
        for (Eigen::Index j = 0; j < m.cols(); ++j) o << (j ? ", " : "") << hexfloat(m(i, j));
    }
    o << "]";
    return o.str();
}

std::string describe(const gemm_stats& s) {
    std::ostringstream o;
    o << "macs=" << s.macs << " zero_operand=" << s.zero_operand << " product_overflows=" << s.product_overflows
      << " product_underflows=" << s.product_underflows << " accumulator_overflows=" << s.accumulator_overflows
      << " swamps=" << s.swamps << " inexact_additions=" << s.inexact_additions << " lost.size=" << s.lost.size();
    return o.str();
}

// ---------------------------------------------------------------------------------------------
// Comparisons.

bool same_bits(float a, float b) {
    if (std::isnan(a) && std::isnan(b)) return true;
    return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

// "" when equal, else the first difference.
std::string matrix_difference(const Eigen::MatrixXf& expected, const Eigen::MatrixXf& got) {
    if (expected.rows() != got.rows() || expected.cols() != got.cols())
        return "shape: expected " + std::to_string(expected.rows()) + "x" + std::to_string(expected.cols()) +
               ", got " + std::to_string(got.rows()) + "x" + std::to_string(got.cols());
    int differing = 0, zero_sign = 0, lost_nan = 0;
    std::string first;
    for (Eigen::Index i = 0; i < expected.rows(); ++i)
        for (Eigen::Index j = 0; j < expected.cols(); ++j)
            if (!same_bits(expected(i, j), got(i, j))) {
                if (expected(i, j) == 0 && got(i, j) == 0) ++zero_sign;
                if (std::isnan(expected(i, j))) ++lost_nan;
                if (differing++ == 0)
                    first = "C(" + std::to_string(i) + "," + std::to_string(j) + "): expected " +
                            hexfloat(expected(i, j)) + " (" + bits_of(expected(i, j)) + "), got " +
                            hexfloat(got(i, j)) + " (" + bits_of(got(i, j)) + ")";
            }
    if (differing == 0) return "";
    std::string kinds;
    if (zero_sign != 0) kinds += ", " + std::to_string(zero_sign) + " only in the sign of a zero";
    if (lost_nan != 0) kinds += ", " + std::to_string(lost_nan) + " where the reference is NaN";
    return std::to_string(differing) + " elements differ" + kinds + "; first " + first;
}


// ---------------------------------------------------------------------------------------------
// Random specs and data.

struct generator {
    std::mt19937_64 rng;
    explicit generator(std::uint64_t seed) : rng(seed) {}

    int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
    bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
    double normal() { return std::normal_distribution<double>(0, 1)(rng); }
    template <class T>
    const T& pick(const std::vector<T>& v) {
        return v[std::size_t(uniform(0, int(v.size()) - 1))];
    }

    rounding mode() {
        static const std::vector<rounding> modes{rounding::nearest_even, rounding::nearest_away, rounding::toward_zero,
                                                 rounding::toward_positive, rounding::toward_negative,
                                                 rounding::stochastic, rounding::odd};
        return pick(modes);
    }
    rounding paper_mode() { return chance(0.5) ? rounding::toward_zero : rounding::nearest_even; }
    lowbit::overflow overflow_policy() { return chance(0.5) ? lowbit::overflow::saturate : lowbit::overflow::infinity; }
    int random_bits() { return chance(0.7) ? 32 : uniform(1, 31); }

    float_quantizer float_q(const float_format& f, rounding m) {
        return float_quantizer{.format = f,
                               .mode = m,
                               .on_overflow = overflow_policy(),
                               .seed = std::uint64_t(uniform(0, 5)),  // seeds shared on purpose
                               .random_bits = random_bits()};
    }
    float_quantizer float_q(const float_format& f) { return float_q(f, mode()); }

    int_quantizer int_q(int bits, bool is_signed, int fraction_bits = 0) {
        return int_quantizer{.format = {.bits = bits, .is_signed = is_signed},
                             .mode = mode(),
                             .on_overflow = chance(0.5) ? int_overflow::wrap : int_overflow::saturate,
                             .fraction_bits = fraction_bits,
                             .seed = std::uint64_t(uniform(0, 5)),
                             .random_bits = random_bits()};
    }

    // The M7E4 formats of the paper and variants of the small formats.
    static float_format m7e4(int bias) {
        return float_format{.exp_bits = 4, .man_bits = 7, .bias = bias, .subnormals = false,
                            .specials = special_values::none};
    }
    float_format m3e4() {
        static const std::vector<float_format> v{
            float_format{.exp_bits = 4, .man_bits = 3},
            float_format{.exp_bits = 4, .man_bits = 3, .subnormals = false},
            float_format{.exp_bits = 4, .man_bits = 3, .specials = special_values::none},
            float_format{.exp_bits = 4, .man_bits = 3, .bias = 10, .subnormals = false,
                         .specials = special_values::none},
            float_format{.exp_bits = 4, .man_bits = 3, .bias = 4},
            lowbit::fp8_e4m3,
        };
        return pick(v);
    }
    float_format input_format() {
        static const std::vector<float_format> v{lowbit::fp8_e4m3, lowbit::fp8_e5m2, lowbit::bf16,
                                                 lowbit::fp16,     lowbit::fp6_e2m3, lowbit::fp6_e3m2,
                                                 lowbit::fp4_e2m1, lowbit::tf32,     lowbit::fp8_e4m3,
                                                 lowbit::fp8_e5m2, lowbit::ue4m3,    lowbit::ue8m0};
        return chance(0.2) ? m3e4() : pick(v);
    }
    float_format product_format() {
        static const std::vector<float_format> v{lowbit::lba_m7e4_prod, lowbit::fp8_e4m3, lowbit::fp8_e5m2,
                                                 lowbit::bf16,          lowbit::fp16,     lowbit::tf32,
                                                 lowbit::fp32,          m7e4(8),          m7e4(14)};
        return chance(0.2) ? m3e4() : pick(v);
    }
    float_format accumulator_format() {
        static const std::vector<float_format> v{
            lowbit::lba_m7e4_acc, lowbit::lba_m7e4_prod, lowbit::bf16, lowbit::fp16, lowbit::fp32, lowbit::tf32,
            float_format{.exp_bits = 4, .man_bits = 7, .bias = 10},  // M7E4 with subnormals and IEEE specials
            float_format{.exp_bits = 5, .man_bits = 6, .bias = 16, .subnormals = false, .specials = special_values::none},
            float_format{.exp_bits = 8, .man_bits = 12}};
        return chance(0.15) ? m3e4() : pick(v);
    }

    quantizer maybe_exact(double p_exact, const quantizer& q) { return chance(p_exact) ? quantizer{} : q; }

    void model_and_chunks(gemm_spec& s) {
        s.model = accumulation(uniform(0, 4));
        static const std::vector<int> chunks{0, 0, 1, 2, 3, 5, 16, 16, 128};
        s.chunk = chance(0.15) ? uniform(1, 40) : pick(chunks);
        s.window = chance(0.3) ? uniform(13, 14) : uniform(1, 30);
        static const std::vector<int> groups{1, 2, 3, 4, 8, 16, 32, 33};
        s.group = pick(groups);
        s.cut = chance(0.5) ? alignment_cut::toward_zero : alignment_cut::toward_negative;
    }

    // Families of specs.
    enum family { paper, general, integer, tensor_core, families };

    gemm_spec spec(family fam) {
        gemm_spec s;
        model_and_chunks(s);
        switch (fam) {
            case paper: {
                // Blumenfeld et al.: M7E4 products (bias 12) and accumulators (bias 10), flush,
                // no specials, toward_zero or nearest_even; fp8 inputs.
                const auto in = [&]() -> quantizer {
                    const int c = uniform(0, 2);
                    if (c == 0) return quantizer{};
                    return float_q(c == 1 ? lowbit::fp8_e4m3 : lowbit::fp8_e5m2, chance(0.8) ? rounding::nearest_even : mode());
                };
                s.input_a = in();
                s.input_b = in();
                s.product = chance(0.5) ? quantizer(float_q(lowbit::lba_m7e4_prod, paper_mode()))
                                        : quantizer(float_q(m7e4(12), paper_mode()));
                s.accumulator = chance(0.5) ? quantizer(float_q(lowbit::lba_m7e4_acc, paper_mode()))
                                            : quantizer(float_q(m7e4(10), paper_mode()));
                const int c = uniform(0, 2);
                s.chunk_accumulator = c == 0   ? quantizer{}
                                      : c == 1 ? quantizer(float_q(lowbit::fp32, rounding::nearest_even))
                                               : quantizer(float_q(lowbit::lba_m7e4_acc, paper_mode()));
                break;
            }
            case general: {
                s.input_a = maybe_exact(0.3, float_q(input_format()));
                s.input_b = maybe_exact(0.3, float_q(input_format()));
                s.product = maybe_exact(0.2, float_q(product_format()));
                s.accumulator = maybe_exact(0.1, float_q(accumulator_format()));
                s.chunk_accumulator = maybe_exact(0.3, float_q(chance(0.3) ? lowbit::fp32 : accumulator_format()));
                break;
            }
            case integer: {
                // Integer datapaths: integer (or fixed-point) inputs, products and accumulators.
                const int in_bits = uniform(3, 8);
                s.input_a = int_q(in_bits, true, chance(0.8) ? 0 : uniform(-2, 3));
                s.input_b = chance(0.8) ? quantizer(int_q(in_bits, chance(0.8), 0)) : quantizer{};
                s.product = chance(0.6) ? quantizer{} : quantizer(int_q(uniform(8, 16), true));
                s.accumulator = int_q(uniform(8, 24), true, chance(0.7) ? 0 : uniform(-2, 10));
                const int c = uniform(0, 2);
                s.chunk_accumulator = c == 0 ? quantizer{}
                                      : c == 1 ? quantizer(int_q(32, true))
                                               : quantizer(int_q(uniform(8, 24), true));
                break;
            }
            case tensor_core: {
                // FP8 tensor core: fp8 inputs, exact products, an aligned adder, fp32-ish output.
                s.input_a = float_q(chance(0.5) ? lowbit::fp8_e4m3 : lowbit::fp8_e5m2, rounding::nearest_even);
                s.input_b = float_q(chance(0.5) ? lowbit::fp8_e4m3 : lowbit::fp8_e5m2, mode());
                s.product = quantizer{};
                if (chance(0.7)) s.model = accumulation::aligned;
                s.window = chance(0.6) ? uniform(13, 14) : uniform(1, 24);
                s.accumulator = float_q(chance(0.6) ? lowbit::fp32 : accumulator_format(),
                                        chance(0.5) ? rounding::toward_zero : mode());
                s.chunk_accumulator = maybe_exact(0.3, float_q(lowbit::fp32, rounding::nearest_even));
                break;
            }
            case families: break;
        }
        return s;
    }

    int dimension() { return chance(0.7) ? uniform(1, 4) : uniform(1, 9); }
    int depth() {
        static const std::vector<int> ks{0, 1, 1, 2, 3, 7, 16, 17, 31, 32, 37, 64, 100, 128, 131};
        return chance(0.2) ? uniform(1, 160) : pick(ks);
    }

    // Data kinds: N(0,1) scaled by random powers of two (per element, range chosen per call),
    // plain N(0,1), exact small integers, wide ranges; zeros mixed in.
    Eigen::MatrixXf data(int rows, int cols, int kind) {
        Eigen::MatrixXf m(rows, cols);
        const int lo = uniform(-14, 0), hi = uniform(0, 7);
        const double zeros = chance(0.3) ? 0.1 : 0.0;
        for (int i = 0; i < rows; ++i)
            for (int j = 0; j < cols; ++j) {
                double x = 0;
                switch (kind) {
                    case 0: x = std::ldexp(normal(), uniform(lo, hi)); break;
                    case 1: x = normal(); break;
                    case 2: x = uniform(-8, 8); break;
                    case 3: x = std::ldexp(normal(), uniform(-40, 40)); break;
                    default: x = uniform(-120, 120); break;
                }
                if (chance(zeros)) x = 0;
                m(i, j) = float(x);
            }
        return m;
    }
    int data_kind(family fam) {
        if (fam == integer) return chance(0.7) ? 2 + 2 * uniform(0, 1) : uniform(0, 1);  // mostly integers
        const int r = uniform(0, 9);
        return r < 5 ? 0 : r < 7 ? 1 : r < 8 ? 2 : 3;
    }
};

struct failure_log {
    int failures = 0;
    void report(const std::string& what, const gemm_spec& s, const Eigen::MatrixXf& A, const Eigen::MatrixXf& B,
                const std::string& detail) {
        if (++failures <= 12) {
            std::ostringstream o;
            o << what << ": " << detail << "\n  " << describe(s) << "\n  A = " << describe(A)
              << "\n  B = " << describe(B);
            UNSCOPED_INFO(o.str());
            CHECK(false);
        }
    }
};

}  // namespace

// =============================================================================================
// The main comparison: random specs and data, result bits and events against the reference.

TEST_CASE("gemm equals the MPFR reference bit for bit on random specs", "[gemm][reference]") {
    generator g(20240611);
    failure_log log;
    int compared = 0, with_stats = 0, nonfinite_skipped = 0;
    gemm_stats totals;
    int specs_with[5] = {};
    std::vector<int> per_model(5, 0);
    for (int trial = 0; trial < 3000; ++trial) {
        const auto fam = generator::family(trial % generator::families);
        gemm_spec s = g.spec(fam);
        const int M = g.dimension(), N = g.dimension(), K = g.depth();
        const int kind = g.data_kind(fam);
        const Eigen::MatrixXf A = g.data(M, K, kind), B = g.data(K, N, kind);
        const bool check_stats = trial % 2 == 0;
        const bool record_lost = check_stats && trial % 3 == 0;

        gemm_stats expected_stats;
        lowbit_test::reference_notes notes;
        const auto tally = [&] {
            totals += expected_stats;
            if (expected_stats.product_overflows) ++specs_with[0];
            if (expected_stats.product_underflows) ++specs_with[1];
            if (expected_stats.accumulator_overflows) ++specs_with[2];
            if (expected_stats.swamps) ++specs_with[3];
            if (expected_stats.inexact_additions) ++specs_with[4];
        };
        s.record_lost = record_lost;
        const Eigen::MatrixXf expected = lowbit_test::reference_gemm(A, B, s, &expected_stats, &notes);
        tally();
        s.record_lost = false;  // (record_lost needs a gemm_stats)
        const Eigen::MatrixXf got = lowbit::gemm(A, B, s);
        s.record_lost = record_lost;
        const std::string d = matrix_difference(expected, got);
        if (!d.empty()) log.report("result (no stats)", s, A, B, d);
        if (check_stats) {
            gemm_stats got_stats;
            const Eigen::MatrixXf got2 = lowbit::gemm(A, B, s, &got_stats);
            const std::string d2 = matrix_difference(expected, got2);
            if (!d2.empty()) log.report("result (with stats)", s, A, B, d2);
            const std::string ds = stats_difference(expected_stats, got_stats, s.record_lost);
            if (notes.nonfinite) ++nonfinite_skipped;
            if (!ds.empty() && !notes.nonfinite)
                log.report("stats", s, A, B, ds + "\n  expected " + describe(expected_stats) + "\n  got      " +
                                                 describe(got_stats));
            ++with_stats;
        }
        ++compared;
        ++per_model[int(s.model)];
    }
    INFO("failures: " << log.failures);
    CHECK(log.failures == 0);
    std::cout << "gemm reference comparison: " << compared << " random specs (" << with_stats
              << " with stats, of which " << nonfinite_skipped
              << " had inf/NaN values, events not compared); per model seq/fma/pairwise/fused/aligned: " << per_model[0] << "/" << per_model[1] << "/"
              << per_model[2] << "/" << per_model[3] << "/" << per_model[4] << "\n  reference events over all specs: "
              << describe(totals) << "\n  specs with product overflows " << specs_with[0] << ", product underflows "
              << specs_with[1] << ", accumulator overflows " << specs_with[2] << ", swamps " << specs_with[3]
              << ", inexact additions " << specs_with[4] << "\n";
}

// Result bits and every counter of lowbit::gemm against the reference, failures logged.
template <class Log>
void compare_with_reference(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, const gemm_spec& s, Log& log) {
    gemm_stats es, gs;
    const Eigen::MatrixXf expected = lowbit_test::reference_gemm(A, B, s, &es);
    const Eigen::MatrixXf got = lowbit::gemm(A, B, s, &gs);
    const std::string d = matrix_difference(expected, got);
    if (!d.empty()) log.report("result", s, A, B, d);
    const std::string ds = stats_difference(es, gs, true);
    if (!ds.empty()) log.report("stats", s, A, B, ds);
}

// Every model x chunking x accumulator mode of the paper setup, systematically, on data that
// overflows, underflows and swamps.
TEST_CASE("gemm equals the reference: M7E4 paper setup, every model and chunk", "[gemm][reference]") {
    generator g(7);
    failure_log log;
    for (int model = 0; model <= 4; ++model)
        for (int chunk : {0, 1, 16, 128})
            for (rounding m : {rounding::toward_zero, rounding::nearest_even, rounding::stochastic})
                for (int chunk_acc = 0; chunk_acc < 3; ++chunk_acc) {
                    gemm_spec s;
                    s.model = accumulation(model);
                    s.chunk = chunk;
                    s.input_a = float_quantizer{.format = lowbit::fp8_e4m3};
                    s.input_b = float_quantizer{.format = lowbit::fp8_e4m3};
                    s.product = float_quantizer{.format = lowbit::lba_m7e4_prod, .mode = m, .seed = 3};
                    s.accumulator = float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = m, .seed = 3};
                    s.chunk_accumulator = chunk_acc == 0 ? quantizer{}
                                          : chunk_acc == 1
                                              ? quantizer(lowbit::fp32)
                                              : quantizer(float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = m, .seed = 4});
                    s.window = 5 + chunk_acc;
                    s.group = chunk == 16 ? 5 : 32;
                    s.record_lost = true;
                    const int M = 3, N = 2, K = chunk == 128 ? 300 : 131;
                    const Eigen::MatrixXf A = g.data(M, K, 0), B = g.data(K, N, 0);
                    compare_with_reference(A, B, s, log);
                }
    CHECK(log.failures == 0);
}

// The fnuz formats (no -0, NaN at -0's code, no infinity) in every role: as inputs they take the
// vectorized path; as product or accumulator roundings the exact path (fp32 lanes keep the sign of
// zero, and the report says so). Either way the bits and events are the reference's, whose
// zeros are +0 after every fnuz rounding.
TEST_CASE("gemm equals the reference: fnuz inputs, products and accumulators", "[gemm][reference][fnuz]") {
    generator g(23);
    failure_log log;
    const float_format fnuz[] = {lowbit::fp8_e4m3fnuz, lowbit::fp8_e5m2fnuz, lowbit::fp8_e4m3b11fnuz};
    int fast_inputs = 0;
    for (const float_format& f : fnuz)
        for (int model = 0; model <= 4; ++model)
            for (rounding m : {rounding::nearest_even, rounding::toward_zero, rounding::toward_negative,
                               rounding::toward_positive, rounding::stochastic})
                for (int role = 0; role < 3; ++role) {
                    gemm_spec s;
                    s.model = accumulation(model);
                    s.chunk = g.pick(std::vector<int>{0, 1, 5, 16});
                    s.window = 6;
                    s.group = 4;
                    const float_quantizer q{.format = f, .mode = m, .on_overflow = g.chance(0.5) ? lowbit::overflow::saturate
                                                                                               : lowbit::overflow::infinity,
                                            .seed = 5};
                    s.input_a = s.input_b = lowbit::fp8_e4m3;
                    s.accumulator = s.chunk_accumulator = lowbit::fp32;
                    if (role == 0) s.input_a = s.input_b = q;  // fnuz inputs, fp32 sums
                    if (role == 1) s.product = q;              // products rounded to fnuz, fp32 sums
                    if (role == 2) s.accumulator = s.chunk_accumulator = q;
                    // Small values, so that negative sums and products round to zero often.
                    const int M = 3, N = 4, K = g.pick(std::vector<int>{1, 7, 40});
                    Eigen::MatrixXf A = g.data(M, K, 0), B = g.data(K, N, 0);
                    A *= std::ldexp(1.0f, -g.uniform(0, 12));
                    gemm_spec no_stats = s;
                    s.record_lost = true;
                    compare_with_reference(A, B, s, log);
                    lowbit::gemm_report report;
                    const Eigen::MatrixXf got = lowbit::gemm(A, B, no_stats, nullptr, &report);
                    const std::string d = matrix_difference(lowbit_test::reference_gemm(A, B, no_stats), got);
                    if (!d.empty()) log.report("result (no stats)", no_stats, A, B, d);
                    if (role == 0 && report.kernel != lowbit::gemm_kernel::exact) ++fast_inputs;
                    if (role == 0) {  // fnuz inputs are never the reason for the exact path
                        INFO(report.reason);
                        CHECK(report.reason.find("fnuz") == std::string::npos);
                    }
                    if (role == 2 && m != rounding::stochastic && report.kernel == lowbit::gemm_kernel::exact) {
                        INFO(report.reason);
                        CHECK(report.reason.find("no -0 (fnuz)") != std::string::npos);
                    }
                }
    CHECK(log.failures == 0);
    // fnuz inputs with fp32 sums: the vectorized path for most of the 75 runs (not for the aligned
    // model without a saturating accumulator, a fused chunk wider than 53 bits (e5m2fnuz), or
    // inputs that overflowed to NaN)
    CHECK(fast_inputs >= 40);
}

TEST_CASE("hand: fnuz accumulators give +0 where other formats give -0", "[gemm][hand][zero][fnuz]") {
    // One product p = -2^-20 (exact), far below the smallest e4m3fnuz step 2^-10: the accumulator
    // rounds +0 + p to a zero of p's sign, which fnuz formats spell +0 (their -0 code is NaN).
    Eigen::MatrixXf A(1, 1), B(1, 1);
    A << -std::ldexp(1.0f, -20);
    B << 1.0f;
    // (As the chunk accumulator, which gives C: an accumulator's -0 would be added to the +0 that
    // chunk sums start from, see "a negative sum flushed by the chunk accumulator is -0 in C".)
    gemm_spec s;
    s.chunk_accumulator = lowbit::fp8_e4m3;  // (OCP e4m3 has -0)
    CHECK(bits_of(lowbit::gemm(A, B, s)(0, 0)) == "0x80000000");
    CHECK(bits_of(lowbit_test::reference_gemm(A, B, s)(0, 0)) == "0x80000000");
    s.chunk_accumulator = lowbit::fp8_e4m3fnuz;
    CHECK(bits_of(lowbit::gemm(A, B, s)(0, 0)) == "0x00000000");
    CHECK(bits_of(lowbit_test::reference_gemm(A, B, s)(0, 0)) == "0x00000000");
    s.accumulator = lowbit::fp8_e4m3fnuz;
    CHECK(bits_of(lowbit::gemm(A, B, s)(0, 0)) == "0x00000000");
    // toward -inf the same sum is the negative smallest subnormal
    s.accumulator = float_quantizer{.format = lowbit::fp8_e4m3fnuz, .mode = rounding::toward_negative};
    CHECK(lowbit::gemm(A, B, s)(0, 0) == -std::ldexp(1.0f, -10));
    // overflow is NaN (no infinity), or 240 when saturating
    A << 200.0f;
    B << 2.0f;
    s.accumulator = lowbit::fp8_e4m3fnuz;
    CHECK(std::isnan(lowbit::gemm(A, B, s)(0, 0)));
    s.accumulator = float_quantizer{.format = lowbit::fp8_e4m3fnuz, .on_overflow = lowbit::overflow::saturate};
    CHECK(lowbit::gemm(A, B, s)(0, 0) == 240.0f);
}

// Integer accumulators of 8..24 bits, wrap and saturate, on integer data through 4-bit inputs.
TEST_CASE("gemm equals the reference: integer accumulators wrap and saturate", "[gemm][reference][int]") {
    generator g(11);
    failure_log log;
    for (int bits = 8; bits <= 24; bits += 2)
        for (int_overflow o : {int_overflow::wrap, int_overflow::saturate})
            for (int model = 0; model <= 4; ++model) {
                gemm_spec s;
                s.model = accumulation(model);
                s.chunk = g.pick(std::vector<int>{0, 1, 16, 7});
                s.input_a = int_quantizer{.format = {.bits = 4}};
                s.input_b = int_quantizer{.format = {.bits = 4}, .mode = rounding::toward_zero};
                s.accumulator = int_quantizer{.format = {.bits = bits}, .on_overflow = o};
                s.chunk_accumulator = g.chance(0.5) ? quantizer{} : quantizer(int_quantizer{.format = {.bits = bits}, .on_overflow = o});
                s.window = 6;
                s.group = 4;
                s.record_lost = true;
                const int M = g.uniform(1, 5), N = g.uniform(1, 5), K = g.pick(std::vector<int>{37, 131, 64});
                const Eigen::MatrixXf A = g.data(M, K, 4), B = g.data(K, N, 2);
                compare_with_reference(A, B, s, log);
            }
    CHECK(log.failures == 0);
}

// =============================================================================================
// Hand-derived cases (expected values worked out from the semantics, not from lowbit).

namespace {

gemm_spec m7e4_spec(rounding mode, accumulation model = accumulation::sequential, bool exact_products = false) {
    gemm_spec s;
    s.model = model;
    if (!exact_products) s.product = float_quantizer{.format = lowbit::lba_m7e4_prod, .mode = mode};
    s.accumulator = float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = mode};
    s.record_lost = true;
    return s;
}

// A = [1, 2^-9 x 16] (1 x 17), B = ones (17 x 1).
std::pair<Eigen::MatrixXf, Eigen::MatrixXf> one_then_sixteen_small() {
    Eigen::MatrixXf A(1, 17), B(17, 1);
    A(0, 0) = 1.0f;
    for (int k = 1; k < 17; ++k) A(0, k) = std::ldexp(1.0f, -9);
    B.setOnes();
    return {A, B};
}

}  // namespace

TEST_CASE("hand: M7E4 accumulator swamps 16 products of 2^-9 after a 1", "[gemm][hand]") {
    // M7E4 acc, bias 10: emin = -9, spacing at [1, 2) is 2^-7. The product format (bias 12,
    // emin = -11) holds 1 and 2^-9 exactly. Sequential: 0 + 1 = 1 exact, then each 1 + 2^-9 is a
    // quarter of a spacing above 1: toward_zero and nearest_even both give 1 -> 16 swamps, 16
    // inexact additions, products 1..16 lost, C = 1.
    const auto [A, B] = one_then_sixteen_small();
    REQUIRE(std::ldexp(1.0, -9) >= lowbit::lba_m7e4_prod.min_normal());
    for (rounding mode : {rounding::toward_zero, rounding::nearest_even}) {
        for (bool exact_products : {false, true}) {
            const gemm_spec s = m7e4_spec(mode, accumulation::sequential, exact_products);
            for (gemm_spec spec : {s, [&] { gemm_spec f = s; f.model = accumulation::fma; return f; }()}) {
                INFO("mode " << lowbit::to_string(mode) << ", model " << lowbit::to_string(spec.model)
                             << (exact_products ? ", exact products" : ", M7E4 products"));
                gemm_stats st;
                const Eigen::MatrixXf C = lowbit::gemm(A, B, spec, &st);
                CHECK(C(0, 0) == 1.0f);
                CHECK(st.macs == 17);
                CHECK(st.zero_operand == 0);
                CHECK(st.product_overflows == 0);
                CHECK(st.product_underflows == 0);
                CHECK(st.accumulator_overflows == 0);
                CHECK(st.swamps == 16);
                CHECK(st.inexact_additions == 16);
                REQUIRE(st.lost.size() == 17);
                CHECK(st.lost[0] == 0);
                for (int k = 1; k < 17; ++k) CHECK(st.lost[std::size_t(k)] == 1);
                // The reference agrees with the hand derivation.
                gemm_stats rs;
                const Eigen::MatrixXf R = lowbit_test::reference_gemm(A, B, spec, &rs);
                CHECK(R(0, 0) == 1.0f);
                CHECK(rs.swamps == 16);
                CHECK(rs.inexact_additions == 16);
            }
        }
    }
}

TEST_CASE("hand: the same products fused and pairwise are not swamped", "[gemm][hand]") {
    const auto [A, B] = one_then_sixteen_small();
    {
        // fused: Q_acc(1 + 16 * 2^-9) = Q_acc(1 + 2^-5) = 1.03125, on the grid (spacing 2^-7).
        gemm_spec s = m7e4_spec(rounding::nearest_even, accumulation::fused);
        gemm_stats st;
        const Eigen::MatrixXf C = lowbit::gemm(A, B, s, &st);
        CHECK(C(0, 0) == 1.03125f);
        CHECK(st.swamps == 0);
        CHECK(st.inexact_additions == 0);
        CHECK(std::count(st.lost.begin(), st.lost.end(), 1) == 0);
    }
    {
        // pairwise, nearest_even: 17 leaves in a tree of width 32 (padding zeros).
        //  level 1: (1, 2^-9) -> 1 + 2^-9 rounds to 1 (swamp, inexact, product 1 lost);
        //           7 x (2^-9, 2^-9) -> 2^-8; (2^-9, 0) -> 2^-9; 7 x (0, 0) -> 0
        //  level 2: (1, 2^-8) -> 1 + 2^-8 is a tie, even -> 1 (swamp, inexact);
        //           3 x (2^-8, 2^-8) -> 2^-7; (2^-9, 0) -> 2^-9; 3 x (0, 0)
        //  level 3: (1, 2^-7) -> 1 + 2^-7; (2^-7, 2^-7) -> 2^-6; (2^-9, 0) -> 2^-9; (0, 0)
        //  level 4: 1 + 2^-7 + 2^-6 = 1 + 3 * 2^-7; (2^-9, 0) -> 2^-9
        //  root:    1 + 3 * 2^-7 + 2^-9 = 1 + 3.25 * 2^-7 -> 1 + 3 * 2^-7 = 1.0234375 (swamp, inexact)
        gemm_spec s = m7e4_spec(rounding::nearest_even, accumulation::pairwise);
        gemm_stats st;
        const Eigen::MatrixXf C = lowbit::gemm(A, B, s, &st);
        CHECK(C(0, 0) == 1.0234375f);
        CHECK(st.swamps == 3);
        CHECK(st.inexact_additions == 3);
        REQUIRE(st.lost.size() == 17);
        CHECK(st.lost[1] == 1);  // only the leaf addition (1, 2^-9) loses a product
        CHECK(std::count(st.lost.begin(), st.lost.end(), 1) == 1);
        gemm_stats rs;
        CHECK(lowbit_test::reference_gemm(A, B, s, &rs)(0, 0) == 1.0234375f);
        CHECK(rs.swamps == 3);
        CHECK(rs.inexact_additions == 3);
    }
    {
        // chunk = 1 with an M7E4 chunk accumulator (same format and mode) swamps them again:
        // every chunk result is its product; total: 1, then 1 + 2^-9 -> 1 sixteen times.
        gemm_spec s = m7e4_spec(rounding::toward_zero, accumulation::sequential);
        s.chunk = 1;
        s.chunk_accumulator = float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = rounding::toward_zero};
        gemm_stats st;
        const Eigen::MatrixXf C = lowbit::gemm(A, B, s, &st);
        CHECK(C(0, 0) == 1.0f);
        CHECK(st.swamps == 16);
        CHECK(st.inexact_additions == 16);
        // ... while chunk = 16 adds the sixteen 2^-9 inside one chunk first: chunk 0 = [1, 2^-9 x 15]
        // -> 1 (15 swamps), chunk 1 = [2^-9] -> 2^-9; total 1 + 2^-9 -> 1 (one more swamp).
        s.chunk = 16;
        gemm_stats st16;
        const Eigen::MatrixXf C16 = lowbit::gemm(A, B, s, &st16);
        CHECK(C16(0, 0) == 1.0f);
        CHECK(st16.swamps == 16);
    }
}

TEST_CASE("hand: 8-bit integer accumulator wraps and saturates 100 + 100", "[gemm][hand][int]") {
    // 100 + 100 = 200 is outside [-128, 127]: wrap gives 200 - 256 = -56, saturate 127. One
    // accumulator overflow; the rounding changed the exact sum, so one inexact addition.
    Eigen::MatrixXf A(1, 2), B(2, 1);
    A << 100.0f, 100.0f;
    B << 1.0f, 1.0f;
    for (int_overflow o : {int_overflow::wrap, int_overflow::saturate}) {
        for (accumulation model : {accumulation::sequential, accumulation::fma, accumulation::fused}) {
            gemm_spec s;
            s.model = model;
            s.accumulator = int_quantizer{.format = {.bits = 8}, .on_overflow = o};
            INFO((o == int_overflow::wrap ? "wrap" : "saturate") << ", model " << lowbit::to_string(model));
            gemm_stats st;
            const Eigen::MatrixXf C = lowbit::gemm(A, B, s, &st);
            CHECK(C(0, 0) == (o == int_overflow::wrap ? -56.0f : 127.0f));
            CHECK(st.accumulator_overflows == 1);
            CHECK(st.inexact_additions == 1);
            CHECK(st.swamps == 0);
            const Eigen::MatrixXf R = lowbit_test::reference_gemm(A, B, s);
            CHECK(R(0, 0) == C(0, 0));
        }
    }
    // 100 + 100 - 100: 200 wraps to -56, -56 - 100 = -156 wraps to 100 (two overflows): the wrap
    // accumulator ends on the exact result.
    Eigen::MatrixXf A3(1, 3), B3(3, 1);
    A3 << 100.0f, 100.0f, -100.0f;
    B3 << 1.0f, 1.0f, 1.0f;
    gemm_spec s;
    s.accumulator = int_quantizer{.format = {.bits = 8}, .on_overflow = int_overflow::wrap};
    gemm_stats st;
    CHECK(lowbit::gemm(A3, B3, s, &st)(0, 0) == 100.0f);
    CHECK(st.accumulator_overflows == 2);
    s.accumulator = int_quantizer{.format = {.bits = 8}, .on_overflow = int_overflow::saturate};
    // saturate: 127, then 127 - 100 = 27.
    CHECK(lowbit::gemm(A3, B3, s)(0, 0) == 27.0f);
}

TEST_CASE("hand: 53-bit integer accumulators hold their whole range", "[gemm][hand][int]") {
    // Unsigned 53 bits: [0, 2^53 - 1]. 2^52 + 2^51 + 1 is in range: no overflow, and C is that
    // sum rounded to float, 2^52 + 2^51. Signed 53 bits: [-2^52, 2^52 - 1]; -2^52 is in range,
    // -2^52 - 1 is not (saturate: -2^52; wrap: 2^52 - 1). Products of 2^26-scale operands are
    // beyond the integer chain's 2^31: this is the exact path.
    Eigen::MatrixXf A(1, 3), B(3, 1);
    A << 0x1p26f, 0x1p26f, 1.0f;
    B << 0x1p26f, 0x1p25f, 1.0f;
    for (int_overflow o : {int_overflow::wrap, int_overflow::saturate}) {
        gemm_spec s;
        s.accumulator = int_quantizer{.format = {.bits = 53, .is_signed = false}, .on_overflow = o};
        gemm_stats st;
        CHECK(lowbit::gemm(A, B, s, &st)(0, 0) == 0x1.8p52f);
        CHECK(st.accumulator_overflows == 0);
        CHECK(lowbit_test::reference_gemm(A, B, s)(0, 0) == 0x1.8p52f);
    }
    Eigen::MatrixXf A2(1, 2), B2(2, 1);
    A2 << -0x1p26f, -1.0f;
    B2 << 0x1p26f, 1.0f;
    for (int_overflow o : {int_overflow::wrap, int_overflow::saturate}) {
        gemm_spec s;
        s.accumulator = int_quantizer{.format = {.bits = 53}, .on_overflow = o};
        gemm_stats st;
        const float expected = o == int_overflow::wrap ? 0x1p52f : -0x1p52f;  // (2^52 - 1 rounds to 2^52)
        CHECK(lowbit::gemm(A2, B2, s, &st)(0, 0) == expected);
        CHECK(st.accumulator_overflows == 1);  // the second addition only
        CHECK(lowbit_test::reference_gemm(A2, B2, s)(0, 0) == expected);
    }
}

TEST_CASE("hand: product underflows in M7E4 (flush below 2^-11)", "[gemm][hand]") {
    // M7E4 product, bias 12: emin = -11, no subnormals. Products (B = ones except where noted):
    //   2^-6 * 2^-6 = 2^-12          below 2^-11: flushes -> underflow
    //   2^-6 * 2^-5 = 2^-11          the smallest normal: kept
    //   2^-11 * (1 - 2^-9)           = 2^-11 - 2^-20; on the (as-if-subnormal) grid of spacing
    //                                  2^-18 it rounds to 2^-11 with nearest_even (kept), to
    //                                  2^-11 - 2^-18 with toward_zero (then flushed: underflow)
    //   0.5 * 0                      a zero operand, not an underflow
    //   1 * 1                        1
    Eigen::MatrixXf A(1, 5), B(5, 1);
    A << std::ldexp(1.0f, -6), std::ldexp(1.0f, -6), std::ldexp(1.0f, -11), 0.5f, 1.0f;
    B << std::ldexp(1.0f, -6), std::ldexp(1.0f, -5), 1.0f - std::ldexp(1.0f, -9), 0.0f, 1.0f;
    for (rounding mode : {rounding::nearest_even, rounding::toward_zero}) {
        gemm_spec s;
        s.product = float_quantizer{.format = lowbit::lba_m7e4_prod, .mode = mode};
        s.record_lost = true;
        INFO(lowbit::to_string(mode));
        gemm_stats st;
        const Eigen::MatrixXf C = lowbit::gemm(A, B, s, &st);
        const bool ne = mode == rounding::nearest_even;
        CHECK(st.product_underflows == (ne ? 1u : 2u));
        CHECK(st.zero_operand == 1);
        CHECK(st.product_overflows == 0);
        CHECK(st.macs == 5);
        // exact accumulation of the kept products: 1 + 2^-11 (+ 2^-11 with nearest_even)
        CHECK(C(0, 0) == (ne ? 1.0f + std::ldexp(1.0f, -10) : 1.0f + std::ldexp(1.0f, -11)));
        REQUIRE(st.lost.size() == 5);
        CHECK(st.lost[0] == 1);
        CHECK(st.lost[1] == 0);
        CHECK(st.lost[2] == (ne ? 0 : 1));
        CHECK(st.lost[3] == 0);
        CHECK(st.lost[4] == 0);
        const Eigen::MatrixXf R = lowbit_test::reference_gemm(A, B, s);
        CHECK(R(0, 0) == C(0, 0));
    }
}

TEST_CASE("hand: product overflows in M7E4 (largest 15.9375)", "[gemm][hand]") {
    // M7E4 product, bias 12, no specials: largest = (2 - 2^-7) * 2^3 = 15.9375, spacing 2^-4 in
    // [8, 16). Products:
    //   4 * 4 = 16                       > 15.9375: overflow, saturates to 15.9375
    //   3.9375 * 4 = 15.75               fits
    //   15.9375 * 1                      fits (the largest value)
    //   -5 * 5 = -25                     overflow, -15.9375
    //   15.96875 * 1                     tie between 15.9375 (odd code) and 16: nearest_even -> 16,
    //                                    overflow -> 15.9375; toward_zero -> 15.9375, no overflow
    // C (exact accumulation) = 15.9375 + 15.75 + 15.9375 - 15.9375 + 15.9375 = 47.625 either way.
    Eigen::MatrixXf A(1, 5), B(5, 1);
    A << 4.0f, 3.9375f, 15.9375f, -5.0f, 15.96875f;
    B << 4.0f, 4.0f, 1.0f, 5.0f, 1.0f;
    for (rounding mode : {rounding::nearest_even, rounding::toward_zero}) {
        gemm_spec s;
        s.product = float_quantizer{.format = lowbit::lba_m7e4_prod, .mode = mode};
        INFO(lowbit::to_string(mode));
        gemm_stats st;
        const Eigen::MatrixXf C = lowbit::gemm(A, B, s, &st);
        CHECK(st.product_overflows == (mode == rounding::nearest_even ? 3u : 2u));
        CHECK(st.product_underflows == 0);
        CHECK(C(0, 0) == 47.625f);
        const Eigen::MatrixXf R = lowbit_test::reference_gemm(A, B, s);
        CHECK(R(0, 0) == 47.625f);
    }
    // The same products into an M7E4 accumulator (bias 10, largest 63.75; spacing 2^-4 in [8, 16),
    // 0.125 in [16, 32), 0.25 in [32, 64)), toward_zero (products: 15.9375, 15.75, 15.9375,
    // -15.9375, 15.9375): 15.9375 -> 31.6875 truncated to 31.625 -> 47.5625 to 47.5 -> 31.5625 to
    // 31.5 -> 47.4375 to 47.25. Four inexact additions.
    gemm_spec s = m7e4_spec(rounding::toward_zero);
    s.record_lost = false;
    gemm_stats st;
    CHECK(lowbit::gemm(A, B, s, &st)(0, 0) == 47.25f);
    CHECK(st.product_overflows == 2);
    CHECK(st.accumulator_overflows == 0);
    CHECK(st.inexact_additions == 4);
    CHECK(lowbit_test::reference_gemm(A, B, s)(0, 0) == 47.25f);
    // An accumulator overflow: 64 ones (products exact) into M7E4 acc saturate at 63.75:
    // 0 + 1 ... + 1 = 63 exact (spacing 0.25), 63 + 1 = 64 > 63.75: overflow -> 63.75 (toward_zero
    // gives the largest finite value), then 63.75 + 1 = 64.75 -> 63.75 again, ...
    Eigen::MatrixXf ones_a = Eigen::MatrixXf::Ones(1, 70), ones_b = Eigen::MatrixXf::Ones(70, 1);
    gemm_stats so;
    CHECK(lowbit::gemm(ones_a, ones_b, s, &so)(0, 0) == 63.75f);
    CHECK(so.accumulator_overflows == 70 - 63);
    // from 63.75 + 1 on, the result equals the accumulator: swamps
    CHECK(so.swamps == 70 - 64);
}

TEST_CASE("hand: a negative sum flushed by the chunk accumulator is -0 in C", "[gemm][hand][zero]") {
    // One product p = -1.75 * 2^-11 (exact product, exact accumulator: the chunk result is p).
    // total = chunk_accumulator(+0 + p): M7E4 (bias 10, emin -9, flush) rounds |p| onto its grid
    // exactly (as-if-subnormal spacing 2^-16), then flushes it, below 2^-9, to a zero of p's sign:
    // -0 (lowbit::quantizer itself gives -0 for this value). C = -0 is a float already.
    Eigen::MatrixXf A(1, 1), B(1, 1);
    A << -1.75f * std::ldexp(1.0f, -11);
    B << 1.0f;
    gemm_spec s;
    s.chunk_accumulator = lowbit::lba_m7e4_acc;
    CHECK(std::signbit(float(lowbit::quantizer(lowbit::lba_m7e4_acc)(double(A(0, 0))))));
    const Eigen::MatrixXf R = lowbit_test::reference_gemm(A, B, s);
    CHECK(bits_of(R(0, 0)) == "0x80000000");
    CHECK(bits_of(lowbit::gemm(A, B, s)(0, 0)) == "0x80000000");
    // The same with an fp32 accumulator in front.
    s.accumulator = lowbit::fp32;
    CHECK(bits_of(lowbit::gemm(A, B, s)(0, 0)) == "0x80000000");
    // And with the flushing format as the accumulator: the chunk result -0 is added to the total,
    // which starts from -0 (addition's identity): -0 + -0 = -0, the IEEE sum of the one product's
    // rounding. (Before the chunk total started from -0 it was +0 here, where IEEE gives -0.)
    gemm_spec t;
    t.accumulator = lowbit::lba_m7e4_acc;
    CHECK(bits_of(lowbit::gemm(A, B, t)(0, 0)) == "0x80000000");
    CHECK(bits_of(lowbit_test::reference_gemm(A, B, t)(0, 0)) == "0x80000000");
}

TEST_CASE("hand: inf - inf in an accumulation is NaN and stays NaN", "[gemm][hand][nonfinite]") {
    // Finite inputs; the product format M7E4 (bias 10) with IEEE specials overflows 40 to +inf and
    // -40 to -inf (largest finite 31.875). Products: +inf, -inf, +inf. Every model but fma (which
    // has no Q_prod: exact 40 - 40 + 40 = 40) meets inf + -inf = NaN, and NaN + inf is NaN
    // (IEEE; gemm_spec.hpp: each step is an ordinary sum then a rounding, and rounding NaN gives NaN).
    const float_format m7e4_ieee{.exp_bits = 4, .man_bits = 7, .bias = 10};
    Eigen::MatrixXf A(1, 3), B = Eigen::MatrixXf::Ones(3, 1);
    A << 40.0f, -40.0f, 40.0f;
    for (int model = 0; model <= 4; ++model)
        for (int chunk : {0, 1}) {
            gemm_spec s;
            s.product = m7e4_ieee;
            s.accumulator = lowbit::fp32;
            s.model = accumulation(model);
            s.group = 1;
            s.chunk = chunk;
            INFO("model " << lowbit::to_string(s.model) << ", chunk " << chunk);
            const float expected = s.model == accumulation::fma ? 40.0f : std::numeric_limits<float>::quiet_NaN();
            CHECK(same_bits(lowbit_test::reference_gemm(A, B, s)(0, 0), expected));
            const float got = lowbit::gemm(A, B, s)(0, 0);
            INFO("got " << hexfloat(got));
            CHECK(same_bits(got, expected));
        }
}

// =============================================================================================
// Arguments, layouts, dot, threads.

TEST_CASE("gemm rejects invalid specs and shapes, naming the field", "[gemm][args]") {
    const Eigen::MatrixXf A = Eigen::MatrixXf::Ones(2, 3), B = Eigen::MatrixXf::Ones(3, 2);
    const auto message_of = [&](const gemm_spec& s, const Eigen::MatrixXf& a, const Eigen::MatrixXf& b) -> std::string {
        try {
            (void)lowbit::gemm(a, b, s);
        } catch (const std::invalid_argument& e) {
            return e.what();
        }
        return "(no exception)";
    };
    gemm_spec s;
    s.chunk = -1;
    CHECK_THAT(message_of(s, A, B), Catch::Matchers::Contains("chunk"));
    s = gemm_spec{};
    s.window = 0;
    s.model = accumulation::aligned;
    CHECK_THAT(message_of(s, A, B), Catch::Matchers::Contains("window"));
    s = gemm_spec{};
    s.group = 0;
    s.model = accumulation::aligned;
    CHECK_THAT(message_of(s, A, B), Catch::Matchers::Contains("group"));
    s = gemm_spec{};
    s.accumulator = float_format{.exp_bits = 0, .man_bits = 3};
    CHECK_THAT(message_of(s, A, B), Catch::Matchers::Contains("accumulator"));
    s = gemm_spec{};
    s.input_a = int_quantizer{.format = {.bits = 0}};
    CHECK_THAT(message_of(s, A, B), Catch::Matchers::Contains("input_a"));
    const std::string shape = message_of(gemm_spec{}, A, Eigen::MatrixXf::Ones(4, 2));
    CHECK((shape.find("shape") != std::string::npos || shape.find("K") != std::string::npos));
    CHECK(shape != "(no exception)");
    // Outputs of the wrong shape that cannot be resized are refused, the shapes named (Eigen's
    // own resize would only assert, or do nothing under NDEBUG): a Map, a fixed-size matrix, a
    // block, a bounded dynamic matrix beyond its bound.
    const auto output_message = [&](auto&& C) -> std::string {
        try {
            lowbit::gemm(A, B, C, gemm_spec{});
        } catch (const std::invalid_argument& e) {
            return e.what();
        }
        return "(no exception)";
    };
    std::vector<float> storage(5);
    Eigen::Map<Eigen::MatrixXf> wrong(storage.data(), 1, 5);
    CHECK_THAT(output_message(wrong), Catch::Matchers::Contains("C is 1 x 5 and must be 2 x 2"));
    Eigen::Matrix3f fixed3 = Eigen::Matrix3f::Constant(7.0f);
    CHECK_THAT(output_message(fixed3), Catch::Matchers::Contains("C is 3 x 3 and must be 2 x 2"));
    CHECK(fixed3 == Eigen::Matrix3f::Constant(7.0f));  // nothing written
    Eigen::MatrixXf big = Eigen::MatrixXf::Zero(4, 4);
    CHECK_THAT(output_message(big.topLeftCorner(2, 3)), Catch::Matchers::Contains("C is 2 x 3"));
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, 0, 4, 1> bounded(1, 1);
    CHECK_THAT(output_message(bounded), Catch::Matchers::Contains("must be 2 x 2"));
    // What can take the shape does: fixed of the right size, a dynamic matrix, a block of it.
    Eigen::Matrix2f fixed2;
    CHECK(output_message(fixed2) == "(no exception)");
    CHECK(fixed2 == Eigen::Matrix2f::Constant(3.0f));
    Eigen::MatrixXf dynamic(7, 1);
    CHECK(output_message(dynamic) == "(no exception)");
    CHECK(dynamic == Eigen::MatrixXf::Constant(2, 2, 3.0f));
    CHECK(output_message(big.topLeftCorner(2, 2)) == "(no exception)");
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, 0, 2, 4> bounded_fit(1, 1);
    CHECK(output_message(bounded_fit) == "(no exception)");
    // dot of different lengths
    const std::vector<float> x(3, 1.0f), y(4, 1.0f);
    CHECK_THROWS_AS(lowbit::dot(x, y, gemm_spec{}), std::invalid_argument);
    CHECK_THROWS_WITH(lowbit::dot(Eigen::VectorXf::Ones(3), Eigen::VectorXf::Ones(4), gemm_spec{}),
                      Catch::Contains("a has 3 elements and b has 4"));
    CHECK_THROWS_WITH(lowbit::dot(Eigen::MatrixXf::Ones(2, 2), Eigen::VectorXf::Ones(4), gemm_spec{}),
                      Catch::Contains("both must be vectors"));
}

TEST_CASE("gemm gives the same bits for any storage order, block, map, and dot", "[gemm][layout]") {
    generator g(99);
    failure_log log;
    for (int trial = 0; trial < 40; ++trial) {
        const auto fam = generator::family(trial % generator::families);
        gemm_spec s = g.spec(fam);
        const int M = g.uniform(1, 9), N = g.uniform(1, 9), K = g.depth();
        const int kind = g.data_kind(fam);
        const Eigen::MatrixXf A = g.data(M, K, kind), B = g.data(K, N, kind);
        gemm_stats plain_stats;
        const Eigen::MatrixXf plain = lowbit::gemm(A, B, s, &plain_stats);
        const auto same = [&](const char* what, const Eigen::MatrixXf& got) {
            const std::string d = matrix_difference(plain, got);
            if (!d.empty()) log.report(what, s, A, B, d);
        };
        // row-major operands
        using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        const RowMajor Ar = A, Br = B;
        same("row-major A", lowbit::gemm(Ar, B, s));
        same("row-major B", lowbit::gemm(A, Br, s));
        same("row-major A and B", lowbit::gemm(Ar, Br, s));
        // blocks of bigger matrices
        Eigen::MatrixXf bigA = Eigen::MatrixXf::Constant(M + 3, K + 5, 7.0f), bigB = Eigen::MatrixXf::Constant(K + 2, N + 4, -3.0f);
        bigA.block(2, 3, M, K) = A;
        bigB.block(1, 2, K, N) = B;
        same("blocks", lowbit::gemm(bigA.block(2, 3, M, K), bigB.block(1, 2, K, N), s));
        // maps over std::vector (column- and row-major)
        std::vector<float> va(A.data(), A.data() + A.size());
        std::vector<float> vb(std::size_t(B.size()));
        Eigen::Map<RowMajor>(vb.data(), K, N) = B;
        const Eigen::Map<const Eigen::MatrixXf> mA(va.data(), M, K);
        const Eigen::Map<const RowMajor> mB(vb.data(), K, N);
        same("maps", lowbit::gemm(mA, mB, s));
        // transposed expressions
        const Eigen::MatrixXf At = A.transpose(), Bt = B.transpose();
        same("transposes", lowbit::gemm(At.transpose(), Bt.transpose(), s));
        // the output overload: a resizable matrix, a Map of the right size, a row-major block
        Eigen::MatrixXf C1;
        lowbit::gemm(A, B, C1, s);
        same("C overload (resized)", C1);
        std::vector<float> vc(std::size_t(M * N), 123.0f);
        Eigen::Map<Eigen::MatrixXf> mc(vc.data(), M, N);
        lowbit::gemm(A, B, mc, s);
        same("C overload (map)", mc);
        RowMajor bigC = RowMajor::Constant(M + 2, N + 2, 5.0f);
        auto blockC = bigC.block(1, 1, M, N);
        lowbit::gemm(Ar, B, blockC, s);
        same("C overload (row-major block)", Eigen::MatrixXf(bigC.block(1, 1, M, N)));
        CHECK(bigC(0, 0) == 5.0f);
        CHECK(bigC(M + 1, N + 1) == 5.0f);
        // stats do not depend on the layout either
        gemm_stats layout_stats;
        (void)lowbit::gemm(Ar, mB, s, &layout_stats);
        const std::string ds = stats_difference(plain_stats, layout_stats, false);
        if (!ds.empty()) log.report("stats with row-major/map operands", s, A, B, ds);
        // dot = gemm of 1 x K by K x 1
        const Eigen::MatrixXf a1 = A.row(0), b1 = B.col(0);
        std::vector<float> xa(a1.data(), a1.data() + K), xb(b1.data(), b1.data() + K);
        gemm_stats dot_stats, one_stats;
        const float d = lowbit::dot(std::span<const float>(xa), std::span<const float>(xb), s, &dot_stats);
        const Eigen::MatrixXf one = lowbit::gemm(a1, b1, s, &one_stats);
        if (!same_bits(d, one(0, 0)))
            log.report("dot", s, a1, b1, "dot " + hexfloat(d) + " != gemm " + hexfloat(one(0, 0)));
        const std::string dd = stats_difference(one_stats, dot_stats, false);
        if (!dd.empty()) log.report("dot stats", s, a1, b1, dd);
        // ... and of Eigen vectors: a row and a column of the matrices, or copies as columns
        const float de = lowbit::dot(A.row(0), B.col(0), s);
        const float dv = lowbit::dot(Eigen::VectorXf(A.row(0).transpose()), B.col(0).transpose(), s);
        if (!same_bits(de, one(0, 0)) || !same_bits(dv, one(0, 0)))
            log.report("dot of Eigen vectors", s, a1, b1, hexfloat(de) + " / " + hexfloat(dv) + " != gemm " + hexfloat(one(0, 0)));
    }
    CHECK(log.failures == 0);
}

TEST_CASE("gemm results do not depend on the thread count", "[gemm][threads]") {
    generator g(5);
    const Eigen::MatrixXf A = g.data(64, 300, 0), B = g.data(300, 48, 0);
    for (int model = 0; model <= 4; ++model) {
        gemm_spec s;
        s.model = accumulation(model);
        s.chunk = model == 2 ? 0 : 16;
        s.input_a = float_quantizer{.format = lowbit::fp8_e4m3, .mode = rounding::stochastic, .seed = 1};
        s.input_b = float_quantizer{.format = lowbit::fp8_e5m2, .mode = rounding::stochastic, .seed = 1};
        s.product = float_quantizer{.format = lowbit::lba_m7e4_prod, .mode = rounding::stochastic, .seed = 1};
        s.accumulator = float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = rounding::stochastic, .seed = 1};
        s.chunk_accumulator = float_quantizer{.format = lowbit::bf16, .mode = rounding::stochastic, .seed = 1};
        s.window = 9;
        s.group = 7;
        s.record_lost = true;
        INFO("model " << lowbit::to_string(s.model));
        std::vector<Eigen::MatrixXf> results;
        std::vector<gemm_stats> stats;
        // (1000 is capped to the processors present: the same results, not 1000 threads)
        for (int threads : {1, 2, 0, 1000}) {
            s.threads = threads;
            gemm_stats st;
            results.push_back(lowbit::gemm(A, B, s, &st));
            stats.push_back(st);
        }
        for (std::size_t t = 1; t < results.size(); ++t) {
            CHECK(matrix_difference(results[0], results[t]).empty());
            CHECK(stats_difference(stats[0], stats[t], true).empty());
        }
    }
    // One of them against the reference on a slice (the reference is slow).
    gemm_spec s;
    s.model = accumulation::sequential;
    s.chunk = 16;
    s.input_a = float_quantizer{.format = lowbit::fp8_e4m3, .mode = rounding::stochastic, .seed = 1};
    s.product = float_quantizer{.format = lowbit::lba_m7e4_prod, .mode = rounding::stochastic, .seed = 1};
    s.accumulator = float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = rounding::stochastic, .seed = 1};
    s.chunk_accumulator = float_quantizer{.format = lowbit::bf16, .mode = rounding::stochastic, .seed = 1};
    s.threads = 0;
    const Eigen::MatrixXf A8 = A.topRows(8), B6 = B.leftCols(6);
    CHECK(matrix_difference(lowbit_test::reference_gemm(A8, B6, s), lowbit::gemm(A8, B6, s)).empty());
}

// =============================================================================================
// "Chunking helps" (Blumenfeld et al.): an M7E4 accumulator over K = 4096 loses less with chunks of
// 16 accumulated in the same format.

TEST_CASE("chunking reduces the error of an M7E4 accumulator (K = 4096)", "[gemm][chunking]") {
    // Setup: A (16 x 4096), B (4096 x 16) ~ N(0, 1); inputs fp8_e4m3 (nearest_even), exact
    // products, M7E4 accumulator (bias 10, flush, no specials) with nearest_even (and, printed
    // too, toward_zero); the chunk accumulator is the same format and mode. Error:
    // ||C - C64||_F / ||C64||_F, C64 the double accumulation of the same e4m3-quantized inputs.
    // Scale 1 is the experiment as specified: |C| ~ 64 reaches the accumulator's largest value
    // 63.75, so saturation adds to both errors. Scale 1/4 (A ~ N(0, 1/16), |C| ~ 16) also runs,
    // to show swamping without saturation.
    generator g(2024);
    const int M = 16, N = 16, K = 4096;
    const Eigen::MatrixXf A0 = g.data(M, K, 1), B = g.data(K, N, 1);
    const float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    for (const float scale : {1.0f, 0.25f}) {
        const Eigen::MatrixXf A = A0 * scale;
        Eigen::MatrixXd Aq(M, K), Bq(K, N);
        for (int i = 0; i < M; ++i)
            for (int k = 0; k < K; ++k) Aq(i, k) = e4m3(double(A(i, k)));
        for (int k = 0; k < K; ++k)
            for (int j = 0; j < N; ++j) Bq(k, j) = e4m3(double(B(k, j)));
        Eigen::MatrixXd C64 = Eigen::MatrixXd::Zero(M, N);
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) {
                double acc = 0;
                for (int k = 0; k < K; ++k) acc += Aq(i, k) * Bq(k, j);
                C64(i, j) = acc;
            }
        const auto relative_error = [&](const Eigen::MatrixXf& C) {
            double err = 0, ref = 0;  // Frobenius norms, written out
            for (int i = 0; i < M; ++i)
                for (int j = 0; j < N; ++j) {
                    const double d = double(C(i, j)) - C64(i, j);
                    err += d * d;
                    ref += C64(i, j) * C64(i, j);
                }
            return std::sqrt(err / ref);
        };
        for (rounding mode : {rounding::nearest_even, rounding::toward_zero}) {
            gemm_spec s;
            s.input_a = e4m3;
            s.input_b = e4m3;
            s.accumulator = float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = mode};
            const double unchunked = relative_error(lowbit::gemm(A, B, s));
            s.chunk = 16;
            s.chunk_accumulator = float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = mode};
            const double chunked = relative_error(lowbit::gemm(A, B, s));
            std::cout << "chunking helps (" << lowbit::to_string(mode) << ", K = 4096, A ~ " << scale
                      << " N(0,1), B ~ N(0,1), e4m3 inputs, exact products, M7E4 acc bias 10): relative error "
                      << "unchunked " << unchunked << ", chunk 16 " << chunked << "\n";
            CHECK(chunked < unchunked);
        }
    }
}
