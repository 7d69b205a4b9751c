// lowbit/datapath/quantizer.hpp: one rounding step of a datapath (a product, an accumulator, an
// input), as plain runtime data: exact (no rounding), a float format, or an integer format.
//
//   lowbit::quantizer q_acc = lowbit::float_quantizer{.format = lowbit::lba_m7e4_acc,
//                                                     .mode = lowbit::rounding::toward_zero};
//   lowbit::quantizer q_int = lowbit::int_quantizer{.format = {.bits = 16},
//                                                   .on_overflow = lowbit::int_overflow::wrap};
//   lowbit::quantizer q_bf16 = lowbit::bf16;   // a format alone: nearest_even, IEEE overflow
#pragma once

#include <lowbit/formats/float_format.hpp>
#include <lowbit/formats/int_format.hpp>
#include <lowbit/rounding/float_quantizer.hpp>
#include <lowbit/rounding/int_quantizer.hpp>

#include <cstdint>
#include <variant>

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

private:
    std::variant<std::monostate, float_quantizer, int_quantizer> q_;
};

}  // namespace lowbit
