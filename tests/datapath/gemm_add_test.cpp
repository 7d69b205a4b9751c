// tests/datapath/gemm_add_test.cpp: the spec fields of the hardware conventions (align,
// subnormal_exponent, zero_exponent, the two_level model, the addend of gemm_add, and
// overflow::infinity_always in the accumulator) against the MPFR reference of
// tests/datapath/gemm_reference.hpp, bit for bit (NaN equals NaN; zeros compared with their
// sign), through lowbit::gemm and lowbit::gemm_add; plus argument checks and the text form.
#include <lowbit/datapath/gemm.hpp>

#include "datapath/gemm_reference.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using lowbit::accumulation;
using lowbit::alignment_cut;
using lowbit::alignment_exponent;
using lowbit::float_format;
using lowbit::float_quantizer;
using lowbit::gemm_spec;
using lowbit::overflow;
using lowbit::quantizer;
using lowbit::rounding;
using lowbit::subnormal_exponent;

constexpr float_format e8m13{.exp_bits = 8, .man_bits = 13};
constexpr float_format e5m3{.exp_bits = 5, .man_bits = 3};
constexpr float_format e4m2{.exp_bits = 4, .man_bits = 2};

using rng_t = std::mt19937_64;

int uniform(rng_t& r, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(r); }
bool chance(rng_t& r, double p) { return std::uniform_real_distribution<double>(0, 1)(r) < p; }
template <class T>
const T& pick(rng_t& r, const std::vector<T>& v) {
    return v[std::size_t(uniform(r, 0, int(v.size()) - 1))];
}

// ---------------------------------------------------------------------------------------------
// Printing and comparing.

std::string hexfloat(double x) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%a", x);
    return buf;
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

bool same_bits(float a, float b) {
    if (std::isnan(a) && std::isnan(b)) return true;
    return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

// Counts compared outputs and reports the first few mismatching cases in full.
struct comparison {
    std::uint64_t outputs = 0, cases = 0, mismatches = 0;
    int reported = 0;

    void check(const char* what, const gemm_spec& spec, const Eigen::MatrixXf& A, const Eigen::MatrixXf& B,
               const Eigen::MatrixXf* C, const Eigen::MatrixXf& expected, const Eigen::MatrixXf& got) {
        ++cases;
        bool ok = expected.rows() == got.rows() && expected.cols() == got.cols();
        std::string where;
        if (ok)
            for (Eigen::Index i = 0; i < got.rows(); ++i)
                for (Eigen::Index j = 0; j < got.cols(); ++j) {
                    ++outputs;
                    if (!same_bits(expected(i, j), got(i, j))) {
                        ok = false;
                        where += " (" + std::to_string(i) + "," + std::to_string(j) + "): expected " +
                                 hexfloat(expected(i, j)) + " got " + hexfloat(got(i, j)) + "\n";
                    }
                }
        if (ok) return;
        ++mismatches;
        if (reported >= 6) return;
        ++reported;
        std::ostringstream o;
        o << what << ": " << lowbit::to_string(spec) << "\n  A = " << describe(A) << "\n  B = " << describe(B);
        if (C != nullptr) o << "\n  C = " << describe(*C);
        o << "\n" << where;
        FAIL_CHECK(o.str());
    }
};

// Runs gemm (and gemm_add with C, when given) and the reference, and compares.
void run_both(comparison& cmp, const gemm_spec& spec, const Eigen::MatrixXf& A, const Eigen::MatrixXf& B,
              const Eigen::MatrixXf* C) {
    cmp.check("gemm", spec, A, B, nullptr, lowbit_test::reference_gemm(A, B, spec), lowbit::gemm(A, B, spec));
    if (C != nullptr)
        cmp.check("gemm_add", spec, A, B, C, lowbit_test::reference_gemm_add(A, B, *C, spec),
                  lowbit::gemm_add(A, B, *C, spec));
}

// ---------------------------------------------------------------------------------------------
// Inputs.

// The values a matrix is drawn from: elements of `format` (fp32 when unset) with exponents in
// [lo, hi] (clamped to the format), plus zeros of both signs, subnormals of the format, values
// near its largest, and (with `specials`) a few infinities and NaNs.
struct value_source {
    float_format format = lowbit::fp32;
    int lo = -10, hi = 10;
    double p_zero = 0.08, p_subnormal = 0.05, p_huge = 0.02, p_special = 0.0, p_off_grid = 0.05;

    float operator()(rng_t& r) const {
        const lowbit_test::gemm_ref::format_constants c = lowbit_test::gemm_ref::constants_of(format);
        const double max_finite = mpfr_get_d(c.max_finite.get(), MPFR_RNDN);
        const int emax = std::ilogb(max_finite);
        const int M = format.man_bits;
        const bool negative = chance(r, 0.5);
        const double u = std::uniform_real_distribution<double>(0, 1)(r);
        double v = 0;
        double t = p_special;
        if (u < t) {
            const int s = uniform(r, 0, 2);
            v = s == 2 ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
        } else if (u < (t += p_zero)) {
            v = 0.0;
        } else if (u < (t += p_subnormal) && M >= 1) {
            const std::uint64_t m = std::uniform_int_distribution<std::uint64_t>(1, (std::uint64_t(1) << M) - 1)(r);
            v = std::ldexp(double(m), c.emin - M);
        } else if (u < (t += p_huge)) {
            const std::uint64_t m = std::uniform_int_distribution<std::uint64_t>(0, (std::uint64_t(1) << M) - 1)(r);
            v = std::min(max_finite, std::ldexp(1.0 + std::ldexp(double(m), -M), emax));
        } else {
            const int elo = std::max(lo, c.emin), ehi = std::min(hi, emax);
            const int e = elo <= ehi ? uniform(r, elo, ehi) : std::clamp(lo, c.emin, emax);
            const std::uint64_t m = std::uniform_int_distribution<std::uint64_t>(0, (std::uint64_t(1) << M) - 1)(r);
            v = std::min(max_finite, std::ldexp(1.0 + std::ldexp(double(m), -M), e));
            if (chance(r, p_off_grid)) v *= 1.0 + std::ldexp(double(uniform(r, 1, 1000)), -20);  // the quantizer rounds
        }
        const float f = float(negative ? -v : v);
        return std::isfinite(v) && !std::isfinite(f) ? std::copysign(std::numeric_limits<float>::max(), f) : f;
    }
};

float_format format_of(const quantizer& q) {
    if (const auto* f = q.as_float()) return f->format;
    return lowbit::fp32;
}

struct shapes {
    int M, N, K;
};

shapes random_shape(rng_t& r) {
    const int K = chance(r, 0.05) ? 0 : chance(r, 0.3) ? uniform(r, 1, 8) : uniform(r, 1, 70);
    return {uniform(r, 1, 4), uniform(r, 1, 4), K};
}

// A (M x K), B (K x N) from their sources; some pairs of k cancel exactly (A's column repeated,
// B's row negated).
void fill(rng_t& r, const shapes& s, const value_source& sa, const value_source& sb, Eigen::MatrixXf& A,
          Eigen::MatrixXf& B) {
    A.resize(s.M, s.K);
    B.resize(s.K, s.N);
    for (int i = 0; i < s.M; ++i)
        for (int k = 0; k < s.K; ++k) A(i, k) = sa(r);
    for (int k = 0; k < s.K; ++k)
        for (int j = 0; j < s.N; ++j) B(k, j) = sb(r);
    if (s.K >= 2 && chance(r, 0.35)) {
        const int pairs = uniform(r, 1, std::max(1, s.K / 3));
        for (int t = 0; t < pairs; ++t) {
            const int k1 = uniform(r, 0, s.K - 1), k2 = uniform(r, 0, s.K - 1);
            if (k1 == k2) continue;
            A.col(k2) = A.col(k1);
            B.row(k2) = -B.row(k1);
        }
    }
}

// C (M x N): values of the accumulator's range, zeros of both signs, sometimes large.
Eigen::MatrixXf random_addend(rng_t& r, int M, int N, int lo, int hi, bool specials) {
    value_source s;
    s.lo = lo;
    s.hi = hi;
    s.p_zero = 0.15;
    s.p_subnormal = 0.05;
    s.p_huge = 0.02;
    s.p_special = specials ? 0.02 : 0.0;
    s.p_off_grid = 0.3;
    Eigen::MatrixXf C(M, N);
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) C(i, j) = s(r);
    return C;
}

