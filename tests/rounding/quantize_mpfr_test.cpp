// lowbit::quantize and lowbit::float_quantizer against an independent MPFR oracle
// (tests/support/mpfr_oracle.hpp), written from the definition of lowbit's rounding.
//
//  1. exhaustive: every fp16 and every bf16 value through every format e2..e8 x m1..m10,
//     subnormals on/off, specials ieee/fn/none, every deterministic mode, both overflow policies,
//     float and double paths (one TEST_CASE per exp_bits, each on all hardware threads)
//  2. random hard cases (ties, ties +- 1 ulp, the subnormal boundary, the largest finite value and
//     beyond, subnormal inputs, zeros, infinities, NaN) for bf16, fp16, tf32, fp32, e5m20, e8m23,
//     e11m52 and the small OCP / scale / accumulator formats, all modes with random bits
//  3. stochastic rounding with explicit random bits, R in {1, 2, 3, 8, 23, 32}
//  4. float_quantizer's array path against scalar quantize with random_bits_at
//  5. trap cases with expected values written out from the definition
//  6. stochastic rounding is unbiased
//  7. the derived constants of float_format against the definition and the OCP/IEEE tables
#include <support/mpfr_oracle.hpp>

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/float_quantizer.hpp>
#include <lowbit/rounding/modes.hpp>
#include <lowbit/rounding/quantize.hpp>
#include <lowbit/rounding/random_bits.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

using lowbit::float_format;
using lowbit::overflow;
using lowbit::rounding;
using lowbit::special_values;
using lowbit_test::grid_neighbours;
using lowbit_test::grid_neighbours_of;
using lowbit_test::mpfr_round;
using lowbit_test::oracle_constants;
using lowbit_test::oracle_finish;
using lowbit_test::oracle_format;

constexpr rounding deterministic_modes[] = {rounding::nearest_even,    rounding::nearest_away,
                                            rounding::toward_zero,     rounding::toward_positive,
                                            rounding::toward_negative, rounding::odd};
constexpr rounding all_modes[] = {rounding::nearest_even,    rounding::nearest_away,    rounding::toward_zero,
                                  rounding::toward_positive, rounding::toward_negative, rounding::odd,
                                  rounding::stochastic};
constexpr overflow overflows[] = {overflow::infinity, overflow::saturate, overflow::infinity_always};
// (fnuz differs from none only in its zeros' sign and its overflow to NaN: the small formats below
// and the constants check cover it, and the exhaustive sweeps leave it out)
constexpr special_values all_specials[] = {special_values::ieee, special_values::fn, special_values::none};

constexpr double inf = std::numeric_limits<double>::infinity();
constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();

// ---- bit-exact comparison and printing ----
bool same(double a, double b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b);
}
bool same(float a, float b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}
std::string show(double v) {
    char buffer[96];
    std::snprintf(buffer, sizeof buffer, "%.17g = %a (0x%016llx)", v, v,
                  static_cast<unsigned long long>(std::bit_cast<std::uint64_t>(v)));
    return buffer;
}
std::string show(float v) {
    char buffer[96];
    std::snprintf(buffer, sizeof buffer, "%.9g = %a (0x%08x)f", double(v), double(v),
                  static_cast<unsigned>(std::bit_cast<std::uint32_t>(v)));
    return buffer;
}
std::string name(const float_format& f) { return lowbit::to_string(f); }

// Mismatches of one check, kept per thread and merged; the first ones are printed in full.
struct mismatch_log {
    std::uint64_t checked = 0;
    std::uint64_t failed = 0;
    std::vector<std::string> examples;
    std::map<std::string, std::uint64_t> by_kind;

    template <class T>
    bool check(T got, T expected, const char* kind, const float_format& f, rounding mode, overflow ov,
               T x, std::uint32_t random = 0, int random_bits = 32) {
        ++checked;
        if (same(got, expected)) return true;
        ++failed;
        ++by_kind[std::string(kind) + " " + lowbit::to_string(mode) + " " + lowbit::to_string(ov)];
        if (examples.size() < 40) {
            std::string e = std::string(kind) + ": quantize(" + show(x) + ", " + name(f) + ", " +
                            lowbit::to_string(mode) + ", " + lowbit::to_string(ov);
            if (mode == rounding::stochastic)
                e += ", random=" + std::to_string(random) + ", random_bits=" + std::to_string(random_bits);
            e += ") = " + show(got) + ", expected " + show(expected);
            examples.push_back(e);
        }
        return false;
    }
    void fail(const std::string& kind, const std::string& text) {
        ++checked;
        ++failed;
        ++by_kind[kind];
        if (examples.size() < 40) examples.push_back(text);
    }
    void merge(const mismatch_log& o) {
        checked += o.checked;
        failed += o.failed;
        for (const auto& [k, v] : o.by_kind) by_kind[k] += v;
        for (const auto& e : o.examples)
            if (examples.size() < 40) examples.push_back(e);
    }
    std::string summary() const {
        std::string s = std::to_string(failed) + " mismatches in " + std::to_string(checked) + " checks";
        for (const auto& [k, v] : by_kind) s += "\n  " + k + ": " + std::to_string(v);
        for (const auto& e : examples) s += "\n  " + e;
        return s;
    }
};

#define REQUIRE_NO_MISMATCH(log)       \
    do {                               \
        INFO((log).summary());         \
        CHECK((log).checked > 0);      \
        CHECK((log).failed == 0u);     \
    } while (false)

// Runs body(thread, threads) on every hardware thread (at least one, at most 16).
template <class Body>
void on_all_threads(Body body) {
    const unsigned threads = std::clamp(std::thread::hardware_concurrency(), 1u, 16u);
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(body, t, threads);
    body(0u, threads);
    for (auto& th : pool) th.join();
}

// ---- the MPFR-native cross-check of the oracle's neighbours ----
// The rounding of x onto the unbounded grid that oracle_finish derives from the neighbours, for the
// modes MPFR has; compared with mpfr_round_native, which rounds with MPFR itself.
double derived_unbounded(double x, const grid_neighbours& n, mpfr_rnd_t rnd) {
    const bool negative = std::signbit(x);
    bool up = false;
    if (!n.exact) {
        switch (rnd) {
            case MPFR_RNDN: up = n.half_cmp > 0 || (n.half_cmp == 0 && n.lo_odd); break;
            case MPFR_RNDZ: up = false; break;
            case MPFR_RNDU: up = !negative; break;
            case MPFR_RNDD: up = negative; break;
            case MPFR_RNDA: up = true; break;
            default: break;
        }
    }
    const double m = up ? n.hi : n.lo;
    return negative ? -m : m;
}
constexpr mpfr_rnd_t mpfr_modes[] = {MPFR_RNDN, MPFR_RNDZ, MPFR_RNDU, MPFR_RNDD, MPFR_RNDA};

void cross_check_neighbours(double x, const grid_neighbours& n, const oracle_format& c, mismatch_log& log) {
    for (mpfr_rnd_t rnd : mpfr_modes) {
        const double native = lowbit_test::mpfr_round_native(x, c.emin, c.man_bits, rnd);
        const double derived = derived_unbounded(x, n, rnd);
        ++log.checked;
        if (!same(native, derived))
            log.fail("oracle self-check (neighbours vs MPFR native)",
                     "oracle self-check: x=" + show(x) + " emin=" + std::to_string(c.emin) + " M=" +
                         std::to_string(c.man_bits) + " rnd=" + mpfr_print_rnd_mode(rnd) +
                         " native=" + show(native) + " derived=" + show(derived));
    }
}

// ---- inputs ----
float from_fp16_bits(std::uint16_t h) {
    const int exponent = (h >> 10) & 31;
    const int mantissa = h & 1023;
    float v;
    if (exponent == 31) v = mantissa ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    else if (exponent == 0) v = std::ldexp(float(mantissa), -24);
    else v = std::ldexp(float(1024 + mantissa), exponent - 25);
    return (h & 0x8000) ? -v : v;
}
float from_bf16_bits(std::uint16_t h) { return std::bit_cast<float>(std::uint32_t(h) << 16); }

