// Tests of lowbit/analysis/a2q.hpp: the weight-specific accumulator size never lets a dot product
// overflow and is tight (exhaustive over small weight vectors and all inputs), it never exceeds
// the paper's bound, and the data-type bound covers every weight vector of the type and is tight
// for the worst one.
#include <lowbit/analysis/a2q.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <vector>

namespace {

// max over all input vectors of |sum w_i x_i|, by enumerating every input vector.
std::int64_t max_abs_dot(const std::vector<std::int64_t>& w, int bits, bool is_signed) {
    const std::int64_t lo = is_signed ? -(std::int64_t(1) << (bits - 1)) : 0;
    const std::int64_t hi = is_signed ? (std::int64_t(1) << (bits - 1)) - 1 : (std::int64_t(1) << bits) - 1;
    std::vector<std::int64_t> x(w.size(), lo);
    std::int64_t best = 0;
    for (;;) {
        std::int64_t dot = 0;
        for (std::size_t i = 0; i < w.size(); ++i) dot += w[i] * x[i];
        best = std::max(best, dot < 0 ? -dot : dot);
        std::size_t i = 0;
        while (i < x.size() && x[i] == hi) x[i++] = lo;
        if (i == x.size()) return best;
        ++x[i];
    }
}

bool fits(std::int64_t m, int p) { return m <= (std::int64_t(1) << (p - 1)) - 1; }

// Every weight vector of length k with entries in [lo, hi].
template <typename F>
void for_each_weights(std::size_t k, std::int64_t lo, std::int64_t hi, F f) {
    std::vector<std::int64_t> w(k, lo);
    for (;;) {
        f(w);
        std::size_t i = 0;
        while (i < w.size() && w[i] == hi) w[i++] = lo;
        if (i == w.size()) return;
        ++w[i];
    }
}

struct input_type {
    int bits;
    bool is_signed;
};
constexpr input_type input_types[] = {{1, false}, {2, false}, {3, false}, {4, false},
                                      {2, true},  {3, true},  {4, true}};

}  // namespace

TEST_CASE("a2q_min_accumulator_bits is safe and tight (exhaustive)") {
    std::size_t checked = 0;
    for (const std::size_t k : {std::size_t(1), std::size_t(2), std::size_t(3)}) {
        for_each_weights(k, -7, 7, [&](const std::vector<std::int64_t>& w) {
            for (const auto& in : input_types) {
                const std::int64_t m = max_abs_dot(w, in.bits, in.is_signed);
                const int p = lowbit::a2q_min_accumulator_bits(w, in.bits, in.is_signed);
                const int paper = lowbit::a2q_paper_accumulator_bits(w, in.bits, in.is_signed);
                INFO("k " << k << " w0 " << w[0] << " w_last " << w.back() << " N " << in.bits << " signed "
                          << in.is_signed << " max " << m << " P " << p);
                REQUIRE(p >= 1);
                REQUIRE(fits(m, p));
                if (p > 1) REQUIRE_FALSE(fits(m, p - 1));
                else REQUIRE(m == 0);
                REQUIRE(paper >= p);
                ++checked;
            }
        });
    }
    CHECK(checked == (15 + 15 * 15 + 15 * 15 * 15) * std::size(input_types));
}

TEST_CASE("A2Q's bound, exact maximum and paper bound on hand values") {
    using v = std::vector<std::int64_t>;
    // Signed 4-bit inputs [-8, 7]: (3, -5) -> max(3*7 + 5*8, 3*8 + 5*7) = 61 -> 7 bits.
    CHECK(lowbit::a2q_min_accumulator_bits(v{3, -5}, 4, true) == 7);
    // Paper: ||w||_1 2^(N-1) = 64 <= 2^(P-1) - 1 -> P = 8.
    CHECK(lowbit::a2q_paper_accumulator_bits(v{3, -5}, 4, true) == 8);
    // One-signed weights with signed inputs: the paper's bound is exact.
    CHECK(lowbit::a2q_min_accumulator_bits(v{-3, -5}, 4, true) == 8);  // 64
    CHECK(lowbit::a2q_paper_accumulator_bits(v{-3, -5}, 4, true) == 8);
    // Unsigned inputs: (1, -1) at 2 bits -> 3: 3 bits, the paper asks 2 * 4 = 8 -> 5 bits.
    CHECK(lowbit::a2q_min_accumulator_bits(v{1, -1}, 2, false) == 3);
    CHECK(lowbit::a2q_paper_accumulator_bits(v{1, -1}, 2, false) == 5);
    CHECK(lowbit::a2q_min_accumulator_bits(v{0, 0, 0}, 8, true) == 1);
    // INT64_MIN weights and 64-bit inputs stay exact in 128 bits: 2^63 * 2^63 = 2^126 -> 128 bits.
    CHECK(lowbit::a2q_min_accumulator_bits(v{std::numeric_limits<std::int64_t>::min()}, 64, true) == 128);
    constexpr std::int64_t most_negative = std::numeric_limits<std::int64_t>::min();
    CHECK(lowbit::a2q_min_accumulator_bits(v{most_negative, most_negative, most_negative}, 64, true) == 129);
    CHECK_THROWS_AS(lowbit::a2q_min_accumulator_bits(v(4, most_negative), 64, true), std::overflow_error);
    CHECK_THROWS_AS(lowbit::a2q_paper_accumulator_bits(v(4, most_negative), 64, true), std::overflow_error);
    // A realistic layer: 4096 weights of magnitude up to 127 with 8-bit unsigned activations.
    v layer(4096);
    for (std::size_t i = 0; i < layer.size(); ++i) layer[i] = std::int64_t(i % 255) - 127;
    const int p = lowbit::a2q_min_accumulator_bits(layer, 8, false);
    CHECK(p <= lowbit::data_type_bound_bits(layer.size(), 8, true, 8, false));
    CHECK(p <= lowbit::a2q_paper_accumulator_bits(layer, 8, false));
}

