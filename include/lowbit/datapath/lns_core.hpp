// lowbit/datapath/lns_core.hpp: the kernels under lowbit::lns_gemm (lns_gemm.hpp, which defines
// what they compute and includes this header in header-only use; under LOWBIT_COMPILED_LIB they
// are compiled once, in src/compiled.cpp).
#pragma once

#include <lowbit/datapath/exact_datapath.hpp>
#include <lowbit/datapath/exact_sum.hpp>
#include <lowbit/datapath/fast_datapath.hpp>
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/lns_gemm.hpp>
#include <lowbit/datapath/gemm_report.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/datapath/lns_conversion.hpp>
#include <lowbit/datapath/quantizer.hpp>
#include <lowbit/datapath/rounding_steps.hpp>
#include <lowbit/datapath/thread_count.hpp>
#include <lowbit/formats/lns_format.hpp>
#include <lowbit/rounding/lns_quantize.hpp>
#include <lowbit/rounding/random_bits.hpp>
#include <lowbit/types/lns.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>
namespace lowbit::detail {

// The operands in the kernels' layout: A row-major, B column-major, so that both run along K;
// zero elements carry k_min, keeping every k_a + k_b inside the validated range.
struct lns_operand_rows {
    std::vector<std::int32_t> k;
    std::vector<std::int8_t> sign;
    std::int32_t k_low = 0, k_high = 0;  // the smallest and largest k (0 for an empty matrix)
};

inline lns_operand_rows lns_pack(const lns_matrix& m, bool by_rows) {
    const Eigen::Index outer = by_rows ? m.rows() : m.cols(), inner = by_rows ? m.cols() : m.rows();
    lns_operand_rows p;
    p.k.resize(std::size_t(outer * inner));
    p.sign.resize(std::size_t(outer * inner));
    for (Eigen::Index o = 0; o < outer; ++o)
        for (Eigen::Index t = 0; t < inner; ++t) {
            const Eigen::Index i = by_rows ? o : t, j = by_rows ? t : o;
            const std::size_t at = std::size_t(o * inner + t);
            p.sign[at] = m.sign(i, j);
            p.k[at] = m.sign(i, j) == 0 ? m.format.k_min() : m.k(i, j);
        }
    if (!p.k.empty()) {
        std::int32_t low = p.k[0], high = p.k[0];
        for (const std::int32_t k : p.k) low = std::min(low, k), high = std::max(high, k);  // (vectorizes)
        p.k_low = low, p.k_high = high;
    }
    return p;
}

// exact_sum += c * n * 2^e exactly, for an integer-valued n (any size), c with at most 53
// significant bits and products inside double's normal range (lns_check_operands).
inline void add_scaled_integer(exact_sum& total, const exact_sum& n, double c, int e) {
    if (n.is_zero()) return;
    const double sign = n.negative() ? -1.0 : 1.0;
    const int top = std::ilogb(n.to_double_round_odd());
    // |n| in 32-bit pieces: c * piece has at most 85 bits, exactly hi + lo (two_prod).
    for (int low = 0; low <= top; low += 32) {
        const double piece = double(n.magnitude_digits(low).whole_low64 & 0xFFFFFFFFu);
        if (piece == 0) continue;
        const double_double p = two_prod(c, sign * piece);
        total.add(std::ldexp(p.hi, low + e));
        total.add(std::ldexp(p.lo, low + e));
    }
}

// An accumulator that never rounds integer terms and whose overflow is arithmetic modulo 2^bits:
// exact (unset), or an integer wrapping with no fraction bits.
inline bool is_modular(const quantizer& q) {
    const int_quantizer* i = q.as_int();
    return q.is_exact() || (i != nullptr && i->on_overflow == int_overflow::wrap && i->fraction_bits == 0);
}

// n wrapped into a modular accumulator's range (two's complement, or unsigned, of `bits`).
inline std::int64_t wrap_modular(std::int64_t n, const quantizer& q) {
    const int_quantizer* i = q.as_int();
    if (i == nullptr) return n;
    const int bits = i->format.bits;  // <= 53
    const std::uint64_t low = std::uint64_t(n) & ((std::uint64_t(1) << bits) - 1);
    if (i->format.is_signed && ((low >> (bits - 1)) & 1) != 0) return std::int64_t(low) - (std::int64_t(1) << bits);
    return std::int64_t(low);
}

inline quantizer with_seed_offset(const quantizer& q, std::uint64_t offset) {
    if (const auto* f = q.as_float()) {
        float_quantizer g = *f;
        g.seed += offset;
        return g;
    }
    if (const auto* i = q.as_int()) {
        int_quantizer g = *i;
        g.seed += offset;
        return g;
    }
    return q;
}

inline const rounding_plan<double>& lns_float_result_plan() {
    static const rounding_plan<double> plan = rounding_plan<double>::make(fp32, overflow::infinity);
    return plan;
}

// A double rounded to odd (or exact) lands in float, nearest even: C(i, j).
inline float lns_to_float(double odd) {
    return float(round_with_plan<rounding::nearest_even>(odd, lns_float_result_plan()));
}
inline float lns_to_float(const exact_sum& total) { return lns_to_float(total.to_double_round_odd()); }

// 128-bit integers (a GCC and Clang extension) for the bucket shortcut's final sum.
__extension__ using lns_int128 = __int128;
__extension__ using lns_uint128 = unsigned __int128;

// v 2^e rounded to odd onto double's grid (see exact_sum::to_double_round_odd), for values whose
// lowest bit 2^e is at least 2^-1074 and that stay below 2^1024.
inline double lns_round_odd(lns_int128 v, int e) {
    if (v == 0) return 0.0;
    const lns_uint128 m = v < 0 ? lns_uint128(0) - lns_uint128(v) : lns_uint128(v);
    const auto high = std::uint64_t(m >> 64);
    const int length = high != 0 ? 128 - std::countl_zero(high) : 64 - std::countl_zero(std::uint64_t(m));
    const int shift = std::max(0, length - 53);
    auto significand = std::uint64_t(m >> shift);
    if (shift > 0 && (m & ((lns_uint128(1) << shift) - 1)) != 0) significand |= 1;  // sticky: odd
    const double magnitude = std::ldexp(double(significand), e + shift);  // exact: normal, or subnormal and exact
    return v < 0 ? -magnitude : magnitude;
}

// The same value exactly, as an exact_sum (three pieces of at most 43 bits).
inline exact_sum lns_exact_value(lns_int128 v, int e) {
    exact_sum s;
    const lns_uint128 m = v < 0 ? lns_uint128(0) - lns_uint128(v) : lns_uint128(v);
    for (int low = 0; low < 128; low += 43) {
        const double piece = double(std::uint64_t(m >> low) & ((std::uint64_t(1) << 43) - 1));
        if (piece != 0) s.add(std::ldexp(v < 0 ? -piece : piece, e + low));
    }
    return s;
}

// Steps whose rounding of an exact value equals their rounding of its round-to-odd double:
// float formats of at most 50 mantissa bits (gemm_spec validation), except stochastic rounding,
// which looks at every dropped bit (rounding_steps.hpp).
template <class Step>
struct rounds_from_odd_double : std::false_type {};
template <rounding Mode>
struct rounds_from_odd_double<float_step<Mode>> : std::bool_constant<Mode != rounding::stochastic> {};

// acc[l] = accumulate(acc[l] + product l) over n products of a row, in order, for a chained
// reduction: product t is power[t] times lane l of copy (r_a mod gamma) of B's row t, the copies
// `copy_stride` apart, the rows `ld` apart (lns_kernel::per_product_lanes lays them out); a
// product with a zero operand is +0, as on the exact path, whatever the signs.
template <class W>
using lns_fused_chain_fn = void (*)(const std::int32_t*, const W*, const W*, int, std::int64_t, std::int64_t,
                                    std::int32_t, const void*, float*);

// Float products into a light step (no rounding plan) that needs no round-to-odd sum: fp32's own
// addition, auto-vectorized.
template <class A>
void lns_fused_chain(const std::int32_t* k_a, const float* power, const float* rows, int n, std::int64_t copy_stride,
                     std::int64_t ld, std::int32_t mask, const void* accumulate, float* acc_io) {
    const A step = *static_cast<const A*>(accumulate);  // a local copy: stores cannot alias it
    alignas(64) float acc[fast_lanes];
    for (int l = 0; l < fast_lanes; ++l) acc[l] = acc_io[l];
    for (int t = 0; t < n; ++t) {
        const float* row = rows + (k_a[t] & mask) * copy_stride + t * ld;
        const float p = power[t];
        // (+ 0: +0 for a zero operand. The test on p is not needed for that, but without it g++
        // vectorizes the loop over t with gathers instead of the one over lanes: 2x slower.)
        if (p == 0) for (int l = 0; l < fast_lanes; ++l) acc[l] = add_then(step, acc[l], 0.0f);
        else for (int l = 0; l < fast_lanes; ++l) acc[l] = add_then(step, acc[l], p * row[l] + 0.0f);
    }
    for (int l = 0; l < fast_lanes; ++l) acc_io[l] = acc[l];
}

#if defined(__AVX512F__)
// Float products into odd-sum accumulators, and double products, in AVX-512: fast_datapath.hpp's
// accumulate_float_terms / accumulate_double_terms with the products as their term source.
template <class W, class A>
void lns_fused_vector_chain(const std::int32_t* k_a, const W* power, const W* rows, int n, std::int64_t copy_stride,
                            std::int64_t ld, std::int32_t mask, const void* accumulate, float* acc_io) {
    constexpr int width = 64 / int(sizeof(W));  // lanes a vector
    const auto terms = [&](int t, int v) {
        const W* row = rows + (k_a[t] & mask) * copy_stride + t * ld + width * v;
        // (power row + 0: the +0 of a zero product)
        if constexpr (std::is_same_v<W, float>)
            return _mm512_fmadd_ps(_mm512_set1_ps(power[t]), _mm512_loadu_ps(row), _mm512_setzero_ps());
        else
            return _mm512_fmadd_pd(_mm512_set1_pd(power[t]), _mm512_loadu_pd(row), _mm512_setzero_pd());
    };
    const A& op = *static_cast<const A*>(accumulate);
    if constexpr (std::is_same_v<W, float>) accumulate_float_terms(op, n, terms, acc_io);
    else accumulate_double_terms(op, n, terms, acc_io);
}
#endif

// The chain that forms the W products of a row as accumulate operation A adds them, or none (the
// products then go through a buffer).
template <class W, class A>
constexpr lns_fused_chain_fn<W> lns_fused_chain_of() {
#if defined(__AVX512F__)
    constexpr bool odd_chain = [] {
        if constexpr (is_odd_sum<A>) return has_odd_chain<decltype(A::inner)>;
        else return false;
    }();
    constexpr bool fp32 = std::is_same_v<A, sum_fp32> || std::is_same_v<A, sum_fp32_saturating>;
    if constexpr (odd_chain || (std::is_same_v<W, double> && fp32)) return &lns_fused_vector_chain<W, A>;
#endif
    if constexpr (std::is_same_v<W, float> && is_light<A> && !is_odd_sum<A>) return &lns_fused_chain<A>;
    return nullptr;
}

// Everything the outputs of one call share.
class lns_kernel {
public:
    lns_kernel(const lns_matrix& A, const lns_matrix& B, const lns_gemm_spec& spec, lns_product_range range)
        : spec_(spec), M_(A.rows()), N_(B.cols()), K_(A.cols()), frac_bits_(A.format.frac_bits), range_(range),
          constants_(lns_conversion_constants(spec.conversion, frac_bits_)), a_(lns_pack(A, true)),
          b_(lns_pack(B, false)) {
        // c_r = m_r 2^-constant_shift_ with integers m_r <= 2^53.
        constant_shift_ = spec.conversion.method == lns_conversion::mitchell ? frac_bits_ : spec.conversion.table_bits;
        for (const double c : constants_) numerators_.push_back(std::int64_t(std::ldexp(c, constant_shift_)));
    }

