// Tests of lowbit/nn/weights_file.hpp.
//  * Round trips are compared bit for bit (NaN payloads, -0, subnormals, infinities, an empty
//    tensor, a rank-0 scalar).
//  * The byte layout is compared with bytes written out by hand from the documented format; their
//    CRC-32 values come from Python (zlib.crc32), not from this code.
//  * Damaged files (every truncation, every flipped byte, hand-crafted absurd sizes) are rejected
//    with a message naming the file and the problem. Crafted files are built by a small encoder
//    here, written from the format description, with zlib's crc32 as the format prescribes.
//  * load_weights mismatches name what differs and leave the destination untouched.
//  * Failing saves (no directory, destination is a directory, a write error from a file size
//    limit, a read-only directory) leave a previous file intact and no temporary behind.
#include <lowbit/nn/weights_file.hpp>

#include "support/temporary_directory.hpp"

#include <catch2/catch.hpp>
#include <zlib.h>

#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Catch::Contains;
using lowbit::nn::named_tensor;
using lowbit::nn::tensor_ref;
using lowbit::nn::tensor_view;
using lowbit_test::temporary_directory;
using bytes = std::vector<unsigned char>;

// The message of the exception of type E that f throws; "" when it throws nothing (another
// exception type escapes and fails the test).
template <class E, class F>
std::string message_of(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    return "";
}

float from_bits(std::uint32_t bits) { return std::bit_cast<float>(bits); }
std::uint32_t bits_of(float f) { return std::bit_cast<std::uint32_t>(f); }

std::vector<std::uint32_t> bits_of(std::span<const float> values) {
    std::vector<std::uint32_t> out;
    for (const float v : values) out.push_back(bits_of(v));
    return out;
}

bytes file_bytes(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    REQUIRE(in.good());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::filesystem::path& file, const bytes& content) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(content.data()), std::streamsize(content.size()));
    REQUIRE(out.good());
}

// The names in a directory, to see that no temporary was left behind.
std::vector<std::string> entries(const std::filesystem::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

// An encoder written from the format description, for files the library would never write.
struct file_builder {
    bytes out;
    file_builder& raw(std::string_view s) {
        out.insert(out.end(), s.begin(), s.end());
        return *this;
    }
    file_builder& u32(std::uint32_t v) {
        for (int b = 0; b < 4; ++b) out.push_back(static_cast<unsigned char>(v >> (8 * b)));
        return *this;
    }
    file_builder& i64(std::int64_t v) {
        for (int b = 0; b < 8; ++b) out.push_back(static_cast<unsigned char>(std::uint64_t(v) >> (8 * b)));
        return *this;
    }
    file_builder& f32(float v) { return u32(bits_of(v)); }
    file_builder& header(std::uint32_t count) { return raw("LOWBITW1").u32(1).u32(count); }
    file_builder& name(std::string_view s) { return u32(std::uint32_t(s.size())).raw(s); }
    // Appends the CRC-32 of everything so far (zlib's crc32, as the format prescribes).
    bytes with_crc() const {
        file_builder copy = *this;
        copy.u32(std::uint32_t(crc32(0, out.data(), unsigned(out.size()))));
        return copy.out;
    }
};

// The three-tensor example: "b" [2] = {1, -2}, "s" scalar = 0.5, "e" [3, 0] (no values).
const std::vector<float> example_b = {1.0f, -2.0f};
const std::vector<float> example_s = {0.5f};

std::vector<tensor_view> example_views() {
    return {{"b", {2}, example_b}, {"s", {}, example_s}, {"e", {3, 0}, {}}};
}

}  // namespace