const std::vector<float>& fp16_and_bf16_values() {
    static const std::vector<float> values = [] {
        std::vector<float> v;
        v.reserve(131072);
        for (std::uint32_t b = 0; b < 65536; ++b) v.push_back(from_fp16_bits(std::uint16_t(b)));
        for (std::uint32_t b = 0; b < 65536; ++b) v.push_back(from_bf16_bits(std::uint16_t(b)));
        return v;
    }();
    return values;
}

// Whether a format is one of the formats whose values fit float (then the float path is native).
bool fits_float(const oracle_format& c) { return c.man_bits <= 23 && c.emin >= -126 && c.emax <= 127; }

// Random input of type T for format c, weighted toward the hard cases.
template <class T>
T nudge(T v, int ulps) {
    for (; ulps > 0; --ulps) v = std::nextafter(v, std::numeric_limits<T>::infinity());
    for (; ulps < 0; ++ulps) v = std::nextafter(v, -std::numeric_limits<T>::infinity());
    return v;
}

template <class T>
T hard_input(std::mt19937_64& rng, const oracle_format& c) {
    using bits_t = std::conditional_t<std::is_same_v<T, float>, std::uint32_t, std::uint64_t>;
    constexpr int digits = std::numeric_limits<T>::digits;  // 24 or 53
    const int M = c.man_bits;
    auto uniform = [&](long long lo, long long hi) { return std::uniform_int_distribution<long long>(lo, hi)(rng); };
    auto small_nudge = [&] { return int(uniform(-2, 2)); };
    // A random grid point: binade e, spacing 2^k, q units.
    const int e = int(uniform(c.emin - M - 2, c.emax + 2));
    const int k = std::max(e, c.emin) - M;
    double q = 0;
    if (e - k >= 0) {
        const std::uint64_t first = std::uint64_t(1) << (e - k);  // q in [2^(e-k), 2^(e-k+1))
        q = double(first + (rng() & (first - 1)));
    }
    const double g = std::ldexp(q, k);
    const double spacing_max = std::ldexp(1.0, c.emax - M);
    T v{};
    switch (uniform(0, 13)) {
        case 0: v = T(g); break;                                                       // grid point
        case 1: v = nudge(T(g), small_nudge()); break;                                 // +- ulps
        case 2:                                                                         // exact tie
        case 3: v = T(std::ldexp(2 * q + 1, k - 1)); break;
        case 4:                                                                         // tie +- ulps
        case 5: v = nudge(T(std::ldexp(2 * q + 1, k - 1)), small_nudge()); break;
        case 6: {                                                                       // subnormal/normal boundary
            const double j = double(uniform(-12, 12));
            v = nudge(T(c.min_normal + j * std::ldexp(1.0, c.emin - M - 2)), small_nudge());
            break;
        }
        case 7: {                                                                       // largest finite and beyond
            constexpr double offsets[] = {0, 0.25, 0.5, 0.75, 1, 1.5, 2, -0.5, -1, 1e3};
            const double o = offsets[uniform(0, 9)];
            v = nudge(T(c.max_finite + o * spacing_max), small_nudge());
            break;
        }
        case 8: {                                                                       // subnormal input
            const bits_t mantissa_mask = (bits_t(1) << (digits - 1)) - 1;
            v = std::bit_cast<T>(bits_t(rng()) & mantissa_mask);
            break;
        }
        case 9: {                                                                       // any finite bit pattern
            do v = std::bit_cast<T>(bits_t(rng())); while (!std::isfinite(v));
            break;
        }
        case 10: {                                                                      // specials and edges
            const T edges[] = {T(0), std::numeric_limits<T>::infinity(), std::numeric_limits<T>::quiet_NaN(),
                               std::numeric_limits<T>::max(), std::numeric_limits<T>::min(),
                               std::numeric_limits<T>::denorm_min(), T(1), T(c.min_subnormal),
                               T(c.min_subnormal / 2), T(c.max_finite)};
            v = edges[uniform(0, 9)];
            break;
        }
        default: {                                                                      // log-uniform in range
            const double m = 1.0 + std::ldexp(double(rng() >> 11), -53);
            v = T(std::ldexp(m, int(uniform(c.emin - M - 3, c.emax + 2))));
            break;
        }
    }
    return (rng() & 1) ? -v : v;
}

// Random bits for stochastic rounding: uniform, or right at the threshold where the result
// changes (u = 2^R - floor(frac 2^R), +-1), with garbage above the R bits that quantize must mask.
std::uint32_t pick_random(std::mt19937_64& rng, const grid_neighbours& n, int random_bits) {
    std::uint32_t r = std::uint32_t(rng());
    if (rng() % 3 == 0) {
        const std::uint64_t scale = std::uint64_t(1) << random_bits;
        const std::uint64_t kept = n.frac32 >> (32 - random_bits);
        const std::uint64_t threshold = scale - kept;
        const std::uint64_t delta = rng() % 3;  // -1, 0, +1
        const std::uint64_t u = (threshold + delta - 1) & (scale - 1);
        const std::uint64_t garbage = random_bits < 32 ? (rng() << random_bits) : 0;
        r = std::uint32_t(u | garbage);
    }
    return r;
}

// Checks every mode and overflow policy of one input against the oracle; the float path when x is
// a float (then also the double path with the same value).
template <class T>
void check_all_modes(T x, const float_format& f, const oracle_format& c, std::mt19937_64& rng,
                     mismatch_log& log, bool float_path, int fixed_random_bits = 0) {
    grid_neighbours n;
    const double xd = double(x);
    if (std::isfinite(xd) && xd != 0) n = grid_neighbours_of(xd, c.emin, c.man_bits);
    for (rounding mode : all_modes) {
        for (overflow ov : overflows) {
            const int random_bits = fixed_random_bits ? fixed_random_bits : int(1 + rng() % 32);
            const std::uint32_t random = mode == rounding::stochastic ? pick_random(rng, n, random_bits) : 0u;
            const double expected = oracle_finish(xd, n, c, mode, ov, random, random_bits);
            if (mode == rounding::stochastic) {
                log.check(lowbit::quantize(xd, f, mode, ov, random, random_bits), expected, "double", f, mode, ov,
                          xd, random, random_bits);
            } else {
                log.check(lowbit::quantize(xd, f, mode, ov), expected, "double", f, mode, ov, xd);
                // the explicit-random overload must ignore the random bits for deterministic modes
                log.check(lowbit::quantize(xd, f, mode, ov, std::uint32_t(rng()), random_bits), expected,
                          "double (random ignored)", f, mode, ov, xd);
            }
            if constexpr (std::is_same_v<T, float>) {
                if (float_path) {
                    const float got = mode == rounding::stochastic
                                          ? lowbit::quantize(x, f, mode, ov, random, random_bits)
                                          : lowbit::quantize(x, f, mode, ov);
                    log.check(got, float(expected), "float", f, mode, ov, x, random, random_bits);
                }
            }
        }
    }
    // stochastic rounding without explicit bits draws zeros: round down (toward zero)
    const double down = oracle_finish(xd, n, c, rounding::stochastic, overflow::infinity, 0, 32);
    log.check(lowbit::quantize(xd, f, rounding::stochastic), down, "double (no random)", f, rounding::stochastic,
              overflow::infinity, xd);
}

