// tests/datapath/hardware_test.cpp: lowbit::hw presets (hardware.hpp) against an independent
// reference of the matrix units (tests/datapath/mma_reference.hpp), bit for bit, on random and
// adversarial inputs: every output of D = A B + C for every preset, several K around the group
// size, chains of groups, cancellation, wide exponent spreads, overflow, subnormals, zeros,
// infinities and NaNs. LOWBIT_HW_TEST_COVERAGE=1 in the environment prints, per preset, how many
// outputs were NaN, infinite, zero and subnormal.
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/hardware.hpp>
#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/quantize.hpp>

#include "datapath/mma_reference.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace mma = lowbit_test::mma;

// ---------------------------------------------------------------------------------------------
// Names and formats.

const lowbit::float_format& lowbit_format(mma::format f) {
    switch (f) {
        case mma::format::fp32: return lowbit::fp32;
        case mma::format::tf32: return lowbit::tf32;
        case mma::format::fp16: return lowbit::fp16;
        case mma::format::bf16: return lowbit::bf16;
        case mma::format::e4m3: return lowbit::fp8_e4m3;
        case mma::format::e5m2: return lowbit::fp8_e5m2;
        case mma::format::e4m3fnuz: return lowbit::fp8_e4m3fnuz;
        case mma::format::e5m2fnuz: return lowbit::fp8_e5m2fnuz;
        case mma::format::e8m13: break;
    }
    throw std::logic_error("hardware_test: no lowbit format for e8m13");
}

lowbit::hw::unit lowbit_unit(mma::unit u) {
    switch (u) {
        case mma::unit::volta: return lowbit::hw::unit::volta;
        case mma::unit::turing: return lowbit::hw::unit::turing;
        case mma::unit::ampere: return lowbit::hw::unit::ampere;
        case mma::unit::ada: return lowbit::hw::unit::ada;
        case mma::unit::hopper: return lowbit::hw::unit::hopper;
        case mma::unit::blackwell: return lowbit::hw::unit::blackwell;
        case mma::unit::rtx_blackwell: return lowbit::hw::unit::rtx_blackwell;
        case mma::unit::cdna1: return lowbit::hw::unit::cdna1;
        case mma::unit::cdna2: return lowbit::hw::unit::cdna2;
        case mma::unit::cdna3: return lowbit::hw::unit::cdna3;
    }
    throw std::logic_error("hardware_test: unknown unit");
}

std::string hex(double x) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%a", x);
    return buf;
}

std::string hex_bits(float x) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%a (0x%08x)", double(x), unsigned(std::bit_cast<std::uint32_t>(x)));
    return buf;
}

// One preset: unit, input formats and the output format asked for (fp32 or fp16).
struct preset_case {
    mma::unit u;
    mma::format a, b, out;
};

std::string describe(const preset_case& c) {
    std::string s = std::string(mma::name(c.u)) + " " + mma::name(c.a);
    if (c.b != c.a) s += std::string(" x ") + mma::name(c.b);
    return s + " -> " + mma::name(c.out);
}

// ---------------------------------------------------------------------------------------------
// Values on a format's grid.

struct value_format {
    lowbit::float_format grid;  // values are rounded onto it (tf32 inputs: any fp32 value)
    int man, emin, emax;
    double max;
    bool inf;
};

value_format value_format_of(mma::format f) {
    const lowbit::float_format g = f == mma::format::tf32 ? lowbit::fp32 : lowbit_format(f);
    return {g, g.man_bits, g.emin(), g.emax(), g.max_finite(), g.has_infinity()};
}

class generator {
public:
    explicit generator(std::uint64_t seed) : rng_(seed) {}

    int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
    bool chance(double p) { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < p; }
    float sign() { return chance(0.5) ? 1.0f : -1.0f; }

    // A value of v with exponent in [elo, ehi] (clamped to v's range, subnormals included), a
    // random significand (sometimes exactly 1 or the largest), sign s (0: random).
    float draw(const value_format& v, int elo, int ehi, float s = 0) {
        const int lo_limit = v.emin - v.man, hi_limit = v.emax;
        elo = std::clamp(elo, lo_limit, hi_limit);
        ehi = std::clamp(ehi, lo_limit, hi_limit);
        if (elo > ehi) std::swap(elo, ehi);
        const int e = uniform(elo, ehi);
        double sig;
        const int kind = uniform(0, 9);
        if (kind == 0) sig = 1.0;
        else if (kind == 1) sig = 2.0 - std::ldexp(1.0, -v.man);
        else sig = 1.0 + std::ldexp(double(std::uniform_int_distribution<std::uint64_t>(0, (std::uint64_t(1) << v.man) - 1)(rng_)), -v.man);
        if (s == 0) s = sign();
        float q = lowbit::quantize(float(double(s) * std::ldexp(sig, e)), v.grid);
        if (!std::isfinite(q) || std::fabs(double(q)) > v.max) q = std::copysign(float(v.max), s);
        return q;
    }
    float full(const value_format& v) { return draw(v, v.emin - v.man, v.emax); }
    float zero(const value_format& v) { return lowbit::quantize(chance(0.5) ? 0.0f : -0.0f, v.grid); }
    float special(const value_format& v) {
        const int r = uniform(0, 2);
        if (v.inf && r == 0) return std::numeric_limits<float>::infinity();
        if (v.inf && r == 1) return -std::numeric_limits<float>::infinity();
        return std::numeric_limits<float>::quiet_NaN();
    }

private:
    std::mt19937_64 rng_;
};

