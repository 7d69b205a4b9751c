// Differential fuzz target: the array quantizers against the scalar ones, on arbitrary float and
// double bits, arbitrary formats, modes, overflow policies and random streams
// (lowbit/rounding/quantize.hpp, float_quantizer.hpp, int_quantizer.hpp).
//
// Input: the first byte's bit 0 says whether a quantizer's text (quantizer.hpp's grammar) follows,
// up to a newline; the rest are FuzzedDataProvider bytes: the quantizer's fields (unless given as
// text), the element type, the stream index of the first element, and the values (any bits, or
// near the format's grid).
// Properties:
//   - float formats, from the definitions of float_quantizer and quantize.hpp: element i of an
//     array call (a span, in place, or split in two at any point) is bit for bit the scalar
//     quantize of that element with the random bits of index first_index + i
//     (random_bits_at(seed, index)), and float_quantizer's own scalar call; both throw
//     std::invalid_argument alike for an invalid format or random_bits;
//   - and, from "the value of the format nearest to x under the mode" (rounding_plan.hpp): a
//     float rounds as the same double does (formats that fit float); rounding a result again
//     changes nothing; the result is one of x's two neighbours on the grid (its rounding toward
//     -infinity or +infinity); deterministic modes are monotonic; and a result (other than a NaN
//     in a format without a NaN code) encodes to a code that decodes to it (types/encoding.hpp);
//   - integer quantizers: element i of an array equals the scalar call with index
//     first_index + i, and both equal the definition at the top of int_quantizer.hpp, evaluated
//     exactly in long double: n = round(x 2^f) in the mode, wrapped modulo 2^bits or saturated
//     into the range (NaN stays, infinities saturate), times 2^-f.
#include "fuzz_specs.hpp"

#include <lowbit/datapath/quantizer.hpp>
#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/float_quantizer.hpp>
#include <lowbit/rounding/int_quantizer.hpp>
#include <lowbit/rounding/quantize.hpp>
#include <lowbit/rounding/random_bits.hpp>
#include <lowbit/types/encoding.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace {

using lowbit::rounding;
using lowbit_fuzz::describe_value;
using lowbit_fuzz::expect;
using lowbit_fuzz::finding;

template <class T>
bool same_bits(T a, T b) {
    using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    return std::bit_cast<U>(a) == std::bit_cast<U>(b);
}

// Equal as values: NaN equals NaN, -0 equals +0.
template <class T>
bool same_number(T a, T b) {
    return (std::isnan(a) && std::isnan(b)) || a == b;
}

std::string describe(const lowbit::float_quantizer& q) {
    return (q.format.is_valid() ? lowbit::to_string(q.format) : std::string("(invalid format)")) + ", " +
           lowbit::to_string(q.mode) + ", overflow " + lowbit::to_string(q.on_overflow) + ", seed " +
           std::to_string(q.seed) + ", random_bits " + std::to_string(q.random_bits);
}

std::string describe(const lowbit::int_quantizer& q) {
    return (q.format.is_signed ? "int" : "uint") + std::to_string(q.format.bits) + ", frac " +
           std::to_string(q.fraction_bits) + ", " + lowbit::to_string(q.mode) + ", " +
           (q.on_overflow == lowbit::int_overflow::wrap ? "wrap" : "saturate") + ", seed " + std::to_string(q.seed) +
           ", random_bits " + std::to_string(q.random_bits);
}

// ---- float formats ----

std::uint32_t random_of(const lowbit::float_quantizer& q, std::uint64_t index) {
    return q.mode == rounding::stochastic ? lowbit::random_bits_at(q.seed, index) : 0u;
}

// The scalar quantize of x as element `index`, or nothing when it rejects the settings.
template <class T>
std::optional<T> scalar(const lowbit::float_quantizer& q, T x, std::uint64_t index) {
    try {
        return lowbit::quantize(x, q.format, q.mode, q.on_overflow, random_of(q, index), q.random_bits);
    } catch (const std::invalid_argument&) {
        return std::nullopt;
    }
}

template <class T>
T rounded_in(const lowbit::float_quantizer& q, T x, rounding mode) {
    return lowbit::quantize(x, q.format, mode, q.on_overflow, 0u, q.random_bits);
}

