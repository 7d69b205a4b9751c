// lowbit/analysis/scnn_model.hpp: a cycle model of SCNN's PT-IS-CP-sparse dataflow (Parashar et
// al., ISCA 2017; papers.md section 6) for one convolution layer, beside a dense accelerator of
// the same multipliers and the oracle that only counts useful multiplies.
//
//   lowbit::scnn_result r = lowbit::scnn_model(shape, weights, activations);        // real tensors
//   lowbit::scnn_result r = lowbit::scnn_model_synthetic(shape, 0.35, 0.53, seed);  // densities
//
// What is modelled (one set of assumptions for every layer; the README's SCNN section sets the
// results beside the paper's):
//
// - The machine: a grid of pe_rows x pe_cols = 8 x 8 PEs, each with F x I = 4 x 4 multipliers and
//   `banks` = 32 accumulator banks. The input plane (H x W) is split into one tile per PE
//   (planar_tiling.hpp: rows and columns dealt as evenly as possible); a PE keeps its tile of every
//   input channel (input stationary) and weights are broadcast to all PEs.
// - Output channels are processed in groups of kc = 8 (never straddling a convolution group).
//   For each group, each PE walks the input channels c of the group's convolution group; for
//   each c it forms the Cartesian product of the non-zero weights of the kc x R x S block of
//   (group, c) with the non-zero activations of its tile of channel c: ceil(nnz_a / I) activation
//   vectors (outer loop) times ceil(nnz_w / F) weight vectors (inner loop), one vector pair per
//   cycle. A vector pair with fewer than F weights or I activations leaves multipliers idle
//   (intra-PE fragmentation). All PEs wait at a barrier at the end of every group (inter-PE
//   idle: barrier_idle).
// - Strides (AlexNet's conv1 has 4): the paper does not say how its Cartesian product handles
//   them. Here a stride-s layer is run as its s x s polyphase parts: weight tap (r, s) meets only
//   the activations (y, x) with (y + pad - r) and (x + pad - s) divisible by the stride, so no
//   product lands between outputs. Weights and activations are split by phase ((r mod stride,
//   s mod stride) and ((y + pad) mod stride, (x + pad) mod stride)) and each phase is one
//   Cartesian product, in phase order (0, 0), (0, 1), ...; vectors are filled within a phase.
//   At stride 1 there is one phase and this is the paper's dataflow unchanged.
// - Products that land outside the output plane (activations near the border meeting taps that
//   reach into the padding) are computed, as the Cartesian product does, but are not useful
//   multiplies and are dropped before the crossbar.
// - Accumulation: each useful product goes to bank (address mod banks), where address is the
//   product's output (k - k0, oy - oy0, ox - ox0) linearised row-major in the PE's accumulator
//   buffer (kc x the output rows x columns its tile can reach, halo included). A bank adds one
//   product per cycle; products wait in front of their bank in a queue of up to `bank_queue`
//   products (the crossbar's arbitration buffer; not given by the paper, see scnn_config). The
//   multiplier array issues the next vector pair only when no bank has more than bank_queue
//   products still waiting; the cycles it waits are bank_stall_cycles. With bank_queue = 0 a
//   vector pair whose busiest bank receives L products takes L cycles. A PE's group ends when
//   its banks are empty.
// - Halo exchange and the output drain are taken to overlap with the next group (not modelled),
//   as are weight broadcast and DRAM traffic (the paper sizes buffers so that layers fit).
// - Dense baseline: the same 64 PEs and tiling, each PE's 16 multipliers busy on every useful
//   dense multiply of its tile (no vector fragmentation, no bank conflicts: a dense datapath is
//   built for its regular pattern), with the same barrier per output-channel group:
//   dense_cycles = sum over groups of max over PEs of ceil(dense useful MACs / (F I)).
// - Oracle: ceil(multiplies / (PEs F I)), every multiplier busy on a useful product every cycle.
//
// multiplies counts the useful products: pairs (weight != 0, activation != 0) that meet at an
// output inside the plane, the number zero_skipping.hpp counts on the im2col GEMM.
// multiplier_utilization = multiplies / (scnn_cycles x PEs x F x I); active_utilization leaves the
// PE-cycles spent at barriers out of the denominator.
// barrier_idle = PE-cycles spent waiting at group barriers / (scnn_cycles x PEs).
#pragma once

#include <lowbit/sparse/conv_shape.hpp>
#include <lowbit/sparse/planar_tiling.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace lowbit {