    std::int64_t rows() const { return M_; }
    std::int64_t cols() const { return N_; }
    std::int64_t depth() const { return K_; }

    // The products of output (i, j) with a zero operand.
    std::uint64_t zero_operands(std::int64_t i, std::int64_t j) const {
        const std::int8_t *sa = a_.sign.data() + i * K_, *sb = b_.sign.data() + j * K_;
        std::uint64_t n = 0;
        for (std::int64_t k = 0; k < K_; ++k) n += (sa[k] == 0 || sb[k] == 0);
        return n;
    }

    // t[k] = sign_a sign_b 2^q c_r for the K products of output (i, j): the table lookup and an
    // exponent built from q (normal: q_min >= -1022) vectorize.
    void converted_products(std::int64_t i, std::int64_t j, double* t) const {
        const std::int32_t *ka = a_.k.data() + i * K_, *kb = b_.k.data() + j * K_;
        const std::int8_t *sa = a_.sign.data() + i * K_, *sb = b_.sign.data() + j * K_;
        const double* c = constants_.data();
        const int b = frac_bits_;
        const std::int32_t mask = (std::int32_t(1) << b) - 1;
        for (std::int64_t k = 0; k < K_; ++k) {
            const std::int32_t s = ka[k] + kb[k];
            const std::int32_t q = s >> b;  // floor: arithmetic shift (C++20)
            const double pow2q = std::bit_cast<double>(std::uint64_t(q + 1023) << 52);
            t[k] = c[s & mask] * pow2q * double(sa[k] * sb[k]);
        }
    }

