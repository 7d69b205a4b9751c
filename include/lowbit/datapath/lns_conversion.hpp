// lowbit/datapath/lns_conversion.hpp: how an LNS datapath turns a log into a linear value.
//
// An LNS value is +-2^(k / gamma), gamma = 2^b (lns_format.hpp). Write k = q gamma + r with
// 0 <= r < gamma (q = floor(k / gamma), for any sign of k); then
//
//   2^(k / gamma) = 2^q * 2^(r / gamma)
//
// and a converter is a shift by q and a gamma-entry table of constants c_r ~ 2^(r / gamma), the
// result being 2^q * c_r. The constants:
//
//   table      c_r = 2^(r / gamma) rounded to nearest with T = table_bits fractional bits
//              (c_r in [1, 2], at most T + 1 significant bits; T in [1, 52]). r = 0 gives 1
//              exactly, and for r > 0 the value is irrational, so there is never a tie. T = 52 is
//              the double nearest to 2^(r / gamma) (what lns_format::magnitude uses): "the exact
//              table" of a simulation, within 2^-53 (relative) of the true constant; in general
//              |c_r - 2^(r/gamma)| <= 2^-(T+1), a relative error below 2^-(T+1).
//              (c_{gamma-1} may round up to 2 for small T: 2^q * 2 is then the converted value.)
//   mitchell   c_r = 1 + r / gamma: Mitchell's approximation, 2^x ~ 1 + x on [0, 1), which needs
//              no table at all (the fraction bits of k are the mantissa). Exact in double.
//
// Mitchell's error. 2^x is convex, and 1 + x is its chord on [0, 1], so 1 + x >= 2^x: Mitchell
// overestimates. Its relative error e(x) = (1 + x) 2^-x - 1 has e(0) = e(1) = 0 and
// e'(x) = 2^-x (1 - (1 + x) ln 2), zero at x* = 1/ln 2 - 1 ~ 0.4427, where
//
//   e(x*) = (1/ln 2) 2^(1 - 1/ln 2) - 1 = 2 / (e ln 2) - 1 ~ 0.0614757   (2^(-1/ln 2) = 1/e)
//
// the constant mitchell_max_relative_error below. Over the discrete points x = r / gamma the
// largest error is at most this and tends to it as gamma grows: e is smooth with e'(x*) = 0, and
// some r / gamma lies within 1 / (2 gamma) of x*, so the discrete maximum falls short by at most
// max|e''| / 2 * (1 / (2 gamma))^2 < 0.12 / gamma^2, since |e''(x)| = 2^-x ln 2 (2 - (1 + x) ln 2)
// <= ln 2 (2 - ln 2) < 0.91 on [0, 1]. tests/datapath/lns_conversion_test.cpp checks both
// against MPFR, for every gamma = 2^b, b <= 20.
//
// The constants of a converter are computed exactly: 2^(r/gamma) comes as a double-double within
// 2^-96 (relative) of the truth (lns_format.hpp: exp2_dyadic), and the rounding to T bits decides
// on the exact sum of its two parts. The decision is right because no 2^(r/gamma), frac_bits <=
// 20, lies within 2^-77.8 (relative) of a 54-bit number (lns_format.hpp's exhaustive MPFR
// result), and every midpoint between neighbours with T <= 52 fractional bits in [1, 2] is such a
// number.
#pragma once

#include <lowbit/formats/lns_format.hpp>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit {

enum class lns_conversion : std::uint8_t { table, mitchell };

constexpr const char* to_string(lns_conversion c) {
    switch (c) {
        case lns_conversion::table: return "table";
        case lns_conversion::mitchell: return "mitchell";
    }
    return "?";
}

// 2 / (e ln 2) - 1: the largest relative error of Mitchell's 1 + x against 2^x on [0, 1).
inline constexpr double mitchell_max_relative_error = 0x1.f79bde35dab14p-5;  // 0.0614756908460860

// The log-to-linear converter of an LNS datapath.
struct lns_converter {
    lns_conversion method = lns_conversion::table;
    int table_bits = 52;  // T: fractional bits of the table constants (table only), 1..52

    // Throws std::invalid_argument naming the field when the converter cannot be built.
    const lns_converter& validate() const {
        if (method != lns_conversion::table && method != lns_conversion::mitchell)
            throw std::invalid_argument("lowbit::lns_converter: method = " + std::to_string(int(method)) +
                                        " is not a lowbit::lns_conversion");
        if (method == lns_conversion::table && (table_bits < 1 || table_bits > 52))
            throw std::invalid_argument("lowbit::lns_converter: table_bits = " + std::to_string(table_bits) +
                                        " must be in [1, 52] (52: the double nearest to 2^(r/gamma))");
        return *this;
    }

    friend constexpr bool operator==(const lns_converter&, const lns_converter&) = default;
};

// 2^(r / 2^frac_bits) rounded to nearest with table_bits fractional bits, for 0 <= r < 2^frac_bits,
// frac_bits in [0, 20], table_bits in [1, 52] (see the header for why it is exact).
inline double lns_table_constant(std::uint32_t r, int frac_bits, int table_bits) {
    const detail::double_double c = detail::exp2_dyadic(r, frac_bits);  // c.hi in [1, 2]
    const double units = std::ldexp(c.hi, table_bits);                  // exact
    const double whole = std::floor(units);
    // Round up iff (units - whole) + c.lo 2^T > 1/2, i.e. c.lo 2^T > 1/2 - (units - whole): both
    // sides are exact doubles (units - whole is a multiple of 2^(T-52) in [0, 1)).
    const double below_half = 0.5 - (units - whole);
    const bool up = std::ldexp(c.lo, table_bits) > below_half;
    return std::ldexp(up ? whole + 1 : whole, -table_bits);
}

// Mitchell's constant 1 + r / 2^frac_bits (exact).
constexpr double lns_mitchell_constant(std::uint32_t r, int frac_bits) {
    return 1.0 + double(r) / double(std::uint64_t(1) << frac_bits);
}

// The gamma constants c_0 .. c_{gamma-1} of a converter for formats with frac_bits (validated).
inline std::vector<double> lns_conversion_constants(const lns_converter& converter, int frac_bits) {
    converter.validate();
    if (frac_bits < 0 || frac_bits > 20)
        throw std::invalid_argument("lowbit::lns_conversion_constants: frac_bits = " + std::to_string(frac_bits) +
                                    " must be in [0, 20] (lns_format's range)");
    const std::uint32_t gamma = std::uint32_t(1) << frac_bits;
    std::vector<double> c(gamma);
    for (std::uint32_t r = 0; r < gamma; ++r)
        c[r] = converter.method == lns_conversion::mitchell ? lns_mitchell_constant(r, frac_bits)
                                                            : lns_table_constant(r, frac_bits, converter.table_bits);
    return c;
}

}  // namespace lowbit
