// lowbit/scaling/calibration.hpp: choosing the clipping scalar s of a B-bit clipped uniform
// quantizer from data: max, percentile, brute-force MSE sweep, and OCTAV (Sakr et al., ICML 2022,
// papers.md section 3).
//
// The quantizers (round() is round to nearest, ties to even):
//
//   signed:   Q(x) = clip(s * 2^(1-B) * round(x * 2^(B-1) / s), -s, s)
//             grid step D = s * 2^(1-B); 2^B + 1 levels k*D, k in [-2^(B-1), 2^(B-1)]
//   unsigned: Q(x) = clip(s * 2^-B * round(x * 2^B / s), 0, s)
//             grid step D = s * 2^-B;    2^B + 1 levels k*D, k in [0, 2^B]
//
// Both keep s itself on the grid (the paper's choice; a hardware signed B-bit integer would drop
// the top level, an unsigned one too). Modelling the rounding error inside [-s, s] (or [0, s]) as
// uniform on one step gives the noise D^2 / 12, which is
//   signed:   (4^-B / 3)  s^2        unsigned: (4^-B / 12) s^2.
//
// The MSE model J(s) (papers.md), expectations replaced by means over all n elements:
//   signed:   J(s) = 1/n sum_i [ c s^2 1{0 < |x_i| <= s} + (s - |x_i|)^2 1{|x_i| > s} ],  c = 4^-B/3
//   unsigned: J(s) = 1/n sum_i [ c s^2 1{0 < x_i <= s}   + (s - x_i)^2 1{x_i > s}
//                                + x_i^2 1{x_i < 0} ],                            c = 4^-B/12
// Zeros count in n but add no noise: the quantizer keeps 0 exactly. This is the same choice as
// OCTAV's "zeros excluded from the count", which makes OCTAV's update the Newton step on this J
// (with the paper's one simplification, see octav below), and it matters for post-ReLU or pruned
// tensors: adding zeros to a tensor changes neither OCTAV's scale nor the MSE argmin. Negative values
// under an unsigned quantizer always land on 0 whatever s is: their error x^2 is a constant in J
// and they play no part in choosing s (OCTAV treats them as zeros).
//
// Signed calibration works on magnitudes |x|; unsigned on max(x, 0). Every function here rejects
// NaN and infinite data (std::invalid_argument naming the element), because a calibrated scale
// that silently became NaN poisons everything quantized with it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace lowbit {

// Whether the quantizer's range is [-s, s] (signed_values) or [0, s] (unsigned_values, e.g.
// post-ReLU activations). An enum rather than a bool so that call sites read.
enum class signedness : std::uint8_t { signed_values, unsigned_values };

constexpr const char* to_string(signedness s) {
    return s == signedness::signed_values ? "signed_values" : "unsigned_values";
}

