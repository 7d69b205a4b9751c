// tests/datapath/mma_reference.hpp: a slow, independent reference of how real matrix units
// (NVIDIA tensor cores, AMD CDNA matrix cores) compute D = A B + C, one output at a time.
//
// It follows the semantics the MMA-Sim simulator (microsoft/MMA-Sim) established against the
// hardware, written down step by step from their description, and shares no code with lowbit: it
// knows formats only by name and smallest normal exponent. Every value it handles is exact in a
// double (significands of at most 24 bits, sums of at most 33 terms of at most 27 bits, exponents
// within [-300, 300]), so plain double arithmetic with ldexp / trunc / floor is exact here; the
// helpers check the claims they rely on and throw if one ever fails.
//
//   namespace mma = lowbit_test::mma;
//   mma::spec s = mma::make_spec(mma::unit::hopper, mma::format::e4m3, mma::format::e4m3, mma::format::fp32);
//   float d = mma::dot(s, a, b, c);   // a, b: the K values of a row of A / column of B; c = C(i, j)
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit_test::mma {

enum class format { fp32, tf32, fp16, bf16, e4m3, e5m2, e4m3fnuz, e5m2fnuz, e8m13 };
enum class unit { volta, turing, ampere, ada, hopper, blackwell, rtx_blackwell, cdna1, cdna2, cdna3 };

inline const char* name(format f) {
    switch (f) {
        case format::fp32: return "fp32";
        case format::tf32: return "tf32";
        case format::fp16: return "fp16";
        case format::bf16: return "bf16";
        case format::e4m3: return "fp8_e4m3";
        case format::e5m2: return "fp8_e5m2";
        case format::e4m3fnuz: return "fp8_e4m3fnuz";
        case format::e5m2fnuz: return "fp8_e5m2fnuz";
        case format::e8m13: return "e8m13";
    }
    return "?";
}

inline const char* name(unit u) {
    switch (u) {
        case unit::volta: return "volta";
        case unit::turing: return "turing";
        case unit::ampere: return "ampere";
        case unit::ada: return "ada";
        case unit::hopper: return "hopper";
        case unit::blackwell: return "blackwell";
        case unit::rtx_blackwell: return "rtx_blackwell";
        case unit::cdna1: return "cdna1";
        case unit::cdna2: return "cdna2";
        case unit::cdna3: return "cdna3";
    }
    return "?";
}

// emin(f): the smallest normal exponent.
inline int emin(format f) {
    switch (f) {
        case format::fp32: return -126;
        case format::tf32: return -126;
        case format::bf16: return -126;
        case format::fp16: return -14;
        case format::e4m3: return -6;
        case format::e5m2: return -14;
        case format::e4m3fnuz: return -7;
        case format::e5m2fnuz: return -15;
        case format::e8m13: return -126;
    }
    throw std::logic_error("mma::emin: unknown format");
}

inline int bytes_per_element(format f) {
    switch (f) {
        case format::fp16:
        case format::bf16: return 2;
        case format::tf32:
        case format::fp32: return 4;
        case format::e4m3:
        case format::e5m2:
        case format::e4m3fnuz:
        case format::e5m2fnuz: return 1;
        case format::e8m13: break;
    }
    throw std::logic_error("mma::bytes_per_element: not an input format");
}

inline bool is_fp8(format f) {
    return f == format::e4m3 || f == format::e5m2 || f == format::e4m3fnuz || f == format::e5m2fnuz;
}

inline bool is_nvidia(unit u) { return u != unit::cdna1 && u != unit::cdna2 && u != unit::cdna3; }

// ---------------------------------------------------------------------------------------------
// Exact helpers.

// An integer-valued double as an int64 (checked: the reference relies on it).
inline std::int64_t as_integer(double v) {
    if (!(std::fabs(v) < 0x1p62) || v != std::trunc(v)) throw std::logic_error("mma: not a small integer");
    return static_cast<std::int64_t>(v);
}

// x * 2^k, checked to be exact (no underflow below double's normal range).
inline double scale(double x, int k) {
    const double r = std::ldexp(x, k);
    if (x != 0 && (r == 0 || std::fabs(r) < 0x1p-1000 || std::ldexp(r, -k) != x))
        throw std::logic_error("mma::scale: inexact");
    return r;
}

// tf32 input: an fp32 value with the low 13 bits of its bit pattern cleared.
inline float tf32_truncate(float x) {
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(x) & ~std::uint32_t(0x1FFF));
}

// decompose(x, f): x = s * 2^e; zero: (0, -126); else e = floor(log2 |x|), 1 <= |s| < 2, and an
// e below emin(f) is raised to emin(f) with the significand shifted down (subnormals).
struct term {
    double s;
    int e;
};

