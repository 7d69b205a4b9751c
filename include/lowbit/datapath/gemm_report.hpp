// lowbit/datapath/gemm_report.hpp: which kernel a simulated GEMM ran, for which instruction set,
// and why no faster one applied.
//
//   lowbit::gemm_report report;
//   lowbit::gemm(A, B, C, spec, /*stats*/ nullptr, &report);
//   report.kernel;   // lowbit::gemm_kernel::scaled_chain_avx512, scaled_chain_portable,
//                    // vectorized_chain, integer_chain,
//                    // integer_buckets (lns_gemm), block_terms_per_output (block_scaled_gemm)
//                    // or exact
//   report.isa;      // "avx512", "avx2", "sse2" or "scalar": what the caller's flags compiled
//   report.reason;   // empty when the fastest kernel for the spec ran; otherwise why the faster
//                    // one did not apply, e.g. "accumulator: stochastic rounding"
//
// Every kernel gives the same bits; the report only explains the speed. Filling it costs nothing
// measurable (a few strings per call).
#pragma once

#include <string>

namespace lowbit {

enum class gemm_kernel {
    exact,                // exact_datapath.hpp: one output at a time, any spec (the reference lane)
    vectorized_chain,     // fast_datapath.hpp: 64 outputs per block in fp32 lanes
    scaled_chain_avx512,  // scaled_chain.hpp: the paper's flush-and-saturate chain in AVX-512
    scaled_chain_portable,  // portable_chain.hpp: the same chain in AVX2 or SSE2 registers
    integer_chain,        // integer_chain.hpp: integer accumulators in int64 lanes
    integer_buckets,      // lns_gemm.hpp: exact or wrapping LNS buckets summed in 64-bit integers (128 for wide exact sums)
    integer_sum_lanes,    // lns_gemm.hpp: exact sums of 64 outputs at once in int64 lanes
    block_terms_per_output,  // block_scaled_gemm.hpp: vectorized block dots, each output's terms
                             // scaled and reduced on its own (the exact reduction)
};

constexpr const char* to_string(gemm_kernel k) {
    switch (k) {
        case gemm_kernel::exact: return "exact";
        case gemm_kernel::vectorized_chain: return "vectorized_chain";
        case gemm_kernel::scaled_chain_avx512: return "scaled_chain_avx512";
        case gemm_kernel::scaled_chain_portable: return "scaled_chain_portable";
        case gemm_kernel::integer_chain: return "integer_chain";
        case gemm_kernel::integer_buckets: return "integer_buckets";
        case gemm_kernel::integer_sum_lanes: return "integer_sum_lanes";
        case gemm_kernel::block_terms_per_output: return "block_terms_per_output";
    }
    return "?";
}

// The vector instructions the including translation unit was compiled for (its -march), which
// select the kernels: AVX-512 (F and DQ; BF16 for the nearest_even scaled chain), AVX2, SSE2.
constexpr const char* compiled_isa() {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    return "avx512";
#elif defined(__AVX2__)
    return "avx2";
#elif defined(__SSE2__)
    return "sse2";
#else
    return "scalar";
#endif
}

struct gemm_report {
    gemm_kernel kernel = gemm_kernel::exact;
    std::string isa = compiled_isa();
    std::string reason;  // why a faster kernel did not run (empty: none would apply)
};

}  // namespace lowbit