namespace detail {

inline std::string calibration_number(double v) {
    // std::to_string prints 6 decimals, which shows a tiny scale as 0.000000.
    char buffer[32];
    const int n = std::snprintf(buffer, sizeof buffer, "%.17g", v);
    return std::string(buffer, std::size_t(n > 0 ? n : 0));
}

inline void check_calibration_data(std::span<const float> x, const char* function, const char* name = "x") {
    if (x.empty()) throw std::invalid_argument(std::string("lowbit::") + function + ": " + name + " is empty");
    for (std::size_t i = 0; i < x.size(); ++i)
        if (!std::isfinite(x[i]))
            throw std::invalid_argument(std::string("lowbit::") + function + ": " + name + "[" + std::to_string(i) +
                                        "] = " + calibration_number(x[i]) + " is not finite");
}

// Bits beyond 32 buy nothing in a calibration (the noise term is below double's resolution of
// the clipping term long before) and 1 is the smallest quantizer with a non-zero level.
inline void check_calibration_bits(int bits, const char* function) {
    if (bits < 1 || bits > 32)
        throw std::invalid_argument(std::string("lowbit::") + function + ": bits = " + std::to_string(bits) +
                                    " must be in [1, 32]");
}

inline void check_clipping_scalar(double s, const char* function) {
    if (!(s > 0) || !std::isfinite(s))
        throw std::invalid_argument(std::string("lowbit::") + function + ": s = " + calibration_number(s) +
                                    " must be positive and finite");
}

// The value a calibration looks at: |x| for signed quantizers, max(x, 0) for unsigned ones.
inline double calibration_magnitude(float x, signedness sign) {
    return sign == signedness::signed_values ? std::fabs(double(x)) : std::max(double(x), 0.0);
}

// The noise constant of the model: D^2 / 12 / s^2.
inline double noise_constant(int bits, signedness sign) {
    return std::ldexp(1.0, -2 * bits) / (sign == signedness::signed_values ? 3.0 : 12.0);
}

inline double clipping_mse_unchecked(std::span<const float> x, double s, int bits, signedness sign) {
    const double noise = noise_constant(bits, sign) * s * s;
    double sum = 0;
    for (const float value : x) {
        const double v = double(value);
        const double a = sign == signedness::signed_values ? std::fabs(v) : v;
        if (a < 0) sum += v * v;  // unsigned quantizer: lands on 0 whatever s is
        else if (a == 0) continue;
        else if (a <= s) sum += noise;
        else sum += (a - s) * (a - s);
    }
    return sum / double(x.size());
}

// round(v * levels / s) to nearest, ties to even, decided on the exact quotient. t is v times
// the rounded levels / s (relative error below 2^-51), which decides everything except within a
// few ulps of a midpoint; there the sign of v * levels - midpoint * s decides, which fma gets
// exactly (one rounding keeps the sign; v * levels is exact, levels being a power of two).
inline double round_scaled(double v, double s, double levels, double t) {
    const double k = std::nearbyint(t);
    const double distance = std::fabs(t - k);  // exact
    if (std::fabs(distance - 0.5) > std::fabs(t) * 0x1p-45) return k;
    const double other = t > k ? k + 1 : k - 1;  // the neighbour on the other side of the midpoint
    const double midpoint = (k + other) / 2;
    const double side = std::fma(-midpoint, s, v * levels);  // exact sign of x L - midpoint s
    if (side == 0) return std::fmod(k, 2.0) == 0 ? k : other;
    return (side > 0) == (other > k) ? other : k;
}

// The quantizer of the header comment for one s: integer codes k in [lowest, levels] (lowest =
// -levels signed, 0 unsigned), value k * step. Clamping the scaled value before rounding equals
// clamping after it because the bounds are integers, and keeps the rounded value small. The level
// spacing s / levels is exact (levels is a power of two). nearbyint rounds to nearest even in the
// default floating-point environment, which lowbit assumes everywhere.
struct clip_grid {
    double s, levels, lowest, inverse, step;
    clip_grid(double scale, int bits, signedness sign)
        : s(scale), levels(std::ldexp(1.0, sign == signedness::signed_values ? bits - 1 : bits)),
          lowest(sign == signedness::signed_values ? -levels : 0.0), inverse(levels / scale), step(scale / levels) {}

    double code(double v) const {
        const double t = v * inverse;
        return t >= levels ? levels : t <= lowest ? lowest : round_scaled(v, s, levels, t);
    }
};

// hi + lo (|lo| at most half an ulp of hi, as fma's residual is) rounded once to float, to
// nearest even: float(hi) unless hi lies exactly halfway between two floats, where lo decides.
inline float round_to_float(double hi, double lo) {
    const float f = float(hi);
    const double below_or_above = double(f);
    if (lo == 0 || hi == below_or_above) return f;
    const float other = std::nextafter(f, hi > below_or_above ? INFINITY : -INFINITY);
    if (hi - below_or_above != (double(other) - below_or_above) / 2) return f;  // not a midpoint
    return (lo > 0) == (other > f) ? other : f;
}

inline double empirical_mse_unchecked(std::span<const float> x, double s, int bits, signedness sign) {
    const clip_grid grid(s, bits, sign);
    double sum = 0;
    for (const float value : x) {
        const double v = double(value);
        const double q = grid.code(v) * grid.step;
        sum += (v - q) * (v - q);
    }
    return sum / double(x.size());
}

// Argmin of f over s in (0, hi]: the grid hi * k / steps, k = 1..steps, then a second grid of
// 2 * steps - 1 points between the neighbours of the best point. Ties keep the smaller s.
template <typename F>
double grid_argmin(F&& f, double hi, int steps) {
    double best_s = 0, best = 0;
    int best_k = 0;
    for (int k = 1; k <= steps; ++k) {
        const double s = k == steps ? hi : hi * double(k) / double(steps);
        const double v = f(s);
        if (k == 1 || v < best) best = v, best_s = s, best_k = k;
    }
    const double lo = hi * double(best_k - 1) / double(steps);
    const double up = std::min(hi, hi * double(best_k + 1) / double(steps));
    for (int j = 1; j < 2 * steps; ++j) {
        const double s = lo + (up - lo) * double(j) / double(2 * steps);
        if (s <= 0 || s > hi) continue;
        const double v = f(s);
        if (v < best || (v == best && s < best_s)) best = v, best_s = s;
    }
    return best_s;
}

}  // namespace detail

