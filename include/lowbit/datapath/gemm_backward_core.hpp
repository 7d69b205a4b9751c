// lowbit/datapath/gemm_backward_core.hpp: what runs under lowbit::gemm_backward
// (gemm_backward.hpp): each output's accumulation chain recomputed with its events, the factors
// of its products by gradient mode, and their contraction with dC into dA and dB.
//
// The work goes by blocks of 64 columns of C (the forward's lanes) and, within a block, by rows i:
// for each (i, block) the factors of its 64 x K products are made (in fp32 lanes where the
// forward's vectorized path counts events, otherwise one output at a time with the exact path's
// steps) and contracted at once. dB's block panel belongs to one block; dA's rows sum over every
// block, so blocks form groups fixed by the shapes alone, each with its own partial dA, added in
// group order at the end: the bits do not depend on the thread count.
//
// gemm_backward.hpp includes this header at its end in header-only use; under LOWBIT_COMPILED_LIB
// src/compiled.cpp instantiates backward_quantized once.
#pragma once

#include <lowbit/datapath/exact_datapath.hpp>
#include <lowbit/datapath/fast_datapath.hpp>
#include <lowbit/datapath/gemm_backward.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>

#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <vector>

LOWBIT_BEGIN_INTRINSICS

namespace lowbit::detail {

// The factor flags of one step, one byte per (k, lane): whether the step passes the gradient to
// its product in immediate mode (dp/dx * ds/dp), in overflow_only mode, and to the running sum
// (ds_k/ds_{k-1}).
constexpr std::uint8_t immediate_ok = 1, overflow_ok = 2, sum_kept = 4;

// The flags of one step from its events (0/1 integers, so that the lanes' loops vectorize).
[[gnu::always_inline]] inline std::uint8_t step_flags(std::uint32_t product_overflow, std::uint32_t product_flush,
                                                       std::uint32_t step_overflow, std::uint32_t addend_swamped,
                                                       std::uint32_t sum_swamped) {
    const std::uint32_t immediate = 1u ^ (product_overflow | product_flush | step_overflow | addend_swamped);
    const std::uint32_t overflow = 1u ^ (product_overflow | step_overflow);
    const std::uint32_t kept = 1u ^ (sum_swamped | step_overflow);
    return std::uint8_t(immediate | (overflow << 1) | (kept << 2));
}

// Only the flag that a mode other than recursive reads, in its place (the lanes compute no more).
template <gradient_mode Mode>
[[gnu::always_inline]] inline std::uint8_t step_flags(std::uint32_t product_overflow, std::uint32_t product_flush,
                                                       std::uint32_t step_overflow, std::uint32_t addend_swamped,
                                                       std::uint32_t sum_swamped) {
    if constexpr (Mode == gradient_mode::overflow_only)
        return std::uint8_t((1u ^ (product_overflow | step_overflow)) << 1);
    else if constexpr (Mode == gradient_mode::immediate)
        return std::uint8_t(1u ^ (product_overflow | product_flush | step_overflow | addend_swamped));
    else
        return step_flags(product_overflow, product_flush, step_overflow, addend_swamped, sum_swamped);
}

// The factors g[k][l] (k < K, l < 64) of a block from the flags of its steps (flags[k][l]) and of
// its chunk steps (chunk_flags[c][l]), in place: the mode's own flag, and for recursive the
// reverse scan (the product's step, every later step of its chunk, its chunk's step and every
// later chunk step).
inline void factors_from_flags(gradient_mode mode, std::int64_t K, std::int64_t chunk, std::uint8_t* __restrict flags,
                               const std::uint8_t* __restrict chunk_flags) {
    constexpr int L = fast_lanes;
    if (mode == gradient_mode::ste) {
        std::fill(flags, flags + K * L, std::uint8_t(1));
        return;
    }
    if (mode != gradient_mode::recursive) {
        const std::uint8_t flag = mode == gradient_mode::immediate ? immediate_ok : overflow_ok;
        for (std::int64_t e = 0; e < K * L; ++e) flags[e] = std::uint8_t((flags[e] & flag) != 0);
        return;
    }
    const std::int64_t chunks = (K + chunk - 1) / chunk;
    std::uint8_t later[L], live[L];  // the later chunk steps keep the sum; the chain from here on
    std::fill(later, later + L, std::uint8_t(1));
    for (std::int64_t c = chunks - 1; c >= 0; --c) {
        const std::uint8_t* cf = chunk_flags + c * L;
        for (int l = 0; l < L; ++l) {
            live[l] = std::uint8_t(cf[l] & later[l] & immediate_ok);  // dT_c/dS_c and everything after
            later[l] = std::uint8_t(later[l] & ((cf[l] & sum_kept) != 0));  // dT_c/dT_{c-1}
        }
        for (std::int64_t k = std::min(K, (c + 1) * chunk) - 1; k >= c * chunk; --k) {
            std::uint8_t* f = flags + k * L;
            for (int l = 0; l < L; ++l) {
                const std::uint8_t step = f[l];
                f[l] = std::uint8_t(step & live[l] & immediate_ok);
                live[l] = std::uint8_t(live[l] & ((step & sum_kept) != 0));
            }
        }
    }
}

// ---- the flags in fp32 lanes (the forward's counted operations) ----

// Flags of the 64 outputs of row a (K floats) times the block of B at b (row k at b + k * ldb),
// with the chunk steps (the accumulator's own operation).
template <class P, class A, gradient_mode Mode>
void lane_flags(const float* __restrict a, const float* __restrict b, std::ptrdiff_t ldb, std::int64_t K,
                std::int64_t chunk, const void* product, const void* accumulate, std::uint8_t* __restrict flags,
                std::uint8_t* __restrict chunk_flags) {
    // (restrict: a byte store may alias anything, and would keep the loops scalar)
    constexpr int L = fast_lanes;
    const P prod = *static_cast<const P*>(product);  // local copies: stores cannot alias them
    const A step = *static_cast<const A*>(accumulate);
    float total[L];
    std::fill_n(total, L, -0.0f);  // as the forward's chunk totals
    for (std::int64_t start = 0, c = 0; start < K; start += chunk, ++c) {
        float acc[L] = {};
        const std::int64_t end = std::min(K, start + chunk);
        for (std::int64_t k = start; k < end; ++k) {
            const float ak = a[k];
            const float* bk = b + k * ldb;
            std::uint8_t* f = flags + k * L;
            for (int l = 0; l < L; ++l) {
                std::uint32_t product_overflow, product_flush, overflowed, inexact;
                const float p = prod.counted(ak * bk[l], product_overflow, product_flush);  // exact product
                const float y = add_then_counted(step, acc[l], p, overflowed, inexact);
                f[l] = step_flags<Mode>(product_overflow, product_flush, overflowed,
                                  std::uint32_t(p != 0) & std::uint32_t(y == acc[l]),
                                  std::uint32_t(acc[l] != 0) & std::uint32_t(y == p));
                acc[l] = y;
            }
        }
        std::uint8_t* cf = chunk_flags + c * L;
        for (int l = 0; l < L; ++l) {
            std::uint32_t overflowed, inexact;
            const float y = add_then_counted(step, total[l], acc[l], overflowed, inexact);
            cf[l] = step_flags<Mode>(0, 0, overflowed, std::uint32_t(acc[l] != 0) & std::uint32_t(y == total[l]),
                               std::uint32_t(total[l] != 0) & std::uint32_t(y == acc[l]));
            total[l] = y;
        }
    }
}

using lane_flags_fn = void (*)(const float*, const float*, std::ptrdiff_t, std::int64_t, std::int64_t, const void*,
                               const void*, std::uint8_t*, std::uint8_t*);

// ---- the flags one output at a time (any spec: the exact path's steps) ----

// Whether a step's overflow masks the gradient: always, but for an integer that wraps.
inline bool overflow_masks(const quantizer& q) {
    const auto* i = q.as_int();
    return i == nullptr || i->on_overflow == int_overflow::saturate;
}

// The flags of `lanes` outputs (i, j0 + l) of a row, from a (K floats) and b_cols (column j0 + l
// of B at b_cols + l * K), in three passes as the exact path computes them: products, chunk
// chains, chunk steps.
struct exact_flags {
    const gemm_spec& spec;
    std::int64_t N, K, chunk;
    std::vector<double>& products;                // lanes x K
    std::vector<std::uint32_t>& product_events;   // lanes x K: overflow | flush << 1
    std::vector<exact_sum>& chunk_results;        // lanes x chunks