// The properties of one value's rounding (see the top), given the scalar result y.
template <class T>
void check_definition(const lowbit::float_quantizer& q, T x, T y, std::uint64_t index) {
    const auto where = [&] { return "quantize(" + describe_value(x) + ") = " + describe_value(y) + " under " + describe(q); };
    if constexpr (std::is_same_v<T, float>) {
        if (lowbit::detail::format_fits<float>(q.format)) {
            const double wide = lowbit::quantize(double(x), q.format, q.mode, q.on_overflow, random_of(q, index), q.random_bits);
            expect(same_number(double(y), wide) && std::signbit(double(y)) == std::signbit(wide),
                   [&] { return where() + ", but the same double rounds to " + describe_value(wide); });
        }
    }
    const T down = rounded_in(q, x, rounding::toward_negative), up = rounded_in(q, x, rounding::toward_positive);
    expect(same_number(y, down) || same_number(y, up), [&] {
        return where() + ", which is neither neighbour " + describe_value(down) + " nor " + describe_value(up);
    });
    // A float result of a format beyond float's range or precision is the float nearest to the
    // format's value (inf beyond FLT_MAX: quantize.hpp), not always a value of the format.
    if (std::is_same_v<T, float> && !lowbit::detail::format_fits<float>(q.format)) return;
    const T again = lowbit::quantize(y, q.format, q.mode, q.on_overflow, random_of(q, index + 1), q.random_bits);
    expect(same_bits(again, y) || (std::isnan(again) && std::isnan(y)),
           [&] { return where() + ", and rounding that again gives " + describe_value(again); });
    if (lowbit::has_nan_code(q.format) || !std::isnan(y)) {
        try {
            const double back = lowbit::decode(q.format, lowbit::encode(q.format, double(y)));
            // (NaN codes decode to a quiet NaN, sign and payload not kept: encoding.hpp)
            expect(same_number(back, double(y)) && (std::isnan(back) || std::signbit(back) == std::signbit(double(y))),
                   [&] { return where() + ", whose code decodes to " + describe_value(back); });
        } catch (const std::invalid_argument& e) {
            finding(where() + ", which does not encode: " + e.what());
        }
    }
}

template <class T>
void check_float(const lowbit::float_quantizer& q, const std::vector<T>& in, std::uint64_t first_index, std::size_t split) {
    std::vector<T> out(in.size());
    bool array_ok = true;
    try {
        q(std::span<const T>(in), std::span<T>(out), first_index);
    } catch (const std::invalid_argument&) {
        array_ok = false;
    }
    const bool scalar_ok = scalar(q, T(0), 0).has_value();
    expect(array_ok == scalar_ok, [&] {
        return std::string("the array call ") + (array_ok ? "accepts" : "rejects") + " what the scalar quantize " +
               (scalar_ok ? "accepts" : "rejects") + ": " + describe(q);
    });
    if (!array_ok) return;

    std::vector<T> in_place(in), pieces(in.size());
    q(std::span<T>(in_place), first_index);
    q(std::span<const T>(in).first(split), std::span<T>(pieces).first(split), first_index);
    q(std::span<const T>(in).subspan(split), std::span<T>(pieces).subspan(split), first_index + split);
    const bool monotonic = q.mode != rounding::stochastic;
    for (std::size_t i = 0; i < in.size(); ++i) {
        const T x = in[i];
        const T y = *scalar(q, x, first_index + i);
        const auto where = [&] {
            return "element " + std::to_string(i) + " (index " + std::to_string(first_index + i) + ") " + describe_value(x) +
                   " under " + describe(q) + ": scalar " + describe_value(y);
        };
        expect(same_bits(out[i], y), [&] { return where() + ", array " + describe_value(out[i]); });
        expect(same_bits(in_place[i], y), [&] { return where() + ", in place " + describe_value(in_place[i]); });
        expect(same_bits(pieces[i], y), [&] { return where() + ", split at " + std::to_string(split) + " " + describe_value(pieces[i]); });
        const T own = q(x, first_index + i);
        expect(same_bits(own, y), [&] { return where() + ", float_quantizer's scalar call " + describe_value(own); });
        check_definition(q, x, y, first_index + i);
        if (monotonic && i > 0 && !std::isnan(in[i - 1]) && !std::isnan(x) && !std::isnan(out[i - 1]) && !std::isnan(y)) {
            // (-0 before +0: formats without zero round them to -min_normal and +min_normal)
            const bool increasing = in[i - 1] < x || (in[i - 1] == x && (std::signbit(in[i - 1]) || !std::signbit(x)));
            const bool ordered = increasing ? out[i - 1] <= y : y <= out[i - 1];
            expect(ordered, [&] { return where() + ", not monotonic with the previous element " + describe_value(in[i - 1]) + " -> " + describe_value(out[i - 1]); });
        }
    }
}

// ---- integer formats ----

// n = round(y) in the mode (an integer y, infinity and NaN as they are); exact in long double.
long double round_integer(long double y, rounding mode, std::uint32_t random, int random_bits) {
    const long double magnitude = std::fabs(y), down = std::floor(magnitude), frac = magnitude - down;
    if (frac == 0 || !std::isfinite(y)) return y;
    const bool odd_down = std::fmod(down, 2.0L) != 0;
    bool up = false;
    switch (mode) {
        case rounding::nearest_even: up = frac > 0.5L || (frac == 0.5L && odd_down); break;
        case rounding::nearest_away: up = frac >= 0.5L; break;
        case rounding::toward_zero: up = false; break;
        case rounding::toward_positive: up = y > 0; break;
        case rounding::toward_negative: up = y < 0; break;
        case rounding::odd: up = !odd_down; break;
        case rounding::stochastic: {
            const long double scale = std::ldexp(1.0L, random_bits);
            const std::uint64_t u = random_bits == 32 ? random : random & ((std::uint32_t(1) << random_bits) - 1);
            up = std::floor(frac * scale) + (long double)u >= scale;
            break;
        }
    }
    return std::copysign(down + (up ? 1 : 0), y);
}