// max |x| (signed) or max(max x, 0) (unsigned): the scale that clips nothing. 0 for data without a
// non-zero magnitude (the caller decides what to do with such a tensor, e.g. a pruned channel).
inline double calibrate_max(std::span<const float> x, signedness sign = signedness::signed_values) {
    detail::check_calibration_data(x, "calibrate_max");
    double m = 0;
    for (const float v : x) m = std::max(m, detail::calibration_magnitude(v, sign));
    return m;
}

// The percentile-th percentile (nearest rank) of |x| (signed) or max(x, 0) (unsigned): the
// ceil(percentile / 100 * n)-th smallest value, 1-based, so 100 gives the max and every
// percentile in (0, 100] names an element. A rank within 1e-9 of an integer is taken as that
// integer, so that 99.9% of 1000 elements is the 999th, not the 1000th, despite 99.9 being
// inexact in binary.
inline double calibrate_percentile(std::span<const float> x, double percentile,
                                   signedness sign = signedness::signed_values) {
    if (!(percentile > 0 && percentile <= 100))
        throw std::invalid_argument("lowbit::calibrate_percentile: percentile = " +
                                    detail::calibration_number(percentile) + " must be in (0, 100]");
    detail::check_calibration_data(x, "calibrate_percentile");
    std::vector<double> a(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) a[i] = detail::calibration_magnitude(x[i], sign);
    const double n = double(a.size());
    const double exact_rank = percentile / 100.0 * n;
    const double nearest = std::round(exact_rank);
    double rank = std::fabs(exact_rank - nearest) <= 1e-9 * std::max(1.0, exact_rank) ? nearest
                                                                                        : std::ceil(exact_rank);
    rank = std::clamp(rank, 1.0, n);
    const auto k = std::size_t(rank) - 1;
    std::nth_element(a.begin(), a.begin() + std::ptrdiff_t(k), a.end());
    return a[k];
}

// The model J(s) of the header comment (papers.md, OCTAV): what OCTAV minimizes.
inline double clipping_mse(std::span<const float> x, double s, int bits, signedness sign) {
    detail::check_calibration_data(x, "clipping_mse");
    detail::check_clipping_scalar(s, "clipping_mse");
    detail::check_calibration_bits(bits, "clipping_mse");
    return detail::clipping_mse_unchecked(x, s, bits, sign);
}

// The true mean squared error of quantizing x with the quantizer of the header comment.
inline double empirical_mse(std::span<const float> x, double s, int bits, signedness sign) {
    detail::check_calibration_data(x, "empirical_mse");
    detail::check_clipping_scalar(s, "empirical_mse");
    detail::check_calibration_bits(bits, "empirical_mse");
    return detail::empirical_mse_unchecked(x, s, bits, sign);
}

// Q(x) of the header comment into out (as float: k * s / levels correctly rounded, ties to even;
// a signed quantizer keeps the sign of a value that rounds to 0, as IEEE rounding does, an
// unsigned one gives +0 for every x <= 0),
// for training through the quantizer (fake quantization; scaling/clip_gradients.hpp gives its
// gradients). out and x the same length (out may alias x); s > 0 and finite; NaN or infinite x
// rejected, as everywhere in this file.
inline void quantize_clipped(std::span<const float> x, double s, int bits, signedness sign, std::span<float> out) {
    if (out.size() != x.size())
        throw std::invalid_argument("lowbit::quantize_clipped: out has " + std::to_string(out.size()) +
                                    " elements, x has " + std::to_string(x.size()));
    if (x.empty()) return;
    detail::check_calibration_data(x, "quantize_clipped");
    detail::check_clipping_scalar(s, "quantize_clipped");
    detail::check_calibration_bits(bits, "quantize_clipped");
    const detail::clip_grid grid(s, bits, sign);
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double k = grid.code(double(x[i]));
        const double hi = k * grid.step;
        out[i] = detail::round_to_float(hi, std::fma(k, grid.step, -hi));
    }
}

