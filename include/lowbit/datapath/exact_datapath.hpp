// lowbit/datapath/exact_datapath.hpp: one output of a simulated GEMM, for every specification.
//
// This path follows gemm_spec.hpp's definitions literally, in double with exact sums where a
// definition needs them, so it serves every quantizer, model and event counter. Its loops are
// instantiated per rounding step type (rounding_steps.hpp): no branch on the configuration
// inside them. The vectorized path (fast_datapath.hpp) takes over where it is proven equal.
//
// The reduction (chunks, accumulation model, chunk accumulator) works on any array of exact
// terms: doubles (products, converted LNS products, block dot products that fit a double), or
// exact_sums where a term does not fit a double (a block dot product of wide elements, see
// block_scaled_gemm.hpp). The term_* overloads below are all that it asks of a term.
#pragma once

#include <lowbit/datapath/exact_sum.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/datapath/rounding_steps.hpp>

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <span>
#include <type_traits>
#include <vector>

namespace lowbit::detail {

// ---- what the reduction asks of a term (a double or an exact_sum) ----

inline exact_sum exact_of(double t) { return exact_sum(t); }
inline const exact_sum& exact_of(const exact_sum& t) { return t; }
inline bool term_is_zero(double t) { return t == 0; }
inline bool term_is_zero(const exact_sum& t) { return t.is_zero(); }
inline bool term_is_finite(double t) { return std::isfinite(t); }
inline bool term_is_finite(const exact_sum& t) { return !t.is_special(); }
// floor(log2 |t|) of a finite non-zero term. Rounding to odd truncates, so it keeps the binade
// (terms stay far below 2^1024, where it would clamp).
inline int term_exponent(double t) { return std::ilogb(t); }
inline int term_exponent(const exact_sum& t) { return std::ilogb(t.to_double_round_odd()); }
// Whether the double r equals the term numerically (+0 == -0; NaN equals nothing).
inline bool term_equals(double r, double t) { return r == t; }
inline bool term_equals(double r, const exact_sum& t) {
    if (t.is_special()) return r == t.to_double_round_odd();
    exact_sum d(t);
    d.add(-r);
    return d.is_zero();
}

// x + y rounded once by `step` (a non-exact step of rounding_steps.hpp).
template <class Step, class X, class Y>
double round_sum(const Step& step, const X& x, const Y& y, std::uint64_t index, bool& overflowed) {
    if constexpr (std::is_same_v<X, double> && std::is_same_v<Y, double>) {
        return step.round_pair(x, y, index, overflowed);
    } else {
        exact_sum s(exact_of(x));
        s.add(y);
        return step.round_exact(s, index, overflowed);
    }
}

// Where the events of one output go; `lost` (or nullptr) points at the output's K flags.
template <bool Count>
struct event_sink {
    gemm_stats* stats = nullptr;
    std::uint8_t* lost = nullptr;

