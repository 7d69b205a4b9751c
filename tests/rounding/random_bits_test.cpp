// The random bits of stochastic rounding against Random123's Philox4x32-10 itself, through the
// layout random_bits.hpp documents: element i of stream `seed` is word (i / 16) % 4 of the
// counter (i / 64) * 16 + i % 16 under the key (seed low, seed high). The vectorized group path
// (AVX2 where the target has it) must give the same words as the scalar Random123 call.
#include <lowbit/rounding/random_bits.hpp>

#include <Random123/philox.h>

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

namespace {

std::uint32_t philox_word(std::uint64_t seed, std::uint64_t index) {
    const std::uint64_t counter = (index / 64) * 16 + index % 16;
    const r123::Philox4x32::ctr_type ctr{{std::uint32_t(counter), std::uint32_t(counter >> 32), 0u, 0u}};
    const r123::Philox4x32::key_type key{{std::uint32_t(seed), std::uint32_t(seed >> 32)}};
    return r123::Philox4x32{}(ctr, key)[(index / 16) % 4];
}

constexpr std::uint64_t seeds[] = {0, 7, 0xfeedbeef12345ull, 0xffffffffffffffffull};
// Groups whose 16 counters cross 2^32 (the counter's high word), and far ones.
constexpr std::uint64_t groups[] = {0, 1, 12345, (std::uint64_t(1) << 28) - 1, std::uint64_t(1) << 28,
                                    (std::uint64_t(1) << 40) + 3, (std::uint64_t(1) << 58) - 1};  // the last group of 2^64 indices

}  // namespace

TEST_CASE("random_bits_at is Philox4x32-10 in the documented layout") {
    for (std::uint64_t seed : seeds)
        for (std::uint64_t group : groups)
            for (std::uint64_t j = 0; j < 64; ++j) {
                const std::uint64_t index = group * 64 + j;
                INFO("seed " << seed << " index " << index);
                REQUIRE(lowbit::random_bits_at(seed, index) == philox_word(seed, index));
            }
}

TEST_CASE("fill_random_bits gives random_bits_at for any start and length") {
    std::uint32_t words[200];
    for (std::uint64_t seed : seeds)
        for (std::uint64_t group : groups)
            for (std::uint64_t offset : {0u, 1u, 15u, 16u, 63u})
                for (std::size_t n : {0u, 1u, 63u, 64u, 65u, 128u, 200u}) {
                    const std::uint64_t first = group * 64 + offset;
                    lowbit::fill_random_bits(seed, first, words, n);
                    for (std::size_t j = 0; j < n; ++j) {
                        INFO("seed " << seed << " first " << first << " n " << n << " j " << j);
                        REQUIRE(words[j] == philox_word(seed, first + j));
                    }
                }
}

TEST_CASE("philox_group fills the 64 words of a group, one call for all") {
    for (std::uint64_t seed : seeds)
        for (std::uint64_t group : groups) {
            std::uint32_t words[64];
            lowbit::detail::philox_group(seed, group, words);
            for (std::uint64_t j = 0; j < 64; ++j) {
                INFO("seed " << seed << " group " << group << " j " << j);
                REQUIRE(words[j] == philox_word(seed, group * 64 + j));
            }
        }
}