// Brute force: the s in (0, m] (m = calibrate_max(x, sign)) with the smallest empirical_mse on
// the grid s = m * k / steps, k = 1..steps, refined by a second grid of 2 * steps - 1 points
// spaced m / steps^2 between the two neighbours of the best grid point (resolution m / steps^2
// if the error is unimodal near its minimum). Ties keep the smaller s. Cost: 3 * steps passes
// over x. The empirical MSE of a finite sample is piecewise smooth in s with small jumps, so this
// is a reference for checking OCTAV, not a fast calibration.
inline double calibrate_mse_sweep(std::span<const float> x, int bits, signedness sign, int steps = 1000) {
    detail::check_calibration_data(x, "calibrate_mse_sweep");
    detail::check_calibration_bits(bits, "calibrate_mse_sweep");
    if (steps < 1)
        throw std::invalid_argument("lowbit::calibrate_mse_sweep: steps = " + std::to_string(steps) +
                                    " must be at least 1");
    const double m = calibrate_max(x, sign);
    if (m == 0)
        throw std::invalid_argument(std::string("lowbit::calibrate_mse_sweep: x has no ") +
                                    (sign == signedness::signed_values ? "non-zero" : "positive") + " value");
    return detail::grid_argmin([&](double s) { return detail::empirical_mse_unchecked(x, s, bits, sign); }, m,
                               steps);
}

// The Newton step of OCTAV: the paper's, or the exact stationary point of J (see octav below).
enum class octav_step : std::uint8_t { paper, with_density };

// OCTAV's settings by name, for the overloads that take them:
//   lowbit::octav(x, {.bits = 4, .sign = lowbit::signedness::unsigned_values, .iterations = 20});
struct octav_options {
    int bits = 4;                                     // the quantizer's bits, 1..32
    signedness sign = signedness::signed_values;      // unsigned: negative values count as zeros
    int iterations = 10;                              // Newton-Raphson updates at most
    double start = 0;                                 // s_1; 0: the paper's sum(a) / count(a > 0)
    octav_step step = octav_step::with_density;       // see octav below
};

struct octav_result {
    double scale = 0;             // the last iterate (the smaller of the two in a 2-cycle)
    int iterations = 0;           // Newton-Raphson updates done (fewer than asked once it repeats)
    std::vector<double> history;  // s_1 (the start), s_2, ..., s_{iterations+1}
};