// ---------------------------------------------------------------------------------------------
// Scenarios: how one trial's A (M x K), B (K x N) and C (M x N) are built.

enum class scenario : int {
    wide,            // every exponent of the formats, zeros, subnormals
    narrow,          // exponents in [-3, 3]: carries, cancellation, sums near powers of two
    clustered,       // exponents within +-6 of a random centre, C near the products or not
    cancel,          // (x, -x) pairs: exact cancellation, C = +-0 or small
    huge_tiny,       // one huge product beside many tiny ones (spread far beyond F)
    overflow,        // products and C near the output format's largest value
    powers_of_two,   // C = +-2^k, products +-2^j or (2 - ulp) 2^j just below: sums at / below 2^k
    subnormal_large, // subnormal operands times large ones
    zeros,           // all-zero products with C = +-0; zeros beside huge values
    specials,        // a few infinities / NaNs
    c_dominant,      // C about 2^F times the products: the products' cut bits decide
    tiny,            // products near or below the output's subnormal range, zeros, C = +-0 or tiny
    count
};

const char* name(scenario s) {
    switch (s) {
        case scenario::wide: return "wide";
        case scenario::narrow: return "narrow";
        case scenario::clustered: return "clustered";
        case scenario::cancel: return "cancel";
        case scenario::huge_tiny: return "huge_tiny";
        case scenario::overflow: return "overflow";
        case scenario::powers_of_two: return "powers_of_two";
        case scenario::subnormal_large: return "subnormal_large";
        case scenario::zeros: return "zeros";
        case scenario::specials: return "specials";
        case scenario::c_dominant: return "c_dominant";
        case scenario::tiny: return "tiny";
        case scenario::count: break;
    }
    return "?";
}

struct trial_data {
    Eigen::MatrixXf A, B, C;
};

