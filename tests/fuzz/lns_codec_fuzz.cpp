// Fuzz target: the logarithmic number system's encode and decode (lowbit/formats/lns_format.hpp,
// lowbit/rounding/lns_quantize.hpp, lowbit/types/lns.hpp), on formats with every field drawn.
//
// Input (FuzzedDataProvider): an lns_format (lns8, lns16 or drawn), a rounding mode, an underflow
// rule, a seed and random_bits, a code k of the format, then values (any double bits, or near a
// value or a midpoint of the format).
// Properties, each from the definitions in those headers:
//   - errors: validate() rejects a format with std::invalid_argument; everything else accepts
//     every double and never throws (stochastic_log: random_bits outside [1, 32] throw);
//   - decode: magnitude(k) is 2^(k/gamma) rounded to the nearest double, and lns_magnitude_float
//     to the nearest float, checked against the x87's exp2l (64-bit significand), where that
//     decides (not within 2^-8 of a rounding boundary in units of the last place);
//   - encode(decode): the value of code k rounds back to k in both nearest modes; toward_zero
//     gives k or k - 1; stochastic_log k or k - 1; the float value of k (a normal float) rounds
//     back to k nearest_log, as its error is below a quarter of the format's step;
//   - encode: for any double x, the k of each mode is the one the definition gives with
//     t = gamma log2|x| from the x87's log2l: round(t), floor(t), the nearer of the two
//     neighbours in linear distance (a tie, only for gamma = 1, to the even k), floor(t) plus the
//     stochastic carry; where that decides.
//     Then the range: k above k_max saturates, below k_min underflows (to zero or k_min); NaN
//     stays NaN, +-0 stays, infinity saturates;
//   - arrays: lns_quantizer on a span equals the scalar call with index first_index + i, for
//     float and double, and lns_quantize with the random bits of that index;
//   - lns<lns8> and lns<lns16>: a code decoded and encoded is the same code (NaN to NaN); a
//     product is the exact k_a + k_b, saturated or flushed.
#include "fuzz_input.hpp"

#include <lowbit/formats/lns_format.hpp>
#include <lowbit/rounding/lns_quantize.hpp>
#include <lowbit/rounding/random_bits.hpp>
#include <lowbit/types/lns.hpp>

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
#include <type_traits>
#include <vector>

