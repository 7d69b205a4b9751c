// lowbit/scaling/block_scaling.hpp: block-scaled matrices (OCP MX, NVFP4, VS-Quant; papers.md
// section 5).
//
// A matrix is cut along K, its reduction dimension, into blocks of V consecutive elements (the
// last block of a line may be shorter; V = 0 makes each whole line one block, whatever its length,
// so that per-channel and per-tensor scaling are the degenerate cases below); each block gets one
// scale, and some kinds add a coarse scale per tensor or per channel:
//
//   value = element * block_scale * coarse_scale
//
// Which dimension is K: k_axis = 1 cuts each row (A of C = A B, M x K: line r is row r);
// k_axis = 0 cuts each column (B, K x N: line c is column c). A "line" below is one such row or
// column, a "channel" in the per-channel sense (an output channel of a weight matrix).
//
// Scale kinds (block_format::scale):
//
//   power_of_two (OCP MX): block scale X = 2^e, an E8M0 value (e in [-127, 127]); no coarse scale.
//     The exponent rule (block_format::exponent_rule), amax = max |x| of the block:
//       floor   e = floor(log2 amax) - emax_elem           (the OCP MX v1.0 rule; may clip:
//               elements beyond the format's max saturate, e.g. E4M3 amax 960 -> X = 2 -> 896)
//       ceil    e = ceil(log2(amax / max_elem))            (never clips)
//       nearest e = round(log2(amax / max_elem))           (log2 of a ratio is never a tie)
//     emax_elem is the exponent of the element format's top binade (e4m3 8, e5m2 15, e2m3 2,
//     e3m2 4, e2m1 2, MXINT8 0); max_elem its largest magnitude. e is clamped to [-127, 127]
//     (the E8M0 range); amax = 0 gives the smallest scale 2^-127 (the elements are all zero
//     whatever X is, and the floor rule's log2 0 = -inf clamps there too).
//     Elements: quantize(x / X, element format, nearest_even, saturate): x / X is exact, and
//     the OCP conversion saturates.
//
//   float_two_level (NVFP4): a per-tensor fp32 scale g = amax_tensor / (max_elem * max_scale)
//     (6 * 448 for fp4_e2m1 elements and ue4m3 block scales; validate() requires
//     max_elem * max_scale >= 1, so that g is a finite float for all float data), and per block
//     s_b = quantize(amax_b / (max_elem * g), block_scale_format, nearest_even, saturate).
//     Elements: quantize(x / (s_b * g), element format, nearest_even, saturate). amax_tensor = 0
//     gives g = 1. A block whose s_b rounds to 0 (amax_b below about 2^-10 max_elem g) quantizes
//     to zeros, as the recipe written out above does (no special case in it keeps such a block).
//     The quotients are computed in double and then rounded to the format; for float data and an
//     ue4m3 scale the double quotient cannot land on a tie of a <= 8-bit format unless the exact
//     one does (both would need the quotient within 2^-53 of a midpoint that is at least 2^-33
//     away from every ratio of such operands), so the result is the correctly rounded one.
//
//   int_two_level (VS-Quant): N-bit signed integer elements in the symmetric range
//     [-(2^(N-1) - 1), 2^(N-1) - 1] (qmax = 2^(N-1) - 1); per vector s_v = amax_v / qmax; per
//     coarse unit (a line, or the whole tensor: block_format::coarse) the float
//     gamma = max_v s_v / (2^M - 1) (rounded to float; the smallest positive float where that
//     underflows, so that only an all-zero unit has gamma = 0); per vector the M-bit unsigned integer scale
//     s_q = round(s_v / gamma) (to nearest, ties to even, on the exact quotient
//     amax_v / (qmax * gamma)), then clamped to [1, 2^M - 1] for a vector that is not all zero:
//     s_q = 0 would throw the whole vector away although s_q = 1 keeps it on the grid of step
//     gamma, which is always at least as close (rounding to 1 instead of 0 only happens for
//     vectors whose amax is below gamma qmax / 2). An all-zero vector gets s_q = 0, and a unit
//     that is all zero gets gamma = 0. Elements: clip(round(x / (s_q gamma)), -qmax, qmax),
//     rounded to nearest, ties to even, on the exact quotient; stored as the integer codes. (So
//     the element is an int_element with narrow_range and fraction_bits 0, as vsquant() makes it;
//     validate() rejects others.)
//
//     The vector's clipping value c_v is its amax (block_format::clip = vector_clip::max), so
//     s_v = amax_v / qmax as above, or OCTAV's (vector_clip::octav: scaling/calibration.hpp's
//     Newton iteration on the vector's magnitudes, 10 steps from the paper's start, with the
//     noise constant of this grid, 1 / (12 qmax^2): step c_v / qmax; at most amax_v, and amax_v
//     where OCTAV gives 0, as for a vector with a single non-zero value, whose best clip is that
//     value), s_v = c_v / qmax; elements beyond c_v then clip to +-qmax.
//     Degenerate cases: V = 0 with M = 1 is per-channel integer scaling (per_line: s_q = 1 and
//     gamma = the float amax_line / qmax: per_channel_int below) or per-tensor (per_tensor: one
//     gamma = amax / qmax; per_tensor_int).
//
// Elements are a float_format (any valid format whose values are floats: at most 23 mantissa bits,
// emax <= 127, emin - man_bits >= -149) or an integer
// (int_element: code * 2^-fraction_bits, codes of int_format, optionally without the most
// negative code). MXINT8 follows the OCP MX v1.0 INT8 element: 8-bit two's complement with an
// implied scale of 2^-6 (values k / 64, k in [-128, 127], so [-2, 1.984375]) and emax_elem = 0;
// the full two's complement range is kept (the spec's encoding includes -2.0; a symmetric
// variant is int_element{.narrow_range = true}).
//
// Non-finite data: a NaN or +-infinity in a block makes its block scale NaN (E8M0's 0xFF, ue4m3's
// NaN code; for VS-Quant a NaN stands for "no valid scale") and every element of the block NaN,
// so the NaN propagates through dequantization (OCP MX: a NaN scale makes the whole block NaN).
// It does not enter the per-tensor or per-channel amax of the coarse scales.
//
// Element rounding is always nearest-even with saturation (the conversion that the OCP and NVFP4
// recipes specify); stochastic element rounding is not modelled here.
#pragma once