    void mark_lost(std::int64_t k) const {
        if constexpr (Count)
            if (lost != nullptr) lost[k] = 1;
    }
    // An accumulator rounding of the exact sum x + y of two doubles into r. When their double sum
    // is finite, TwoSum gives its exact error, so x + y = s + error: r is exact iff the error is
    // 0 and r equals s (no 2240-bit sums needed on this, the sequential chain's, hot path).
    void addition(double x, double y, double r, bool overflowed) const {
        if constexpr (Count) {
            const double s = x + y;
            if (std::isfinite(s)) {
                const double y_part = s - x, x_part = s - y_part;
                const double error = (x - x_part) + (y - y_part);
                stats->accumulator_overflows += overflowed;
                stats->inexact_additions += !(error == 0 && r == s);
                return;
            }
            exact_sum e(x);
            e.add(y);
            rounding(e, r, overflowed);
        }
    }
    // The same for exact terms.
    template <class X, class Y>
    void addition(const X& x, const Y& y, double r, bool overflowed) const {
        if constexpr (Count) {
            exact_sum s(exact_of(x));
            s.add(y);
            rounding(s, r, overflowed);
        }
    }
    // An accumulator rounding of `exact` into r. A value that is already infinite or NaN and
    // stays so is neither an overflow (counted only from finite values) nor inexact.
    void rounding(const exact_sum& exact, double r, bool overflowed) const {
        if constexpr (Count) {
            stats->accumulator_overflows += overflowed;
            if (exact.is_special()) {
                const double e = exact.to_double_round_odd();
                stats->inexact_additions += !((std::isnan(e) && std::isnan(r)) || e == r);
                return;
            }
            exact_sum s(exact);
            s.add(-r);
            stats->inexact_additions += !s.is_zero();
        }
    }
};

// p[k] = product(a[k] * b[k]) for k < K, the exact product when `Step` is exact.
template <class Step, bool Count>
void exact_products(const float* a, const float* b, std::int64_t K, std::uint64_t first_index,
                    const Step& step, double* p, const event_sink<Count>& sink) {
    for (std::int64_t k = 0; k < K; ++k) {
        const double x = double(a[k]) * double(b[k]);  // exact: two 24-bit significands
        if constexpr (Count) sink.stats->zero_operand += (a[k] == 0 || b[k] == 0);
        if constexpr (Step::exact) {
            p[k] = x;
        } else {
            bool overflowed = false;
            p[k] = step.round_value(x, first_index + std::uint64_t(k), overflowed);
            if constexpr (Count) {
                sink.stats->product_overflows += overflowed;
                if (x != 0 && p[k] == 0) {
                    ++sink.stats->product_underflows;
                    sink.mark_lost(k);
                }
            }
        }
    }
}

// How the aligned model reads exponents (gemm_spec.hpp: align, subnormal_exponent,
// zero_exponent). The defaults read every value's own exponent and leave zeros out.
struct exponent_reading {
    const int* term_exponents = nullptr;  // align = operands: e(a_k) + e(b_k) for each k
    int accumulator_min = INT_MIN;        // subnormal_exponent = min_normal: the accumulator's emin
                                          // (the addend a chain starts from is read as its value)
    std::optional<int> zero;              // zero_exponent

    // floor(log2 |x|) of a finite non-zero value, read no lower than `min`.
    static int of_value(double x, int min) { return std::max(std::ilogb(x), min); }
};

// The chunk reductions of gemm_spec.hpp for one output: p holds the output's K terms (doubles
// or exact_sums). `initial` is the value a chunk's running accumulator starts from (the addend
// for the first chunk of a chain, else 0).
template <class Step, bool Count>
struct chunk_reducer {
    const Step& step;
    const gemm_spec& spec;
    std::uint64_t output;  // i*N + j
    std::int64_t K;
    event_sink<Count> sink;
    std::vector<double>& tree;  // scratch for the pairwise model
    exponent_reading exponents{};

    template <class Term>
    exact_sum reduce(const Term* p, std::int64_t start, std::int64_t n, double initial = 0) const {
        if constexpr (Step::exact) {  // an exact accumulator makes every model a fused one
            exact_sum s(initial);
            for (std::int64_t t = 0; t < n; ++t) s.add(p[start + t]);
            return s;
        } else {
            // A pairwise chunk of one term is that term, unrounded (it need not be a double).
            if (spec.model == accumulation::pairwise && n == 1) return exact_sum(exact_of(p[start]));
            return exact_sum(rounded(p, start, n, initial));
        }
    }

    // The chunk's result when the step rounds: a double (for exact_sum terms, reduce() keeps a
    // pairwise chunk of one term).
    template <class Term>
    double rounded(const Term* p, std::int64_t start, std::int64_t n, double initial = 0) const {
        switch (spec.model) {
            case accumulation::sequential:
            case accumulation::fma: return sequential(p, start, n, initial);  // fma: p exact
            case accumulation::pairwise: return pairwise(p, start, n);
            case accumulation::fused: return fused(p, start, n);
            case accumulation::aligned: return aligned(p, start, n, initial);
            case accumulation::two_level:
                if constexpr (std::is_same_v<Term, double>) return two_level(p, start, n, initial);
                else throw std::invalid_argument("lowbit: model = two_level needs products of operands (gemm)");
        }
        return 0;
    }

