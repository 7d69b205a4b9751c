// lowbit/nn/fashion_mnist.hpp: the Fashion-MNIST data set (Xiao et al. 2017) as lowbit's examples
// train on it: the IDX file reader, the loader of the Debian package's four files, mini-batch
// selection and a seeded shuffle that is the same on every platform.
//
//   auto data = lowbit::nn::load_fashion_mnist();        // /usr/share/datasets/fashion-mnist
//   auto order = lowbit::nn::shuffled_indices(data.train.size(), /*seed*/ epoch);
//   auto batch = lowbit::nn::select(data.train, std::span(order).subspan(0, 64));
//   batch.images;   // 64 x 784 floats, row i = image i, pixel/255 in [0, 1], row-major
//   batch.labels;   // 64 class numbers; fashion_mnist_classes[label] is the name
//
// The IDX format (http://yann.lecun.com/exdb/mnist/), all integers big-endian u32:
//   magic = 0x00 0x00 <type> <number of dimensions>; here type 0x08 (unsigned byte), so
//           2051 = 0x00000803 for images (n x rows x cols), 2049 = 0x00000801 for labels (n);
//   one u32 per dimension; then prod(dimensions) bytes, row-major, and nothing after them.
// Files are read with zlib's gzopen/gzread, which read a gzip file and a plain file alike.
//
// Decisions:
//  * read_idx is a reader of IDX image/label pairs, not of Fashion-MNIST only: it accepts every
//    label 0..255 and any positive image size. load_fashion_mnist adds what the data set
//    promises: labels 0..9 and 28 x 28 images. (Counts are not checked, so a directory with a
//    subset in the same format loads too.)
//  * A missing file or directory gets an error from load_fashion_mnist that names the path and
//    the Debian package (`apt-get install dataset-fashion-mnist`), because that is the usual fix;
//    read_idx, given explicit paths, only names the path.
//  * load_fashion_mnist reads <dir>/<name>.gz, or <dir>/<name> when only the gunzipped file is
//    there (e.g. downloaded and unpacked by hand).
//  * Pixels are float(k) / 255.0f: the correctly rounded float of k/255 (one IEEE division of
//    exact operands), so 0 and 255 map to exactly 0 and 1.
//  * The whole decompressed file is read before the header is trusted: a header announcing
//    absurd sizes is then caught by comparing with the bytes that are really there, never by
//    allocating what it announces. And only the bytes the header announces are kept: the rest
//    are counted, not stored, so a small gzip file that inflates to gigabytes (a "gzip bomb",
//    ratios reach 1000:1) costs time, never memory beyond the data its header describes. (zlib
//    ignores bytes after the end of a complete gzip stream; bytes after the IDX data inside the
//    stream are reported as trailing garbage.)
//  * shuffled_indices must give the same order with every compiler and standard library, and
//    std::shuffle / std::uniform_int_distribution do not (their algorithms are unspecified). So it
//    is spelled out here, small enough to re-implement anywhere (tests/nn/fashion_mnist_test.cpp
//    has a short Python version):
//      splitmix64 (Steele, Lea, Flood 2014): state += 0x9E3779B97F4A7C15; z = state;
//                 z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
//                 return z ^ (z >> 31);                  (all mod 2^64; the initial state is seed)
//      draw(bound), uniform on [0, bound): threshold = 2^64 mod bound; repeat r = splitmix64()
//                 until r >= threshold; return r mod bound. (The accepted r are 2^64 - threshold
//                 values, a multiple of bound, so every residue is equally likely.)
//      Fisher-Yates: a = [0, 1, ..., n-1]; for i = n-1 down to 1: swap(a[i], a[draw(i + 1)]).
//
// Errors: a missing, unreadable or malformed file throws std::runtime_error naming the file and
// the problem (bad magic number, wrong number of dimensions, truncated data, trailing garbage,
// image and label counts that differ, a corrupt or truncated gzip stream; load_fashion_mnist: a
// label above 9 or an image size other than 28 x 28). select with an index out of range, or a set
// whose image and label counts differ, throws std::invalid_argument naming the index.
#pragma once

#include <lowbit/nn/definitions.hpp>

#include <Eigen/Core>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace lowbit::nn {

inline constexpr const char* fashion_mnist_default_dir = "/usr/share/datasets/fashion-mnist";

// The class names in label order (the data set's README).
inline constexpr std::array<const char*, 10> fashion_mnist_classes = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