#include <lowbit/formats/float_format.hpp>
#include <lowbit/formats/int_format.hpp>
#include <lowbit/rounding/quantize.hpp>
#include <lowbit/scaling/calibration.hpp>
#include <lowbit/scaling/int_scaling.hpp>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace lowbit {

// An integer element: value = code * 2^-fraction_bits, code in format's range (without its most
// negative code when narrow_range).
struct int_element {
    int_format format{.bits = 8, .is_signed = true};
    int fraction_bits = 0;
    bool narrow_range = false;

    friend constexpr bool operator==(const int_element&, const int_element&) = default;
};

enum class block_scale_kind : std::uint8_t {
    power_of_two,     // OCP MX: E8M0 scale 2^e per block
    float_two_level,  // NVFP4: float-format scale per block times an fp32 scale per tensor
    int_two_level,    // VS-Quant: M-bit unsigned integer scale per block times a float per line or tensor
};

// How the MX exponent is derived from the block's amax (power_of_two only).
enum class scale_exponent_rule : std::uint8_t {
    floor,    // OCP: floor(log2 amax) - emax_elem; may clip the largest elements
    ceil,     // ceil(log2(amax / max_elem)): never clips
    nearest,  // round(log2(amax / max_elem))
};

// How a VS-Quant vector's clipping value is chosen (int_two_level only): its largest magnitude,
// or OCTAV's MSE-optimal clip (see the header comment).
enum class vector_clip : std::uint8_t { max, octav };

// Where VS-Quant's coarse scale gamma is shared (int_two_level only).
enum class coarse_scope : std::uint8_t {
    per_line,    // one gamma per line: per output channel of a weight matrix
    per_tensor,  // one gamma for the matrix: per layer, as for activations
};

struct block_format {
    std::variant<float_format, int_element> element = fp8_e4m3;
    int block_size = 32;  // V; 0: each line is one block
    block_scale_kind scale = block_scale_kind::power_of_two;
    scale_exponent_rule exponent_rule = scale_exponent_rule::floor;  // power_of_two
    float_format block_scale_format = ue4m3;                         // float_two_level
    int scale_bits = 6;                                              // int_two_level: M
    coarse_scope coarse = coarse_scope::per_line;                    // int_two_level
    vector_clip clip = vector_clip::max;                             // int_two_level