    void operator()(const float* a, const float* b_cols, std::int64_t i, std::int64_t j0, int lanes,
                    std::uint8_t* flags, std::uint8_t* chunk_flags) const {
        constexpr int L = fast_lanes;
        const std::int64_t chunks = (K + chunk - 1) / chunk;
        products.resize(std::size_t(lanes * K));
        product_events.resize(std::size_t(lanes * K));
        chunk_results.resize(std::size_t(lanes * chunks));
        const auto output = [&](int l) { return std::uint64_t(i * N + j0 + l); };

        const auto product_pass = [&](const auto& step) {
            using Step = std::decay_t<decltype(step)>;
            for (int l = 0; l < lanes; ++l)
                for (std::int64_t k = 0; k < K; ++k) {
                    const double x = double(a[k]) * double(b_cols[l * K + k]);  // exact
                    double p = x;
                    bool overflowed = false;
                    if constexpr (!Step::exact) p = step.round_value(x, output(l) * std::uint64_t(K) + std::uint64_t(k), overflowed);
                    products[std::size_t(l * K + k)] = p;
                    product_events[std::size_t(l * K + k)] =
                        std::uint32_t(overflowed) | std::uint32_t(x != 0 && p == 0) << 1;
                }
        };
        if (spec.model == accumulation::fma)  // one rounding of a*b + acc: no product rounding
            product_pass(exact_step{});
        else
            with_step(spec.product, gemm_random_key(exact_datapath::seed_of(spec.product), gemm_role::product),
                      product_pass);

        const bool acc_masks = overflow_masks(spec.accumulator);
        with_step(spec.accumulator, gemm_random_key(exact_datapath::seed_of(spec.accumulator), gemm_role::accumulator),
                  [&](const auto& step) {
                      using Step = std::decay_t<decltype(step)>;
                      for (int l = 0; l < lanes; ++l)
                          for (std::int64_t c = 0; c < chunks; ++c) {
                              double acc = 0;
                              exact_sum exact;  // an exact accumulator's sum
                              for (std::int64_t k = c * chunk; k < std::min(K, (c + 1) * chunk); ++k) {
                                  const double p = products[std::size_t(l * K + k)];
                                  const std::uint32_t pe = product_events[std::size_t(l * K + k)];
                                  std::uint32_t overflowed = 0, addend_swamped = 0, sum_swamped = 0;
                                  if constexpr (Step::exact) {
                                      exact.add(p);  // nothing is lost
                                  } else {
                                      bool o = false;
                                      const double y = round_sum(step, acc, p, output(l) * std::uint64_t(K) + std::uint64_t(k), o);
                                      overflowed = std::uint32_t(o && acc_masks);
                                      addend_swamped = std::uint32_t(p != 0 && y == acc);
                                      sum_swamped = std::uint32_t(acc != 0 && y == p);
                                      acc = y;
                                  }
                                  flags[k * L + l] = step_flags(pe & 1u, pe >> 1, overflowed, addend_swamped, sum_swamped);
                              }
                              if constexpr (Step::exact) chunk_results[std::size_t(l * chunks + c)] = exact;
                              else chunk_results[std::size_t(l * chunks + c)] = exact_sum(acc);
                          }
                  });

        const bool chunk_masks = overflow_masks(spec.chunk_accumulator);
        with_step(spec.chunk_accumulator,
                  gemm_random_key(exact_datapath::seed_of(spec.chunk_accumulator), gemm_role::chunk_accumulator),
                  [&](const auto& step) {
                      using Step = std::decay_t<decltype(step)>;
                      for (int l = 0; l < lanes; ++l) {
                          double total = 0;
                          for (std::int64_t c = 0; c < chunks; ++c) {
                              const exact_sum& s = chunk_results[std::size_t(l * chunks + c)];
                              std::uint32_t overflowed = 0, addend_swamped = 0, sum_swamped = 0;
                              if constexpr (!Step::exact) {
                                  bool o = false;
                                  const double y = round_sum(step, total, s, output(l) * std::uint64_t(chunks) + std::uint64_t(c), o);
                                  overflowed = std::uint32_t(o && chunk_masks);
                                  addend_swamped = std::uint32_t(!term_is_zero(s) && y == total);
                                  sum_swamped = std::uint32_t(total != 0 && term_equals(y, s));
                                  total = y;
                              }
                              chunk_flags[c * L + l] = step_flags(0, 0, overflowed, addend_swamped, sum_swamped);
                          }
                      }
                  });
    }
};

// ---- the contraction ----

// Eight doubles in a GCC vector-extension register (one AVX-512 register, two AVX2 ones, four SSE2
// ones: the same arithmetic at every level).
typedef double double8 __attribute__((vector_size(64)));

// Rows of C whose factors are contracted together: B's and dB's rows of the block are read once
// for all of them.
constexpr int contracted_rows = 8;

// The sums of the lanes of eight vectors: s[q] = ((p[q][0] + p[q][1]) + (p[q][2] + p[q][3])) +
// ((p[q][4] + p[q][5]) + (p[q][6] + p[q][7])), by three levels of shuffles and additions.
// (Written out rather than returned: a 64-byte vector return changes the ABI below AVX-512, which
// GCC warns of.)
[[gnu::always_inline]] inline void lane_sums(const double8 (&p)[8], double (&s)[8]) {
    // level 1: t[h][2m + e] = p[2h + e][2m] + p[2h + e][2m + 1] (e = 0, 1)
    double8 t[4];
    for (int h = 0; h < 4; ++h)
        t[h] = __builtin_shufflevector(p[2 * h], p[2 * h + 1], 0, 8, 2, 10, 4, 12, 6, 14) +
               __builtin_shufflevector(p[2 * h], p[2 * h + 1], 1, 9, 3, 11, 5, 13, 7, 15);
    // level 2: u[h][4m + e] = the pair sums (0 + 1) + (2 + 3) (m = 0) and (4 + 5) + (6 + 7) (m = 1) of p[4h + e]
    double8 u[2];
    for (int h = 0; h < 2; ++h)
        u[h] = __builtin_shufflevector(t[2 * h], t[2 * h + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
               __builtin_shufflevector(t[2 * h], t[2 * h + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    // level 3: s[q] = the two halves of p[q]'s sum
    const double8 sums = __builtin_shufflevector(u[0], u[1], 0, 1, 2, 3, 8, 9, 10, 11) +
                         __builtin_shufflevector(u[0], u[1], 4, 5, 6, 7, 12, 13, 14, 15);
    std::memcpy(s, &sums, sizeof s);
}

// For rows r < R (<= contracted_rows) of one block: da[r][k] += sum_l dc[r][l] g[r][k][l] b[k][l]
// and db[k][l] += sum_r dc[r][l] g[r][k][l] a[r][k] (r ascending), in double: every product there
// is exact (dc or 0, times a float), so a fused multiply-add gives the same sums, at every
// instruction-set level. A masked product passes nothing, even of a NaN. The sum over lanes goes
// as eight partial sums (lane l into l mod 8), then pairs (lane_sums, eight k at a time).
inline void contract(int R, const std::uint8_t* const* g, const double (*dc)[fast_lanes], const float* const* a,
                     const float* __restrict b, std::ptrdiff_t ldb, std::int64_t K, double* const* da,
                     double* __restrict db) {
    constexpr int L = fast_lanes, V = L / 8;
    for (std::int64_t k0 = 0; k0 < K; k0 += 8) {
        const int n = int(std::min<std::int64_t>(8, K - k0));
        for (int r = 0; r < R; ++r) {
            double8 part[8] = {};
            for (int e = 0; e < n; ++e) {
                const std::int64_t k = k0 + e;
                const float* bk = b + k * ldb;
                double* dbk = db + k * L;
                const double ak = double(a[r][k]);
#if defined(__AVX512F__) && defined(__AVX512BW__)
                // (GCC keeps the vector-extension form below in memory: three times slower)
                const __m512i gk = _mm512_loadu_si512(g[r] + k * L);
                const __mmask64 m = _mm512_test_epi8_mask(gk, gk);
                const __m512d av = _mm512_set1_pd(ak);
                __m512d p = _mm512_setzero_pd();
                for (int v = 0; v < V; ++v) {
                    const __m512d w = _mm512_maskz_mov_pd(__mmask8(m >> (8 * v)), _mm512_load_pd(dc[r] + 8 * v));
                    p = _mm512_fmadd_pd(w, _mm512_cvtps_pd(_mm256_loadu_ps(bk + 8 * v)), p);
                    _mm512_storeu_pd(dbk + 8 * v, _mm512_fmadd_pd(w, av, _mm512_loadu_pd(dbk + 8 * v)));
                }
                part[e] = p;
#elif defined(__AVX2__) && defined(__FMA__)
                // (the same sums as above, in halves: lanes 8v .. 8v + 3 and 8v + 4 .. 8v + 7)
                __m256d p[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
                const __m256d av = _mm256_set1_pd(ak);
                for (int v = 0; v < 2 * V; ++v) {
                    std::int32_t bytes;
                    std::memcpy(&bytes, g[r] + k * L + 4 * v, sizeof bytes);
                    const __m256i all_ones = _mm256_sub_epi64(_mm256_setzero_si256(),
                                                              _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(bytes)));
                    const __m256d w = _mm256_and_pd(_mm256_load_pd(dc[r] + 4 * v), _mm256_castsi256_pd(all_ones));
                    p[v & 1] = _mm256_fmadd_pd(w, _mm256_cvtps_pd(_mm_loadu_ps(bk + 4 * v)), p[v & 1]);
                    _mm256_storeu_pd(dbk + 4 * v, _mm256_fmadd_pd(w, av, _mm256_loadu_pd(dbk + 4 * v)));
                }
                std::memcpy(&part[e], p, sizeof p);
#else
                // (dc where g is 1, else +0: the bits under a mask; this loop vectorizes where a
                // conversion of the bytes to double goes lane by lane)
                const std::uint8_t* __restrict gk = g[r] + k * L;
                const double* __restrict dcr = dc[r];
                alignas(64) double w[L];
                for (int l = 0; l < L; ++l)
                    w[l] = std::bit_cast<double>(std::bit_cast<std::uint64_t>(dcr[l]) & (std::uint64_t(0) - std::uint64_t(gk[l])));
                double8 wv[V], bv[V], dbv[V];
                std::memcpy(wv, w, sizeof wv);
                alignas(64) double bd[L];
                for (int l = 0; l < L; ++l) bd[l] = double(bk[l]);
                std::memcpy(bv, bd, sizeof bv);
                std::memcpy(dbv, dbk, sizeof dbv);
                for (int v = 0; v < V; ++v) {
                    part[e] += wv[v] * bv[v];
                    dbv[v] += wv[v] * ak;
                }
                std::memcpy(dbk, dbv, sizeof dbv);
#endif
            }
            double sums[8];
            lane_sums(part, sums);
            for (int e = 0; e < n; ++e) da[r][k0 + e] += sums[e];
        }
    }
}

// The rounding mode of an operation, or none (product_exact, product_range: no rounding of their own).
template <class Op>
constexpr std::optional<rounding> mode_of = std::nullopt;
template <rounding Mode, kernel_inputs In>
constexpr std::optional<rounding> mode_of<round_full<Mode, In>> = Mode;
template <rounding Mode>
constexpr std::optional<rounding> mode_of<round_flush_saturate<Mode>> = Mode;
template <class Inner>
constexpr std::optional<rounding> mode_of<odd_sum<Inner>> = mode_of<Inner>;

// Whether product and accumulator round in the same mode (or the product does not round): the
// configurations whose flags the lanes compute. Each pair of modes would be a kernel of its own to
// compile (three per pair: one per mode of gradient), for specs that mix modes: those take the
// exact path's steps.
template <class P, class A>
constexpr bool same_rounding = !mode_of<P> || mode_of<P> == mode_of<A>;

// The lanes' flag function for the spec over these operands, or nullptr (why_not says why).
inline lane_flags_fn lane_flags_for(const row_major_view& a, const row_major_view& b, const gemm_spec& spec, gradient_mode mode,
                                    std::optional<product_stage>& products, std::optional<lane_reduction>& reduction,
                                    std::string& why_not) {
    const std::int64_t K = a.cols();
    const auto grids = input_grids(spec.input_a, a.data(), a.size(), spec.input_b, b.data(), b.size(), why_not);
    if (!grids) return nullptr;
    products = product_stage::make(spec, product_grid(grids->first, grids->second), why_not);
    if (!products) return nullptr;
    reduction = lane_reduction::make(spec, K, products->grid, why_not);
    if (!reduction) return nullptr;
    const lane_flags_fn f = !reduction->chunk_same() || !reduction->chained() ? nullptr : std::visit(
        [mode](const auto& p, const auto& acc) -> lane_flags_fn {
            using P = std::decay_t<decltype(p)>;
            using A = std::decay_t<decltype(acc)>;
            if constexpr (counts_events<P, A> && same_rounding<P, A>) {
                switch (mode) {
                    case gradient_mode::overflow_only: return &lane_flags<P, A, gradient_mode::overflow_only>;
                    case gradient_mode::immediate: return &lane_flags<P, A, gradient_mode::immediate>;
                    default: return &lane_flags<P, A, gradient_mode::recursive>;
                }
            } else {
                return nullptr;
            }
        },
        products->op, reduction->accumulate());
    if (f == nullptr)
        why_not = "the chain's events are taken in fp32 lanes for sequential and fma chains with exact, range-checked "
                  "or rounded products and a flush-and-saturate accumulator that is also the chunk accumulator, "
                  "product and accumulator rounding in the same mode";
    return f;
}

template <class>
void backward_quantized(const row_major_view& a, const row_major_view& b, strided<const float> dc,
                        const gemm_spec& spec, gradient_mode mode, const backward_sink& out, gemm_report* report) {
    constexpr int L = fast_lanes;
    const std::int64_t M = a.rows(), K = a.cols(), N = b.cols();
    if (report != nullptr) *report = gemm_report{};
    const bool gradients = out.da.data != nullptr;  // (else the factors)
    if (M == 0 || N == 0 || K == 0) {
        if (gradients) {
            for (std::int64_t i = 0; i < M; ++i)
                for (std::int64_t k = 0; k < K; ++k) out.da(i, k) = 0;
            for (std::int64_t k = 0; k < K; ++k)
                for (std::int64_t j = 0; j < N; ++j) out.db(k, j) = 0;
        }
        return;
    }

    std::string why_not;
    std::optional<product_stage> products;
    std::optional<lane_reduction> reduction;
    // (ste needs no chain; the factors are all 1)
    const lane_flags_fn lanes = mode == gradient_mode::ste ? nullptr : lane_flags_for(a, b, spec, mode, products, reduction, why_not);
    if (report != nullptr) {
        report->kernel = lanes != nullptr || mode == gradient_mode::ste ? gemm_kernel::vectorized_chain : gemm_kernel::exact;
        report->reason = lanes != nullptr || mode == gradient_mode::ste ? std::string() : why_not;
    }
    const exact_datapath chunking{spec, N, K};
    const std::int64_t chunk = chunking.chunk_size(), chunks = chunking.chunk_count();
    const void* const prod_address = lanes != nullptr ? address_of(products->op) : nullptr;
    const void* const acc_address = lanes != nullptr ? address_of(reduction->accumulate()) : nullptr;

    // Blocks of 64 columns, in at most 16 groups (fewer where the partial dA would be large), fixed
    // by the shapes: each group's partial dA is summed over its blocks in order, then the groups.
    const std::int64_t blocks = (N + L - 1) / L;
    const std::int64_t partial_limit = std::max<std::int64_t>(1, (std::int64_t(1) << 25) / std::max<std::int64_t>(1, M * K));
    const std::int64_t groups = !gradients ? blocks : std::min({blocks, std::int64_t(16), partial_limit});
    const std::int64_t per_group = (blocks + groups - 1) / groups;
    std::vector<double> da_partial(gradients ? std::size_t(groups * M * K) : 0, 0.0);
    const padded_columns b_padded(b, blocks * L);
    const std::ptrdiff_t ldb = blocks * L;

    for_each_tile(groups, thread_count(spec.threads), [&](std::int64_t group) {
        std::vector<std::uint8_t> flags(std::size_t(contracted_rows * K * L)), chunk_flags(std::size_t(chunks * L));
        // (B's block copied contiguous: its rows in b_padded lie a whole row of B apart, which for
        // widths of powers of two maps them onto a few cache sets)
        std::vector<float> b_block(gradients ? std::size_t(K * L) : 0);
        std::vector<double> db_block(b_block.size());
        std::vector<float> b_cols(lanes == nullptr && mode != gradient_mode::ste ? std::size_t(K * L) : 0);
        std::vector<double> exact_products;
        std::vector<std::uint32_t> exact_events;
        std::vector<exact_sum> exact_chunks;
        const exact_flags exact{spec, N, K, chunk, exact_products, exact_events, exact_chunks};
        alignas(64) double dc_rows[contracted_rows][L];
        double* const da = gradients ? da_partial.data() + group * M * K : nullptr;
        for (std::int64_t block = group * per_group; block < std::min(blocks, (group + 1) * per_group); ++block) {
            const std::int64_t j0 = block * L;
            const int width = int(std::min<std::int64_t>(L, N - j0));
            const float* const b_panel = b_padded.data() + j0;
            for (std::int64_t k = 0; k < std::int64_t(b_cols.size()) / L; ++k)
                for (int l = 0; l < width; ++l) b_cols[std::size_t(l * K + k)] = b_panel[k * ldb + l];
            for (std::int64_t k = 0; k < std::int64_t(b_block.size()) / L; ++k)
                std::memcpy(b_block.data() + k * L, b_panel + k * ldb, L * sizeof(float));
            std::fill(db_block.begin(), db_block.end(), 0.0);
            for (std::int64_t i0 = 0; i0 < M; i0 += contracted_rows) {
                const int R = int(std::min<std::int64_t>(contracted_rows, M - i0));
                const std::uint8_t* g[contracted_rows];
                const float* a_rows[contracted_rows];
                double* da_rows[contracted_rows];
                for (int r = 0; r < R; ++r) {
                    const std::int64_t i = i0 + r;
                    std::uint8_t* const f = flags.data() + r * K * L;
                    a_rows[r] = a.data() + i * K;
                    if (lanes != nullptr)
                        lanes(a_rows[r], b_panel, ldb, K, chunk, prod_address, acc_address, f, chunk_flags.data());
                    else if (mode != gradient_mode::ste)
                        exact(a_rows[r], b_cols.data(), i, j0, width, f, chunk_flags.data());
                    factors_from_flags(mode, K, chunk, f, chunk_flags.data());
                    g[r] = f;
                    if (out.factors != nullptr)
                        for (int l = 0; l < width; ++l)
                            for (std::int64_t k = 0; k < K; ++k)
                                out.factors[std::size_t(((i * N) + j0 + l) * K + k)] = f[k * L + l];
                    if (gradients) {
                        for (int l = 0; l < L; ++l) dc_rows[r][l] = l < width ? double(dc(i, j0 + l)) : 0.0;
                        da_rows[r] = da + i * K;
                    }
                }
                if (gradients) contract(R, g, dc_rows, a_rows, b_block.data(), L, K, da_rows, db_block.data());
            }
            if (gradients)
                for (int l = 0; l < width; ++l)
                    for (std::int64_t k = 0; k < K; ++k) out.db(k, j0 + l) = float(db_block[std::size_t(k * L + l)]);
        }
    });
    if (gradients)
        for (std::int64_t k = 0; k < K; ++k)
            for (std::int64_t i = 0; i < M; ++i) {
                double sum = 0;
                for (std::int64_t g = 0; g < groups; ++g) sum += da_partial[std::size_t((g * M + i) * K + k)];
                out.da(i, k) = float(sum);
            }
}

#ifdef LOWBIT_COMPILED_LIB
extern template void backward_quantized<>(const row_major_view&, const row_major_view&, strided<const float>,
                                          const gemm_spec&, gradient_mode, const backward_sink&, gemm_report*);
#endif

}  // namespace lowbit::detail

LOWBIT_END_INTRINSICS
