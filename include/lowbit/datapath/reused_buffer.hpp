// lowbit/datapath/reused_buffer.hpp: scratch memory kept per thread between calls.
//
// A GEMM needs a few buffers as large as its operands (the quantized copies of A, B and C). Fresh
// ones each call cost a page fault per 4 KiB when first written, about as much as the copies
// themselves (10% of a 512^3 GEMM's time); kept, a GEMM called in a loop reuses warm memory. Each
// use has its own slot; a thread keeps the largest size each slot has needed, until it exits.
#pragma once

#include <cstddef>
#include <vector>

namespace lowbit::detail {

enum class buffer_slot { input_a, input_b, output, layout_b, addend, count };

// At least n floats (contents unspecified), valid until this thread asks for the slot again.
inline float* reused_buffer(buffer_slot slot, std::size_t n) {
    thread_local std::vector<float> buffers[std::size_t(buffer_slot::count)];
    std::vector<float>& buffer = buffers[std::size_t(slot)];
    if (buffer.size() < n) buffer.resize(n);
    return buffer.data();
}

}  // namespace lowbit::detail