    // std::invalid_argument naming the field and the value.
    const block_format& validate() const;
};

// ---- presets ----
inline constexpr block_format mxfp8_e4m3{.element = fp8_e4m3};
inline constexpr block_format mxfp8_e5m2{.element = fp8_e5m2};
inline constexpr block_format mxfp6_e2m3{.element = fp6_e2m3};
inline constexpr block_format mxfp6_e3m2{.element = fp6_e3m2};
inline constexpr block_format mxfp4{.element = fp4_e2m1};
inline constexpr block_format mxint8{.element = int_element{.format = {.bits = 8, .is_signed = true},
                                                            .fraction_bits = 6}};
inline constexpr block_format nvfp4{.element = fp4_e2m1, .block_size = 16,
                                    .scale = block_scale_kind::float_two_level, .block_scale_format = ue4m3};

// VS-Quant with N-bit elements, M-bit integer vector scales, vectors of V, gamma per line.
inline block_format vsquant(int element_bits, int scale_bits, int block_size,
                            coarse_scope coarse = coarse_scope::per_line, vector_clip clip = vector_clip::max) {
    block_format f{.element = int_element{.format = {.bits = element_bits, .is_signed = true}, .narrow_range = true},
                   .block_size = block_size,
                   .scale = block_scale_kind::int_two_level,
                   .scale_bits = scale_bits,
                   .coarse = coarse,
                   .clip = clip};
    f.validate();
    return f;
}

// N-bit symmetric integers with one scale per line (per output channel of a weight matrix) or one
// per tensor, the float amax / qmax (or OCTAV's clip / qmax): VS-Quant's degenerate cases (one
// vector per line, 1-bit vector scales), so that they run on the same block-scaled GEMM.
inline block_format per_channel_int(int element_bits, vector_clip clip = vector_clip::max) {
    return vsquant(element_bits, 1, 0, coarse_scope::per_line, clip);
}
inline block_format per_tensor_int(int element_bits) { return vsquant(element_bits, 1, 0, coarse_scope::per_tensor); }

namespace detail {

[[noreturn]] inline void bad_block_format(const std::string& field, const std::string& value, const char* why) {
    throw std::invalid_argument("lowbit::block_format: " + field + " = " + value + ": " + why);
}

// The element grid of a block format, derived once: what "round x / scale to an element" means.
struct element_grid {
    bool is_int = false;
    float_format format{};          // float elements
    double lowest = 0, highest = 0;  // int elements: the code range
    double unit = 1;                 // int elements: 2^-fraction_bits
    double max_value = 0;            // largest magnitude (max_elem)
    int emax = 0;                    // exponent of the top binade (emax_elem)

    explicit element_grid(const block_format& b) {
        if (const auto* f = std::get_if<float_format>(&b.element)) {
            format = *f;
            max_value = f->max_finite();
            emax = f->emax();
        } else {
            const int_element& e = std::get<int_element>(b.element);
            is_int = true;
            highest = e.format.max_value();
            lowest = e.narrow_range && e.format.is_signed ? -highest : e.format.min_value();
            unit = std::ldexp(1.0, -e.fraction_bits);
            max_value = highest * unit;
            emax = std::ilogb(max_value);
        }
    }

    // x / scale rounded to the grid, nearest-even, saturating; NaN stays NaN. scale > 0.
    double round(double x, double scale) const {
        if (std::isnan(x)) return x;
        if (!is_int) return quantize(x / scale, format, rounding::nearest_even, overflow::saturate);
        const double k = round_quotient(x, scale * unit, rounding::nearest_even, 0, 32);
        return std::clamp(k, lowest, highest) * unit;
    }
};

}  // namespace detail