    template <class Term>
    double sequential(const Term* p, std::int64_t start, std::int64_t n, double initial) const {
        double acc = initial;
        for (std::int64_t k = start; k < start + n; ++k) {
            bool overflowed = false;
            const double y = round_sum(step, acc, p[k], output * std::uint64_t(K) + std::uint64_t(k), overflowed);
            if constexpr (Count) {
                sink.addition(acc, p[k], y, overflowed);
                if (!term_is_zero(p[k]) && y == acc) {
                    ++sink.stats->swamps;
                    sink.mark_lost(k);
                }
            }
            acc = y;
        }
        return acc;
    }

    // A double term alone is that term; an exact one is handled by reduce(). The first level adds the terms themselves; the levels above add
    // the rounded doubles of the level below.
    template <class Term>
    double pairwise(const Term* p, std::int64_t start, std::int64_t n) const {
        if (n == 0) return 0;
        if constexpr (std::is_same_v<Term, double>)
            if (n == 1) return p[start];
        const std::int64_t width = std::int64_t(std::bit_ceil(std::uint64_t(n)));
        tree.assign(std::size_t(width / 2), 0.0);
        const std::uint64_t base = output * 2 * std::uint64_t(K) + 2 * std::uint64_t(start);
        const Term zero{};
        for (std::int64_t t = 0, nodes = width / 2; t < nodes; ++t) {  // level 1: the leaves
            const Term& x = 2 * t < n ? p[start + 2 * t] : zero;
            const Term& y = 2 * t + 1 < n ? p[start + 2 * t + 1] : zero;
            bool overflowed = false;
            const double r = round_sum(step, x, y, base + std::uint64_t(nodes + t), overflowed);
            if constexpr (Count) {
                sink.addition(x, y, r, overflowed);
                const bool y_lost = !term_is_zero(y) && term_equals(r, x);
                const bool x_lost = !term_is_zero(x) && term_equals(r, y);
                if (y_lost || x_lost) ++sink.stats->swamps;
                if (y_lost) sink.mark_lost(start + 2 * t + 1);
                if (x_lost) sink.mark_lost(start + 2 * t);
            }
            tree[std::size_t(t)] = r;
        }
        for (std::int64_t nodes = width / 4; nodes >= 1; nodes /= 2) {
            for (std::int64_t t = 0; t < nodes; ++t) {
                const double x = tree[std::size_t(2 * t)], y = tree[std::size_t(2 * t + 1)];
                bool overflowed = false;
                const double r = step.round_pair(x, y, base + std::uint64_t(nodes + t), overflowed);
                if constexpr (Count) {
                    sink.addition(x, y, r, overflowed);
                    if ((y != 0 && r == x) || (x != 0 && r == y)) ++sink.stats->swamps;
                }
                tree[std::size_t(t)] = r;
            }
        }
        return tree[0];
    }

    template <class Term>
    double fused(const Term* p, std::int64_t start, std::int64_t n) const {
        exact_sum s;
        for (std::int64_t k = start; k < start + n; ++k) s.add(p[k]);
        bool overflowed = false;
        const double r = step.round_exact(s, output * std::uint64_t(K) + std::uint64_t(start), overflowed);
        sink.rounding(s, r, overflowed);
        return r;
    }

    // t cut to a multiple of 2^q, toward zero or toward minus infinity (spec.cut unless given).
    double cut(double t, int q) const { return cut(t, q, spec.cut); }
    static double cut(double t, int q, alignment_cut how) {
        const double step_size = std::ldexp(1.0, q);
        if (std::fabs(t) < step_size)  // also keeps t * 2^-q from underflowing below
            return (how == alignment_cut::toward_negative && t < 0) ? -step_size : 0.0;
        const double units = std::ldexp(t, -q);  // exact: |units| >= 1
        return std::ldexp(how == alignment_cut::toward_zero ? std::trunc(units) : std::floor(units), q);
    }

