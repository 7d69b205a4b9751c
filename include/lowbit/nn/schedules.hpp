// lowbit/nn/schedules.hpp: learning-rate schedules, the rate of step s (0-based) of `steps`.
//
//   one_cycle: PyTorch's OneCycleLR (cosine annealing, three-phase off): from max / div_factor up
//              to max over the first pct_start of the steps, then down to
//              max / (div_factor * final_div_factor) at the last step.
//   cosine:    PyTorch's CosineAnnealingLR over `steps` (eta_min at step = steps), with an
//              optional linear warm-up from 0.
//
//   lowbit::nn::one_cycle lr{.max = 3e-3, .steps = 8 * 468};
//   for (int s = 0; s < lr.steps; ++s) { opt.set_learning_rate(lr(s)); ... }
#pragma once

#include <lowbit/nn/definitions.hpp>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace lowbit::nn {

namespace detail {
LOWBIT_NN_INLINE double cosine_between(double from, double to, double fraction);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE double cosine_between(double from, double to, double fraction) {
    return to + (from - to) * (1 + std::cos(std::numbers::pi * fraction)) / 2;
}
#endif
LOWBIT_NN_INLINE void check_schedule(bool ok, const char* who, const std::string& what);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void check_schedule(bool ok, const char* who, const std::string& what) {
    if (!ok) throw std::invalid_argument(std::string("lowbit::nn::") + who + ": " + what);
}
#endif
}  // namespace detail

struct one_cycle {
    double max = 1e-3;
    int steps = 1;
    double pct_start = 0.3;
    double div_factor = 25;
    double final_div_factor = 1e4;

    double operator()(int step) const;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE double one_cycle::operator()(int step) const {
    detail::check_schedule(max > 0 && steps >= 2 && pct_start > 0 && pct_start < 1 && div_factor > 0 &&
                               final_div_factor > 0,
                           "one_cycle", "needs max > 0, steps >= 2, 0 < pct_start < 1 and positive factors");
    detail::check_schedule(step >= 0 && step < steps, "one_cycle",
                           "step " + std::to_string(step) + " is outside [0, " + std::to_string(steps) + ")");
    const double initial = max / div_factor, final = initial / final_div_factor;
    const double peak = pct_start * steps - 1;  // as PyTorch: the step at which the rate is max
    if (step <= peak) return detail::cosine_between(initial, max, step / peak);
    return detail::cosine_between(max, final, (step - peak) / (steps - 1 - peak));
}
#endif

struct cosine_schedule {
    double max = 1e-3;
    int steps = 1;
    double min = 0;
    int warmup = 0;  // steps of linear warm-up from max / warmup ... max

    double operator()(int step) const;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE double cosine_schedule::operator()(int step) const {
    detail::check_schedule(max > 0 && steps >= 1 && min >= 0 && min <= max && warmup >= 0 && warmup < steps,
                           "cosine_schedule", "needs max > 0, steps >= 1, 0 <= min <= max, 0 <= warmup < steps");
    detail::check_schedule(step >= 0 && step < steps, "cosine_schedule",
                           "step " + std::to_string(step) + " is outside [0, " + std::to_string(steps) + ")");
    if (step < warmup) return max * (step + 1) / warmup;
    return detail::cosine_between(max, min, double(step - warmup) / double(steps - warmup));
}
#endif

}  // namespace lowbit::nn
