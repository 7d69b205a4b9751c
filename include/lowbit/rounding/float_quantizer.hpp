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
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace lowbit {

namespace detail {

// Rounds a block from `in` into a local array: the array cannot alias `in`, and the trip
// count is fixed, so compilers vectorize the loop at -O2 as well as -O3 without alias checks.
// `Short` is the kernel of dispatch_short_kernel; the rare inputs it cannot take are rounded
// again by the full kernel.
template <rounding Mode, kernel_inputs Short, class T, std::size_t Block>
[[gnu::always_inline]] inline void round_block(const T* in, T (&values)[Block],
                                               const std::uint32_t (&random)[Block],
                                               const rounding_plan<T>& plan) {
    using U = typename detail::binary_layout<T>::bits;
    U min_key = U(-1);
    for (std::size_t j = 0; j < Block; ++j) {
        values[j] = round_with_plan<Mode, T, Short>(in[j], plan, random[j]);
        min_key = std::min(min_key, full_kernel_key(in[j]));
    }
    const auto full_keys = full_kernel_keys<Short>(plan);
    if (min_key >= full_keys) return;
    // Again in pieces of 16, so that the full kernel runs on one or two vectors, not all.
    constexpr std::size_t piece = std::min(Block, std::size_t(16));
    for (std::size_t start = 0; start < Block; start += piece) {
        U piece_min = U(-1);
        for (std::size_t j = start; j < start + piece; ++j) piece_min = std::min(piece_min, full_kernel_key(in[j]));
        if (piece_min < full_keys)
            for (std::size_t j = start; j < start + piece; ++j)
                if (needs_full_kernel<Short>(in[j], plan)) values[j] = round_with_plan<Mode, T>(in[j], plan, random[j]);
    }
}

// Arrays larger than this are written with streaming stores, as memcpy does: the output does
// not fit in cache anyway, and skipping the read-for-ownership of each output line saves a third
// of the memory traffic.
inline constexpr std::size_t streaming_bytes = std::size_t(4) << 20;

// Copies `bytes` (a multiple of 16) to a 16-byte aligned address, bypassing the cache where the
// target has such stores.
inline void store_streaming(void* out, const void* in, std::size_t bytes) {
#if defined(__SSE2__)
    for (std::size_t k = 0; k < bytes / 16; ++k)
        _mm_stream_si128(static_cast<__m128i*>(out) + k, _mm_load_si128(static_cast<const __m128i*>(in) + k));
#else
    std::memcpy(out, in, bytes);
#endif
}

inline void streaming_stores_done() {
#if defined(__SSE2__)
    _mm_sfence();  // order the streaming stores before whatever the caller does next
#endif
}

// Rounds n < one block of values through a zero-padded block.
template <rounding Mode, kernel_inputs Short, class T, std::size_t Block>
void round_partial(const T* in, T* out, std::size_t n, const rounding_plan<T>& plan,
                   std::uint64_t seed, std::uint64_t first_index) {
    T padded[Block] = {};
    T values[Block];
    std::uint32_t random[Block] = {};
    std::copy_n(in, n, padded);
    if constexpr (Mode == rounding::stochastic) fill_random_bits(seed, first_index, random, n);
    round_block<Mode, Short>(padded, values, random, plan);
    std::copy_n(values, n, out);
}

// Rounds n values, out[i] = round(in[i]); `out` may be `in`.
template <rounding Mode, kernel_inputs Short, class T>
void round_array(const T* in, T* out, std::size_t n, const rounding_plan<T>& shared_plan,
                 std::uint64_t seed, std::uint64_t first_index) {
    const rounding_plan<T> plan = shared_plan;  // a local copy: stores to out cannot alias it
    constexpr std::size_t block = 64;  // whole cache lines, and one group of random words
    alignas(64) T values[block];
    std::uint32_t random[block] = {};
    // Stochastic rounding starts its blocks on a group of 64 random words.
    std::size_t i = Mode == rounding::stochastic ? std::min(n, std::size_t((64 - first_index % 64) % 64)) : 0;
    round_partial<Mode, Short, T, block>(in, out, i, plan, seed, first_index);
    const bool streaming = n * sizeof(T) >= streaming_bytes && in != out &&
                           reinterpret_cast<std::uintptr_t>(out + i) % 16 == 0;
    for (; i + block <= n; i += block) {
        if constexpr (Mode == rounding::stochastic) fill_random_bits(seed, first_index + i, random, block);
        round_block<Mode, Short>(in + i, values, random, plan);
        if (streaming) store_streaming(out + i, values, sizeof(values));
        else std::copy_n(values, block, out + i);
    }
    if (streaming) streaming_stores_done();
    if (i < n) round_partial<Mode, Short, T, block>(in + i, out + i, n - i, plan, seed, first_index + i);
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

    // Defined below the class; under LOWBIT_COMPILED_LIB only declared: its instantiations for
    // every rounding mode and kernel (15 MB of compiler memory) are compiled once, into the
    // library (src/compiled.cpp), instead of in every file that includes this header.
    template <class T>
    void many(std::span<const T> in, std::span<T> out, std::uint64_t first_index) const;
};

#if !defined(LOWBIT_COMPILED_LIB) || defined(LOWBIT_COMPILING_LIB)
template <class T>
void float_quantizer::many(std::span<const T> in, std::span<T> out, std::uint64_t first_index) const {
    if (in.size() != out.size())
        throw std::invalid_argument("lowbit::float_quantizer: output size " + std::to_string(out.size()) +
                                    " != input size " + std::to_string(in.size()));
    if constexpr (std::is_same_v<T, float>) {
        if (!float_native()) {
            // Through double in blocks (rare: formats wider than float's range or precision),
            // after checking the settings as the other paths do, also for an empty array.
            (void)rounding_plan<double>::make(format, on_overflow, random_bits);
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
        dispatch_short_kernel<m()>(plan, [&](auto kernel) {
            detail::round_array<m(), kernel()>(in.data(), out.data(), in.size(), plan, seed, first_index);
        });
    });
}
#endif

}  // namespace lowbit