inline const block_format& block_format::validate() const {
    if (const auto* f = std::get_if<float_format>(&element)) {
        f->validate();
        if (f->man_bits > 23)
            detail::bad_block_format("element.man_bits", std::to_string(f->man_bits),
                                     "block elements must be at most float's precision (23)");
        // Elements are stored as floats: every value of the format must be one.
        if (f->emax() > 127 || f->emin() - f->man_bits < -149)
            detail::bad_block_format("element", to_string(*f),
                                     "has values beyond float's range (block elements are floats: emax <= 127 and "
                                     "emin - man_bits >= -149)");
    } else {
        const int_element& e = std::get<int_element>(element);
        e.format.validate();
        if (e.format.bits > 20)
            detail::bad_block_format("element.format.bits", std::to_string(e.format.bits),
                                     "integer block elements must have at most 20 bits");
        if (e.fraction_bits < -64 || e.fraction_bits > 64)
            detail::bad_block_format("element.fraction_bits", std::to_string(e.fraction_bits), "must be in [-64, 64]");
    }
    if (block_size < 0)
        detail::bad_block_format("block_size", std::to_string(block_size),
                                 "must be at least 1 (or 0: each line one block)");
    if (clip != vector_clip::max && clip != vector_clip::octav)
        detail::bad_block_format("clip", std::to_string(int(clip)), "is not a vector_clip");
    if (clip == vector_clip::octav && scale != block_scale_kind::int_two_level)
        detail::bad_block_format("clip", "octav",
                                 "applies to VS-Quant's integer scales (scale = int_two_level) only; MX and NVFP4 "
                                 "scales follow their recipes' amax rules");
    switch (scale) {
        case block_scale_kind::power_of_two:
            if (exponent_rule != scale_exponent_rule::floor && exponent_rule != scale_exponent_rule::ceil &&
                exponent_rule != scale_exponent_rule::nearest)
                detail::bad_block_format("exponent_rule", std::to_string(int(exponent_rule)),
                                         "is not a scale_exponent_rule");
            break;
        case block_scale_kind::float_two_level: {
            block_scale_format.validate();
            // g = amax_tensor / (max_elem * max_scale) is an fp32 number: below 1, that product
            // would make g infinite for large float data (and every block zero or NaN).
            const double largest = detail::element_grid(*this).max_value * block_scale_format.max_finite();
            if (!(largest >= 1))
                detail::bad_block_format("block_scale_format", to_string(block_scale_format),
                                         "times the element format gives a largest block value below 1, so that "
                                         "the fp32 tensor scale g would overflow: max_elem * max_scale must be >= 1");
            break;
        }
        case block_scale_kind::int_two_level: {
            const auto* e = std::get_if<int_element>(&element);
            if (e == nullptr || !e->format.is_signed)
                detail::bad_block_format("element", "a float_format or unsigned integer",
                                         "int_two_level (VS-Quant) needs signed integer elements");
            if (e->format.bits > 16)
                detail::bad_block_format("element.format.bits", std::to_string(e->format.bits),
                                         "int_two_level elements must have at most 16 bits");
            // Its elements are the codes themselves, in [-qmax, qmax]: the scales carry the step.
            if (e->fraction_bits != 0)
                detail::bad_block_format("element.fraction_bits", std::to_string(e->fraction_bits),
                                         "int_two_level (VS-Quant) elements are integer codes: must be 0");
            if (!e->narrow_range)
                detail::bad_block_format("element.narrow_range", "false",
                                         "int_two_level (VS-Quant) codes are symmetric, [-qmax, qmax]: must be true");
            if (scale_bits < 1 || scale_bits > 16)
                detail::bad_block_format("scale_bits", std::to_string(scale_bits), "must be in [1, 16]");
            if (coarse != coarse_scope::per_line && coarse != coarse_scope::per_tensor)
                detail::bad_block_format("coarse", std::to_string(int(coarse)), "is not a coarse_scope");
            break;
        }
        default:
            detail::bad_block_format("scale", std::to_string(int(scale)), "is not a block_scale_kind");
    }
    return *this;
}

// A block-scaled matrix: element (r, c) of the rows x cols matrix is
//   elements[r * cols + c] * block_scales[line * blocks_per_line() + k / block_size] * coarse
// with line = r, k = c (k_axis = 1) or line = c, k = r (k_axis = 0), and coarse =
// coarse_scales[line] (VS-Quant per line), coarse_scales[0] (one per tensor), or 1 (MX, which
// has none).
struct block_scaled_matrix {
    std::size_t rows = 0, cols = 0;
    int k_axis = 1;
    block_format format{};
    std::vector<float> elements;        // on the element grid (VS-Quant: the integer codes)
    std::vector<double> block_scales;   // lines() x blocks_per_line(); NaN for a poisoned block
    std::vector<double> coarse_scales;  // see above

