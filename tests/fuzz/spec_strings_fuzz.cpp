// Fuzz target: the text forms of float_format, quantizer and gemm_spec (format_names.hpp,
// quantizer.hpp, gemm_spec.hpp). There is no text form of lns_format to parse.
//
// Input: the first byte picks the type (byte % 3) and the direction (byte / 3 % 2):
//   text:   the rest is the text; parse(text), then the round trip of what it gives;
//   value:  the rest are the bytes of a value (fuzz_specs.hpp); if it is valid, its round trip.
// Properties, from the grammars at the top of those headers:
//   - parse throws std::invalid_argument with a message, or returns a valid value (nothing else
//     escapes, nothing crashes);
//   - parsing is case-insensitive: the text in upper case parses to an equal value, or fails too;
//   - to_string of a valid value parses back to an equal value, whose to_string is the same text.
#include "fuzz_specs.hpp"

#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/quantizer.hpp>
#include <lowbit/formats/float_format.hpp>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

using lowbit_fuzz::expect;
using lowbit_fuzz::finding;

// What parse gives, or nothing when it rejects the text as documented.
template <class T>
std::optional<T> parsed(std::string_view text) {
    try {
        return T::parse(text);
    } catch (const std::invalid_argument& e) {
        expect(*e.what() != '\0', [&] { return "parse('" + std::string(text) + "') threw std::invalid_argument without a message"; });
        return std::nullopt;
    } catch (const std::exception& e) {
        finding("parse('" + std::string(text) + "') threw something other than std::invalid_argument: " + e.what());
    }
}

// A value's text parses back to an equal value, with the same text.
template <class T>
void check_round_trip(const T& value, std::string_view origin) {
    const std::string text = to_string(value);
    const std::optional<T> back = parsed<T>(text);
    expect(back.has_value(), [&] { return std::string(origin) + ": its text '" + text + "' does not parse"; });
    expect(*back == value, [&] {
        return std::string(origin) + ": its text '" + text + "' parses to another value, '" + to_string(*back) + "'";
    });
    expect(to_string(*back) == text, [&] {
        return std::string(origin) + ": text '" + text + "' parses to a value whose text is '" + to_string(*back) + "'";
    });
}

template <class T>
void check_text(std::string_view text) {
    const std::optional<T> value = parsed<T>(text);
    std::string upper(text);
    std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return char(std::toupper(c)); });
    const std::optional<T> upper_value = parsed<T>(upper);
    expect(value.has_value() == upper_value.has_value() && (!value || *value == *upper_value), [&] {
        return "'" + std::string(text) + "' and its upper case '" + upper + "' parse differently (" +
               (value ? to_string(*value) : std::string("rejected")) + " vs " +
               (upper_value ? to_string(*upper_value) : std::string("rejected")) + ")";
    });
    if (!value) return;
    try {
        value->validate();
    } catch (const std::invalid_argument& e) {
        finding("parse('" + std::string(text) + "') returned an invalid value: " + e.what());
    }
    check_round_trip(*value, "parse('" + std::string(text) + "')");
}

template <class T, class Consume>
void check_value(FuzzedDataProvider& in, Consume&& consume) {
    const T value = consume(in);
    try {
        value.validate();
    } catch (const std::invalid_argument&) {
        return;  // not a valid value: nothing to write
    }
    check_round_trip(value, "a valid value");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const int type = data[0] % 3;
    const bool text_mode = data[0] / 3 % 2 == 0;
    if (text_mode) {
        const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
        if (type == 0) check_text<lowbit::float_format>(text);
        else if (type == 1) check_text<lowbit::quantizer>(text);
        else check_text<lowbit::gemm_spec>(text);
        return 0;
    }
    FuzzedDataProvider in(data + 1, size - 1);
    if (type == 0) check_value<lowbit::float_format>(in, lowbit_fuzz::consume_float_format);
    else if (type == 1) check_value<lowbit::quantizer>(in, lowbit_fuzz::consume_quantizer);
    else check_value<lowbit::gemm_spec>(in, lowbit_fuzz::consume_gemm_spec);
    return 0;
}
