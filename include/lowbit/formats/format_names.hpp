// lowbit/formats/format_names.hpp: float_format::parse and to_string, which parse reads back.
//
// Grammar (case-insensitive):  base [ "," option ]*
//   base:   a preset name (fp32, tf32, bf16, fp16, fp8_e4m3, fp8_e5m2, fp6_e2m3, fp6_e3m2,
//           fp4_e2m1, ue8m0, ue4m3, lba_m7e4_acc, lba_m7e4_prod), or its PyTorch / ml_dtypes
//           name (float32, bfloat16, float16, float8_e4m3fn, float8_e5m2, float6_e2m3fn,
//           float6_e3m2fn, float4_e2m1fn, float8_e8m0fnu), ml_dtypes' IEEE-style FP8 (float8_e4m3:
//           max 240 and infinities; float8_e3m4: max 15.5), or an fnuz format by its ml_dtypes
//           name (float8_e4m3fnuz, float8_e5m2fnuz, float8_e4m3b11fnuz) or its C++ one
//           (fp8_e4m3fnuz, fp8_e5m2fnuz, fp8_e4m3b11fnuz),
//           "eXmY" (X exponent bits, Y mantissa bits: IEEE-style defaults),
//           "mYeX" (the MxEy spelling of Blumenfeld et al.: Y mantissa bits, X exponent bits),
//           either with a leading "u" for an unsigned format.
//           The OCP element names e4m3, e5m2, e2m3, e3m2 and e2m1 mean the OCP presets
//           (so "e4m3" has max 448 and no infinity); write "e4m3,specials=ieee" (ml_dtypes'
//           float8_e4m3, the name to_string prints) for IEEE style.
//   option: bias=N | subnormals=on|off | specials=ieee|fn|none|fnuz | signed | unsigned | zero | nozero
#pragma once

#include <lowbit/formats/float_format.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <string>
#include <string_view>
#include <utility>