    // The remainders r_k and unit terms u_k = sign 2^(q - q_min) of output (i, j).
    void bucket_terms(std::int64_t i, std::int64_t j, std::int32_t* r, double* u) const {
        const std::int32_t *ka = a_.k.data() + i * K_, *kb = b_.k.data() + j * K_;
        const std::int8_t *sa = a_.sign.data() + i * K_, *sb = b_.sign.data() + j * K_;
        const int b = frac_bits_;
        const std::int32_t mask = (std::int32_t(1) << b) - 1;
        for (std::int64_t k = 0; k < K_; ++k) {
            const std::int32_t s = ka[k] + kb[k];
            const std::int32_t e = (s >> b) - range_.q_min;  // in [0, 1023]
            r[k] = s & mask;
            u[k] = std::bit_cast<double>(std::uint64_t(e + 1023) << 52) * double(sa[k] * sb[k]);
        }
    }

    // Output (i, j), per product, through exact_datapath::reduce.
    template <bool Count>
    float per_product(std::int64_t i, std::int64_t j, std::vector<double>& terms, std::vector<double>& tree,
                      std::vector<exact_sum>& chunk_results, const event_sink<Count>& sink) const {
        terms.resize(std::size_t(K_));
        converted_products(i, j, terms.data());
        const exact_datapath path{spec_.datapath, N_, K_};
        const std::uint64_t out = std::uint64_t(i * N_ + j);
        return lns_to_float(path.reduce<Count>(terms.data(), out, tree, chunk_results, sink));
    }

    // Output (i, j), bucketed, from the definition: each bucket through exact_datapath::reduce.
    template <bool Count>
    float bucketed(std::int64_t i, std::int64_t j, std::vector<double>& units, std::vector<std::int32_t>& remainders,
                   std::vector<double>& terms, std::vector<double>& tree, std::vector<exact_sum>& chunk_results,
                   const event_sink<Count>& sink) const {
        units.resize(std::size_t(K_));
        remainders.resize(std::size_t(K_));
        terms.resize(std::size_t(K_));
        bucket_terms(i, j, remainders.data(), units.data());
        const std::uint64_t out = std::uint64_t(i * N_ + j);
        exact_sum total;
        const auto gamma = std::int32_t(constants_.size());
        std::vector<std::uint8_t> used(std::size_t(gamma), 0);
        for (std::int64_t k = 0; k < K_; ++k) used[std::size_t(remainders[std::size_t(k)])] |= units[std::size_t(k)] != 0;
        for (std::int32_t r = 0; r < gamma; ++r) {
            // An empty bucket reduces zeros only: 0, with no events, in every model.
            if (!used[std::size_t(r)]) continue;
            for (std::int64_t k = 0; k < K_; ++k)
                terms[std::size_t(k)] = remainders[std::size_t(k)] == r ? units[std::size_t(k)] : 0.0;
            gemm_spec bucket = spec_.datapath;
            bucket.accumulator = with_seed_offset(bucket.accumulator, std::uint64_t(r));
            bucket.chunk_accumulator = with_seed_offset(bucket.chunk_accumulator, std::uint64_t(r));
            const exact_datapath path{bucket, N_, K_};
            const exact_sum b = path.reduce<Count>(terms.data(), out, tree, chunk_results, sink);
            add_scaled_integer(total, b, constants_[std::size_t(r)], range_.q_min);
        }
        return round_bucket_sum(total, out, sink);
    }

