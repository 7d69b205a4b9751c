// lowbit/datapath/quantizer.hpp: one rounding step of a datapath (a product, an accumulator, an
// input), as plain runtime data: exact (no rounding), a float format, or an integer format.
//
//   lowbit::quantizer q_acc = lowbit::float_quantizer{.format = lowbit::lba_m7e4_acc,
//                                                     .mode = lowbit::rounding::toward_zero};
//   lowbit::quantizer q_int = lowbit::int_quantizer{.format = {.bits = 16},
//                                                   .on_overflow = lowbit::int_overflow::wrap};
//   lowbit::quantizer q_bf16 = lowbit::bf16;   // a format alone: nearest_even, IEEE overflow
//   lowbit::quantizer q = lowbit::quantizer::parse("m7e4,bias=10:toward_zero:saturate");
//
// Text form (what to_string writes and parse reads back; case-insensitive):
//   "exact"                               no rounding
//   float_format [":" option]*            the format as float_format::parse reads it, then
//       options: a rounding mode (nearest_even, nearest_away, toward_zero, toward_positive,
//       toward_negative, stochastic, odd), "infinity" | "saturate" | "infinity_always"
//       (overflow), "seed=N",
//       "random_bits=N"
//   ["u"] "int" bits [":" option]*         an integer format ("int8", "uint4"), then
//       options: a rounding mode, "wrap" | "saturate", "frac=N" (fraction bits), "seed=N",
//       "random_bits=N"
// to_string leaves out what is the default (nearest_even, infinity / wrap, frac=0, seed=0,
// random_bits=32). An option given twice, or one that does not belong, is an error.
#pragma once

#include <lowbit/formats/float_format.hpp>
#include <lowbit/formats/format_names.hpp>
#include <lowbit/formats/int_format.hpp>
#include <lowbit/rounding/float_quantizer.hpp>
#include <lowbit/rounding/int_quantizer.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace lowbit {

class quantizer {
public:
    quantizer() = default;  // exact: values pass unrounded
    quantizer(const float_quantizer& q) : q_(q) {}
    quantizer(const int_quantizer& q) : q_(q) {}
    quantizer(const float_format& f) : q_(float_quantizer{.format = f}) {}
    quantizer(const int_format& f) : q_(int_quantizer{.format = f}) {}

    bool is_exact() const { return std::holds_alternative<std::monostate>(q_); }
    const float_quantizer* as_float() const { return std::get_if<float_quantizer>(&q_); }
    const int_quantizer* as_int() const { return std::get_if<int_quantizer>(&q_); }

    // x rounded; `index` selects the random bits of stochastic rounding (random_bits.hpp).
    double operator()(double x, std::uint64_t index = 0) const {
        if (const auto* f = as_float()) return (*f)(x, index);
        if (const auto* i = as_int()) return (*i)(x, index);
        return x;
    }

    // Throws std::invalid_argument for an invalid format or setting.
    void validate() const {
        if (const auto* f = as_float()) {
            f->format.validate();
            (void)rounding_plan<double>::make(f->format, f->on_overflow, f->random_bits);
        }
        if (const auto* i = as_int()) i->validate();
    }

    // The quantizer a text names (see the top); std::invalid_argument naming what is wrong.
    static quantizer parse(std::string_view text);

    friend bool operator==(const quantizer& x, const quantizer& y) {
        if (x.is_exact() || y.is_exact()) return x.is_exact() == y.is_exact();
        if (const auto *a = x.as_float(), *b = y.as_float(); a != nullptr && b != nullptr)
            return a->format == b->format && a->mode == b->mode && a->on_overflow == b->on_overflow &&
                   a->seed == b->seed && a->random_bits == b->random_bits;
        if (const auto *a = x.as_int(), *b = y.as_int(); a != nullptr && b != nullptr)
            return a->format == b->format && a->mode == b->mode && a->on_overflow == b->on_overflow &&
                   a->fraction_bits == b->fraction_bits && a->seed == b->seed && a->random_bits == b->random_bits;
        return false;
    }

private:
    std::variant<std::monostate, float_quantizer, int_quantizer> q_;
};

namespace detail {

[[noreturn]] inline void bad_text(const char* what, std::string_view text, const std::string& why) {
    throw std::invalid_argument(std::string("lowbit::") + what + "::parse: '" + std::string(text) + "' " + why);
}

// A non-negative decimal integer (the whole of text), or a message.
template <class Int>
Int parse_count(const char* what, std::string_view whole, std::string_view text) {
    Int value{};
    const bool negative_allowed = std::is_signed_v<Int>;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc{} || end != text.data() + text.size() || (!negative_allowed && text[0] == '-'))
        bad_text(what, whole, "has '" + std::string(text) + "' where a number belongs");
    return value;
}

