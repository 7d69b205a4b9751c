// Fuzz target: block-scaled matrices (lowbit/scaling/block_scaling.hpp): quantize_blocks and
// dequantize of OCP MX, NVFP4 and VS-Quant formats, presets or with every field drawn.
//
// Input (FuzzedDataProvider): the block format, rows, cols, k_axis, a power of two 2^s, then the
// values (any float bits, or small integers times a shared power of two, per value).
// Properties, each from the definitions at the top of the header:
//   - errors: std::invalid_argument exactly when validate() rejects the format, rows or cols is 0
//     or k_axis is not 0 or 1; dequantize never throws for what quantize_blocks made;
//   - shape: one block scale per block of each line, coarse scales as the kind has them;
//   - NaN: a block holding a NaN or an infinity has a NaN scale and NaN elements, and is NaN when
//     dequantized; no other block has a NaN anywhere;
//   - grids: float elements are values of the element format (quantizing one gives it back),
//     integer elements multiples of 2^-fraction_bits in the code range, VS-Quant elements codes in
//     [-qmax, qmax]; MX scales are 2^e with e in [-127, 127], NVFP4 block scales values of the
//     scale format, VS-Quant scales integers in [0, 2^M - 1], at least 1 for a vector that is not
//     all zero, and gamma 0 exactly for an all-zero unit;
//   - the k axis is a choice of direction: A cut along rows is A^T cut along columns;
//   - signs: where the element grid is symmetric (signed floats, narrow-range integers), -A gives
//     the same scales and the negated elements;
//   - powers of two: 2^s A gives the same elements, with its scales times 2^s (MX: where no
//     exponent reaches the E8M0 range's ends; NVFP4 and VS-Quant: where the per-tensor or per-unit
//     float scale stays a normal float), when 2^s A is exact in float;
//   - MX fixed point: for the floor and ceil rules and a symmetric element grid, quantizing the
//     dequantized matrix gives it back (when the dequantized values are exact in float). Not for
//     the nearest rule (a block whose largest element rounds below max/sqrt(2) gets a smaller
//     scale the second time, and 2x its elements can saturate), nor NVFP4 or VS-Quant (their
//     tensor scales are recomputed from the dequantized amax and rounded to float).
#include "fuzz_input.hpp"

#include <lowbit/scaling/block_scaling.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace {

using lowbit::block_format;
using lowbit::block_scale_kind;
using lowbit::block_scaled_matrix;
using lowbit_fuzz::describe_value;
using lowbit_fuzz::expect;
using lowbit_fuzz::finding;
using lowbit_fuzz::same_value;

lowbit::int_element consume_int_element(FuzzedDataProvider& in) {
    lowbit::int_element e;
    e.format.bits = in.ConsumeIntegralInRange(0, 22);
    e.format.is_signed = !in.ConsumeBool();
    e.fraction_bits = in.ConsumeBool() ? in.ConsumeIntegralInRange(-2, 8) : in.ConsumeIntegralInRange(-65, 65);
    e.narrow_range = in.ConsumeBool();
    return e;
}

// A preset, vsquant(...) with drawn arguments, or every field drawn; nothing when vsquant rejects
// its arguments (it validates).
std::optional<block_format> consume_block_format(FuzzedDataProvider& in) {
    switch (in.ConsumeIntegralInRange(0, 9)) {
        case 0: return lowbit::mxfp8_e4m3;
        case 1: return lowbit::mxfp8_e5m2;
        case 2: return lowbit::mxfp6_e2m3;
        case 3: return lowbit::mxfp6_e3m2;
        case 4: return lowbit::mxfp4;
        case 5: return lowbit::mxint8;
        case 6: return lowbit::nvfp4;
        case 7: {
            const int element_bits = in.ConsumeIntegralInRange(0, 18), scale_bits = in.ConsumeIntegralInRange(-1, 17);
            const int block_size = in.ConsumeIntegralInRange(-1, 40);
            const auto coarse = lowbit_fuzz::consume_enum(in, lowbit::coarse_scope::per_tensor);
            const auto clip = lowbit_fuzz::consume_enum(in, lowbit::vector_clip::octav);
            try {
                return lowbit::vsquant(element_bits, scale_bits, block_size, coarse, clip);
            } catch (const std::invalid_argument&) {
                return std::nullopt;
            }
        }
        default: break;
    }
    block_format f;
    if (in.ConsumeBool()) f.element = lowbit_fuzz::consume_float_format(in);
    else f.element = consume_int_element(in);
    f.block_size = in.ConsumeIntegralInRange(-1, 40);
    f.scale = static_cast<block_scale_kind>(in.ConsumeIntegralInRange(0, 3));  // 3: no kind
    f.exponent_rule = static_cast<lowbit::scale_exponent_rule>(in.ConsumeIntegralInRange(0, 3));
    f.block_scale_format = lowbit_fuzz::consume_float_format(in);
    f.scale_bits = in.ConsumeIntegralInRange(-1, 17);
    f.coarse = static_cast<lowbit::coarse_scope>(in.ConsumeIntegralInRange(0, 2));
    f.clip = static_cast<lowbit::vector_clip>(in.ConsumeIntegralInRange(0, 2));  // 2: no rule
    return f;
}

