// lowbit/datapath/rounding_steps.hpp: the roundings of a datapath with their mode fixed at
// compile time, each able to round an exact double, the exact sum of two doubles, or an
// exact_sum, and to tell whether the rounding overflowed.
//
// A datapath dispatches once on the runtime quantizer (with_step) and then runs loops that call
// these steps without any branch on the configuration.
#pragma once

#include <lowbit/datapath/exact_sum.hpp>
#include <lowbit/datapath/quantizer.hpp>
#include <lowbit/rounding/exact_ops.hpp>
#include <lowbit/rounding/random_bits.hpp>
#include <lowbit/rounding/rounding_plan.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace lowbit::detail {

// No rounding: values and sums stay exact.
struct exact_step {
    static constexpr bool exact = true;
};

template <rounding Mode>
struct float_step {
    static constexpr bool exact = false;
    rounding_plan<double> plan;
    rounding_plan<double> unbounded;  // the same without an upper limit: tells overflow apart
    std::uint64_t key = 0;            // Philox key of stochastic rounding

    float_step(const float_quantizer& q, std::uint64_t stream_key)
        : plan(rounding_plan<double>::make(q.format, q.on_overflow, q.random_bits)), unbounded(plan), key(stream_key) {
        unbounded.max_finite = std::numeric_limits<double>::infinity();
    }

    std::uint32_t random(std::uint64_t index) const {
        if constexpr (Mode == rounding::stochastic) return random_bits_at(key, index);
        else return (void)index, 0u;
    }

    // x is exact.
    double round_value(double x, std::uint64_t index, bool& overflowed) const {
        const std::uint32_t r = random(index);
        const double y = round_with_plan<Mode>(x, plan, r);
        overflowed = std::isfinite(x) && std::fabs(x) > plan.max_finite &&
                     std::fabs(round_with_plan<Mode>(x, unbounded, r)) > plan.max_finite;
        return y;
    }

    double round_exact(const exact_sum& s, std::uint64_t index, bool& overflowed) const {
        const double odd = s.to_double_round_odd();
        if constexpr (Mode != rounding::stochastic) {
            // Rounding the round-to-odd double equals rounding the exact sum (exact_ops.hpp);
            // accumulator formats have at most 50 mantissa bits (gemm_spec::validate).
            return round_value(odd, index, overflowed);
        } else {
            // Stochastic rounding looks at every dropped bit: take them from the exact sum.
            if (odd == 0 || !std::isfinite(odd)) return round_value(odd, index, overflowed);
            const int quantum = std::max(std::ilogb(odd), int(plan.emin)) - int(plan.man_bits);
            const auto d = s.magnitude_digits(quantum);
            const std::uint64_t u = random(index) & plan.random_mask;
            const std::uint64_t scaled = std::uint64_t(d.fraction_top32) >> (32 - plan.random_bits);
            const std::uint64_t up = scaled + u >= (std::uint64_t(1) << plan.random_bits) ? 1 : 0;
            // On the grid now: rounding it again only applies overflow, flush and sign rules.
            const double on_grid = std::ldexp(double(d.whole_low64 + up), quantum);
            return round_value(s.negative() ? -on_grid : on_grid, index, overflowed);
        }
    }

    double round_pair(double a, double b, std::uint64_t index, bool& overflowed) const {
        if constexpr (Mode != rounding::stochastic) {
            return round_value(add_round_odd(a, b), index, overflowed);
        } else {
            exact_sum s(a);
            s.add(b);
            return round_exact(s, index, overflowed);
        }
    }
};

template <rounding Mode>
struct int_step {
    static constexpr bool exact = false;
    int_quantizer q;
    std::uint64_t key = 0;

    int_step(const int_quantizer& quantizer, std::uint64_t stream_key) : q(quantizer), key(stream_key) {}

    std::uint32_t random(std::uint64_t index) const {
        if constexpr (Mode == rounding::stochastic) return random_bits_at(key, index);
        else return (void)index, 0u;
    }