// ---- the formats of the random tests ----
struct named {
    const char* label;
    float_format format;
    bool float_path;  // whether float inputs are tested through quantize(float)
};
const std::vector<named>& wide_formats() {
    static const std::vector<named> v = {
        {"bf16", lowbit::bf16, true},
        {"fp16", lowbit::fp16, true},
        {"tf32", lowbit::tf32, true},
        {"fp32", lowbit::fp32, true},
        {"e5m20", float_format{.exp_bits = 5, .man_bits = 20}, true},
        {"e8m23", float_format{.exp_bits = 8, .man_bits = 23}, true},
        {"e11m52", float_format{.exp_bits = 11, .man_bits = 52}, false},
    };
    return v;
}
const std::vector<named>& small_formats() {
    static const std::vector<named> v = {
        {"fp8_e4m3", lowbit::fp8_e4m3, true},
        {"fp8_e5m2", lowbit::fp8_e5m2, true},
        {"fp4_e2m1", lowbit::fp4_e2m1, true},
        {"fp6_e2m3", lowbit::fp6_e2m3, true},
        {"fp6_e3m2", lowbit::fp6_e3m2, true},
        {"ue8m0", lowbit::ue8m0, true},
        {"ue4m3", lowbit::ue4m3, true},
        {"lba_m7e4_acc", lowbit::lba_m7e4_acc, true},
        {"lba_m7e4_prod", lowbit::lba_m7e4_prod, true},
        {"m7e4 bias 10 no subnormals (ieee)",
         float_format{.exp_bits = 4, .man_bits = 7, .bias = 10, .subnormals = false}, true},
        {"e5m3", float_format{.exp_bits = 5, .man_bits = 3}, true},
        {"e8m3 unsigned fn no subnormals",
         float_format{.exp_bits = 8, .man_bits = 3, .subnormals = false, .specials = special_values::fn,
                      .is_signed = false},
         true},
        {"e11m10 (double-only range)", float_format{.exp_bits = 11, .man_bits = 10}, true},
        {"float8_e4m3fnuz", lowbit::fp8_e4m3fnuz, true},
        {"float8_e5m2fnuz", lowbit::fp8_e5m2fnuz, true},
        {"float8_e4m3b11fnuz", lowbit::fp8_e4m3b11fnuz, true},
        {"e3m4 fnuz no subnormals", float_format{.exp_bits = 3, .man_bits = 4, .subnormals = false,
                                                 .specials = special_values::fnuz}, true},
        {"e3m0 unsigned nozero bias 2",
         float_format{.exp_bits = 3, .man_bits = 0, .bias = 2, .subnormals = false,
                      .specials = special_values::none, .is_signed = false, .has_zero = false},
         true},
    };
    return v;
}

void random_test(const named& nf, std::uint64_t seed, int float_inputs, int double_inputs, int fixed_random_bits,
                 mismatch_log& log) {
    const float_format& f = nf.format;
    REQUIRE(f.is_valid());
    const oracle_format c = oracle_constants(f);
    std::mt19937_64 rng(seed);
    for (int i = 0; i < float_inputs; ++i) {
        const float x = hard_input<float>(rng, c);
        check_all_modes(x, f, c, rng, log, nf.float_path, fixed_random_bits);
    }
    for (int i = 0; i < double_inputs; ++i) {
        const double x = hard_input<double>(rng, c);
        check_all_modes(x, f, c, rng, log, false, fixed_random_bits);
        if (i % 16 == 0 && std::isfinite(x) && x != 0)
            cross_check_neighbours(x, grid_neighbours_of(x, c.emin, c.man_bits), c, log);
    }
}

// ---- exhaustive sweep ----
void exhaustive(int exp_bits) {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<float>& inputs = fp16_and_bf16_values();
    std::vector<mismatch_log> logs(16);
    std::uint64_t formats_tested = 0;
    for (int M = 1; M <= 10; ++M)
        for (bool sub : {true, false})
            for (special_values s : all_specials)
                formats_tested += float_format{.exp_bits = exp_bits, .man_bits = M, .subnormals = sub, .specials = s}
                                      .is_valid();
    on_all_threads([&](unsigned t, unsigned threads) {
        mismatch_log& log = logs[t];
        const std::size_t begin = inputs.size() * t / threads, end = inputs.size() * (t + 1) / threads;
        for (int M = 1; M <= 10; ++M) {
            std::vector<std::pair<float_format, oracle_format>> formats;
            for (bool sub : {true, false})
                for (special_values s : all_specials) {
                    const float_format f{.exp_bits = exp_bits, .man_bits = M, .subnormals = sub, .specials = s};
                    if (f.is_valid()) formats.emplace_back(f, oracle_constants(f));
                }
            if (formats.empty()) continue;
            const int emin = formats.front().second.emin;  // the grid depends on emin and M only
            for (std::size_t i = begin; i < end; ++i) {
                const float x = inputs[i];
                const double xd = x;
                grid_neighbours n;
                if (std::isfinite(xd) && xd != 0) {
                    n = grid_neighbours_of(xd, emin, M);
                    cross_check_neighbours(xd, n, formats.front().second, log);
                }
                for (const auto& [f, c] : formats)
                    for (rounding mode : deterministic_modes)
                        for (overflow ov : overflows) {
                            const double expected = oracle_finish(xd, n, c, mode, ov);
                            log.check(lowbit::quantize(x, f, mode, ov), float(expected), "float", f, mode, ov, x);
                            log.check(lowbit::quantize(xd, f, mode, ov), expected, "double", f, mode, ov, xd);
                        }
            }
        }
    });
    mismatch_log all;
    for (const auto& l : logs) all.merge(l);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    INFO("exp_bits " << exp_bits << ": " << formats_tested << " formats, " << all.checked << " checks, "
                     << seconds << " s");
    CHECK(formats_tested > 0);
    REQUIRE_NO_MISMATCH(all);
}

}  // namespace

// =============================================================================================
// 1. Exhaustive
// =============================================================================================
TEST_CASE("exhaustive fp16 and bf16 inputs with exp_bits 2", "[quantize][mpfr][exhaustive]") { exhaustive(2); }
TEST_CASE("exhaustive fp16 and bf16 inputs with exp_bits 3", "[quantize][mpfr][exhaustive]") { exhaustive(3); }
TEST_CASE("exhaustive fp16 and bf16 inputs with exp_bits 4", "[quantize][mpfr][exhaustive]") { exhaustive(4); }
TEST_CASE("exhaustive fp16 and bf16 inputs with exp_bits 5", "[quantize][mpfr][exhaustive]") { exhaustive(5); }
TEST_CASE("exhaustive fp16 and bf16 inputs with exp_bits 6", "[quantize][mpfr][exhaustive]") { exhaustive(6); }
TEST_CASE("exhaustive fp16 and bf16 inputs with exp_bits 7", "[quantize][mpfr][exhaustive]") { exhaustive(7); }
TEST_CASE("exhaustive fp16 and bf16 inputs with exp_bits 8", "[quantize][mpfr][exhaustive]") { exhaustive(8); }

// =============================================================================================
// 2. Random hard cases
// =============================================================================================
TEST_CASE("random hard cases: bf16 fp16 tf32 fp32 e5m20 e8m23 e11m52", "[quantize][mpfr][random]") {
    std::uint64_t seed = 0x5eed0001;
    for (const named& nf : wide_formats()) {
        mismatch_log log;
        random_test(nf, seed++, 100000, 100000, 0, log);
        INFO(nf.label);
        REQUIRE_NO_MISMATCH(log);
    }
}

TEST_CASE("random hard cases: small scale and accumulator formats", "[quantize][mpfr][random]") {
    std::uint64_t seed = 0x5eed1001;
    for (const named& nf : small_formats()) {
        mismatch_log log;
        random_test(nf, seed++, 100000, 100000, 0, log);
        INFO(nf.label);
        REQUIRE_NO_MISMATCH(log);
    }
}

// =============================================================================================
// 3. Stochastic rounding with explicit random bits
// =============================================================================================
TEST_CASE("stochastic rounding with explicit random bits matches the oracle", "[quantize][mpfr][stochastic]") {
    std::uint64_t seed = 0x5eed2001;
    std::vector<named> formats = wide_formats();
    formats.insert(formats.end(), small_formats().begin(), small_formats().end());
    for (const named& nf : formats) {
        const oracle_format c = oracle_constants(nf.format);
        for (int R : {1, 2, 3, 8, 23, 32}) {
            mismatch_log log;
            std::mt19937_64 rng(seed++);
            for (int i = 0; i < 20000; ++i) {
                const bool as_float = i % 2 == 0;
                const double x = as_float ? double(hard_input<float>(rng, c)) : hard_input<double>(rng, c);
                grid_neighbours n;
                if (std::isfinite(x) && x != 0) n = grid_neighbours_of(x, c.emin, c.man_bits);
                for (overflow ov : overflows) {
                    const std::uint32_t random = pick_random(rng, n, R);
                    const double expected = oracle_finish(x, n, c, rounding::stochastic, ov, random, R);
                    log.check(lowbit::quantize(x, nf.format, rounding::stochastic, ov, random, R), expected,
                              "double", nf.format, rounding::stochastic, ov, x, random, R);
                    if (as_float && nf.float_path)
                        log.check(lowbit::quantize(float(x), nf.format, rounding::stochastic, ov, random, R),
                                  float(expected), "float", nf.format, rounding::stochastic, ov, float(x), random, R);
                }
            }
            INFO(nf.label << ", random_bits " << R);
            REQUIRE_NO_MISMATCH(log);
        }
    }
}

