// lowbit/datapath/exact_sum.hpp: an exact accumulator for sums of doubles.
//
// The value is an integer multiple of 2^-1074 (double's smallest subnormal) held in two's
// complement over enough 64-bit limbs to cover every double and 64 bits of carries, so sums of
// up to 2^64 finite doubles are exact. Used where a datapath keeps sums exactly: unset (exact)
// quantizers, the fused and aligned models, integer accumulators. Non-finite values are kept
// aside (any NaN, or infinities of both signs, make the sum NaN), and the sign of a zero sum
// follows IEEE addition: -0 only when every addend was -0.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace lowbit {

class exact_sum {
public:
    static constexpr int lsb_exponent = -1074;  // weight of bit 0
    static constexpr int limbs = 35;           // 2240 bits: 2^-1074 .. 2^1166

    exact_sum() = default;
    explicit exact_sum(double x) : negative_zero_(x == 0 && std::signbit(x)) { add(x); }

    void add(double x) {
        if (x == 0) {  // IEEE: the sum of zeros is -0 only when every one of them is -0
            negative_zero_ = negative_zero_ && std::signbit(x);
            return;
        }
        negative_zero_ = false;  // a non-zero sum, or +0 when it cancels exactly (as IEEE's x - x)
        if (!std::isfinite(x)) {
            // NaN stays NaN; infinities of both signs make NaN.
            if (std::isnan(special_)) return;
            special_ = std::isnan(x) || special_ == 0 || special_ == x ? x : std::numeric_limits<double>::quiet_NaN();
            return;
        }
        int exponent = 0;
        const double fraction = std::frexp(std::fabs(x), &exponent);  // x = fraction * 2^exponent
        // 53-bit integer significand m with |x| = m * 2^(exponent - 53), or fewer bits for
        // subnormals (the shift below is then exact: x is a multiple of 2^-1074).
        const int shift = std::max(exponent - 53, lsb_exponent);
        const auto m = static_cast<std::uint64_t>(std::ldexp(fraction, exponent - shift));
        add_shifted(m, shift - lsb_exponent, x < 0);
    }

    void add(const exact_sum& other) {
        if (other.special_ != 0) add(other.special_);
        if (other.is_zero()) {
            negative_zero_ = negative_zero_ && other.negative_zero_;
            return;
        }
        negative_zero_ = false;
        std::uint64_t carry = 0;
        for (int i = 0; i < limbs; ++i) {
            const std::uint64_t a = limb_[i], b = other.limb_[i];
            const std::uint64_t s = a + b;
            const std::uint64_t t = s + carry;
            carry = std::uint64_t(s < a) + std::uint64_t(t < s);
            limb_[i] = t;
        }
    }

    bool is_special() const { return special_ != 0; }
    bool is_zero() const {
        return special_ == 0 && std::all_of(limb_.begin(), limb_.end(), [](std::uint64_t l) { return l == 0; });
    }
    // The sign bit of the sum: also true for -0.
    bool negative() const {
        return special_ != 0 ? std::signbit(special_) : negative_zero_ || (limb_[limbs - 1] >> 63) != 0;
    }

    // The sum rounded to odd onto double's grid (truncate toward zero, set the last bit when
    // inexact; +-DBL_MAX beyond it): rounding this once more to any format with at most 50
    // mantissa bits equals rounding the exact sum (see rounding/exact_ops.hpp).
    double to_double_round_odd() const {
        if (special_ != 0) return special_;
        const bool neg = negative();
        const auto mag = neg ? negated() : limb_;
        int top = limbs - 1;
        while (top >= 0 && mag[top] == 0) --top;
        if (top < 0) return negative_zero_ ? -0.0 : 0.0;
        const int high_bit = top * 64 + 63 - std::countl_zero(mag[top]);
        double magnitude;
        if (high_bit < 53) {
            magnitude = std::ldexp(double(mag[0]), lsb_exponent);  // exact: fits 53 bits
        } else {
            const int low = high_bit - 52;  // keep bits low .. high_bit
            const std::uint64_t sig = bits_at(mag, low, 53);
            bool sticky = false;
            for (int i = 0; i < low / 64 && !sticky; ++i) sticky = mag[i] != 0;
            if (!sticky && low % 64 != 0) sticky = (mag[low / 64] & ((std::uint64_t(1) << (low % 64)) - 1)) != 0;
            const int exponent = low + lsb_exponent;
            magnitude = exponent + 52 > 1023 ? std::numeric_limits<double>::max()
                                             : std::ldexp(double(sig | std::uint64_t(sticky)), exponent);
        }
        return neg ? -magnitude : magnitude;
    }

