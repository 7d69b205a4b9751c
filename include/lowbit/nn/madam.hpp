// lowbit/nn/madam.hpp: the Madam optimizer and its LNS variant (Zhao et al., "LNS-Madam",
// IEEE TC 2022; the update below is the one of the authors' optimizer code).
//
//   lowbit::madam opt(initial_weights, {.learning_rate = 1.0 / 8, .integer_steps = true,
//                                       .lns_grid = lowbit::lns8});
//   opt.step(weights, gradients);   // once per iteration
//
// Per element, with t the number of steps taken so far (this one included):
//
//   v     = beta v + (1 - beta) g^2
//   v_hat = v / (1 - beta^t)
//   g_hat = clamp(g / sqrt(v_hat), -max_step, max_step)      (v_hat = 0 or NaN: g_hat = 0)
//   g_hat = round(g_hat)                                      (integer_steps only)
//   w     = w * 2^(-learning_rate * g_hat * sign(w))
//   w     = clamp(w, -w_max, w_max),   w_max = max_weight_factor * RMS(initial weights)
//
// The update is multiplicative: it moves log2|w| by -learning_rate * g_hat * sign(w) and never
// changes the sign of w. Hence zero weights stay zero forever (sign(0) = 0, and 0 * anything is 0):
// Madam cannot train a parameter that starts at zero, so initialise none at zero that should learn.
// Arithmetic is in double; weights are stored as float (rounded to nearest once per step).
//
// Decisions (where the paper's formula leaves a choice):
//  * Rounding of g_hat (integer_steps): to nearest, ties to even, as torch.round does in the
//    authors' PyTorch code. Only |g_hat| = 0.5, 1.5, ... tie, and ties to even keeps the rounding
//    symmetric in the sign of g (as ties away would too) without rounding 0.5 up to a full step.
//  * Non-finite gradients: the formula would put NaN or infinity into v, and from then on every
//    g_hat of that weight would be NaN -> 0 (or inf/inf = NaN -> 0): one bad gradient would freeze
//    the weight for good. So an element whose gradient is NaN or +-infinity is skipped entirely:
//    neither its weight nor its v changes in that step (the step count t still advances, as it
//    is shared by all elements).
//  * The LNS grid: with integer_steps and learning_rate = m / gamma (m an integer) the exact
//    update moves k of a weight w = +-2^(k / gamma) by -m * g_hat * sign(w), an integer, so the
//    weight stays on the grid -- in exact arithmetic. In float it does not quite: 2^(k / gamma)
//    is irrational, so the stored weight is a rounded value and the product w * 2^(...) rounds
//    again, and these errors of up to half a float ulp accumulate from step to step (measured: after
//    200 lns8 steps most weights are a few ulps off the correctly rounded grid value, though k is
//    still right). And the clamp to w_max (3 RMS of the initial weights, an arbitrary number)
//    moves a weight off the grid outright. Setting `lns_grid` fixes both: w_max is rounded down
//    to the grid (toward zero in the log domain, so the clamp never exceeds max_weight_factor
//    RMS), and every updated weight is rounded to the grid (nearest in the log domain) and
//    stored as the correctly rounded float of 2^(k / gamma) (lns_magnitude_float). For an
//    on-grid weight, integer_steps and learning_rate = m / gamma that rounding only removes the
//    float error (k moves exactly as above); otherwise it is round-to-nearest LNS Madam. Beyond
//    the format's range k saturates: at k_max above, and at k_min below (not at zero, because a
//    zero weight could never recover under a multiplicative update).
//  * Updates smaller than one grid step (learning_rate * g_hat * gamma not an integer, such as
//    Madam's 1/128 on lns8's base 2^(1/8)): rounded to the nearest code they are lost whenever
//    below half a step -- the quantization error of the update. `grid_rounding =
//    stochastic_log` rounds the updated weight up in the log domain with probability equal to the
//    fraction of the step (lowbit::lns_round_magnitude, 32 random bits from `seed`, index
//    (t - 1) * size + i), so k moves by floor or ceil of the exact step and by the exact step on
//    average, and the weight stays on its grid. For an on-grid weight that does not move, the
//    fraction is 0: it stays.
//  * w_max is computed once, at construction, from the initial weights. All-zero initial weights
//    give w_max = 0, which pins every weight at zero: consistent, since such weights cannot move.
//
// Errors (std::invalid_argument, naming the argument): learning_rate not positive and finite;
// beta outside (0, 1); max_step or max_weight_factor not positive; non-finite initial weights;
// an invalid lns_grid; in step(), weights or gradients of a size other than initial_weights'.
// step() checks everything before it changes anything.
#pragma once