// =============================================================================================
// 4. float_quantizer array path
// =============================================================================================
namespace {

template <class T>
void check_quantizer_arrays(const lowbit::float_quantizer& q, std::mt19937_64& rng, mismatch_log& log) {
    const oracle_format c = oracle_constants(q.format);
    for (std::size_t length : {0u, 1u, 15u, 16u, 17u, 1000u}) {
        for (std::uint64_t first : {std::uint64_t(5), std::uint64_t(1000003), (std::uint64_t(1) << 40) + 3}) {
            std::vector<T> in(length);
            for (T& v : in) v = hard_input<T>(rng, c);
            std::vector<T> out(length, T(-12345)), inplace = in;
            q(std::span<const T>(in), std::span<T>(out), first);
            q(std::span<T>(inplace), first);
            for (std::size_t i = 0; i < length; ++i) {
                const std::uint32_t random = lowbit::random_bits_at(q.seed, first + i);
                const T scalar = lowbit::quantize(in[i], q.format, q.mode, q.on_overflow, random, q.random_bits);
                log.check(out[i], scalar, "array out-of-place vs scalar quantize", q.format, q.mode, q.on_overflow,
                          in[i], random, q.random_bits);
                log.check(inplace[i], scalar, "array in-place vs scalar quantize", q.format, q.mode, q.on_overflow,
                          in[i], random, q.random_bits);
                log.check(q(in[i], first + i), scalar, "quantizer scalar vs quantize", q.format, q.mode,
                          q.on_overflow, in[i], random, q.random_bits);
                const double oracle = mpfr_round(double(in[i]), q.format, q.mode, q.on_overflow, random, q.random_bits);
                log.check(out[i], T(oracle), "array vs oracle", q.format, q.mode, q.on_overflow, in[i], random,
                          q.random_bits);
            }
        }
    }
}

}  // namespace

TEST_CASE("float_quantizer arrays equal scalar quantize with random_bits_at", "[quantize][mpfr][quantizer]") {
    std::mt19937_64 rng(0x5eed3001);
    const float_format formats[] = {lowbit::bf16,         lowbit::fp16,  lowbit::fp8_e4m3, lowbit::fp8_e5m2,
                                    lowbit::fp4_e2m1,     lowbit::ue8m0, lowbit::ue4m3,    lowbit::lba_m7e4_acc,
                                    lowbit::fp8_e4m3fnuz, lowbit::fp8_e5m2fnuz,
                                    float_format{.exp_bits = 11, .man_bits = 52},  // float path through double
                                    float_format{.exp_bits = 11, .man_bits = 10}};
    mismatch_log log;
    for (const float_format& f : formats)
        for (rounding mode : all_modes)
            for (overflow ov : overflows)
                for (int R : {32, 5}) {
                    const lowbit::float_quantizer q{
                        .format = f, .mode = mode, .on_overflow = ov, .seed = 0xfeedbeef12345ull + rng() % 7, .random_bits = R};
                    check_quantizer_arrays<float>(q, rng, log);
                    check_quantizer_arrays<double>(q, rng, log);
                }
    REQUIRE_NO_MISMATCH(log);

    const lowbit::float_quantizer q{.format = lowbit::bf16};
    std::vector<float> a(3), b(4);
    CHECK_THROWS_AS(q(std::span<const float>(a), std::span<float>(b)), std::invalid_argument);
}

// =============================================================================================
// 5. Traps, with expected values written out from the definition
// =============================================================================================
TEST_CASE("trap: e8m23 returns every float unchanged", "[quantize][trap]") {
    const float_format e8m23{.exp_bits = 8, .man_bits = 23};
    CHECK(lowbit::quantize(3.0f, e8m23) == 3.0f);
    CHECK(lowbit::quantize(3.0, e8m23) == 3.0);
    std::vector<float> values = {0.0f,          -0.0f,          1.0f,          3.0f,         -3.0f,
                                 FLT_MAX,       -FLT_MAX,       FLT_MIN,       -FLT_MIN,     FLT_TRUE_MIN,
                                 -FLT_TRUE_MIN, 2 * FLT_TRUE_MIN, FLT_MIN - FLT_TRUE_MIN, 0.1f, 1.0f + FLT_EPSILON};
    std::mt19937_64 rng(0x5eed4001);
    for (int i = 0; i < 1000000; ++i) {
        float v;
        do v = std::bit_cast<float>(std::uint32_t(rng())); while (!std::isfinite(v));
        values.push_back(v);
    }
    for (std::uint32_t m = 0; m < (1u << 23); m += 4099) values.push_back(std::bit_cast<float>(m));  // subnormals
    mismatch_log log;
    for (float v : values)
        for (rounding mode : all_modes)
            for (overflow ov : overflows) {
                const std::uint32_t random = std::uint32_t(rng());
                log.check(lowbit::quantize(v, e8m23, mode, ov, random, 32), v, "float", e8m23, mode, ov, v, random);
                log.check(lowbit::quantize(double(v), e8m23, mode, ov, random, 32), double(v), "double", e8m23, mode,
                          ov, double(v), random);
            }
    for (rounding mode : all_modes) {
        const float infinity = std::numeric_limits<float>::infinity();
        log.check(lowbit::quantize(infinity, e8m23, mode, overflow::infinity), infinity, "float", e8m23, mode,
                  overflow::infinity, infinity);
        log.check(lowbit::quantize(-infinity, e8m23, mode, overflow::infinity), -infinity, "float", e8m23, mode,
                  overflow::infinity, -infinity);
        log.check(lowbit::quantize(infinity, e8m23, mode, overflow::saturate), FLT_MAX, "float", e8m23, mode,
                  overflow::saturate, infinity);
        log.check(lowbit::quantize(-infinity, e8m23, mode, overflow::saturate), -FLT_MAX, "float", e8m23, mode,
                  overflow::saturate, -infinity);
        CHECK(std::isnan(lowbit::quantize(std::numeric_limits<float>::quiet_NaN(), e8m23, mode)));
    }
    REQUIRE_NO_MISMATCH(log);
}

TEST_CASE("trap: fp8_e4m3 nearest_even sends 1.0625 to 1.0", "[quantize][trap]") {
    CHECK(same(lowbit::quantize(1.0625f, lowbit::fp8_e4m3), 1.0f));
    CHECK(same(lowbit::quantize(1.0625, lowbit::fp8_e4m3), 1.0));
    CHECK(same(lowbit::quantize(-1.0625f, lowbit::fp8_e4m3), -1.0f));
    CHECK(same(lowbit::quantize(1.1875f, lowbit::fp8_e4m3), 1.25f));  // tie between 1.125 (odd) and 1.25
    CHECK(same(lowbit::quantize(1.0625f, lowbit::fp8_e4m3, rounding::nearest_away), 1.125f));
    CHECK(same(mpfr_round(1.0625, lowbit::fp8_e4m3, rounding::nearest_even, overflow::infinity), 1.0));
}

