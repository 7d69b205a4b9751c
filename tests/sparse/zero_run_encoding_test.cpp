// Tests of lowbit/sparse/zero_run_encoding.hpp (and the conv shapes and planar tiling it uses):
// hand-encoded blocks (runs, the 16th zero's placeholder, trailing zeros), bit-exact round trips of
// all-zero, all-dense, long-run and random blocks (-0 and NaN included), hand-counted sizes, the
// block order of weights and activations, and malformed input.
#include <lowbit/sparse/zero_run_encoding.hpp>

#include <catch2/catch.hpp>

#include <support/exception_message.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace sp = lowbit::sparse;
using lowbit_test::message_of;

namespace {

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) return false;
    return true;
}

std::vector<float> zeros_then(std::size_t zeros, float v) {
    std::vector<float> x(zeros, 0.0f);
    x.push_back(v);
    return x;
}

}  // namespace

TEST_CASE("zero runs: hand-encoded blocks") {
    SECTION("runs before each non-zero") {
        const auto b = sp::encode_zero_runs(std::vector<float>{0, 0, 3, 0, 5});
        CHECK(b.values == std::vector<float>{3, 5});
        CHECK(b.runs == std::vector<std::uint8_t>{2, 1});
        CHECK(b.length == 5);
        CHECK(b.nonzeros() == 2);
    }
    SECTION("15 zeros fit in one index") {
        const auto b = sp::encode_zero_runs(zeros_then(15, 1.0f));
        CHECK(b.values == std::vector<float>{1});
        CHECK(b.runs == std::vector<std::uint8_t>{15});
    }
    SECTION("the 16th zero becomes a placeholder with index 15") {
        const auto b = sp::encode_zero_runs(zeros_then(16, 7.0f));
        CHECK(b.values == std::vector<float>{0, 7});
        CHECK(b.runs == std::vector<std::uint8_t>{15, 0});
        CHECK(b.placeholders() == 1);
        CHECK(b.nonzeros() == 1);
    }
    SECTION("40 zeros: two placeholders (32 zeros) and a run of 8") {
        const auto b = sp::encode_zero_runs(zeros_then(40, -2.0f));
        CHECK(b.values == std::vector<float>{0, 0, -2});
        CHECK(b.runs == std::vector<std::uint8_t>{15, 15, 8});
    }
    SECTION("trailing zeros and all-zero blocks need no entry") {
        CHECK(sp::encode_zero_runs(std::vector<float>{4, 0, 0}).values == std::vector<float>{4});
        const auto b = sp::encode_zero_runs(std::vector<float>(100, 0.0f));
        CHECK(b.entries() == 0);
        CHECK(b.length == 100);
        CHECK(sp::encode_zero_runs(std::vector<float>(40, 0.0f)).entries() == 0);
    }
    SECTION("2-bit indices: runs over 3 break") {
        const auto b = sp::encode_zero_runs(zeros_then(5, 1.0f), 2);
        CHECK(b.values == std::vector<float>{0, 1});
        CHECK(b.runs == std::vector<std::uint8_t>{3, 1});
    }
}

TEST_CASE("zero runs: decode(encode(x)) == x bit for bit") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<std::vector<float>> cases{
        {},
        std::vector<float>(1000, 0.0f),
        {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18},
        zeros_then(15, 1),
        zeros_then(16, 1),
        zeros_then(17, 1),
        zeros_then(31, 1),
        zeros_then(32, 1),
        zeros_then(33, 1),
        zeros_then(1000, 1),
        {-0.0f, 0.0f, nan, 0.0f, -0.0f, std::numeric_limits<float>::infinity(), 1e-45f},
    };
    std::mt19937 gen(7);
    for (const double density : {0.0, 0.01, 0.05, 0.3, 0.9, 1.0}) {
        std::vector<float> x(3000);
        std::uniform_real_distribution<float> u(-1, 1);
        std::bernoulli_distribution keep(density);
        for (auto& v : x) v = keep(gen) ? u(gen) : 0.0f;
        cases.push_back(x);
    }
    for (const auto& x : cases)
        for (const int bits : {1, 2, 4, 8}) {
            const auto b = sp::encode_zero_runs(x, bits);
            CHECK(same_bits(sp::decode_zero_runs(b), x));
            for (const auto r : b.runs) CHECK(r < (1u << bits));
        }
    // -0 is a value (its bits differ from +0), NaN too
    const auto b = sp::encode_zero_runs(std::vector<float>{-0.0f, nan});
    CHECK(b.entries() == 2);
    CHECK(b.nonzeros() == 2);
}