trial_data make_trial(generator& g, scenario sc, const preset_case& pc, const mma::spec& p, int M, int K, int N) {
    const value_format va = value_format_of(pc.a), vb = value_format_of(pc.b), vc = value_format_of(pc.out);
    const int F = mma::is_nvidia(pc.u) ? p.F : 24;
    trial_data t{Eigen::MatrixXf(M, K), Eigen::MatrixXf(K, N), Eigen::MatrixXf(M, N)};
    auto fillA = [&](auto f) {
        for (int i = 0; i < M; ++i)
            for (int k = 0; k < K; ++k) t.A(i, k) = f(i, k);
    };
    auto fillB = [&](auto f) {
        for (int k = 0; k < K; ++k)
            for (int j = 0; j < N; ++j) t.B(k, j) = f(k, j);
    };
    auto fillC = [&](auto f) {
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) t.C(i, j) = f(i, j);
    };
    // A C value of various kinds: zero, subnormal, random, huge.
    auto any_c = [&](int, int) -> float {
        const int r = g.uniform(0, 9);
        if (r == 0) return 0.0f;
        if (r == 1) return -0.0f;
        if (r == 2) return g.draw(vc, vc.emin - vc.man, vc.emin - 1);
        if (r == 3) return g.draw(vc, vc.emax - 2, vc.emax);
        return g.full(vc);
    };
    switch (sc) {
        case scenario::wide:
            fillA([&](int, int) { return g.chance(0.06) ? g.zero(va) : g.full(va); });
            fillB([&](int, int) { return g.chance(0.06) ? g.zero(vb) : g.full(vb); });
            fillC(any_c);
            break;
        case scenario::narrow: {
            fillA([&](int, int) { return g.chance(0.05) ? g.zero(va) : g.draw(va, -3, 3); });
            fillB([&](int, int) { return g.chance(0.05) ? g.zero(vb) : g.draw(vb, -3, 3); });
            fillC([&](int, int) { return g.chance(0.2) ? g.zero(vc) : g.draw(vc, -4, 6); });
            break;
        }
        case scenario::clustered: {
            const int ca = g.uniform(va.emin - va.man / 2, va.emax), cb = g.uniform(vb.emin - vb.man / 2, vb.emax);
            fillA([&](int, int) { return g.draw(va, ca - 6, ca + 6); });
            fillB([&](int, int) { return g.draw(vb, cb - 6, cb + 6); });
            const int ep = ca + cb;
            fillC([&](int i, int j) { return g.chance(0.5) ? g.draw(vc, ep - 4, ep + 8) : any_c(i, j); });
            break;
        }
        case scenario::cancel: {
            const int ca = g.chance(0.5) ? 0 : g.uniform(va.emin, va.emax), cb = g.chance(0.5) ? 0 : g.uniform(vb.emin, vb.emax);
            fillA([&](int, int) { return g.draw(va, ca - 4, ca + 4); });
            fillB([&](int, int) { return g.draw(vb, cb - 4, cb + 4); });
            const int start = g.uniform(0, 1);  // pairs straddling group boundaries too
            for (int k = start; k + 1 < K; k += 2) {
                for (int i = 0; i < M; ++i) t.A(i, k + 1) = -t.A(i, k);
                for (int j = 0; j < N; ++j) t.B(k + 1, j) = t.B(k, j);
            }
            // an unpaired element: zero or small
            for (int k = 0; k < K; ++k) {
                const bool paired = k >= start && (k - start) / 2 * 2 + start + 1 < K;
                if (paired) continue;
                for (int i = 0; i < M; ++i)
                    t.A(i, k) = g.chance(0.6) ? g.zero(va) : g.draw(va, ca - 12, ca - 6);
            }
            fillC([&](int i, int j) {
                const int r = g.uniform(0, 5);
                if (r <= 1) return 0.0f;
                if (r <= 3) return -0.0f;
                return any_c(i, j);
            });
            break;
        }
        case scenario::huge_tiny: {
            const int top_a = g.uniform(std::min(va.emax, 2), va.emax), top_b = g.uniform(std::min(vb.emax, 2), vb.emax);
            const int spread = g.uniform(F - 4, F + 40);
            std::vector<int> big_k(static_cast<std::size_t>(M), 0);
            for (int i = 0; i < M; ++i) big_k[std::size_t(i)] = g.uniform(0, K - 1);
            fillA([&](int i, int k) {
                if (k == big_k[std::size_t(i)]) return g.draw(va, top_a - 1, top_a);
                return g.draw(va, top_a - spread / 2 - 6, top_a - spread / 2);
            });
            fillB([&](int, int) { return g.draw(vb, top_b - spread / 2 - 6, top_b); });
            const int ep = top_a + top_b;
            fillC([&](int i, int j) {
                const int r = g.uniform(0, 3);
                if (r == 0) return g.zero(vc);
                if (r == 1) return g.draw(vc, ep - spread - 4, ep - F + 2);
                if (r == 2) return g.draw(vc, ep - 2, ep + 2);
                return any_c(i, j);
            });
            break;
        }
        case scenario::overflow: {
            // operands whose products approach the output's largest value (as far as the inputs
            // reach), C near that value, mostly of one sign
            const int target = vc.emax;
            const float s = g.sign();
            const double p_same = g.chance(0.5) ? 1.0 : 0.75;
            const int half = target / 2;
            fillA([&](int, int) { return g.draw(va, half - 1, half + 1, g.chance(p_same) ? s : -s); });
            fillB([&](int, int) { return g.draw(vb, target - half - 2, target - half + 1, 1.0f); });
            fillC([&](int i, int j) {
                const int r = g.uniform(0, 3);
                if (r <= 1) return g.draw(vc, vc.emax - 1, vc.emax, g.chance(p_same) ? s : -s);
                if (r == 2) return g.zero(vc);
                return any_c(i, j);
            });
            break;
        }
        case scenario::powers_of_two: {
            const int k_c = g.uniform(std::max(vc.emin, -40), std::min(vc.emax - 1, 40));
            const float s = g.sign();
            auto pow2_or_below = [&](const value_format& v, int e, float sgn) {
                const double sig = g.chance(0.5) ? 1.0 : 2.0 - std::ldexp(1.0, -v.man);
                const int ee = std::clamp(e, v.emin - v.man, v.emax);
                float q = lowbit::quantize(float(double(sgn) * std::ldexp(sig, ee)), v.grid);
                if (!std::isfinite(q) || std::fabs(double(q)) > v.max) q = std::copysign(float(v.max), sgn);
                return q;
            };
            const int lag = g.uniform(1, F + 4);  // products this many binades below C
            fillA([&](int, int) {
                const int e = (k_c - g.uniform(lag - 2, lag + 2)) / 2;
                return g.chance(0.08) ? g.zero(va) : pow2_or_below(va, e, g.chance(0.8) ? -s : s);
            });
            fillB([&](int, int) {
                const int e = (k_c - g.uniform(lag - 2, lag + 2)) - (k_c - lag) / 2;
                return pow2_or_below(vb, e, 1.0f);
            });
            fillC([&](int, int) { return g.chance(0.85) ? pow2_or_below(vc, k_c, s) : g.zero(vc); });
            break;
        }
        case scenario::subnormal_large: {
            fillA([&](int, int) {
                const int r = g.uniform(0, 2);
                if (r == 0) return g.draw(va, va.emin - va.man, va.emin - 1);
                if (r == 1) return g.draw(va, va.emax - 3, va.emax);
                return g.full(va);
            });
            fillB([&](int, int) {
                const int r = g.uniform(0, 2);
                if (r == 0) return g.draw(vb, vb.emin - vb.man, vb.emin - 1);
                if (r == 1) return g.draw(vb, vb.emax - 3, vb.emax);
                return g.full(vb);
            });
            fillC([&](int i, int j) {
                return g.chance(0.4) ? g.draw(vc, vc.emin - vc.man, vc.emin + 2) : any_c(i, j);
            });
            break;
        }
        case scenario::zeros: {
            const int r = g.uniform(0, 2);
            if (r == 0) {  // every product zero
                fillA([&](int, int) { return g.zero(va); });
                fillB([&](int, int) { return g.chance(0.5) ? g.zero(vb) : g.full(vb); });
            } else if (r == 1) {
                fillA([&](int, int) { return g.full(va); });
                fillB([&](int, int) { return g.zero(vb); });
            } else {  // zeros beside huge values
                fillA([&](int, int) { return g.chance(0.7) ? g.zero(va) : g.draw(va, va.emax - 2, va.emax); });
                fillB([&](int, int) { return g.chance(0.3) ? g.zero(vb) : g.draw(vb, vb.emax - 2, vb.emax); });
            }
            fillC([&](int i, int j) {
                const int q = g.uniform(0, 4);
                if (q == 0) return 0.0f;
                if (q <= 2) return -0.0f;
                return any_c(i, j);
            });
            break;
        }
        case scenario::specials: {
            const bool narrow = g.chance(0.5);
            fillA([&](int, int) { return narrow ? g.draw(va, -3, 3) : g.full(va); });
            fillB([&](int, int) { return narrow ? g.draw(vb, -3, 3) : g.full(vb); });
            fillC(any_c);
            const int n_special = g.uniform(1, 3);
            for (int s = 0; s < n_special; ++s) {
                const int where = g.uniform(0, 2);
                if (where == 0) t.A(g.uniform(0, M - 1), g.uniform(0, K - 1)) = g.special(va);
                else if (where == 1) t.B(g.uniform(0, K - 1), g.uniform(0, N - 1)) = g.special(vb);
                else t.C(g.uniform(0, M - 1), g.uniform(0, N - 1)) = g.special(vc);
            }
            // and a zero beside an infinity sometimes (0 * inf = NaN)
            if (g.chance(0.3)) t.A(g.uniform(0, M - 1), g.uniform(0, K - 1)) = g.zero(va);
            break;
        }
        case scenario::c_dominant: {
            const int ca = g.uniform(-4, 4), cb = g.uniform(-4, 4);
            fillA([&](int, int) { return g.draw(va, ca - 2, ca + 2); });
            fillB([&](int, int) { return g.draw(vb, cb - 2, cb + 2); });
            const int ec = std::min(ca + cb + F, vc.emax);
            fillC([&](int, int) { return g.draw(vc, ec - 3, ec + 3); });
            break;
        }
        case scenario::tiny: {
            // product exponents around the output's smallest normal exponent and below it (for
            // fp16 / fp8 inputs: as low as the formats reach)
            const int target = vc.emin - g.uniform(0, 30);
            fillA([&](int, int) { return g.chance(0.15) ? g.zero(va) : g.draw(va, (target - 8) / 2, (target + 8) / 2); });
            fillB([&](int, int) { return g.chance(0.15) ? g.zero(vb) : g.draw(vb, (target - 8) / 2, (target + 8) / 2); });
            fillC([&](int, int) {
                const int r = g.uniform(0, 9);
                if (r <= 1) return 0.0f;
                if (r <= 3) return -0.0f;
                if (r <= 6) return g.draw(vc, vc.emin - vc.man, vc.emin - 1);
                return g.draw(vc, vc.emin, vc.emin + 4);
            });
            break;
        }
        case scenario::count: break;
    }
    return t;
}