TEST_CASE("weights_file: the bytes of a small file are the documented layout") {
    temporary_directory dir;
    const auto path = dir / "example.bin";
    SECTION("the header's example") {
        const std::vector<float> b = {1.0f, -2.0f};
        lowbit::nn::save_weights(path, std::vector<tensor_view>{{"b", {2}, b}});
        const bytes expected = {
            0x4C, 0x4F, 0x57, 0x42, 0x49, 0x54, 0x57, 0x31,  // "LOWBITW1"
            0x01, 0x00, 0x00, 0x00,                          // version 1
            0x01, 0x00, 0x00, 0x00,                          // 1 tensor
            0x01, 0x00, 0x00, 0x00, 0x62,                    // name length 1, "b"
            0x01, 0x00, 0x00, 0x00,                          // rank 1
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // dimension 2
            0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0,  // 1.0f, -2.0f
            0xC5, 0xBB, 0xF4, 0x80,                          // CRC-32 0x80F4BBC5 (Python zlib.crc32)
        };
        CHECK(file_bytes(path) == expected);
    }
    SECTION("a scalar and an empty tensor") {
        lowbit::nn::save_weights(path, example_views());
        const bytes expected = {
            0x4C, 0x4F, 0x57, 0x42, 0x49, 0x54, 0x57, 0x31,  // "LOWBITW1"
            0x01, 0x00, 0x00, 0x00,                          // version 1
            0x03, 0x00, 0x00, 0x00,                          // 3 tensors
            0x01, 0x00, 0x00, 0x00, 0x62,                    // "b"
            0x01, 0x00, 0x00, 0x00,                          // rank 1
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // [2]
            0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0,  // 1.0f, -2.0f
            0x01, 0x00, 0x00, 0x00, 0x73,                    // "s"
            0x00, 0x00, 0x00, 0x00,                          // rank 0: no dimensions, one value
            0x00, 0x00, 0x00, 0x3F,                          // 0.5f
            0x01, 0x00, 0x00, 0x00, 0x65,                    // "e"
            0x02, 0x00, 0x00, 0x00,                          // rank 2
            0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // [3,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //     0]: no values
            0xC1, 0x98, 0x45, 0x80,                          // CRC-32 0x804598C1 (Python zlib.crc32)
        };
        CHECK(file_bytes(path) == expected);
        // And the independent encoder agrees, so the crafted files below speak the same format.
        const bytes built = file_builder{}
                                .header(3)
                                .name("b").u32(1).i64(2).f32(1.0f).f32(-2.0f)
                                .name("s").u32(0).f32(0.5f)
                                .name("e").u32(2).i64(3).i64(0)
                                .with_crc();
        CHECK(built == expected);
    }
}

TEST_CASE("weights_file: save then read and load give back every bit") {
    temporary_directory dir;
    const auto path = dir / "net.bin";
    const std::vector<float> special = {
        from_bits(0x7FC12345u),  // quiet NaN with a payload
        from_bits(0x7F800001u),  // signalling NaN
        from_bits(0xFFC00001u),  // negative quiet NaN
        from_bits(0xFF812345u),  // negative signalling NaN
        -0.0f, 0.0f,
        from_bits(0x00000001u),  // smallest subnormal
        from_bits(0x807FFFFFu),  // largest negative subnormal
        std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
        std::numeric_limits<float>::max(), std::numeric_limits<float>::min(), 1.0f / 3.0f, -1e-30f,
    };
    std::mt19937 generator(12345);
    std::uniform_int_distribution<std::uint32_t> any_bits;
    std::vector<float> conv(2 * 3 * 3 * 3);
    for (float& v : conv) v = from_bits(any_bits(generator));  // every kind of bit pattern
    const std::vector<float> scalar = {from_bits(0x7FA00000u)};
    const std::vector<tensor_view> saved = {
        {"special", {2, 7}, special},
        {"conv1.weight", {2, 3, 3, 3}, conv},
        {"empty", {0}, {}},
        {"also.empty", {4, 0, 2}, {}},
        {"scalar", {}, scalar},
        {"caf\xC3\xA9.\xE5\xB1\x82", {1, 1}, std::span(special).first(1)},  // UTF-8: "café.层"
    };
    lowbit::nn::save_weights(path, saved);
    CHECK(entries(dir.path()) == std::vector<std::string>{"net.bin"});  // no temporary left

    const std::vector<named_tensor> read = lowbit::nn::read_weights(path);
    REQUIRE(read.size() == saved.size());
    for (std::size_t i = 0; i < saved.size(); ++i) {
        CAPTURE(i);
        CHECK(read[i].name == saved[i].name);
        CHECK(read[i].shape == saved[i].shape);
        CHECK(bits_of(read[i].values) == bits_of(saved[i].values));
    }

    std::vector<std::vector<float>> storage;
    for (const auto& t : saved) storage.emplace_back(t.values.size(), 42.0f);
    std::vector<tensor_ref> refs;
    for (std::size_t i = 0; i < saved.size(); ++i) refs.push_back({saved[i].name, saved[i].shape, storage[i]});
    lowbit::nn::load_weights(path, refs);
    for (std::size_t i = 0; i < saved.size(); ++i) {
        CAPTURE(i);
        CHECK(bits_of(storage[i]) == bits_of(saved[i].values));
    }

    // Saving again replaces the file.
    lowbit::nn::save_weights(path, std::vector<tensor_view>{{"scalar", {}, scalar}});
    REQUIRE(lowbit::nn::read_weights(path).size() == 1);
    CHECK(entries(dir.path()) == std::vector<std::string>{"net.bin"});

    // A file with no tensors is valid too.
    lowbit::nn::save_weights(path, {});
    CHECK(lowbit::nn::read_weights(path).empty());
    CHECK(file_bytes(path).size() == 8 + 4 + 4 + 4);
}