TEST_CASE("zero runs: sizes against dense 16-bit storage") {
    // {0,0,3,0,5}: 2 entries of 16 + 4 bits = 40 bits; dense 5 x 16 = 80
    const auto s = sp::size_of(sp::encode_zero_runs(std::vector<float>{0, 0, 3, 0, 5}));
    CHECK(s.bits == 40);
    CHECK(s.dense_bits == 80);
    CHECK(s.bits_per_nonzero() == 20.0);
    CHECK(s.compression_ratio() == 2.0);
    // 40 zeros then a value: 3 entries (2 placeholders) = 60 bits for 1 non-zero; dense 41 x 16
    const auto p = sp::size_of(sp::encode_zero_runs(zeros_then(40, 1)));
    CHECK(p.bits == 60);
    CHECK(p.placeholders == 2);
    CHECK(p.bits_per_nonzero() == 60.0);
    CHECK(p.dense_bits == 41 * 16);
    // all dense: 20 bits a value, ratio 16/20
    const auto d = sp::size_of(sp::encode_zero_runs(std::vector<float>(10, 1.0f)));
    CHECK(d.compression_ratio() == Approx(0.8).epsilon(1e-12));
    // all zero: nothing stored
    const auto z = sp::size_of(sp::encode_zero_runs(std::vector<float>(10, 0.0f)));
    CHECK(z.bits == 0);
    CHECK(z.bits_per_nonzero() == 0.0);
    // 8-bit values
    CHECK(sp::size_of(sp::encode_zero_runs(std::vector<float>{0, 0, 3, 0, 5}), 8).bits == 24);
}

TEST_CASE("planar tiling deals rows evenly") {
    // 13 rows over 8 PEs: 2,2,2,2,2,1,1,1
    const int expected[8] = {2, 2, 2, 2, 2, 1, 1, 1};
    int begin = 0;
    for (int i = 0; i < 8; ++i) {
        const auto r = sp::even_split(13, 8, i);
        CHECK(r.begin == begin);
        CHECK(r.size() == expected[i]);
        begin = r.end;
    }
    CHECK(sp::even_split(3, 8, 5).size() == 0);
    CHECK_THROWS_AS(sp::even_split(3, 8, 8), std::invalid_argument);
}

TEST_CASE("weights and activations: block order and round trips") {
    // K = 3, C = 2, 1 x 1 filters, kc = 2: blocks (k 0-1, c 0), (k 0-1, c 1), (k 2, c 0), (k 2, c 1)
    // of weights w[k][c] = 10 k + c + 1.
    const sp::conv_shape shape{3, 2, 1, 1, 1, 1, 1, 0, 1};
    const std::vector<float> w{1, 2, 11, 12, 21, 22};
    const auto blocks = sp::encode_weights(w, shape, 2);
    REQUIRE(blocks.size() == 4);
    CHECK(sp::decode_zero_runs(blocks[0]) == std::vector<float>{1, 11});
    CHECK(sp::decode_zero_runs(blocks[1]) == std::vector<float>{2, 12});
    CHECK(sp::decode_zero_runs(blocks[2]) == std::vector<float>{21});
    CHECK(sp::decode_zero_runs(blocks[3]) == std::vector<float>{22});
    CHECK(sp::decode_weights(blocks, shape, 2) == w);

    // C = 2, H = 3, W = 2 over a 2 x 1 grid: tile 0 rows 0-1, tile 1 row 2; blocks (tile, c)
    const sp::conv_shape plane{1, 2, 3, 2, 1, 1, 1, 0, 1};
    const std::vector<float> a{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};  // c0: 1..6, c1: 7..12
    const auto ab = sp::encode_activations(a, plane, 2, 1);
    REQUIRE(ab.size() == 4);
    CHECK(sp::decode_zero_runs(ab[0]) == std::vector<float>{1, 2, 3, 4});
    CHECK(sp::decode_zero_runs(ab[1]) == std::vector<float>{7, 8, 9, 10});
    CHECK(sp::decode_zero_runs(ab[2]) == std::vector<float>{5, 6});
    CHECK(sp::decode_zero_runs(ab[3]) == std::vector<float>{11, 12});
    CHECK(sp::decode_activations(ab, plane, 2, 1) == a);

    // random sparse tensors of a grouped 3 x 3 layer (AlexNet conv2's groups, small), kc not dividing K
    const sp::conv_shape conv{20, 6, 11, 9, 3, 3, 1, 1, 2};
    std::mt19937 gen(3);
    std::uniform_real_distribution<float> u(-1, 1);
    std::bernoulli_distribution keep(0.3);
    std::vector<float> weights(std::size_t(conv.weight_count())), acts(std::size_t(conv.activation_count()));
    for (auto& v : weights) v = keep(gen) ? u(gen) : 0.0f;
    for (auto& v : acts) v = keep(gen) ? std::fabs(u(gen)) : 0.0f;
    for (const int kc : {1, 3, 8, 10, 64}) CHECK(same_bits(sp::decode_weights(sp::encode_weights(weights, conv, kc), conv, kc), weights));
    for (const int grid : {1, 2, 8, 16})
        CHECK(same_bits(sp::decode_activations(sp::encode_activations(acts, conv, grid, grid), conv, grid, grid), acts));
    // the non-zeros are all stored once
    const auto size = sp::size_of(sp::encode_weights(weights, conv));
    std::uint64_t nonzero = 0;
    for (const float v : weights) nonzero += v != 0;
    CHECK(size.nonzeros == nonzero);
    CHECK(size.values == weights.size());
}

