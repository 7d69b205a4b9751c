// lowbit/analysis/a2q.hpp: how many bits a signed integer accumulator needs so that an integer dot
// product sum_i w_i x_i can never overflow it (A2Q, Colbert et al., ICCV 2023; papers.md, end).
//
// Inputs x_i are N-bit integers: signed [-2^(N-1), 2^(N-1) - 1] or unsigned [0, 2^N - 1]. The
// accumulator is a P-bit two's complement integer, [-2^(P-1), 2^(P-1) - 1]. "Cannot overflow"
// here means the symmetric condition
//
//     max over all inputs of |sum_i w_i x_i|  <=  2^(P-1) - 1,
//
// the one A2Q's bound is stated against (it is 1 conservative at the negative end, where -2^(P-1)
// would also fit). Bounding the whole sum bounds every partial sum in every order too: a partial
// sum is the whole sum with the other inputs set to 0, which is a valid input.
//
// The exact maximum, with p = sum of the positive weights and n = sum of |negative weights|
// (||w||_1 = p + n):
//   signed x:   max(p (2^(N-1) - 1) + n 2^(N-1),  p 2^(N-1) + n (2^(N-1) - 1))
//                 = 2^(N-1) ||w||_1 - min(p, n)     (the extra negative code -2^(N-1) pairs with
//                                                    one sign of weight at a time)
//   unsigned x: (2^N - 1) max(p, n)                 (inputs never change sign)
//
// A2Q's bound ||w||_1 <= (2^(P-1) - 1) 2^(signed(x) - N) replaces that maximum by the upper bound
// ||w||_1 max|x| rounded up to a power of two: ||w||_1 2^(N-1) (signed x, exact max|x|) or
// ||w||_1 2^N (unsigned x, max|x| = 2^N - 1 rounded up, and p + n in place of max(p, n)). It is
// sufficient, not necessary: a2q_min_accumulator_bits <= a2q_paper_accumulator_bits always, with
// equality e.g. for one-signed weights and signed inputs; for unsigned inputs the exact count can
// be several bits smaller (w = (1, -1), N = 2: 3 bits instead of 5). A2Q trains weights so that
// the paper's bound holds for a chosen P; the exact count is what a given trained layer needs.
//
// Sizes are computed exactly in 128-bit integers (no floating log2), so P is at most 129; a
// maximum that does not fit in 128 bits throws std::overflow_error. Arguments outside their ranges throw
// std::invalid_argument naming them.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>

