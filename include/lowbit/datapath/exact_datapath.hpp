// lowbit/datapath/exact_datapath.hpp: one output of a simulated GEMM, for every specification.
//
// This path follows gemm_spec.hpp's definitions literally, in double with exact sums where a
// definition needs them, so it serves every quantizer, model and event counter. Its loops are
// instantiated per rounding step type (rounding_steps.hpp): no branch on the configuration
// inside them. The vectorized path (fast_datapath.hpp) takes over where it is proven equal.
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
#include <vector>

namespace lowbit::detail {

// Where the events of one output go; `lost` (or nullptr) points at the output's K flags.
template <bool Count>
struct event_sink {
    gemm_stats* stats = nullptr;
    std::uint8_t* lost = nullptr;

    void mark_lost(std::int64_t k) const {
        if constexpr (Count)
            if (lost != nullptr) lost[k] = 1;
    }
    // An accumulator rounding of the exact sum x + y into r.
    void addition(double x, double y, double r, bool overflowed) const {
        if constexpr (Count) {
            exact_sum s(x);
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

// The chunk reductions of gemm_spec.hpp for one output: p holds the output's K products.
template <class Step, bool Count>
struct chunk_reducer {
    const Step& step;
    const gemm_spec& spec;
    std::uint64_t output;  // i*N + j
    std::int64_t K;
    event_sink<Count> sink;
    std::vector<double>& tree;  // scratch for the pairwise model

    exact_sum reduce(const double* p, std::int64_t start, std::int64_t n) const {
        if constexpr (Step::exact) {  // an exact accumulator makes every model a fused one
            exact_sum s;
            for (std::int64_t t = 0; t < n; ++t) s.add(p[start + t]);
            return s;
        } else {
            switch (spec.model) {
                case accumulation::sequential:
                case accumulation::fma: return exact_sum(sequential(p, start, n));  // fma: p exact
                case accumulation::pairwise: return exact_sum(pairwise(p, start, n));
                case accumulation::fused: return exact_sum(fused(p, start, n));
                case accumulation::aligned: return exact_sum(aligned(p, start, n));
            }
            return {};
        }
    }

    double sequential(const double* p, std::int64_t start, std::int64_t n) const {
        double acc = 0;
        for (std::int64_t k = start; k < start + n; ++k) {
            bool overflowed = false;
            const double y = step.round_pair(acc, p[k], output * std::uint64_t(K) + std::uint64_t(k), overflowed);
            if constexpr (Count) {
                sink.addition(acc, p[k], y, overflowed);
                if (p[k] != 0 && y == acc) {
                    ++sink.stats->swamps;
                    sink.mark_lost(k);
                }
            }
            acc = y;
        }
        return acc;
    }

    double pairwise(const double* p, std::int64_t start, std::int64_t n) const {
        if (n == 0) return 0;
        const std::int64_t width = std::int64_t(std::bit_ceil(std::uint64_t(n)));
        tree.assign(std::size_t(width), 0.0);
        std::copy(p + start, p + start + n, tree.begin());
        const std::uint64_t base = output * 2 * std::uint64_t(K) + 2 * std::uint64_t(start);
        for (std::int64_t level = 1, nodes = width / 2; nodes >= 1; ++level, nodes /= 2) {
            for (std::int64_t t = 0; t < nodes; ++t) {
                const double x = tree[std::size_t(2 * t)], y = tree[std::size_t(2 * t + 1)];
                bool overflowed = false;
                const double r = step.round_pair(x, y, base + std::uint64_t(nodes + t), overflowed);
                if constexpr (Count) {
                    sink.addition(x, y, r, overflowed);
                    const bool y_lost = y != 0 && r == x, x_lost = x != 0 && r == y;
                    if (y_lost || x_lost) ++sink.stats->swamps;
                    if (level == 1) {
                        if (y_lost) sink.mark_lost(start + 2 * t + 1);
                        if (x_lost) sink.mark_lost(start + 2 * t);
                    }
                }
                tree[std::size_t(t)] = r;
            }
        }
        return tree[0];
    }

    double fused(const double* p, std::int64_t start, std::int64_t n) const {
        exact_sum s;
        for (std::int64_t k = start; k < start + n; ++k) s.add(p[k]);
        bool overflowed = false;
        const double r = step.round_exact(s, output * std::uint64_t(K) + std::uint64_t(start), overflowed);
        sink.rounding(s, r, overflowed);
        return r;
    }

    // t cut to a multiple of 2^q, toward zero or toward minus infinity.
    double cut(double t, int q) const {
        const double step_size = std::ldexp(1.0, q);
        if (std::fabs(t) < step_size)  // also keeps t * 2^-q from underflowing below
            return (spec.cut == alignment_cut::toward_negative && t < 0) ? -step_size : 0.0;
        const double units = std::ldexp(t, -q);  // exact: |units| >= 1
        return std::ldexp(spec.cut == alignment_cut::toward_zero ? std::trunc(units) : std::floor(units), q);
    }

    double aligned(const double* p, std::int64_t start, std::int64_t n) const {
        double acc = 0;
        for (std::int64_t g0 = start; g0 < start + n; g0 += spec.group) {
            const std::int64_t g1 = std::min<std::int64_t>(g0 + spec.group, start + n);
            int top = INT_MIN;  // largest exponent among the accumulator and the group
            if (acc != 0 && std::isfinite(acc)) top = std::ilogb(acc);
            for (std::int64_t k = g0; k < g1; ++k)
                if (p[k] != 0 && std::isfinite(p[k])) top = std::max(top, std::ilogb(p[k]));
            exact_sum s;
            if (top != INT_MIN) {
                const int q = top - spec.window;
                s.add(std::isfinite(acc) ? cut(acc, q) : acc);
                for (std::int64_t k = g0; k < g1; ++k) {
                    const double c = std::isfinite(p[k]) ? cut(p[k], q) : p[k];
                    s.add(c);
                    if constexpr (Count)
                        if (p[k] != 0 && c == 0) {
                            ++sink.stats->swamps;
                            sink.mark_lost(k);
                        }
                }
            } else {
                s.add(acc);  // zeros or non-finite values only
                for (std::int64_t k = g0; k < g1; ++k) s.add(p[k]);
            }
            bool overflowed = false;
            const double r = step.round_exact(s, output * std::uint64_t(K) + std::uint64_t(g1 - 1), overflowed);
            sink.rounding(s, r, overflowed);
            acc = r;
        }
        return acc;
    }
};

// The chunk accumulator: total = chunk_accumulator(total + r_c), in order.
template <class Step, bool Count>
exact_sum accumulate_chunks(const std::vector<exact_sum>& results, const Step& step, std::uint64_t output,
                            const event_sink<Count>& sink) {
    if constexpr (Step::exact) {
        exact_sum total;
        for (const auto& r : results) total.add(r);
        return total;
    } else {
        double total = 0;
        const std::uint64_t chunks = results.size();
        for (std::uint64_t c = 0; c < chunks; ++c) {
            exact_sum s(total);
            s.add(results[c]);
            bool overflowed = false;
            const double y = step.round_exact(s, output * chunks + c, overflowed);
            if constexpr (Count) {
                sink.rounding(s, y, overflowed);
                if (!results[c].is_zero() && y == total) ++sink.stats->swamps;
            }
            total = y;
        }
        return exact_sum(total);
    }
}

// Everything one output of a call needs besides its data.
struct exact_datapath {
    const gemm_spec& spec;
    std::int64_t N, K;

    // C(i, j) for a (row i of A, K floats) and b (column j of B, K floats). `scratch` is reused.
    template <bool Count>
    float output(const float* a, const float* b, std::uint64_t out_index, std::vector<double>& products,
                 std::vector<double>& tree, std::vector<exact_sum>& chunk_results,
                 const event_sink<Count>& sink) const {
        products.resize(std::size_t(K));
        const std::uint64_t first = out_index * std::uint64_t(K);
        if (spec.model == accumulation::fma) {  // fma rounds a*b + acc once: no product rounding
            exact_products(a, b, K, first, exact_step{}, products.data(), sink);
        } else {
            with_step(spec.product, gemm_random_key(product_seed(), gemm_role::product), [&](const auto& step) {
                exact_products(a, b, K, first, step, products.data(), sink);
            });
        }
        const exact_sum total = reduce(products.data(), out_index, tree, chunk_results, sink);
        // The result lands in float, rounded to nearest even (exact when it is a float already).
        return float(round_with_plan<rounding::nearest_even>(total.to_double_round_odd(), float_result_plan()));
    }

    // The exact value that the chunks, the accumulation model and the chunk accumulator make of
    // K terms (products, or any other exact terms such as converted LNS products or block dot
    // products: everything after the product rounding of gemm_spec.hpp). Random indices count
    // terms as they count products.
    template <bool Count>
    exact_sum reduce(const double* terms, std::uint64_t out_index, std::vector<double>& tree,
                     std::vector<exact_sum>& chunk_results, const event_sink<Count>& sink) const {
        const std::int64_t chunk = spec.chunk == 0 ? std::max<std::int64_t>(K, 1) : spec.chunk;
        const std::int64_t chunks = K == 0 ? 1 : (K + chunk - 1) / chunk;
        chunk_results.assign(std::size_t(chunks), exact_sum{});
        with_step(spec.accumulator, gemm_random_key(seed_of(spec.accumulator), gemm_role::accumulator),
                  [&](const auto& step) {
                      const chunk_reducer<std::decay_t<decltype(step)>, Count> reducer{step, spec, out_index, K, sink, tree};
                      for (std::int64_t c = 0; c < chunks; ++c) {
                          const std::int64_t start = c * chunk;
                          chunk_results[std::size_t(c)] = reducer.reduce(terms, start, std::min(chunk, K - start));
                      }
                  });
        return with_step(
            spec.chunk_accumulator, gemm_random_key(seed_of(spec.chunk_accumulator), gemm_role::chunk_accumulator),
            [&](const auto& step) { return accumulate_chunks(chunk_results, step, out_index, sink); });
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