#include <lowbit/formats/lns_format.hpp>
#include <lowbit/nn/definitions.hpp>
#include <lowbit/rounding/lns_quantize.hpp>
#include <lowbit/rounding/random_bits.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit {

struct madam_options {
    double learning_rate = 1.0 / 128;  // log2|w| moves by at most learning_rate * max_step a step
    double beta = 0.999;               // decay of the second moment v
    double max_step = 10.0;            // clamp of g_hat
    double max_weight_factor = 3.0;    // w_max = max_weight_factor * RMS(initial weights)
    bool integer_steps = false;        // LNS-Madam: g_hat rounded to an integer (ties to even)
    // When set: w_max rounded down to this grid, and every updated weight rounded to it (see the
    // header comment). Use with integer_steps and learning_rate = m / grid->gamma().
    std::optional<lns_format> lns_grid = std::nullopt;
    // With lns_grid: how an updated weight lands on it (nearest_log; stochastic_log for unbiased
    // steps smaller than one code; any lns_rounding), and the random stream of stochastic_log.
    lns_rounding grid_rounding = lns_rounding::nearest_log;
    std::uint64_t seed = 0;
};

class madam {
public:
    explicit madam(std::span<const float> initial_weights, madam_options options = {});

    // One Madam step on every element. weights and gradients must have as many elements as the
    // initial weights (std::invalid_argument otherwise, before anything changes).
    void step(std::span<float> weights, std::span<const float> gradients);

    // Steps taken so far (t of the bias correction).
    std::size_t steps() const { return t_; }
    // The clamp bound w_max (on the grid when lns_grid is set).
    double max_weight() const { return w_max_; }
    // The second moments v, one per weight (for inspection and tests).
    std::span<const double> second_moments() const { return v_; }
    const madam_options& options() const { return options_; }

private:
    void check_options() const;

    // Nearest integer, ties to even, whatever the floating-point environment's rounding mode.
    static double round_half_even(double x);

    // Clamp to [-w_max, w_max], then (with a grid) round to it, and store as float; `index` picks
    // the random bits of stochastic_log.
    float finish(double w, std::uint64_t index) const;