TEST_CASE("weights_file: the bytes in memory read and write as the file does") {
    temporary_directory dir;
    const auto path = dir / "net.bin";
    lowbit::nn::save_weights(path, example_views());
    const bytes whole = file_bytes(path);
    CHECK(lowbit::nn::weights_file_bytes(example_views()) == whole);

    const std::vector<named_tensor> from_file = lowbit::nn::read_weights(path);
    const std::vector<named_tensor> from_memory = lowbit::nn::read_weights(whole, "net.bin");
    REQUIRE(from_memory.size() == from_file.size());
    for (std::size_t i = 0; i < from_file.size(); ++i) {
        CAPTURE(i);
        CHECK(from_memory[i].name == from_file[i].name);
        CHECK(from_memory[i].shape == from_file[i].shape);
        CHECK(bits_of(from_memory[i].values) == bits_of(from_file[i].values));
    }

    // Errors name what the caller calls the bytes, as they name a path.
    const bytes cut(whole.begin(), whole.end() - 1);
    CHECK_THROWS_WITH(lowbit::nn::read_weights(cut, "in memory"),
                      Contains("weights file 'in memory'") && Contains("truncated"));
    CHECK_THROWS_WITH(lowbit::nn::weights_file_bytes(std::vector<tensor_view>{{"", {}, example_s}}),
                      Contains("weights_file_bytes") && Contains("empty name"));
}

TEST_CASE("weights_file: a file cut at any byte is rejected as truncated") {
    temporary_directory dir;
    const auto good = dir / "good.bin", cut = dir / "cut.bin";
    lowbit::nn::save_weights(good, example_views());
    const bytes whole = file_bytes(good);
    REQUIRE(whole.size() == 83);
    for (std::size_t length = 0; length < whole.size(); ++length) {
        CAPTURE(length);
        write_bytes(cut, bytes(whole.begin(), whole.begin() + std::ptrdiff_t(length)));
        const auto m = message_of<std::runtime_error>([&] { lowbit::nn::read_weights(cut); });
        CHECK_THAT(m, Contains("weights file '" + cut.string() + "'") && Contains("truncated"));
    }
    // The message says where: e.g. cut inside the values of tensor 0 ("b").
    write_bytes(cut, bytes(whole.begin(), whole.begin() + 37));
    CHECK_THAT(message_of<std::runtime_error>([&] { lowbit::nn::read_weights(cut); }),
               Contains("the 2 values of tensor 0 ('b'), shape [2], needs 8 bytes at offset 33, but only 4 remain"));
    write_bytes(cut, bytes(whole.begin(), whole.end() - 1));
    CHECK_THAT(message_of<std::runtime_error>([&] { lowbit::nn::read_weights(cut); }),
               Contains("the CRC-32 after the last tensor"));
}