std::string describe(const block_format& f) {
    std::string s = "element ";
    if (const auto* e = std::get_if<lowbit::float_format>(&f.element)) {
        s += e->is_valid() ? lowbit::to_string(*e) : "(an invalid float_format)";
    } else {
        const auto& i = std::get<lowbit::int_element>(f.element);
        s += (i.format.is_signed ? "int" : "uint") + std::to_string(i.format.bits) + " frac " +
             std::to_string(i.fraction_bits) + (i.narrow_range ? " narrow" : "");
    }
    s += ", block " + std::to_string(f.block_size) + ", scale kind " + std::to_string(int(f.scale)) + ", rule " +
         std::to_string(int(f.exponent_rule)) + ", scale format " +
         (f.block_scale_format.is_valid() ? lowbit::to_string(f.block_scale_format) : "(invalid)") + ", scale_bits " +
         std::to_string(f.scale_bits) + ", coarse " + std::to_string(int(f.coarse)) + ", clip " + std::to_string(int(f.clip));
    return s;
}

// A value: any float bits, or a small integer times 2^base (values of a block share a range).
float consume_block_value(FuzzedDataProvider& in, int base) {
    if (in.ConsumeBool()) return std::bit_cast<float>(in.ConsumeIntegral<std::uint32_t>());
    return std::ldexp(float(in.ConsumeIntegralInRange(-4096, 4096)), base + in.ConsumeIntegralInRange(-4, 4));
}

// The result of quantize_blocks, or nothing when it rejects the input as documented.
std::optional<block_scaled_matrix> quantized(const std::vector<float>& data, std::size_t rows, std::size_t cols,
                                             const block_format& format, int k_axis, bool valid) {
    try {
        block_scaled_matrix m = lowbit::quantize_blocks(data.data(), rows, cols, format, k_axis);
        expect(valid, [] { return std::string("quantize_blocks accepted an invalid format, shape or k_axis"); });
        return m;
    } catch (const std::invalid_argument& e) {
        expect(!valid, [&] { return std::string("quantize_blocks rejected a valid input: ") + e.what(); });
        return std::nullopt;
    } catch (const std::exception& e) {
        finding(std::string("quantize_blocks threw something other than std::invalid_argument: ") + e.what());
    }
}

std::vector<float> dequantized(const block_scaled_matrix& m) {
    std::vector<float> out(m.rows * m.cols);
    try {
        lowbit::dequantize(m, out.data());
    } catch (const std::exception& e) {
        finding(std::string("dequantize threw for a matrix of quantize_blocks: ") + e.what());
    }
    return out;
}

// Whether negating the input negates the elements and keeps the scales.
bool symmetric_grid(const block_format& f) {
    if (const auto* e = std::get_if<lowbit::float_format>(&f.element)) return e->is_signed;
    const auto& e = std::get<lowbit::int_element>(f.element);
    return e.format.is_signed && (e.narrow_range || f.scale == block_scale_kind::int_two_level);
}