TEST_CASE("trap: fp8_e4m3 at the top (464 480 1e6)", "[quantize][trap]") {
    const auto& f = lowbit::fp8_e4m3;
    // 464 is the tie between 448 = 1.110b x 2^8 (even) and 480 = 1.111b x 2^8 (the NaN code).
    CHECK(same(lowbit::quantize(464.0f, f), 448.0f));
    CHECK(same(lowbit::quantize(-464.0f, f), -448.0f));
    CHECK(same(lowbit::quantize(464.0, f), 448.0));
    CHECK(same(lowbit::quantize(std::nextafter(464.0f, 0.0f), f), 448.0f));
    CHECK(std::isnan(lowbit::quantize(std::nextafter(464.0f, 1e9f), f)));
    CHECK(std::isnan(lowbit::quantize(480.0f, f, rounding::nearest_even, overflow::infinity)));
    CHECK(std::isnan(lowbit::quantize(480.0, f, rounding::nearest_even, overflow::infinity)));
    CHECK(same(lowbit::quantize(480.0f, f, rounding::nearest_even, overflow::saturate), 448.0f));
    CHECK(same(lowbit::quantize(-480.0f, f, rounding::nearest_even, overflow::saturate), -448.0f));
    CHECK(same(lowbit::quantize(1e6f, f, rounding::toward_zero), 448.0f));
    CHECK(same(lowbit::quantize(-1e6f, f, rounding::toward_zero), -448.0f));
    CHECK(same(lowbit::quantize(1e6, f, rounding::toward_zero, overflow::infinity), 448.0));
    CHECK(same(lowbit::quantize(1e6f, f, rounding::toward_negative), 448.0f));
    CHECK(std::isnan(lowbit::quantize(1e6f, f, rounding::toward_positive)));
    CHECK(same(lowbit::quantize(-1e6f, f, rounding::toward_positive), -448.0f));
    CHECK(same(lowbit::quantize(1e6f, f, rounding::odd), 448.0f));
    CHECK(same(lowbit::quantize(449.0f, f, rounding::odd), 448.0f));  // 480 would be odd, but it is NaN
    // the oracle agrees
    CHECK(same(mpfr_round(464.0, f, rounding::nearest_even, overflow::infinity), 448.0));
    CHECK(std::isnan(mpfr_round(480.0, f, rounding::nearest_even, overflow::infinity)));
    CHECK(same(mpfr_round(480.0, f, rounding::nearest_even, overflow::saturate), 448.0));
    CHECK(same(mpfr_round(1e6, f, rounding::toward_zero, overflow::infinity), 448.0));
}

TEST_CASE("trap: infinity_always overflows to infinity when truncating (NVIDIA's fp32 results)", "[quantize][trap]") {
    // fp32's largest value is (2 - 2^-23) 2^127. 2^128 truncated toward zero is beyond it: IEEE
    // (overflow::infinity) gives the largest value, a tensor core (infinity_always) gives inf.
    const double big = 0x1p128, just_above = double(FLT_MAX) + 0x1p103;  // the second truncates to FLT_MAX
    const auto& e8m23 = lowbit::fp32;
    CHECK(same(lowbit::quantize(big, e8m23, rounding::toward_zero, overflow::infinity), double(FLT_MAX)));
    CHECK(std::isinf(lowbit::quantize(big, e8m23, rounding::toward_zero, overflow::infinity_always)));
    CHECK(same(lowbit::quantize(-big, e8m23, rounding::toward_zero, overflow::infinity_always),
               -std::numeric_limits<double>::infinity()));
    CHECK(same(lowbit::quantize(just_above, e8m23, rounding::toward_zero, overflow::infinity_always), double(FLT_MAX)));
    CHECK(std::isinf(lowbit::quantize(big, e8m23, rounding::toward_negative, overflow::infinity_always)));
    CHECK(std::isinf(lowbit::quantize(-big, e8m23, rounding::toward_positive, overflow::infinity_always)));
    CHECK(same(lowbit::quantize(big, e8m23, rounding::odd, overflow::infinity_always), double(FLT_MAX)));
    // e4m3 (fn: its top code is NaN) overflows to NaN; a format without specials keeps its largest
    CHECK(std::isnan(lowbit::quantize(1e6f, lowbit::fp8_e4m3, rounding::toward_zero, overflow::infinity_always)));
    CHECK(same(lowbit::quantize(1e6f, lowbit::lba_m7e4_acc, rounding::toward_zero, overflow::infinity_always),
               float(lowbit::lba_m7e4_acc.max_finite())));
    // the oracle agrees
    CHECK(std::isinf(mpfr_round(big, e8m23, rounding::toward_zero, overflow::infinity_always)));
    CHECK(same(mpfr_round(just_above, e8m23, rounding::toward_zero, overflow::infinity_always), double(FLT_MAX)));
}

TEST_CASE("trap: fnuz formats have no -0 and no infinity", "[quantize][trap]") {
    const auto bits = [](float x) { return std::bit_cast<std::uint32_t>(x); };
    const float_format f = lowbit::fp8_e4m3fnuz;  // max 240, smallest subnormal 2^-10
    for (rounding mode : all_modes) {
        INFO(lowbit::to_string(mode));
        CHECK(bits(lowbit::quantize(-0.0f, f, mode)) == 0u);  // +0, whatever the mode
        CHECK(bits(lowbit::quantize(0.0f, f, mode)) == 0u);
    }
    // a negative value that rounds to zero is +0; toward -inf it is the negative smallest value
    CHECK(bits(lowbit::quantize(-1e-9f, f)) == 0u);
    CHECK(bits(lowbit::quantize(-1e-9f, f, rounding::toward_zero)) == 0u);
    CHECK(bits(lowbit::quantize(-1e-9f, f, rounding::toward_positive)) == 0u);
    CHECK(lowbit::quantize(-1e-9f, f, rounding::toward_negative) == -std::ldexp(1.0f, -10));
    CHECK(bits(lowbit::quantize(-1e-9, f, rounding::nearest_even)) == 0u);  // the double path too
    CHECK(std::bit_cast<std::uint64_t>(lowbit::quantize(-1e-9, f, rounding::nearest_even)) == 0u);
    // without subnormals, the flush to zero gives +0 too
    const float_format flushing{.exp_bits = 4, .man_bits = 3, .bias = 8, .subnormals = false,
                                .specials = special_values::fnuz};
    CHECK(bits(lowbit::quantize(-0.005f, flushing)) == 0u);
    CHECK(lowbit::quantize(-0.0078125f, flushing) == -0.0078125f);  // -2^-7, the smallest normal
    // the top exponent field is finite: 240 (1.875 x 2^7); beyond, NaN (or 240 when saturating)
    CHECK(lowbit::quantize(240.0f, f) == 240.0f);
    CHECK(lowbit::quantize(247.0f, f) == 240.0f);  // below the midpoint 248 to the next step
    CHECK(std::isnan(lowbit::quantize(248.0f, f)));
    CHECK(std::isnan(lowbit::quantize(-1e6f, f)));
    CHECK(lowbit::quantize(-1e6f, f, rounding::nearest_even, overflow::saturate) == -240.0f);
    CHECK(lowbit::quantize(1e6f, f, rounding::toward_zero) == 240.0f);
    CHECK(std::isnan(lowbit::quantize(std::numeric_limits<float>::infinity(), f)));
    CHECK(std::isnan(lowbit::quantize(std::numeric_limits<float>::quiet_NaN(), f)));
    CHECK(lowbit::fp8_e5m2fnuz.max_finite() == 57344.0);
    CHECK(lowbit::quantize(60000.0f, lowbit::fp8_e5m2fnuz, rounding::nearest_even, overflow::saturate) == 57344.0f);
    // arrays take the same kernel for every element (including -0 and tiny negatives)
    std::vector<float> xs(100, -1e-9f);
    xs[7] = -0.0f;
    xs[50] = -3.0f;
    lowbit::float_quantizer{.format = f}(std::span<float>(xs));
    for (std::size_t i = 0; i < xs.size(); ++i) {
        INFO(i);
        CHECK(bits(xs[i]) == (i == 50 ? bits(-3.0f) : 0u));
    }
}