namespace {

using lowbit::lns_format;
using lowbit::lns_rounding;
using lowbit::lns_underflow;
using lowbit_fuzz::describe_value;
using lowbit_fuzz::expect;
using lowbit_fuzz::finding;
using lowbit_fuzz::same_value;

static_assert(std::numeric_limits<long double>::digits >= 64,
              "the oracle needs the x87's 64-bit long double (x86-64 Linux)");

lns_format consume_lns_format(FuzzedDataProvider& in) {
    switch (in.ConsumeIntegralInRange(0, 3)) {
        case 0: return lowbit::lns8;
        case 1: return lowbit::lns16;
        default: break;
    }
    lns_format f;
    f.log_bits = in.ConsumeIntegralInRange(1, 25);
    f.frac_bits = in.ConsumeIntegralInRange(-1, 21);
    switch (in.ConsumeIntegralInRange(0, 2)) {
        case 0: f.offset = 0; break;
        case 1: f.offset = in.ConsumeIntegralInRange(-300, 300); break;
        default: f.offset = in.ConsumeIntegral<int>(); break;
    }
    return f;
}

std::string describe(const lns_format& f) {
    return "lns_format{log_bits " + std::to_string(f.log_bits) + ", frac_bits " + std::to_string(f.frac_bits) +
           ", offset " + std::to_string(f.offset) + "}";
}

// 2^(k / gamma) by the x87 (within about an ulp of its 64-bit significand).
long double exp2_of(std::int64_t k, int frac_bits) { return std::exp2(std::ldexp((long double)k, -frac_bits)); }

// v rounded to the nearest T, or nothing when v lies within 2^-8 ulp of a midpoint (or of the
// overflow threshold), where the x87's own error could decide.
template <class T>
std::optional<T> nearest_decided(long double v) {
    const T r = T(v);
    if (std::isinf(r)) {
        const long double threshold = (long double)std::numeric_limits<T>::max() +
                                      std::ldexp((long double)1, std::numeric_limits<T>::max_exponent - std::numeric_limits<T>::digits - 1);
        if (std::fabs(v - threshold) < threshold * 0x1p-60L) return std::nullopt;
        return r;
    }
    const T other = std::nextafter(r, v > (long double)r ? std::numeric_limits<T>::infinity() : T(0));
    const long double ulp = std::fabs((long double)other - (long double)r);
    if (ulp == 0) return r;
    const long double position = std::fabs(v - (long double)r) / ulp;  // 0 .. 1/2
    if (position > 0.5L - 0x1p-8L) return std::nullopt;
    return r;
}

// The k that the definition gives for |x| (positive, finite) in `mode`, before the range, from
// the x87's log2l; nothing where that is too close to a decision boundary to tell.
std::optional<std::int64_t> expected_k(double a, const lns_format& f, lns_rounding mode, std::uint32_t random,
                                       int random_bits) {
    const long double t = std::ldexp(std::log2((long double)a), f.frac_bits);
    // log2l errs by about an ulp of its 64-bit significand; a power of two it gets exactly.
    int exponent = 0;
    const bool power_of_two = std::frexp(a, &exponent) == 0.5;
    const long double error = power_of_two ? 0 : std::max((long double)1, std::fabs(t)) * 0x1p-54L;
    const auto decided = [&](long double y, long double e) { return e == 0 || std::fabs(y - std::nearbyint(y)) > e; };
    switch (mode) {
        case lns_rounding::nearest_log:
            if (!decided(t - 0.5L, error)) return std::nullopt;
            return std::int64_t(std::floor(t + 0.5L));
        case lns_rounding::toward_zero:
            if (!decided(t, error)) return std::nullopt;
            return std::int64_t(std::floor(t));
        case lns_rounding::nearest_linear: {
            // gamma = 1 has ties, a = 1.5 2^n between 2^n and 2^(n+1): to the even k.
            if (f.frac_bits == 0 && std::frexp(a, &exponent) == 0.75) return (exponent - 1) % 2 == 0 ? exponent - 1 : exponent;
            if (!decided(t, error)) return std::nullopt;
            const auto k = std::int64_t(std::floor(t));
            const long double below = (long double)a - exp2_of(k, f.frac_bits), above = exp2_of(k + 1, f.frac_bits) - (long double)a;
            if (std::fabs(below - above) <= (long double)a * 0x1p-56L) return std::nullopt;  // a tie only for gamma = 1
            return below < above ? k : k + 1;
        }
        case lns_rounding::stochastic_log: {
            const long double h = std::ldexp(t, random_bits);
            if (!decided(h, std::ldexp(error, random_bits)) || std::ldexp(error, random_bits) > 0.25L) return std::nullopt;
            const auto whole = std::int64_t(std::floor(h));
            const std::int64_t k = whole >= 0 ? whole >> random_bits : -((-whole - 1) >> random_bits) - 1;
            const std::uint64_t fraction = std::uint64_t(whole - k * (std::int64_t(1) << random_bits));
            const std::uint64_t u = random_bits == 32 ? random : random & ((std::uint32_t(1) << random_bits) - 1);
            return fraction + u >= (std::uint64_t(1) << random_bits) ? k + 1 : k;
        }
    }
    return std::nullopt;
}

// What lns_quantize must return for x, where the definition decides.
std::optional<double> expected_value(double x, const lns_format& f, lns_rounding mode, lns_underflow underflow,
                                     std::uint32_t random, int random_bits) {
    if (std::isnan(x) || x == 0) return x;
    std::int64_t k = f.k_max();
    if (!std::isinf(x)) {
        const auto rounded = expected_k(std::fabs(x), f, mode, random, random_bits);
        if (!rounded) return std::nullopt;
        k = *rounded;
    }
    if (k > f.k_max()) k = f.k_max();
    if (k < f.k_min()) {
        if (underflow == lns_underflow::zero) return std::copysign(0.0, x);
        k = f.k_min();
    }
    return std::copysign(f.magnitude(int(k)), x);
}

void check_decode(const lns_format& f, int k) {
    const long double exact = exp2_of(k, f.frac_bits);
    if (const auto d = nearest_decided<double>(exact))
        expect(same_value(f.magnitude(k), *d), [&] {
            return "magnitude(" + std::to_string(k) + ") = " + describe_value(f.magnitude(k)) + ", the nearest double is " + describe_value(*d);
        });
    const float m = lowbit::lns_magnitude_float(k, f);
    if (const auto d = nearest_decided<float>(exact))
        expect(same_value(m, *d), [&] {
            return "lns_magnitude_float(" + std::to_string(k) + ") = " + describe_value(m) + ", the nearest float is " + describe_value(*d);
        });
}

void check_encode_decode(const lns_format& f, int k, std::uint32_t random, int random_bits) {
    const double d = f.magnitude(k);
    const auto k_of = [&](double a, lns_rounding mode, lns_underflow underflow) {
        return lowbit::lns_round_magnitude(a, f, mode, underflow, random, random_bits);
    };
    for (const lns_rounding mode : {lns_rounding::nearest_log, lns_rounding::nearest_linear})
        expect(k_of(d, mode, lns_underflow::zero) == k, [&] {
            return std::string(lowbit::to_string(mode)) + " of magnitude(" + std::to_string(k) + ") is not " + std::to_string(k);
        });
    for (const lns_rounding mode : {lns_rounding::toward_zero, lns_rounding::stochastic_log}) {
        const std::optional<int> r = k_of(d, mode, lns_underflow::smallest);
        expect(r && (*r == k || *r == std::max(k - 1, f.k_min())), [&] {
            return std::string(lowbit::to_string(mode)) + " of magnitude(" + std::to_string(k) + ") is " +
                   (r ? std::to_string(*r) : std::string("zero")) + ", not k or k - 1";
        });
    }
    const float m = lowbit::lns_magnitude_float(k, f);
    if (std::isnormal(m))
        expect(k_of(double(m), lns_rounding::nearest_log, lns_underflow::zero) == k,
               [&] { return "the float value of k = " + std::to_string(k) + " does not round back to k"; });
}

void check_encode(double x, const lns_format& f, lns_rounding mode, lns_underflow underflow, std::uint32_t random,
                  int random_bits) {
    double got = 0;
    try {
        got = lowbit::lns_quantize(x, f, mode, underflow, random, random_bits);
    } catch (const std::invalid_argument& e) {
        expect(mode == lns_rounding::stochastic_log && (random_bits < 1 || random_bits > 32),
               [&] { return std::string("lns_quantize threw for a valid format and settings: ") + e.what(); });
        return;
    }
    const auto expected = expected_value(x, f, mode, underflow, random, random_bits);
    if (expected)
        expect(same_value(got, *expected), [&] {
            return "lns_quantize(" + describe_value(x) + ", " + lowbit::to_string(mode) + ", underflow " + lowbit::to_string(underflow) +
                   ", random " + std::to_string(random) + "/" + std::to_string(random_bits) + ") = " + describe_value(got) +
                   ", expected " + describe_value(*expected);
        });
}

template <class T>
void check_array(const lowbit::lns_quantizer& q, const std::vector<T>& in, std::uint64_t first_index) {
    std::vector<T> out(in.size());
    q(std::span<const T>(in), std::span<T>(out), first_index);
    for (std::size_t i = 0; i < in.size(); ++i) {
        const T one = q(in[i], first_index + i);
        expect(same_value(out[i], one), [&] {
            return "lns_quantizer array element " + std::to_string(i) + " of " + describe_value(in[i]) + " = " +
                   describe_value(out[i]) + ", the scalar call gives " + describe_value(one);
        });
        if constexpr (std::is_same_v<T, double>) {
            const std::uint32_t random = q.mode == lns_rounding::stochastic_log ? lowbit::random_bits_at(q.seed, first_index + i) : 0;
            const double direct = lowbit::lns_quantize(in[i], q.format, q.mode, q.on_underflow, random, q.random_bits);
            expect(same_value(one, direct), [&] { return "lns_quantizer(x, index) differs from lns_quantize with that index's bits"; });
        }
    }
}

// lns<F> for a compile-time format: codes round-trip, products are exact.
template <lns_format F>
void check_type(std::uint32_t code_a, std::uint32_t code_b) {
    using L = lowbit::lns<F>;
    const auto mask = (std::uint32_t(1) << F.bits()) - 1;
    const L a = L::from_bits(typename L::storage_type(code_a & mask)), b = L::from_bits(typename L::storage_type(code_b & mask));
    expect(L(double(a)).bits() == a.bits(), [&] { return "lns<" + describe(F) + ">: code " + std::to_string(a.bits()) + " does not round-trip through double"; });
    if (a.is_nan() || b.is_nan()) {
        expect((a * b).is_nan(), [] { return std::string("NaN times a value is not NaN"); });
        return;
    }
    const L p = a * b;
    if (a.is_zero() || b.is_zero()) {
        expect(p.is_zero(), [] { return std::string("zero times a value is not zero"); });
        return;
    }
    const std::int64_t k = std::int64_t(a.k()) + b.k();
    const bool negative = a.is_negative() != b.is_negative();
    if (k < F.k_min()) {
        expect(p.is_zero(), [&] { return "a product below k_min is not zero (k = " + std::to_string(k) + ")"; });
        return;
    }
    expect(!p.is_zero() && !p.is_nan() && p.k() == std::min<std::int64_t>(k, F.k_max()) && p.is_negative() == negative,
           [&] { return "lns<" + describe(F) + ">: the product of k " + std::to_string(a.k()) + " and " + std::to_string(b.k()) + " is not k_a + k_b saturated"; });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    const lns_format f = consume_lns_format(in);
    const auto mode = lowbit_fuzz::consume_enum(in, lns_rounding::stochastic_log);
    const auto underflow = lowbit_fuzz::consume_enum(in, lns_underflow::smallest);
    const auto seed = in.ConsumeIntegral<std::uint16_t>();
    const int random_bits = in.ConsumeBool() ? 32 : in.ConsumeIntegralInRange(0, 33);
    const auto first_index = in.ConsumeIntegralInRange<std::uint64_t>(0, 200);
    const auto code_a = in.ConsumeIntegral<std::uint32_t>(), code_b = in.ConsumeIntegral<std::uint32_t>();
    std::vector<double> values;
    lowbit_fuzz::input_description() = [&] {
        std::string s = describe(f) + ", " + lowbit::to_string(mode) + ", underflow " + lowbit::to_string(underflow) +
                        ", seed " + std::to_string(seed) + ", random_bits " + std::to_string(random_bits) + "; values";
        for (const double x : values) s += " " + describe_value(x);
        return s;
    };
    check_type<lowbit::lns8>(code_a, code_b);
    check_type<lowbit::lns16>(code_a, code_b);

    try {
        f.validate();
    } catch (const std::invalid_argument&) {
        return 0;
    }
    const int k = in.ConsumeIntegralInRange(f.k_min(), f.k_max());
    check_decode(f, k);
    const bool random_bits_valid = random_bits >= 1 && random_bits <= 32;
    if (random_bits_valid) check_encode_decode(f, k, lowbit::random_bits_at(seed, 0), random_bits);

    // Values: any bits, or a value or midpoint of the format moved by up to 2 ulps.
    while (in.remaining_bytes() > 0 && values.size() < 64) {
        double x = 0;
        if (in.ConsumeBool()) {
            x = std::bit_cast<double>(in.ConsumeIntegral<std::uint64_t>());
        } else {
            const int j = in.ConsumeIntegralInRange(f.k_min() - 2, f.k_max() + 2);
            const long double geometric = exp2_of(2 * std::int64_t(j) + 1, f.frac_bits + 1);
            const long double arithmetic = (exp2_of(j, f.frac_bits) + exp2_of(j + 1, f.frac_bits)) / 2;
            x = double(in.PickValueInArray({exp2_of(j, f.frac_bits), geometric, arithmetic}));
            for (int step = in.ConsumeIntegralInRange(-2, 2); step != 0; step += step > 0 ? -1 : 1)
                x = std::nextafter(x, step > 0 ? std::numeric_limits<double>::infinity() : 0.0);
            if (in.ConsumeBool()) x = -x;
        }
        values.push_back(x);
    }
    const lowbit::lns_quantizer q{.format = f, .mode = mode, .on_underflow = underflow, .seed = seed, .random_bits = random_bits};
    for (std::size_t i = 0; i < values.size(); ++i)
        check_encode(values[i], f, mode, underflow, mode == lns_rounding::stochastic_log ? lowbit::random_bits_at(seed, first_index + i) : 0,
                     random_bits);
    if (mode == lns_rounding::stochastic_log && !random_bits_valid) return 0;
    check_array(q, values, first_index);
    std::vector<float> floats;
    for (const double x : values) floats.push_back(float(x));
    check_array(q, floats, first_index);
    return 0;
}