// The shape, NaN, grid and scale properties of one quantized matrix of `data`.
void check_matrix(const block_scaled_matrix& m, const std::vector<float>& data, const block_format& f) {
    const std::size_t lines = m.lines(), per_line = m.blocks_per_line(), v = std::size_t(m.block_size());
    expect(m.elements.size() == data.size() && m.block_scales.size() == lines * per_line,
           [] { return std::string("elements or block scales of the wrong size"); });
    const std::size_t coarse = f.scale == block_scale_kind::power_of_two      ? 0
                               : f.scale == block_scale_kind::float_two_level ? 1
                               : f.coarse == lowbit::coarse_scope::per_line   ? lines
                                                                              : 1;
    expect(m.coarse_scales.size() == coarse, [&] { return "coarse scales: " + std::to_string(m.coarse_scales.size()) + ", expected " + std::to_string(coarse); });
    for (const double c : m.coarse_scales)
        expect(std::isfinite(c) && c >= 0 && double(float(c)) == c && (c > 0 || f.scale == block_scale_kind::int_two_level),
               [&] { return "coarse scale " + describe_value(c) + " is not a finite float (> 0 for NVFP4)"; });
    const std::vector<float> out = dequantized(m);

    const auto* float_element = std::get_if<lowbit::float_format>(&f.element);
    for (std::size_t line = 0; line < lines; ++line) {
        // VS-Quant: gamma is 0 exactly when the unit holds nothing but zeros (and poisoned blocks).
        bool line_has_value = false;
        for (std::size_t b = 0; b < per_line; ++b) {
            const std::size_t begin = b * v, end = std::min(m.line_length(), begin + v);
            bool poisoned = false, all_zero = true;
            for (std::size_t k = begin; k < end; ++k) {
                const float x = data[m.index(line, k)];
                poisoned |= !std::isfinite(x);
                all_zero &= x == 0;
            }
            line_has_value |= !poisoned && !all_zero;
            const double scale = m.block_scales[line * per_line + b];
            const std::string where = "line " + std::to_string(line) + ", block " + std::to_string(b) + ": ";
            expect(std::isnan(scale) == poisoned, [&] {
                return where + "block scale " + describe_value(scale) + (poisoned ? " for a block with NaN or infinity" : " for a finite block");
            });
            if (poisoned) {
                for (std::size_t k = begin; k < end; ++k)
                    expect(std::isnan(m.elements[m.index(line, k)]) && std::isnan(out[m.index(line, k)]),
                           [&] { return where + "an element of a poisoned block is not NaN"; });
                continue;
            }
            switch (f.scale) {
                case block_scale_kind::power_of_two:
                    expect(scale >= 0x1p-127 && scale <= 0x1p127 && std::ilogb(scale) == std::log2(scale),
                           [&] { return where + "MX scale " + describe_value(scale) + " is not 2^e, e in [-127, 127]"; });
                    break;
                case block_scale_kind::float_two_level:
                    expect(scale >= 0 && lowbit::quantize(scale, f.block_scale_format, lowbit::rounding::nearest_even,
                                                          lowbit::overflow::saturate) == scale,
                           [&] { return where + "NVFP4 block scale " + describe_value(scale) + " is not a non-negative value of the scale format"; });
                    break;
                case block_scale_kind::int_two_level:
                    expect(scale == std::floor(scale) && scale >= (all_zero ? 0 : 1) && scale <= std::ldexp(1.0, f.scale_bits) - 1 &&
                               (!all_zero || scale == 0),
                           [&] { return where + "VS-Quant scale " + describe_value(scale) + " for a " + (all_zero ? "zero" : "non-zero") + " vector"; });
                    break;
            }
            for (std::size_t k = begin; k < end; ++k) {
                const double y = m.elements[m.index(line, k)];
                const std::string element = where + "element " + describe_value(y) + " (of x = " + describe_value(data[m.index(line, k)]) + ")";
                expect(!std::isnan(y) && !std::isnan(out[m.index(line, k)]), [&] { return element + ": NaN in a finite block"; });
                if (scale * m.coarse_scale(line) == 0) {
                    // A block whose scale is 0 (NVFP4: s_b rounded to 0; VS-Quant: all zero) is
                    // documented to quantize to zeros, whether or not the element format has one.
                    expect(y == 0, [&] { return element + " in a block whose scale is 0"; });
                } else if (float_element != nullptr) {
                    expect(lowbit::quantize(y, *float_element, lowbit::rounding::nearest_even, lowbit::overflow::saturate) == y,
                           [&] { return element + " is not a value of the element format " + lowbit::to_string(*float_element); });
                } else {
                    const auto& e = std::get<lowbit::int_element>(f.element);
                    const bool codes = f.scale == block_scale_kind::int_two_level;
                    const double code = codes ? y : std::ldexp(y, e.fraction_bits);
                    const double highest = e.format.max_value();
                    const double lowest = codes || (e.narrow_range && e.format.is_signed) ? -highest : e.format.min_value();
                    expect(code == std::floor(code) && code >= lowest && code <= highest,
                           [&] { return element + " is not " + (codes ? "a code" : "2^-fraction_bits times a code") + " of the integer element's range"; });
                }
            }
        }
        if (f.scale == block_scale_kind::int_two_level && f.coarse == lowbit::coarse_scope::per_line)
            expect((m.coarse_scales[line] == 0) == !line_has_value, [&] {
                return "line " + std::to_string(line) + ": gamma " + describe_value(m.coarse_scales[line]) +
                       (line_has_value ? " for a line with non-zero values" : " for a line of zeros");
            });
    }
}