// n images of rows x cols pixels, one image per row of `images` (pixels row-major within it), and
// their labels.
struct labeled_images {
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> images;  // n x (rows*cols), in [0, 1]
    std::vector<std::uint8_t> labels;                                              // n
    int rows = 0, cols = 0;
    std::size_t size() const { return labels.size(); }
};

struct fashion_mnist_data {
    labeled_images train, test;
};

namespace detail {

// (Appended piece by piece: g++ 12 warns -Wrestrict, wrongly, on "'" + string + "'"; GCC bug 105329.)
LOWBIT_NN_INLINE std::string quoted(const std::filesystem::path& p);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::string quoted(const std::filesystem::path& p) {
    std::string s(1, '\'');
    s += p.string();
    s += '\'';
    return s;
}
#endif

LOWBIT_NN_INLINE std::uint32_t big_endian_u32(const std::uint8_t* p);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::uint32_t big_endian_u32(const std::uint8_t* p) {
    return std::uint32_t(p[0]) << 24 | std::uint32_t(p[1]) << 16 | std::uint32_t(p[2]) << 8 | std::uint32_t(p[3]);
}
#endif

// The size of an IDX header: the magic number and one u32 per dimension.
constexpr std::size_t idx_header_bytes(std::size_t dimension_count) { return 4 + 4 * dimension_count; }

// The header of an IDX file of unsigned bytes with `dimension_count` dimensions: its dimensions
// and the number of data bytes they announce (empty when above 2^64).
struct idx_header {
    std::vector<std::uint32_t> dimensions;
    std::optional<std::uint64_t> data_bytes;
};

// The header at the start of `bytes`, when they hold one with the right magic number.
LOWBIT_NN_INLINE std::optional<idx_header> parse_idx_header(std::span<const std::uint8_t> bytes, std::size_t dimension_count);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::optional<idx_header> parse_idx_header(std::span<const std::uint8_t> bytes, std::size_t dimension_count) {
    idx_header h{{}, std::uint64_t(1)};
    if (bytes.size() < idx_header_bytes(dimension_count) || big_endian_u32(bytes.data()) != 0x0800u + dimension_count) return std::nullopt;
    for (std::size_t d = 0; d < dimension_count; ++d) h.dimensions.push_back(big_endian_u32(bytes.data() + 4 + 4 * d));
    // prod(dimensions) can exceed 64 bits (3 x 32): multiply with an overflow check.
    if (std::find(h.dimensions.begin(), h.dimensions.end(), 0u) != h.dimensions.end()) h.data_bytes = 0;
    else
        for (const std::uint32_t d : h.dimensions) {
            if (*h.data_bytes > std::numeric_limits<std::uint64_t>::max() / d) {
                h.data_bytes.reset();
                break;
            }
            *h.data_bytes *= d;
        }
    return h;
}
#endif

// A file's decompressed content: its first bytes (as many as an IDX header announces, see
// read_idx_file) and its whole size.
struct file_content {
    std::vector<std::uint8_t> bytes;
    std::uint64_t size = 0;
};

// The decompressed content of a gzip IDX file, or the content of a plain one, keeping the header
// and the data it announces (only the header, if it is not valid: idx_dimensions then says what is
// wrong from it) and counting the bytes after them.
LOWBIT_NN_INLINE file_content read_idx_file(const std::filesystem::path& file, std::size_t dimension_count, const char* function);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE file_content read_idx_file(const std::filesystem::path& file, std::size_t dimension_count, const char* function) {
    const std::string where = std::string("lowbit::nn::") + function + ": file " + quoted(file);
    std::error_code ec;
    const auto status = std::filesystem::status(file, ec);
    if (!std::filesystem::exists(status)) throw std::runtime_error(where + " does not exist");
    if (!std::filesystem::is_regular_file(status)) throw std::runtime_error(where + " is not a regular file");

    errno = 0;
    gzFile in = gzopen(file.c_str(), "rb");
    if (in == nullptr) {
        const int error = errno;
        throw std::runtime_error(where + " cannot be opened" +
                                 (error != 0 ? ": " + std::generic_category().message(error) : std::string()));
    }
    // Closes the file on every path out; the normal path closes it itself to see gzclose's verdict.
    struct closer {
        gzFile& file;
        ~closer() {
            if (file != nullptr) gzclose(file);
        }
    } close_on_exit{in};
    const auto gzip_problem = [&](const char* what) {
        int errnum = Z_OK;
        const char* message = gzerror(in, &errnum);
        return std::runtime_error(where + ": " + what + (message != nullptr && *message ? std::string(": ") + message : ""));
    };

    gzbuffer(in, 1u << 18);  // fewer system calls than the default 8 KiB
    file_content content;
    std::vector<std::uint8_t>& bytes = content.bytes;
    bytes.resize(std::size_t(1) << 20);
    std::size_t used = 0;
    // How many bytes to keep: all until a header has arrived, then the header and its data.
    const std::size_t header_bytes = idx_header_bytes(dimension_count);
    std::optional<std::uint64_t> keep;
    std::vector<std::uint8_t> discarded;  // where the bytes beyond `keep` go, to be counted
    for (;;) {
        if (!keep && used >= header_bytes) {
            // (A bad magic number or a size beyond 64 bits is refused whatever follows: keep the
            // header only, and count the rest for the message.)
            const auto header = parse_idx_header(std::span(bytes.data(), used), dimension_count);
            const auto data = header ? header->data_bytes : std::nullopt;
            keep = header_bytes + (data && *data <= std::numeric_limits<std::uint64_t>::max() - header_bytes ? *data : 0);
        }
        std::uint8_t* target;
        std::size_t room;
        const bool counting_only = keep && used >= *keep;
        if (counting_only) {
            discarded.resize(std::size_t(1) << 18);
            target = discarded.data(), room = discarded.size();
        } else {
            if (used == bytes.size()) bytes.resize(std::size_t(std::min<std::uint64_t>(bytes.size() * 2, keep.value_or(SIZE_MAX))));
            room = bytes.size() - used;
            if (keep) room = std::size_t(std::min<std::uint64_t>(room, *keep - used));
            target = bytes.data() + used;
        }
        // gzread takes and returns int, so read at most INT_MAX bytes per call.
        const int got = gzread(in, target, unsigned(std::min<std::size_t>(room, INT_MAX)));
        if (got < 0) throw gzip_problem("corrupt gzip stream");
        if (got == 0) break;
        if (!counting_only) used += std::size_t(got);
        content.size += std::uint64_t(got);
    }
    // A gzip stream cut short is not an error to gzread (it returns what it could decompress and
    // then 0, like a clean end of file); zlib only records it, as Z_BUF_ERROR.
    int errnum = Z_OK;
    gzerror(in, &errnum);
    if (errnum != Z_OK) throw gzip_problem("truncated or corrupt gzip stream");
    const int closed = gzclose(in);
    in = nullptr;
    if (closed != Z_OK) throw std::runtime_error(where + ": truncated or corrupt gzip stream (gzclose: " +
                                                 std::to_string(closed) + ")");
    bytes.resize(used);
    return content;
}
#endif

// The dimensions of an IDX file of unsigned bytes with `dimension_count` dimensions, after
// checking the magic number and that exactly prod(dimensions) bytes follow the header.
LOWBIT_NN_INLINE std::vector<std::uint32_t> idx_dimensions(const file_content& content, std::size_t dimension_count,
                                                 const std::filesystem::path& file, const char* kind,
                                                 const char* function);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::vector<std::uint32_t> idx_dimensions(const file_content& content, std::size_t dimension_count, const std::filesystem::path& file, const char* kind, const char* function) {
    const std::span<const std::uint8_t> bytes = content.bytes;
    const std::string where = std::string("lowbit::nn::") + function + ": " + kind + " file " + quoted(file);
    const std::uint32_t expected_magic = 0x0800u + std::uint32_t(dimension_count);
    if (bytes.size() < 4)
        throw std::runtime_error(where + " is truncated: " + std::to_string(bytes.size()) +
                                 " bytes, too few for the 4-byte IDX magic number");
    const std::uint32_t magic = big_endian_u32(bytes.data());
    if ((magic >> 8) != 0x08u) {
        char hex[16];
        std::snprintf(hex, sizeof hex, "0x%08X", unsigned(magic));
        throw std::runtime_error(where + " has a bad magic number " + std::to_string(magic) + " (" + hex +
                                 "); an IDX " + kind + " file of unsigned bytes starts with " +
                                 std::to_string(expected_magic));
    }
    if ((magic & 0xFFu) != dimension_count)
        throw std::runtime_error(where + " has the wrong number of dimensions: its magic number " +
                                 std::to_string(magic) + " announces " + std::to_string(magic & 0xFFu) + ", an " +
                                 kind + " file has " + std::to_string(dimension_count) + " (magic number " +
                                 std::to_string(expected_magic) + ")");
    const std::size_t header_bytes = idx_header_bytes(dimension_count);
    const auto header = parse_idx_header(bytes, dimension_count);
    if (!header)
        throw std::runtime_error(where + " is truncated: " + std::to_string(bytes.size()) + " bytes, too few for its " +
                                 std::to_string(header_bytes) + "-byte header");
    std::string shape;
    for (std::size_t d = 0; d < dimension_count; ++d) {
        if (d != 0) shape += " x ";
        shape += std::to_string(header->dimensions[d]);
    }
    // A product beyond 64 bits is the truncation it must be.
    const std::uint64_t present = content.size - header_bytes;
    const bool beyond_64_bits = !header->data_bytes;
    const std::uint64_t announced = header->data_bytes.value_or(0);
    if (beyond_64_bits || announced > present)
        throw std::runtime_error(where + " is truncated: its header announces " + shape + " = " +
                                 (beyond_64_bits ? std::string("more than 2^64") : std::to_string(announced)) +
                                 " bytes of data, but only " + std::to_string(present) + " follow");
    if (announced < present)
        throw std::runtime_error(where + " has trailing garbage: " + std::to_string(present - announced) +
                                 " bytes after the " + std::to_string(announced) + " bytes of data (" + shape +
                                 ") its header announces");
    return header->dimensions;
}
#endif

}  // namespace detail