struct scnn_config {
    int pe_rows = 8, pe_cols = 8;  // the PE grid
    int F = 4, I = 4;              // weights x activations per cycle per PE
    int banks = 32;                // accumulator banks per PE (the paper's A = 2 F I)
    int kc = 8;                    // output channels per group
    // Products that may wait in front of each bank (the paper does not give the crossbar's
    // buffering). 0 stalls every cycle in which two products share a bank, which runs AlexNet's
    // conv1 at less than half speed (neighbouring taps times neighbouring pixels often meet at one
    // output), out of line with the paper's conv1 utilization of 0.97; 8 lets bursts spread over
    // the following cycles, and conflicts then cost under 0.4% of AlexNet's cycles. One value for
    // every layer (README: the speed-ups for 0, 2, 8 and unbounded).
    int bank_queue = 8;

    int pes() const { return pe_rows * pe_cols; }
    int multipliers() const { return pes() * F * I; }

    const scnn_config& validate() const {
        const auto check = [](const char* name, int v, int lowest, int highest) {
            if (v < lowest || v > highest)
                throw std::invalid_argument(std::string("lowbit::scnn_config: ") + name + " = " + std::to_string(v) +
                                            " must be in [" + std::to_string(lowest) + ", " + std::to_string(highest) +
                                            "]");
        };
        check("pe_rows", pe_rows, 1, 1024), check("pe_cols", pe_cols, 1, 1024);
        check("F", F, 1, 1024), check("I", I, 1, 1024), check("banks", banks, 1, 1 << 16);
        check("kc", kc, 1, 1 << 16), check("bank_queue", bank_queue, 0, 1 << 20);
        return *this;
    }
};

struct scnn_result {
    std::int64_t dense_cycles = 0, scnn_cycles = 0, oracle_cycles = 0;
    std::int64_t multiplies = 0;        // useful non-zero products
    std::int64_t dense_multiplies = 0;  // the dense layer's multiplies (conv_shape::dense_macs: padding excluded)
    std::int64_t vector_pairs = 0;      // multiplier-array issues, summed over PEs
    std::int64_t products = 0;          // products computed (useful or landing outside the plane)
    std::int64_t bank_stall_cycles = 0; // summed over PEs
    std::int64_t barrier_idle_pe_cycles = 0;
    int pes = 64, multipliers = 1024;

    double multiplier_utilization() const {
        return scnn_cycles == 0 ? 0.0 : double(multiplies) / (double(scnn_cycles) * multipliers);
    }
    // Utilization over the PE-cycles not spent waiting at barriers (the multipliers of working PEs).
    double active_utilization() const {
        const double active = double(scnn_cycles) * pes - double(barrier_idle_pe_cycles);
        return active <= 0 ? 0.0 : double(multiplies) / (active * (multipliers / pes));
    }
    double barrier_idle() const {
        return scnn_cycles == 0 ? 0.0 : double(barrier_idle_pe_cycles) / (double(scnn_cycles) * pes);
    }
    // Multiplier slots of the issued vector pairs that held no product.
    double fragmentation() const {
        return vector_pairs == 0 ? 0.0 : 1.0 - double(products) / (double(vector_pairs) * (multipliers / pes));
    }
    double speedup() const { return scnn_cycles == 0 ? 0.0 : double(dense_cycles) / double(scnn_cycles); }
    double oracle_speedup() const { return oracle_cycles == 0 ? 0.0 : double(dense_cycles) / double(oracle_cycles); }
};

namespace detail {

struct scnn_tap {
    int k, rq, sq;  // output channel within the kc group; tap (r, s) = (phase + stride rq, phase + stride sq)
};
struct scnn_pixel {
    int yq, xq;  // (y + pad - phase) / stride: the output (yq - rq, xq - sq) it meets tap (rq, sq) at
};

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

inline void check_mask_size(std::size_t have, std::int64_t need, const char* what, const sparse::conv_shape& s) {
    if (std::int64_t(have) != need)
        throw std::invalid_argument(std::string("lowbit::scnn_model: ") + std::to_string(have) + " " + what +
                                    " but the layer " + s.to_string() + " has " + std::to_string(need));
}

}  // namespace detail