    // Whether bucketed outputs may take the 64-bit shortcut (see the header): modular
    // accumulators, no aligned cuts, and every intermediate sum of the shortcut below 2^62.
    bool bucket_shortcut_applies() const {
        const gemm_spec& d = spec_.datapath;
        if (!is_modular(d.accumulator) || !is_modular(d.chunk_accumulator) || d.model == accumulation::aligned)
            return false;
        // Bounds on magnitudes, as doubles (powers of two and small multiples: no rounding matters).
        const auto range_of = [](const quantizer& q) { return std::ldexp(1.0, q.as_int()->format.bits); };
        const std::int64_t chunk = d.chunk == 0 ? std::max<std::int64_t>(K_, 1) : d.chunk;
        const double chunks = double((std::max<std::int64_t>(K_, 1) + chunk - 1) / chunk);
        const double chunk_sum = double(std::min(chunk, K_)) * std::ldexp(1.0, range_.q_max - range_.q_min);
        const double chunk_result = d.accumulator.is_exact() ? chunk_sum : std::min(chunk_sum, range_of(d.accumulator));
        const double total = d.chunk_accumulator.is_exact() ? chunks * chunk_result
                                                            : range_of(d.chunk_accumulator) + chunk_result;
        // The final sum of m_r B_r (m_r <= 2^53, gamma terms) must fit 127 bits.
        const double final_sum = std::ldexp(total + chunk_result, 54 + frac_bits_);
        return std::max(chunk_sum, total + chunk_result) < 0x1p62 && final_sum < 0x1p126;
    }

    // Whether bucketed outputs whose sums exceed the 64-bit shortcut may take it in 128-bit
    // integers: exact buckets and bucket_sum (no rounding before the final float), no aligned
    // cuts, every bucket sum below 2^125 and every m_r B_r half (see bucketed_shortcut) below 2^126
    // / gamma. (lns8 at gamma 4: products spanning 2^64.)
    bool wide_bucket_shortcut_applies() const {
        const gemm_spec& d = spec_.datapath;
        if (!d.accumulator.is_exact() || !d.chunk_accumulator.is_exact() || !spec_.bucket_sum.is_exact() ||
            d.model == accumulation::aligned)
            return false;
        const double bucket = double(std::max<std::int64_t>(K_, 1)) * std::ldexp(1.0, range_.q_max - range_.q_min);
        return bucket < 0x1p125 && std::ldexp(bucket, 27 + frac_bits_) < 0x1p126;
    }

    // Output (i, j), bucketed, by the shortcut: per chunk, per bucket, the exact sum modulo the
    // accumulator's 2^P; then the chunk accumulator's sum modulo its 2^P, chunk by chunk. U: int64
    // (bucket_shortcut_applies), or lns_int128 with exact buckets (wide_bucket_shortcut_applies).
    template <class U>
    float bucketed_shortcut(std::int64_t i, std::int64_t j, std::vector<U>& unit, std::vector<std::int32_t>& remainder,
                            std::vector<U>& chunk_sum, std::vector<U>& bucket) const {
        constexpr bool wide = std::is_same_v<U, lns_int128>;
        const std::int64_t gamma = std::int64_t(constants_.size());
        bucket.assign(std::size_t(gamma), 0);
        chunk_sum.assign(std::size_t(2 * gamma), 0);
        unit.resize(std::size_t(K_));
        remainder.resize(std::size_t(K_));
        const std::int32_t *ka = a_.k.data() + i * K_, *kb = b_.k.data() + j * K_;
        const std::int8_t *sa = a_.sign.data() + i * K_, *sb = b_.sign.data() + j * K_;
        const int b = frac_bits_;
        const std::int32_t mask = (std::int32_t(1) << b) - 1, q_min = range_.q_min;
        const std::int64_t K = K_;
        // The unit terms and remainders (vectorized: locals and restrict pointers, or the stores
        // might change this object's members), then the chunks' bucket sums.
        U* __restrict u_out = unit.data();
        std::int32_t* __restrict r_out = remainder.data();
        for (std::int64_t k = 0; k < K; ++k) {
            const std::int32_t s = ka[k] + kb[k];
            r_out[k] = s & mask;
            u_out[k] = U(sa[k] * sb[k]) << ((s >> b) - q_min);
        }
        const U* u = unit.data();
        const std::int32_t* rem = remainder.data();
        const gemm_spec& d = spec_.datapath;
        const std::int64_t chunk = d.chunk == 0 ? std::max<std::int64_t>(K_, 1) : d.chunk;
        for (std::int64_t start = 0; start < std::max<std::int64_t>(K_, 1); start += chunk) {
            const std::int64_t end = std::min(start + chunk, K_);
            // Scatter, into two sets (even and odd k) so that consecutive products falling into
            // the same bucket do not wait for each other's store. (One vectorized masked pass per
            // bucket measured slower, even for gamma = 8; four sets no faster than two.)
            U* even = chunk_sum.data();
            U* odd = even + gamma;
            std::int64_t k = start;
            for (; k + 1 < end; k += 2) {
                even[rem[k]] += u[k];
                odd[rem[k + 1]] += u[k + 1];
            }
            if (k < end) even[rem[k]] += u[k];
            for (std::int64_t r = 0; r < gamma; ++r) even[r] += odd[r], odd[r] = 0;
            for (std::int64_t r = 0; r < gamma; ++r) {
                if constexpr (wide) bucket[std::size_t(r)] += chunk_sum[std::size_t(r)];
                else
                    bucket[std::size_t(r)] = wrap_modular(bucket[std::size_t(r)] + wrap_modular(chunk_sum[std::size_t(r)], d.accumulator),
                                                          d.chunk_accumulator);
                chunk_sum[std::size_t(r)] = 0;
            }
        }
        // sum_r c_r B_r 2^q_min = 2^(q_min - shift) sum_r m_r B_r, the sum exact in 128 bits.
        const int e = range_.q_min - constant_shift_;
        const auto out = std::uint64_t(i * N_ + j);
        if constexpr (!wide) {
            lns_int128 sum = 0;
            for (std::int64_t r = 0; r < gamma; ++r) sum += lns_int128(numerators_[std::size_t(r)]) * bucket[std::size_t(r)];
            return finish_total(sum, e, out);
        } else {
            // m_r B_r may pass 2^127: with m_r = h_r 2^26 + l_r (l_r < 2^26), S = sum m_r B_r =
            // P 2^26 + Q, P = sum h_r B_r and Q = sum l_r B_r, each below 2^126 (the condition of
            // wide_bucket_shortcut_applies). With P' = P + floor(Q / 2^26) and 0 <= rest < 2^26,
            // S = P' 2^26 + rest: exact in 128 bits while |P'| < 2^100; beyond, S lies in the open
            // interval (P', P' + 1) 2^26 when rest != 0, which holds no number of 53 significant
            // bits (their spacing there is 2^47 or more times 2^26), so S rounds to odd as its
            // midpoint (2 P' + 1) 2^25 does (bucket_sum is unset: the float comes from that double).
            lns_int128 high = 0, low = 0;
            for (std::int64_t r = 0; r < gamma; ++r) {
                const std::int64_t m = numerators_[std::size_t(r)];
                high += lns_int128(m >> 26) * bucket[std::size_t(r)];
                low += lns_int128(m & ((std::int64_t(1) << 26) - 1)) * bucket[std::size_t(r)];
            }
            const lns_int128 p = high + (low >> 26);  // (an arithmetic shift: floor)
            const lns_int128 rest = low & ((lns_int128(1) << 26) - 1);
            if (p < (lns_int128(1) << 100) && p > -(lns_int128(1) << 100)) return finish_total(p * (lns_int128(1) << 26) + rest, e, out);
            return finish_total(2 * p + (rest != 0 ? 1 : 0), e + 25, out);
        }
    }

