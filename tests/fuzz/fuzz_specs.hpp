// tests/fuzz/fuzz_specs.hpp: quantizers and gemm_specs drawn from the fuzzer's bytes (valid or
// not: validate() decides), for the targets that need the datapath's types.
#pragma once

#include "fuzz_input.hpp"

#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/quantizer.hpp>

#include <cstdint>

namespace lowbit_fuzz {

// random_bits: mostly the default 32, else 0..33 (one past each limit).
inline int consume_random_bits(FuzzedDataProvider& in) { return in.ConsumeBool() ? 32 : in.ConsumeIntegralInRange(0, 33); }

inline lowbit::float_quantizer consume_float_quantizer(FuzzedDataProvider& in) {
    lowbit::float_quantizer q;
    q.format = consume_float_format(in);
    q.mode = consume_rounding(in);
    q.on_overflow = consume_overflow(in);
    q.seed = in.ConsumeBool() ? in.ConsumeIntegral<std::uint8_t>() : in.ConsumeIntegral<std::uint64_t>();
    q.random_bits = consume_random_bits(in);
    return q;
}

inline lowbit::int_quantizer consume_int_quantizer(FuzzedDataProvider& in) {
    lowbit::int_quantizer q;
    q.format.bits = in.ConsumeIntegralInRange(0, 54);
    q.format.is_signed = !in.ConsumeBool();
    q.mode = consume_rounding(in);
    q.on_overflow = consume_enum(in, lowbit::int_overflow::saturate);
    q.fraction_bits = in.ConsumeBool() ? in.ConsumeIntegralInRange(-4, 24) : in.ConsumeIntegralInRange(-1001, 1001);
    q.seed = in.ConsumeIntegral<std::uint8_t>();
    q.random_bits = consume_random_bits(in);
    return q;
}

// Exact, a float quantizer or an integer one.
inline lowbit::quantizer consume_quantizer(FuzzedDataProvider& in) {
    switch (in.ConsumeIntegralInRange(0, 2)) {
        case 0: return {};
        case 1: return consume_float_quantizer(in);
        default: return consume_int_quantizer(in);
    }
}

// A spec with every field drawn; the chunk accumulator is often the accumulator (as in the
// paper's setups, and as the fast paths need). threads stays 1: thread invariance has tests of
// its own, and libFuzzer runs one input at a time.
inline lowbit::gemm_spec consume_gemm_spec(FuzzedDataProvider& in) {
    lowbit::gemm_spec spec;
    spec.input_a = consume_quantizer(in);
    spec.input_b = in.ConsumeBool() ? spec.input_a : consume_quantizer(in);
    spec.product = consume_quantizer(in);
    spec.accumulator = consume_quantizer(in);
    spec.model = consume_enum(in, lowbit::accumulation::aligned);
    spec.chunk = in.ConsumeIntegralInRange(-1, 24);
    spec.chunk_accumulator = in.ConsumeBool() ? spec.accumulator : consume_quantizer(in);
    spec.window = in.ConsumeBool() ? 14 : in.ConsumeIntegralInRange(0, 1001);
    spec.group = in.ConsumeBool() ? 32 : in.ConsumeIntegralInRange(0, 40);
    spec.cut = consume_enum(in, lowbit::alignment_cut::toward_negative);
    return spec;
}

}  // namespace lowbit_fuzz
