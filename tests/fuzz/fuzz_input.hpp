// tests/fuzz/fuzz_input.hpp: what every lowbit fuzz target shares: typed values drawn from the
// fuzzer's bytes (clang's FuzzedDataProvider reads them), and the one way to report a finding.
//
// The drawing functions return values valid or not (a format with exp_bits = 0, a bias far
// outside double's range): the library's own validate() must reject the bad ones with
// std::invalid_argument, and the targets skip those. Formats are presets half of the time,
// because the fast paths are written for them, and values are any bit pattern half of the time
// (NaN, infinity, subnormals) and otherwise near a format's grid (a value, a midpoint, a few ulps
// either side), where roundings change their minds.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <lowbit/formats/float_format.hpp>
#include <lowbit/rounding/modes.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <type_traits>

#include <unistd.h>

namespace lowbit_fuzz {

// What the current input is, in words (a target sets it for each input; finding prints it).
inline std::function<std::string()>& input_description() {
    static std::function<std::string()> describe;
    return describe;
}

// A wrong answer: says what, and for which input, then aborts, so that libFuzzer keeps the input
// as a crash.
[[noreturn]] inline void finding(const std::string& what) {
    std::fprintf(stderr, "\n*** lowbit fuzz finding: %s\n", what.c_str());
    if (input_description()) std::fprintf(stderr, "*** input: %s\n", input_description()().c_str());
    std::fflush(stderr);
    std::abort();
}

// A finding unless `holds`; `describe()` (called only then) says what was expected.
template <class Describe>
void expect(bool holds, Describe&& describe) {
    if (!holds) finding(describe());
}

// A file of this process holding `content`, for readers that take a path; removed when the input
// is done (or at the next input, when a finding aborts: the name is the same each time).
struct scratch_file {
    std::filesystem::path path;

    scratch_file(const std::string& name, std::span<const std::uint8_t> content) {
        const std::filesystem::path base =
            std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
        path = base / ("lowbit-fuzz-" + std::to_string(::getpid()) + "-" + name);
        std::FILE* out = std::fopen(path.c_str(), "wb");
        if (out == nullptr || std::fwrite(content.data(), 1, content.size(), out) != content.size() ||
            std::fclose(out) != 0)
            finding("cannot write " + path.string());
    }
    ~scratch_file() { std::filesystem::remove(path); }
    scratch_file(const scratch_file&) = delete;
    scratch_file& operator=(const scratch_file&) = delete;
};

// Bit patterns as hexadecimal, and values in %a (exact), for messages.
template <class T>
std::string describe_value(T x) {
    using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    char text[80];
    std::snprintf(text, sizeof text, "%a (0x%0*llx)", double(x), int(2 * sizeof(T)),
                  static_cast<unsigned long long>(std::bit_cast<U>(x)));
    return text;
}

// Equal bit patterns, except that any NaN equals any NaN (payloads are not promised).
template <class T>
bool same_value(T a, T b) {
    using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    return (std::isnan(a) && std::isnan(b)) || std::bit_cast<U>(a) == std::bit_cast<U>(b);
}

// One of the enumerators first..last (declared consecutively from 0).
template <class E>
E consume_enum(FuzzedDataProvider& in, E last) {
    return static_cast<E>(in.ConsumeIntegralInRange<int>(0, static_cast<int>(last)));
}

inline lowbit::rounding consume_rounding(FuzzedDataProvider& in) { return consume_enum(in, lowbit::rounding::odd); }
inline lowbit::overflow consume_overflow(FuzzedDataProvider& in) { return consume_enum(in, lowbit::overflow::saturate); }

inline constexpr lowbit::float_format presets[] = {
    lowbit::fp32,     lowbit::tf32,     lowbit::bf16,     lowbit::fp16,  lowbit::fp8_e4m3,     lowbit::fp8_e5m2,
    lowbit::fp6_e2m3, lowbit::fp6_e3m2, lowbit::fp4_e2m1, lowbit::ue8m0, lowbit::ue4m3, lowbit::lba_m7e4_acc,
    lowbit::lba_m7e4_prod};

// A float_format, valid or not: a preset, or every field drawn (exp_bits 0..12 and man_bits -1..53
// reach one past each limit; specials 3 is fnuz, which was no special_values when the corpus was
// made: its inputs keep their meaning, and those that drew 3 now reach the fnuz formats).
inline lowbit::float_format consume_float_format(FuzzedDataProvider& in) {
    if (in.ConsumeBool()) return in.PickValueInArray(presets);
    lowbit::float_format f;
    f.exp_bits = in.ConsumeIntegralInRange(0, 12);
    f.man_bits = in.ConsumeIntegralInRange(-1, 53);
    const int ieee_default = (1 << (std::max(f.exp_bits, 1) - 1)) - 1;
    switch (in.ConsumeIntegralInRange(0, 3)) {
        case 0: break;  // the IEEE default
        case 1: f.bias = ieee_default + in.ConsumeIntegralInRange(-8, 8); break;
        case 2: f.bias = in.ConsumeIntegralInRange(-5000, 5000); break;
        default: f.bias = in.ConsumeIntegral<int>(); break;
    }
    f.subnormals = in.ConsumeBool();
    f.specials = static_cast<lowbit::special_values>(in.ConsumeIntegralInRange(0, 3));
    f.is_signed = !in.ConsumeBool();
    f.has_zero = !in.ConsumeBool();
    return f;
}

// A value of type T: any bit pattern, or near a value of `near` (a valid format): a grid value or
// a midpoint between two (one more significand bit), in or just beyond the format's exponent
// range, moved by up to 2 ulps of T.
template <class T>
T consume_value(FuzzedDataProvider& in, const lowbit::float_format& near) {
    using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    if (in.ConsumeBool()) return std::bit_cast<T>(in.ConsumeIntegral<U>());
    const int bits = std::min(near.man_bits + 1, 62);  // significand bits after the leading 1
    const auto fraction = in.ConsumeIntegralInRange<std::uint64_t>(0, (std::uint64_t(1) << bits) - 1);
    const int exponent = in.ConsumeIntegralInRange(near.emin() - near.man_bits - 2, near.emax() + 2);
    T x = T(std::ldexp(1.0 + std::ldexp(double(fraction), -bits), exponent));
    if (in.ConsumeBool()) x = -x;
    for (int step = in.ConsumeIntegralInRange(-2, 2); step != 0; step += step > 0 ? -1 : 1)
        x = std::nextafter(x, step > 0 ? std::numeric_limits<T>::infinity() : -std::numeric_limits<T>::infinity());
    return x;
}

}  // namespace lowbit_fuzz