    // C(i, j) from the exact total sum 2^e of output `out`: rounded by bucket_sum (unset: not at
    // all), then to float, nearest even.
    float finish_total(lns_int128 sum, int e, std::uint64_t out) const {
        const quantizer& q = spec_.bucket_sum;
        return with_step(q, gemm_random_key(exact_datapath::seed_of(q), gemm_role::product), [&](const auto& step) {
            using step_type = std::decay_t<decltype(step)>;
            const double odd_total = lns_round_odd(sum, e);
            if constexpr (step_type::exact) {
                return lns_to_float(odd_total);
            } else {
                bool overflowed = false;
                double r = 0;
                if constexpr (rounds_from_odd_double<step_type>::value) r = step.round_value(odd_total, out, overflowed);
                else r = step.round_exact(lns_exact_value(sum, e), out, overflowed);
                return lns_to_float(r);
            }
        });
    }

    // Whether every output is the exact sum of its converted products, rounded once by
    // bucket_sum: per-product accumulation with exact accumulators, or buckets that never lose a
    // bit (exact, or signed integers of no fraction bits that no sum can overflow: a chunk's
    // bucket holds at most min(chunk, K) unit terms of at most 2^(q_max - q_min), the total K), by
    // the identity of the header. Not the aligned model, which cuts its terms.
    bool sums_are_exact() const {
        const gemm_spec& d = spec_.datapath;
        if (d.model == accumulation::aligned) return false;
        const std::int64_t chunk = d.chunk == 0 ? K_ : std::min<std::int64_t>(d.chunk, K_);
        const auto never_loses = [&](const quantizer& q, std::int64_t terms) {
            if (q.is_exact()) return true;
            const int_quantizer* i = q.as_int();
            return spec_.accumulation == lns_accumulation::bucketed && i != nullptr && i->fraction_bits == 0 &&
                   i->format.is_signed &&
                   std::ldexp(double(std::max<std::int64_t>(terms, 1)), range_.q_max - range_.q_min) <= i->format.max_value();
        };
        return never_loses(d.accumulator, chunk) && never_loses(d.chunk_accumulator, K_);
    }

    // Exact sums (sums_are_exact) of 64 outputs at once in int64 lanes. The constants are integers
    // m_r = c_r 2^T of m bits; B is laid out once per r_a, as per_product_lanes does, as the
    // integers u = sign_b m_((r_a + r_b) mod gamma) 2^(q_b + carry - qb_low) (int32 where they
    // fit, else int64), and A(i, k)'s term is u shifted left by q_a - qa_low (one shift for every
    // lane) and negated for a negative A(i, k); each output's total is then finished as the
    // shortcut finishes it. The K terms of a lane must stay below 2^62: m + (the products'
    // spread) + ceil(log2 K) <= 62, which holds for Mitchell's constants and tables of up to
    // about 20 bits on lns8; the 52-bit table's constants would need three pieces, which measured
    // slower than the bucket shortcut that serves it. c = the outputs (row-major);
    // false, with why_not set, where it does not apply.
    bool exact_sums_in_lanes(float* c, std::string& why_not) const {
        if (K_ == 0) {
            why_not = "K = 0";
            return false;
        }
        const int b = frac_bits_;
        const std::int32_t qa_low = a_.k_low >> b, qb_low = b_.k_low >> b;
        const int spread_a = (a_.k_high >> b) - qa_low, spread_b = (b_.k_high >> b) + 1 - qb_low;
        const std::int64_t m_max = *std::max_element(numerators_.begin(), numerators_.end());
        const int m_bits = int(std::bit_width(std::uint64_t(m_max)));
        const int width = m_bits + spread_a + spread_b + int(std::bit_width(std::uint64_t(K_ - 1)));  // (ceil(log2 K))
        if (width > 62) {
            why_not = "exact sums: constants of " + std::to_string(m_bits) + " bits on products spanning 2^" +
                      std::to_string(spread_a + spread_b) + ", " + std::to_string(K_) + " of them, exceed 62 bits";
            return false;
        }
        const std::int64_t ld = (N_ + fast_lanes - 1) / fast_lanes * fast_lanes;
        const bool narrow = m_bits + spread_b <= 31;  // every u is an int32
        if (double(std::int64_t(1) << b) * double(K_) * double(ld) * (narrow ? 4 : 8) > 0x1p28) {
            why_not = "exact sums: " + std::to_string(1 << b) + " copies of B would take more than 256 MB";
            return false;
        }
        if (narrow) exact_sums_run<std::int32_t>(c, qa_low, qb_low);
        else exact_sums_run<std::int64_t>(c, qa_low, qb_low);
        return true;
    }