inline term decompose(double x, int emin_f) {
    if (x == 0) return {0.0, -126};
    int e = std::ilogb(x);  // floor(log2 |x|), exact for a finite nonzero double
    double s = scale(x, -e);
    if (e < emin_f) {
        s = scale(s, e - emin_f);
        e = emin_f;
    }
    return {s, e};
}

// A product term: (s_a s_b, e_a + e_b); a product whose significand is 0 takes part in the
// maximum with exponent exactly -126.
inline term product_term(float a, int emin_a, float b, int emin_b) {
    const term ta = decompose(a, emin_a), tb = decompose(b, emin_b);
    const double s = ta.s * tb.s;  // exact: at most 24-bit significands
    if (s == 0) return {0.0, -126};
    return {s, ta.e + tb.e};
}

// S truncated toward zero onto a grid with `man` fraction bits in its binade, the binade no lower
// than 2^emin_f (a nonzero S that truncates to zero keeps its sign).
inline double truncate_onto(double S, int man, int emin_f) {
    if (S == 0) return S;
    const int q = std::max(std::ilogb(S), emin_f) - man;
    return scale(std::trunc(scale(S, -q)), q);
}

// S rounded to nearest, ties to even, onto the same kind of grid (a negative S rounding to zero
// gives -0).
inline double round_even_onto(double S, int man, int emin_f) {
    if (S == 0) return S;
    const int q = std::max(std::ilogb(S), emin_f) - man;
    const double v = scale(S, -q);  // exact
    double r = std::floor(v);
    const double rest = v - r;  // exact: v has few bits
    if (rest > 0.5 || (rest == 0.5 && std::fmod(r, 2.0) != 0)) r += 1;
    if (r == 0) return std::copysign(0.0, S);
    return scale(r, q);
}

// Step 1 of both fused units: with an infinity or a NaN among the inputs, the IEEE double sum of
// the products plus c (NaN, or an infinity).
inline bool any_special(std::span<const float> a, std::span<const float> b, float c) {
    if (!std::isfinite(c)) return true;
    for (std::size_t k = 0; k < a.size(); ++k)
        if (!std::isfinite(a[k]) || !std::isfinite(b[k])) return true;
    return false;
}

inline float special_sum(std::span<const float> a, std::span<const float> b, float c) {
    double sum = 0;
    for (std::size_t k = 0; k < a.size(); ++k) {
        const double p = double(a[k]) * double(b[k]);
        sum = sum + p;
    }
    sum = sum + double(c);
    if (std::isnan(sum)) return std::numeric_limits<float>::quiet_NaN();
    if (std::isinf(sum)) return sum > 0 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
    throw std::logic_error("mma::special_sum: a finite sum with an infinite or NaN input");
}

// ---------------------------------------------------------------------------------------------
// The parameters of one preset.

struct spec {
    unit u;
    format a, b;     // input formats
    format out;      // the output format as the unit writes it (fp32, fp16, or e8m13 for fp32 on
                     // Ada / Hopper FP8); C and D are fp32 or fp16 values
    int F = 0;       // NVIDIA: fraction bits kept below the group's largest exponent
    int L = 0;       // group size (NVIDIA, and AMD's fp16 / bf16 / tf32 / fp8); 0: AMD fp32 fma chain
};

inline spec make_spec(unit u, format a, format b, format output) {
    spec s{u, a, b, output};
    if (is_nvidia(u)) {
        switch (u) {
            case unit::volta: s.F = 23; break;
            case unit::turing:
            case unit::ampere:
            case unit::ada: s.F = 24; break;
            default: s.F = 25; break;
        }
        const bool fp8 = is_fp8(a) || is_fp8(b);
        if (fp8 && (u == unit::ada || u == unit::hopper)) {
            s.F = 13;
            if (output == format::fp32) s.out = format::e8m13;
        }
        const int B = u == unit::volta ? 8 : (u == unit::turing || u == unit::ampere || u == unit::ada) ? 16 : 32;
        s.L = B / bytes_per_element(a);
        return s;
    }
    if (a == format::fp32) {
        s.L = 0;
        return s;
    }
    if (u == unit::cdna1) s.L = a == format::fp16 ? 4 : 2;                     // fp16 / bf16
    else if (u == unit::cdna2) s.L = 4;                                         // fp16 / bf16
    else s.L = a == format::tf32 ? 4 : is_fp8(a) ? 16 : 8;                      // cdna3
    return s;
}

// ---------------------------------------------------------------------------------------------
// NVIDIA: fdpa over one group, c a value of the output format.