TEST_CASE("weights_file: every flipped byte is rejected; in names, values and the CRC by the CRC") {
    temporary_directory dir;
    const auto good = dir / "good.bin", bad = dir / "bad.bin";
    lowbit::nn::save_weights(good, example_views());
    const bytes whole = file_bytes(good);
    // Offsets (see the layout test): name bytes 20, 45, 58; values 33..40 and 50..53; CRC 79..82.
    const auto checked_by_crc = [](std::size_t at) {
        return at == 20 || at == 45 || at == 58 || (at >= 33 && at <= 40) || (at >= 50 && at <= 53) || at >= 79;
    };
    for (std::size_t at = 0; at < whole.size(); ++at)
        for (const unsigned char mask : {0x01, 0x80, 0xFF}) {
            CAPTURE(at, int(mask));
            bytes damaged = whole;
            damaged[at] ^= mask;
            write_bytes(bad, damaged);
            const auto m = message_of<std::runtime_error>([&] { lowbit::nn::read_weights(bad); });
            CHECK_THAT(m, Contains("weights file '" + bad.string() + "'"));
            if (checked_by_crc(at)) CHECK_THAT(m, Contains("CRC-32 mismatch"));
            if (at < 8) CHECK_THAT(m, Contains("bad magic number"));
            if (at >= 8 && at < 12) CHECK_THAT(m, Contains("unsupported version"));
        }
}

TEST_CASE("weights_file: malformed files name the problem") {
    temporary_directory dir;
    const auto path = dir / "w.bin";
    const auto error = [&](const bytes& content) {
        write_bytes(path, content);
        return message_of<std::runtime_error>([&] { lowbit::nn::read_weights(path); });
    };
    const std::string file = "weights file '" + path.string() + "'";

    CHECK_THAT(message_of<std::runtime_error>([&] { lowbit::nn::read_weights(dir / "none.bin"); }),
               Contains((dir / "none.bin").string()) && Contains("not found"));
    CHECK_THAT(message_of<std::runtime_error>([&] { lowbit::nn::read_weights(dir.path()); }),
               Contains("not a regular file"));
    CHECK_THAT(error(file_builder{}.raw("PK\x03\x04 this is a zip file").with_crc()),
               Contains(file) && Contains("bad magic number (50 4B 03 04 20 74 68 69)") && Contains("LOWBITW1"));
    CHECK_THAT(error(file_builder{}.raw("LOWBITW1").u32(2).u32(0).with_crc()),
               Contains(file) && Contains("unsupported version 2"));
    // Lengths that the rest of the file cannot hold: rejected before any allocation.
    CHECK_THAT(error(file_builder{}.header(1).u32(0xFFFFFFFFu).raw("x").u32(0).with_crc()),
               Contains(file) && Contains("the 4294967295-byte name of tensor 0 needs 4294967295 bytes"));
    CHECK_THAT(error(file_builder{}.header(1).name("x").u32(0xFFFFFFFFu).with_crc()),
               Contains(file) && Contains("the 4294967295 dimensions of tensor 0 ('x') needs 34359738360 bytes"));
    CHECK_THAT(error(file_builder{}.header(1).name("x").u32(3).i64(1ll << 40).i64(1ll << 40).i64(1ll << 40).with_crc()),
               Contains(file) && Contains("the values of tensor 0 ('x'), shape [1099511627776, 1099511627776, "
                                          "1099511627776], need more than 2^64 bytes at offset 49, but only 4 "
                                          "remain"));
    CHECK_THAT(error(file_builder{}.header(1).name("x").u32(2).i64(1000).i64(1000).f32(1).with_crc()),
               Contains(file) && Contains("the 1000000 values of tensor 0 ('x'), shape [1000, 1000], needs 4000000 "
                                          "bytes at offset 41, but only 8 remain"));
    CHECK_THAT(error(file_builder{}.header(0xFFFFFFFFu).name("x").u32(0).f32(1).with_crc()),
               Contains(file) && Contains("truncated") && Contains("tensor 1"));
    CHECK_THAT(error(file_builder{}.header(1).name("x").u32(2).i64(-2).i64(-3).with_crc()),
               Contains(file) && Contains("tensor 0 ('x') has shape [-2, -3] with a negative dimension"));
    CHECK_THAT(error(file_builder{}.header(1).name("").u32(0).f32(1).with_crc()),
               Contains(file) && Contains("tensor 0 has an empty name"));
    CHECK_THAT(error(file_builder{}.header(2).name("x").u32(0).f32(1).name("x").u32(0).f32(2).with_crc()),
               Contains(file) && Contains("tensor 1 repeats the name 'x'"));
    auto trailing = file_builder{}.header(1).name("x").u32(0).f32(1).with_crc();
    trailing.push_back(0);
    trailing.push_back(0);
    CHECK_THAT(error(trailing), Contains(file) && Contains("2 trailing bytes after the CRC-32"));
    auto wrong_crc = file_builder{}.header(1).name("x").u32(0).f32(1).with_crc();
    wrong_crc.back() ^= 0x10;
    CHECK_THAT(error(wrong_crc), Contains(file) && Contains("CRC-32 mismatch"));
}

