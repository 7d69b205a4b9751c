// lowbit/sparse/zero_run_encoding.hpp: SCNN's compressed-sparse encoding (Parashar et al., ISCA
// 2017; papers.md section 6) of weights and activations.
//
// A block of values is stored as two vectors: the values that are not zero, and for each the
// number of zeros before it (since the previous stored value), in `run_bits` = 4 bits. A run of
// more zeros than the index can say (> 15) is broken by an explicit zero placeholder: a stored +0
// whose index is 15 stands for 16 zeros. Zeros after the last non-zero need no entry (no
// placeholder either): the block's length is known from the tensor's shape (kept beside the
// vectors), so an all-zero block has no entries at all.
//
// What counts as zero: the bit pattern of +0 only. A -0 or a NaN is stored as a value, so that
// decode(encode(x)) reproduces x bit for bit. (ReLU outputs and pruned weights are +0; a -0 would
// cost one entry. The multiply counts of zero_skipping.hpp follow arithmetic instead, where
// -0 == 0: a -0 operand is skipped there.)
//
// The blocks SCNN keeps:
//   weights      one block per (group of Kc output channels, input channel c): the Kc x R x S
//                filter taps of that channel, linearised k-major, then r, then s;
//   activations  one block per (PE tile, input channel c): the tile's values, row by row.
// Sizes: each entry costs value_bits (16 in the paper) + run_bits; dense storage is value_bits per
// value. Per-block bookkeeping (the entry counts) is left out of both.
#pragma once

#include <lowbit/sparse/conv_shape.hpp>
#include <lowbit/sparse/planar_tiling.hpp>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit::sparse {

inline bool is_stored_zero(float x) { return std::bit_cast<std::uint32_t>(x) == 0u; }  // +0 only

struct zero_run_block {
    std::vector<float> values;        // stored values: the non-zeros and the placeholders (+0)
    std::vector<std::uint8_t> runs;   // zeros before each stored value, each < 2^run_bits
    std::size_t length = 0;           // values in the decoded block
    int run_bits = 4;

    std::size_t entries() const { return values.size(); }
    std::size_t placeholders() const {
        std::size_t n = 0;
        for (const float v : values) n += is_stored_zero(v);
        return n;
    }
    std::size_t nonzeros() const { return entries() - placeholders(); }
};

inline void check_run_bits(int run_bits, const char* who) {
    if (run_bits < 1 || run_bits > 8)
        throw std::invalid_argument(std::string("lowbit::sparse::") + who + ": run_bits = " + std::to_string(run_bits) +
                                    " must be in [1, 8]");
}

inline zero_run_block encode_zero_runs(std::span<const float> x, int run_bits = 4) {
    check_run_bits(run_bits, "encode_zero_runs");
    const unsigned longest = (1u << run_bits) - 1;  // the largest run an index can say
    zero_run_block block;
    block.length = x.size();
    block.run_bits = run_bits;
    unsigned run = 0;
    for (const float v : x) {
        if (!is_stored_zero(v)) {
            block.values.push_back(v);
            block.runs.push_back(std::uint8_t(run));
            run = 0;
        } else if (run == longest) {
            // This zero would make the run too long for an index: store it as a placeholder that
            // closes the run (`longest` zeros, then this one).
            block.values.push_back(0.0f);
            block.runs.push_back(std::uint8_t(longest));
            run = 0;
        } else {
            ++run;
        }
    }
    // Placeholders after the last non-zero say nothing the length does not: drop them.
    while (!block.values.empty() && is_stored_zero(block.values.back())) block.values.pop_back(), block.runs.pop_back();
    return block;
}

// Throws std::invalid_argument when the block is malformed (mismatched vectors, an index out of
// range, more positions than its length).
inline std::vector<float> decode_zero_runs(const zero_run_block& block) {
    check_run_bits(block.run_bits, "decode_zero_runs");
    if (block.values.size() != block.runs.size())
        throw std::invalid_argument("lowbit::sparse::decode_zero_runs: " + std::to_string(block.values.size()) +
                                    " values but " + std::to_string(block.runs.size()) + " run indices");
    std::vector<float> out(block.length, 0.0f);
    std::size_t position = 0;
    for (std::size_t i = 0; i < block.values.size(); ++i) {
        if (block.runs[i] >> block.run_bits)
            throw std::invalid_argument("lowbit::sparse::decode_zero_runs: run index " + std::to_string(i) + " = " +
                                        std::to_string(block.runs[i]) + " does not fit in " +
                                        std::to_string(block.run_bits) + " bits");
        position += block.runs[i];
        if (position >= block.length)
            throw std::invalid_argument("lowbit::sparse::decode_zero_runs: entry " + std::to_string(i) +
                                        " lands at position " + std::to_string(position) + ", past the length " +
                                        std::to_string(block.length));
        out[position++] = block.values[i];
    }
    return out;
}