    // The same for a finite exact term: floor(|t| / 2^q) 2^q is assembled from 32-bit pieces of
    // its digits (exact doubles), and toward minus infinity a negative t with a remainder below
    // 2^q moves one more step away from zero.
    exact_sum cut(const exact_sum& t, int q) const { return cut(t, q, spec.cut); }
    static exact_sum cut(const exact_sum& t, int q, alignment_cut how) {
        exact_sum r;
        if (t.is_zero()) return r;
        const bool negative = t.negative();
        const int top = term_exponent(t);
        for (int e = q; e <= top; e += 32) {
            const auto piece = double(t.magnitude_digits(e).whole_low64 & 0xFFFFFFFFu);
            r.add(std::ldexp(negative ? -piece : piece, e));
        }
        if (negative && how == alignment_cut::toward_negative) {
            const auto below = t.magnitude_digits(q);
            if (below.fraction_top32 != 0 || below.sticky) r.add(-std::ldexp(1.0, q));
        }
        return r;
    }

    template <class Term>
    int aligned_exponent(const Term* p, std::int64_t k) const {
        return exponents.term_exponents != nullptr ? exponents.term_exponents[k] : term_exponent(p[k]);
    }

    template <class Term>
    double aligned(const Term* p, std::int64_t start, std::int64_t n, double initial) const {
        double acc = initial;
        for (std::int64_t g0 = start; g0 < start + n; g0 += spec.group) {
            const std::int64_t g1 = std::min<std::int64_t>(g0 + spec.group, start + n);
            int top = INT_MIN;  // largest exponent among the accumulator and the group
            bool zeros = acc == 0;
            if (acc != 0 && std::isfinite(acc)) top = exponent_reading::of_value(acc, exponents.accumulator_min);
            for (std::int64_t k = g0; k < g1; ++k) {
                if (term_is_zero(p[k])) zeros = true;
                else if (term_is_finite(p[k])) top = std::max(top, aligned_exponent(p, k));
            }
            // Zeros take part in the largest exponent where a unit counts them; the group is then
            // a fixed-point sum even when every term is zero, and its zero is +0.
            if (zeros && exponents.zero) top = std::max(top, *exponents.zero);
            exact_sum s;
            if (top != INT_MIN) {
                const int q = top - spec.window;
                s.add(std::isfinite(acc) ? cut(acc, q) : acc);
                for (std::int64_t k = g0; k < g1; ++k) {
                    if (!term_is_finite(p[k])) {
                        s.add(p[k]);
                        continue;
                    }
                    const auto c = cut(p[k], q);
                    s.add(c);
                    if constexpr (Count)
                        if (!term_is_zero(p[k]) && term_is_zero(c)) {
                            ++sink.stats->swamps;
                            sink.mark_lost(k);
                        }
                }
            } else {
                s = exact_sum(acc);  // zeros or non-finite values only: their IEEE sum
                for (std::int64_t k = g0; k < g1; ++k) s.add(p[k]);
            }
            bool overflowed = false;
            const double r = step.round_exact(s, output * std::uint64_t(K) + std::uint64_t(g1 - 1), overflowed);
            sink.rounding(s, r, overflowed);
            acc = r;
        }
        return acc;
    }

    static exact_sum floor_to(const exact_sum& t, int q) { return cut(t, q, alignment_cut::toward_negative); }