namespace lowbit {

namespace detail {

// GCC and clang's 128-bit integer; __extension__ keeps -Wpedantic quiet about it.
__extension__ typedef unsigned __int128 a2q_uint128;

inline int bit_width_128(a2q_uint128 v) {
    const auto high = std::uint64_t(v >> 64);
    return high != 0 ? 64 + std::bit_width(high) : std::bit_width(std::uint64_t(v));
}

// The smallest P >= 1 with m <= 2^(P-1) - 1, i.e. m < 2^(P-1): one bit more than m's bit width.
inline int accumulator_bits_for(a2q_uint128 m) { return bit_width_128(m) + 1; }

// Bits in [1, 64] (unsigned) or [2, 64] (signed), as int_format without its double-exactness cap.
inline void check_integer_bits(int bits, bool is_signed, const char* function, const char* name) {
    const int lowest = is_signed ? 2 : 1;
    if (bits < lowest || bits > 64)
        throw std::invalid_argument(std::string("lowbit::") + function + ": " + name + " = " + std::to_string(bits) +
                                    " must be in [" + std::to_string(lowest) + ", 64] for " +
                                    (is_signed ? "signed" : "unsigned") + " values");
}

// The largest magnitude of a bits-bit integer: 2^(bits-1) (signed, its most negative value) or
// 2^bits - 1 (unsigned).
inline std::uint64_t integer_max_magnitude(int bits, bool is_signed) {
    if (is_signed) return std::uint64_t(1) << (bits - 1);
    return bits == 64 ? std::numeric_limits<std::uint64_t>::max() : (std::uint64_t(1) << bits) - 1;
}

inline std::uint64_t magnitude(std::int64_t w) {
    return w < 0 ? std::uint64_t(-(w + 1)) + 1 : std::uint64_t(w);  // -(w + 1): no overflow at INT64_MIN
}

struct weight_sums {
    a2q_uint128 positive = 0;  // sum of the positive weights
    a2q_uint128 negative = 0;  // sum of |negative weights|
};

inline weight_sums sum_weights(std::span<const std::int64_t> weights, const char* function) {
    if (weights.empty()) throw std::invalid_argument(std::string("lowbit::") + function + ": weights is empty");
    // Each term is below 2^64 and a span holds fewer than 2^63 elements: no overflow in 128 bits.
    weight_sums sums;
    for (const std::int64_t w : weights) (w < 0 ? sums.negative : sums.positive) += magnitude(w);
    return sums;
}

// a * b, or std::overflow_error when it does not fit in 128 bits (no dot product of real hardware
// comes near; the check keeps the answer exact or absent).
inline a2q_uint128 checked_product(a2q_uint128 a, a2q_uint128 b, const char* function) {
    if (a != 0 && b > ~a2q_uint128(0) / a)
        throw std::overflow_error(std::string("lowbit::") + function +
                                  ": the largest dot product does not fit in 128 bits");
    return a * b;
}

inline a2q_uint128 power_of_two(int k) { return a2q_uint128(1) << k; }  // k in [0, 127]

}  // namespace detail

// The smallest P such that a P-bit signed accumulator holds sum_i weights[i] x_i for every vector
// of input_bits-bit inputs (signed or not) and every partial sum on the way, under the symmetric
// condition of the header comment. All-zero weights give 1.
inline int a2q_min_accumulator_bits(std::span<const std::int64_t> weights, int input_bits, bool input_signed) {
    constexpr const char* function = "a2q_min_accumulator_bits";
    detail::check_integer_bits(input_bits, input_signed, function, "input_bits");
    const detail::weight_sums sums = detail::sum_weights(weights, function);
    const detail::a2q_uint128 l1 = sums.positive + sums.negative;
    const detail::a2q_uint128 larger = sums.positive > sums.negative ? sums.positive : sums.negative;
    if (input_signed) {
        const detail::a2q_uint128 smaller = l1 - larger;
        return detail::accumulator_bits_for(
            detail::checked_product(l1, detail::power_of_two(input_bits - 1), function) - smaller);
    }
    return detail::accumulator_bits_for(
        detail::checked_product(larger, detail::integer_max_magnitude(input_bits, false), function));
}

// A2Q's sufficient condition as papers.md states it: the smallest P with
// ||weights||_1 <= (2^(P-1) - 1) 2^(signed(x) - N), i.e. ||weights||_1 2^(N - signed(x)) <= 2^(P-1) - 1.
// Never below a2q_min_accumulator_bits; all-zero weights give 1.
inline int a2q_paper_accumulator_bits(std::span<const std::int64_t> weights, int input_bits, bool input_signed) {
    constexpr const char* function = "a2q_paper_accumulator_bits";
    detail::check_integer_bits(input_bits, input_signed, function, "input_bits");
    const detail::weight_sums sums = detail::sum_weights(weights, function);
    const detail::a2q_uint128 l1 = sums.positive + sums.negative;
    const int shift = input_signed ? input_bits - 1 : input_bits;
    return detail::accumulator_bits_for(detail::checked_product(l1, detail::power_of_two(shift), function));
}

// The classic bound from the data types alone, for a dot product of length K: the smallest P with
// K max|w| max|x| <= 2^(P-1) - 1 (max|w| = 2^(b-1) for signed b-bit weights, 2^b - 1 unsigned;
// the same for x), which is the worst case over all weights and inputs of the types. That is
// floor(log2(K max|w| max|x|)) + 2 = ceil(log2(K max|w| max|x| + 1)) + 1: the often quoted
// ceil(log2(K max|w| max|x|)) + 1 is the same except when the product is a power of two, where it
// is one bit short (K = 1, signed 4-bit x signed 4-bit: (-8)(-8) = 64 does not fit 7 bits). The
// product is a power of two when K is and both types are signed (or 1-bit unsigned).
// Equals a2q_min_accumulator_bits of the worst weights (all -2^(b-1) if signed, all 2^b - 1 if not).
inline int data_type_bound_bits(std::size_t K, int weight_bits, bool weight_signed, int input_bits,
                                bool input_signed) {
    constexpr const char* function = "data_type_bound_bits";
    if (K == 0) throw std::invalid_argument("lowbit::data_type_bound_bits: K = 0 must be at least 1");
    detail::check_integer_bits(weight_bits, weight_signed, function, "weight_bits");
    detail::check_integer_bits(input_bits, input_signed, function, "input_bits");
    const std::uint64_t w = detail::integer_max_magnitude(weight_bits, weight_signed);
    const std::uint64_t x = detail::integer_max_magnitude(input_bits, input_signed);
    return detail::accumulator_bits_for(
        detail::checked_product(detail::checked_product(std::uint64_t(K), w, function), x, function));
}

}  // namespace lowbit