// ---------------------------------------------------------------------------------------------
// Running one preset.

bool same_result(float expected, float got, bool zero_by_value) {
    if (std::isnan(expected) && std::isnan(got)) return true;
    if (zero_by_value && expected == 0.0f && got == 0.0f) return true;
    return std::bit_cast<std::uint32_t>(expected) == std::bit_cast<std::uint32_t>(got);
}

struct preset_result {
    long outputs = 0;
    long mismatches = 0;
    std::string first;  // the first mismatches, described
    long nan = 0, inf = 0, zero = 0, negative_zero = 0, tiny = 0;  // what the outputs covered
    std::map<int, long> by_k;             // mismatches per K
    std::map<std::string, long> by_scenario;  // and per scenario
    long exact_path = 0;                      // trials of finite data that took the exact path
    long counted_differs = 0;                 // outputs that counting events changed
    std::string exact_reason;                 // the last one's reason
};

std::string summary(const preset_result& r) {
    std::ostringstream o;
    o << "mismatches by K:";
    for (const auto& [k, n] : r.by_k) o << " K=" << k << ": " << n;
    o << "; by scenario:";
    for (const auto& [s, n] : r.by_scenario) o << ' ' << s << ": " << n;
    return o.str();
}

std::vector<int> k_values(int L) {
    std::vector<int> ks{1, 3, L - 1, L, L + 1, 2 * L, 2 * L + 3, 64};
    ks.erase(std::remove_if(ks.begin(), ks.end(), [](int k) { return k < 1; }), ks.end());
    std::sort(ks.begin(), ks.end());
    ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
    return ks;
}