// The definition of int_quantizer (see the top of int_quantizer.hpp), exactly, as a double.
double int_definition(const lowbit::int_quantizer& q, double x, std::uint32_t random) {
    const long double lo = q.format.min_value(), hi = q.format.max_value(), span = std::ldexp(1.0L, q.format.bits);
    if (std::isnan(x)) return x;
    long double n = 0;
    if (std::isinf(x)) {
        n = x < 0 ? lo : hi;
    } else {
        n = round_integer(std::ldexp((long double)x, q.fraction_bits), q.mode, random, q.random_bits);
        if (n < lo || n > hi) {
            if (q.on_overflow == lowbit::int_overflow::saturate) n = n < lo ? lo : hi;
            else {  // lo + ((n - lo) mod 2^bits), by remainders that are exact
                const long double r = std::fmod(std::fmod(n, span) - lo, span);
                n = lo + (r < 0 ? r + span : r);
            }
        }
    }
    return double(std::ldexp(n, -q.fraction_bits));  // rounded once, to double
}

void check_int(const lowbit::int_quantizer& q, const std::vector<float>& in, std::uint64_t first_index) {
    try {
        q.validate();
    } catch (const std::invalid_argument&) {
        return;  // the quantizer's calls take a valid quantizer (gemm_spec::validate checks)
    }
    std::vector<float> data(in);
    q(std::span<float>(data), first_index);
    for (std::size_t i = 0; i < in.size(); ++i) {
        const std::uint64_t index = first_index + i;
        const float scalar = q(in[i], index);
        const std::uint32_t random = q.mode == rounding::stochastic ? lowbit::random_bits_at(q.seed, index) : 0u;
        const double exact = int_definition(q, double(in[i]), random);
        const double wide = q(double(in[i]), index);
        const auto where = [&] {
            return "element " + std::to_string(i) + " " + describe_value(in[i]) + " under " + describe(q) + ": scalar " +
                   describe_value(scalar);
        };
        expect(same_bits(data[i], scalar), [&] { return where() + ", array " + describe_value(data[i]); });
        expect(same_number(wide, exact) && (std::isnan(exact) || std::signbit(wide) == std::signbit(exact)),
               [&] { return where() + ", double " + describe_value(wide) + ", by the definition " + describe_value(exact); });
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::span<const std::uint8_t> rest(data + 1, size - 1);
    std::optional<lowbit::quantizer> parsed;
    if ((data[0] & 1) != 0) {
        const auto end = std::find(rest.begin(), rest.end(), std::uint8_t('\n'));
        const std::string_view text(reinterpret_cast<const char*>(rest.data()), std::size_t(end - rest.begin()));
        try {
            parsed = lowbit::quantizer::parse(text);
        } catch (const std::invalid_argument&) {
            return 0;
        }
        rest = rest.subspan(std::min(rest.size(), std::size_t(end - rest.begin()) + 1));
    }
    FuzzedDataProvider in(rest.data(), rest.size());
    const lowbit::quantizer q = parsed ? *parsed
                                : in.ConsumeBool() ? lowbit::quantizer(lowbit_fuzz::consume_float_quantizer(in))
                                                   : lowbit::quantizer(lowbit_fuzz::consume_int_quantizer(in));
    const bool doubles = q.as_float() != nullptr && in.ConsumeBool();
    const std::uint64_t first_index = in.ConsumeBool() ? in.ConsumeIntegralInRange<std::uint64_t>(0, 200) : in.ConsumeIntegral<std::uint64_t>();
    const lowbit::float_format near = q.as_float() != nullptr && q.as_float()->format.is_valid() ? q.as_float()->format : lowbit::fp32;
    std::vector<float> floats;
    std::vector<double> wides;
    while (in.remaining_bytes() > 0 && floats.size() + wides.size() < 300) {
        if (doubles) wides.push_back(lowbit_fuzz::consume_value<double>(in, near));
        else floats.push_back(lowbit_fuzz::consume_value<float>(in, near));
    }
    lowbit_fuzz::input_description() = [&] {
        std::string s = q.as_float() ? describe(*q.as_float()) : q.as_int() ? describe(*q.as_int()) : "exact";
        s += "; first index " + std::to_string(first_index) + "; values";
        for (const float x : floats) s += " " + describe_value(x);
        for (const double x : wides) s += " " + describe_value(x);
        return s;
    };
    const std::size_t split = std::size_t(first_index % 97) % (floats.size() + wides.size() + 1);
    if (const auto* f = q.as_float()) {
        if (doubles) check_float(*f, wides, first_index, split);
        else check_float(*f, floats, first_index, split);
    } else if (const auto* i = q.as_int()) {
        check_int(*i, floats, first_index);
    }
    return 0;
}