// Reads an IDX image file (magic 2051: n x rows x cols unsigned bytes) and its label file
// (magic 2049: n unsigned bytes), gzip or plain. Labels may be any byte value (see above).
LOWBIT_NN_INLINE labeled_images read_idx(const std::filesystem::path& images, const std::filesystem::path& labels);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE labeled_images read_idx(const std::filesystem::path& images, const std::filesystem::path& labels) {
    const detail::file_content image_file = detail::read_idx_file(images, 3, "read_idx");
    const detail::file_content label_file = detail::read_idx_file(labels, 1, "read_idx");
    const auto image_shape = detail::idx_dimensions(image_file, 3, images, "image", "read_idx");
    const auto label_shape = detail::idx_dimensions(label_file, 1, labels, "label", "read_idx");
    const std::vector<std::uint8_t>& image_bytes = image_file.bytes;
    const std::vector<std::uint8_t>& label_bytes = label_file.bytes;
    const std::string where = "lowbit::nn::read_idx: image file " + detail::quoted(images);
    if (image_shape[0] != label_shape[0])
        throw std::runtime_error(where + " holds " + std::to_string(image_shape[0]) + " images, but label file " +
                                 detail::quoted(labels) + " holds " + std::to_string(label_shape[0]) + " labels");
    // Both dimensions must be positive (a 0-pixel image is no image) and an image must fit an int
    // row length; the data really is there (idx_dimensions), so only a 0-image file can claim more.
    const std::uint64_t rows = image_shape[1], cols = image_shape[2];
    if (rows == 0 || cols == 0 || rows * cols > std::uint64_t(INT_MAX))
        throw std::runtime_error(where + " announces images of " + std::to_string(rows) + " x " +
                                 std::to_string(cols) + " pixels; expected a positive size below 2^31 pixels");

    labeled_images set;
    set.rows = int(rows);
    set.cols = int(cols);
    const auto n = Eigen::Index(image_shape[0]);
    const auto pixels = Eigen::Index(rows * cols);
    set.images.resize(n, pixels);
    const std::uint8_t* source = image_bytes.data() + 16;
    float* target = set.images.data();
    for (Eigen::Index i = 0; i < n * pixels; ++i) target[i] = float(source[i]) / 255.0f;
    set.labels.assign(label_bytes.begin() + 8, label_bytes.end());
    return set;
}
#endif

