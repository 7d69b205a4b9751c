// Tests of lowbit/analysis/scnn_model.hpp. The cycle and conflict counts of the tiny layers below
// are derived by hand in the comments (walking the dataflow the header describes), not read off
// the model; the multiply count is checked against a naive count over every output and tap.
#include <lowbit/analysis/scnn_model.hpp>

#include <catch2/catch.hpp>

#include <support/exception_message.hpp>

#include <cstdint>
#include <vector>

namespace sp = lowbit::sparse;
using lowbit_test::message_of;
using mask = std::vector<std::uint8_t>;

namespace {

lowbit::scnn_config one_pe(int F, int I, int banks, int kc, int bank_queue) {
    return {.pe_rows = 1, .pe_cols = 1, .F = F, .I = I, .banks = banks, .kc = kc, .bank_queue = bank_queue};
}

// Every (output, tap) whose weight and input are both non-zero, counted directly.
std::int64_t naive_multiplies(const sp::conv_shape& s, const mask& w, const mask& a) {
    std::int64_t n = 0;
    const int cg = s.C / s.groups, kg = s.K / s.groups;
    for (int k = 0; k < s.K; ++k)
        for (int oy = 0; oy < s.out_h(); ++oy)
            for (int ox = 0; ox < s.out_w(); ++ox)
                for (int cl = 0; cl < cg; ++cl)
                    for (int r = 0; r < s.R; ++r)
                        for (int q = 0; q < s.S; ++q) {
                            const int y = oy * s.stride + r - s.pad, x = ox * s.stride + q - s.pad;
                            if (y < 0 || y >= s.H || x < 0 || x >= s.W) continue;
                            const int c = (k / kg) * cg + cl;
                            n += w[std::size_t(((k * cg + cl) * s.R + r) * s.S + q)] != 0 &&
                                 a[std::size_t((c * s.H + y) * s.W + x)] != 0;
                        }
    return n;
}

}  // namespace

TEST_CASE("scnn: one PE, 1 x 1 filters, no bank conflicts") {
    // K = C = 1, a 1 x 4 plane, activations 1,1,1,0; F = I = 2, 4 banks, address = ox, bank = x.
    // 3 non-zero activations -> 2 activation vectors ({x0, x1}, {x2}), 1 weight vector: 2 vector
    // pairs, banks 0,1 then 2: no conflict. 2 cycles, 3 multiplies, 3 products in 2 x 4 slots.
    // Dense: 4 MACs on 4 multipliers = 1 cycle. Oracle: ceil(3 / 4) = 1.
    const sp::conv_shape s{1, 1, 1, 4, 1, 1, 1, 0, 1};
    const auto r = lowbit::scnn_model(s, mask{1}, mask{1, 1, 1, 0}, one_pe(2, 2, 4, 1, 0));
    CHECK(r.scnn_cycles == 2);
    CHECK(r.multiplies == 3);
    CHECK(r.products == 3);
    CHECK(r.vector_pairs == 2);
    CHECK(r.bank_stall_cycles == 0);
    CHECK(r.dense_cycles == 1);
    CHECK(r.oracle_cycles == 1);
    CHECK(r.dense_multiplies == 4);
    CHECK(r.fragmentation() == Approx(1.0 - 3.0 / 8.0));
    CHECK(r.multiplier_utilization() == Approx(3.0 / 8.0));
    CHECK(r.barrier_idle() == 0.0);
}

TEST_CASE("scnn: bank conflicts, with and without a queue") {
    // K = 2 (kc = 2), C = 1, 1 x 4 plane, all non-zero, F = I = 2, 4 banks. The PE's buffer is
    // 2 channels x 1 row x 4 columns: address = 4 k + x, bank = x.
    // Pair 1: activations x0, x1 x weights k0, k1 -> banks 0, 1, 0, 1: two products on each.
    // Pair 2: x2, x3 -> banks 2, 3, two each.
    const sp::conv_shape s{2, 1, 1, 4, 1, 1, 1, 0, 1};
    const mask w{1, 1}, a{1, 1, 1, 1};
    SECTION("no queue: pair 1 takes 2 cycles, pair 2 waits for it, then 2 more") {
        // issue pair 1 at 0 (banks 0, 1 busy until 2); pair 2 issues at 2 (1 stall cycle), banks
        // 2, 3 busy until 4; the PE is done at 4: stalls 1 (issue) + 1 (drain) = 2.
        const auto r = lowbit::scnn_model(s, w, a, one_pe(2, 2, 4, 2, 0));
        CHECK(r.scnn_cycles == 4);
        CHECK(r.bank_stall_cycles == 2);
        CHECK(r.multiplies == 8);
        CHECK(r.dense_cycles == 2);  // 8 MACs on 4 multipliers
    }
    SECTION("a queue of one product per bank: pair 2 issues at once") {
        // pair 1 at 0 (banks 0, 1 free at 2: one product waits, allowed); pair 2 at 1, banks 2, 3
        // take products at 1 and 2, free at 3; done at 3: 1 drain cycle.
        const auto r = lowbit::scnn_model(s, w, a, one_pe(2, 2, 4, 2, 1));
        CHECK(r.scnn_cycles == 3);
        CHECK(r.bank_stall_cycles == 1);
    }
    SECTION("one bank: every product in turn, whatever the queue") {
        // 8 products through one bank: 8 cycles. Queue 0: pair 2 waits until 4 (3 stalls), done
        // at 8 (3 drain). Queue 2: pair 2 issues at 2 (1 stall), done at 8 (5 drain).
        const auto r0 = lowbit::scnn_model(s, w, a, one_pe(2, 2, 1, 2, 0));
        CHECK(r0.scnn_cycles == 8);
        CHECK(r0.bank_stall_cycles == 6);
        const auto r2 = lowbit::scnn_model(s, w, a, one_pe(2, 2, 1, 2, 2));
        CHECK(r2.scnn_cycles == 8);
        CHECK(r2.bank_stall_cycles == 6);
    }
}