// The size of a set of blocks against dense storage of the same values.
struct encoded_size {
    std::uint64_t values = 0;        // decoded values
    std::uint64_t entries = 0;       // stored values, placeholders included
    std::uint64_t nonzeros = 0;
    std::uint64_t placeholders = 0;
    std::uint64_t bits = 0;          // entries x (value_bits + run_bits)
    std::uint64_t dense_bits = 0;    // values x value_bits

    // Bits per non-zero value (0 when there is none) and dense_bits / bits (0 when bits is 0).
    double bits_per_nonzero() const { return nonzeros == 0 ? 0.0 : double(bits) / double(nonzeros); }
    double compression_ratio() const { return bits == 0 ? 0.0 : double(dense_bits) / double(bits); }

    encoded_size& operator+=(const encoded_size& o) {
        values += o.values, entries += o.entries, nonzeros += o.nonzeros, placeholders += o.placeholders;
        bits += o.bits, dense_bits += o.dense_bits;
        return *this;
    }
};

inline encoded_size size_of(const zero_run_block& block, int value_bits = 16) {
    if (value_bits < 1 || value_bits > 64)
        throw std::invalid_argument("lowbit::sparse::size_of: value_bits = " + std::to_string(value_bits) +
                                    " must be in [1, 64]");
    encoded_size s;
    s.values = block.length;
    s.entries = block.entries();
    s.placeholders = block.placeholders();
    s.nonzeros = s.entries - s.placeholders;
    s.bits = s.entries * std::uint64_t(value_bits + block.run_bits);
    s.dense_bits = s.values * std::uint64_t(value_bits);
    return s;
}

inline encoded_size size_of(std::span<const zero_run_block> blocks, int value_bits = 16) {
    encoded_size total;
    for (const auto& b : blocks) total += size_of(b, value_bits);
    return total;
}

namespace detail {
inline void check_count(std::size_t have, std::int64_t need, const char* who, const char* what, const conv_shape& s) {
    if (std::int64_t(have) != need)
        throw std::invalid_argument(std::string("lowbit::sparse::") + who + ": " + std::to_string(have) + " " + what +
                                    " but the layer " + s.to_string() + " has " + std::to_string(need));
}
inline void check_positive(int v, const char* who, const char* name) {
    if (v < 1)
        throw std::invalid_argument(std::string("lowbit::sparse::") + who + ": " + name + " = " + std::to_string(v) +
                                    " must be >= 1");
}
}  // namespace detail

// Weights (K x C/groups x R x S) as SCNN's weight blocks: for each group of `kc` output channels
// (the last one smaller when kc does not divide K / groups; groups never straddle a convolution
// group), for each input channel c of that group, the kc x R x S taps in (k, r, s) order.
// Blocks are ordered (output-channel group, c).
inline std::vector<zero_run_block> encode_weights(std::span<const float> weights, const conv_shape& shape, int kc = 8,
                                                  int run_bits = 4) {
    shape.validate();
    detail::check_positive(kc, "encode_weights", "kc");
    detail::check_count(weights.size(), shape.weight_count(), "encode_weights", "weights", shape);
    const int cg = shape.channels_per_group(), taps = shape.R * shape.S;
    std::vector<zero_run_block> blocks;
    std::vector<float> block;
    for (int g = 0; g < shape.groups; ++g)
        for (int k0 = 0; k0 < shape.filters_per_group(); k0 += kc) {
            const int k_end = std::min(shape.filters_per_group(), k0 + kc);
            for (int c = 0; c < cg; ++c) {
                block.clear();
                for (int k = k0; k < k_end; ++k) {
                    const std::size_t base = (std::size_t(g * shape.filters_per_group() + k) * cg + std::size_t(c)) * taps;
                    block.insert(block.end(), weights.begin() + std::ptrdiff_t(base),
                                 weights.begin() + std::ptrdiff_t(base + std::size_t(taps)));
                }
                blocks.push_back(encode_zero_runs(block, run_bits));
            }
        }
    return blocks;
}

