// examples/accumulator_formats.hpp: the accumulator table's datapaths, shared by the flagship
// (lba_fashion_mnist) and vit_fashion_mnist: one MxEy format for products and accumulators with
// the paper's biases, chunks, truncation, flush to zero, saturation; FP8 M4E3 range-biased
// weights and activations; the stage-1 variant without underflow; event rates.
#pragma once

#include "fashion_mnist_cnn.hpp"

#include <lowbit/lowbit.hpp>
#include <lowbit/nn/gemm_datapath.hpp>
#include <lowbit/nn/network.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>

namespace lowbit_examples {

struct datapath_settings {
    int chunk = 16;
    std::string rounding = "toward_zero";
    int m7e4_product_bias = 12, m7e4_accumulator_bias = 10;
    int e5_product_bias = 28, e5_accumulator_bias = 26;
    // MxE3 (the ~8-bit M4E3 of lba_gradients): seven binades cannot hold M7E4's whole range, so
    // their place is a choice of their own: products from 2^-6, sums up to 2^3 (the paper's rule
    // b_acc = b_prod - log2(chunk) / 2 for chunk 16).
    int e3_product_bias = 8, e3_accumulator_bias = 6;
    bool subnormals = false;
    std::uint64_t seed = 1;  // stochastic rounding
    int threads = 0;
};

inline lowbit::rounding rounding_named(const std::string& name) {
    static const std::map<std::string, lowbit::rounding> modes{
        {"nearest_even", lowbit::rounding::nearest_even},   {"nearest_away", lowbit::rounding::nearest_away},
        {"toward_zero", lowbit::rounding::toward_zero},     {"toward_positive", lowbit::rounding::toward_positive},
        {"toward_negative", lowbit::rounding::toward_negative}, {"stochastic", lowbit::rounding::stochastic},
        {"odd", lowbit::rounding::odd}};
    return modes.at(name);
}

// One row of the table: the product and accumulator formats of an MxEy datapath.
struct datapath_row {
    std::string name;  // "M7E4"
    lowbit::float_format product, accumulator;
};

inline datapath_row row_for(const std::string& spelling, const datapath_settings& o) {
    const lowbit::float_format parsed = lowbit::float_format::parse(spelling);
    const bool m7e4 = parsed.exp_bits == 4 && parsed.man_bits == 7;
    const bool e5 = parsed.exp_bits == 5, e3 = parsed.exp_bits == 3;
    const auto make = [&](int bias) {
        return lowbit::float_format{.exp_bits = parsed.exp_bits, .man_bits = parsed.man_bits, .bias = bias,
                                    .subnormals = o.subnormals, .specials = lowbit::special_values::none}
            .validate();
    };
    // Other formats than the paper's (but E3) keep M7E4's largest values: the same top exponent.
    const auto same_top = [&](int m7e4_bias) { return m7e4_bias + (1 << parsed.exp_bits) - (1 << 4); };
    const int product_bias = m7e4 ? o.m7e4_product_bias
                             : e5 ? o.e5_product_bias
                             : e3 ? o.e3_product_bias
                                  : same_top(o.m7e4_product_bias);
    const int accumulator_bias = m7e4 ? o.m7e4_accumulator_bias
                                 : e5 ? o.e5_accumulator_bias
                                 : e3 ? o.e3_accumulator_bias
                                      : same_top(o.m7e4_accumulator_bias);
    return {"M" + std::to_string(parsed.man_bits) + "E" + std::to_string(parsed.exp_bits), make(product_bias),
            make(accumulator_bias)};
}

// The same mantissas with the exponent range unbounded below in practice (stage 1 of the
// fine-tuning): seven exponent bits and a bias that keeps the largest value, so values reach down
// to 2^-121 (products of the per-tensor-biased FP8 operands stay far above; the run counts the
// underflows of this datapath to show it) while every value is still a float, which keeps the
// simulation on lowbit's vectorized path.
inline lowbit::float_format without_underflow(lowbit::float_format f) {
    const int top = f.emax();
    f.exp_bits = 7;
    f.bias = (1 << 7) - 1 - top;
    return f.validate();
}

inline nn::gemm_datapath datapath_for(const lowbit::float_format& product, const lowbit::float_format& accumulator,
                                      const datapath_settings& o, lowbit::gemm_stats* stats = nullptr) {
    const lowbit::rounding mode = rounding_named(o.rounding);
    const lowbit::float_quantizer q_prod{.format = product, .mode = mode, .on_overflow = lowbit::overflow::saturate,
                                         .seed = o.seed};
    const lowbit::float_quantizer q_acc{.format = accumulator, .mode = mode, .on_overflow = lowbit::overflow::saturate,
                                        .seed = o.seed + 1};
    return {.spec = lowbit::gemm_spec{.product = q_prod, .accumulator = q_acc, .chunk = o.chunk,
                                      .chunk_accumulator = q_acc, .threads = o.threads},
            .weights = nn::range_biased_float{},
            .activations = nn::range_biased_float{},
            .stats = stats};
}

// "M7E4 bias 12": the paper's spelling with the bias (every format here flushes or has subnormals
// as the run says, and saturates).
inline std::string paper_name(const lowbit::float_format& f) {
    return "M" + std::to_string(f.man_bits) + "E" + std::to_string(f.exp_bits) + " bias " +
           std::to_string(f.exponent_bias());
}

// A --spec option's datapath: the text parsed as a gemm_spec (a malformed one names the option and
// the field), on `threads` threads, with the FP8 range-biased weights and activations of the table.
inline nn::gemm_datapath datapath_of_spec(const std::string& text, int threads) {
    lowbit::gemm_spec spec;
    try {
        spec = lowbit::gemm_spec::parse(text);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument("--spec '" + text + "': " + e.what());
    }
    spec.threads = threads;
    return {.spec = spec, .weights = nn::range_biased_float{}, .activations = nn::range_biased_float{}, .stats = nullptr};
}

// A results file's datapath column: the spec as gemm_spec text (what --spec reads back) without its
// thread count, which never changes a result bit.
inline std::string datapath_text(lowbit::gemm_spec spec) {
    spec.threads = lowbit::gemm_spec{}.threads;
    return lowbit::to_string(spec);
}

// A results file's rounding column: the accumulator's rounding mode ("exact" without one).
inline std::string rounding_text(const lowbit::gemm_spec& spec) {
    if (const lowbit::float_quantizer* acc = spec.accumulator.as_float()) return lowbit::to_string(acc->mode);
    if (const auto* acc = spec.accumulator.as_int()) return lowbit::to_string(acc->mode);
    return "exact";
}

struct event_rates {
    double swamp = 0, underflow = 0, overflow = 0;
};

// Event rates over the first `samples` images of a set (the network is left on `d`).
inline event_rates measure_events(nn::network& net, const nn::labeled_images& set, nn::gemm_datapath d, int samples) {
    lowbit::gemm_stats stats;
    d.stats = &stats;
    net.set_datapath(d);
    const auto started = clock_type::now();
    const std::size_t n = std::min<std::size_t>(std::size_t(samples), set.size());
    const std::size_t batch = 10;
    for (std::size_t begin = 0; begin < n; begin += batch) {
        const std::size_t end = std::min(n, begin + batch);
        net.forward(images_of(set, begin, end), nn::pass::inference);
        std::printf("\r  counting events %6zu/%zu images  %5.1f s", end, n, seconds_since(started));
        std::fflush(stdout);
    }
    std::printf("\n");
    const double macs = double(std::max<std::uint64_t>(stats.macs, 1));
    return {double(stats.swamps) / macs, double(stats.product_underflows) / macs,
            double(stats.product_overflows + stats.accumulator_overflows) / macs};
}

}  // namespace lowbit_examples
