// lowbit/datapath/hardware.hpp: the accumulation of real matrix units, as gemm_specs (lowbit::hw).
//
//   lowbit::gemm_spec h = lowbit::hw::preset(lowbit::hw::unit::hopper, lowbit::fp8_e4m3);  // D in fp32
//   lowbit::gemm_spec a = lowbit::hw::preset(lowbit::hw::unit::ampere, lowbit::fp16, lowbit::fp16);
//   lowbit::gemm_spec c = lowbit::hw::preset("cdna3:bf16");    // unit:inputs[:output], or
//                                                             // unit:input_a:input_b:output
//   Eigen::MatrixXf D = lowbit::gemm_add(A, B, C, h);         // D = A B + C as the unit computes it
//   Eigen::MatrixXf P = lowbit::gemm(A, B, h);                 // C = 0
//
// The conventions are those that MMA-Sim (Xie et al., arXiv 2511.10909; microsoft/MMA-Sim)
// established bit for bit against the hardware; the specs below are lowbit's own expression of
// them (gemm_spec.hpp defines each field). A long K is a chain of instructions, each one's D the
// next one's C, which is what a chain of groups in one accumulation is.
//
// NVIDIA tensor cores (model aligned): each group of L products and the running C are aligned on
// the largest of their exponents, read from the operands (align = operands: e(a) + e(b), the
// product's significand in [1, 4)), a subnormal read at its format's smallest normal exponent, a
// zero as 2^-126; each term is cut toward zero to F fractional bits below that exponent, the cut
// terms are summed exactly, and the sum is truncated to fp32 (overflowing to infinity, which IEEE's
// truncation does not: overflow::infinity_always) or rounded to fp16 (nearest even). L counts
// the bytes an instruction consumes per step: 8 on Volta, 16 on Turing, Ampere and Ada, 32 on
// Hopper and Blackwell (fp16 / bf16: L = bytes / 2, tf32: bytes / 4, fp8: bytes).
//   unit           F    L (fp16, tf32, fp8)  instructions modelled (k of the instruction)
//   volta          23   4                    mma.m8n8k4 f16
//   turing         24   8                    mma.m16n8k8 f16
//   ampere         24   8, 4                 mma m16n8k16 f16 / bf16 (two groups), m16n8k8 bf16,
//                                            m16n8k8 / k4 tf32
//   ada            24   8, 4, 16             the same, and fp8 (e4m3, e5m2) m16n8k32 / k16 with
//                                            F = 13 and an fp32 result truncated to 13 fraction bits
//                                            (e8m13)
//   hopper         25   16, 8, 32            wgmma (and mma) f16 / bf16 k16, tf32 k8, fp8 k32 (F = 13,
//                                            e8m13 results, as Ada)
//   blackwell      25   16, 8, 32            tcgen05.mma kind::f16 / tf32 / f8f6f4 (fp8: F = 25)
//   rtx_blackwell  25   16, 8, 32            mma sm_120 f16 / bf16 / tf32, f8f6f4 with e4m3 and
//                                            e5m2 (F = 25)
// tf32 inputs are fp32 values truncated to tf32 (input quantizer tf32:toward_zero), as the units
// read an fp32 register; other inputs are rounded to their format (nearest even). C and D are
// fp32, or fp16 for fp16 and fp8 inputs where the unit has such instructions. Not modelled: the
// block-scaled instructions (MX operands), FP6 and FP4 operands of f8f6f4, integer and fp64
// instructions, sparse (2:4) instructions, and the NaN payloads (a NaN result is lowbit's quiet NaN, not 0x7FFFFFFF).
//
// AMD matrix cores (CDNA1-3): fp32 inputs run a chain of IEEE fmas (model fma, fp32 nearest even).
//   cdna1  fp16: each group of 4 products, rounded to fp32, is summed as a pairwise tree of fp32
//          additions (nearest even) and added to C (model pairwise, chunk 4); bf16: groups of 2
//          (the instructions without _1k). A K that is not a multiple of the group ends with the
//          tree of a zero-padded group: (p0 + p1) + p2 for three products.
//   cdna2  the same with every subnormal flushed: inputs, products, sums and C (formats without
//          subnormals); bf16 in groups of 4 (the _1k instructions compilers emit). A flushed input
//          keeps its sign here, where the unit makes it +0: only the sign of a zero result can
//          differ.
//   cdna3  fp16 / bf16: model two_level with groups of 8, F = 24, sum_window = 31, then fp32 nearest
//          even; xf32: inputs truncated to tf32, groups of 4; fp8 (float8_e4m3fnuz,
//          float8_e5m2fnuz): groups of 16 in two interleaved sub-dots.
// Each spec is printable and parseable (to_string, gemm_spec::parse), so a preset can be written
// into a results file and read back.
#pragma once