    // gemm_spec.hpp's two_level model (AMD CDNA3's fused dot) over exact products, their operand
    // exponents in exponents.term_exponents.
    double two_level(const double* p, std::int64_t start, std::int64_t n, double initial) const {
        constexpr int none = INT_MIN;
        const int window = spec.window, subs = spec.sub_dots;
        double acc = initial;
        std::vector<exact_sum> sub_sums(static_cast<std::size_t>(subs));
        std::vector<int> sub_tops(static_cast<std::size_t>(subs));
        for (std::int64_t g0 = start; g0 < start + n; g0 += spec.group) {
            const std::int64_t g1 = std::min<std::int64_t>(g0 + spec.group, start + n);
            const std::uint64_t index = output * std::uint64_t(K) + std::uint64_t(g1 - 1);
            bool overflowed = false;
            // Infinite or NaN inputs (or accumulator) follow IEEE addition; finite products of
            // 2^128 or more are an infinity of their sign.
            bool special = !std::isfinite(acc), above = false, below = false;
            for (std::int64_t k = g0; k < g1; ++k) {
                special = special || !std::isfinite(p[k]);
                above = above || p[k] >= 0x1p128;
                below = below || p[k] <= -0x1p128;
            }
            if (special || above || below) {
                exact_sum s(acc);
                if (special)
                    for (std::int64_t k = g0; k < g1; ++k) s.add(p[k]);
                else
                    s = exact_sum(above && below ? std::numeric_limits<double>::quiet_NaN()
                                                 : std::numeric_limits<double>::infinity() * (above ? 1 : -1));
                acc = step.round_exact(s, index, overflowed);
                sink.rounding(s, acc, overflowed);
                continue;
            }
            // Level 1: each sub-dot aligned on its own largest exponent, cut toward zero.
            const auto exponent_of = [&](std::int64_t k) {
                return p[k] != 0 ? exponents.term_exponents[k] : exponents.zero ? *exponents.zero : none;
            };
            std::fill(sub_tops.begin(), sub_tops.end(), none);
            for (std::int64_t k = g0; k < g1; ++k) {
                int& top = sub_tops[std::size_t((k - g0) % subs)];
                top = std::max(top, exponent_of(k));
            }
            for (auto& sum : sub_sums) sum = exact_sum{};
            for (std::int64_t k = g0; k < g1; ++k) {
                const int top = sub_tops[std::size_t((k - g0) % subs)];
                if (p[k] == 0 || top == none) continue;
                const double c = cut(p[k], top - window, alignment_cut::toward_zero);
                sub_sums[std::size_t((k - g0) % subs)].add(c);
                if constexpr (Count)
                    if (c == 0) {
                        ++sink.stats->swamps;
                        sink.mark_lost(k);
                    }
            }
            int top_p = *std::max_element(sub_tops.begin(), sub_tops.end());
            exact_sum products;
            if (subs == 1) {
                products = sub_sums[0];
            } else {
                for (int d = 0; d < subs; ++d)
                    if (sub_tops[std::size_t(d)] != none) products.add(floor_to(sub_sums[std::size_t(d)], top_p - window));
            }
            // Level 2: the products' sum and the accumulator on the larger exponent, floored.
            const int top_acc = acc != 0 ? exponent_reading::of_value(acc, exponents.accumulator_min)
                                : exponents.zero ? *exponents.zero
                                                 : none;
            const int top = std::max(top_p, top_acc);
            exact_sum s;
            if (top == none) {  // every value zero, and zeros not aligned: IEEE's signed zeros
                s = exact_sum(acc);
                for (std::int64_t k = g0; k < g1; ++k) s.add(p[k]);
            } else {
                s = floor_to(products, top - spec.sum_window);
                const bool dropped = subs > 1 && top_acc < top - window - 1;
                if (acc != 0 && !dropped) s.add(floor_to(exact_sum(acc), top - window));
            }
            acc = step.round_exact(s, index, overflowed);
            sink.rounding(s, acc, overflowed);
        }
        return acc;
    }
};

// The chunk accumulator: total = chunk_accumulator(total + r_c), in order, over chunk results
// that are exact_sums or doubles: an exact_sum when the step is exact, else a double. The total
// starts from `initial`: the addend, or -0 (addition's identity: gemm_spec.hpp).
template <class Step, bool Count, class Result>
auto accumulate_chunks(std::span<const Result> results, const Step& step, std::uint64_t output,
                       const event_sink<Count>& sink, double initial = -0.0) {
    if constexpr (Step::exact) {
        exact_sum total(initial);
        for (const auto& r : results) total.add(r);
        return total;
    } else {
        double total = initial;
        const std::uint64_t chunks = results.size();
        for (std::uint64_t c = 0; c < chunks; ++c) {
            bool overflowed = false;
            const double y = round_sum(step, total, results[c], output * chunks + c, overflowed);
            if constexpr (Count) {
                sink.addition(total, results[c], y, overflowed);
                if (!term_is_zero(results[c]) && y == total) ++sink.stats->swamps;
            }
            total = y;
        }
        return total;
    }
}

// Everything one output of a call needs besides its data.
struct exact_datapath {
    const gemm_spec& spec;
    std::int64_t N, K;