// ---------------------------------------------------------------------------------------------
// Quantizer choices.

quantizer random_input(rng_t& r) {
    switch (uniform(r, 0, 5)) {
        case 0: return lowbit::fp16;
        case 1: return lowbit::bf16;
        case 2: return float_quantizer{.format = lowbit::tf32, .mode = rounding::toward_zero};
        case 3: return lowbit::fp8_e4m3;
        case 4: return lowbit::fp8_e5m2;
        default: return quantizer{};  // fp32 values as given
    }
}

quantizer random_aligned_accumulator(rng_t& r) {
    switch (uniform(r, 0, 9)) {
        case 0:
        case 1:
        case 2:
            return float_quantizer{.format = lowbit::fp32, .mode = rounding::toward_zero,
                                   .on_overflow = overflow::infinity_always};
        case 3:
        case 4: return lowbit::fp32;
        case 5: return lowbit::fp16;
        case 6: return lowbit::bf16;
        case 7: return float_quantizer{.format = e8m13, .mode = chance(r, 0.5) ? rounding::toward_zero : rounding::nearest_even};
        case 8: return float_quantizer{.format = e5m3, .mode = chance(r, 0.5) ? rounding::toward_zero : rounding::nearest_even};
        default: return chance(r, 0.5) ? quantizer{} : quantizer(float_quantizer{.format = e4m2});
    }
}

quantizer random_addend_quantizer(rng_t& r) {
    switch (uniform(r, 0, 6)) {
        case 0: return lowbit::fp16;
        case 1: return lowbit::bf16;
        case 2: return float_quantizer{.format = e5m3, .mode = rounding::toward_zero};
        case 3:  // random bits of role addend, index i*N + j
            return float_quantizer{.format = lowbit::bf16, .mode = rounding::stochastic,
                                   .seed = std::uint64_t(uniform(r, 0, 1000))};
        default: return quantizer{};
    }
}

// The chunking: none, or small chunks with a chunk accumulator.
void random_chunking(rng_t& r, gemm_spec& s) {
    if (chance(r, 0.6)) return;
    s.chunk = uniform(r, 1, 16);
    switch (uniform(r, 0, 3)) {
        case 0: s.chunk_accumulator = lowbit::fp32; break;
        case 1: s.chunk_accumulator = lowbit::bf16; break;
        case 2:
            s.chunk_accumulator = float_quantizer{.format = lowbit::fp32, .mode = rounding::toward_zero,
                                                  .on_overflow = overflow::infinity_always};
            break;
        default: break;  // exact
    }
}