TEST_CASE("weights_file: load_weights says what differs and writes nothing unless all matches") {
    temporary_directory dir;
    const auto path = dir / "net.bin";
    const std::vector<float> a(6, 1.5f), b(3, -2.5f), c = {9.0f};
    lowbit::nn::save_weights(path, std::vector<tensor_view>{{"fc1.weight", {2, 3}, a}, {"fc1.bias", {3}, b},
                                                            {"scale", {}, c}});
    std::vector<float> da(6, 7.0f), db(3, 7.0f), dc(1, 7.0f), dd(4, 7.0f), db4(4, 7.0f), da32(6, 7.0f);
    const auto untouched = [&] {
        for (const auto* v : {&da, &db, &dc, &dd, &db4, &da32})
            for (const float x : *v)
                if (x != 7.0f) return false;
        return true;
    };
    const auto error = [&](std::vector<tensor_ref> refs) {
        return message_of<std::runtime_error>([&] { lowbit::nn::load_weights(path, refs); });
    };
    const std::string file = "weights file '" + path.string() + "'";

    SECTION("a shape differs (the last tensor: the first two, which match, are not written either)") {
        std::vector<float> dc2(2, 7.0f);
        const auto m = error({{"fc1.weight", {2, 3}, da}, {"fc1.bias", {3}, db}, {"scale", {2}, dc2}});
        CHECK_THAT(m, Contains(file + ": tensor 2 is 'scale' with shape [] but the network expects 'scale' with "
                                      "shape [2]"));
        CHECK(dc2 == std::vector<float>(2, 7.0f));
    }
    SECTION("the example of the brief: same name, other shape") {
        const auto m = error({{"fc1.weight", {3, 2}, da}, {"fc1.bias", {3}, db}, {"scale", {}, dc}});
        CHECK_THAT(m, Contains("tensor 0 is 'fc1.weight' with shape [2, 3] but the network expects 'fc1.weight' "
                               "with shape [3, 2]"));
    }
    SECTION("the order differs") {
        const auto m = error({{"fc1.bias", {3}, db}, {"fc1.weight", {2, 3}, da}, {"scale", {}, dc}});
        CHECK_THAT(m, Contains("tensor 0 is 'fc1.weight' with shape [2, 3] but the network expects 'fc1.bias' with "
                               "shape [3] (and 1 more tensors differ)"));
    }
    SECTION("a tensor is missing from the file") {
        const auto m =
            error({{"fc1.weight", {2, 3}, da}, {"fc1.bias", {3}, db}, {"scale", {}, dc}, {"fc2.bias", {4}, dd}});
        CHECK_THAT(m, Contains(file + " holds 3 tensors, the network expects 4; missing from the file: 'fc2.bias'"));
    }
    SECTION("the file has a tensor the network lacks") {
        const auto m = error({{"fc1.weight", {2, 3}, da}, {"fc1.bias", {3}, db}});
        CHECK_THAT(m, Contains(file + " holds 3 tensors, the network expects 2; in the file but not in the network: "
                                      "'scale'"));
    }
    SECTION("renamed: both lists") {
        const auto m = error({{"fc1.weight", {2, 3}, da}, {"fc1.b", {3}, db}, {"scale", {}, dc}});
        CHECK_THAT(m, Contains("missing from the file: 'fc1.b'; in the file but not in the network: 'fc1.bias'"));
    }
    SECTION("a damaged file") {
        bytes content = file_bytes(path);
        // Tensor 0 takes bytes 16..73 (4 + 10 + 4 + 16 + 24), tensor 1 74..109 with its values at 98..109.
        content[105] ^= 0x04;
        const auto damaged = dir / "damaged.bin";
        write_bytes(damaged, content);
        const auto m = message_of<std::runtime_error>([&] {
            lowbit::nn::load_weights(
                damaged, std::vector<tensor_ref>{{"fc1.weight", {2, 3}, da}, {"fc1.bias", {3}, db}, {"scale", {}, dc}});
        });
        CHECK_THAT(m, Contains("CRC-32 mismatch"));
    }
    SECTION("refs that contradict themselves are the caller's error") {
        CHECK_THAT(message_of<std::invalid_argument>(
                       [&] { lowbit::nn::load_weights(path, std::vector<tensor_ref>{{"fc1.weight", {2, 3}, db4}}); }),
                   Contains("lowbit::nn::load_weights: tensor 0 ('fc1.weight') has shape [2, 3] (6 values) but 4 "
                            "values"));
    }
    CHECK(untouched());

    // And when everything matches, it loads.
    lowbit::nn::load_weights(path, std::vector<tensor_ref>{{"fc1.weight", {2, 3}, da32}, {"fc1.bias", {3}, db},
                                                           {"scale", {}, dc}});
    CHECK(da32 == a);
    CHECK(db == b);
    CHECK(dc == c);
}