// The inverse of encode_weights: the K x C/groups x R x S weights.
inline std::vector<float> decode_weights(std::span<const zero_run_block> blocks, const conv_shape& shape, int kc = 8) {
    shape.validate();
    detail::check_positive(kc, "decode_weights", "kc");
    const int cg = shape.channels_per_group(), taps = shape.R * shape.S;
    const std::size_t groups_of_kc = std::size_t((shape.filters_per_group() + kc - 1) / kc);
    detail::check_count(blocks.size(), std::int64_t(shape.groups) * std::int64_t(groups_of_kc) * cg, "decode_weights",
                        "blocks", shape);
    std::vector<float> weights(std::size_t(shape.weight_count()));
    std::size_t b = 0;
    for (int g = 0; g < shape.groups; ++g)
        for (int k0 = 0; k0 < shape.filters_per_group(); k0 += kc) {
            const int k_end = std::min(shape.filters_per_group(), k0 + kc);
            for (int c = 0; c < cg; ++c, ++b) {
                const std::vector<float> block = decode_zero_runs(blocks[b]);
                if (block.size() != std::size_t(k_end - k0) * std::size_t(taps))
                    throw std::invalid_argument("lowbit::sparse::decode_weights: block " + std::to_string(b) + " has " +
                                                std::to_string(block.size()) + " values, the layer needs " +
                                                std::to_string((k_end - k0) * taps));
                for (int k = k0; k < k_end; ++k) {
                    const std::size_t base = (std::size_t(g * shape.filters_per_group() + k) * cg + std::size_t(c)) * taps;
                    std::copy_n(block.begin() + std::ptrdiff_t(std::size_t(k - k0) * std::size_t(taps)), taps,
                                weights.begin() + std::ptrdiff_t(base));
                }
            }
        }
    return weights;
}

// Activations (C x H x W) as SCNN's activation blocks: the plane split into grid_rows x grid_cols
// tiles (planar_tiling.hpp), and for each tile (row-major over the grid), for each channel c, the
// tile's values row by row. Empty tiles (planes smaller than the grid) give empty blocks.
inline std::vector<zero_run_block> encode_activations(std::span<const float> activations, const conv_shape& shape,
                                                      int grid_rows = 8, int grid_cols = 8, int run_bits = 4) {
    shape.validate();
    detail::check_positive(grid_rows, "encode_activations", "grid_rows");
    detail::check_positive(grid_cols, "encode_activations", "grid_cols");
    detail::check_count(activations.size(), shape.activation_count(), "encode_activations", "activations", shape);
    std::vector<zero_run_block> blocks;
    std::vector<float> block;
    for (int pr = 0; pr < grid_rows; ++pr)
        for (int pc = 0; pc < grid_cols; ++pc) {
            const planar_tile t = tile_of(shape.H, shape.W, grid_rows, grid_cols, pr, pc);
            for (int c = 0; c < shape.C; ++c) {
                block.clear();
                for (int y = t.rows.begin; y < t.rows.end; ++y)
                    for (int x = t.cols.begin; x < t.cols.end; ++x)
                        block.push_back(activations[(std::size_t(c) * std::size_t(shape.H) + std::size_t(y)) *
                                                        std::size_t(shape.W) + std::size_t(x)]);
                blocks.push_back(encode_zero_runs(block, run_bits));
            }
        }
    return blocks;
}

// The inverse of encode_activations: the C x H x W activations.
inline std::vector<float> decode_activations(std::span<const zero_run_block> blocks, const conv_shape& shape,
                                             int grid_rows = 8, int grid_cols = 8) {
    shape.validate();
    detail::check_positive(grid_rows, "decode_activations", "grid_rows");
    detail::check_positive(grid_cols, "decode_activations", "grid_cols");
    detail::check_count(blocks.size(), std::int64_t(grid_rows) * grid_cols * shape.C, "decode_activations", "blocks",
                        shape);
    std::vector<float> activations(std::size_t(shape.activation_count()));
    std::size_t b = 0;
    for (int pr = 0; pr < grid_rows; ++pr)
        for (int pc = 0; pc < grid_cols; ++pc) {
            const planar_tile t = tile_of(shape.H, shape.W, grid_rows, grid_cols, pr, pc);
            for (int c = 0; c < shape.C; ++c, ++b) {
                const std::vector<float> block = decode_zero_runs(blocks[b]);
                if (block.size() != std::size_t(t.size()))
                    throw std::invalid_argument("lowbit::sparse::decode_activations: block " + std::to_string(b) +
                                                " has " + std::to_string(block.size()) + " values, its tile has " +
                                                std::to_string(t.size()));
                std::size_t i = 0;
                for (int y = t.rows.begin; y < t.rows.end; ++y)
                    for (int x = t.cols.begin; x < t.cols.end; ++x)
                        activations[(std::size_t(c) * std::size_t(shape.H) + std::size_t(y)) * std::size_t(shape.W) +
                                    std::size_t(x)] = block[i++];
            }
        }
    return activations;
}

}  // namespace lowbit::sparse
