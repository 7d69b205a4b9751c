// tests/support/stats_difference.hpp: what differs between two gemm_stats, as a readable
// message (empty when they agree), for the tests that compare a GEMM's events with a reference.
#pragma once

#include <lowbit/datapath/gemm_stats.hpp>

#include <cstdint>
#include <string>

namespace lowbit_test {

inline std::string stats_difference(const lowbit::gemm_stats& e, const lowbit::gemm_stats& g, bool compare_lost = true) {
    std::string d;
    const auto field = [&](const char* name, std::uint64_t a, std::uint64_t b) {
        if (a != b) d += std::string(" ") + name + ": expected " + std::to_string(a) + ", got " + std::to_string(b) + ";";
    };
    field("macs", e.macs, g.macs);
    field("zero_operand", e.zero_operand, g.zero_operand);
    field("product_overflows", e.product_overflows, g.product_overflows);
    field("product_underflows", e.product_underflows, g.product_underflows);
    field("accumulator_overflows", e.accumulator_overflows, g.accumulator_overflows);
    field("swamps", e.swamps, g.swamps);
    field("inexact_additions", e.inexact_additions, g.inexact_additions);
    if (!compare_lost) return d;
    if (e.lost.size() != g.lost.size()) {
        d += " lost.size: expected " + std::to_string(e.lost.size()) + ", got " + std::to_string(g.lost.size()) + ";";
        return d;
    }
    std::size_t n = 0, first = 0;
    for (std::size_t t = 0; t < e.lost.size(); ++t)
        if ((e.lost[t] != 0) != (g.lost[t] != 0) && n++ == 0) first = t;
    if (n != 0)
        d += " lost: " + std::to_string(n) + " flags differ, first at " + std::to_string(first) + " (expected " +
             std::to_string(int(e.lost[first])) + ");";
    return d;
}

}  // namespace lowbit_test