inline float nvidia_fdpa(const spec& p, std::span<const float> a, std::span<const float> b, float c) {
    // 1. Infinities and NaNs.
    if (any_special(a, b, c)) return special_sum(a, b, c);
    // 2. Terms.
    std::vector<term> terms;
    terms.push_back(decompose(c, p.out == format::fp16 ? -14 : -126));
    for (std::size_t k = 0; k < a.size(); ++k) terms.push_back(product_term(a[k], emin(p.a), b[k], emin(p.b)));
    // 3. The largest exponent (zeros as -126, which decompose and product_term already give).
    int E = std::numeric_limits<int>::min();
    for (const term& t : terms) E = std::max(E, t.e);
    // 4. Each term cut toward zero to F fractional bits relative to 2^E; the exact sum, in units
    //    of 2^(E - F).
    std::int64_t N = 0;
    for (const term& t : terms) {
        const int shift = p.F + t.e - E;  // <= F
        const double scaled = shift < -200 ? 0.0 : std::trunc(scale(t.s, shift));
        N += as_integer(scaled);
    }
    const double S = N == 0 ? 0.0 : scale(double(N), E - p.F);  // exact; a zero sum is +0
    // 5. The result in the output format.
    switch (p.out) {
        case format::fp32:
        case format::e8m13: {
            const double r = truncate_onto(S, p.out == format::fp32 ? 23 : 13, -126);
            if (std::fabs(r) >= 0x1p128) return S > 0 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
            return float(r);  // exact
        }
        case format::fp16: {
            const double r = round_even_onto(S, 10, -14);
            if (std::fabs(r) >= 65536.0) return S > 0 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
            return float(r);  // exact
        }
        default: throw std::logic_error("mma::nvidia_fdpa: bad output format");
    }
}

// ---------------------------------------------------------------------------------------------
// AMD CDNA1 / CDNA2 fp16 and bf16: pairwise trees of fp32 additions.

inline float flush_if(bool flush, float x) {
    // a result with magnitude below 2^-126 becomes a zero of its own sign
    if (flush && std::fabs(x) < 0x1p-126f) return std::copysign(0.0f, x);
    return x;
}

inline float pairwise(std::span<const float> a, std::span<const float> b, bool flush) {
    const std::size_t n = a.size();
    if (n == 1) {
        const double exact = double(a[0]) * double(b[0]);  // exact: fp16 / bf16 operands
        return flush_if(flush, float(exact));              // rounded to fp32, nearest even
    }
    // A group shorter than the instruction's (the last one of a K that is not a multiple of it)
    // is what the unit sees with zero-padded operands: the tree of the full width, whose missing
    // leaves are 0 (p + 0 = p but for a zero's sign), so the split is at half the padded width.
    // (MMA-Sim splits at n // 2, but only ever feeds whole groups.)
    const std::size_t m = std::bit_ceil(n) / 2;
    const float left = pairwise(a.first(m), b.first(m), flush);
    const float right = pairwise(a.subspan(m), b.subspan(m), flush);
    const float sum = left + right;  // fp32 addition, nearest even
    return flush_if(flush, sum);
}

// ---------------------------------------------------------------------------------------------
// AMD CDNA3 fp16 / bf16 / xf32 / fp8: the two-level fused dot.

struct fused_sum {
    std::int64_t N;  // the significand sum in units of 2^-24
    int E;           // relative to 2^E
};

// fused(list, 24): sum of trunc(s * 2^(24 + e - Emax)) (units of 2^-24), and Emax.
inline fused_sum fused(const std::vector<term>& list) {
    int E = -126;  // an empty list (the odd half of a group of one) is a zero at -126
    bool first = true;
    for (const term& t : list) {
        E = first ? t.e : std::max(E, t.e);
        first = false;
    }
    std::int64_t N = 0;
    for (const term& t : list) {
        const int shift = 24 + t.e - E;
        N += as_integer(shift < -200 ? 0.0 : std::trunc(scale(t.s, shift)));
    }
    return {N, E};
}

// floor(N * 2^k) for an integer N and k <= 7 (k > 0: an exact multiplication).
inline std::int64_t floor_scaled(std::int64_t N, int k) {
    if (k > 7) throw std::logic_error("mma::floor_scaled: k > 7");
    if (N == 0) return 0;
    if (k < -200) return N < 0 ? -1 : 0;
    return as_integer(std::floor(scale(double(N), k)));
}