TEST_CASE("the data-type bound covers every weight vector and is tight for the worst one") {
    for (const int wbits : {2, 3, 4}) {
        for (const bool wsigned : {false, true}) {
            const std::int64_t wlo = wsigned ? -(std::int64_t(1) << (wbits - 1)) : 0;
            const std::int64_t whi = wsigned ? (std::int64_t(1) << (wbits - 1)) - 1 : (std::int64_t(1) << wbits) - 1;
            for (const std::size_t k : {std::size_t(1), std::size_t(2), std::size_t(3)}) {
                for (const auto& in : input_types) {
                    const int bound = lowbit::data_type_bound_bits(k, wbits, wsigned, in.bits, in.is_signed);
                    std::int64_t worst = 0;
                    for_each_weights(k, wlo, whi, [&](const std::vector<std::int64_t>& w) {
                        const int p = lowbit::a2q_min_accumulator_bits(w, in.bits, in.is_signed);
                        REQUIRE(p <= bound);
                        worst = std::max(worst, max_abs_dot(w, in.bits, in.is_signed));
                    });
                    INFO("K " << k << " weights " << wbits << (wsigned ? " signed" : " unsigned") << " inputs "
                              << in.bits << (in.is_signed ? " signed" : " unsigned") << " worst " << worst);
                    REQUIRE(fits(worst, bound));
                    REQUIRE_FALSE(fits(worst, bound - 1));
                    // The worst weights: all at the type's largest magnitude.
                    const std::vector<std::int64_t> extreme(k, wsigned ? wlo : whi);
                    CHECK(lowbit::a2q_min_accumulator_bits(extreme, in.bits, in.is_signed) == bound);
                }
            }
        }
    }
}

TEST_CASE("the data-type bound on hand values") {
    // K = 1, signed 4-bit x signed 4-bit: (-8)(-8) = 64 needs 8 bits (ceil(log2 64) + 1 = 7 would
    // overflow).
    CHECK(lowbit::data_type_bound_bits(1, 4, true, 4, true) == 8);
    // Unsigned 8-bit x unsigned 8-bit, K = 1: 255^2 = 65025 < 2^16 -> 17 bits.
    CHECK(lowbit::data_type_bound_bits(1, 8, false, 8, false) == 17);
    // Signed 8-bit weights, unsigned 8-bit inputs, K = 4096: 4096 * 128 * 255 < 2^27 -> 28 bits.
    CHECK(lowbit::data_type_bound_bits(4096, 8, true, 8, false) == 28);
    // 64-bit everything: 2^63 * 2^63 = 2^126 -> 128 bits, K = 2: 129; K = 4: 2^128, beyond 128-bit
    // arithmetic.
    CHECK(lowbit::data_type_bound_bits(1, 64, true, 64, true) == 128);
    CHECK(lowbit::data_type_bound_bits(2, 64, true, 64, true) == 129);
    CHECK_THROWS_AS(lowbit::data_type_bound_bits(4, 64, true, 64, true), std::overflow_error);
}

TEST_CASE("a2q errors name the argument") {
    using Catch::Matchers::Contains;
    const std::vector<std::int64_t> w{1, -2};
    const std::vector<std::int64_t> none;
    CHECK_THROWS_WITH(lowbit::a2q_min_accumulator_bits(none, 4, true), Contains("weights is empty"));
    CHECK_THROWS_WITH(lowbit::a2q_min_accumulator_bits(w, 1, true), Contains("input_bits = 1"));
    CHECK_THROWS_WITH(lowbit::a2q_min_accumulator_bits(w, 0, false), Contains("input_bits = 0"));
    CHECK_THROWS_WITH(lowbit::a2q_min_accumulator_bits(w, 65, false), Contains("input_bits = 65"));
    CHECK_THROWS_WITH(lowbit::a2q_paper_accumulator_bits(none, 4, true), Contains("weights is empty"));
    CHECK_THROWS_WITH(lowbit::data_type_bound_bits(0, 4, true, 4, true), Contains("K = 0"));
    CHECK_THROWS_WITH(lowbit::data_type_bound_bits(4, 1, true, 4, true), Contains("weight_bits = 1"));
    CHECK_THROWS_WITH(lowbit::data_type_bound_bits(4, 4, true, 0, false), Contains("input_bits = 0"));
}