TEST_CASE("scnn: the barrier across PEs at each output-channel group") {
    // 1 x 2 PEs, K = 2 with kc = 1 (two groups), 1 x 1 filters, 1 x 6 plane split 3 | 3.
    // Activations 1,1,1 | 1,0,0: PE 0 has 3 non-zeros -> 2 vectors of I = 2 -> 2 cycles per
    // group; PE 1 has 1 -> 1 cycle, then waits 1 at the barrier. Two groups: 4 cycles, 2 idle
    // PE-cycles: barrier_idle = 2 / (4 x 2). Multiplies 4 a group, 8 in all; slots 4 cycles x 2
    // PEs x 4 = 32: utilization 1/4; vector pairs 3 a group (6), products 8: fragmentation 1 - 8/24.
    // Dense: each PE 3 MACs a group, ceil(3 / 4) = 1 cycle a group: 2. Oracle ceil(8 / 8) = 1.
    const sp::conv_shape s{2, 1, 1, 6, 1, 1, 1, 0, 1};
    const lowbit::scnn_config c{.pe_rows = 1, .pe_cols = 2, .F = 2, .I = 2, .banks = 64, .kc = 1, .bank_queue = 0};
    const auto r = lowbit::scnn_model(s, mask{1, 1}, mask{1, 1, 1, 1, 0, 0}, c);
    CHECK(r.scnn_cycles == 4);
    CHECK(r.barrier_idle_pe_cycles == 2);
    CHECK(r.barrier_idle() == Approx(0.25));
    CHECK(r.multiplies == 8);
    CHECK(r.multiplier_utilization() == Approx(0.25));
    CHECK(r.active_utilization() == Approx(8.0 / 24.0));  // 6 working PE-cycles x 4 multipliers
    CHECK(r.vector_pairs == 6);
    CHECK(r.fragmentation() == Approx(1.0 - 8.0 / 24.0));
    CHECK(r.dense_cycles == 2);
    CHECK(r.oracle_cycles == 1);
    CHECK(r.speedup() == Approx(0.5));
    CHECK(r.oracle_speedup() == Approx(2.0));
}

TEST_CASE("scnn: a stride runs as its polyphase parts") {
    // 1 x 4 plane, 1 x 2 filter, stride 2: outputs ox = 0, 1. Taps s = 0, 1 fall in column phases
    // 0 and 1; activations x = 0, 2 in phase 0 (xq = 0, 1), x = 1, 3 in phase 1 (xq = 0, 1).
    // Each phase: 1 weight x 2 activations (F = 1, I = 2) = 1 vector pair, both products useful.
    // 2 cycles, 4 products, 4 multiplies (the dense count), no idle slot.
    const sp::conv_shape s{1, 1, 1, 4, 1, 2, 2, 0, 1};
    const auto r = lowbit::scnn_model(s, mask{1, 1}, mask{1, 1, 1, 1}, one_pe(1, 2, 8, 1, 0));
    CHECK(r.scnn_cycles == 2);
    CHECK(r.products == 4);
    CHECK(r.multiplies == 4);
    CHECK(r.dense_multiplies == 4);
    CHECK(r.fragmentation() == 0.0);
}

