// tests/datapath/gemm_backward_reference.hpp: a slow, obviously-correct reference for the factors
// of lowbit::gemm_backward (lowbit/datapath/gemm_backward.hpp), written from that header's
// definitions alone, on top of the MPFR primitives of gemm_reference.hpp (exact sums and
// products, every rounding of the datapath done by gemm_ref::quantize).
//
// For each output (i, j) the chain is unrolled naively: the quantized inputs, the products
// p_k, the steps s_k within each chunk and the chunk steps T_c, with every step's events, and
// then the factor g of each product by mode. Only sequential and fma chains (the models the
// masking modes are defined for).
//
// Conventions (where the header leaves room; the test file repeats them):
//  * "overflow" (product and step) is what gemm_ref::quantize reports: the rounding without an
//    upper limit lands beyond the format's largest finite value (an integer: the rounded integer
//    leaves the range). The header's wording for steps ("the step's exact sum was beyond") would
//    also call a sum in (max, max + ulp) overflowed when it rounds down to max; the reference
//    counts those sums (overflow_definitions_differ) so that a test can show they occurred.
//  * A wrapping integer quantizer's overflow is no step overflow (it "masks nothing").
//  * overflow_only zeroes product k on its own product overflow or on the overflow of the step
//    that adds it, not on the overflow of its chunk's step (as immediate looks at its own step).
//  * Modes are indexed 0..3 in lowbit::gradient_mode's order: ste, overflow_only, immediate,
//    recursive.
#pragma once

#include "datapath/gemm_reference.hpp"

#include <lowbit/datapath/gemm_spec.hpp>

#include <Eigen/Core>
#include <mpfr.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit_test::backward_ref {

// Events of a product and the step that adds it (bits of result::events).
enum product_event : std::uint8_t {
    product_overflow = 1,
    product_flush = 2,
    step_overflow = 4,
    addend_swamped = 8,
    sum_swamped = 16,
};
// Events of a chunk step (bits of result::chunk_events).
enum chunk_event : std::uint8_t {
    chunk_step_overflow = 1,
    chunk_addend_swamped = 2,
    chunk_sum_swamped = 4,
};

struct event_counts {
    std::uint64_t product_overflow = 0, product_flush = 0, step_overflow = 0, addend_swamped = 0, sum_swamped = 0;
    std::uint64_t chunk_step_overflow = 0, chunk_addend_swamped = 0, chunk_sum_swamped = 0;
    // Steps (either kind) whose exact sum was beyond the largest finite value of a float
    // accumulator while its rounding was not (see the top).
    std::uint64_t overflow_definitions_differ = 0;
    // Steps of a wrapping integer accumulator that wrapped.
    std::uint64_t wraps = 0;

    event_counts& operator+=(const event_counts& o) {
        product_overflow += o.product_overflow;
        product_flush += o.product_flush;
        step_overflow += o.step_overflow;
        addend_swamped += o.addend_swamped;
        sum_swamped += o.sum_swamped;
        chunk_step_overflow += o.chunk_step_overflow;
        chunk_addend_swamped += o.chunk_addend_swamped;
        chunk_sum_swamped += o.chunk_sum_swamped;
        overflow_definitions_differ += o.overflow_definitions_differ;
        wraps += o.wraps;
        return *this;
    }
};

struct result {
    std::uint64_t M = 0, N = 0, K = 0, chunk = 1, chunks = 0;
    std::vector<double> a, b;                           // quantized inputs, row-major M x K and K x N
    std::array<std::vector<std::uint8_t>, 4> factors;   // by mode index, (i*N + j)*K + k
    std::vector<std::uint8_t> events;                   // product_event bits, (i*N + j)*K + k
    std::vector<std::uint8_t> chunk_events;             // chunk_event bits, (i*N + j)*chunks + c
    std::vector<double> x, p, s;                        // per product: exact product, p_k, s_k
    std::vector<double> S, T;                           // per chunk: its result S_c, T_c
    event_counts counts;
    bool nonfinite = false;  // some value of the computation was +-inf or NaN
};

inline double to_double(const gemm_ref::real& v) { return mpfr_get_d(v.get(), MPFR_RNDN); }

inline bool wraps(const lowbit::quantizer& q) {
    const auto* i = q.as_int();
    return i != nullptr && i->on_overflow == lowbit::int_overflow::wrap;
}

// One step acc' = Q(acc + addend), with its events.
struct step_outcome {
    gemm_ref::real r;
    bool overflow = false, addend_swamped = false, sum_swamped = false, differ = false, wrapped = false;
};

