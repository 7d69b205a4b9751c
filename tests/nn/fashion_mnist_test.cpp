// Tests of lowbit/nn/fashion_mnist.hpp.
//  * The real files of the Debian package against facts of the data set: 60000 / 10000 images of
//    28 x 28, 6000 / 1000 images per class, the first ten labels, and the sum of all pixel bytes
//    (read independently with Python's gzip module, see the numbers below); every pixel is the
//    correctly rounded float of k/255, k = 0..255, computed with MPFR.
//  * Small IDX files written here (plain, and gzip via zlib's gzwrite): exact contents, and every
//    error with its message.
//  * select() against direct indexing; shuffled_indices against a Python implementation of the
//    documented algorithm (the script is below; its numbers are hard-coded here).
#include <lowbit/nn/fashion_mnist.hpp>

#include "support/temporary_directory.hpp"

#include <catch2/catch.hpp>
#include <mpfr.h>
#include <sys/resource.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Catch::Contains;
using lowbit_test::temporary_directory;

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

// k/255 correctly rounded to float, k = 0..255, by MPFR (24-bit precision, round to nearest even).
const std::array<float, 256>& pixel_values() {
    static const std::array<float, 256> table = [] {
        std::array<float, 256> t{};
        mpfr_t x;
        mpfr_init2(x, 24);
        for (unsigned k = 0; k < 256; ++k) {
            mpfr_set_ui(x, k, MPFR_RNDN);
            mpfr_div_ui(x, x, 255, MPFR_RNDN);
            t[k] = mpfr_get_flt(x, MPFR_RNDN);
        }
        mpfr_clear(x);
        return t;
    }();
    return table;
}

// --- writing IDX files -------------------------------------------------------------------------

void append_big_endian(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(std::uint8_t(v >> shift));
}

std::vector<std::uint8_t> idx_images(std::uint32_t n, std::uint32_t rows, std::uint32_t cols,
                                     const std::vector<std::uint8_t>& pixels, std::uint32_t magic = 2051) {
    std::vector<std::uint8_t> bytes;
    append_big_endian(bytes, magic);
    append_big_endian(bytes, n);
    append_big_endian(bytes, rows);
    append_big_endian(bytes, cols);
    bytes.insert(bytes.end(), pixels.begin(), pixels.end());
    return bytes;
}

std::vector<std::uint8_t> idx_labels(const std::vector<std::uint8_t>& labels, std::uint32_t magic = 2049) {
    std::vector<std::uint8_t> bytes;
    append_big_endian(bytes, magic);
    append_big_endian(bytes, std::uint32_t(labels.size()));
    bytes.insert(bytes.end(), labels.begin(), labels.end());
    return bytes;
}