TEST_CASE("weights_file: save_weights rejects inconsistent tensors before writing anything") {
    temporary_directory dir;
    const auto path = dir / "w.bin";
    const std::vector<float> three(3, 1.0f);
    const auto error = [&](std::vector<tensor_view> tensors) {
        return message_of<std::invalid_argument>([&] { lowbit::nn::save_weights(path, tensors); });
    };
    CHECK_THAT(error({{"a", {2, 2}, three}}),
               Contains("lowbit::nn::save_weights: tensor 0 ('a') has shape [2, 2] (4 values) but 3 values"));
    CHECK_THAT(error({{"a", {3}, three}, {"b", {3, -1}, three}}),
               Contains("tensor 1 ('b') has shape [3, -1]: dimension 1 = -1 is negative"));
    CHECK_THAT(error({{"a", {3}, three}, {"", {3}, three}}), Contains("tensor 1 has an empty name"));
    CHECK_THAT(error({{"a", {3}, three}, {"b", {3}, three}, {"a", {1, 3}, three}}),
               Contains("tensor 2 ('a') repeats the name of tensor 0"));
    CHECK_THAT(error({{"a", {1ll << 40, 1ll << 40, 1ll << 40}, three}}),
               Contains("has shape [1099511627776, 1099511627776, 1099511627776] (more than 2^64 values)"));
    CHECK(entries(dir.path()).empty());
}

TEST_CASE("weights_file: a failing save leaves the previous file intact and no temporary") {
    temporary_directory dir;
    const auto path = dir / "net.bin";
    const std::vector<float> old_values = {1, 2, 3};
    lowbit::nn::save_weights(path, std::vector<tensor_view>{{"w", {3}, old_values}});
    const bytes old_file = file_bytes(path);
    const std::vector<float> big(100000, 0.25f);
    const std::vector<tensor_view> new_tensors = {{"w", {100000}, big}};

    SECTION("the directory does not exist") {
        const auto nowhere = dir / "no-such-dir" / "net.bin";
        CHECK_THAT(message_of<std::runtime_error>([&] { lowbit::nn::save_weights(nowhere, new_tensors); }),
                   Contains("weights file '" + nowhere.string() + "'") && Contains("cannot be created") &&
                       Contains("No such file or directory"));
    }
    SECTION("the destination is a directory (the rename fails after the temporary was written)") {
        const auto sub = dir / "sub";
        std::filesystem::create_directory(sub);
        std::filesystem::create_directory(sub / "inner");
        CHECK_THAT(message_of<std::runtime_error>([&] { lowbit::nn::save_weights(sub, new_tensors); }),
                   Contains("weights file '" + sub.string() + "'") && Contains("cannot be renamed"));
        CHECK(std::filesystem::is_directory(sub / "inner"));
    }
    SECTION("a write fails halfway (file size limit)") {
        // RLIMIT_FSIZE makes write() fail with EFBIG past 4096 bytes, even for root, after a short
        // write: the temporary is partly written when save_weights gives up. SIGXFSZ, which would
        // end the process, is ignored meanwhile; both are restored afterwards.
        struct limit_file_size {
            rlimit saved{};
            void (*saved_handler)(int) = nullptr;
            limit_file_size() {
                REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
                saved_handler = std::signal(SIGXFSZ, SIG_IGN);
                rlimit small = saved;
                small.rlim_cur = 4096;
                REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
            }
            ~limit_file_size() {
                setrlimit(RLIMIT_FSIZE, &saved);
                std::signal(SIGXFSZ, saved_handler);
            }
        };
        std::string m;
        {
            limit_file_size limit;
            m = message_of<std::runtime_error>([&] { lowbit::nn::save_weights(path, new_tensors); });
        }
        CHECK_THAT(m, Contains("weights file '" + path.string() + "'") && Contains("write failed") &&
                          Contains("File too large"));
    }
    SECTION("a read-only directory") {
        if (geteuid() == 0) {
            WARN("skipped: running as root, which may write into a read-only directory");
        } else {
            std::filesystem::permissions(dir.path(), std::filesystem::perms::owner_write,
                                         std::filesystem::perm_options::remove);
            const auto m = message_of<std::runtime_error>([&] { lowbit::nn::save_weights(path, new_tensors); });
            std::filesystem::permissions(dir.path(), std::filesystem::perms::owner_write,
                                         std::filesystem::perm_options::add);
            CHECK_THAT(m, Contains("weights file '" + path.string() + "'") && Contains("cannot be created") &&
                              Contains("Permission denied"));
        }
    }
    CHECK(file_bytes(path) == old_file);
    const auto names = entries(dir.path());
    CHECK(std::none_of(names.begin(), names.end(), [](const std::string& n) { return n.find(".tmp.") != n.npos; }));
    CHECK(lowbit::nn::read_weights(path)[0].values == old_values);
}

