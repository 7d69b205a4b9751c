// lowbit/datapath/gemm_spec.hpp: what one lane of an accelerator does, as plain data.
//
// For C = A B (A: M x K, B: K x N), each output C(i, j) is one dot product over k, computed as:
//
//   a_k = input_a(A(i, k)),  b_k = input_b(B(k, j))       (Q_W, Q_A of the paper; exact if unset)
//   p_k = product(a_k * b_k)                              (Q_prod rounds the exact product once)
//
// K is cut into chunks of `chunk` elements (the last may be shorter; chunk = 0: one chunk). Each
// chunk is reduced from 0 by the accumulation model, with Q_acc = accumulator rounding each exact
// partial sum once:
//   sequential  acc = Q_acc(acc + p_k), k ascending (the FMA chain of Blumenfeld et al.)
//   fma         acc = Q_acc(a_k * b_k + acc): one rounding of the exact a*b + acc; no Q_prod
//   pairwise    an adder tree of width 2^ceil(log2 n) over the chunk's n products: at each level
//               neighbours 2t and 2t+1 are added and rounded by Q_acc, a missing neighbour is 0
//               (a chunk of one product is that product)
//   fused       Q_acc(exact sum of the chunk's p_k): an ideal, quire-like unit
//   aligned     the running acc and the next `group` products are aligned to the largest exponent
//               E = max floor(log2 |t|) among them; each term t is cut to a multiple of
//               2^(E - window) (the `window` bits below that exponent are kept), by truncation
//               toward zero or toward minus infinity (`cut`); the cut terms are summed exactly and
//               acc = Q_acc(that sum). With window = 13 or 14 this is the FP8 tensor-core adder.
// The chunk results r_c are then accumulated in order, from 0, by the chunk accumulator:
//   total = chunk_accumulator(total + r_c)
// and C(i, j) = total rounded to float (nearest even) if it is not a float already.
//
// An unset quantizer is exact: products and sums are kept exactly (an unset accumulator makes
// every model a fused one). Integer quantizers round to an integer grid and wrap or saturate.
//
// Stochastic rounding draws its random bits from Philox (random_bits_at) with the key
// gemm_random_key(quantizer seed, role) and an index that names the rounding, so results do not
// depend on threads, and quantizers that share a seed still draw independent bits:
//   input_a: i*K + k          input_b: k*N + j
//   product, and accumulator of sequential/fma: (i*N + j)*K + k  (the step that adds product k)
//   accumulator of aligned: (i*N + j)*K + k_last  (k_last: the group's last product)
//   accumulator of pairwise: (i*N + j)*2K + 2*chunk_start + h, h the node's heap number in its
//     chunk's tree (root 1, children of h: 2h and 2h+1; leaves are not rounded)
//   accumulator of fused: (i*N + j)*K + chunk_start
//   chunk accumulator: (i*N + j)*chunks + c
#pragma once

#include <lowbit/datapath/quantizer.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace lowbit {

// Which rounding of the datapath a random stream belongs to.
enum class gemm_role : std::uint8_t { input_a, input_b, product, accumulator, chunk_accumulator };

// The Philox key of a role's stream: the quantizer's seed mixed with the role.
constexpr std::uint64_t gemm_random_key(std::uint64_t seed, gemm_role role) {
    return seed ^ (0x9E3779B97F4A7C15ull * (std::uint64_t(role) + 1));
}

enum class accumulation : std::uint8_t { sequential, fma, pairwise, fused, aligned };
enum class alignment_cut : std::uint8_t { toward_zero, toward_negative };

constexpr const char* to_string(accumulation a) {
    switch (a) {
        case accumulation::sequential: return "sequential";
        case accumulation::fma: return "fma";
        case accumulation::pairwise: return "pairwise";
        case accumulation::fused: return "fused";
        case accumulation::aligned: return "aligned";
    }
    return "?";
}

struct gemm_spec {
    quantizer input_a{};            // Q_W: each element of A
    quantizer input_b{};            // Q_A: each element of B
    quantizer product{};            // Q_prod
    quantizer accumulator{};        // Q_acc
    accumulation model = accumulation::sequential;
    int chunk = 0;                  // elements of K per chunk; 0: one chunk
    quantizer chunk_accumulator{};  // accumulates the chunk results
    int window = 14;                // aligned: bits kept below the largest exponent
    int group = 32;                 // aligned: products aligned together with the accumulator
    alignment_cut cut = alignment_cut::toward_zero;
    int threads = 1;                // OpenMP threads; 0: OpenMP's default. Results do not depend on it.
    bool record_lost = false;       // gemm_stats::lost: which products' contributions were lost

    // Throws std::invalid_argument naming the field when the spec cannot be run.
    void validate() const {
        const auto check = [](const quantizer& q, const char* field) {
            try {
                q.validate();
            } catch (const std::invalid_argument& e) {
                throw std::invalid_argument(std::string("lowbit::gemm_spec: ") + field + ": " + e.what());
            }
        };
        check(input_a, "input_a");
        check(input_b, "input_b");
        check(product, "product");
        check(accumulator, "accumulator");
        check(chunk_accumulator, "chunk_accumulator");
        const auto fail = [](const char* field, int value, const char* why) {
            throw std::invalid_argument(std::string("lowbit::gemm_spec: ") + field + " = " + std::to_string(value) +
                                        " " + why);
        };
        if (chunk < 0) fail("chunk", chunk, "must be >= 0 (0: one chunk)");
        if (window < 1) fail("window", window, "must be >= 1");
        if (window > 1000) fail("window", window, "must be <= 1000");
        if (group < 1) fail("group", group, "must be >= 1");
        if (threads < 0) fail("threads", threads, "must be >= 0 (0: OpenMP's default)");
        if (int(model) > int(accumulation::aligned)) fail("model", int(model), "is not a lowbit::accumulation");
        if (int(cut) > int(alignment_cut::toward_negative)) fail("cut", int(cut), "is not a lowbit::alignment_cut");
    }
};

}  // namespace lowbit