#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/formats/float_format.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace lowbit::hw {

enum class unit : std::uint8_t { volta, turing, ampere, ada, hopper, blackwell, rtx_blackwell, cdna1, cdna2, cdna3 };

inline constexpr std::array<unit, 10> units{unit::volta,     unit::turing,        unit::ampere, unit::ada,
                                            unit::hopper,    unit::blackwell,     unit::rtx_blackwell,
                                            unit::cdna1,     unit::cdna2,         unit::cdna3};

constexpr const char* to_string(unit u) {
    switch (u) {
        case unit::volta: return "volta";
        case unit::turing: return "turing";
        case unit::ampere: return "ampere";
        case unit::ada: return "ada";
        case unit::hopper: return "hopper";
        case unit::blackwell: return "blackwell";
        case unit::rtx_blackwell: return "rtx_blackwell";
        case unit::cdna1: return "cdna1";
        case unit::cdna2: return "cdna2";
        case unit::cdna3: return "cdna3";
    }
    return "?";
}

// The fp32 result of Ada's and Hopper's FP8 instructions: truncated to 13 fraction bits.
inline constexpr float_format e8m13{.exp_bits = 8, .man_bits = 13};

namespace detail {

[[noreturn]] inline void refuse(unit u, const std::string& what) {
    throw std::invalid_argument(std::string("lowbit::hw::preset: ") + to_string(u) + ": " + what);
}

inline std::string list(const std::vector<float_format>& formats) {
    std::string s;
    for (const auto& f : formats) (s += s.empty() ? "" : ", ") += to_string(f);
    return s;
}

inline bool is_fp8(const float_format& f) { return f == fp8_e4m3 || f == fp8_e5m2; }

// The inputs a unit's instructions take.
inline std::vector<float_format> inputs_of(unit u) {
    switch (u) {
        case unit::volta:
        case unit::turing: return {fp16};
        case unit::ampere: return {fp16, bf16, tf32};
        case unit::ada:
        case unit::hopper:
        case unit::blackwell:
        case unit::rtx_blackwell: return {fp16, bf16, tf32, fp8_e4m3, fp8_e5m2};
        case unit::cdna1:
        case unit::cdna2: return {fp32, fp16, bf16};
        case unit::cdna3: return {fp32, tf32, fp16, bf16, fp8_e4m3fnuz, fp8_e5m2fnuz};
    }
    return {};
}

inline quantizer input_quantizer(const float_format& f) {
    if (f == tf32) return float_quantizer{.format = tf32, .mode = rounding::toward_zero};  // fp32 bits cut
    if (f == fp32) return {};                                                          // fp32 as given
    return f;
}

inline int bytes_of(const float_format& f) { return f == tf32 ? 4 : is_fp8(f) ? 1 : 2; }

inline gemm_spec nvidia(unit u, const float_format& a, const float_format& b, const float_format& output) {
    const bool fp8 = is_fp8(a);
    const bool narrow_result = fp8 && (u == unit::ada || u == unit::hopper);
    const bool half_inputs = a == fp16 || fp8;
    if (output != fp32 && !(output == fp16 && half_inputs))
        refuse(u, "output " + to_string(output) + ": " + (half_inputs ? "fp32 or fp16" : "fp32") + " for " +
                      to_string(a) + " inputs");
    const int group_bytes = u == unit::volta ? 8 : u == unit::turing || u == unit::ampere || u == unit::ada ? 16 : 32;
    const int window = narrow_result                               ? 13
                       : u == unit::volta                          ? 23
                       : u == unit::turing || u == unit::ampere || u == unit::ada ? 24
                                                                    : 25;
    gemm_spec s;
    s.input_a = input_quantizer(a);
    s.input_b = input_quantizer(b);
    s.model = accumulation::aligned;
    s.window = window;
    s.group = group_bytes / bytes_of(a);
    s.cut = alignment_cut::toward_zero;
    s.align = alignment_exponent::operands;
    s.subnormals = subnormal_exponent::min_normal;
    s.zero_exponent = -126;
    if (output == fp16) {
        s.accumulator = fp16;  // nearest even, IEEE overflow
    } else {
        s.accumulator = float_quantizer{.format = narrow_result ? e8m13 : fp32, .mode = rounding::toward_zero,
                                        .on_overflow = overflow::infinity_always};
    }
    s.addend = output;
    return s;
}

inline gemm_spec amd(unit u, const float_format& a, const float_format& b, const float_format& output) {
    if (output != fp32) refuse(u, "output " + to_string(output) + ": AMD's matrix cores give fp32 for these inputs");
    gemm_spec s;
    s.input_a = input_quantizer(a);
    s.input_b = input_quantizer(b);
    s.addend = fp32;
    if (a == fp32) {  // a chain of IEEE fmas
        s.model = accumulation::fma;
        s.accumulator = fp32;
        return s;
    }
    if (u == unit::cdna1 || u == unit::cdna2) {
        const bool flush = u == unit::cdna2;
        const auto flushed = [&](float_format f) {
            f.subnormals = !flush;
            return f;
        };
        s.input_a = flushed(a);
        s.input_b = flushed(b);
        s.product = flushed(fp32);
        s.accumulator = flushed(fp32);
        s.chunk_accumulator = flushed(fp32);
        s.addend = flushed(fp32);
        s.model = accumulation::pairwise;
        s.chunk = a == bf16 && u == unit::cdna1 ? 2 : 4;
        return s;
    }
    // cdna3: the two-level fused dot
    const bool fp8 = a == fp8_e4m3fnuz || a == fp8_e5m2fnuz;
    s.model = accumulation::two_level;
    s.group = fp8 ? 16 : a == tf32 ? 4 : 8;
    s.sub_dots = fp8 ? 2 : 1;
    s.window = 24;
    s.sum_window = 31;
    s.align = alignment_exponent::operands;
    s.subnormals = subnormal_exponent::min_normal;
    s.zero_exponent = -126;
    s.accumulator = fp32;
    return s;
}

}  // namespace detail