    // V, or the line's length where the format's block size is 0 (one block per line).
    int block_size() const {
        return format.block_size != 0 ? format.block_size : int(std::clamp<std::size_t>(line_length(), 1, INT_MAX));
    }
    std::size_t lines() const { return k_axis == 1 ? rows : cols; }
    std::size_t line_length() const { return k_axis == 1 ? cols : rows; }
    std::size_t blocks_per_line() const {
        const auto v = std::size_t(block_size());
        return (line_length() + v - 1) / v;
    }
    // Row-major index of the k-th element of a line.
    std::size_t index(std::size_t line, std::size_t k) const { return k_axis == 1 ? line * cols + k : k * cols + line; }
    double block_scale(std::size_t line, std::size_t k) const {
        return block_scales[line * blocks_per_line() + k / std::size_t(block_size())];
    }
    double coarse_scale(std::size_t line) const {
        if (coarse_scales.empty()) return 1.0;
        return coarse_scales.size() == 1 ? coarse_scales[0] : coarse_scales[line];
    }
};

namespace detail {

// quantize_blocks works on tiles of lines, each tile on one OpenMP thread (every line's result is
// its own, so the thread count changes nothing), visiting a tile's elements in memory order: for
// k_axis = 0 a line is a column, and walking one column at a time would miss the cache at every
// element of a wide matrix (an im2col matrix of activations has 10^5 columns).
constexpr std::size_t lines_per_tile = 64;

// f(line, k) for every element of the lines [first, last) whose k is in [k_begin, k_end), row by row.
template <class F>
void visit_lines(const block_scaled_matrix& m, std::size_t first, std::size_t last, std::size_t k_begin,
                 std::size_t k_end, F&& f) {
    if (m.k_axis == 1) {
        for (std::size_t line = first; line < last; ++line)
            for (std::size_t k = k_begin; k < k_end; ++k) f(line, k);
    } else {
        for (std::size_t k = k_begin; k < k_end; ++k)
            for (std::size_t line = first; line < last; ++line) f(line, k);
    }
}

// Runs tile(first, last) over every tile of lines, in parallel when the matrix is large enough to
// pay for the threads.
template <class F>
void for_each_tile(const block_scaled_matrix& m, F&& tile) {
    const auto tiles = std::int64_t((m.lines() + lines_per_tile - 1) / lines_per_tile);
#pragma omp parallel for schedule(dynamic) if (m.rows * m.cols >= (std::size_t(1) << 16))
    for (std::int64_t t = 0; t < tiles; ++t)
        tile(std::size_t(t) * lines_per_tile, std::min(m.lines(), std::size_t(t + 1) * lines_per_tile));
}

// The smallest c with max_value * 2^c >= amax (amax, max_value positive).
inline int ceil_exponent(double amax, double max_value) {
    int c = std::ilogb(amax) - std::ilogb(max_value);  // max_value 2^c is in amax's binade
    if (std::ldexp(max_value, c) < amax) ++c;
    return c;
}

// The MX block exponent, clamped to E8M0's [-127, 127].
inline int mx_exponent(double amax, const element_grid& g, scale_exponent_rule rule) {
    if (amax == 0) return -127;
    int e = 0;
    switch (rule) {
        case scale_exponent_rule::floor: e = std::ilogb(amax) - g.emax; break;
        case scale_exponent_rule::ceil: e = ceil_exponent(amax, g.max_value); break;
        case scale_exponent_rule::nearest: {
            // r = amax / max_value is in (2^(c-1), 2^c]; log2 r < c - 1/2 <=> amax^2 < max^2 2^(2c-1),
            // exact in double: both squares have at most 48 significant bits (float amax,
            // elements of at most 24 bits of precision).
            const int c = ceil_exponent(amax, g.max_value);
            e = amax * amax < std::ldexp(g.max_value * g.max_value, 2 * c - 1) ? c - 1 : c;
            break;
        }
    }
    return std::clamp(e, -127, 127);
}

inline void check_block_input(const float* data, std::size_t rows, std::size_t cols, int k_axis) {
    if (rows == 0 || cols == 0)
        throw std::invalid_argument("lowbit::quantize_blocks: rows = " + std::to_string(rows) +
                                    ", cols = " + std::to_string(cols) + ": both must be positive");
    if (data == nullptr) throw std::invalid_argument("lowbit::quantize_blocks: data is null");
    if (k_axis != 0 && k_axis != 1)
        throw std::invalid_argument("lowbit::quantize_blocks: k_axis = " + std::to_string(k_axis) +
                                    " must be 1 (K along each row) or 0 (K down each column)");
}

}  // namespace detail

