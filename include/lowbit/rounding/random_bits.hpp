// lowbit/rounding/random_bits.hpp: counter-based random bits for stochastic rounding.
//
// Element `index` of a stream with key `seed` gets 32 random bits from Random123's Philox4x32-10:
// counter = index / 4, output word index % 4. No state is shared, so results are reproducible and
// the same for any thread count or any split of an array into pieces.
#pragma once

#include <Random123/philox.h>

#include <cstddef>
#include <cstdint>

namespace lowbit {

namespace detail {

inline r123::Philox4x32::ctr_type philox_block(std::uint64_t seed, std::uint64_t block) {
    const r123::Philox4x32::ctr_type ctr{{std::uint32_t(block), std::uint32_t(block >> 32), 0u, 0u}};
    const r123::Philox4x32::key_type key{{std::uint32_t(seed), std::uint32_t(seed >> 32)}};
    return r123::Philox4x32{}(ctr, key);
}

}  // namespace detail

// The 32 random bits of element `index` in the stream `seed`.
inline std::uint32_t random_bits_at(std::uint64_t seed, std::uint64_t index) {
    return detail::philox_block(seed, index / 4)[index % 4];
}

// out[j] = random_bits_at(seed, first_index + j) for j < n, one Philox call per 4 elements.
inline void fill_random_bits(std::uint64_t seed, std::uint64_t first_index, std::uint32_t* out,
                             std::size_t n) {
    std::size_t j = 0;
    while (j < n) {
        const std::uint64_t index = first_index + j;
        const auto words = detail::philox_block(seed, index / 4);
        for (std::uint64_t w = index % 4; w < 4 && j < n; ++w, ++j) out[j] = words[w];
    }
}

}  // namespace lowbit