TEST_CASE("encoding: malformed input is an exception naming it") {
    sp::zero_run_block b;
    b.values = {1, 2};
    b.runs = {0};
    b.length = 5;
    CHECK(message_of([&] { sp::decode_zero_runs(b); }).find("2 values but 1 run indices") != std::string::npos);
    b.runs = {0, 16};
    CHECK(message_of([&] { sp::decode_zero_runs(b); }).find("does not fit in 4 bits") != std::string::npos);
    b.runs = {3, 1};
    CHECK(message_of([&] { sp::decode_zero_runs(b); }).find("past the length") != std::string::npos);
    CHECK(message_of([] { sp::encode_zero_runs(std::vector<float>{1}, 0); }).find("run_bits = 0") != std::string::npos);
    const sp::conv_shape shape{3, 2, 1, 1, 1, 1, 1, 0, 1};
    CHECK(message_of([&] { sp::encode_weights(std::vector<float>(5), shape); }).find("5 weights") != std::string::npos);
    CHECK(message_of([&] { sp::encode_weights(std::vector<float>(6), shape, 0); }).find("kc = 0") != std::string::npos);
    CHECK(message_of([&] { sp::encode_activations(std::vector<float>(3), shape); }).find("3 activations") !=
          std::string::npos);
}

TEST_CASE("conv shapes: parsing and impossible layers") {
    const auto s = sp::parse_conv_shape("256,96,27,27,5,5,1,2,2");
    CHECK(s.K == 256);
    CHECK(s.groups == 2);
    CHECK(s.out_h() == 27);
    CHECK(sp::parse_conv_shape("96,3,227,227,11,11,4,0").out_w() == 55);
    CHECK(sp::parse_conv_shape("96,3,227,227,11,11,4,0").groups == 1);
    // dense multiplies leave out the padding: 1 x 1 x (3 x 3 plane, 3 x 3 filter, pad 1):
    // per row 2 + 3 + 2 = 7 taps meet the plane, 7 x 7 = 49; im2col counts 9 x 9 = 81
    const auto p = sp::parse_conv_shape("1,1,3,3,3,3,1,1");
    CHECK(p.dense_macs() == 49);
    CHECK(p.im2col_macs() == 81);
    CHECK(message_of([] { sp::parse_conv_shape("1,2,3"); }).find("3 fields") != std::string::npos);
    CHECK(message_of([] { sp::parse_conv_shape("1,2,x,4,1,1,1,0"); }).find("field 3 ('x')") != std::string::npos);
    CHECK(message_of([] { sp::parse_conv_shape("1,2,3,4,1,1,1,"); }).find("field 8 ('')") != std::string::npos);
    CHECK(message_of([] { sp::parse_conv_shape("0,2,3,4,1,1,1,0"); }).find("K = 0") != std::string::npos);
    CHECK(message_of([] { sp::parse_conv_shape("4,4,4,4,5,5,1,0"); }).find("larger than the padded") != std::string::npos);
    CHECK(message_of([] { sp::parse_conv_shape("8,4,4,4,3,3,1,1,3"); }).find("groups = 3") != std::string::npos);
    CHECK(message_of([] { sp::parse_conv_shape("8,4,4,4,3,3,0,1"); }).find("stride = 0") != std::string::npos);
    CHECK(message_of([] { sp::parse_conv_shape("8,4,4,4,3,3,1,-1"); }).find("pad = -1") != std::string::npos);
    CHECK(message_of([] { sp::parse_conv_shape("99999999999,4,4,4,3,3,1,1"); }).find("not an integer") != std::string::npos);
}