// The spec of unit u's instructions for inputs of formats a and b and a result (C and D) of
// format `output`; std::invalid_argument naming the unit and what it takes otherwise.
inline gemm_spec preset(unit u, const float_format& a, const float_format& b, const float_format& output) {
    const auto taken = detail::inputs_of(u);
    if (taken.empty()) throw std::invalid_argument("lowbit::hw::preset: unit " + std::to_string(int(u)) +
                                                   " is not a lowbit::hw::unit");
    for (const auto* f : {&a, &b})
        if (std::find(taken.begin(), taken.end(), *f) == taken.end())
            detail::refuse(u, "inputs " + to_string(*f) + ": its instructions take " + detail::list(taken));
    const bool mixed_fp8 = detail::is_fp8(a) && detail::is_fp8(b);
    const bool mixed_fnuz = (a == fp8_e4m3fnuz || a == fp8_e5m2fnuz) && (b == fp8_e4m3fnuz || b == fp8_e5m2fnuz);
    if (!(a == b) && !mixed_fp8 && !mixed_fnuz)
        detail::refuse(u, "inputs " + to_string(a) + " and " + to_string(b) +
                              ": both the same format, but for the FP8 formats (e4m3 with e5m2)");
    return u == unit::cdna1 || u == unit::cdna2 || u == unit::cdna3 ? detail::amd(u, a, b, output)
                                                                    : detail::nvidia(u, a, b, output);
}

inline gemm_spec preset(unit u, const float_format& inputs, const float_format& output = fp32) {
    return preset(u, inputs, inputs, output);
}

// "unit:inputs", "unit:inputs:output" or "unit:input_a:input_b:output", formats by their names
// (float_format::parse: "fp16", "bf16", "tf32", "e4m3", "float8_e4m3fnuz", ...), case-insensitive.
inline gemm_spec preset(std::string_view text) {
    std::vector<std::string> parts;
    std::string part;
    for (const char c : text) {
        if (c == ':') {
            parts.push_back(part);
            part.clear();
        } else {
            part += char(std::tolower(static_cast<unsigned char>(c)));
        }
    }
    parts.push_back(part);
    const auto fail = [&](const std::string& why) {
        throw std::invalid_argument("lowbit::hw::preset: '" + std::string(text) + "' " + why);
    };
    if (parts.size() < 2 || parts.size() > 4)
        fail("is not unit:inputs, unit:inputs:output or unit:input_a:input_b:output");
    const unit* found = nullptr;
    for (const unit& u : units)
        if (parts[0] == to_string(u)) found = &u;
    if (found == nullptr) {
        std::string names;
        for (const unit u : units) (names += names.empty() ? "" : ", ") += to_string(u);
        fail("names no unit (" + names + ")");
    }
    const auto format = [&](const std::string& name) {
        try {
            return float_format::parse(name);
        } catch (const std::invalid_argument& e) {
            fail(e.what());
        }
        return float_format{};
    };
    const float_format a = format(parts[1]);
    const float_format b = parts.size() == 4 ? format(parts[2]) : a;
    const float_format output = parts.size() >= 3 ? format(parts.back()) : fp32;
    return preset(*found, a, b, output);
}

}  // namespace lowbit::hw
