// lowbit/rounding/float_quantizer.hpp: a configured rounding to a float format, for scalars and
// arrays.
//
//   lowbit::float_quantizer q{.format = lowbit::fp8_e4m3, .mode = lowbit::rounding::stochastic,
//                             .seed = 42};
//   q(x);                       // one value
//   q(in, out);  q(data);       // spans of float or double: vectorized, in place allowed
//
// Element i of an array call gets the random bits of index first_index + i (random_bits.hpp), so
// q(x, k) of a scalar equals element k of an array call, whatever the split of the array.
#pragma once

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/modes.hpp>
#include <lowbit/rounding/random_bits.hpp>
#include <lowbit/rounding/rounding_plan.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace lowbit {

namespace detail {

// Rounds n values. Works on blocks of 16 held in local arrays: a fixed trip count over memory
// that cannot alias lets compilers vectorize the body at -O2 as well as -O3.
template <rounding Mode, class T>
void round_array(const T* in, T* out, std::size_t n, const rounding_plan<T>& plan,
                 std::uint64_t seed, std::uint64_t first_index) {
    constexpr std::size_t block = 16;
    T values[block];
    std::uint32_t random[block] = {};
    for (std::size_t i = 0; i < n; i += block) {
        const std::size_t len = std::min(block, n - i);
        std::copy_n(in + i, len, values);
        std::fill(values + len, values + block, T(0));
        if constexpr (Mode == rounding::stochastic) fill_random_bits(seed, first_index + i, random, len);
        for (std::size_t j = 0; j < block; ++j) values[j] = round_with_plan<Mode>(values[j], plan, random[j]);
        std::copy_n(values, len, out + i);
    }
}

}  // namespace detail

struct float_quantizer {
    float_format format{};
    rounding mode = rounding::nearest_even;
    overflow on_overflow = overflow::infinity;
    std::uint64_t seed = 0;  // key of the random stream of stochastic rounding
    int random_bits = 32;    // random bits per stochastic rounding, 1..32

    // One value; `index` selects its random bits (stochastic rounding only).
    float operator()(float x, std::uint64_t index = 0) const { return one(x, index); }
    double operator()(double x, std::uint64_t index = 0) const { return one(x, index); }

    // Arrays: out[i] = (*this)(in[i], first_index + i). `out` may be `in`.
    void operator()(std::span<const float> in, std::span<float> out, std::uint64_t first_index = 0) const {
        many(in, out, first_index);
    }
    void operator()(std::span<const double> in, std::span<double> out, std::uint64_t first_index = 0) const {
        many(in, out, first_index);
    }
    void operator()(std::span<float> data, std::uint64_t first_index = 0) const {
        many(std::span<const float>(data), data, first_index);
    }
    void operator()(std::span<double> data, std::uint64_t first_index = 0) const {
        many(std::span<const double>(data), data, first_index);
    }

    // Whether rounding float values runs natively in float (else through double, see quantize.hpp).
    bool float_native() const { return detail::format_fits<float>(format.validate()); }

private:
    template <class T>
    T one(T x, std::uint64_t index) const {
        if constexpr (std::is_same_v<T, float>)
            if (!float_native()) return float(one(double(x), index));
        const auto plan = rounding_plan<T>::make(format, on_overflow, random_bits);
        const std::uint32_t random = mode == rounding::stochastic ? random_bits_at(seed, index) : 0u;
        return dispatch_rounding(mode, [&](auto m) { return round_with_plan<m()>(x, plan, random); });
    }

    template <class T>
    void many(std::span<const T> in, std::span<T> out, std::uint64_t first_index) const {
        if (in.size() != out.size())
            throw std::invalid_argument("lowbit::float_quantizer: output size " + std::to_string(out.size()) +
                                        " != input size " + std::to_string(in.size()));
        if constexpr (std::is_same_v<T, float>) {
            if (!float_native()) {
                // Through double in blocks (rare: formats wider than float's range or precision).
                constexpr std::size_t block = 256;
                double buffer[block];
                for (std::size_t i = 0; i < in.size(); i += block) {
                    const std::size_t len = std::min(block, in.size() - i);
                    std::copy_n(in.data() + i, len, buffer);
                    many(std::span<const double>(buffer, len), std::span<double>(buffer, len), first_index + i);
                    std::copy_n(buffer, len, out.data() + i);
                }
                return;
            }
        }
        const auto plan = rounding_plan<T>::make(format, on_overflow, random_bits);
        dispatch_rounding(mode, [&](auto m) {
            detail::round_array<m()>(in.data(), out.data(), in.size(), plan, seed, first_index);
        });
    }
};

}  // namespace lowbit