    madam_options options_;
    std::vector<double> v_;  // second moment per weight
    std::size_t t_ = 0;      // steps taken
    double w_max_ = 0;       // clamp bound, fixed at construction
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE madam::madam(std::span<const float> initial_weights, madam_options options) : options_(options), v_(initial_weights.size(), 0.0) {
    check_options();
    double sum_of_squares = 0;
    for (const float w : initial_weights) {
        if (!std::isfinite(w))
            throw std::invalid_argument("lowbit::madam: initial_weights has a non-finite element (" +
                                        std::to_string(w) + ")");
        sum_of_squares += double(w) * double(w);
    }
    // An empty layer has nothing to clamp; 0 avoids 0/0.
    const double rms =
        initial_weights.empty() ? 0.0 : std::sqrt(sum_of_squares / double(initial_weights.size()));
    w_max_ = options_.max_weight_factor * rms;
    if (options_.lns_grid && w_max_ > 0) {
        // Down, so that clamped weights are grid values and never above the factor times RMS;
        // below the smallest magnitude the smallest one (zero would pin every weight at zero).
        const std::optional<int> k = lns_round_magnitude(w_max_, *options_.lns_grid, lns_rounding::toward_zero,
                                                         lns_underflow::smallest);
        w_max_ = options_.lns_grid->magnitude(*k);
    }
}

LOWBIT_NN_INLINE void madam::step(std::span<float> weights, std::span<const float> gradients) {
    if (weights.size() != v_.size())
        throw std::invalid_argument("lowbit::madam::step: weights has " + std::to_string(weights.size()) +
                                    " elements, initial_weights had " + std::to_string(v_.size()));
    if (gradients.size() != weights.size())
        throw std::invalid_argument("lowbit::madam::step: gradients has " + std::to_string(gradients.size()) +
                                    " elements, weights has " + std::to_string(weights.size()));
    ++t_;
    const double beta = options_.beta;
    // beta^t in double: for t in the millions it underflows to 0 gracefully (correction 1).
    const double bias_correction = 1.0 - std::pow(beta, double(t_));
    const std::uint64_t first_index = std::uint64_t(t_ - 1) * std::uint64_t(weights.size());
    for (std::size_t i = 0; i < weights.size(); ++i) {
        const double g = gradients[i];
        if (!std::isfinite(g)) continue;  // see the header: keeps v finite
        v_[i] = beta * v_[i] + (1.0 - beta) * g * g;
        const double v_hat = v_[i] / bias_correction;
        double g_hat = 0;
        if (v_hat > 0) {
            g_hat = g / std::sqrt(v_hat);
            if (g_hat != g_hat) g_hat = 0;  // cannot happen for finite g and v_hat > 0; cheap insurance
            g_hat = std::clamp(g_hat, -options_.max_step, options_.max_step);
            if (options_.integer_steps) g_hat = round_half_even(g_hat);
        }
        const double w = weights[i];
        const double sign_w = w > 0 ? 1.0 : (w < 0 ? -1.0 : 0.0);
        if (sign_w == 0 || g_hat == 0) {
            // No multiplicative change; the clamp still applies (w_max may be below |w| for
            // weights the caller set after construction).
            weights[i] = finish(w, first_index + i);
            continue;
        }
        weights[i] = finish(w * std::exp2(-options_.learning_rate * g_hat * sign_w), first_index + i);
    }
}

LOWBIT_NN_INLINE void madam::check_options() const {
    const auto bad = [](const char* name, double value, const char* why) {
        return std::invalid_argument(std::string("lowbit::madam: options.") + name + " = " +
                                     std::to_string(value) + ": " + why);
    };
    if (!(options_.learning_rate > 0) || !std::isfinite(options_.learning_rate))
        throw bad("learning_rate", options_.learning_rate, "must be positive and finite");
    if (!(options_.beta > 0 && options_.beta < 1)) throw bad("beta", options_.beta, "must be in (0, 1)");
    if (!(options_.max_step > 0)) throw bad("max_step", options_.max_step, "must be positive");
    if (!(options_.max_weight_factor > 0) || !std::isfinite(options_.max_weight_factor))
        throw bad("max_weight_factor", options_.max_weight_factor, "must be positive and finite");
    switch (options_.grid_rounding) {
        case lns_rounding::nearest_log:
        case lns_rounding::nearest_linear:
        case lns_rounding::toward_zero:
        case lns_rounding::stochastic_log: break;
        default:
            throw std::invalid_argument("lowbit::madam: options.grid_rounding = " +
                                        std::to_string(int(options_.grid_rounding)) + " is not a lowbit::lns_rounding");
    }
    if (options_.lns_grid && !options_.lns_grid->is_valid()) {
        try {
            options_.lns_grid->validate();
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(std::string("lowbit::madam: options.lns_grid: ") + e.what());
        }
    }
}

LOWBIT_NN_INLINE double madam::round_half_even(double x) {
    const double r = std::round(x);  // ties away from zero
    if (std::fabs(x - r) == 0.5) return 2.0 * std::round(x / 2.0);
    return r;
}

LOWBIT_NN_INLINE float madam::finish(double w, std::uint64_t index) const {
    w = std::clamp(w, -w_max_, w_max_);
    if (!options_.lns_grid || w == 0) return float(w);
    const lns_format& f = *options_.lns_grid;
    const lns_rounding mode = options_.grid_rounding;
    const std::uint32_t random = mode == lns_rounding::stochastic_log ? random_bits_at(options_.seed, index) : 0u;
    const std::optional<int> k = lns_round_magnitude(std::fabs(w), f, mode, lns_underflow::smallest, random);
    return std::copysign(lns_magnitude_float(*k, f), float(w));
}
#endif

}  // namespace lowbit