// Loads the training set (train-*) and the test set (t10k-*) from `dir`.
LOWBIT_NN_INLINE fashion_mnist_data load_fashion_mnist(const std::filesystem::path& dir = fashion_mnist_default_dir);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE fashion_mnist_data load_fashion_mnist(const std::filesystem::path& dir) {
    const std::string install_hint =
        "; Fashion-MNIST comes with the Debian package dataset-fashion-mnist (apt-get install "
        "dataset-fashion-mnist), which puts it in " +
        std::string(fashion_mnist_default_dir);
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        throw std::runtime_error("lowbit::nn::load_fashion_mnist: directory " + detail::quoted(dir) +
                                 (std::filesystem::exists(dir, ec) ? " is not a directory" : " does not exist") +
                                 install_hint);
    const auto file = [&](const char* name) {
        const std::filesystem::path gzipped = dir / (std::string(name) + ".gz"), plain = dir / name;
        if (std::filesystem::exists(gzipped, ec)) return gzipped;
        if (std::filesystem::exists(plain, ec)) return plain;
        throw std::runtime_error("lowbit::nn::load_fashion_mnist: file " + detail::quoted(gzipped) +
                                 " does not exist" + install_hint);
    };
    const auto load = [&](const char* images_name, const char* labels_name) {
        const auto images = file(images_name), labels = file(labels_name);
        labeled_images set = read_idx(images, labels);
        if (set.rows != 28 || set.cols != 28)
            throw std::runtime_error("lowbit::nn::load_fashion_mnist: image file " + detail::quoted(images) +
                                     " holds images of " + std::to_string(set.rows) + " x " +
                                     std::to_string(set.cols) + " pixels; Fashion-MNIST images are 28 x 28");
        for (std::size_t i = 0; i < set.labels.size(); ++i)
            if (set.labels[i] >= fashion_mnist_classes.size())
                throw std::runtime_error("lowbit::nn::load_fashion_mnist: label file " + detail::quoted(labels) +
                                         ": label " + std::to_string(set.labels[i]) + " of image " +
                                         std::to_string(i) + " is not a Fashion-MNIST class (0..9)");
        return set;
    };
    fashion_mnist_data data;
    data.train = load("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
    data.test = load("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");
    return data;
}
#endif

// The images of `indices` (and their labels), in that order: one mini-batch. Indices may repeat.
LOWBIT_NN_INLINE labeled_images select(const labeled_images& set, std::span<const std::size_t> indices);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE labeled_images select(const labeled_images& set, std::span<const std::size_t> indices) {
    if (std::size_t(set.images.rows()) != set.labels.size())
        throw std::invalid_argument("lowbit::nn::select: set has " + std::to_string(set.images.rows()) +
                                    " images but " + std::to_string(set.labels.size()) + " labels");
    for (std::size_t k = 0; k < indices.size(); ++k)
        if (indices[k] >= set.size())
            throw std::invalid_argument("lowbit::nn::select: indices[" + std::to_string(k) + "] = " +
                                        std::to_string(indices[k]) + " is out of range for a set of " +
                                        std::to_string(set.size()) + " images");
    labeled_images batch;
    batch.rows = set.rows;
    batch.cols = set.cols;
    batch.images.resize(Eigen::Index(indices.size()), set.images.cols());
    batch.labels.resize(indices.size());
    for (std::size_t k = 0; k < indices.size(); ++k) {
        batch.images.row(Eigen::Index(k)) = set.images.row(Eigen::Index(indices[k]));
        batch.labels[k] = set.labels[indices[k]];
    }
    return batch;
}
#endif

namespace detail {

// splitmix64 and its unbiased bounded draw, exactly as documented at the top of this file.
struct splitmix64 {
    std::uint64_t state;

    std::uint64_t operator()();

    // Uniform on [0, bound), bound > 0. (0 - bound) % bound is 2^64 mod bound in unsigned
    // arithmetic; rejecting the r below it leaves a multiple of bound values.
    std::uint64_t below(std::uint64_t bound);
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::uint64_t splitmix64::operator()() {
    state += 0x9E3779B97F4A7C15u;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

LOWBIT_NN_INLINE std::uint64_t splitmix64::below(std::uint64_t bound) {
    const std::uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        const std::uint64_t r = (*this)();
        if (r >= threshold) return r % bound;
    }
}
#endif

}  // namespace detail

// 0..n-1 in a random order determined by `seed` alone, identical on every platform and compiler
// (Fisher-Yates driven by splitmix64; see the top of this file).
LOWBIT_NN_INLINE std::vector<std::size_t> shuffled_indices(std::size_t n, std::uint64_t seed);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::vector<std::size_t> shuffled_indices(std::size_t n, std::uint64_t seed) {
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t(0));
    detail::splitmix64 random{seed};
    for (std::size_t i = n; i-- > 1;) std::swap(order[i], order[std::size_t(random.below(std::uint64_t(i) + 1))]);
    return order;
}
#endif

}  // namespace lowbit::nn