// The model on masks: weight_nonzero (K x C/groups x R x S) and activation_nonzero (C x H x W),
// each entry 0 (zero) or not (non-zero).
inline scnn_result scnn_model(const sparse::conv_shape& shape, std::span<const std::uint8_t> weight_nonzero,
                              std::span<const std::uint8_t> activation_nonzero, const scnn_config& config = {}) {
    shape.validate();
    config.validate();
    detail::check_mask_size(weight_nonzero.size(), shape.weight_count(), "weights", shape);
    detail::check_mask_size(activation_nonzero.size(), shape.activation_count(), "activations", shape);
    const int st = shape.stride, pad = shape.pad, OH = shape.out_h(), OW = shape.out_w();
    const int phases = st * st, cg = shape.channels_per_group(), kg = shape.filters_per_group();
    const int F = config.F, I = config.I, banks = config.banks, lanes = F * I;

    scnn_result result;
    result.pes = config.pes();
    result.multipliers = config.multipliers();
    result.dense_multiplies = shape.dense_macs();

    // The non-zero pixels of every PE's tile, per channel and phase: pixels[(pe * C + c) * phases + phase].
    struct pe_geometry {
        sparse::planar_tile tile;
        int oy0 = 0, ox0 = 0, rows = 0, cols = 0;  // the outputs its products can reach
        std::int64_t dense_per_channel_filter = 0; // useful dense MACs of one channel and one filter
    };
    std::vector<pe_geometry> pe(std::size_t(config.pes()));
    std::vector<std::vector<detail::scnn_pixel>> pixels(std::size_t(config.pes()) * std::size_t(shape.C) *
                                                        std::size_t(phases));
    for (int pr = 0; pr < config.pe_rows; ++pr)
        for (int pc = 0; pc < config.pe_cols; ++pc) {
            const int p = pr * config.pe_cols + pc;
            pe_geometry& g = pe[std::size_t(p)];
            g.tile = sparse::tile_of(shape.H, shape.W, config.pe_rows, config.pe_cols, pr, pc);
            if (g.tile.size() == 0) continue;
            const auto floor_div = [](int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
            g.oy0 = std::max(0, floor_div(g.tile.rows.begin + pad - (shape.R - 1), st));
            g.ox0 = std::max(0, floor_div(g.tile.cols.begin + pad - (shape.S - 1), st));
            g.rows = std::max(1, std::min(OH - 1, (g.tile.rows.end - 1 + pad) / st) - g.oy0 + 1);
            g.cols = std::max(1, std::min(OW - 1, (g.tile.cols.end - 1 + pad) / st) - g.ox0 + 1);
            std::int64_t taps_y = 0, taps_x = 0;
            for (int y = g.tile.rows.begin; y < g.tile.rows.end; ++y) taps_y += shape.useful_rows(y);
            for (int x = g.tile.cols.begin; x < g.tile.cols.end; ++x) taps_x += shape.useful_cols(x);
            g.dense_per_channel_filter = taps_y * taps_x;
            for (int c = 0; c < shape.C; ++c)
                for (int y = g.tile.rows.begin; y < g.tile.rows.end; ++y)
                    for (int x = g.tile.cols.begin; x < g.tile.cols.end; ++x)
                        if (activation_nonzero[(std::size_t(c) * std::size_t(shape.H) + std::size_t(y)) *
                                                   std::size_t(shape.W) + std::size_t(x)] != 0) {
                            const int py = (y + pad) % st, px = (x + pad) % st;
                            pixels[(std::size_t(p) * std::size_t(shape.C) + std::size_t(c)) * std::size_t(phases) +
                                   std::size_t(py * st + px)]
                                .push_back({(y + pad - py) / st, (x + pad - px) / st});
                        }
        }

    // The non-zero weights of the current output-channel group: taps[cl * phases + phase].
    std::vector<std::vector<detail::scnn_tap>> taps(static_cast<std::size_t>(cg) * static_cast<std::size_t>(phases));
    std::vector<std::int64_t> pe_time(std::size_t(config.pes()));
    std::vector<std::int64_t> bank_free(static_cast<std::size_t>(banks));
    for (int group = 0; group < shape.groups; ++group)
        for (int k0 = 0; k0 < kg; k0 += config.kc) {
            const int k_count = std::min(config.kc, kg - k0);
            // dense baseline of this output-channel group
            std::int64_t dense_group = 0;
            for (const pe_geometry& g : pe)
                dense_group = std::max(dense_group, detail::ceil_div(g.dense_per_channel_filter * k_count * cg, lanes));
            result.dense_cycles += dense_group;

            for (auto& v : taps) v.clear();
            for (int cl = 0; cl < cg; ++cl)
                for (int k = 0; k < k_count; ++k)
                    for (int r = 0; r < shape.R; ++r)
                        for (int s = 0; s < shape.S; ++s)
                            if (weight_nonzero[((std::size_t(group * kg + k0 + k) * std::size_t(cg) + std::size_t(cl)) *
                                                    std::size_t(shape.R) + std::size_t(r)) * std::size_t(shape.S) +
                                               std::size_t(s)] != 0)
                                taps[std::size_t(cl * phases + (r % st) * st + s % st)].push_back({k, r / st, s / st});

            std::fill(pe_time.begin(), pe_time.end(), 0);
            for (int p = 0; p < config.pes(); ++p) {
                const pe_geometry& g = pe[std::size_t(p)];
                if (g.tile.size() == 0) continue;
                std::fill(bank_free.begin(), bank_free.end(), 0);
                std::int64_t t = 0, latest_free = 0;  // next issue cycle; the largest bank_free
                for (int cl = 0; cl < cg; ++cl) {
                    const int c = group * cg + cl;
                    for (int phase = 0; phase < phases; ++phase) {
                        const auto& w = taps[std::size_t(cl * phases + phase)];
                        const auto& a = pixels[(std::size_t(p) * std::size_t(shape.C) + std::size_t(c)) *
                                                   std::size_t(phases) + std::size_t(phase)];
                        if (w.empty() || a.empty()) continue;
                        for (std::size_t ai = 0; ai < a.size(); ai += std::size_t(I)) {
                            const std::size_t a_end = std::min(a.size(), ai + std::size_t(I));
                            for (std::size_t wi = 0; wi < w.size(); wi += std::size_t(F)) {
                                const std::size_t w_end = std::min(w.size(), wi + std::size_t(F));
                                // issue when no bank has more than bank_queue products waiting
                                const std::int64_t issue = std::max(t, latest_free - config.bank_queue);
                                result.bank_stall_cycles += issue - t;
                                ++result.vector_pairs;
                                result.products += std::int64_t((a_end - ai) * (w_end - wi));
                                for (std::size_t i = ai; i < a_end; ++i)
                                    for (std::size_t j = wi; j < w_end; ++j) {
                                        const int oy = a[i].yq - w[j].rq, ox = a[i].xq - w[j].sq;
                                        if (oy < 0 || oy >= OH || ox < 0 || ox >= OW) continue;
                                        ++result.multiplies;
                                        const std::int64_t address =
                                            (std::int64_t(w[j].k) * g.rows + (oy - g.oy0)) * g.cols + (ox - g.ox0);
                                        std::int64_t& free = bank_free[std::size_t(address % banks)];
                                        free = std::max(free, issue) + 1;
                                        latest_free = std::max(latest_free, free);
                                    }
                                t = issue + 1;
                            }
                        }
                    }
                }
                const std::int64_t done = std::max(t, latest_free);  // the banks drain
                result.bank_stall_cycles += done - t;
                pe_time[std::size_t(p)] = done;
            }
            const std::int64_t group_time = *std::max_element(pe_time.begin(), pe_time.end());
            for (const std::int64_t pt : pe_time) result.barrier_idle_pe_cycles += group_time - pt;
            result.scnn_cycles += group_time;
        }
    result.oracle_cycles = detail::ceil_div(result.multiplies, config.multipliers());
    return result;
}

namespace detail {
inline std::vector<std::uint8_t> nonzero_mask(std::span<const float> values) {
    std::vector<std::uint8_t> mask(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) mask[i] = values[i] != 0.0f;  // NaN counts as non-zero
    return mask;
}
}  // namespace detail

// The model on real tensors: weights (K x C/groups x R x S) and activations (C x H x W, one
// sample, e.g. post-ReLU) as floats; an entry is zero when it compares equal to 0 (so -0 too).
inline scnn_result scnn_model(const sparse::conv_shape& shape, std::span<const float> weights,
                              std::span<const float> activations, const scnn_config& config = {}) {
    return scnn_model(shape, std::span<const std::uint8_t>(detail::nonzero_mask(weights)),
                      std::span<const std::uint8_t>(detail::nonzero_mask(activations)), config);
}

// A mask of `count` entries, each non-zero with probability `density` (independently), from
// `seed`: mt19937_64's output is fixed by the standard and the uniform is built from its bits, so
// the mask is the same on every platform.
inline std::vector<std::uint8_t> random_nonzero_mask(std::size_t count, double density, std::uint64_t seed) {
    if (!(density >= 0.0 && density <= 1.0))
        throw std::invalid_argument("lowbit::random_nonzero_mask: density = " + std::to_string(density) +
                                    " must be in [0, 1]");
    std::mt19937_64 engine(seed);
    std::vector<std::uint8_t> mask(count);
    for (auto& m : mask) m = double(engine() >> 11) * 0x1p-53 < density;
    return mask;
}

// The model on synthetic tensors of the given densities (uniform random zeros): weights from
// seed, activations from an independent stream of the same seed.
inline scnn_result scnn_model_synthetic(const sparse::conv_shape& shape, double weight_density,
                                        double activation_density, std::uint64_t seed,
                                        const scnn_config& config = {}) {
    shape.validate();
    for (const auto& [name, d] : {std::pair{"weight_density", weight_density}, std::pair{"activation_density", activation_density}})
        if (!(d >= 0.0 && d <= 1.0))
            throw std::invalid_argument(std::string("lowbit::scnn_model_synthetic: ") + name + " = " + std::to_string(d) +
                                        " must be in [0, 1]");
    const auto w = random_nonzero_mask(std::size_t(shape.weight_count()), weight_density, seed * 2 + 1);
    const auto a = random_nonzero_mask(std::size_t(shape.activation_count()), activation_density, seed * 2 + 2);
    return scnn_model(shape, std::span<const std::uint8_t>(w), std::span<const std::uint8_t>(a), config);
}

}  // namespace lowbit