    template <class U>
    void exact_sums_run(float* c, std::int32_t qa_low, std::int32_t qb_low) const {
        const int b = frac_bits_;
        const std::int32_t gamma = std::int32_t(1) << b, mask = gamma - 1;
        const std::int64_t K = K_, N = N_, M = M_;  // (locals: the stores below cannot change them)
        const std::int64_t blocks = (N + fast_lanes - 1) / fast_lanes, ld = blocks * fast_lanes;
        const int threads = thread_count(spec_.datapath.threads);
        std::vector<std::int64_t> moved_m;  // m_0 .. m_(gamma-1), then 2 m_0 .. 2 m_(gamma-1): the carry
        for (const int carry : {0, 1})
            for (const std::int64_t m : numerators_) moved_m.push_back(m << carry);
        std::vector<U> units(std::size_t(gamma * K * ld));
        const b_rows rows = rows_of_b(threads);
#pragma omp parallel for num_threads(threads) schedule(static)
        for (std::int64_t k = 0; k < K; ++k)
            for (std::int32_t r_a = 0; r_a < gamma; ++r_a) {
                U* __restrict row = units.data() + (r_a * K + k) * ld;
                const std::int32_t* kb = rows.k.data() + k * N;
                const std::int8_t* sb = rows.sign.data() + k * N;
                const std::int64_t* moved = moved_m.data() + r_a;  // [r_b] gives r_a + r_b
                for (std::int64_t j = 0; j < N; ++j) {
                    const auto u = U(moved[kb[j] & mask] << ((kb[j] >> b) - qb_low));
                    row[j] = sb[j] == 0 ? U(0) : sb[j] < 0 ? U(-u) : u;
                }
                std::fill(row + N, row + ld, U(0));
            }
        const int e = qa_low + qb_low - constant_shift_;
        // (an unset bucket_sum and totals below 2^53 in double's normal range: the total is
        // double(sum) 2^e exactly, rounded once to float)
        const bool plain = spec_.bucket_sum.is_exact() && e >= -1022 && e <= 960;
        const double scale = plain ? std::ldexp(1.0, e) : 0.0;
#pragma omp parallel for num_threads(threads) schedule(static) collapse(2)
        for (std::int64_t block = 0; block < blocks; ++block)
            for (std::int64_t i = 0; i < M; ++i) {
                const std::int32_t* ka = a_.k.data() + i * K;
                const std::int8_t* sa = a_.sign.data() + i * K;
                const std::int64_t j0 = block * fast_lanes;
                alignas(64) std::int64_t acc[fast_lanes] = {};
                for (std::int64_t k = 0; k < K; ++k) {
                    if (sa[k] == 0) continue;
                    const std::int64_t negate = sa[k] < 0 ? -1 : 0;  // (x ^ -1) - (-1) = -x
                    const int shift = (ka[k] >> b) - qa_low;
                    const U* row = units.data() + ((ka[k] & mask) * K + k) * ld + j0;
                    for (int l = 0; l < fast_lanes; ++l) acc[l] += ((std::int64_t(row[l]) << shift) ^ negate) - negate;
                }
                for (std::int64_t l = 0; l < std::min<std::int64_t>(fast_lanes, N - j0); ++l) {
                    const std::int64_t sum = acc[l];
                    c[i * N + j0 + l] = plain && sum < (std::int64_t(1) << 53) && sum > -(std::int64_t(1) << 53)
                                            ? lns_to_float(double(sum) * scale)
                                            : finish_total(sum, e, std::uint64_t(i * N + j0 + l));
                }
            }
    }

    // Per-product accumulation in lanes (fast_datapath.hpp's reduction stage): c = the outputs
    // (row-major); false, with c untouched and why_not set, where it does not apply. Each converted
    // product is one exact multiply in W: float lanes (every model) where the products are floats
    // (constants of at most 24 significant bits: Mitchell's, tables of T <= 23 bits, and products
    // within float's normal range), else double lanes (any table, the default T = 52 included;
    // sequential and fma chains into float accumulators, lane_reduction's double terms).
    bool per_product_in_lanes(float* c, std::string& why_not) const {
        if (K_ == 0) {
            why_not = "K = 0";
            return false;
        }
        const int T = constant_shift_;
        std::string float_why;
        if (T > 23) float_why = "table constants of " + std::to_string(T) + " fraction bits are not floats (at most 23)";
        else if (range_.q_min < -126 || range_.q_max > 126)
            float_why = "products span 2^" + std::to_string(range_.q_min) + " .. 2^" +
                        std::to_string(range_.q_max + 1) + ", beyond float's normal range";
        if (float_why.empty() && per_product_lanes<float>(c, float_why)) return true;
        std::string double_why;
        if (per_product_lanes<double>(c, double_why)) return true;
        why_not = "per_product: float lanes: " + float_why + "; double lanes: " + double_why;
        return false;
    }