// Element (r, c) of the cols x rows transpose of a rows x cols matrix.
std::vector<float> transposed(const std::vector<float>& a, std::size_t rows, std::size_t cols) {
    std::vector<float> t(a.size());
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c) t[c * rows + r] = a[r * cols + c];
    return t;
}

bool same_values(const std::vector<double>& a, const std::vector<double>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](double x, double y) { return same_value(x, y); });
}
bool same_values(const std::vector<float>& a, const std::vector<float>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](float x, float y) { return same_value(x, y); });
}

void check_transpose(const block_scaled_matrix& m, const std::vector<float>& data, const block_format& f) {
    const auto t = quantized(transposed(data, m.rows, m.cols), m.cols, m.rows, f, 1 - m.k_axis, true);
    expect(same_values(t->block_scales, m.block_scales) && same_values(t->coarse_scales, m.coarse_scales) &&
               same_values(transposed(t->elements, m.cols, m.rows), m.elements),
           [] { return std::string("quantizing A^T along the other axis is not A's quantization transposed"); });
}

void check_negation(const block_scaled_matrix& m, const std::vector<float>& data, const block_format& f) {
    std::vector<float> negated(data);
    for (float& x : negated) x = -x;
    const auto n = quantized(negated, m.rows, m.cols, f, m.k_axis, true);
    // (as values: the sign of a zero element is not promised where the scale is 0)
    const bool negated_elements = std::equal(m.elements.begin(), m.elements.end(), n->elements.begin(),
                                             [](float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == -b; });
    expect(same_values(n->block_scales, m.block_scales) && same_values(n->coarse_scales, m.coarse_scales) &&
               negated_elements,
           [] { return std::string("-A does not give A's scales and negated elements"); });
}

// The largest magnitude outside the blocks that hold a NaN or an infinity (which the coarse
// scales ignore).
double amax_of_finite_blocks(const block_scaled_matrix& m, const std::vector<float>& data) {
    const std::size_t v = std::size_t(m.block_size());
    double amax = 0;
    for (std::size_t line = 0; line < m.lines(); ++line)
        for (std::size_t begin = 0; begin < m.line_length(); begin += v) {
            double block = 0;
            for (std::size_t k = begin; k < std::min(m.line_length(), begin + v); ++k)
                block = std::isfinite(data[m.index(line, k)]) ? std::max(block, double(std::fabs(data[m.index(line, k)])))
                                                               : std::numeric_limits<double>::quiet_NaN();
            if (!std::isnan(block)) amax = std::max(amax, block);
        }
    return amax;
}

bool normal_float(double x) { return x >= double(std::numeric_limits<float>::min()) && x <= double(std::numeric_limits<float>::max()); }