// Every scenario 6 times per K: about 1.5 s at -O2 (12 s at -O1, where the header-only kernels
// are slow).
constexpr int trials_per_k = 6 * int(scenario::count);
constexpr int rows = 3, cols = 5;

preset_result run_preset(const preset_case& pc, std::uint64_t seed) {
    const lowbit::gemm_spec spec = lowbit::hw::preset(lowbit_unit(pc.u), lowbit_format(pc.a), lowbit_format(pc.b), lowbit_format(pc.out));
    const mma::spec ref = mma::make_spec(pc.u, pc.a, pc.b, pc.out);
    const bool zero_by_value = pc.u == mma::unit::cdna1 || pc.u == mma::unit::cdna2;
    const int L = ref.L > 0 ? ref.L : 4;
    generator g(seed);
    preset_result res;
    int described = 0;
    for (const int K : k_values(L)) {
        for (int trial = 0; trial < trials_per_k; ++trial) {
            const auto sc = scenario(trial % int(scenario::count));
            const trial_data t = make_trial(g, sc, pc, ref, rows, K, cols);
            Eigen::MatrixXf D;
            lowbit::gemm_report report;
            lowbit::gemm_add(t.A, t.B, t.C, D, spec, nullptr, &report);
            // every preset runs in lanes on finite data (the exact path takes infinities and NaNs),
            // with events counted or not, and counting them changes no bit
            const bool finite = t.A.allFinite() && t.B.allFinite() && t.C.allFinite();
            if (finite && report.kernel == lowbit::gemm_kernel::exact) {
                ++res.exact_path;
                res.exact_reason = report.reason;
            }
            if (trial % 3 == 0) {
                Eigen::MatrixXf counted;
                lowbit::gemm_stats stats;
                lowbit::gemm_report counted_report;
                lowbit::gemm_add(t.A, t.B, t.C, counted, spec, &stats, &counted_report);
                if (finite && counted_report.kernel == lowbit::gemm_kernel::exact) {
                    ++res.exact_path;
                    res.exact_reason = "counting events: " + counted_report.reason;
                }
                for (Eigen::Index i = 0; i < D.size(); ++i)
                    res.counted_differs += std::bit_cast<std::uint32_t>(D.data()[i]) != std::bit_cast<std::uint32_t>(counted.data()[i]) &&
                                           !(std::isnan(D.data()[i]) && std::isnan(counted.data()[i]));
            }
            for (int i = 0; i < rows; ++i) {
                std::vector<float> a(static_cast<std::size_t>(K)), b(static_cast<std::size_t>(K));
                for (int k = 0; k < K; ++k) a[std::size_t(k)] = t.A(i, k);
                for (int j = 0; j < cols; ++j) {
                    for (int k = 0; k < K; ++k) b[std::size_t(k)] = t.B(k, j);
                    const float expected = mma::dot(ref, a, b, t.C(i, j));
                    const float got = D(i, j);
                    ++res.outputs;
                    if (std::isnan(expected)) ++res.nan;
                    else if (std::isinf(expected)) ++res.inf;
                    else if (expected == 0.0f) ++(std::signbit(expected) ? res.negative_zero : res.zero);
                    else if (std::fabs(expected) < (pc.out == mma::format::fp16 ? 0x1p-14f : 0x1p-126f)) ++res.tiny;
                    if (same_result(expected, got, zero_by_value)) continue;
                    ++res.mismatches;
                    ++res.by_k[K];
                    ++res.by_scenario[name(sc)];
                    if (described++ >= 3) continue;
                    std::ostringstream o;
                    o << "mismatch " << described << ": " << describe(pc) << " (reference F = " << ref.F
                      << ", L = " << ref.L << ", output as " << mma::name(ref.out) << "), K = " << K
                      << ", scenario " << name(sc) << ", output (" << i << ", " << j << ")\n"
                      << "  spec: " << lowbit::to_string(spec) << "\n  a =";
                    for (float x : a) o << ' ' << hex(x);
                    o << "\n  b =";
                    for (float x : b) o << ' ' << hex(x);
                    o << "\n  c = " << hex_bits(t.C(i, j)) << "\n  expected (reference) = " << hex_bits(expected)
                      << "\n  lowbit               = " << hex_bits(got) << "\n";
                    res.first += o.str();
                }
            }
        }
    }
    return res;
}

