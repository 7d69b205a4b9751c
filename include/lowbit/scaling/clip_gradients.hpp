// lowbit/scaling/clip_gradients.hpp: gradient estimators for training through the clipped
// quantizer Q of lowbit/scaling/calibration.hpp (OCTAV, Sakr et al., ICML 2022; papers.md section 3).
//
// Q is piecewise constant, so its true derivative is zero almost everywhere; training uses a
// surrogate dQ/dx, the factor returned here, which multiplies the incoming gradient:
// dL/dx = factor(x, s) * dL/dQ(x).
//
//   STE: 1                                        every gradient passes, clipped values too
//   PWL: 1{|x| <= s}                              the derivative of clip(x, -s, s): clipped
//                                                 values get none
//   MAD: 1{|x| <= s} + (s / |x|) 1{|x| > s}       clipped values get a gradient that shrinks as
//                                                 they go further out ("magnitude-attenuated")
//
// Where each is used: the paper's best recipe uses MAD for weights (a clipped weight keeps a
// gradient, so it is not frozen outside [-s, s] and can come back) and PWL for activations (a
// clipped activation's gradient is cut, as for a ReLU6-style clip). STE is the baseline.
//
// The factors depend on |x| only, so they serve the unsigned quantizer [0, s] too for x >= 0;
// what a negative input to an unsigned quantizer gets is the business of the layer in front (a
// ReLU passes it no gradient). Precondition: s > 0 (the scalar functions are constexpr and do not
// check it; the span versions do). x = 0 is inside the range: every factor is 1. A NaN x gets 0
// from PWL and NaN from MAD (s / NaN), the NaN a reader would look for.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace lowbit {

// s is std::type_identity_t<T> so that ste_factor(x_float, 0.5) takes the 0.5 as a float.
template <std::floating_point T>
constexpr T ste_factor(T /*x*/, std::type_identity_t<T> /*s*/) noexcept {
    return T(1);
}

template <std::floating_point T>
constexpr T pwl_factor(T x, std::type_identity_t<T> s) noexcept {
    const T magnitude = x < 0 ? -x : x;
    return magnitude <= s ? T(1) : T(0);
}

template <std::floating_point T>
constexpr T mad_factor(T x, std::type_identity_t<T> s) noexcept {
    const T magnitude = x < 0 ? -x : x;
    return magnitude <= s ? T(1) : s / magnitude;
}

// The estimator by name, for code that chooses one at run time (a layer's clipped operands,
// nn/clipped_inputs.hpp).
enum class clip_gradient : std::uint8_t { ste, pwl, mad };

constexpr const char* to_string(clip_gradient g) {
    return g == clip_gradient::ste ? "ste" : g == clip_gradient::pwl ? "pwl" : "mad";
}

template <std::floating_point T>
constexpr T clip_factor(clip_gradient g, T x, std::type_identity_t<T> s) noexcept {
    return g == clip_gradient::ste ? ste_factor(x, s) : g == clip_gradient::pwl ? pwl_factor(x, s) : mad_factor(x, s);
}

namespace detail {

template <typename T, typename F>
void fill_clip_factors(std::span<const T> x, T s, std::span<T> out, F factor, const char* function) {
    if (!(s > 0)) {
        char value[32];
        std::snprintf(value, sizeof value, "%.9g", double(s));
        throw std::invalid_argument(std::string("lowbit::") + function + ": s = " + value + " must be positive");
    }
    if (out.size() != x.size())
        throw std::invalid_argument(std::string("lowbit::") + function + ": out has " + std::to_string(out.size()) +
                                    " elements, x has " + std::to_string(x.size()));
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = factor(x[i], s);
}

}  // namespace detail

// Span versions: out[i] = factor(x[i], s); out and x the same length (std::invalid_argument
// naming out otherwise), s > 0 (std::invalid_argument naming s). out may alias x. Plain
// overloads for float and double rather than templates, so that vectors convert to spans.
inline void ste_factor(std::span<const float> x, float s, std::span<float> out) {
    detail::fill_clip_factors<float>(x, s, out, ste_factor<float>, "ste_factor");
}
inline void ste_factor(std::span<const double> x, double s, std::span<double> out) {
    detail::fill_clip_factors<double>(x, s, out, ste_factor<double>, "ste_factor");
}
inline void pwl_factor(std::span<const float> x, float s, std::span<float> out) {
    detail::fill_clip_factors<float>(x, s, out, pwl_factor<float>, "pwl_factor");
}
inline void pwl_factor(std::span<const double> x, double s, std::span<double> out) {
    detail::fill_clip_factors<double>(x, s, out, pwl_factor<double>, "pwl_factor");
}
inline void mad_factor(std::span<const float> x, float s, std::span<float> out) {
    detail::fill_clip_factors<float>(x, s, out, mad_factor<float>, "mad_factor");
}
inline void mad_factor(std::span<const double> x, double s, std::span<double> out) {
    detail::fill_clip_factors<double>(x, s, out, mad_factor<double>, "mad_factor");
}

}  // namespace lowbit