    // C(i, j) for a (row i of A, K floats) and b (column j of B, K floats), the accumulation
    // starting from `addend` when there is one (gemm_spec.hpp). `scratch` is reused.
    template <bool Count>
    float output(const float* a, const float* b, std::uint64_t out_index, std::vector<double>& products,
                 std::vector<double>& tree, std::vector<exact_sum>& chunk_results,
                 const event_sink<Count>& sink, std::optional<double> addend = {}) const {
        products.resize(std::size_t(K));
        const std::uint64_t first = out_index * std::uint64_t(K);
        if (spec.model == accumulation::fma) {  // fma rounds a*b + acc once: no product rounding
            exact_products(a, b, K, first, exact_step{}, products.data(), sink);
        } else {
            with_step(spec.product, gemm_random_key(product_seed(), gemm_role::product), [&](const auto& step) {
                exact_products(a, b, K, first, step, products.data(), sink);
            });
        }
        if constexpr (Count) count_off_grid(products.data(), sink);
        exponent_reading reading = exponents();
        if (spec.align == alignment_exponent::operands || spec.model == accumulation::two_level) {
            thread_local std::vector<int> operand_exponents;
            operand_exponents.resize(std::size_t(K));
            const int min_a = operand_min_exponent(spec.input_a), min_b = operand_min_exponent(spec.input_b);
            for (std::int64_t k = 0; k < K; ++k)  // (used only for finite non-zero products)
                operand_exponents[std::size_t(k)] = products[std::size_t(k)] == 0 || !std::isfinite(products[std::size_t(k)])
                                                        ? 0
                                                        : exponent_reading::of_value(a[k], min_a) +
                                                              exponent_reading::of_value(b[k], min_b);
            reading.term_exponents = operand_exponents.data();
        }
        const exact_sum total = reduce(products.data(), out_index, tree, chunk_results, sink, reading, addend);
        // The result lands in float, rounded to nearest even (exact when it is a float already).
        return float(round_with_plan<rounding::nearest_even>(total.to_double_round_odd(), float_result_plan()));
    }

    // The products that an integer accumulator cannot hold exactly (gemm_stats::off_grid_products).
    template <bool Count>
    void count_off_grid(const double* p, const event_sink<Count>& sink) const {
        const auto* acc = spec.accumulator.as_int();
        if (acc == nullptr) return;
        for (std::int64_t k = 0; k < K; ++k) {
            const double n = std::ldexp(p[k], acc->fraction_bits);  // exact: a power-of-two scale
            sink.stats->off_grid_products += std::isfinite(n) && n != std::trunc(n);
        }
    }

    // The exact value that the chunks, the accumulation model and the chunk accumulator make of
    // K terms (products, or any other exact terms such as converted LNS products or block dot
    // products: everything after the product rounding of gemm_spec.hpp), doubles or exact_sums,
    // starting from `addend` when there is one. Random indices count terms as they count products.
    template <bool Count, class Term>
    exact_sum reduce(const Term* terms, std::uint64_t out_index, std::vector<double>& tree,
                     std::vector<exact_sum>& chunk_results, const event_sink<Count>& sink) const {
        return reduce(terms, out_index, tree, chunk_results, sink, exponents(), {});
    }
    template <bool Count, class Term>
    exact_sum reduce(const Term* terms, std::uint64_t out_index, std::vector<double>& tree,
                     std::vector<exact_sum>& chunk_results, const event_sink<Count>& sink,
                     const exponent_reading& reading, std::optional<double> addend) const {
        chunk_results.assign(std::size_t(chunk_count()), exact_sum{});
        // A running accumulator starts from the addend or +0 (a unit's C); the chunk accumulator's
        // total from the addend or -0, addition's identity, so that one chunk's result passes
        // through it with the sign of its zero.
        const bool in_chunk = addend_starts_chunk(spec.model);
        const double running_start = in_chunk ? addend.value_or(0.0) : 0.0;
        const double total_start = in_chunk ? -0.0 : addend.value_or(-0.0);
        with_accumulator_step([&](const auto& step) {
            reduce_chunks(step, terms, out_index, tree, chunk_results.data(), sink, reading, running_start);
        });
        return with_chunk_accumulator_step([&](const auto& step) {
            return exact_sum(exact_of(
                accumulate_chunks(std::span<const exact_sum>(chunk_results), step, out_index, sink, total_start)));
        });
    }