void run_unit(mma::unit u, const std::vector<preset_case>& cases) {
    long total = 0;
    std::uint64_t seed = 0x9E3779B97F4A7C15ull * (std::uint64_t(u) + 1);
    for (const preset_case& pc : cases) {
        REQUIRE(pc.u == u);
        const preset_result r = run_preset(pc, seed++);
        if (std::getenv("LOWBIT_HW_TEST_COVERAGE"))
            std::printf("%-36s outputs %ld: NaN %ld, inf %ld, +0 %ld, -0 %ld, subnormal %ld; mismatches %ld\n",
                        describe(pc).c_str(), r.outputs, r.nan, r.inf, r.zero, r.negative_zero, r.tiny, r.mismatches);
        INFO("preset " << describe(pc) << ": " << r.mismatches << " of " << r.outputs << " outputs differ\n"
                        << (r.mismatches ? summary(r) + "\n" : std::string()) << r.first);
        CHECK(r.outputs > 0);
        CHECK(r.nan > 0);  // the trials reach NaN, infinite and zero results on every preset
        CHECK(r.inf > 0);
        CHECK(r.zero > 0);
        CHECK(r.mismatches == 0);
        INFO("finite trials on the exact path: " << r.exact_path << " (" << r.exact_reason << ")");
        CHECK(r.exact_path == 0);
        CHECK(r.counted_differs == 0);
        total += r.mismatches;
    }
    REQUIRE(total == 0);
}

using F = mma::format;
using U = mma::unit;

// The NVIDIA units from Ada on: fp16, bf16, tf32, e4m3, e5m2 -> fp32, e4m3 -> fp16, e4m3 x e5m2.
std::vector<preset_case> ada_like(U u) {
    return {{u, F::fp16, F::fp16, F::fp32}, {u, F::bf16, F::bf16, F::fp32}, {u, F::tf32, F::tf32, F::fp32},
            {u, F::e4m3, F::e4m3, F::fp32}, {u, F::e5m2, F::e5m2, F::fp32}, {u, F::e4m3, F::e4m3, F::fp16},
            {u, F::e4m3, F::e5m2, F::fp32}};
}

std::vector<preset_case> blackwell_like(U u) {
    return {{u, F::fp16, F::fp16, F::fp32}, {u, F::bf16, F::bf16, F::fp32}, {u, F::tf32, F::tf32, F::fp32},
            {u, F::e4m3, F::e4m3, F::fp32}, {u, F::e5m2, F::e5m2, F::fp32}};
}

// Hand-worked values of the reference itself (so that the oracle is checked, not only trusted).
float ref_dot(U u, F a, F b, F out, std::vector<float> av, std::vector<float> bv, float c) {
    return mma::dot(mma::make_spec(u, a, b, out), av, bv, c);
}

}  // namespace