inline step_outcome step(const lowbit::quantizer& q, lowbit::gemm_role role, std::uint64_t index,
                         const gemm_ref::real& acc, const gemm_ref::real& addend, const gemm_ref::real* max_finite) {
    using namespace gemm_ref;
    step_outcome o;
    const real sum = add(acc, addend);
    bool overflowed = false;
    o.r = quantize(q, sum, role, index, overflowed);
    o.overflow = overflowed && !wraps(q);
    o.wrapped = overflowed && wraps(q);
    o.addend_swamped = !addend.is_zero() && equal(o.r, acc);
    o.sum_swamped = !acc.is_zero() && equal(o.r, addend);
    o.differ = max_finite != nullptr && !overflowed && greater(abs(sum), *max_finite);
    return o;
}

// The factors of every product of A B under spec (model sequential or fma), all four modes.
inline result reference_factors(const Eigen::MatrixXf& A, const Eigen::MatrixXf& B, const lowbit::gemm_spec& spec) {
    using namespace gemm_ref;
    using lowbit::gemm_role;
    if (spec.model != lowbit::accumulation::sequential && spec.model != lowbit::accumulation::fma)
        throw std::invalid_argument("reference_factors: chains only (sequential, fma)");
    if (A.cols() != B.rows()) throw std::invalid_argument("reference_factors: shapes");
    result R;
    const std::uint64_t M = std::uint64_t(A.rows()), K = std::uint64_t(A.cols()), N = std::uint64_t(B.cols());
    const std::uint64_t chunk = spec.chunk == 0 ? std::max<std::uint64_t>(K, 1) : std::uint64_t(spec.chunk);
    const std::uint64_t chunks = (K + chunk - 1) / chunk;
    R.M = M, R.N = N, R.K = K, R.chunk = chunk, R.chunks = chunks;
    const bool fma = spec.model == lowbit::accumulation::fma;

    // Inputs: A(i, k) with index i*K + k, B(k, j) with index k*N + j (gemm_spec.hpp).
    std::vector<real> a(M * K), b(K * N);
    bool ignored = false;
    for (std::uint64_t i = 0; i < M; ++i)
        for (std::uint64_t k = 0; k < K; ++k)
            a[i * K + k] = quantize(spec.input_a, real(double(A(Eigen::Index(i), Eigen::Index(k)))),
                                    gemm_role::input_a, i * K + k, ignored);
    for (std::uint64_t k = 0; k < K; ++k)
        for (std::uint64_t j = 0; j < N; ++j)
            b[k * N + j] = quantize(spec.input_b, real(double(B(Eigen::Index(k), Eigen::Index(j)))),
                                    gemm_role::input_b, k * N + j, ignored);
    const auto note = [&](const real& v) {
        if (v.is_nan() || v.is_inf()) R.nonfinite = true;
    };
    R.a.resize(M * K);
    R.b.resize(K * N);
    for (std::uint64_t e = 0; e < M * K; ++e) note(a[e]), R.a[e] = to_double(a[e]);
    for (std::uint64_t e = 0; e < K * N; ++e) note(b[e]), R.b[e] = to_double(b[e]);

    // The largest finite values of float accumulators (for overflow_definitions_differ).
    const auto max_of = [](const lowbit::quantizer& q, real& m) -> const real* {
        if (const auto* f = q.as_float()) {
            m = constants_of(f->format).max_finite;
            return &m;
        }
        return nullptr;
    };
    real acc_max, chunk_max;
    const real* acc_max_p = max_of(spec.accumulator, acc_max);
    const real* chunk_max_p = max_of(spec.chunk_accumulator, chunk_max);

    const std::uint64_t P = M * N * K;
    for (auto& f : R.factors) f.assign(P, 1);
    R.events.assign(P, 0);
    R.chunk_events.assign(M * N * chunks, 0);
    R.x.assign(P, 0.0);
    R.p.assign(P, 0.0);
    R.s.assign(P, 0.0);
    R.S.assign(M * N * chunks, 0.0);
    R.T.assign(M * N * chunks, 0.0);

    std::vector<std::uint8_t> dpdx(K), dsdp(K), dsds(K), dTdS(chunks), dTdT(chunks);
    for (std::uint64_t i = 0; i < M; ++i) {
        for (std::uint64_t j = 0; j < N; ++j) {
            const std::uint64_t out = i * N + j;
            std::uint8_t* ev = R.events.data() + out * K;
            std::uint8_t* cev = R.chunk_events.data() + out * chunks;
            // Products.
            std::vector<real> p(K);
            for (std::uint64_t k = 0; k < K; ++k) {
                const real x = mul(a[i * K + k], b[k * N + j]);
                note(x);
                R.x[out * K + k] = to_double(x);
                bool overflowed = false;
                if (fma) {
                    p[k] = x;  // no Q_prod: the step rounds x_k + s_{k-1} once
                } else {
                    p[k] = quantize(spec.product, x, gemm_role::product, out * K + k, overflowed);
                    note(p[k]);
                }
                const bool flushed = !x.is_zero() && p[k].is_zero();
                if (overflowed) ev[k] |= product_overflow, ++R.counts.product_overflow;
                if (flushed) ev[k] |= product_flush, ++R.counts.product_flush;
                dpdx[k] = !(overflowed || flushed);
                R.p[out * K + k] = to_double(p[k]);
            }
            // Chunks: steps s_k, then the chunk step T_c.
            real T(0.0);
            for (std::uint64_t c = 0; c < chunks; ++c) {
                const std::uint64_t start = c * chunk, end = std::min(K, start + chunk);
                real s(0.0);
                for (std::uint64_t k = start; k < end; ++k) {
                    const step_outcome o =
                        step(spec.accumulator, gemm_role::accumulator, out * K + k, s, p[k], acc_max_p);
                    note(o.r);
                    if (o.overflow) ev[k] |= step_overflow, ++R.counts.step_overflow;
                    if (o.addend_swamped) ev[k] |= addend_swamped, ++R.counts.addend_swamped;
                    if (o.sum_swamped) ev[k] |= sum_swamped, ++R.counts.sum_swamped;
                    R.counts.overflow_definitions_differ += o.differ;
                    R.counts.wraps += o.wrapped;
                    const bool flushed = (ev[k] & product_flush) != 0;
                    dsdp[k] = !(flushed || o.addend_swamped || o.overflow);
                    dsds[k] = !(o.sum_swamped || o.overflow);
                    s = o.r;
                    R.s[out * K + k] = to_double(s);
                }
                const step_outcome o = step(spec.chunk_accumulator, gemm_role::chunk_accumulator, out * chunks + c,
                                            T, s, chunk_max_p);
                note(o.r);
                if (o.overflow) cev[c] |= chunk_step_overflow, ++R.counts.chunk_step_overflow;
                if (o.addend_swamped) cev[c] |= chunk_addend_swamped, ++R.counts.chunk_addend_swamped;
                if (o.sum_swamped) cev[c] |= chunk_sum_swamped, ++R.counts.chunk_sum_swamped;
                R.counts.overflow_definitions_differ += o.differ;
                R.counts.wraps += o.wrapped;
                dTdS[c] = !(o.addend_swamped || o.overflow);
                dTdT[c] = !(o.sum_swamped || o.overflow);
                R.S[out * chunks + c] = to_double(s);
                T = o.r;
                R.T[out * chunks + c] = to_double(T);
            }
            // Factors by mode: ste 1 (already); overflow_only; immediate; recursive (reverse scan).
            std::uint8_t* f_over = R.factors[1].data() + out * K;
            std::uint8_t* f_imm = R.factors[2].data() + out * K;
            std::uint8_t* f_rec = R.factors[3].data() + out * K;
            for (std::uint64_t k = 0; k < K; ++k) {
                f_over[k] = (ev[k] & (product_overflow | step_overflow)) == 0;
                f_imm[k] = std::uint8_t(dpdx[k] & dsdp[k]);
            }
            std::uint8_t later_chunks = 1;  // product of dT_d/dT_{d-1} over chunks d > c
            for (std::uint64_t c = chunks; c-- > 0;) {
                const std::uint64_t start = c * chunk, end = std::min(K, start + chunk);
                const std::uint8_t chunk_factor = std::uint8_t(later_chunks & dTdS[c]);
                std::uint8_t later_steps = 1;  // product of ds_l/ds_{l-1} over steps l > k of chunk c
                for (std::uint64_t k = end; k-- > start;) {
                    f_rec[k] = std::uint8_t(f_imm[k] & later_steps & chunk_factor);
                    later_steps &= dsds[k];
                }
                later_chunks &= dTdT[c];
            }
        }
    }
    return R;
}

}  // namespace lowbit_test::backward_ref
