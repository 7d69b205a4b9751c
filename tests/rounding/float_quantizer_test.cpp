// float_quantizer's array path against the scalar rounding, on every fp16 and bf16 bit pattern.
//
// The array path rounds each block with a shorter kernel chosen per plan (dispatch_short_kernel:
// with or without the steps for tiny inputs, flushing and unsigned formats) and hands the rare
// inputs it cannot take to the full kernel. The full kernel is what lowbit::quantize runs, and
// quantize_mpfr_test.cpp proves it against MPFR on these inputs; here every array result must
// equal it bit for bit, for formats that reach every short kernel: subnormals on and off,
// man_bits 0..10 (tiny inputs flushed by the kernel from man_bits 4 on), all three kinds of
// specials, unsigned formats, and exponent ranges with and without tiny inputs.
#include <lowbit/rounding/float_quantizer.hpp>
#include <lowbit/rounding/quantize.hpp>
#include <lowbit/types/encoding.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using lowbit::float_format;
using lowbit::overflow;
using lowbit::rounding;
using lowbit::special_values;

constexpr rounding all_modes[] = {rounding::nearest_even, rounding::nearest_away,    rounding::toward_zero,
                                  rounding::toward_positive, rounding::toward_negative, rounding::stochastic,
                                  rounding::odd};

// Every finite and non-finite value of fp16 and of bf16 (bf16 covers float's subnormals), each
// once with either sign, in an order that mixes magnitudes inside each block.
std::vector<float> every_half_and_bfloat() {
    std::vector<float> v;
    v.reserve(2 * 65536);
    for (std::uint32_t code = 0; code < 65536; ++code) {
        v.push_back(std::bit_cast<float>(code << 16));  // bf16
        v.push_back(float(lowbit::decode(lowbit::fp16, code)));
    }
    return v;
}

template <class T>
bool same_bits(T a, T b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0 || (a != a && b != b);  // any NaN equals any NaN
}

constexpr std::uint64_t seed = 0x5eed, first_index = 11;

// The random bits of element i of an array call with first_index: computed once for all formats.
const std::vector<std::uint32_t>& random_words(std::size_t n) {
    static const std::vector<std::uint32_t> words = [n] {
        std::vector<std::uint32_t> w(n);
        for (std::size_t i = 0; i < n; ++i) w[i] = lowbit::random_bits_at(seed, first_index + i);
        return w;
    }();
    return words;
}

// The first element where the array call differs from the full scalar kernel (the one
// lowbit::quantize runs: checked against quantize itself on every 61st input), or "".
template <class T>
std::string first_mismatch(const lowbit::float_quantizer& q, const std::vector<T>& in) {
    std::vector<T> out(in.size());
    q(std::span<const T>(in), std::span<T>(out), first_index);
    const auto& random = random_words(in.size());
    const auto plan = lowbit::rounding_plan<T>::make(q.format, q.on_overflow, q.random_bits);
    return lowbit::dispatch_rounding(q.mode, [&](auto mode) -> std::string {
        for (std::size_t i = 0; i < in.size(); ++i) {
            const T scalar = lowbit::round_with_plan<mode()>(in[i], plan, random[i]);
            const bool spot_check = i % 61 == 0;
            const T quantized = spot_check ? lowbit::quantize(in[i], q.format, q.mode, q.on_overflow, random[i], q.random_bits)
                                           : scalar;
            if (!same_bits(out[i], scalar) || !same_bits(quantized, scalar)) {
                std::ostringstream s;
                s.precision(17);
                s << lowbit::to_string(q.format) << " mode " << int(q.mode) << " overflow " << int(q.on_overflow)
                  << " random_bits " << q.random_bits << ": x = " << in[i] << " array " << out[i] << " scalar "
                  << scalar << " quantize " << quantized;
                return s.str();
            }
        }
        return "";
    });
}

}  // namespace

// Formats that reach every short kernel, with every mode, overflow policy and 32 or 3 random bits.
template <class T>
void check_every_kernel(const std::vector<T>& inputs) {
    std::vector<float_format> formats;
    for (int e = 2; e <= 8; ++e)
        for (int m = 0; m <= 10; ++m)
            for (bool subnormals : {true, false})
                for (special_values s : {special_values::ieee, special_values::fn, special_values::none})
                    formats.push_back(float_format{.exp_bits = e, .man_bits = m, .subnormals = subnormals, .specials = s});
    for (int m : {0, 2, 3, 4, 7})
        for (bool subnormals : {true, false}) {
            formats.push_back(float_format{.exp_bits = 4, .man_bits = m, .subnormals = subnormals, .is_signed = false});
            formats.push_back(float_format{.exp_bits = 8, .man_bits = m, .bias = 127, .subnormals = subnormals,
                                           .specials = special_values::none, .is_signed = false});
        }
    formats.push_back(lowbit::ue8m0);
    formats.push_back(lowbit::lba_m7e4_acc);
    formats.push_back(float_format{.exp_bits = 8, .man_bits = 23, .subnormals = false});  // no dropped bits
    for (const float_format& f : formats) {
        if constexpr (std::is_same_v<T, float>)
            if (!lowbit::float_quantizer{.format = f}.float_native()) continue;
        for (rounding mode : all_modes)
            for (overflow ov : {overflow::infinity, overflow::saturate})
                for (int bits : {32, 3}) {
                    if (bits != 32 && mode != rounding::stochastic) continue;
                    const lowbit::float_quantizer q{.format = f, .mode = mode, .on_overflow = ov, .seed = seed, .random_bits = bits};
                    const std::string mismatch = first_mismatch(q, inputs);
                    INFO(mismatch);
                    REQUIRE(mismatch.empty());
                }
    }
}

TEST_CASE("float arrays equal the scalar rounding for every fp16 and bf16 input and every kernel") {
    check_every_kernel(every_half_and_bfloat());
}

TEST_CASE("double arrays equal the scalar rounding for every fp16 and bf16 input and every kernel") {
    const std::vector<float> floats = every_half_and_bfloat();
    check_every_kernel(std::vector<double>(floats.begin(), floats.end()));
}

TEST_CASE("arrays reject invalid settings as the scalar rounding does, also when empty") {
    // (Found by the quantize_diff fuzz target: float arrays of formats wider than float, which go
    // through double block by block, made no rounding plan for an empty array and so accepted
    // random_bits = 0.)
    for (const float_format& f : {lowbit::bf16, lowbit::ue8m0, float_format{.exp_bits = 11, .man_bits = 52}})
        for (int bits : {0, 33})
            for (std::size_t n : {0, 3}) {
                const lowbit::float_quantizer q{.format = f, .random_bits = bits};
                std::vector<float> floats(n);
                std::vector<double> doubles(n);
                CAPTURE(lowbit::to_string(f), bits, n);
                CHECK_THROWS_AS(lowbit::quantize(1.0f, f, rounding::nearest_even, overflow::infinity, 0u, bits),
                                std::invalid_argument);
                CHECK_THROWS_AS(q(std::span<const float>(floats), std::span<float>(floats)), std::invalid_argument);
                CHECK_THROWS_AS(q(std::span<const double>(doubles), std::span<double>(doubles)), std::invalid_argument);
            }
}