    // The lanes in W (float or double), once the products are known to be W's.
    template <class W>
    bool per_product_lanes(float* c, std::string& why_not) const {
        using bits_type = std::conditional_t<std::is_same_v<W, float>, std::uint32_t, std::uint64_t>;
        constexpr int fraction = std::numeric_limits<W>::digits - 1;     // 23 or 52
        constexpr int bias = std::numeric_limits<W>::max_exponent - 1;  // 127 or 1023
        constexpr bool doubles = std::is_same_v<W, double>;
        const int T = constant_shift_;
        const value_grid terms{range_.q_min - T, T + 1, std::ldexp(1.0, range_.q_max + 1), true};
        const auto reduction = lane_reduction::make(spec_.datapath, K_, terms, why_not, doubles);
        if (!reduction) return false;

        // Each product as one exact multiply: A(i, k) = sign_a 2^(q_a gamma + r_a) is sign_a 2^q_a
        // times the linear value of B(k, j) moved up by r_a, which is a W (sign_b 2^(q_b + carry)
        // c_((r_a + r_b) mod gamma), carry = (r_a + r_b) >= gamma). So B is laid out once per r_a,
        // by rows of k, padded to blocks of fast_lanes columns (+0 for zeros); A as sign_a 2^q_a,
        // with r_a choosing the copy of B. Every power of two must be a normal W.
        const int b = frac_bits_;
        const std::int32_t gamma = std::int32_t(1) << b, mask = gamma - 1;
        const std::int64_t blocks = (N_ + fast_lanes - 1) / fast_lanes, ld = blocks * fast_lanes;
        const auto q_range = [&](const lns_operand_rows& x, std::int32_t carry) {
            return (x.k_low >> b) >= 1 - bias && (x.k_high >> b) + carry <= bias;
        };
        if (!q_range(a_, 0) || !q_range(b_, 1)) {
            why_not = std::string("an operand's powers of two beyond ") + (doubles ? "double" : "float") +
                      "'s normal range";
            return false;
        }
        if (double(gamma) * double(K_) * double(ld) * sizeof(W) > 0x1p28) {
            why_not = "gamma copies of B (" + std::to_string(gamma) + ") would take more than 256 MB";
            return false;
        }
        // (on the bits: q << fraction moves a W's exponent by q, within the range checked above)
        std::vector<bits_type> c_bits;  // c_0 .. c_(gamma-1), then 2 c_0 .. 2 c_(gamma-1): the carry
        for (const int carry : {0, 1})
            for (const double c_r : constants_)  // (exact: at most 24 significant bits for floats)
                c_bits.push_back(std::bit_cast<bits_type>(W(std::ldexp(c_r, carry))));
        const auto sign_bit = [](std::int8_t sign) { return sign < 0 ? bits_type(1) << (sizeof(W) * 8 - 1) : bits_type(0); };
        const int threads = thread_count(spec_.datapath.threads);
        std::vector<W> b_moved(std::size_t(gamma * K_ * ld));
        std::vector<W> a_power(a_.k.size());
        const b_rows rows = rows_of_b(threads);
#pragma omp parallel num_threads(threads)
        {
#pragma omp for schedule(static)
            for (std::int64_t k = 0; k < K_; ++k)
                for (std::int32_t r_a = 0; r_a < gamma; ++r_a) {
                    W* row = b_moved.data() + (r_a * K_ + k) * ld;
                    const std::int32_t* kb = rows.k.data() + k * N_;
                    const std::int8_t* sb = rows.sign.data() + k * N_;
                    const bits_type* c_moved = c_bits.data() + r_a;
                    for (std::int64_t j = 0; j < N_; ++j) {
                        const bits_type bits =
                            c_moved[kb[j] & mask] + (bits_type(std::make_signed_t<bits_type>(kb[j] >> b)) << fraction);
                        row[j] = sb[j] == 0 ? W(0) : std::bit_cast<W>(bits | sign_bit(sb[j]));
                    }
                    std::fill(row + N_, row + ld, W(0));
                }
#pragma omp for schedule(static)
            for (std::size_t t = 0; t < a_.k.size(); ++t)
                a_power[t] = a_.sign[t] == 0 ? W(0)
                                             : std::bit_cast<W>((bits_type((a_.k[t] >> b) + bias) << fraction) |
                                                                sign_bit(a_.sign[t]));
        }
        const void* const accumulate = address_of(reduction->accumulate());
        const lns_fused_chain_fn<W> fused_chain =
            !reduction->chained()
                ? nullptr
                : std::visit([](const auto& op) { return lns_fused_chain_of<W, std::decay_t<decltype(op)>>(); },
                             reduction->accumulate());
#pragma omp parallel num_threads(threads)
        {
            std::vector<W> scratch(std::size_t(reduction->scratch_rows() * fast_lanes));
#pragma omp for schedule(static) collapse(2)
            for (std::int64_t block = 0; block < blocks; ++block)
                for (std::int64_t i = 0; i < M_; ++i) {
                    const std::int32_t* ka = a_.k.data() + i * K_;
                    const W* pa = a_power.data() + i * K_;
                    const std::int64_t j0 = block * fast_lanes;
                    // terms k .. k + m - 1 of row i and this block (exact products)
                    const auto fill = [&](std::int64_t k, int m, W* out) {
                        for (int u = 0; u < m; ++u) {
                            const W* row = b_moved.data() + ((ka[k + u] & mask) * K_ + k + u) * ld + j0;
                            const W power = pa[k + u];
                            W* o = out + std::ptrdiff_t(u) * fast_lanes;
                            // (+ 0: +0 for a zero operand, as on the exact path, whatever the
                            // signs; the test on power keeps g++ vectorizing over lanes)
                            if (power == 0) std::fill(o, o + fast_lanes, W(0));
                            else for (int l = 0; l < fast_lanes; ++l) o[l] = power * row[l] + W(0);
                        }
                    };
                    chunk_totals total;
                    // Products made as they are added where a fused chain serves the accumulator
                    // (no buffer between them); otherwise through fill's buffer.
                    const auto fused = [&](std::int64_t k, int n, float* acc) {
                        if (fused_chain == nullptr) return false;
                        fused_chain(ka + k, pa + k, b_moved.data() + k * ld + j0, n, K_ * ld, ld, mask, accumulate, acc);
                        return true;
                    };
                    if constexpr (doubles) reduction->row_of_doubles(K_, fill, fused, scratch.data(), total);
                    else reduction->row(K_, fill, fused, scratch.data(), total);
                    for (std::int64_t l = 0; l < std::min<std::int64_t>(fast_lanes, N_ - j0); ++l)
                        c[i * N_ + j0 + l] = total[l];
                }
        }
        return true;
    }

private:
    // B by rows of k (row-major K x N), for the kernels that lay it out along j.
    struct b_rows {
        std::vector<std::int32_t> k;
        std::vector<std::int8_t> sign;
    };
    b_rows rows_of_b(int threads) const {
        b_rows rows{std::vector<std::int32_t>(std::size_t(K_ * N_)), std::vector<std::int8_t>(std::size_t(K_ * N_))};
#pragma omp parallel for num_threads(threads) schedule(static)
        for (std::int64_t j = 0; j < N_; ++j)
            for (std::int64_t k = 0; k < K_; ++k) {
                rows.k[std::size_t(k * N_ + j)] = b_.k[std::size_t(j * K_ + k)];
                rows.sign[std::size_t(k * N_ + j)] = b_.sign[std::size_t(j * K_ + k)];
            }
        return rows;
    }