// Quantizes the row-major rows x cols matrix `data` (see the header comment).
inline block_scaled_matrix quantize_blocks(const float* data, std::size_t rows, std::size_t cols,
                                           const block_format& format, int k_axis) {
    format.validate();
    detail::check_block_input(data, rows, cols, k_axis);
    block_scaled_matrix m;
    m.rows = rows;
    m.cols = cols;
    m.k_axis = k_axis;
    m.format = format;
    const detail::element_grid grid(format);
    const std::size_t lines = m.lines(), length = m.line_length(), per_line = m.blocks_per_line();
    const auto v = std::size_t(m.block_size());
    m.elements.assign(rows * cols, 0.0f);
    m.block_scales.assign(lines * per_line, 0.0);
    const double nan = std::numeric_limits<double>::quiet_NaN();

    // Every kind: amax per block first (max |x|; NaN marks a poisoned block, one with a NaN or an
    // infinity).
    std::vector<double> amax(lines * per_line, 0.0);
    detail::for_each_tile(m, [&](std::size_t first, std::size_t last) {
        for (std::size_t b = 0; b < per_line; ++b)
            detail::visit_lines(m, first, last, b * v, std::min(length, (b + 1) * v), [&](std::size_t line, std::size_t k) {
                const double x = data[m.index(line, k)];
                double& a = amax[line * per_line + b];
                a = std::isfinite(x) ? std::max(a, std::fabs(x)) : nan;  // (max(NaN, y) stays NaN)
            });
    });

    // Then the block scales (and coarse scales) of the kind ...
    switch (format.scale) {
        case block_scale_kind::power_of_two:
            for (std::size_t i = 0; i < amax.size(); ++i)
                m.block_scales[i] = std::isnan(amax[i]) ? nan
                                                        : std::ldexp(1.0, detail::mx_exponent(amax[i], grid,
                                                                                              format.exponent_rule));
            break;
        case block_scale_kind::float_two_level: {
            double tensor_amax = 0;
            for (const double a : amax)
                if (!std::isnan(a)) tensor_amax = std::max(tensor_amax, a);
            const double scale_max = format.block_scale_format.max_finite();
            float global = tensor_amax == 0 ? 1.0f : float(tensor_amax / (grid.max_value * scale_max));
            if (global == 0) global = std::numeric_limits<float>::denorm_min();  // amax_tensor below ~2^-138
            m.coarse_scales = {double(global)};
            const double unit = grid.max_value * double(global);  // exact: a short element max times a float
            for (std::size_t i = 0; i < amax.size(); ++i)
                m.block_scales[i] = std::isnan(amax[i]) ? nan
                                                        : quantize(amax[i] / unit, format.block_scale_format,
                                                                   rounding::nearest_even, overflow::saturate);
            break;
        }
        case block_scale_kind::int_two_level: {
            const double qmax = grid.highest;
            const double top = std::ldexp(1.0, format.scale_bits) - 1.0;
            // From here on a vector's amax stands for its clipping value c_v (the header comment).
            if (format.clip == vector_clip::octav) {
                detail::for_each_tile(m, [&](std::size_t first, std::size_t last) {
                    std::vector<double> magnitudes(detail::lines_per_tile * v);  // a tile's vectors, one per row
                    for (std::size_t b = 0; b < per_line; ++b) {
                        const std::size_t begin = b * v, end = std::min(length, (b + 1) * v);
                        detail::visit_lines(m, first, last, begin, end, [&](std::size_t line, std::size_t k) {
                            magnitudes[(line - first) * v + (k - begin)] = std::fabs(double(data[m.index(line, k)]));
                        });
                        for (std::size_t line = first; line < last; ++line) {
                            double& a = amax[line * per_line + b];
                            if (!(a > 0)) continue;  // all zero, or poisoned (NaN)
                            const std::span<const double> vector(magnitudes.data() + (line - first) * v, end - begin);
                            const double c = detail::octav_with_noise<double>(vector, 1 / (12 * qmax * qmax), 10, 0,
                                                                      octav_step::with_density).scale;
                            if (c > 0) a = std::min(a, c);
                        }
                    }
                });
            }
            const bool per_tensor = format.coarse == coarse_scope::per_tensor;
            m.coarse_scales.assign(per_tensor ? 1 : lines, 0.0);
            // gamma = max_v s_v / (2^M - 1) = max_v amax_v / (qmax (2^M - 1)), stored as float.
            std::vector<double> unit_amax(m.coarse_scales.size(), 0.0);
            for (std::size_t line = 0; line < lines; ++line)
                for (std::size_t b = 0; b < per_line; ++b) {
                    const double a = amax[line * per_line + b];
                    double& u = unit_amax[per_tensor ? 0 : line];
                    if (!std::isnan(a)) u = std::max(u, a);
                }
            for (std::size_t u = 0; u < unit_amax.size(); ++u) {
                const float gamma = float(unit_amax[u] / qmax / top);
                // A unit whose gamma underflows float (amax below about 2^-149 qmax (2^M - 1))
                // gets the smallest positive float, as NVFP4's g does: gamma = 0 would make every
                // vector's s_q 0, but a vector that is not all zero must keep s_q >= 1.
                m.coarse_scales[u] = unit_amax[u] > 0 && gamma == 0 ? double(std::numeric_limits<float>::denorm_min())
                                                                    : double(gamma);
            }
            for (std::size_t line = 0; line < lines; ++line) {
                const double gamma = m.coarse_scales[per_tensor ? 0 : line];
                for (std::size_t b = 0; b < per_line; ++b) {
                    const double a = amax[line * per_line + b];
                    double& s_q = m.block_scales[line * per_line + b];
                    if (std::isnan(a)) s_q = nan;
                    else if (a == 0 || gamma == 0) s_q = 0;
                    else  // round(s_v / gamma) = round(amax_v / (qmax gamma)), qmax gamma exact in double
                        s_q = std::clamp(detail::round_quotient(a, qmax * gamma, rounding::nearest_even, 0, 32), 1.0,
                                         top);
                }
            }
            break;
        }
    }

    // ... and the elements: x / (block scale * coarse scale) on the element grid.
    detail::for_each_tile(m, [&](std::size_t first, std::size_t last) {
        double scales[detail::lines_per_tile];  // of the tile's lines, for one block
        for (std::size_t b = 0; b < per_line; ++b) {
            for (std::size_t line = first; line < last; ++line)
                scales[line - first] = m.block_scales[line * per_line + b] * m.coarse_scale(line);  // exact in double
            detail::visit_lines(m, first, last, b * v, std::min(length, (b + 1) * v), [&](std::size_t line, std::size_t k) {
                const std::size_t i = m.index(line, k);
                const double scale = scales[line - first];
                float& element = m.elements[i];
                if (std::isnan(scale)) element = std::numeric_limits<float>::quiet_NaN();
                else if (scale == 0) element = 0.0f;  // all-zero VS-Quant vector, or NVFP4 scale rounded to 0
                else element = float(grid.round(double(data[i]), scale));
            });
        }
    });
    return m;
}

// out[r * cols + c] = float(element * block scale * coarse scale). The product is exact in double
// for MX (a power of two), NVFP4 (a 2-bit significand, a 4-bit one and a float) and VS-Quant when
// (N - 1) + M + 24 <= 53 (every configuration up to N = 8, M = 16), so it is rounded once, to float.
inline void dequantize(const block_scaled_matrix& m, float* out) {
    if (out == nullptr) throw std::invalid_argument("lowbit::dequantize: out is null");
    detail::check_size(m.elements.size(), m.rows * m.cols, "dequantize", "m.elements");
    detail::check_size(m.block_scales.size(), m.lines() * m.blocks_per_line(), "dequantize", "m.block_scales");
    for (std::size_t line = 0; line < m.lines(); ++line) {
        const double coarse = m.coarse_scale(line);
        for (std::size_t k = 0; k < m.line_length(); ++k) {
            const std::size_t i = m.index(line, k);
            out[i] = float(double(m.elements[i]) * m.block_scale(line, k) * coarse);
        }
    }
}

}  // namespace lowbit