TEST_CASE("mma reference: hand-worked cases", "[hardware]") {
    // Volta fp16 -> fp32, F = 23: 1 + 2^-24 loses the small term (cut at 2^-23); 1 + 2^-23 keeps it.
    CHECK(ref_dot(U::volta, F::fp16, F::fp16, F::fp32, {0x1p-12f}, {0x1p-12f}, 1.0f) == 1.0f);
    CHECK(ref_dot(U::volta, F::fp16, F::fp16, F::fp32, {0x1p-12f}, {0x1p-11f}, 1.0f) == 1.0f + 0x1p-23f);
    // Hopper fp16, F = 25: 1 - 2^-25 is kept in the sum, then truncated to fp32: 1 - 2^-24.
    CHECK(ref_dot(U::hopper, F::fp16, F::fp16, F::fp32, {-0x1p-13f}, {0x1p-12f}, 1.0f) == 1.0f - 0x1p-24f);
    // Ampere (F = 24): 1 - 2^-25 is cut to 1 - 0 (the product truncates to -0 units): 1.
    CHECK(ref_dot(U::ampere, F::fp16, F::fp16, F::fp32, {-0x1p-13f}, {0x1p-12f}, 1.0f) == 1.0f);
    // Truncation never rounds up; overflow still gives infinity.
    CHECK(std::isinf(ref_dot(U::ampere, F::bf16, F::bf16, F::fp32, {0x1p64f, 0x1p64f}, {0x1p63f, 0x1p63f}, 0.0f)));
    CHECK(ref_dot(U::ampere, F::bf16, F::bf16, F::fp32, {0x1p64f, -0x1p64f}, {0x1p63f, 0x1p63f}, -0.0f) == 0.0f);
    CHECK(!std::signbit(ref_dot(U::ampere, F::bf16, F::bf16, F::fp32, {0x1p64f, -0x1p64f}, {0x1p63f, 0x1p63f}, -0.0f)));
    // Ada fp8: e8m13 output: 1 + 2^-13 + 2^-14 -> 1 + 2^-13 (the 2^-14 is below F = 13 anyway).
    CHECK(ref_dot(U::ada, F::e4m3, F::e4m3, F::fp32, {0x1p-6f, 0x1p-6f}, {0x1p-7f, 0x1p-8f}, 1.0f) == 1.0f + 0x1p-13f);
    // ... and C = 1 + 2^-20 (fp32) is cut to the 13-bit grid.
    CHECK(ref_dot(U::ada, F::e4m3, F::e4m3, F::fp32, {0.0f}, {0.0f}, 1.0f + 0x1p-20f) == 1.0f);
    // fp16 output: nearest even. 2048 + 1 (tie) -> 2048; 2050 + 1 -> 2052.
    CHECK(ref_dot(U::ampere, F::fp16, F::fp16, F::fp16, {1.0f}, {1.0f}, 2048.0f) == 2048.0f);
    CHECK(ref_dot(U::ampere, F::fp16, F::fp16, F::fp16, {1.0f}, {1.0f}, 2050.0f) == 2052.0f);
    CHECK(std::isinf(ref_dot(U::ampere, F::fp16, F::fp16, F::fp16, {256.0f}, {256.0f}, 65504.0f)));
    // 0 * inf = NaN; inf - inf = NaN.
    CHECK(std::isnan(ref_dot(U::hopper, F::fp16, F::fp16, F::fp32, {0.0f}, {INFINITY}, 1.0f)));
    CHECK(std::isnan(ref_dot(U::hopper, F::fp16, F::fp16, F::fp32, {1.0f}, {INFINITY}, -INFINITY)));
    // CDNA1 fp16 pairwise: ((1 + 2^-24) + (2^-24 + 0)) in fp32: (1) + (2^-24) = 1; fused would give 1 + 2^-23.
    CHECK(ref_dot(U::cdna1, F::fp16, F::fp16, F::fp32, {1.0f, 0x1p-12f, 0x1p-12f, 0.0f}, {1.0f, 0x1p-12f, 0x1p-12f, 0.0f}, 0.0f) == 1.0f);
    // three elements, the tree of a zero-padded group of four: (p0 + p1) + p2 = (1) + 2^-24 = 1
    CHECK(ref_dot(U::cdna1, F::fp16, F::fp16, F::fp32, {1.0f, 0x1p-12f, 0x1p-12f}, {1.0f, 0x1p-12f, 0x1p-12f}, 0.0f) == 1.0f);
    // and p0 + (p1 + p2) = 1 + 2^-23 where the two small ones pair up: (2^-24 + 2^-24) + 1
    CHECK(ref_dot(U::cdna1, F::fp16, F::fp16, F::fp32, {0x1p-12f, 0x1p-12f, 1.0f}, {0x1p-12f, 0x1p-12f, 1.0f}, 0.0f) == 1.0f + 0x1p-23f);
    // CDNA2 flushes a bf16 subnormal input.
    CHECK(ref_dot(U::cdna2, F::bf16, F::bf16, F::fp32, {0x1p-127f}, {0x1p100f}, 0.0f) == 0.0f);
    CHECK(ref_dot(U::cdna1, F::bf16, F::bf16, F::fp32, {0x1p-127f}, {0x1p100f}, 0.0f) == 0x1p-27f);
    // CDNA3 fp16: products cut to 24 bits below the group's largest exponent: 1 + 2^-25 -> 1.
    CHECK(ref_dot(U::cdna3, F::fp16, F::fp16, F::fp32, {1.0f, 0x1p-13f}, {1.0f, 0x1p-12f}, 0.0f) == 1.0f);
    // CDNA3: c cut toward minus infinity to 24 bits below E: -(1 + 2^-23) + 2 * 2^1 products...
    // c = -(1 + 2^-23), product 2: E = 1, sc = floor(-(1 + 2^-23) / 2 * 2^24) / 2^24 = -(2^23 + 1) / 2^24
    // exactly representable, so the sum is 2 - 1 - 2^-23 = 1 - 2^-23.
    CHECK(ref_dot(U::cdna3, F::fp16, F::fp16, F::fp32, {2.0f}, {1.0f}, -(1.0f + 0x1p-23f)) == 1.0f - 0x1p-23f);
    // c = -(1 + 2^-23), product 4: E = 2, sc = floor(-(2^23 + 1) / 2^25 * 2^24)... = -(2^22 + 1) / 2^24 * 2^2
    // i.e. c becomes -(1 + 2^-22): 4 - 1 - 2^-22 = 3 - 2^-22.
    CHECK(ref_dot(U::cdna3, F::fp16, F::fp16, F::fp32, {4.0f}, {1.0f}, -(1.0f + 0x1p-23f)) == 3.0f - 0x1p-22f);
    // CDNA3: a product of 2^128 or more is an infinity whatever c is; both signs: NaN.
    // (an infinite c is step 1, before the product check: 2^128 - inf = -inf)
    CHECK(ref_dot(U::cdna3, F::bf16, F::bf16, F::fp32, {0x1p64f}, {0x1p64f}, -INFINITY) == -INFINITY);
    CHECK(std::isinf(ref_dot(U::cdna3, F::bf16, F::bf16, F::fp32, {0x1p64f, 1.0f}, {0x1p64f, 1.0f}, -3.0f)));
    CHECK(std::isnan(ref_dot(U::cdna3, F::bf16, F::bf16, F::fp32, {0x1p64f, -0x1p64f}, {0x1p64f, 0x1p64f}, 1.0f)));
    // tf32 inputs are truncated: 1 + 2^-11 (below tf32's ulp 2^-10) reads as 1.
    CHECK(ref_dot(U::ampere, F::tf32, F::tf32, F::fp32, {1.0f + 0x1p-11f}, {1.0f}, 0.0f) == 1.0f);
}