namespace lowbit {

namespace detail {

struct named_format {
    std::string_view name;
    float_format format;
};

// Canonical names first: to_string prints the first name whose format matches.
inline constexpr std::array<named_format, 35> format_names{{
    {"fp32", fp32},         {"tf32", tf32},           {"bf16", bf16},
    {"fp16", fp16},         {"fp8_e4m3", fp8_e4m3},   {"fp8_e5m2", fp8_e5m2},
    {"fp6_e2m3", fp6_e2m3}, {"fp6_e3m2", fp6_e3m2},   {"fp4_e2m1", fp4_e2m1},
    {"ue8m0", ue8m0},       {"ue4m3", ue4m3},         {"lba_m7e4_acc", lba_m7e4_acc},
    {"lba_m7e4_prod", lba_m7e4_prod},
    {"float8_e4m3fnuz", fp8_e4m3fnuz}, {"float8_e5m2fnuz", fp8_e5m2fnuz}, {"float8_e4m3b11fnuz", fp8_e4m3b11fnuz},
    // aliases: the OCP element formats by their short names
    {"e4m3", fp8_e4m3},     {"e5m2", fp8_e5m2},       {"e2m3", fp6_e2m3},
    {"e3m2", fp6_e3m2},     {"e2m1", fp4_e2m1},
    // aliases: the names of PyTorch and ml_dtypes
    {"float32", fp32},      {"bfloat16", bf16},       {"float16", fp16},
    {"float8_e4m3fn", fp8_e4m3}, {"float8_e5m2", fp8_e5m2}, {"float6_e2m3fn", fp6_e2m3},
    {"float6_e3m2fn", fp6_e3m2}, {"float4_e2m1fn", fp4_e2m1}, {"float8_e8m0fnu", ue8m0},
    {"float8_e4m3", float_format{.exp_bits = 4, .man_bits = 3}}, {"float8_e3m4", float_format{.exp_bits = 3, .man_bits = 4}},
    // aliases: the fnuz formats by their C++ names (lowbit::fp8_e4m3fnuz, ...)
    {"fp8_e4m3fnuz", fp8_e4m3fnuz}, {"fp8_e5m2fnuz", fp8_e5m2fnuz}, {"fp8_e4m3b11fnuz", fp8_e4m3b11fnuz},
}};

[[noreturn]] inline void parse_error(std::string_view field, std::string_view text,
                                     std::string_view why) {
    throw std::invalid_argument("lowbit::float_format::parse: " + std::string(field) + " '" +
                                std::string(text) + "' " + std::string(why));
}

inline bool parse_int(std::string_view s, int& out) {
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && end == s.data() + s.size() && !s.empty();
}

// "eXmY" or "mYeX" (first letter given); false when the text has another shape.
inline bool parse_exp_man(std::string_view s, int& exp_bits, int& man_bits) {
    if (s.size() < 4 || (s[0] != 'e' && s[0] != 'm')) return false;
    const char second = s[0] == 'e' ? 'm' : 'e';
    const auto split = s.find(second, 1);
    if (split == std::string_view::npos) return false;
    const auto digits = [](std::string_view d) {
        return !d.empty() && std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    int first = 0, last = 0;
    if (!digits(s.substr(1, split - 1)) || !digits(s.substr(split + 1)) ||
        !parse_int(s.substr(1, split - 1), first) || !parse_int(s.substr(split + 1), last))
        return false;
    exp_bits = s[0] == 'e' ? first : last;
    man_bits = s[0] == 'e' ? last : first;
    return true;
}

inline float_format parse_base(std::string_view base) {
    for (const auto& n : format_names)
        if (n.name == base) return n.format;
    const bool is_unsigned = !base.empty() && base.front() == 'u';
    std::string_view rest = is_unsigned ? base.substr(1) : base;
    for (const auto& n : format_names)
        if (is_unsigned && n.name == rest) {
            float_format f = n.format;
            f.is_signed = false;
            return f;
        }
    float_format f{};
    if (!parse_exp_man(rest, f.exp_bits, f.man_bits))
        parse_error("name", base,
                    "is not a preset name, eXmY (exponent, mantissa bits) or mYeX (MxEy)");
    f.is_signed = !is_unsigned;
    return f;
}

inline bool parse_switch(std::string_view field, std::string_view value) {
    if (value == "on" || value == "true" || value == "1" || value == "yes") return true;
    if (value == "off" || value == "false" || value == "0" || value == "no") return false;
    parse_error(field, value, "is not on/off");
}

// The settings an option can make; each may be made once per format string.
enum class format_setting { bias, subnormals, specials, sign, zero };

// Applies one option to f and says which setting it made.
inline format_setting apply_option(float_format& f, std::string_view option) {
    const auto eq = option.find('=');
    const std::string_view key = option.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view{} : option.substr(eq + 1);
    if (key == "bias" && eq != std::string_view::npos) {
        if (!parse_int(value, f.bias)) parse_error("bias", value, "is not an integer");
        return format_setting::bias;
    }
    if (key == "subnormals" && eq != std::string_view::npos) {
        f.subnormals = parse_switch("subnormals", value);
        return format_setting::subnormals;
    }
    if (key == "specials" && eq != std::string_view::npos) {
        if (value == "ieee") f.specials = special_values::ieee;
        else if (value == "fn") f.specials = special_values::fn;
        else if (value == "none") f.specials = special_values::none;
        else if (value == "fnuz") f.specials = special_values::fnuz;
        else parse_error("specials", value, "is not ieee, fn, none or fnuz");
        return format_setting::specials;
    }
    if (option == "signed" || option == "unsigned") {
        f.is_signed = option == "signed";
        return format_setting::sign;
    }
    if (option == "zero" || option == "nozero") {
        f.has_zero = option == "zero";
        return format_setting::zero;
    }
    parse_error("option", option,
                "is not bias=N, subnormals=on|off, specials=ieee|fn|none|fnuz, signed, unsigned, "
                "zero or nozero");
}

}  // namespace detail

inline float_format float_format::parse(std::string_view text) {
    std::string lower(text);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return char(std::tolower(c)); });
    lower.erase(std::remove_if(lower.begin(), lower.end(), [](unsigned char c) { return std::isspace(c); }),
                lower.end());
    std::string_view s = lower;
    auto comma = s.find(',');
    float_format f = detail::parse_base(s.substr(0, comma));
    // A setting made twice ("bias=10,bias=11", "unsigned,signed") is a mistake, not a choice of
    // the last one: refused, with both options named.
    std::string_view made[5] = {};
    while (comma != std::string_view::npos) {
        s.remove_prefix(comma + 1);
        comma = s.find(',');
        const std::string_view option = s.substr(0, comma);
        if (option.empty()) detail::parse_error("option", "", "is empty (two commas in a row?)");
        std::string_view& earlier = made[int(detail::apply_option(f, option))];
        if (!earlier.empty())
            detail::parse_error("option", option,
                                "sets what '" + std::string(earlier) + "' already set: give each setting once");
        earlier = option;
    }
    f.validate();
    return f;
}

inline std::string to_string(const float_format& f) {
    for (const auto& n : detail::format_names)
        if (n.format == f) return std::string(n.name);
    // Appended piece by piece: g++ 12 warns falsely (-Wrestrict) on "literal" + std::string.
    std::string s = "e";
    s += std::to_string(f.exp_bits);
    s += 'm';
    s += std::to_string(f.man_bits);
    // Spell out only what differs from what parse gives for the base name.
    const float_format base = detail::parse_base(s);
    if (f.exponent_bias() != base.exponent_bias()) (s += ",bias=") += std::to_string(f.exponent_bias());
    if (f.subnormals != base.subnormals) s += f.subnormals ? ",subnormals=on" : ",subnormals=off";
    if (f.specials != base.specials)
        s += f.specials == special_values::ieee ? ",specials=ieee"
             : f.specials == special_values::fn ? ",specials=fn"
             : f.specials == special_values::fnuz ? ",specials=fnuz"
                                                  : ",specials=none";
    if (!f.is_signed) s += ",unsigned";
    if (!f.has_zero) s += ",nozero";
    return s;
}

}  // namespace lowbit