TEST_CASE("scnn: products over the border are computed but are no multiplies") {
    // 1 x 3 plane, 1 x 3 filter, pad 1, all non-zero, F = 3, I = 3, one PE: one vector pair of
    // 9 products; outputs ox = x + 1 - s: x = 0 with s = 2 and x = 2 with s = 0 land at -1 and 3,
    // outside [0, 3): 7 multiplies (the dense count without padding), 9 products. The useful ones
    // meet at ox = 0 (2 products), 1 (3: (x0,s0), (x1,s1), (x2,s2)) and 2 (2); the buffer's
    // addresses are ox (one row: the pad's extra output rows are out of reach), so with 16 banks
    // and no queue the busiest bank takes 3 cycles: 3 cycles, 2 of them drain stalls.
    const sp::conv_shape s{1, 1, 1, 3, 1, 3, 1, 1, 1};
    const auto r = lowbit::scnn_model(s, mask{1, 1, 1}, mask{1, 1, 1}, one_pe(3, 3, 16, 1, 0));
    CHECK(r.products == 9);
    CHECK(r.multiplies == 7);
    CHECK(r.dense_multiplies == 7);
    CHECK(r.vector_pairs == 1);
    CHECK(r.scnn_cycles == 3);
    CHECK(r.bank_stall_cycles == 2);
}

TEST_CASE("scnn: multiplies equal a naive count; dense densities give the dense count") {
    const std::vector<sp::conv_shape> shapes{
        {8, 3, 19, 17, 5, 5, 4, 0, 1},  {12, 6, 9, 11, 3, 3, 1, 1, 2}, {16, 8, 13, 13, 3, 3, 1, 1, 1},
        {6, 4, 7, 7, 3, 3, 2, 1, 2},   {5, 3, 1, 1, 1, 1, 1, 0, 1},   {9, 4, 10, 6, 3, 2, 3, 2, 1}};
    for (const auto& s : shapes)
        for (const auto& [dw, da] : {std::pair{1.0, 1.0}, std::pair{0.4, 0.6}, std::pair{0.1, 0.9}, std::pair{0.0, 0.5}}) {
            const auto w = lowbit::random_nonzero_mask(std::size_t(s.weight_count()), dw, 11);
            const auto a = lowbit::random_nonzero_mask(std::size_t(s.activation_count()), da, 12);
            const auto r = lowbit::scnn_model(s, w, a);
            INFO(s.to_string() << " densities " << dw << ", " << da);
            CHECK(r.multiplies == naive_multiplies(s, w, a));
            CHECK(r.products >= r.multiplies);
            CHECK(r.scnn_cycles >= r.oracle_cycles);
            if (dw == 1.0 && da == 1.0) CHECK(r.multiplies == r.dense_multiplies);
            CHECK(r.dense_multiplies == naive_multiplies(s, mask(w.size(), 1), mask(a.size(), 1)));
        }
}

TEST_CASE("scnn: synthetic layers are deterministic per seed") {
    const sp::conv_shape s{32, 16, 13, 13, 3, 3, 1, 1, 2};
    const auto a = lowbit::scnn_model_synthetic(s, 0.4, 0.5, 3);
    const auto b = lowbit::scnn_model_synthetic(s, 0.4, 0.5, 3);
    const auto c = lowbit::scnn_model_synthetic(s, 0.4, 0.5, 4);
    CHECK(a.scnn_cycles == b.scnn_cycles);
    CHECK(a.multiplies == b.multiplies);
    CHECK(a.bank_stall_cycles == b.bank_stall_cycles);
    CHECK(a.multiplies != c.multiplies);
    const auto dense = lowbit::scnn_model_synthetic(s, 1.0, 1.0, 9);
    CHECK(dense.multiplies == s.dense_macs());
    const auto empty = lowbit::scnn_model_synthetic(s, 0.0, 1.0, 9);
    CHECK(empty.multiplies == 0);
    CHECK(empty.scnn_cycles == 0);
    CHECK(empty.speedup() == 0.0);  // defined as 0 rather than a division by zero
}

TEST_CASE("scnn: bad input is an exception naming it") {
    const sp::conv_shape s{2, 1, 1, 4, 1, 1, 1, 0, 1};
    CHECK(message_of([&] { lowbit::scnn_model(s, mask{1}, mask{1, 1, 1, 1}); }).find("1 weights") != std::string::npos);
    CHECK(message_of([&] { lowbit::scnn_model(s, mask{1, 1}, mask{1}); }).find("1 activations") != std::string::npos);
    CHECK(message_of([&] { lowbit::scnn_model(s, mask{1, 1}, mask{1, 1, 1, 1}, {.F = 0}); }).find("F = 0") !=
          std::string::npos);
    CHECK(message_of([&] { lowbit::scnn_model(s, mask{1, 1}, mask{1, 1, 1, 1}, {.bank_queue = -1}); })
              .find("bank_queue = -1") != std::string::npos);
    CHECK(message_of([&] { lowbit::scnn_model_synthetic(s, 1.5, 0.5, 1); }).find("weight_density") != std::string::npos);
    CHECK(message_of([&] { lowbit::scnn_model_synthetic(s, 0.5, -0.1, 1); }).find("activation_density") !=
          std::string::npos);
    CHECK(message_of([&] { lowbit::scnn_model_synthetic({0, 1, 1, 1, 1, 1, 1, 0, 1}, 0.5, 0.5, 1); }).find("K = 0") !=
          std::string::npos);
}