TEST_CASE("trap: fp16 65520 overflows to inf and 65519.99 rounds to 65504", "[quantize][trap]") {
    const auto& f = lowbit::fp16;
    CHECK(same(lowbit::quantize(65520.0f, f), std::numeric_limits<float>::infinity()));
    CHECK(same(lowbit::quantize(-65520.0f, f), -std::numeric_limits<float>::infinity()));
    CHECK(same(lowbit::quantize(65520.0, f), inf));
    CHECK(same(lowbit::quantize(65519.99f, f), 65504.0f));
    CHECK(same(lowbit::quantize(65519.99, f), 65504.0));
    CHECK(same(lowbit::quantize(std::nextafter(65520.0, 0.0), f), 65504.0));
    CHECK(same(lowbit::quantize(65520.0f, f, rounding::nearest_even, overflow::saturate), 65504.0f));
    CHECK(same(lowbit::quantize(65520.0f, f, rounding::toward_zero), 65504.0f));
    CHECK(same(mpfr_round(65520.0, f, rounding::nearest_even, overflow::infinity), inf));
    CHECK(same(mpfr_round(65519.99, f, rounding::nearest_even, overflow::infinity), 65504.0));
}

TEST_CASE("trap: round to odd never gives inf", "[quantize][trap]") {
    const float_format formats[] = {lowbit::fp16, lowbit::bf16, lowbit::fp8_e5m2, lowbit::tf32, lowbit::fp32,
                                    float_format{.exp_bits = 11, .man_bits = 52}, float_format{.exp_bits = 3, .man_bits = 1}};
    std::mt19937_64 rng(0x5eed5001);
    mismatch_log log;
    for (const float_format& f : formats) {
        const double max = oracle_constants(f).max_finite;
        std::vector<double> big = {max, std::nextafter(max, inf), max * 1.0000001, max * 2, max * 1e10, DBL_MAX,
                                   double(FLT_MAX), 1e300};
        for (int i = 0; i < 1000; ++i) big.push_back(max * (1 + std::ldexp(double(rng() >> 11), -53)));
        for (double x : big) {
            if (!std::isfinite(x) || x < max) continue;  // (an infinite input stays infinite)
            for (overflow ov : overflows) {
                for (double s : {1.0, -1.0}) {
                    log.check(lowbit::quantize(s * x, f, rounding::odd, ov), s * max, "double", f, rounding::odd, ov,
                              s * x);
                    const float xf = float(s * x);
                    if (std::isfinite(xf) && std::fabs(double(xf)) >= max)
                        log.check(lowbit::quantize(xf, f, rounding::odd, ov), float(s * max), "float", f,
                                  rounding::odd, ov, xf);
                }
            }
        }
    }
    REQUIRE_NO_MISMATCH(log);
}

TEST_CASE("trap: stochastic rounding of 1.09375 to 3 mantissa bits rounds up with probability 0.75",
          "[quantize][trap][stochastic]") {
    // 1.09375 = 1.00011b: neighbours 1 and 1.125, frac = 0.75. With R >= 2 random bits,
    // floor(0.75 * 2^R) + u >= 2^R for exactly a quarter... three quarters of the u.
    for (const float_format& f : {float_format{.exp_bits = 5, .man_bits = 3}, float_format{.exp_bits = 8, .man_bits = 3}}) {
        for (int R : {2, 3, 4, 8, 16, 32}) {
            const lowbit::float_quantizer q{.format = f, .mode = rounding::stochastic, .seed = 0xabcdef0123ull + std::uint64_t(R),
                                            .random_bits = R};
            constexpr int draws = 100000;
            int up = 0, down = 0;
            for (int i = 0; i < draws; ++i) {
                const float r = q(1.09375f, std::uint64_t(i));
                up += r == 1.125f;
                down += r == 1.0f;
            }
            // the array path, too
            std::vector<double> values(draws, 1.09375);
            q(std::span<double>(values), 0);
            const auto up_array = std::count(values.begin(), values.end(), 1.125);
            const double p = double(up) / draws;
            const double sigma = std::sqrt(0.75 * 0.25 / draws);
            INFO(name(f) << ", random_bits " << R << ": P(up) = " << p);
            CHECK(up + down == draws);
            CHECK(std::fabs(p - 0.75) < 4 * sigma);
            CHECK(std::fabs(double(up_array) / draws - 0.75) < 4 * sigma);
        }
        // one random bit: floor(0.75 * 2) + u >= 2 only for u = 1: probability 1/2
        CHECK(same(lowbit::quantize(1.09375f, f, rounding::stochastic, overflow::infinity, 0u, 1), 1.0f));
        CHECK(same(lowbit::quantize(1.09375f, f, rounding::stochastic, overflow::infinity, 1u, 1), 1.125f));
        // two bits: up iff u >= 1
        CHECK(same(lowbit::quantize(1.09375f, f, rounding::stochastic, overflow::infinity, 0u, 2), 1.0f));
        CHECK(same(lowbit::quantize(1.09375f, f, rounding::stochastic, overflow::infinity, 1u, 2), 1.125f));
        CHECK(same(lowbit::quantize(-1.09375, f, rounding::stochastic, overflow::infinity, 4u, 2), -1.0));
    }
}

TEST_CASE("trap: ties to even and round to odd in the lowest subnormal binade", "[quantize][trap]") {
    // Between the smallest subnormal s (code ...001, odd) and 2s (code ...010, even) the tie 1.5 s
    // goes to 2s and round to odd keeps s.
    struct row {
        const char* label;
        float_format f;
    };
    const row rows[] = {{"fp8_e4m3", lowbit::fp8_e4m3}, {"fp4_e2m1", lowbit::fp4_e2m1}, {"fp6_e2m3", lowbit::fp6_e2m3},
                        {"fp8_e5m2", lowbit::fp8_e5m2}, {"fp16", lowbit::fp16},         {"bf16", lowbit::bf16},
                        {"tf32", lowbit::tf32},         {"fp32", lowbit::fp32},         {"e5m3", float_format{5, 3}}};
    for (const row& r : rows) {
        const double s = oracle_constants(r.f).min_subnormal;
        INFO(r.label << ", smallest subnormal " << s);
        CHECK(same(lowbit::quantize(1.5 * s, r.f, rounding::nearest_even), 2 * s));
        CHECK(same(lowbit::quantize(-1.5 * s, r.f, rounding::nearest_even), -2 * s));
        CHECK(same(lowbit::quantize(1.25 * s, r.f, rounding::odd), s));
        CHECK(same(lowbit::quantize(1.75 * s, r.f, rounding::odd), s));
        CHECK(same(lowbit::quantize(2.5 * s, r.f, rounding::nearest_even), 2 * s));
        CHECK(same(lowbit::quantize(2.5 * s, r.f, rounding::odd), 3 * s));
        if (s >= double(FLT_TRUE_MIN)) {
            CHECK(same(lowbit::quantize(float(1.5 * s), r.f, rounding::nearest_even), float(2 * s)));
            CHECK(same(lowbit::quantize(float(1.25 * s), r.f, rounding::odd), float(s)));
        }
    }
    // OCP FP4: 0.75 is the tie between 0.5 (code 0b0001) and 1.0 (code 0b0010)
    CHECK(same(lowbit::quantize(0.75f, lowbit::fp4_e2m1), 1.0f));
    CHECK(same(lowbit::quantize(0.75f, lowbit::fp4_e2m1, rounding::odd), 0.5f));
}