    // How the aligned model reads exponents under this spec, but the terms' own (set by callers
    // that know the operands: align = operands).
    exponent_reading exponents() const {
        exponent_reading r;
        r.accumulator_min = operand_min_exponent(spec.accumulator);
        r.zero = spec.zero_exponent;
        return r;
    }

    // The smallest normal exponent of the values a quantizer gives, where subnormal_exponent =
    // min_normal reads subnormals (a float format's emin; the stored float's, fp32's, otherwise);
    // INT_MIN under subnormal_exponent = own.
    int operand_min_exponent(const quantizer& q) const { return min_normal_exponent(spec, q); }
    static int min_normal_exponent(const gemm_spec& spec, const quantizer& q) {
        if (spec.subnormals != subnormal_exponent::min_normal) return INT_MIN;
        if (const auto* f = q.as_float()) return f->format.emin();
        return fp32.emin();
    }

    // The two halves of reduce(), for callers that reduce many outputs and make each step once:
    // reduce_chunks under with_accumulator_step sets results[c] to chunk c's result for
    // c < chunk_count(); accumulate_chunks under with_chunk_accumulator_step adds them up. The
    // results may be doubles where the step rounds and the terms are doubles.
    std::int64_t chunk_size() const { return spec.chunk == 0 ? std::max<std::int64_t>(K, 1) : spec.chunk; }
    std::int64_t chunk_count() const { return K == 0 ? 1 : (K + chunk_size() - 1) / chunk_size(); }

    // (`initial`: the value the first chunk's running accumulator starts from.)
    template <class Step, bool Count, class Term, class Result>
    void reduce_chunks(const Step& step, const Term* terms, std::uint64_t out_index, std::vector<double>& tree,
                       Result* results, const event_sink<Count>& sink) const {
        reduce_chunks(step, terms, out_index, tree, results, sink, exponents(), 0.0);
    }
    template <class Step, bool Count, class Term, class Result>
    void reduce_chunks(const Step& step, const Term* terms, std::uint64_t out_index, std::vector<double>& tree,
                       Result* results, const event_sink<Count>& sink, const exponent_reading& reading,
                       double initial) const {
        static_assert(std::is_same_v<Result, exact_sum> || (!Step::exact && std::is_same_v<Term, double>),
                      "chunk results are doubles only for a rounding step over double terms: use exact_sum results");
        const chunk_reducer<Step, Count> reducer{step, spec, out_index, K, sink, tree, reading};
        const std::int64_t chunk = chunk_size(), chunks = chunk_count();
        for (std::int64_t c = 0; c < chunks; ++c) {
            const std::int64_t start = c * chunk;
            const double first = c == 0 ? initial : 0.0;
            if constexpr (std::is_same_v<Result, exact_sum>)
                results[c] = reducer.reduce(terms, start, std::min(chunk, K - start), first);
            else
                results[c] = reducer.rounded(terms, start, std::min(chunk, K - start), first);
        }
    }

    // f(step) with the step of the accumulator, or of the chunk accumulator, keyed by its role.
    template <class F>
    decltype(auto) with_accumulator_step(F&& f) const {
        return with_step(spec.accumulator, gemm_random_key(seed_of(spec.accumulator), gemm_role::accumulator), f);
    }
    template <class F>
    decltype(auto) with_chunk_accumulator_step(F&& f) const {
        return with_step(spec.chunk_accumulator,
                         gemm_random_key(seed_of(spec.chunk_accumulator), gemm_role::chunk_accumulator), f);
    }

    std::uint64_t product_seed() const { return seed_of(spec.product); }

    static std::uint64_t seed_of(const quantizer& q) {
        if (const auto* f = q.as_float()) return f->seed;
        if (const auto* i = q.as_int()) return i->seed;
        return 0;
    }

    static const rounding_plan<double>& float_result_plan() {
        static const rounding_plan<double> plan = rounding_plan<double>::make(fp32, overflow::infinity);
        return plan;
    }
};

}  // namespace lowbit::detail