    const lns_gemm_spec& spec_;
    std::int64_t M_, N_, K_;
    int frac_bits_;
    lns_product_range range_;
    std::vector<double> constants_;  // c_r
    std::vector<std::int64_t> numerators_;
    int constant_shift_ = 0;
    lns_operand_rows a_, b_;

    template <bool Count>
    float round_bucket_sum(const exact_sum& total, std::uint64_t out, const event_sink<Count>& sink) const {
        const quantizer& q = spec_.bucket_sum;
        return with_step(q, gemm_random_key(exact_datapath::seed_of(q), gemm_role::product), [&](const auto& step) {
            if constexpr (std::decay_t<decltype(step)>::exact) {
                return lns_to_float(total);
            } else {
                bool overflowed = false;
                const double r = step.round_exact(total, out, overflowed);
                sink.rounding(total, r, overflowed);
                return lns_to_float(r);
            }
        });
    }
};

template <bool Count>
void lns_gemm_rows(const lns_kernel& kernel, const lns_gemm_spec& spec, float* c, gemm_stats* stats,
                   gemm_report* report) {
    const std::int64_t M = kernel.rows(), N = kernel.cols(), K = kernel.depth();
    const bool bucketed = spec.accumulation == lns_accumulation::bucketed;
    // Exact per-product accumulation equals exact buckets (the identity of the header), so it
    // takes the bucket shortcut too.
    const bool exact_per_product = spec.datapath.accumulator.is_exact() && spec.datapath.chunk_accumulator.is_exact();
    gemm_report ran;
    std::string why_not_exact_sums;
    if (!Count && (bucketed || exact_per_product) && kernel.sums_are_exact() &&
        kernel.exact_sums_in_lanes(c, why_not_exact_sums)) {
        ran.kernel = gemm_kernel::integer_sum_lanes;
        if (report != nullptr) *report = ran;
        return;
    }
    const bool shortcut = !Count && (bucketed || exact_per_product) && kernel.bucket_shortcut_applies();
    const bool wide = !Count && !shortcut && (bucketed || exact_per_product) && kernel.wide_bucket_shortcut_applies();
    ran.kernel = shortcut || wide ? gemm_kernel::integer_buckets : gemm_kernel::exact;
    if (Count) ran.reason = "stats: events are counted on the exact path for LNS";
    else if (bucketed && !shortcut && !wide) ran.reason = "bucketed: accumulators other than exact or wrapping integers, the aligned model, or sums beyond 62 bits (125 bits with exact buckets and bucket_sum)";
    if (!Count && !shortcut && !bucketed && kernel.per_product_in_lanes(c, ran.reason)) {
        ran.kernel = gemm_kernel::vectorized_chain;
        ran.reason.clear();
    }
    if (report != nullptr) *report = ran;
    if (ran.kernel == gemm_kernel::vectorized_chain) return;
    const int threads = thread_count(spec.datapath.threads);
    std::vector<gemm_stats> per_thread(std::size_t(threads), gemm_stats{});
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t i = 0; i < M; ++i) {
        gemm_stats& local = per_thread[std::size_t(thread_index())];
        std::vector<double> terms, units, tree;
        std::vector<std::int32_t> remainders;
        std::vector<exact_sum> chunk_results;
        std::vector<std::int64_t> units64, chunk_sum, bucket;
        std::vector<lns_int128> units128, chunk_sum128, bucket128;
        for (std::int64_t j = 0; j < N; ++j) {
            const std::uint64_t out = std::uint64_t(i * N + j);
            event_sink<Count> sink{&local, nullptr};
            if constexpr (Count) {
                local.zero_operand += kernel.zero_operands(i, j);
                if (spec.datapath.record_lost) sink.lost = stats->lost.data() + out * std::uint64_t(K);
            }
            float& result = c[i * N + j];
            if (shortcut) result = kernel.bucketed_shortcut(i, j, units64, remainders, chunk_sum, bucket);
            else if (wide) result = kernel.bucketed_shortcut(i, j, units128, remainders, chunk_sum128, bucket128);
            else if (bucketed) result = kernel.bucketed<Count>(i, j, units, remainders, terms, tree, chunk_results, sink);
            else result = kernel.per_product<Count>(i, j, terms, tree, chunk_results, sink);
        }
    }
    if constexpr (Count)
        for (const auto& s : per_thread) *stats += s;
}

template <class>
Eigen::MatrixXf lns_multiply(const lns_matrix& A, const lns_matrix& B, const lns_gemm_spec& spec,
                             const lns_product_range& range, gemm_stats* stats, gemm_report* report) {
    const lns_kernel kernel(A, B, spec, range);
    const std::int64_t M = A.rows(), N = B.cols(), K = A.cols();
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> c(M, N);
    if (stats != nullptr) {
        stats->macs += std::uint64_t(M) * std::uint64_t(N) * std::uint64_t(K);
        if (spec.datapath.record_lost) stats->lost.assign(std::size_t(M * N * K), 0);
        lns_gemm_rows<true>(kernel, spec, c.data(), stats, report);
    } else {
        lns_gemm_rows<false>(kernel, spec, c.data(), nullptr, report);
    }
    return c;
}

#ifdef LOWBIT_COMPILED_LIB
extern template Eigen::MatrixXf lns_multiply<>(const lns_matrix&, const lns_matrix&, const lns_gemm_spec&,
                                               const lns_product_range&, gemm_stats*, gemm_report*);
#endif

}  // namespace lowbit::detail