    double round_value(double x, std::uint64_t index, bool& overflowed) const {
        return round_exact(exact_sum(x), index, overflowed);
    }

    // Exact for any magnitude: the rounding decision and the wrapped low bits come from the
    // exact sum's digits.
    double round_exact(const exact_sum& s, std::uint64_t index, bool& overflowed) const {
        overflowed = false;
        if (s.is_special()) {
            const double x = s.to_double_round_odd();
            overflowed = !std::isnan(x);
            return q.round(x, 0);
        }
        const auto d = s.magnitude_digits(-q.fraction_bits);
        const bool negative = s.negative();
        const bool fraction = d.fraction_top32 != 0 || d.sticky;
        const bool half = (d.fraction_top32 >> 31) != 0;
        const bool above_half = half && ((d.fraction_top32 & 0x7FFFFFFFu) != 0 || d.sticky);
        const bool odd_whole = (d.whole_low64 & 1) != 0;
        bool up = false;
        if constexpr (Mode == rounding::nearest_even) up = above_half || (half && !above_half && odd_whole);
        else if constexpr (Mode == rounding::nearest_away) up = half;
        else if constexpr (Mode == rounding::toward_zero) up = false;
        else if constexpr (Mode == rounding::toward_positive) up = fraction && !negative;
        else if constexpr (Mode == rounding::toward_negative) up = fraction && negative;
        else if constexpr (Mode == rounding::odd) up = fraction && !odd_whole;
        else {
            const std::uint64_t u = std::uint64_t(random(index)) & ((std::uint64_t(1) << q.random_bits) - 1);
            up = (std::uint64_t(d.fraction_top32) >> (32 - q.random_bits)) + u >= (std::uint64_t(1) << q.random_bits);
        }
        const std::uint64_t magnitude_low = d.whole_low64 + (up ? 1 : 0);
        const double scale = std::ldexp(1.0, -q.fraction_bits);
        const double lo = q.format.min_value(), hi = q.format.max_value();
        // Below 2^60 (with room for the round-to-odd estimate and the step up), magnitude_low is
        // the whole |n|. Every range lies within [-2^53, 2^53], so a magnitude in range is exact
        // in double, and one that converts (rounded) to a double beyond the range is beyond it.
        const double approx = std::fabs(s.to_double_round_odd()) * std::ldexp(1.0, q.fraction_bits);
        if (approx < 0x1p60) {
            const double m = double(magnitude_low);
            overflowed = negative ? m > -lo : m > hi;
            if (!overflowed) return m == 0 ? 0.0 : (negative ? -m : m) * scale;  // (a register's 0 is +0)
            if (q.on_overflow == int_overflow::saturate) return (negative ? lo : hi) * scale;
        }
        overflowed = true;
        if (q.on_overflow == int_overflow::saturate) return (negative ? lo : hi) * scale;
        // wrap: the low bits of n in two's complement
        const std::uint64_t n_low = negative ? ~magnitude_low + 1 : magnitude_low;
        const std::uint64_t span_mask = (std::uint64_t(1) << q.format.bits) - 1;
        return q.overflow(double(n_low & span_mask)) * scale;  // n mod 2^bits, wrapped into range
    }

    double round_pair(double a, double b, std::uint64_t index, bool& overflowed) const {
        exact_sum s(a);
        s.add(b);
        return round_exact(s, index, overflowed);
    }
};

// Calls f(step) with the step type of the runtime quantizer: exact_step, float_step<Mode> or
// int_step<Mode> for each mode. The one place where a datapath's quantizer becomes a type.
template <class F>
decltype(auto) with_step(const quantizer& q, std::uint64_t stream_key, F&& f) {
    if (const auto* fq = q.as_float())
        return dispatch_rounding(fq->mode, [&](auto m) { return f(float_step<m()>(*fq, stream_key)); });
    if (const auto* iq = q.as_int())
        return dispatch_rounding(iq->mode, [&](auto m) { return f(int_step<m()>(*iq, stream_key)); });
    return f(exact_step{});
}

}  // namespace lowbit::detail