// The exponent range of the values: narrow (cancellation, swamping) or wide (subnormals,
// overflow), within the input format.
void random_range(rng_t& r, value_source& s, const float_format& f) {
    s.format = f;
    const auto c = lowbit_test::gemm_ref::constants_of(f);
    const int emax = std::ilogb(mpfr_get_d(c.max_finite.get(), MPFR_RNDN));
    if (chance(r, 0.3)) {
        s.lo = c.emin;
        s.hi = emax;
    } else {
        const int centre = uniform(r, c.emin, emax);
        const int half = uniform(r, 0, 12);
        s.lo = centre - half;
        s.hi = centre + half;
    }
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("aligned: align, subnormal_exponent and zero_exponent against the reference", "[gemm_add][aligned]") {
    rng_t r(0xA11CED);
    comparison cmp;
    for (int t = 0; t < 260; ++t) {
        gemm_spec s;
        s.model = accumulation::aligned;
        s.input_a = random_input(r);
        s.input_b = chance(r, 0.7) ? s.input_a : random_input(r);
        s.accumulator = random_aligned_accumulator(r);
        s.align = chance(r, 0.5) ? alignment_exponent::operands : alignment_exponent::value;
        s.subnormals = chance(r, 0.5) ? subnormal_exponent::min_normal : subnormal_exponent::own;
        switch (uniform(r, 0, 2)) {
            case 0: break;
            case 1: s.zero_exponent = -126; break;
            default: s.zero_exponent = uniform(r, -140, 10); break;
        }
        s.window = uniform(r, 3, 30);
        s.group = uniform(r, 1, 40);
        s.cut = chance(r, 0.5) ? alignment_cut::toward_zero : alignment_cut::toward_negative;
        if (s.align == alignment_exponent::value && chance(r, 0.15)) s.product = lowbit::bf16;
        random_chunking(r, s);
        if (chance(r, 0.4)) s.addend = random_addend_quantizer(r);

        const shapes sh = random_shape(r);
        value_source sa, sb;
        random_range(r, sa, format_of(s.input_a));
        random_range(r, sb, format_of(s.input_b));
        sa.p_special = sb.p_special = chance(r, 0.1) ? 0.02 : 0.0;
        Eigen::MatrixXf A, B;
        fill(r, sh, sa, sb, A, B);
        const int e = (sa.lo + sb.lo + sa.hi + sb.hi) / 2;
        const Eigen::MatrixXf C = random_addend(r, sh.M, sh.N, std::clamp(e - 8, -149, 127), std::clamp(e + 8, -149, 127),
                                                chance(r, 0.05));
        run_both(cmp, s, A, B, &C);
    }
    INFO("cases " << cmp.cases << ", outputs " << cmp.outputs);
    CHECK(cmp.mismatches == 0);
    std::printf("aligned: %llu matrices, %llu outputs compared\n", (unsigned long long)cmp.cases,
                (unsigned long long)cmp.outputs);
}

// Random two_level specs; `specials`: inputs with infinities and NaN and products past 2^128 (the
// rule "a product of magnitude 2^128 or more makes the group's result an infinity of its sign
// (NaN with both signs), whatever acc was"), which the finite run keeps away from.
void two_level_run(std::uint64_t seed, int count, bool specials, const char* name) {
    rng_t r(seed);
    comparison cmp;
    for (int t = 0; t < count; ++t) {
        gemm_spec s;
        s.model = accumulation::two_level;
        s.input_a = random_input(r);
        s.input_b = chance(r, 0.7) ? s.input_a : random_input(r);
        switch (uniform(r, 0, 10)) {
            case 0: s.accumulator = lowbit::bf16; break;
            case 1: s.accumulator = lowbit::fp16; break;
            case 2:
                s.accumulator = float_quantizer{.format = lowbit::fp32, .mode = rounding::toward_zero,
                                                .on_overflow = overflow::infinity_always};
                break;
            case 3:  // random bits of index (i*N + j)*K + k_last
                s.accumulator = float_quantizer{.format = lowbit::bf16, .mode = rounding::stochastic,
                                                .seed = std::uint64_t(uniform(r, 0, 1000)), .random_bits = 8};
                break;
            default: s.accumulator = lowbit::fp32; break;
        }
        // Fields two_level does not read (its exponents are its operands', its cuts fixed).
        s.cut = chance(r, 0.5) ? alignment_cut::toward_zero : alignment_cut::toward_negative;
        s.align = chance(r, 0.5) ? alignment_exponent::operands : alignment_exponent::value;
        s.subnormals = chance(r, 0.5) ? subnormal_exponent::min_normal : subnormal_exponent::own;
        if (chance(r, 0.5)) s.zero_exponent = -126;
        s.group = uniform(r, 1, 20);
        s.sub_dots = uniform(r, 1, 3);
        s.window = uniform(r, 5, 30);
        s.sum_window = uniform(r, 5, 40);
        if (chance(r, 0.3)) random_chunking(r, s);
        if (chance(r, 0.4)) s.addend = random_addend_quantizer(r);

        const shapes sh = random_shape(r);
        value_source sa, sb;
        random_range(r, sa, format_of(s.input_a));
        random_range(r, sb, format_of(s.input_b));
        if (specials) {
            sa.p_special = sb.p_special = 0.03;
            sa.p_huge = sb.p_huge = 0.06;
        } else {
            // Products below 2^128: operand exponents summing to at most 126.
            sa.p_special = sb.p_special = 0.0;
            sa.hi = std::min(sa.hi, 62);
            sb.hi = std::min(sb.hi, 62);
            sa.lo = std::min(sa.lo, sa.hi);
            sb.lo = std::min(sb.lo, sb.hi);
            sa.p_huge = sb.p_huge = 0.0;
        }
        Eigen::MatrixXf A, B;
        fill(r, sh, sa, sb, A, B);
        const int e = (sa.lo + sb.lo + sa.hi + sb.hi) / 2;
        const Eigen::MatrixXf C = random_addend(r, sh.M, sh.N, std::clamp(e - 8, -149, 127), std::clamp(e + 8, -149, 127),
                                                specials && chance(r, 0.3));
        run_both(cmp, s, A, B, &C);
    }
    INFO("cases " << cmp.cases << ", outputs " << cmp.outputs);
    CHECK(cmp.mismatches == 0);
    std::printf("%s: %llu matrices, %llu outputs compared\n", name, (unsigned long long)cmp.cases,
                (unsigned long long)cmp.outputs);
}

TEST_CASE("two_level against the reference (finite products below 2^128)", "[gemm_add][two_level]") {
    two_level_run(0x7E0, 300, false, "two_level");
}

TEST_CASE("two_level against the reference with infinities, NaN and products past 2^128",
          "[gemm_add][two_level][nonfinite]") {
    two_level_run(0x7E1, 120, true, "two_level (nonfinite)");
}

// One output: lowbit (gemm, or gemm_add with c) and the reference, both against a hand value.
void hand(const char* spec_text, std::vector<float> a, std::vector<float> b, std::optional<float> c, float expected) {
    const gemm_spec s = gemm_spec::parse(spec_text);
    const Eigen::MatrixXf A = Eigen::Map<Eigen::MatrixXf>(a.data(), 1, Eigen::Index(a.size()));
    const Eigen::MatrixXf B = Eigen::Map<Eigen::MatrixXf>(b.data(), Eigen::Index(b.size()), 1);
    Eigen::MatrixXf C(1, 1);
    if (c) C(0, 0) = *c;
    const float got = c ? lowbit::gemm_add(A, B, C, s)(0, 0) : lowbit::gemm(A, B, s)(0, 0);
    const float ref = c ? lowbit_test::reference_gemm_add(A, B, C, s)(0, 0) : lowbit_test::reference_gemm(A, B, s)(0, 0);
    INFO(spec_text << "\n  A = " << describe(A) << "\n  B = " << describe(B) << (c ? "\n  C = " + hexfloat(*c) : "")
                   << "\n  expected " << hexfloat(expected) << ", lowbit " << hexfloat(got) << ", reference "
                   << hexfloat(ref));
    CHECK(same_bits(ref, expected));
    CHECK(same_bits(got, expected));
}

TEST_CASE("hand: two_level read literally", "[gemm_add][two_level][hand]") {
    // Sub-sums aligned on their sub-dots' largest exponents E_s (not on floor(log2) of the sums):
    // products 1.5*1.5 = 2.25 (e = 0 + 0) and -2^-3 (e = -3) in two sub-dots, window 3: both
    // sub-sums are cut toward -inf to multiples of 2^(0 - 3): 2.25 - 0.125 = 2.125. (Reading the
    // sub-sum 2.25 at its value's exponent 1 would cut -2^-3 to -2^-2: 2.0.)
    hand("model=two_level accumulator=fp32 group=2 sub_dots=2 window=3", {1.5f, -0.125f}, {1.5f, 1.0f}, {}, 2.125f);
    // Level 1 cuts toward zero whatever `cut` says: 1 + (-2^-10) in one sub-dot, window 5: -2^-10
    // cut toward zero to 0: 1.
    hand("model=two_level accumulator=fp32 group=2 window=5", {1.0f, -0x1p-10f}, {1.0f, 1.0f}, {}, 1.0f);
    hand("model=two_level accumulator=fp32 group=2 window=5 cut=toward_negative", {1.0f, -0x1p-10f}, {1.0f, 1.0f}, {},
         1.0f);
    // Level 2 cuts the acc toward -inf: acc = C = -(1 + 2^-10), E = 0, window 5: -(1 + 2^-5);
    // plus the product 1: -2^-5.
    hand("model=two_level accumulator=fp32 group=1 window=5", {1.0f}, {1.0f}, -0x1.004p+0f, -0x1p-5f);
    // With two sub-dots an acc below 2^(E - window - 1) = 2^-6 is dropped: 1 + 0; at 2^-6 it is cut
    // toward -inf to -2^-5: 1 - 2^-5.
    hand("model=two_level accumulator=fp32 group=1 window=5 sub_dots=2", {1.0f}, {1.0f}, -0x1p-7f, 1.0f);
    hand("model=two_level accumulator=fp32 group=1 window=5 sub_dots=2", {1.0f}, {1.0f}, -0x1p-6f, 0x1.fp-1f);
    // The products' exponents are their operands' (align is not consulted): 1.5*1.5 = 2.25 at e = 0
    // and 0.1875 at e = -3 in one sub-dot, window 3: 0.1875 cut toward zero to 0.125: 2.375.
    hand("model=two_level accumulator=fp32 group=2 window=3", {1.5f, 0.1875f}, {1.5f, 1.0f}, {}, 2.375f);
    hand("model=two_level accumulator=fp32 group=2 window=3 align=operands", {1.5f, 0.1875f}, {1.5f, 1.0f}, {}, 2.375f);
    // zero_exponent = 10: the zero acc takes part at level 2 (E = 10) and P = 2^-2 is cut to
    // sum_window = 31 bits below it, exactly: 2^-2.
    hand("model=two_level accumulator=fp32 group=2 window=5 zero_exponent=10", {0x1p-3f, 0x1p-3f}, {1.0f, 1.0f}, {},
         0x1p-2f);
}

TEST_CASE("hand: two_level drops an acc whose exponent is below E - window - 1",
          "[gemm_add][two_level][hand][subnormal]") {
    // fp16 accumulator (emin -14), subnormal_exponent = min_normal, two sub-dots, window 5. The
    // chain starts from acc = C = -2^-23, an fp16 subnormal: read at exponent -14, so E =
    // max(E_p = -30, -14) = -14, and e(acc) = -14 is not below E - window - 1 = -20: the acc is
    // kept, cut toward -inf to a multiple of 2^-19: -2^-19. P = 2^-30 (cut to sum_window bits
    // below -14: exact); -2^-19 + 2^-30 rounds in fp16 (step 2^-24) to -2^-19. (Its magnitude is
    // below 2^-20, but the rule reads the exponent, as CDNA3 does.)
    hand("model=two_level accumulator=fp16 group=1 window=5 sub_dots=2 subnormal_exponent=min_normal", {0x1p-15f},
         {0x1p-15f}, -0x1p-23f, -0x1p-19f);
    // With `own` exponents the acc sets E = -23 itself and is kept: -2^-23 + 2^-30 in fp16: -2^-23.
    hand("model=two_level accumulator=fp16 group=1 window=5 sub_dots=2", {0x1p-15f}, {0x1p-15f}, -0x1p-23f, -0x1p-23f);
    // The acc's exponent read at -14 for the cut of P: 0x1.fp-16 (e = -16) cut toward -inf to
    // sum_window = 3 bits below E = -14: 0x1.8p-16; C = 2^-20 cut to 0.
    hand("model=two_level accumulator=fp16 group=1 window=3 sum_window=3 subnormal_exponent=min_normal", {0x1.fp-8f},
         {0x1p-8f}, 0x1p-20f, 0x1.8p-16f);
}

TEST_CASE("hand: aligned reads a subnormal addend at the accumulator's smallest normal exponent",
          "[gemm_add][aligned][hand][subnormal]") {
    // fp16 accumulator (emin -14), window 3, one product 0x1.fp-16 (e = -16). An addend below
    // 2^-14 is read at -14 (E = -14: the product is cut to a multiple of 2^-17, 0x1.8p-16; the
    // addend to 0); read at its own exponent E would be -16 and the product 0x1.ep-16.
    for (const float c : {0x1p-20f, 0x1p-24f, 0x1.4p-23f, 0x1p-25f, 0x1p-40f, 0x1p-126f, 0x1p-130f})
        hand("model=aligned accumulator=fp16 group=1 window=3 subnormal_exponent=min_normal", {0x1.fp-8f}, {0x1p-8f}, c,
             0x1.8p-16f);
    hand("model=aligned accumulator=fp16 group=1 window=3", {0x1.fp-8f}, {0x1p-8f}, 0x1p-20f, 0x1.ep-16f);
    // An fp16 operand below 2^-14 with align = operands: a = 0x1.fp-16 read at -14 (significand
    // 0.484375), b = 1: e = -14, window 3: cut to a multiple of 2^-17: 0x1.8p-16; with own
    // exponents e = -16: a multiple of 2^-19, 0x1.ep-16.
    hand("model=aligned accumulator=fp32 input_a=fp16 group=1 window=3 align=operands subnormal_exponent=min_normal",
         {0x1.fp-16f}, {1.0f}, {}, 0x1.8p-16f);
    hand("model=aligned accumulator=fp32 input_a=fp16 group=1 window=3 align=operands", {0x1.fp-16f}, {1.0f}, {},
         0x1.ep-16f);
    // The same operand with input_a unset is an fp32 normal: own exponent -16 either way.
    hand("model=aligned accumulator=fp32 group=1 window=3 align=operands subnormal_exponent=min_normal", {0x1.fp-16f},
         {1.0f}, {}, 0x1.ep-16f);
    // align = operands: 1.5 * 1.5 = 2.25 at e = 0 and 0.1875 at e = -3, window 3: E = 0, unit
    // 2^-3: 2.25 + 0.125 = 2.375 (align = value: E = 1, unit 2^-2: 2.25 + 0 = 2.25).
    hand("model=aligned accumulator=fp32 group=2 window=3 align=operands", {1.5f, 0.1875f}, {1.5f, 1.0f}, {}, 2.375f);
    hand("model=aligned accumulator=fp32 group=2 window=3", {1.5f, 0.1875f}, {1.5f, 1.0f}, {}, 2.25f);
    // zero_exponent = 10: a zero product takes part at 2^10, window 5: 2^-3 is cut to 0, and the
    // zero sum is +0 (not -0 + -0 = -0).
    hand("model=aligned accumulator=fp32 group=2 window=5 zero_exponent=10", {0x1p-3f, 0.0f}, {1.0f, 1.0f}, {}, 0.0f);
    hand("model=aligned accumulator=fp32 group=2 window=5 zero_exponent=10", {-0x1p-3f, 0.0f}, {1.0f, -1.0f}, -0.0f,
         0.0f);
    hand("model=aligned accumulator=fp32 group=2 window=5", {-0x1p-3f, 0.0f}, {1.0f, -1.0f}, -0.0f, -0x1p-3f);
    // Without zero_exponent the sum keeps IEEE zero signs: C = -0 and products -0, -0: -0 (and
    // -0 + (+0) + (-0) = +0).
    hand("model=aligned accumulator=fp32 group=2 window=5", {0.0f, 0.0f}, {-1.0f, -1.0f}, -0.0f, -0.0f);
    hand("model=aligned accumulator=fp32 group=2 window=5", {0.0f, 0.0f}, {1.0f, -1.0f}, -0.0f, 0.0f);
}

TEST_CASE("hand: two_level products of 2^128 or more give an infinity, but after IEEE's specials",
          "[gemm_add][two_level][hand][nonfinite]") {
    // One group: +2^130 and -2^130: NaN.
    hand("model=two_level accumulator=fp32 group=2", {0x1p65f, 0x1p65f}, {0x1p65f, -0x1p65f}, {},
         std::numeric_limits<float>::quiet_NaN());
    // +2^128 exactly: +inf; 2^127 + 2^127 (each below 2^128): 2^128 rounded by Q_acc: +inf too.
    hand("model=two_level accumulator=fp32 group=1", {0x1p64f}, {0x1p64f}, {}, std::numeric_limits<float>::infinity());
    hand("model=two_level accumulator=fp32:toward_zero group=2", {0x1p64f, 0x1p64f}, {0x1p63f, 0x1p63f}, {},
         std::numeric_limits<float>::max());
    // Groups of one: -2^130 gives -inf; then the acc is infinite, and the next group is IEEE's
    // sum -inf + 2^130 = -inf.
    hand("model=two_level accumulator=fp32 group=1", {0x1p65f, 0x1p65f}, {-0x1p65f, 0x1p65f}, {},
         -std::numeric_limits<float>::infinity());
    hand("model=two_level accumulator=fp32 group=1", {0x1p65f, 0x1p65f}, {0x1p65f, -0x1p65f}, {},
         std::numeric_limits<float>::infinity());
    // A chain starting from C = NaN or -inf: IEEE's sums, NaN and -inf.
    hand("model=two_level accumulator=fp32 group=1", {0x1p65f}, {0x1p65f}, std::numeric_limits<float>::quiet_NaN(),
         std::numeric_limits<float>::quiet_NaN());
    hand("model=two_level accumulator=fp32 group=1", {0x1p65f}, {0x1p65f}, -std::numeric_limits<float>::infinity(),
         -std::numeric_limits<float>::infinity());
    // An infinite product (an infinite operand) beside a finite one past 2^128 of the other sign:
    // IEEE's sum, inf.
    hand("model=two_level accumulator=fp32 group=2", {std::numeric_limits<float>::infinity(), 0x1p65f}, {1.0f, -0x1p65f},
         {}, std::numeric_limits<float>::infinity());
}

TEST_CASE("hand: K = 0 is one empty chunk; the chunk total starts from -0", "[gemm_add][hand][zero]") {
    // An empty chain is its addend, then rounded by the chunk accumulator (bf16).
    hand("model=sequential accumulator=fp32 chunk_accumulator=bf16", {}, {}, 0x1.076c36p+1f, 0x1.08p+1f);
    hand("model=pairwise accumulator=fp32 chunk_accumulator=bf16", {}, {}, 0x1.076c36p+1f, 0x1.08p+1f);
    // pairwise: total = C = -0, plus the empty chunk's +0: +0. sequential: the chain starts from
    // C = -0 and the total from -0: -0.
    hand("model=pairwise accumulator=fp32", {}, {}, -0.0f, 0.0f);
    hand("model=sequential accumulator=fp32", {}, {}, -0.0f, -0.0f);
    hand("model=sequential accumulator=fp32", {}, {}, {}, 0.0f);
    // A chunk's -0 survives the chunk accumulator's -0 start: -1.75 * 2^-11 flushed by M7E4 to -0.
    hand("model=sequential accumulator=lba_m7e4_acc", {-0x1.cp-11f}, {1.0f}, {}, -0.0f);
}

TEST_CASE("the addend of sequential, fma, pairwise and fused chains", "[gemm_add][addend]") {
    rng_t r(0xADD);
    comparison cmp;
    const std::vector<accumulation> models{accumulation::sequential, accumulation::fma, accumulation::pairwise,
                                           accumulation::fused};
    for (int t = 0; t < 220; ++t) {
        gemm_spec s;
        s.model = pick(r, models);
        s.input_a = random_input(r);
        s.input_b = chance(r, 0.7) ? s.input_a : random_input(r);
        switch (uniform(r, 0, 7)) {
            case 0: s.accumulator = lowbit::bf16; break;
            case 1: s.accumulator = lowbit::fp16; break;
            case 2: s.accumulator = float_quantizer{.format = e5m3, .mode = rounding::toward_zero}; break;
            case 3: s.accumulator = quantizer{}; break;
            case 4:
                s.accumulator = float_quantizer{.format = lowbit::fp32, .mode = rounding::toward_zero,
                                                .on_overflow = overflow::infinity_always};
                break;
            default: s.accumulator = lowbit::fp32; break;
        }
        if (s.model != accumulation::fma && chance(r, 0.25)) s.product = chance(r, 0.5) ? lowbit::fp32 : lowbit::bf16;
        random_chunking(r, s);
        s.addend = chance(r, 0.5) ? random_addend_quantizer(r) : quantizer{};

        const shapes sh = random_shape(r);
        value_source sa, sb;
        random_range(r, sa, format_of(s.input_a));
        random_range(r, sb, format_of(s.input_b));
        sa.p_special = sb.p_special = chance(r, 0.08) ? 0.02 : 0.0;
        Eigen::MatrixXf A, B;
        fill(r, sh, sa, sb, A, B);
        const int e = (sa.lo + sb.lo + sa.hi + sb.hi) / 2;
        const Eigen::MatrixXf C = random_addend(r, sh.M, sh.N, std::clamp(e - 8, -149, 127), std::clamp(e + 8, -149, 127),
                                                chance(r, 0.08));
        run_both(cmp, s, A, B, &C);
    }
    INFO("cases " << cmp.cases << ", outputs " << cmp.outputs);
    CHECK(cmp.mismatches == 0);
    std::printf("addend chains: %llu matrices, %llu outputs compared\n", (unsigned long long)cmp.cases,
                (unsigned long long)cmp.outputs);
}

TEST_CASE("overflow::infinity_always in the accumulator: sums past the largest value", "[gemm_add][infinity_always]") {
    rng_t r(0x1F);
    comparison cmp;
    const std::vector<accumulation> models{accumulation::sequential, accumulation::fma,     accumulation::pairwise,
                                           accumulation::fused,      accumulation::aligned, accumulation::two_level};
    const std::vector<rounding> modes{rounding::toward_zero, rounding::toward_positive, rounding::toward_negative,
                                      rounding::nearest_even, rounding::odd};
    const std::vector<float_format> formats{lowbit::fp32, lowbit::fp32, lowbit::fp16, lowbit::bf16, e5m3};
    for (int t = 0; t < 160; ++t) {
        gemm_spec s;
        s.model = pick(r, models);
        const float_format f = pick(r, formats);
        const rounding mode = chance(r, 0.8) ? pick(r, std::vector<rounding>(modes.begin(), modes.begin() + 3))
                                             : pick(r, modes);
        s.accumulator = float_quantizer{.format = f, .mode = mode,
                                        .on_overflow = chance(r, 0.8) ? overflow::infinity_always : overflow::infinity};
        if (chance(r, 0.2)) {
            s.chunk = uniform(r, 1, 8);
            s.chunk_accumulator = s.accumulator;
        }
        if (s.model == accumulation::aligned) {
            s.window = uniform(r, 10, 30);
            s.group = uniform(r, 1, 16);
        }
        if (s.model == accumulation::two_level) {
            s.group = uniform(r, 1, 16);
            s.window = uniform(r, 10, 30);
            s.sum_window = uniform(r, 10, 40);
            s.sub_dots = uniform(r, 1, 2);
        }
        // Products near the format's largest value: |a b| about max / 2 .. 2 max.
        const auto c = lowbit_test::gemm_ref::constants_of(f);
        const int emax = std::ilogb(mpfr_get_d(c.max_finite.get(), MPFR_RNDN));
        value_source src;
        src.lo = emax / 2 - 2;
        src.hi = emax / 2;
        src.p_zero = 0.03;
        src.p_subnormal = 0;
        src.p_huge = 0;
        const shapes sh{uniform(r, 1, 3), uniform(r, 1, 3), uniform(r, 1, 24)};
        Eigen::MatrixXf A, B;
        fill(r, sh, src, src, A, B);
        if (chance(r, 0.5)) B = B.cwiseAbs();  // one sign: no cancellation, certain overflow
        const Eigen::MatrixXf C = random_addend(r, sh.M, sh.N, emax - 3, emax, false);
        run_both(cmp, s, A, B, &C);
    }
    INFO("cases " << cmp.cases << ", outputs " << cmp.outputs);
    CHECK(cmp.mismatches == 0);
    std::printf("infinity_always: %llu matrices, %llu outputs compared\n", (unsigned long long)cmp.cases,
                (unsigned long long)cmp.outputs);
}

TEST_CASE("hand: infinity_always truncation overflows to infinity", "[gemm_add][infinity_always][hand]") {
    // 2^127 + 2^127 = 2^128 > max float: toward_zero gives the largest float under
    // overflow::infinity and +inf under infinity_always; -2^128 toward_positive: -inf.
    Eigen::MatrixXf A(1, 2), B(2, 1);
    A << 0x1p64f, 0x1p64f;
    B << 0x1p63f, 0x1p63f;
    gemm_spec s;
    s.accumulator = float_quantizer{.format = lowbit::fp32, .mode = rounding::toward_zero};
    CHECK(lowbit::gemm(A, B, s)(0, 0) == std::numeric_limits<float>::max());
    CHECK(lowbit_test::reference_gemm(A, B, s)(0, 0) == std::numeric_limits<float>::max());
    s.accumulator = float_quantizer{.format = lowbit::fp32, .mode = rounding::toward_zero,
                                    .on_overflow = overflow::infinity_always};
    CHECK(lowbit::gemm(A, B, s)(0, 0) == std::numeric_limits<float>::infinity());
    CHECK(lowbit_test::reference_gemm(A, B, s)(0, 0) == std::numeric_limits<float>::infinity());
    s.accumulator = float_quantizer{.format = lowbit::fp32, .mode = rounding::toward_positive,
                                    .on_overflow = overflow::infinity_always};
    const Eigen::MatrixXf nB = -B;
    CHECK(lowbit::gemm(A, nB, s)(0, 0) == -std::numeric_limits<float>::infinity());
    CHECK(lowbit_test::reference_gemm(A, nB, s)(0, 0) == -std::numeric_limits<float>::infinity());
    // odd never overflows to infinity.
    s.accumulator = float_quantizer{.format = lowbit::fp32, .mode = rounding::odd,
                                    .on_overflow = overflow::infinity_always};
    CHECK(lowbit::gemm(A, B, s)(0, 0) == std::numeric_limits<float>::max());
    CHECK(lowbit_test::reference_gemm(A, B, s)(0, 0) == std::numeric_limits<float>::max());
}

TEST_CASE("hand: the addend of gemm_add", "[gemm_add][hand]") {
    // 1 + 2^-12 (products) onto C = 2^12 in a bf16 sequential chain: each step rounds to 2^12.
    Eigen::MatrixXf A(1, 2), B(2, 1), C(1, 1);
    A << 1.0f, 1.0f;
    B << 1.0f, 1.0f;
    C << 4096.0f;
    gemm_spec s;
    s.accumulator = lowbit::bf16;
    CHECK(lowbit::gemm_add(A, B, C, s)(0, 0) == 4096.0f);       // 4096 + 1 = 4096 twice
    CHECK(lowbit_test::reference_gemm_add(A, B, C, s)(0, 0) == 4096.0f);
    s.model = accumulation::pairwise;                            // 1 + 1 = 2, then 4096 + 2 exact
    CHECK(lowbit::gemm_add(A, B, C, s)(0, 0) == 4098.0f);
    CHECK(lowbit_test::reference_gemm_add(A, B, C, s)(0, 0) == 4098.0f);
    // The addend quantizer rounds C first: 4097 in fp16 (nearest even) is 4096.
    s.model = accumulation::fused;
    s.accumulator = lowbit::fp32;
    s.addend = lowbit::fp16;
    C << 4097.0f;
    CHECK(lowbit::gemm_add(A, B, C, s)(0, 0) == 4098.0f);
    CHECK(lowbit_test::reference_gemm_add(A, B, C, s)(0, 0) == 4098.0f);
}

TEST_CASE("invalid combinations of the new fields throw std::invalid_argument", "[gemm_add][args]") {
    Eigen::MatrixXf A = Eigen::MatrixXf::Ones(2, 3), B = Eigen::MatrixXf::Ones(3, 2), C = Eigen::MatrixXf::Zero(2, 2);
    gemm_spec s;
    s.accumulator = lowbit::fp32;
    s.model = accumulation::aligned;
    s.align = alignment_exponent::operands;
    s.product = lowbit::bf16;
    CHECK_THROWS_AS(s.validate(), std::invalid_argument);
    CHECK_THROWS_AS(lowbit::gemm(A, B, s), std::invalid_argument);
    CHECK_THROWS_AS(lowbit::gemm_add(A, B, C, s), std::invalid_argument);
    s.product = quantizer{};
    CHECK_NOTHROW(lowbit::gemm(A, B, s));

    gemm_spec z;
    z.accumulator = lowbit::fp32;
    z.model = accumulation::sequential;
    z.zero_exponent = -126;
    CHECK_THROWS_AS(lowbit::gemm(A, B, z), std::invalid_argument);
    z.zero_exponent.reset();
    z.subnormals = subnormal_exponent::min_normal;
    CHECK_THROWS_AS(lowbit::gemm(A, B, z), std::invalid_argument);
    z.subnormals = subnormal_exponent::own;
    z.align = alignment_exponent::operands;
    CHECK_THROWS_AS(lowbit::gemm(A, B, z), std::invalid_argument);

    for (const accumulation m : {accumulation::sequential, accumulation::fma, accumulation::pairwise,
                                 accumulation::fused, accumulation::aligned}) {
        gemm_spec d;
        d.accumulator = lowbit::fp32;
        d.model = m;
        d.sub_dots = 2;
        CHECK_THROWS_AS(lowbit::gemm(A, B, d), std::invalid_argument);
        CHECK_THROWS_AS(lowbit::gemm_spec::parse(lowbit::to_string(d)), std::invalid_argument);
    }
    gemm_spec two;
    two.accumulator = lowbit::fp32;
    two.model = accumulation::two_level;
    two.sub_dots = 2;
    CHECK_NOTHROW(lowbit::gemm(A, B, two));
    two.product = lowbit::fp32;
    CHECK_THROWS_AS(lowbit::gemm(A, B, two), std::invalid_argument);

    gemm_spec plain;
    plain.accumulator = lowbit::fp32;
    const Eigen::MatrixXf wrong1 = Eigen::MatrixXf::Zero(2, 3), wrong2 = Eigen::MatrixXf::Zero(3, 2);
    CHECK_THROWS_AS(lowbit::gemm_add(A, B, wrong1, plain), std::invalid_argument);
    CHECK_THROWS_AS(lowbit::gemm_add(A, B, wrong2, plain), std::invalid_argument);
    CHECK_THROWS_AS(lowbit_test::reference_gemm_add(A, B, wrong1, plain), std::invalid_argument);
    CHECK_NOTHROW(lowbit::gemm_add(A, B, C, plain));
}

TEST_CASE("gemm_spec's text form round-trips every new field", "[gemm_add][text]") {
    rng_t r(0x7E47);
    int checked = 0;
    for (int t = 0; t < 400; ++t) {
        gemm_spec s;
        s.model = chance(r, 0.5) ? accumulation::aligned : accumulation::two_level;
        s.input_a = random_input(r);
        s.input_b = random_input(r);
        s.accumulator = random_aligned_accumulator(r);
        if (chance(r, 0.3))
            s.accumulator = float_quantizer{.format = pick(r, std::vector<float_format>{lowbit::fp32, e5m3, lowbit::fp16}),
                                            .mode = rounding::toward_negative,
                                            .on_overflow = pick(r, std::vector<overflow>{overflow::infinity,
                                                                                         overflow::saturate,
                                                                                         overflow::infinity_always})};
        random_chunking(r, s);
        s.window = uniform(r, 1, 60);
        s.group = uniform(r, 1, 64);
        s.cut = chance(r, 0.5) ? alignment_cut::toward_zero : alignment_cut::toward_negative;
        s.align = chance(r, 0.5) ? alignment_exponent::operands : alignment_exponent::value;
        s.subnormals = chance(r, 0.5) ? subnormal_exponent::min_normal : subnormal_exponent::own;
        if (chance(r, 0.7)) s.zero_exponent = uniform(r, -2200, 2200);
        if (chance(r, 0.2)) s.zero_exponent = pick(r, std::vector<int>{0, -1, 1, -126, -2200, 2200});
        s.addend = random_addend_quantizer(r);
        if (chance(r, 0.3))
            s.addend = float_quantizer{.format = lowbit::bf16, .mode = rounding::toward_zero,
                                       .on_overflow = overflow::infinity_always};
        if (s.model == accumulation::two_level) {
            s.sum_window = uniform(r, 1, 1000);
            s.sub_dots = uniform(r, 1, 64);
        } else if (chance(r, 0.3)) {
            s.sum_window = uniform(r, 1, 1000);  // kept by the text even where unused
        }
        s.record_lost = chance(r, 0.2);
        s.threads = uniform(r, 0, 3);
        REQUIRE_NOTHROW(s.validate());
        const std::string text = lowbit::to_string(s);
        INFO(text);
        gemm_spec back;
        REQUIRE_NOTHROW(back = gemm_spec::parse(text));
        CHECK(back == s);
        CHECK(lowbit::to_string(back) == text);
        ++checked;
    }
    // The explicit spellings.
    const gemm_spec p = gemm_spec::parse(
        "model=two_level accumulator=fp32:toward_zero:infinity_always sub_dots=2 sum_window=24 window=20 group=8 "
        "align=operands subnormal_exponent=min_normal zero_exponent=-126 addend=fp16");
    CHECK(p.model == accumulation::two_level);
    CHECK(p.sub_dots == 2);
    CHECK(p.sum_window == 24);
    CHECK(p.align == alignment_exponent::operands);
    CHECK(p.subnormals == subnormal_exponent::min_normal);
    CHECK(p.zero_exponent == std::optional<int>(-126));
    CHECK(p.addend == quantizer(lowbit::fp16));
    REQUIRE(p.accumulator.as_float() != nullptr);
    CHECK(p.accumulator.as_float()->on_overflow == overflow::infinity_always);
    CHECK_FALSE(gemm_spec::parse("model=aligned zero_exponent=none").zero_exponent.has_value());
    CHECK(checked == 400);
}

}  // namespace