inline std::string lowercase(std::string_view text) {
    std::string s(text);
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

inline bool rounding_named(std::string_view name, rounding& mode) {
    for (const rounding m : {rounding::nearest_even, rounding::nearest_away, rounding::toward_zero,
                             rounding::toward_positive, rounding::toward_negative, rounding::stochastic, rounding::odd})
        if (name == to_string(m)) {
            mode = m;
            return true;
        }
    return false;
}

}  // namespace detail

inline quantizer quantizer::parse(std::string_view text) {
    const std::string lower = detail::lowercase(text);
    std::string_view s = lower;
    const auto colon = s.find(':');
    const std::string_view base = s.substr(0, colon);
    if (base == "exact") {
        if (colon != std::string_view::npos) detail::bad_text("quantizer", text, "has options, which 'exact' does not take");
        return quantizer{};
    }
    std::vector<std::string_view> options;
    for (auto rest = colon == std::string_view::npos ? std::string_view{} : s.substr(colon + 1);;) {
        const auto next = rest.find(':');
        options.push_back(rest.substr(0, next));
        if (next == std::string_view::npos) break;
        rest.remove_prefix(next + 1);
    }
    if (colon == std::string_view::npos) options.clear();
    const bool integer = base.starts_with("int") || base.starts_with("uint");
    float_quantizer f;
    int_quantizer q;
    std::vector<std::string_view> seen;  // the kinds of option given
    const auto once = [&](std::string_view kind) {
        if (std::find(seen.begin(), seen.end(), kind) != seen.end())
            detail::bad_text("quantizer", text, "gives the " + std::string(kind) + " twice");
        seen.push_back(kind);
    };
    if (integer) {
        const bool is_signed = base[0] == 'i';
        q.format = {.bits = detail::parse_count<int>("quantizer", text, base.substr(is_signed ? 3 : 4)), .is_signed = is_signed};
    } else {
        try {
            f.format = float_format::parse(base);
        } catch (const std::invalid_argument& e) {
            detail::bad_text("quantizer", text, std::string("does not start with a format: ") + e.what());
        }
    }
    for (const std::string_view option : options) {
        rounding mode;
        if (option.empty()) detail::bad_text("quantizer", text, "has an empty option (two colons in a row?)");
        if (detail::rounding_named(option, mode)) {
            once("rounding mode");
            (integer ? q.mode : f.mode) = mode;
        } else if (option == "saturate" || option == (integer ? "wrap" : "infinity") ||
                   (!integer && option == "infinity_always")) {
            once("overflow");
            if (integer) q.on_overflow = option == "wrap" ? int_overflow::wrap : int_overflow::saturate;
            else f.on_overflow = option == "infinity" ? overflow::infinity
                                 : option == "saturate" ? overflow::saturate
                                                        : overflow::infinity_always;
        } else if (option.starts_with("seed=")) {
            once("seed");
            (integer ? q.seed : f.seed) = detail::parse_count<std::uint64_t>("quantizer", text, option.substr(5));
        } else if (option.starts_with("random_bits=")) {
            once("random_bits");
            (integer ? q.random_bits : f.random_bits) = detail::parse_count<int>("quantizer", text, option.substr(12));
        } else if (integer && option.starts_with("frac=")) {
            once("frac");
            q.fraction_bits = detail::parse_count<int>("quantizer", text, option.substr(5));
        } else {
            detail::bad_text("quantizer", text,
                             "has an unknown option '" + std::string(option) + "' (a rounding mode, " +
                                 (integer ? "wrap, saturate, frac=N" : "infinity, saturate, infinity_always") + ", seed=N or random_bits=N)");
        }
    }
    const quantizer result = integer ? quantizer(q) : quantizer(f);
    result.validate();
    return result;
}

inline std::string to_string(const quantizer& q) {
    if (q.is_exact()) return "exact";
    std::string s;
    const auto common = [&](rounding mode, std::uint64_t seed, int random_bits) {
        if (mode != rounding::nearest_even) (s += ':') += to_string(mode);
        if (seed != 0) (s += ":seed=") += std::to_string(seed);
        if (random_bits != 32) (s += ":random_bits=") += std::to_string(random_bits);
    };
    if (const auto* f = q.as_float()) {
        s = to_string(f->format);
        if (f->on_overflow != overflow::infinity) (s += ':') += to_string(f->on_overflow);
        common(f->mode, f->seed, f->random_bits);
    } else {
        const int_quantizer& i = *q.as_int();
        s = i.format.is_signed ? "int" : "uint";
        s += std::to_string(i.format.bits);
        if (i.fraction_bits != 0) (s += ":frac=") += std::to_string(i.fraction_bits);
        if (i.on_overflow != int_overflow::wrap) s += ":saturate";
        common(i.mode, i.seed, i.random_bits);
    }
    return s;
}

}  // namespace lowbit