// =============================================================================================
// 6. Stochastic rounding is unbiased
// =============================================================================================
TEST_CASE("stochastic rounding is unbiased", "[quantize][stochastic]") {
    const float_format formats[] = {lowbit::bf16, lowbit::fp16, lowbit::fp8_e4m3, lowbit::fp8_e5m2, lowbit::fp4_e2m1,
                                    lowbit::lba_m7e4_acc, float_format{.exp_bits = 5, .man_bits = 3}};
    std::mt19937_64 rng(0x5eed6001);
    for (const float_format& f : formats) {
        const oracle_format c = oracle_constants(f);
        constexpr int inputs = 200, draws = 4000;
        double total = 0, total_variance = 0;
        int worst_input = -1;
        double worst_z = 0;
        for (int i = 0; i < inputs; ++i) {
            // x = (q + r / 2^20) * spacing: the residual has 20 bits, so 32 random bits are exact.
            // binades from below 2^emin (formats with subnormals) to two below the top, so that
            // neither neighbour overflows (and none is flushed)
            const int lowest = f.subnormals ? c.emin - 2 : c.emin;
            const int e = lowest + int(rng() % std::uint64_t(c.emax - 2 - lowest + 1));
            const int k = std::max(e, c.emin) - c.man_bits;
            const double units = e >= c.emin ? std::ldexp(1.0, c.man_bits) + double(rng() % (1u << c.man_bits))
                                             : double(rng() % (1u << c.man_bits));
            const double r = double(1 + rng() % ((1u << 20) - 1));
            const double x = std::ldexp(units + std::ldexp(r, -20), k) * ((rng() & 1) ? -1 : 1);
            const grid_neighbours n = grid_neighbours_of(x, c.emin, c.man_bits);
            REQUIRE(!n.exact);
            REQUIRE(n.hi <= c.max_finite);
            const double ulp = n.hi - n.lo;
            const double frac = (std::fabs(x) - n.lo) / ulp;
            std::vector<double> v(draws, x);
            const lowbit::float_quantizer q{.format = f, .mode = rounding::stochastic, .seed = rng(), .random_bits = 32};
            q(std::span<double>(v), rng() % 1000000);
            double sum = 0;
            for (double y : v) sum += (std::fabs(y) - std::fabs(x)) / ulp;
            const double variance = draws * frac * (1 - frac);
            const double z = sum / std::sqrt(variance);
            if (std::fabs(z) > std::fabs(worst_z)) worst_z = z, worst_input = i;
            total += sum;
            total_variance += variance;
        }
        const double z = total / std::sqrt(total_variance);
        INFO(name(f) << ": overall z = " << z << ", worst single input z = " << worst_z << " (input " << worst_input
                     << ")");
        CHECK(std::fabs(z) < 4);
        CHECK(std::fabs(worst_z) < 5.5);
    }
}

// =============================================================================================
// 7. Derived constants
// =============================================================================================
namespace {

// The value of a code from the definition (codes of the non-negative half): NaN for NaN codes,
// inf for infinity, and -1 for codes that are not values (field 0 with a non-zero mantissa when a
// format with zero has no subnormals).
double decode(const float_format& f, int bias, std::uint64_t field, std::uint64_t mantissa) {
    const std::uint64_t top = (std::uint64_t(1) << f.exp_bits) - 1;
    const std::uint64_t all_ones = (std::uint64_t(1) << f.man_bits) - 1;
    const int M = f.man_bits;
    if (f.specials == special_values::ieee && field == top) return mantissa == 0 ? inf : not_a_number;
    if (f.specials == special_values::fn && field == top && mantissa == all_ones) return not_a_number;
    // (fnuz: NaN is the negative-zero code, outside this non-negative half)
    if (f.has_zero && field == 0) {
        if (mantissa == 0) return 0;
        return f.subnormals ? std::ldexp(double(mantissa), 1 - bias - M) : -1;
    }
    return std::ldexp(double((std::uint64_t(1) << M) + mantissa), int(field) - bias - M);
}

void check_constants(const float_format& f) {
    const oracle_format c = oracle_constants(f);
    INFO(name(f));
    CHECK(f.emin() == c.emin);
    CHECK(f.emax() == c.emax);
    CHECK(same(f.max_finite(), c.max_finite));
    CHECK(same(f.min_normal(), c.min_normal));
    CHECK(same(f.min_subnormal(), c.min_subnormal));
    CHECK(same(f.min_positive(), c.min_subnormal));
    CHECK(same(f.epsilon(), c.epsilon));
    CHECK(f.codes() == c.codes);
    CHECK(f.has_normals() == c.has_normals);
    CHECK(f.exponent_bias() == c.bias);
    // float values go through float arithmetic exactly when the format fits float
    CHECK(lowbit::float_quantizer{.format = f}.float_native() == fits_float(c));
    // The oracle's closed forms against an enumeration of the codes (formats of up to 2^20 codes).
    if (f.exp_bits + f.man_bits <= 20) {
        double largest = -1, smallest_positive = inf;
        for (std::uint64_t field = 0; field < (std::uint64_t(1) << f.exp_bits); ++field)
            for (std::uint64_t m = 0; m < (std::uint64_t(1) << f.man_bits); ++m) {
                const double v = decode(f, c.bias, field, m);
                if (std::isnan(v) || std::isinf(v) || v < 0) continue;
                largest = std::max(largest, v);
                if (v > 0) smallest_positive = std::min(smallest_positive, v);
            }
        CHECK(same(largest, c.max_finite));
        CHECK(same(smallest_positive, c.min_subnormal));
    }
}

}  // namespace

TEST_CASE("derived constants of every swept format agree with the definition", "[format][mpfr]") {
    int tested = 0;
    for (int E = 1; E <= 8; ++E)
        for (int M = 0; M <= 10; ++M)
            for (bool sub : {true, false})
                for (special_values s : {special_values::ieee, special_values::fn, special_values::none,
                                         special_values::fnuz}) {
                    const float_format f{.exp_bits = E, .man_bits = M, .subnormals = sub, .specials = s};
                    if (!f.is_valid()) continue;
                    check_constants(f);
                    ++tested;
                }
    CHECK(tested >= 420);
    for (const named& nf : wide_formats()) check_constants(nf.format);
    for (const named& nf : small_formats()) check_constants(nf.format);
    check_constants(float_format{.exp_bits = 4, .man_bits = 3, .bias = 3, .subnormals = false});
    check_constants(float_format{.exp_bits = 1, .man_bits = 2});  // no normals: all subnormal
    check_constants(float_format{.exp_bits = 6, .man_bits = 0, .bias = 40, .subnormals = false,
                                 .specials = special_values::none, .has_zero = false});
}

TEST_CASE("preset constants match the OCP and IEEE tables", "[format]") {
    auto p2 = [](int k) { return std::ldexp(1.0, k); };
    struct row {
        const char* label;
        float_format f;
        double max, min_normal, min_subnormal;
    };
    const row rows[] = {
        {"fp8_e4m3", lowbit::fp8_e4m3, 448, p2(-6), p2(-9)},
        {"fp8_e5m2", lowbit::fp8_e5m2, 57344, p2(-14), p2(-16)},
        {"fp6_e2m3", lowbit::fp6_e2m3, 7.5, 1, 0.125},
        {"fp6_e3m2", lowbit::fp6_e3m2, 28, 0.25, 0.0625},
        {"fp4_e2m1", lowbit::fp4_e2m1, 6, 1, 0.5},
        {"fp16", lowbit::fp16, 65504, p2(-14), p2(-24)},
        {"bf16", lowbit::bf16, (2 - p2(-7)) * p2(127), p2(-126), p2(-133)},
        {"tf32", lowbit::tf32, (2 - p2(-10)) * p2(127), p2(-126), p2(-136)},
        {"fp32", lowbit::fp32, FLT_MAX, FLT_MIN, FLT_TRUE_MIN},
        {"ue8m0", lowbit::ue8m0, p2(127), p2(-127), p2(-127)},
        {"ue4m3", lowbit::ue4m3, 448, p2(-6), p2(-9)},
        // ml_dtypes' finfo of its fnuz types
        {"float8_e4m3fnuz", lowbit::fp8_e4m3fnuz, 240, p2(-7), p2(-10)},
        {"float8_e5m2fnuz", lowbit::fp8_e5m2fnuz, 57344, p2(-15), p2(-17)},
        {"float8_e4m3b11fnuz", lowbit::fp8_e4m3b11fnuz, 30, p2(-10), p2(-13)},
    };
    for (const row& r : rows) {
        INFO(r.label);
        const oracle_format c = oracle_constants(r.f);
        CHECK(same(r.f.max_finite(), r.max));
        CHECK(same(r.f.min_normal(), r.min_normal));
        CHECK(same(r.f.min_subnormal(), r.min_subnormal));
        CHECK(same(c.max_finite, r.max));
        CHECK(same(c.min_normal, r.min_normal));
        CHECK(same(c.min_subnormal, r.min_subnormal));
    }
    CHECK(lowbit::ue8m0.codes() == 256);
    CHECK(lowbit::fp8_e4m3.codes() == 256);
    CHECK(lowbit::fp4_e2m1.codes() == 16);
    CHECK(lowbit::ue4m3.codes() == 128);
    CHECK(same(lowbit::fp16.epsilon(), p2(-10)));
    CHECK(same(lowbit::fp32.epsilon(), double(FLT_EPSILON)));
    CHECK(same(float_format{.exp_bits = 11, .man_bits = 52}.max_finite(), DBL_MAX));
    CHECK(same(float_format{.exp_bits = 11, .man_bits = 52}.min_subnormal(), std::numeric_limits<double>::denorm_min()));
}

