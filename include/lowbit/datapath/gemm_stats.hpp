// lowbit/datapath/gemm_stats.hpp: the events of a simulated GEMM that explain its error.
#pragma once

#include <cstdint>
#include <vector>

namespace lowbit {

struct gemm_stats {
    std::uint64_t macs = 0;                   // multiply-accumulates: M * N * K
    // The inputs: elements of A and B as given, and what the input quantizers made of them.
    std::uint64_t input_nans = 0;             // NaN elements
    std::uint64_t input_infinities = 0;       // infinite elements
    std::uint64_t input_overflows = 0;        // finite elements rounded beyond the input format's
                                              // largest value (then infinity, NaN, saturated or
                                              // wrapped, as its overflow rule says)
    std::uint64_t input_underflows = 0;       // non-zero finite elements rounded to zero
    std::uint64_t inexact_inputs = 0;         // finite elements the input quantizer changed
    // The terms:
    std::uint64_t zero_operand = 0;           // products with a zero operand (skippable work)
    std::uint64_t product_overflows = 0;      // Q_prod results beyond the largest finite value
    std::uint64_t product_underflows = 0;     // non-zero exact products that Q_prod made zero
    std::uint64_t accumulator_overflows = 0;  // accumulator roundings beyond the largest value
                                              // (integer: outside the range, before wrap/saturate)
    std::uint64_t swamps = 0;                 // additions of t != 0 whose rounded result equals
                                              // the other operand (t lost entirely)
    std::uint64_t inexact_additions = 0;      // accumulator roundings that changed the exact sum
    std::uint64_t off_grid_products = 0;      // integer accumulators: products with bits below
                                              // its resolution 2^-fraction_bits, which it rounds
                                              // away (float inputs not scaled to integers)
    // (Overflows are counted from finite values only: rounding a value that is already infinite
    // or NaN, and stays so, is neither an overflow nor inexact.)
    // With gemm_spec::record_lost: lost[(i*N + j)*K + k] is 1 when product k of output (i, j)
    // contributed nothing: it underflowed (a non-zero exact product rounded to zero), or the
    // accumulator step that added it swamped it (sequential, fma: acc unchanged; pairwise: its
    // leaf addition; aligned: cut to zero). Empty otherwise.
    std::vector<std::uint8_t> lost;

    gemm_stats& operator+=(const gemm_stats& o) {
        macs += o.macs;
        input_nans += o.input_nans;
        input_infinities += o.input_infinities;
        input_overflows += o.input_overflows;
        input_underflows += o.input_underflows;
        inexact_inputs += o.inexact_inputs;
        off_grid_products += o.off_grid_products;
        zero_operand += o.zero_operand;
        product_overflows += o.product_overflows;
        product_underflows += o.product_underflows;
        accumulator_overflows += o.accumulator_overflows;
        swamps += o.swamps;
        inexact_additions += o.inexact_additions;
        return *this;
    }
};

}  // namespace lowbit