namespace detail {

// OCTAV's passes over magnitudes (millions of values, a dozen times per training step, for a
// convolution's activations) sum in 8 interleaved lanes (element i into lane i % 8), added in a
// fixed order at the end, on GCC/Clang vectors of 4 doubles (two per group of 8: SSE2 pairs, AVX
// registers, AVX-512 halves alike): the order of every sum is fixed, whatever the thread count,
// and the loop runs near memory speed (a single sequential sum cannot be vectorized, floating-point
// addition not being associative; GCC does not vectorize 8 scalar lanes either: measured 5-6x
// slower on 7.2M values). Products of 0/1 indicators stand for branches; they are exact, so an fma
// contraction of them changes nothing (the compiler may still contract v * v and the scalar
// arithmetic where the instruction set has fma: the last bits of a scale may differ between an
// x86-64 and an x86-64-v3 build, as they did before).
typedef double double4 __attribute__((vector_size(32)));
typedef std::int64_t int4x64 __attribute__((vector_size(32)));

struct lanes {
    double4 v[2] = {};
    double total() const { return ((v[0][0] + v[1][0]) + (v[0][1] + v[1][1])) + ((v[0][2] + v[1][2]) + (v[0][3] + v[1][3])); }
};

// The bits of 1.0: a comparison's all-ones lanes and-ed with them give 1.0 where it holds, 0.0
// elsewhere. (Vectors pass by reference and no function returns one: a 32-byte vector by value
// changes the ABI below AVX, which GCC warns of.)
inline const int4x64 one_bits = int4x64(double4{} + 1.0);

// f(half, v) for every group of 8 magnitudes (half 0: elements 0-3 of the group, 1: elements 4-7),
// the last group padded with zeros (every sum below takes nothing from a zero).
template <class T, class F>
void for_each_group(std::span<const T> a, F&& f) {
    double4 v[2];
    const auto load = [&](int half, const T* p, std::size_t count) {
        v[half] = double4{};
        for (std::size_t j = 0; j < count; ++j) v[half][j] = double(p[j]);
    };
    const std::size_t whole = a.size() - a.size() % 8;
    for (std::size_t i = 0; i < whole; i += 8) {
        if constexpr (std::is_same_v<T, float>) {
            typedef float float4 __attribute__((vector_size(16)));
            float4 low, high;
            std::memcpy(&low, a.data() + i, sizeof low);
            std::memcpy(&high, a.data() + i + 4, sizeof high);
            v[0] = __builtin_convertvector(low, double4);
            v[1] = __builtin_convertvector(high, double4);
        } else {
            load(0, a.data() + i, 4);
            load(1, a.data() + i + 4, 4);
        }
        f(0, v[0]), f(1, v[1]);
    }
    const std::size_t rest = a.size() - whole;
    if (rest > 0) {
        load(0, a.data() + whole, std::min<std::size_t>(rest, 4));
        load(1, a.data() + whole + 4, rest > 4 ? rest - 4 : 0);
        f(0, v[0]), f(1, v[1]);
    }
}

// The kernel bandwidth of the density term: Silverman's rule on the non-zero magnitudes.
template <class T>
double density_bandwidth(std::span<const T> a) {
    lanes sum, sum_sq, n;
    for_each_group(a, [&](int k, const double4& v) {
        sum.v[k] += v, sum_sq.v[k] += v * v, n.v[k] += double4((v > 0.0) & one_bits);
    });
    const double count = n.total(), mean = sum.total() / count;
    const double variance = std::max(0.0, sum_sq.total() / count - mean * mean);
    const double sigma = variance > 0 ? std::sqrt(variance) : mean;
    return 1.06 * sigma * std::pow(count, -0.2);
}

// OCTAV on magnitudes a_i >= 0 (zeros included; they never count), for a quantizer whose
// rounding noise is c s^2 (c = noise_constant(bits, sign) for the grids above; other grids, such
// as VS-Quant's symmetric codes in scaling/block_scaling.hpp, have their own c). T: double, or
// float where the magnitudes are floats' (exact: |x| of a float is a float), half the memory
// traffic; the arithmetic is double either way.
template <class T>
octav_result octav_with_noise(std::span<const T> a, double c, int iterations, double start, octav_step step) {
    const double h = step == octav_step::with_density ? density_bandwidth(a) : 0.0;
    double s = start;
    if (s == 0) {
        lanes sum, nonzero;
        for_each_group(a, [&](int k, const double4& v) { sum.v[k] += v, nonzero.v[k] += double4((v > 0.0) & one_bits); });
        s = sum.total() / nonzero.total();
    }
    octav_result result;
    result.history.reserve(std::size_t(iterations) + 1);
    result.history.push_back(s);
    for (int n = 0; n < iterations; ++n) {
        // counts as doubles: exact below 2^53, and in the same vector registers as the sums
        lanes clipped_sum, inside, clipped, near;
        for_each_group(a, [&](int k, const double4& v) {
            const double4 out = double4((v > s) & one_bits), positive = double4((v > 0.0) & one_bits), d = v - s;
            clipped_sum.v[k] += out * v;
            clipped.v[k] += out;
            inside.v[k] += positive - positive * out;
            near.v[k] += positive * double4((d < h) & (d > -h) & one_bits);
        });
        // with_density: n f(s) estimated as count(|a - s| < h) / 2h (a box kernel)
        const double density_term = h > 0 ? c * s * near.total() / (4 * h) : 0.0;
        const double next = clipped_sum.total() / (c * inside.total() + clipped.total() + density_term);
        ++result.iterations;
        result.history.push_back(next);
        if (next == s) break;  // the update depends on s only through the counts: a fixed point stays
        const std::size_t size = result.history.size();
        if (size >= 3 && next == result.history[size - 3]) {  // s_{n+1} == s_{n-1}: a 2-cycle
            result.scale = std::min(s, next);
            return result;
        }
        s = next;
    }
    result.scale = result.history.back();
    return result;
}

template <class T>
octav_result octav_on_magnitudes(std::span<const T> a, int bits, signedness sign, int iterations, double start,
                                 octav_step step = octav_step::paper) {
    return octav_with_noise(a, noise_constant(bits, sign), iterations, start, step);
}

inline void check_octav_arguments(int bits, int iterations, double start, const char* function) {
    check_calibration_bits(bits, function);
    if (iterations < 0)
        throw std::invalid_argument(std::string("lowbit::") + function + ": iterations = " +
                                    std::to_string(iterations) + " must be at least 0");
    if (!(start >= 0) || !std::isfinite(start))
        throw std::invalid_argument(std::string("lowbit::") + function + ": start = " + calibration_number(start) +
                                    " must be positive and finite (or 0 for the default start)");
}

}  // namespace detail