TEST_CASE("hw presets match the reference: volta", "[hardware]") {
    run_unit(U::volta, {{U::volta, F::fp16, F::fp16, F::fp32}, {U::volta, F::fp16, F::fp16, F::fp16}});
}

TEST_CASE("hw presets match the reference: turing", "[hardware]") {
    run_unit(U::turing, {{U::turing, F::fp16, F::fp16, F::fp32}, {U::turing, F::fp16, F::fp16, F::fp16}});
}

TEST_CASE("hw presets match the reference: ampere", "[hardware]") {
    run_unit(U::ampere, {{U::ampere, F::fp16, F::fp16, F::fp32},
                         {U::ampere, F::fp16, F::fp16, F::fp16},
                         {U::ampere, F::bf16, F::bf16, F::fp32},
                         {U::ampere, F::tf32, F::tf32, F::fp32}});
}

TEST_CASE("hw presets match the reference: ada", "[hardware]") { run_unit(U::ada, ada_like(U::ada)); }

TEST_CASE("hw presets match the reference: hopper", "[hardware]") { run_unit(U::hopper, ada_like(U::hopper)); }

TEST_CASE("hw presets match the reference: blackwell", "[hardware]") {
    run_unit(U::blackwell, blackwell_like(U::blackwell));
}

TEST_CASE("hw presets match the reference: rtx_blackwell", "[hardware]") {
    run_unit(U::rtx_blackwell, blackwell_like(U::rtx_blackwell));
}

TEST_CASE("hw presets match the reference: cdna1", "[hardware]") {
    run_unit(U::cdna1, {{U::cdna1, F::fp32, F::fp32, F::fp32},
                        {U::cdna1, F::fp16, F::fp16, F::fp32},
                        {U::cdna1, F::bf16, F::bf16, F::fp32}});
}

TEST_CASE("hw presets match the reference: cdna2", "[hardware]") {
    run_unit(U::cdna2, {{U::cdna2, F::fp32, F::fp32, F::fp32},
                        {U::cdna2, F::fp16, F::fp16, F::fp32},
                        {U::cdna2, F::bf16, F::bf16, F::fp32}});
}

TEST_CASE("hw presets match the reference: cdna3", "[hardware]") {
    run_unit(U::cdna3, {{U::cdna3, F::fp32, F::fp32, F::fp32},
                        {U::cdna3, F::tf32, F::tf32, F::fp32},
                        {U::cdna3, F::fp16, F::fp16, F::fp32},
                        {U::cdna3, F::bf16, F::bf16, F::fp32},
                        {U::cdna3, F::e4m3fnuz, F::e4m3fnuz, F::fp32},
                        {U::cdna3, F::e5m2fnuz, F::e5m2fnuz, F::fp32}});
}