inline double amd_fdpa(const spec& p, std::span<const float> a, std::span<const float> b, float c) {
    // 1. Infinities and NaNs.
    if (any_special(a, b, c)) return special_sum(a, b, c);
    // 2. Products of magnitude 2^128 or more.
    bool plus = false, minus = false;
    for (std::size_t k = 0; k < a.size(); ++k) {
        const double prod = double(a[k]) * double(b[k]);  // exact
        if (prod >= 0x1p128) plus = true;
        if (prod <= -0x1p128) minus = true;
    }
    if (plus && minus) return std::numeric_limits<double>::quiet_NaN();
    if (plus) return std::numeric_limits<double>::infinity();
    if (minus) return -std::numeric_limits<double>::infinity();
    // 3.-4. The products' sum s (units 2^-24) relative to 2^e.
    const bool fp8 = is_fp8(p.a);
    std::int64_t s24 = 0;
    int e = 0;
    if (!fp8) {
        std::vector<term> all;
        for (std::size_t k = 0; k < a.size(); ++k) all.push_back(product_term(a[k], emin(p.a), b[k], emin(p.b)));
        const fused_sum f = fused(all);
        s24 = f.N;
        e = f.E;
    } else {
        std::vector<term> even, odd;
        for (std::size_t k = 0; k < a.size(); ++k)
            (k % 2 == 0 ? even : odd).push_back(product_term(a[k], emin(p.a), b[k], emin(p.b)));
        const fused_sum f0 = fused(even), f1 = fused(odd);
        e = std::max(f0.E, f1.E);
        s24 = floor_scaled(f0.N, f0.E - e) + floor_scaled(f1.N, f1.E - e);
    }
    // 5. Alignment with c.
    const term tc = decompose(c, -126);
    const int E = std::max(e, tc.e);
    const std::int64_t s31 = floor_scaled(s24, 7 + e - E);  // floor(s * 2^(31 + e - E)), units 2^-31
    std::int64_t sc24 = 0;                                   // units 2^-24
    {
        const int shift = 24 + tc.e - E;
        sc24 = shift < -200 ? (tc.s < 0 ? -1 : 0) : as_integer(std::floor(scale(tc.s, shift)));
        if (tc.s == 0) sc24 = 0;
        if (fp8 && tc.e < E - 25) sc24 = 0;
    }
    // 6. (s + sc) 2^E, exact; a zero sum is +0.
    const std::int64_t total31 = s31 + sc24 * 128;
    if (total31 == 0) return 0.0;
    return scale(double(total31), E - 31);
}

// ---------------------------------------------------------------------------------------------
// One output: D(i, j) for the K values a (row i of A), b (column j of B) and c = C(i, j).

inline float dot(const spec& p, std::span<const float> a_in, std::span<const float> b_in, float c) {
    if (a_in.size() != b_in.size()) throw std::invalid_argument("mma::dot: a and b differ in length");
    std::vector<float> a(a_in.begin(), a_in.end()), b(b_in.begin(), b_in.end());
    if (p.a == format::tf32)
        for (float& x : a) x = tf32_truncate(x);
    if (p.b == format::tf32)
        for (float& x : b) x = tf32_truncate(x);
    const std::size_t K = a.size();
    const std::span<const float> sa(a), sb(b);

    if (is_nvidia(p.u)) {
        float acc = c;
        for (std::size_t k0 = 0; k0 < K; k0 += std::size_t(p.L)) {
            const std::size_t n = std::min(std::size_t(p.L), K - k0);
            acc = nvidia_fdpa(p, sa.subspan(k0, n), sb.subspan(k0, n), acc);
        }
        return acc;
    }

    if (p.a == format::fp32) {  // every CDNA: a chain of IEEE single fmas
        float d = c;
        for (std::size_t k = 0; k < K; ++k) d = std::fma(a[k], b[k], d);
        return d;
    }

    if (p.u == unit::cdna1 || p.u == unit::cdna2) {
        const bool flush = p.u == unit::cdna2;
        if (flush) {
            const double tiny = std::ldexp(1.0, emin(p.a));
            for (float& x : a)
                if (std::fabs(double(x)) < tiny) x = 0.0f;  // +0
            const double tiny_b = std::ldexp(1.0, emin(p.b));
            for (float& x : b)
                if (std::fabs(double(x)) < tiny_b) x = 0.0f;
        }
        float d = c;
        if (flush && std::fabs(d) < 0x1p-126f) d = 0.0f;  // +0
        for (std::size_t k0 = 0; k0 < K; k0 += std::size_t(p.L)) {
            const std::size_t n = std::min(std::size_t(p.L), K - k0);
            const float g = pairwise(sa.subspan(k0, n), sb.subspan(k0, n), flush);
            d = flush_if(flush, d + g);
        }
        return d;
    }

    // cdna3
    float d = c;
    for (std::size_t k0 = 0; k0 < K; k0 += std::size_t(p.L)) {
        const std::size_t n = std::min(std::size_t(p.L), K - k0);
        d = float(amd_fdpa(p, sa.subspan(k0, n), sb.subspan(k0, n), d));  // nearest even
    }
    return d;
}

}  // namespace lowbit_test::mma