// OCTAV (papers.md section 3): the Newton-Raphson iteration for the minimum of J(s). The paper's
// step (step = octav_step::paper):
//
//   s_{n+1} = sum(a * 1{a > s_n}) / ( c * count(0 < a <= s_n) + count(a > s_n) ),
//
// a = |x| and c = 4^-B / 3 (signed), a = max(x, 0) and c = 4^-B / 12 (unsigned: negative values
// are treated as zeros, see the header comment). Zeros are excluded from both counts. A fixed
// point satisfies c s count(0 < a <= s) = sum((a - s) 1{a > s}), i.e. J'(s) = 0 with the
// derivative of the indicator in the noise term dropped, as the paper does. For continuous data
// that term is c s^2 times the density of a at s: negligible where s sits in the tail (B >= 4),
// not at B = 2-3, where the fixed point lies 1-3% above the minimum of J (and of the empirical
// MSE) for Gaussian data, at a cost below 0.5% in MSE (measured in the tests).
//
// step = octav_step::with_density (the default) keeps that term: J'(s) = 0 exactly is
//   s = sum(a 1{a > s}) / ( c count(0 < a <= s) + count(a > s) + c s n f(s) / 2 ),
// with n f(s) estimated by a box kernel, count(0 < a, |a - s| < h) / 2h, h = 1.06 sigma n^(-1/5)
// (Silverman's rule on the non-zero magnitudes). Its fixed point is the minimum of J at every B
// (within 1% of the brute-force minimum of J at B = 2..8 in the tests, and of the empirical MSE
// except where J's uniform-noise model itself is off: Laplace data at B = 2-3), where the paper's
// form is 1-4% off at B = 2-3. The iteration stops as the paper's does (a repeat, a 2-cycle, or
// the count); the paper's properties below (exact fixed points, 2-cycles) are the paper step's.
//
// start: s_1; 0 picks the paper's s_1 = sum(a) / count(a > 0). Any positive start converges. A
// start at or above max(a) clips nothing, so s_2 = 0, and s_3 = the default start.
// The update is constant between consecutive data magnitudes, so on finite data the iteration
// reaches an exact fixed point (s_{n+1} == s_n) after finitely many steps, or an exact 2-cycle
// (s_{n+1} == s_{n-1}) where J' (without the indicator term) jumps over zero at a data
// magnitude: c s count(0 < a <= s) grows by c s whenever s passes a magnitude, and the two values
// of the cycle straddle that magnitude, about a relative c / count(a > s) apart (3e-5 for 20000
// Gaussian samples at B = 1). The iteration stops at either (result.iterations < iterations); in a 2-cycle
// the scale is the smaller value, so that every start that reaches the cycle gives the same scale.
// Whether 10 iterations reach it depends on B: the default start is near mean|x|, and the
// iterates climb to the optimum in steps that shrink with c; at B = 8 a dozen or more may be
// needed (see the tests for measured distances), so ask for more where it matters.
//
// std::invalid_argument: empty x, non-finite x, x without a non-zero (signed) or positive
// (unsigned) value, bits outside [1, 32], iterations < 0, start < 0 or not finite.
inline octav_result octav(std::span<const float> x, int bits, signedness sign, int iterations = 10,
                          double start = 0, octav_step step = octav_step::with_density) {
    detail::check_calibration_data(x, "octav");
    detail::check_octav_arguments(bits, iterations, start, "octav");
    std::vector<float> a(x.size());  // |x| or max(x, 0) of a float is a float
    bool any = false;
    for (std::size_t i = 0; i < x.size(); ++i) {
        a[i] = float(detail::calibration_magnitude(x[i], sign));
        any = any || a[i] > 0;
    }
    if (!any)
        throw std::invalid_argument(std::string("lowbit::octav: x has no ") +
                                    (sign == signedness::signed_values ? "non-zero" : "positive") + " value");
    return detail::octav_on_magnitudes(std::span<const float>(a), bits, sign, iterations, start, step);
}

inline octav_result octav(std::span<const float> x, const octav_options& o) {
    return octav(x, o.bits, o.sign, o.iterations, o.start, o.step);
}