TEST_CASE("weights_file: a process killed while it saves leaves a complete file, old or new") {
    // A child process saves 8 MB over and over (alternating two contents, first then second) and
    // is killed with SIGKILL at a different moment each round, mostly in the middle of a write:
    // after its first or second completed save (it reports each on a pipe, so a slow or loaded
    // machine changes nothing), plus 0 to 15 ms. Whatever the moment, the file at the path is
    // complete: it reads back, CRC checked, as one of the two contents (or the one written before
    // the child started), never a torn mixture. A killed process cannot remove its temporary: at
    // most one leftover per round, never the file itself.
    temporary_directory dir;
    const auto path = dir / "net.weights";
    constexpr std::size_t n = 2'000'000;
    const std::vector<float> before(n, 1.0f), first(n, 2.0f), second(n, 3.0f);
    lowbit::nn::save_weights(path, std::vector<tensor_view>{{"w", {std::int64_t(n)}, before}});
    std::set<float> seen;
    for (int round = 0; round < 6; ++round) {
        int saved[2];
        REQUIRE(::pipe(saved) == 0);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {  // never returns into the test runner: it is killed, or exits on an error
            ::close(saved[0]);
            try {
                for (int k = 0;; ++k) {
                    lowbit::nn::save_weights(path,
                                             std::vector<tensor_view>{{"w", {std::int64_t(n)}, k % 2 ? second : first}});
                    if (::write(saved[1], "s", 1) != 1) break;
                }
            } catch (...) {
            }
            ::_exit(3);
        }
        ::close(saved[1]);
        const int saves = 1 + round % 2;  // the file then holds `first` (1) or `second` (2), unless killed late
        for (int s = 0; s < saves; ++s) {
            pollfd ready{saved[0], POLLIN, 0};
            char byte = 0;
            REQUIRE(::poll(&ready, 1, 120'000) == 1);  // a save takes milliseconds; two minutes is a hang
            REQUIRE(::read(saved[0], &byte, 1) == 1);    // 0: the child exited on an error
        }
        ::usleep(useconds_t(3000 * round));  // 0 .. 15 ms into the next save
        REQUIRE(::kill(child, SIGKILL) == 0);
        ::close(saved[0]);
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        CHECK(WIFSIGNALED(status));
        const std::vector<named_tensor> back = lowbit::nn::read_weights(path);  // throws if torn
        REQUIRE(back.size() == 1);
        REQUIRE(back[0].values.size() == n);
        const float v = back[0].values[0];
        CHECK((v == 2.0f || v == 3.0f));  // at least one save completed before the kill
        CHECK(std::all_of(back[0].values.begin(), back[0].values.end(), [&](float x) { return x == v; }));
        seen.insert(v);
    }
    INFO("contents seen after the kills: " << seen.size());
    CHECK(seen.size() == 2);  // killed after one save and after two: both contents
    std::size_t files = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.path())) ++files;
    CHECK(files <= 1 + 6);
}