void check_power_of_two(const block_scaled_matrix& m, const std::vector<float>& data, const block_format& f, int s) {
    std::vector<float> scaled(data);
    for (float& x : scaled) {
        const float y = std::ldexp(x, s);
        // Only where 2^s A is exact and no value is a subnormal: they would lose bits.
        if (std::isfinite(x) && x != 0 && !(normal_float(std::fabs(x)) && normal_float(std::fabs(y)))) return;
        x = y;
    }
    const auto t = quantized(scaled, m.rows, m.cols, f, m.k_axis, true);
    const double factor = std::ldexp(1.0, s);
    if (f.scale != block_scale_kind::power_of_two) {
        // The per-tensor (per-unit) float scale: both 0 (VS-Quant, all-zero units) or both 1
        // (NVFP4, all-zero tensor), or both normal floats 2^s apart; otherwise rounding to float
        // or the NVFP4 floor at denorm_min differs.
        const bool zero_tensor = amax_of_finite_blocks(m, data) == 0;
        for (std::size_t u = 0; u < m.coarse_scales.size(); ++u) {
            const double a = m.coarse_scales[u], b = t->coarse_scales[u];
            if ((a == 0 && b == 0) || zero_tensor) continue;
            if (!(normal_float(a) && normal_float(b))) return;
            expect(b == a * factor, [&] { return "the coarse scale " + describe_value(a) + " of A becomes " + describe_value(b) + " for 2^s A"; });
        }
        expect(same_values(t->block_scales, m.block_scales) && same_values(t->elements, m.elements),
               [] { return std::string("2^s A does not give A's block scales and elements"); });
        return;
    }
    // MX: block by block, where A's exponent and A's plus s are inside E8M0's range.
    const std::size_t per_line = m.blocks_per_line(), v = std::size_t(m.block_size());
    for (std::size_t line = 0; line < m.lines(); ++line)
        for (std::size_t b = 0; b < per_line; ++b) {
            const double a = m.block_scales[line * per_line + b], c = t->block_scales[line * per_line + b];
            // (an all-zero block has 2^-127, outside: both times)
            if (std::isnan(a) || !(a > 0x1p-127 && a < 0x1p127) || !(a * factor > 0x1p-127 && a * factor < 0x1p127))
                continue;
            expect(c == a * factor, [&] { return "MX scale " + describe_value(a) + " of a block of A is " + describe_value(c) + " for 2^s A"; });
            for (std::size_t k = b * v; k < std::min(m.line_length(), (b + 1) * v); ++k)
                expect(same_value(m.elements[m.index(line, k)], t->elements[m.index(line, k)]),
                       [&] { return "an MX element of A differs for 2^s A"; });
        }
}

void check_mx_fixed_point(const block_scaled_matrix& m, const std::vector<float>& dequantized_values, const block_format& f) {
    for (std::size_t line = 0; line < m.lines(); ++line)
        for (std::size_t k = 0; k < m.line_length(); ++k) {
            const std::size_t i = m.index(line, k);
            const double exact = double(m.elements[i]) * m.block_scale(line, k);
            if (!std::isnan(exact) && double(dequantized_values[i]) != exact) return;  // rounded to float: no claim
        }
    const auto again = quantized(dequantized_values, m.rows, m.cols, f, m.k_axis, true);
    expect(same_values(dequantized(*again), dequantized_values),
           [] { return std::string("MX: quantizing the dequantized matrix changes it"); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    const std::optional<block_format> format = consume_block_format(in);
    if (!format) return 0;
    const auto rows = in.ConsumeIntegralInRange<std::size_t>(0, 8), cols = in.ConsumeIntegralInRange<std::size_t>(0, 40);
    const std::uint8_t axis = in.ConsumeIntegral<std::uint8_t>();
    const int k_axis = axis == 255 ? 2 : axis % 2;
    const int s = in.ConsumeIntegralInRange(-8, 8);
    const int base = in.ConsumeIntegralInRange(-150, 120);
    std::vector<float> values(rows * cols);
    for (float& x : values) x = consume_block_value(in, base);

    lowbit_fuzz::input_description() = [&] {
        std::string text = describe(*format) + "; " + std::to_string(rows) + " x " + std::to_string(cols) + ", k_axis " +
                        std::to_string(k_axis) + ", s " + std::to_string(s) + "; values";
        for (const float x : values) text += " " + describe_value(x);
        return text;
    };
    bool valid_format = true;
    try {
        format->validate();
    } catch (const std::invalid_argument&) {
        valid_format = false;
    }
    const bool valid = valid_format && rows > 0 && cols > 0 && (k_axis == 0 || k_axis == 1);
    const auto m = quantized(values, rows, cols, *format, k_axis, valid);
    if (!m) return 0;
    check_matrix(*m, values, *format);
    check_transpose(*m, values, *format);
    if (symmetric_grid(*format)) check_negation(*m, values, *format);
    check_power_of_two(*m, values, *format, s);
    if (format->scale == block_scale_kind::power_of_two && symmetric_grid(*format) &&
        format->exponent_rule != lowbit::scale_exponent_rule::nearest)
        check_mx_fixed_point(*m, dequantized(*m), *format);
    return 0;
}
