// A ten-second tour of what lowbit does: the formats it knows, and how values land on them.
#include "example_cli.hpp"
#include <lowbit/lowbit.hpp>

#include <array>
#include <cstdio>
#include <string>

namespace {

void print_presets() {
    struct row {
        const char* name;
        lowbit::float_format format;
    };
    const std::array<row, 13> presets{{
        {"fp32", lowbit::fp32}, {"tf32", lowbit::tf32}, {"bf16", lowbit::bf16},
        {"fp16", lowbit::fp16}, {"fp8_e4m3", lowbit::fp8_e4m3}, {"fp8_e5m2", lowbit::fp8_e5m2},
        {"fp6_e2m3", lowbit::fp6_e2m3}, {"fp6_e3m2", lowbit::fp6_e3m2}, {"fp4_e2m1", lowbit::fp4_e2m1},
        {"ue8m0", lowbit::ue8m0}, {"ue4m3", lowbit::ue4m3}, {"lba_m7e4_acc", lowbit::lba_m7e4_acc},
        {"lba_m7e4_prod", lowbit::lba_m7e4_prod},
    }};
    std::printf("Formats (value = sign * 1.mantissa * 2^(exponent - bias); the LBA accumulator\n"
                "formats of Blumenfeld et al. use fixed biases and flush underflow to zero)\n\n");
    std::printf("%-14s %4s %4s %4s %5s %-7s %12s %12s %12s %10s %12s\n", "format", "bits", "E", "M",
                "bias", "special", "largest", "min normal", "min subnorm", "epsilon", "codes");
    for (const auto& [name, f] : presets) {
        const char* specials = f.specials == lowbit::special_values::ieee ? "ieee"
                               : f.specials == lowbit::special_values::fn ? "fn"
                                                                          : "none";
        std::printf("%-14s %4d %4d %4d %5d %-7s %12.5g %12.5g %12.5g %10.3g %12.0f\n", name, f.bits(),
                    f.exp_bits, f.man_bits, f.exponent_bias(), specials, f.max_finite(), f.min_normal(),
                    f.min_subnormal(), f.epsilon(), f.codes());
    }
}

void print_roundings() {
    const std::array<float, 7> values{1.0625f, 0.1f, 3.14159265f, -2.7182818f, 300.0f, 1000.0f, 0.0012f};
    const std::array<const char*, 4> formats{"e4m3", "e5m2", "m7e4,bias=10,subnormals=off,specials=none", "e2m1"};
    const std::array<lowbit::rounding, 5> modes{lowbit::rounding::nearest_even, lowbit::rounding::toward_zero,
                                                lowbit::rounding::toward_negative, lowbit::rounding::odd,
                                                lowbit::rounding::stochastic};
    std::printf("\nValues rounded (stochastic: one draw, seed 1; overflow: IEEE, so e4m3 gives NaN and\n"
                "a format without specials saturates)\n");
    for (const char* name : formats) {
        const auto f = lowbit::float_format::parse(name);
        std::printf("\n%s  (printed back as \"%s\")\n%-16s", name, lowbit::to_string(f).c_str(), "x");
        for (float v : values) std::printf("%11.5g", double(v));
        std::printf("\n");
        for (auto mode : modes) {
            const lowbit::float_quantizer q{.format = f, .mode = mode, .seed = 1};
            std::printf("%-16s", lowbit::to_string(mode));
            for (std::size_t i = 0; i < values.size(); ++i) std::printf("%11.5g", double(q(values[i], i)));
            std::printf("\n");
        }
    }
}

}  // namespace

int run_example() {
    print_presets();
    print_roundings();
    std::printf("\nA classic trap: e4m3 nearest_even sends 1.0625 (a tie) to %g, the even neighbour,\n"
                "not to 1.125.\n",
                double(lowbit::quantize(1.0625f, lowbit::fp8_e4m3)));
    return 0;
}

int main() {
    return examples::run("quantization_tour", [&] { return run_example(); });
}
