// lowbit/formats/int_format.hpp: integer (and fixed-point) formats, e.g. a P-bit accumulator.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace lowbit {

struct int_format {
    int bits = 32;
    bool is_signed = true;

    // Two's complement range: [-2^(bits-1), 2^(bits-1) - 1], or [0, 2^bits - 1] unsigned.
    constexpr double min_value() const { return is_signed ? -pow2_bits(bits - 1) : 0.0; }
    constexpr double max_value() const {
        return is_signed ? pow2_bits(bits - 1) - 1.0 : pow2_bits(bits) - 1.0;
    }

    // bits in [1, 53] (so that every value is exact in double; 2 for signed): else
    // std::invalid_argument naming the field.
    const int_format& validate() const {
        const int lowest = is_signed ? 2 : 1;
        if (bits < lowest || bits > 53)
            throw std::invalid_argument("lowbit::int_format: bits = " + std::to_string(bits) + " must be in [" +
                                        std::to_string(lowest) + ", 53] for " +
                                        (is_signed ? "a signed" : "an unsigned") + " format");
        return *this;
    }

    friend constexpr bool operator==(const int_format&, const int_format&) = default;

private:
    static constexpr double pow2_bits(int k) {
        double v = 1.0;
        for (int i = 0; i < k; ++i) v *= 2.0;
        return v;
    }
};

}  // namespace lowbit