    // |sum| cut at 2^e: the integer floor(|sum| / 2^e) modulo 2^64, the 32 bits just below 2^e
    // (the top of the fraction), and whether any lower bit is set. Integer datapaths round from
    // this exactly, whatever the magnitude.
    struct digits {
        std::uint64_t whole_low64;
        std::uint32_t fraction_top32;
        bool sticky;
    };
    digits magnitude_digits(int e) const {
        const auto mag = negative() ? negated() : limb_;
        const int low = e - lsb_exponent;  // bit index of 2^e
        digits d{};
        d.whole_low64 = low >= 0 ? bits_at(mag, low, 64) : (-low >= 64 ? 0 : bits_at(mag, 0, 64) << (-low));
        const int frac_low = low - 32;
        if (low > 0) {
            d.fraction_top32 = frac_low >= 0 ? std::uint32_t(bits_at(mag, frac_low, 32))
                                             : std::uint32_t(bits_at(mag, 0, low) << (-frac_low));
        }
        for (int i = 0; i < std::min(std::max(frac_low, 0) / 64, limbs) && !d.sticky; ++i) d.sticky = mag[i] != 0;
        if (!d.sticky && frac_low > 0 && frac_low / 64 < limbs && frac_low % 64 != 0)
            d.sticky = (mag[frac_low / 64] & ((std::uint64_t(1) << (frac_low % 64)) - 1)) != 0;
        return d;
    }

private:
    std::array<std::uint64_t, limbs> limb_{};
    double special_ = 0;  // +-inf or NaN when one was added
    bool negative_zero_ = false;  // the value is -0 (tracked as IEEE addition does)

    void add_shifted(std::uint64_t m, int bit, bool subtract) {
        // m * 2^bit spans limbs bit/64 and bit/64 + 1.
        const int index = bit / 64, offset = bit % 64;
        const std::uint64_t lo = m << offset;
        const std::uint64_t hi = offset == 0 ? 0 : m >> (64 - offset);
        std::uint64_t borrow_or_carry = 0;
        const std::uint64_t parts[2] = {lo, hi};
        for (int i = index; i < limbs; ++i) {
            const std::uint64_t part = i - index < 2 ? parts[i - index] : 0;
            if (part == 0 && borrow_or_carry == 0 && i - index >= 2) break;
            const std::uint64_t before = limb_[i];
            if (!subtract) {
                const std::uint64_t s = before + part;
                const std::uint64_t t = s + borrow_or_carry;
                borrow_or_carry = std::uint64_t(s < before) + std::uint64_t(t < s);
                limb_[i] = t;
            } else {
                const std::uint64_t d = before - part;
                const std::uint64_t t = d - borrow_or_carry;
                borrow_or_carry = std::uint64_t(before < part) + std::uint64_t(d < borrow_or_carry);
                limb_[i] = t;
            }
        }
    }

    std::array<std::uint64_t, limbs> negated() const {
        std::array<std::uint64_t, limbs> r{};
        std::uint64_t carry = 1;
        for (int i = 0; i < limbs; ++i) {
            const std::uint64_t v = ~limb_[i];
            r[i] = v + carry;
            carry = (carry != 0 && r[i] == 0) ? 1 : 0;
        }
        return r;
    }

    // `count` <= 64 bits of `v` starting at bit `low` (sign-extended beyond the top).
    static std::uint64_t bits_at(const std::array<std::uint64_t, limbs>& v, int low, int count) {
        const int index = low / 64, offset = low % 64;
        const auto limb = [&](int i) {
            if (i < limbs) return v[i];
            return (v[limbs - 1] >> 63) != 0 ? ~std::uint64_t(0) : std::uint64_t(0);
        };
        std::uint64_t r = limb(index) >> offset;
        if (offset != 0) r |= limb(index + 1) << (64 - offset);
        return count == 64 ? r : r & ((std::uint64_t(1) << count) - 1);
    }
};

}  // namespace lowbit