// =============================================================================================
// The oracle itself: hand-computed values from the definition
// =============================================================================================
TEST_CASE("the MPFR oracle gives the values of the definition", "[mpfr][oracle]") {
    using R = rounding;
    const auto& e4m3 = lowbit::fp8_e4m3;
    const overflow I = overflow::infinity, S = overflow::saturate;
    CHECK(same(mpfr_round(1.0625, e4m3, R::nearest_away, I), 1.125));
    CHECK(same(mpfr_round(1.0625, e4m3, R::toward_zero, I), 1.0));
    CHECK(same(mpfr_round(1.0625, e4m3, R::toward_positive, I), 1.125));
    CHECK(same(mpfr_round(-1.0625, e4m3, R::toward_positive, I), -1.0));
    CHECK(same(mpfr_round(1.0625, e4m3, R::odd, I), 1.125));
    CHECK(same(mpfr_round(1.15, e4m3, R::odd, I), 1.125));
    CHECK(same(mpfr_round(1.2, e4m3, R::odd, I), 1.125));
    CHECK(same(mpfr_round(-0.0, e4m3, R::nearest_even, I), -0.0));
    CHECK(same(mpfr_round(std::ldexp(1.0, -10), e4m3, R::nearest_even, I), 0.0));  // tie 0 / 2^-9: even 0
    CHECK(same(mpfr_round(-std::ldexp(1.0, -10), e4m3, R::nearest_even, I), -0.0));
    CHECK(same(mpfr_round(std::ldexp(3.0, -11), e4m3, R::nearest_even, I), std::ldexp(1.0, -9)));
    CHECK(same(mpfr_round(std::ldexp(1.0, -10), e4m3, R::odd, I), std::ldexp(1.0, -9)));
    CHECK(std::isnan(mpfr_round(inf, e4m3, R::toward_zero, I)));
    CHECK(same(mpfr_round(-inf, e4m3, R::toward_zero, S), -448.0));
    // no subnormals: flush of a value that rounds below 2^emin, kept when it rounds up to it
    const float_format e4m3_flush{.exp_bits = 4, .man_bits = 3, .subnormals = false, .specials = special_values::fn};
    CHECK(same(mpfr_round(std::ldexp(1.0, -7), e4m3_flush, R::toward_positive, I), 0.0));
    CHECK(same(mpfr_round(-std::ldexp(1.0, -7), e4m3_flush, R::nearest_even, I), -0.0));
    CHECK(same(mpfr_round(std::ldexp(15.5, -10), e4m3_flush, R::nearest_even, I), std::ldexp(1.0, -6)));
    CHECK(same(mpfr_round(std::ldexp(15.5, -10), e4m3_flush, R::toward_zero, I), 0.0));
    // ieee: largest finite and beyond
    CHECK(same(mpfr_round(61440.0, lowbit::fp8_e5m2, R::nearest_even, I), inf));  // tie 57344 / 65536
    CHECK(same(mpfr_round(61439.0, lowbit::fp8_e5m2, R::nearest_even, I), 57344.0));
    CHECK(same(mpfr_round(-61440.0, lowbit::fp8_e5m2, R::toward_positive, I), -57344.0));
    CHECK(same(mpfr_round(-57345.0, lowbit::fp8_e5m2, R::toward_negative, I), -inf));
    CHECK(same(mpfr_round(-57345.0, lowbit::fp8_e5m2, R::toward_negative, S), -57344.0));
    // none: never inf or NaN
    CHECK(same(mpfr_round(1e9, lowbit::fp4_e2m1, R::nearest_even, I), 6.0));
    CHECK(same(mpfr_round(-inf, lowbit::fp4_e2m1, R::nearest_even, I), -6.0));
    CHECK(same(mpfr_round(5.0, lowbit::fp4_e2m1, R::nearest_even, I), 4.0));   // tie 4 / 6: 4 = 1.0b x 2^2
    CHECK(same(mpfr_round(0.25, lowbit::fp4_e2m1, R::nearest_even, I), 0.0));  // tie 0 / 0.5
    CHECK(same(mpfr_round(0.75, lowbit::fp4_e2m1, R::nearest_even, I), 1.0));  // tie 0.5 (odd) / 1
    // unsigned, no zero (ue8m0): everything below 2^-127 and every negative becomes 2^-127
    const double tiny = std::ldexp(1.0, -127);
    CHECK(same(mpfr_round(0.0, lowbit::ue8m0, R::nearest_even, I), tiny));
    CHECK(same(mpfr_round(-5.0, lowbit::ue8m0, R::nearest_even, I), tiny));
    CHECK(same(mpfr_round(std::ldexp(1.0, -140), lowbit::ue8m0, R::toward_positive, I), tiny));
    // M = 0: the significand of every non-zero value is the implicit 1, odd (MPFR at precision
    // 1): ties go to the larger neighbour, round to odd truncates
    CHECK(same(mpfr_round(3.0, lowbit::ue8m0, R::nearest_even, I), 4.0));
    CHECK(same(mpfr_round(6.0, lowbit::ue8m0, R::nearest_even, I), 8.0));
    CHECK(same(mpfr_round(3.0, lowbit::ue8m0, R::odd, I), 2.0));
    CHECK(same(mpfr_round(5.0, lowbit::ue8m0, R::odd, I), 4.0));
    CHECK(same(mpfr_round(3.0, lowbit::ue8m0, R::toward_zero, I), 2.0));
    const float_format e3m0_bias2{.exp_bits = 3, .man_bits = 0, .bias = 2, .subnormals = false,
                                  .specials = special_values::none, .is_signed = false, .has_zero = false};
    CHECK(same(mpfr_round(3.0, e3m0_bias2, R::nearest_even, I), 4.0));
    CHECK(same(mpfr_round(3.0, e3m0_bias2, R::odd, I), 2.0));
    CHECK(same(double(lowbit::quantize(3.0f, e3m0_bias2)), 4.0));
    CHECK(same(double(lowbit::quantize(3.0f, e3m0_bias2, R::odd)), 2.0));
    CHECK(std::isnan(mpfr_round(1e300, lowbit::ue8m0, R::nearest_even, I)));
    CHECK(same(mpfr_round(1e300, lowbit::ue8m0, R::toward_zero, I), std::ldexp(1.0, 127)));
    CHECK(same(mpfr_round(-inf, lowbit::ue8m0, R::toward_zero, I), tiny));
    CHECK(std::isnan(mpfr_round(not_a_number, lowbit::ue8m0, R::toward_zero, I)));
    CHECK(same(mpfr_round(-3.0, lowbit::ue4m3, R::nearest_even, I), 0.0));
    // stochastic: 1.09375 to 3 bits with R = 2: up iff u >= 1
    CHECK(same(mpfr_round(1.09375, e4m3, R::stochastic, I, 0, 2), 1.0));
    CHECK(same(mpfr_round(1.09375, e4m3, R::stochastic, I, 1, 2), 1.125));
    CHECK(same(mpfr_round(1.09375, e4m3, R::stochastic, I, 4, 2), 1.0));  // u = 4 & 3 = 0
    CHECK(std::isnan(mpfr_round(450.0, e4m3, R::stochastic, I, 0xffffffffu, 32)));
    CHECK(same(mpfr_round(450.0, e4m3, R::stochastic, S, 0xffffffffu, 32), 448.0));
    // IEEE double itself: identity, and the next grid point above DBL_MAX is 2^1024
    const float_format e11m52{.exp_bits = 11, .man_bits = 52};
    CHECK(same(mpfr_round(DBL_MAX, e11m52, R::toward_positive, I), DBL_MAX));
    CHECK(same(mpfr_round(std::numeric_limits<double>::denorm_min(), e11m52, R::toward_zero, I),
               std::numeric_limits<double>::denorm_min()));
}