void write_plain(const std::filesystem::path& file, const std::vector<std::uint8_t>& bytes) {
    std::ofstream out(file, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    REQUIRE(out.good());
}

void write_gzip(const std::filesystem::path& file, const std::vector<std::uint8_t>& bytes) {
    gzFile out = gzopen(file.c_str(), "wb");
    REQUIRE(out != nullptr);
    REQUIRE(gzwrite(out, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
    REQUIRE(gzclose(out) == Z_OK);
}

// The process's peak resident set size so far, in KiB.
long peak_resident_kib() {
    rusage usage{};
    REQUIRE(getrusage(RUSAGE_SELF, &usage) == 0);
    return usage.ru_maxrss;
}

std::vector<std::uint8_t> file_bytes(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A valid pair: 3 images of 2 x 3 pixels, labels 7, 0, 9.
const std::vector<std::uint8_t> small_pixels = {0, 1, 2, 3, 4, 5, 254, 255, 128, 127, 10, 20, 30, 40, 50, 60, 70, 80};
const std::vector<std::uint8_t> small_labels = {7, 0, 9};

// Writes the four Fashion-MNIST files into dir, gzipped, each set holding `images` and `labels`.
void write_fashion_mnist_dir(const std::filesystem::path& dir, const std::vector<std::uint8_t>& images,
                             const std::vector<std::uint8_t>& labels) {
    for (const char* set : {"train", "t10k"}) {
        write_gzip(dir / (std::string(set) + "-images-idx3-ubyte.gz"), images);
        write_gzip(dir / (std::string(set) + "-labels-idx1-ubyte.gz"), labels);
    }
}

const lowbit::nn::fashion_mnist_data& real_data() {
    static const lowbit::nn::fashion_mnist_data data = lowbit::nn::load_fashion_mnist();
    return data;
}

}  // namespace

// --- the real data set --------------------------------------------------------------------------

TEST_CASE("fashion_mnist: the Debian package's files hold the known data set") {
    const auto& data = real_data();
    struct expectation {
        const lowbit::nn::labeled_images* set;
        std::size_t size;
        std::size_t per_class;
        std::array<int, 10> first_labels;
        std::uint64_t pixel_byte_sum;
    };
    // First labels and byte sums: Python's gzip module over the same files, e.g.
    //   im = gzip.open('train-images-idx3-ubyte.gz').read(); sum(im[16:])
    const std::array<expectation, 2> expected = {{
        {&data.train, 60000, 6000, {9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, 3431114169u},
        {&data.test, 10000, 1000, {9, 2, 1, 1, 6, 1, 4, 6, 5, 7}, 573469082u},
    }};
    for (const auto& e : expected) {
        const auto& set = *e.set;
        CAPTURE(e.size);
        REQUIRE(set.size() == e.size);
        REQUIRE(set.labels.size() == e.size);
        REQUIRE(set.images.rows() == Eigen::Index(e.size));
        REQUIRE(set.rows == 28);
        REQUIRE(set.cols == 28);
        REQUIRE(set.images.cols() == 28 * 28);
        std::array<std::size_t, 10> per_class{};
        for (const std::uint8_t label : set.labels) {
            REQUIRE(label <= 9);
            ++per_class[label];
        }
        for (std::size_t c = 0; c < 10; ++c) {
            CAPTURE(c);
            CHECK(per_class[c] == e.per_class);
        }
        for (std::size_t i = 0; i < 10; ++i) CHECK(int(set.labels[i]) == e.first_labels[i]);

        // Every pixel is exactly some k/255 (checked inside pixel_byte), and the k add up to the
        // byte sum of the file. Checked without REQUIRE per pixel (millions of assertions).
        std::uint64_t sum = 0;
        std::size_t off_grid = 0;
        const float* p = set.images.data();
        for (Eigen::Index i = 0; i < set.images.size(); ++i) {
            const long k = std::lround(double(p[i]) * 255);
            if (k < 0 || k > 255 || p[i] != pixel_values()[std::size_t(k)]) {
                ++off_grid;
                continue;
            }
            sum += std::uint64_t(k);
        }
        CHECK(off_grid == 0);
        CHECK(sum == e.pixel_byte_sum);
    }
}

TEST_CASE("fashion_mnist: class names") {
    CHECK(lowbit::nn::fashion_mnist_classes.size() == 10);
    CHECK(std::string(lowbit::nn::fashion_mnist_classes[0]) == "T-shirt/top");
    CHECK(std::string(lowbit::nn::fashion_mnist_classes[9]) == "Ankle boot");
    CHECK(std::string(lowbit::nn::fashion_mnist_default_dir) == "/usr/share/datasets/fashion-mnist");
}

// --- read_idx on small files ----------------------------------------------------------------------

TEST_CASE("fashion_mnist: read_idx reads plain and gzip files exactly") {
    temporary_directory dir;
    // Every byte value once, as 16 images of 4 x 4, labels 0..255 in steps of 17 (read_idx accepts
    // any byte as a label).
    std::vector<std::uint8_t> pixels(256);
    std::iota(pixels.begin(), pixels.end(), std::uint8_t(0));
    std::reverse(pixels.begin(), pixels.end());  // so that image 0 is not all small values
    std::vector<std::uint8_t> labels(16);
    for (std::size_t i = 0; i < 16; ++i) labels[i] = std::uint8_t(17 * i);

    const auto images_bytes = idx_images(16, 4, 4, pixels);
    const auto labels_bytes = idx_labels(labels);
    write_plain(dir / "images", images_bytes);
    write_plain(dir / "labels", labels_bytes);
    write_gzip(dir / "images.gz", images_bytes);
    write_gzip(dir / "labels.gz", labels_bytes);

    for (const auto& [images, labels_file] : {std::pair{"images", "labels"}, std::pair{"images.gz", "labels.gz"},
                                              std::pair{"images.gz", "labels"}}) {
        CAPTURE(images, labels_file);
        const auto set = lowbit::nn::read_idx(dir / images, dir / labels_file);
        REQUIRE(set.size() == 16);
        REQUIRE(set.rows == 4);
        REQUIRE(set.cols == 4);
        REQUIRE(set.images.rows() == 16);
        REQUIRE(set.images.cols() == 16);
        CHECK(set.labels == labels);
        for (Eigen::Index i = 0; i < 16; ++i)
            for (Eigen::Index j = 0; j < 16; ++j) {
                const std::uint8_t byte = pixels[std::size_t(i * 16 + j)];
                CHECK(set.images(i, j) == pixel_values()[byte]);
            }
    }
    CHECK(pixel_values()[0] == 0.0f);
    CHECK(pixel_values()[255] == 1.0f);
}

TEST_CASE("fashion_mnist: an IDX file with no images is valid") {
    temporary_directory dir;
    write_plain(dir / "images", idx_images(0, 28, 28, {}));
    write_plain(dir / "labels", idx_labels({}));
    const auto set = lowbit::nn::read_idx(dir / "images", dir / "labels");
    CHECK(set.size() == 0);
    CHECK(set.images.rows() == 0);
    CHECK(set.images.cols() == 784);
    CHECK(set.rows == 28);
}

TEST_CASE("fashion_mnist: malformed IDX files are rejected with the file and the problem") {
    temporary_directory dir;
    const auto images = dir / "images.gz", labels = dir / "labels.gz";
    const auto read = [&] { return lowbit::nn::read_idx(images, labels); };
    const auto error = [&] { return message_of<std::runtime_error>(read); };
    write_gzip(images, idx_images(3, 2, 3, small_pixels));
    write_gzip(labels, idx_labels(small_labels));
    REQUIRE(read().size() == 3);  // the valid pair the sections below break

    SECTION("missing file") {
        std::filesystem::remove(labels);
        const auto m = error();
        CHECK_THAT(m, Contains(labels.string()) && Contains("does not exist"));
    }
    SECTION("a directory instead of a file") {
        std::filesystem::remove(images);
        std::filesystem::create_directory(images);
        CHECK_THAT(error(), Contains(images.string()) && Contains("not a regular file"));
    }
    SECTION("bad magic number") {
        write_gzip(images, idx_images(3, 2, 3, small_pixels, 0x12345678));
        CHECK_THAT(error(), Contains(images.string()) && Contains("bad magic number 305419896 (0x12345678)") &&
                                Contains("2051"));
        write_gzip(images, idx_images(3, 2, 3, small_pixels));
        write_gzip(labels, idx_labels(small_labels, 0x00000D01));  // 0x0D: IDX's code for float
        CHECK_THAT(error(), Contains(labels.string()) && Contains("bad magic number 3329") && Contains("2049"));
    }
    SECTION("wrong number of dimensions") {
        // A label file where the image file belongs: magic 2049, one dimension.
        write_gzip(images, idx_labels(small_labels));
        CHECK_THAT(error(), Contains(images.string()) && Contains("wrong number of dimensions") &&
                                Contains("announces 1") && Contains("has 3"));
        write_gzip(images, idx_images(3, 2, 3, small_pixels));
        write_gzip(labels, idx_images(3, 2, 3, small_pixels));
        CHECK_THAT(error(), Contains(labels.string()) && Contains("wrong number of dimensions") &&
                                Contains("announces 3") && Contains("has 1"));
    }
    SECTION("truncated data") {
        std::vector<std::uint8_t> short_pixels(small_pixels.begin(), small_pixels.end() - 1);
        write_gzip(images, idx_images(3, 2, 3, short_pixels));
        CHECK_THAT(error(), Contains(images.string()) && Contains("truncated") && Contains("3 x 2 x 3 = 18") &&
                                Contains("only 17 follow"));
        write_gzip(images, idx_images(3, 2, 3, small_pixels));
        auto bytes = idx_labels(small_labels);  // the header says 3 labels, 2 follow
        bytes.pop_back();
        write_gzip(labels, bytes);
        CHECK_THAT(error(), Contains(labels.string()) && Contains("truncated") && Contains("only 2 follow"));
    }
    SECTION("truncated header") {
        auto bytes = idx_images(3, 2, 3, small_pixels);
        bytes.resize(10);
        write_gzip(images, bytes);
        CHECK_THAT(error(), Contains(images.string()) && Contains("truncated") && Contains("16-byte header"));
        bytes.resize(2);
        write_gzip(images, bytes);
        CHECK_THAT(error(), Contains(images.string()) && Contains("truncated") && Contains("magic number"));
    }
    SECTION("a header announcing an absurd size is truncation, not an allocation") {
        // 2^32-1 images of 2^32-1 x 2^32-1 pixels: 2^96 bytes, more than 64 bits can count.
        write_gzip(images, idx_images(0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, small_pixels));
        CHECK_THAT(error(), Contains(images.string()) && Contains("truncated") && Contains("more than 2^64") &&
                                Contains("only 18 follow"));
    }
    SECTION("trailing garbage") {
        auto pixels = small_pixels;
        pixels.push_back(99);
        pixels.push_back(98);
        write_gzip(images, idx_images(3, 2, 3, pixels));
        CHECK_THAT(error(), Contains(images.string()) && Contains("trailing garbage") && Contains("2 bytes after"));
    }
    SECTION("a gzip bomb: 128 MiB of trailing zeros in a small file cost no memory, and are counted") {
        // Written in pieces, so that the test itself never holds them; the old reader kept every
        // decompressed byte (its peak resident size grew by more than 128 MiB), this one keeps the
        // 34 bytes the header describes and counts the rest.
        constexpr std::size_t garbage = std::size_t(128) << 20;
        {
            gzFile out = gzopen(images.c_str(), "wb9");
            REQUIRE(out != nullptr);
            const auto valid = idx_images(3, 2, 3, small_pixels);
            REQUIRE(gzwrite(out, valid.data(), unsigned(valid.size())) == int(valid.size()));
            const std::vector<std::uint8_t> zeros(std::size_t(1) << 20);
            for (std::size_t written = 0; written < garbage; written += zeros.size())
                REQUIRE(gzwrite(out, zeros.data(), unsigned(zeros.size())) == int(zeros.size()));
            REQUIRE(gzclose(out) == Z_OK);
        }
        REQUIRE(std::filesystem::file_size(images) < garbage / 500);  // it is a bomb
        const long before = peak_resident_kib();
        CHECK_THAT(error(), Contains(images.string()) && Contains("trailing garbage") &&
                                Contains(std::to_string(garbage) + " bytes after the 18 bytes"));
        CHECK(peak_resident_kib() - before < 32 * 1024);
    }
    SECTION("image and label counts differ") {
        write_gzip(labels, idx_labels({7, 0}));
        CHECK_THAT(error(), Contains(images.string()) && Contains(labels.string()) && Contains("holds 3 images") &&
                                Contains("holds 2 labels"));
    }
    SECTION("empty images") {
        write_gzip(images, idx_images(3, 0, 3, {}));
        CHECK_THAT(error(), Contains(images.string()) && Contains("0 x 3 pixels"));
    }
    SECTION("a corrupt gzip stream") {
        // A larger file, so that the compressed stream has a body to damage.
        std::vector<std::uint8_t> pixels(3 * 64 * 64);
        for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = std::uint8_t((i * 2654435761u) >> 13);
        write_gzip(images, idx_images(3, 64, 64, pixels));
        REQUIRE(read().size() == 3);
        const auto good = file_bytes(images);
        REQUIRE(good.size() > 100);

        auto damaged = good;
        damaged[good.size() / 2] ^= 0x5A;  // inside the deflate data
        write_plain(images, damaged);
        CHECK_THAT(error(), Contains(images.string()) && Contains("gzip stream"));

        damaged = good;
        damaged[good.size() - 6] ^= 0x01;  // the CRC-32 of the gzip trailer
        write_plain(images, damaged);
        CHECK_THAT(error(), Contains(images.string()) && Contains("corrupt gzip stream") && Contains("data check"));

        // Without its 8-byte trailer (CRC-32, length) the stream is cut short although every
        // data byte is there; gzread alone would report a clean end of file.
        damaged.assign(good.begin(), good.end() - 8);
        write_plain(images, damaged);
        CHECK_THAT(error(), Contains(images.string()) && Contains("truncated or corrupt gzip stream"));

        damaged.assign(good.begin(), good.begin() + std::ptrdiff_t(good.size() / 2));
        write_plain(images, damaged);
        CHECK_THAT(error(), Contains(images.string()) && Contains("gzip stream"));
    }
}

// --- load_fashion_mnist on a directory written here -------------------------------------------

TEST_CASE("fashion_mnist: load_fashion_mnist names a missing directory or file and the Debian package") {
    temporary_directory dir;
    const auto missing_dir = dir / "no-such-dir";
    auto m = message_of<std::runtime_error>([&] { lowbit::nn::load_fashion_mnist(missing_dir); });
    CHECK_THAT(m, Contains(missing_dir.string()) && Contains("does not exist") &&
                      Contains("apt-get install dataset-fashion-mnist"));

    std::vector<std::uint8_t> pixels(2 * 28 * 28, 3);
    write_fashion_mnist_dir(dir.path(), idx_images(2, 28, 28, pixels), idx_labels({1, 2}));
    const auto data = lowbit::nn::load_fashion_mnist(dir.path());
    CHECK(data.train.size() == 2);
    CHECK(data.test.labels == std::vector<std::uint8_t>{1, 2});

    std::filesystem::remove(dir / "t10k-labels-idx1-ubyte.gz");
    m = message_of<std::runtime_error>([&] { lowbit::nn::load_fashion_mnist(dir.path()); });
    CHECK_THAT(m, Contains((dir / "t10k-labels-idx1-ubyte.gz").string()) && Contains("does not exist") &&
                      Contains("apt-get install dataset-fashion-mnist"));

    // A gunzipped file stands in for a missing .gz one.
    write_plain(dir / "t10k-labels-idx1-ubyte", idx_labels({4, 5}));
    CHECK(lowbit::nn::load_fashion_mnist(dir.path()).test.labels == std::vector<std::uint8_t>{4, 5});

    // A file where the directory should be.
    m = message_of<std::runtime_error>(
        [&] { lowbit::nn::load_fashion_mnist(dir / "train-images-idx3-ubyte.gz"); });
    CHECK_THAT(m, Contains("not a directory") && Contains("apt-get install dataset-fashion-mnist"));
}

TEST_CASE("fashion_mnist: load_fashion_mnist rejects labels above 9 and images other than 28 x 28") {
    temporary_directory dir;
    std::vector<std::uint8_t> pixels(3 * 28 * 28, 200);
    write_fashion_mnist_dir(dir.path(), idx_images(3, 28, 28, pixels), idx_labels({9, 10, 0}));
    // read_idx itself takes label 10 (it reads any IDX pair) ...
    CHECK(lowbit::nn::read_idx(dir / "train-images-idx3-ubyte.gz", dir / "train-labels-idx1-ubyte.gz").labels[1] ==
          10);
    // ... the Fashion-MNIST loader does not.
    auto m = message_of<std::runtime_error>([&] { lowbit::nn::load_fashion_mnist(dir.path()); });
    CHECK_THAT(m, Contains((dir / "train-labels-idx1-ubyte.gz").string()) && Contains("label 10 of image 1") &&
                      Contains("0..9"));

    write_fashion_mnist_dir(dir.path(), idx_images(3, 2, 3, small_pixels), idx_labels(small_labels));
    m = message_of<std::runtime_error>([&] { lowbit::nn::load_fashion_mnist(dir.path()); });
    CHECK_THAT(m, Contains((dir / "train-images-idx3-ubyte.gz").string()) && Contains("2 x 3 pixels") &&
                      Contains("28 x 28"));
}

// --- select -----------------------------------------------------------------------------------------

TEST_CASE("fashion_mnist: select picks the rows and labels of the indices, in their order") {
    temporary_directory dir;
    write_plain(dir / "images", idx_images(3, 2, 3, small_pixels));
    write_plain(dir / "labels", idx_labels(small_labels));
    const auto set = lowbit::nn::read_idx(dir / "images", dir / "labels");

    const std::vector<std::size_t> indices = {2, 0, 2, 1};
    const auto batch = lowbit::nn::select(set, indices);
    REQUIRE(batch.size() == 4);
    CHECK(batch.rows == 2);
    CHECK(batch.cols == 3);
    REQUIRE(batch.images.rows() == 4);
    REQUIRE(batch.images.cols() == 6);
    for (std::size_t k = 0; k < indices.size(); ++k) {
        CAPTURE(k);
        CHECK(batch.labels[k] == small_labels[indices[k]]);
        for (std::size_t j = 0; j < 6; ++j)
            CHECK(batch.images(Eigen::Index(k), Eigen::Index(j)) == pixel_values()[small_pixels[indices[k] * 6 + j]]);
    }

    const auto empty = lowbit::nn::select(set, {});
    CHECK(empty.size() == 0);
    CHECK(empty.images.rows() == 0);
    CHECK(empty.images.cols() == 6);

    // From the real data: a batch of the first 64 of a shuffle.
    const auto& train = real_data().train;
    const auto order = lowbit::nn::shuffled_indices(train.size(), 7);
    const auto real_batch = lowbit::nn::select(train, std::span(order).first(64));
    REQUIRE(real_batch.size() == 64);
    for (std::size_t k = 0; k < 64; ++k) {
        CHECK(real_batch.labels[k] == train.labels[order[k]]);
        CHECK((real_batch.images.row(Eigen::Index(k)).array() == train.images.row(Eigen::Index(order[k])).array())
                  .all());
    }
}

TEST_CASE("fashion_mnist: select rejects an index out of range and an inconsistent set") {
    temporary_directory dir;
    write_plain(dir / "images", idx_images(3, 2, 3, small_pixels));
    write_plain(dir / "labels", idx_labels(small_labels));
    auto set = lowbit::nn::read_idx(dir / "images", dir / "labels");
    const std::vector<std::size_t> indices = {0, 2, 3};
    CHECK_THAT(message_of<std::invalid_argument>([&] { lowbit::nn::select(set, indices); }),
               Contains("indices[2] = 3") && Contains("set of 3 images"));
    set.labels.pop_back();
    CHECK_THAT(message_of<std::invalid_argument>([&] { lowbit::nn::select(set, {}); }),
               Contains("3 images but 2 labels"));
}

// --- shuffled_indices -------------------------------------------------------------------------------
//
// Expected values: this Python script, written from the algorithm documented in the header (not
// from the C++), run with Python 3:
//
//   M = 2**64
//   def shuffled_indices(n, seed):
//       state = seed
//       def splitmix64():
//           nonlocal state
//           state = (state + 0x9E3779B97F4A7C15) % M
//           z = state
//           z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % M
//           z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % M
//           return z ^ (z >> 31)
//       def draw(bound):
//           threshold = M % bound
//           while True:
//               r = splitmix64()
//               if r >= threshold:
//                   return r % bound
//       a = list(range(n))
//       for i in range(n - 1, 0, -1):
//           j = draw(i + 1)
//           a[i], a[j] = a[j], a[i]
//       return a
//
// The script's splitmix64 from state 0 gives 0xE220A8397B1DCDAF, the published first output of
// splitmix64 seeded with 0 (Vigna's reference implementation), which checks the script itself.

TEST_CASE("fashion_mnist: shuffled_indices equals the documented algorithm (values from Python)") {
    using v = std::vector<std::size_t>;
    CHECK(lowbit::nn::shuffled_indices(10, 0) == v{6, 3, 2, 9, 8, 1, 4, 7, 0, 5});
    CHECK(lowbit::nn::shuffled_indices(10, 1) == v{4, 2, 8, 1, 9, 3, 0, 6, 7, 5});
    CHECK(lowbit::nn::shuffled_indices(10, 42) == v{0, 9, 5, 8, 6, 4, 7, 2, 1, 3});
    CHECK(lowbit::nn::shuffled_indices(1, 7) == v{0});
    CHECK(lowbit::nn::shuffled_indices(0, 7).empty());
    const auto big = lowbit::nn::shuffled_indices(60000, 2024);
    CHECK(v(big.begin(), big.begin() + 8) == v{45397, 24154, 47770, 32453, 28731, 50785, 51925, 49773});
    CHECK(v(big.end() - 4, big.end()) == v{21460, 907, 57184, 53461});
}

TEST_CASE("fashion_mnist: the unbiased draw rejects the low values (values from Python)") {
    // splitmix64 itself: the published first output for seed 0.
    lowbit::nn::detail::splitmix64 zero{0};
    CHECK(zero() == 0xE220A8397B1DCDAFu);
    // bound = 2^63 + 1: threshold 2^64 mod bound = 2^63 - 1, so about half of the draws are
    // rejected (the Python run above, from state 5, rejected 9 raw values for these 6).
    lowbit::nn::detail::splitmix64 random{5};
    const std::uint64_t bound = (std::uint64_t(1) << 63) + 1;
    const std::array<std::uint64_t, 6> expected = {4654242949169100535u, 8957066056171264800u,
                                                   204786321411665706u,  1908141438795372386u,
                                                   6903704994719435514u, 8387343232142502422u};
    for (const std::uint64_t e : expected) CHECK(random.below(bound) == e);
}

TEST_CASE("fashion_mnist: shuffled_indices is a permutation that depends on the seed") {
    for (const std::size_t n : {2u, 3u, 17u, 1000u}) {
        for (const std::uint64_t seed : {0ull, 1ull, 123456789ull, ~0ull}) {
            CAPTURE(n, seed);
            auto order = lowbit::nn::shuffled_indices(n, seed);
            CHECK(order == lowbit::nn::shuffled_indices(n, seed));  // a function of (n, seed)
            std::sort(order.begin(), order.end());
            std::vector<std::size_t> identity(n);
            std::iota(identity.begin(), identity.end(), std::size_t(0));
            CHECK(order == identity);
        }
    }
    CHECK(lowbit::nn::shuffled_indices(1000, 1) != lowbit::nn::shuffled_indices(1000, 2));
    // Every order is equally likely: over 24000 seeds each of the 24 orders of 4 elements comes up
    // about 1000 times. The band, +-4 sigma = +-4 sqrt(24000 (1/24)(23/24)) = +-124, is met by an
    // unbiased shuffle, while the classic biased one ("swap a[i] with any a[j]") makes some orders
    // 750 and others 1406 times on average (its 256 equally likely swap sequences over 24 orders).
    std::map<std::vector<std::size_t>, int> counts;
    for (std::uint64_t seed = 0; seed < 24000; ++seed) ++counts[lowbit::nn::shuffled_indices(4, seed)];
    CHECK(counts.size() == 24);
    for (const auto& [order, count] : counts) {
        CAPTURE(order);
        CHECK(std::abs(count - 1000) < 124);
    }
}