namespace detail {

inline void check_matrix(const float* data, std::size_t rows, std::size_t cols, int axis, const char* function) {
    if (rows == 0 || cols == 0)
        throw std::invalid_argument(std::string("lowbit::") + function + ": rows = " + std::to_string(rows) +
                                    ", cols = " + std::to_string(cols) + ": both must be positive");
    if (data == nullptr) throw std::invalid_argument(std::string("lowbit::") + function + ": data is null");
    if (axis != 0 && axis != 1)
        throw std::invalid_argument(std::string("lowbit::") + function + ": axis = " + std::to_string(axis) +
                                    " must be 0 (one scale per column) or 1 (one scale per row)");
}

// Channel `channel` of the matrix into `out` (resized to the channel's length).
inline void gather_channel(const float* data, std::size_t rows, std::size_t cols, int axis, std::size_t channel,
                           std::vector<float>& out) {
    if (axis == 1) {
        out.assign(data + channel * cols, data + (channel + 1) * cols);
    } else {
        out.resize(rows);
        for (std::size_t r = 0; r < rows; ++r) out[r] = data[r * cols + channel];
    }
}

}  // namespace detail

// Per-channel calibration of a row-major rows x cols matrix `data` (element (r, c) at
// data[r * cols + c]). axis names the dimension reduced over, as in NumPy: axis 0 reduces over
// the rows and gives one scale per column (cols scales, e.g. a K x N weight matrix with output
// channels in columns); axis 1 reduces over the columns and gives one scale per row (rows scales,
// e.g. an N x K weight matrix with output channels in rows).
//
// calibrate_max per channel; a channel without a non-zero magnitude gets 0.
inline std::vector<double> calibrate_max_per_channel(const float* data, std::size_t rows, std::size_t cols,
                                                     int axis, signedness sign = signedness::signed_values) {
    detail::check_matrix(data, rows, cols, axis, "calibrate_max_per_channel");
    detail::check_calibration_data({data, rows * cols}, "calibrate_max_per_channel", "data");
    const std::size_t channels = axis == 0 ? cols : rows;
    std::vector<double> scales(channels);
    std::vector<float> channel;
    for (std::size_t c = 0; c < channels; ++c) {
        detail::gather_channel(data, rows, cols, axis, c, channel);
        scales[c] = calibrate_max(channel, sign);
    }
    return scales;
}

// OCTAV per channel, every channel from o.start (0: its own default start). A channel without a
// non-zero (signed) or positive (unsigned) value has no MSE-optimal scale: std::invalid_argument
// naming the channel.
inline std::vector<double> octav_per_channel(const float* data, std::size_t rows, std::size_t cols, int axis,
                                             const octav_options& o) {
    const int bits = o.bits, iterations = o.iterations;
    const signedness sign = o.sign;
    detail::check_matrix(data, rows, cols, axis, "octav_per_channel");
    detail::check_calibration_data({data, rows * cols}, "octav_per_channel", "data");
    detail::check_octav_arguments(bits, iterations, o.start, "octav_per_channel");
    const std::size_t channels = axis == 0 ? cols : rows;
    std::vector<double> scales(channels);
    std::vector<float> channel;
    std::vector<float> a;
    for (std::size_t c = 0; c < channels; ++c) {
        detail::gather_channel(data, rows, cols, axis, c, channel);
        a.resize(channel.size());
        bool any = false;
        for (std::size_t i = 0; i < channel.size(); ++i) {
            a[i] = float(detail::calibration_magnitude(channel[i], sign));
            any = any || a[i] > 0;
        }
        if (!any)
            throw std::invalid_argument(std::string("lowbit::octav_per_channel: data channel ") + std::to_string(c) +
                                        (axis == 0 ? " (column)" : " (row)") + " has no " +
                                        (sign == signedness::signed_values ? "non-zero" : "positive") + " value");
        scales[c] = detail::octav_on_magnitudes(std::span<const float>(a), bits, sign, iterations, o.start, o.step).scale;
    }
    return scales;
}

// The same with the settings as positional arguments (each channel from the default start).
inline std::vector<double> octav_per_channel(const float* data, std::size_t rows, std::size_t cols, int axis,
                                             int bits, signedness sign, int iterations = 10,
                                             octav_step step = octav_step::with_density) {
    return octav_per_channel(data, rows, cols, axis,
                             octav_options{.bits = bits, .sign = sign, .iterations = iterations, .step = step});
}

}  // namespace lowbit
