// Fuzz target: the IDX reader of Fashion-MNIST (read_idx in lowbit/nn/fashion_mnist.hpp), on an
// image file and a label file, each plain or gzip.
//
// Input: an options byte (bit 0: gzip the image file here, bit 1: gzip the label file here, so
// that the fuzzer's IDX bytes reach the reader through zlib as well), a little-endian u16 length
// of the image file's bytes, then those bytes, then the label file's bytes. The two files are
// written to disk (/dev/shm where there is one): read_idx reads paths, through zlib's gzread,
// and that is the surface.
// Properties, from the IDX format and the errors documented at the top of the header:
//   - read_idx throws std::runtime_error whose message starts with "lowbit::nn::read_idx: ", or
//     returns a set; nothing else escapes, and nothing is allocated beyond what the data holds;
//   - where both files' IDX bytes are known (a plain file is read as it is, by zlib too, unless
//     it starts with the gzip magic 1F 8B; a file gzipped here decompresses to the bytes given),
//     the verdict and the content are the format's: accepted exactly when the image file is
//     magic 2051, n, rows, cols and n rows cols bytes, the label file magic 2049, n and n bytes,
//     with rows, cols > 0 and rows cols < 2^31; then pixel k of image i is byte/255 rounded to
//     float, and the labels are the label bytes.
#include "fuzz_input.hpp"

#include <lowbit/nn/fashion_mnist.hpp>

#include <zlib.h>

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using lowbit_fuzz::expect;
using lowbit_fuzz::finding;
using bytes = std::vector<std::uint8_t>;

// The bytes gzip-compressed (zlib's deflate with a gzip wrapper).
bytes gzipped(std::span<const std::uint8_t> data) {
    z_stream z{};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) finding("deflateInit2 failed");
    bytes out(deflateBound(&z, uLong(data.size())) + 32);
    z.next_in = const_cast<Bytef*>(data.data());
    z.avail_in = uInt(data.size());
    z.next_out = out.data();
    z.avail_out = uInt(out.size());
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) finding("deflate did not finish");
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

std::uint32_t big_endian(std::span<const std::uint8_t> b, std::size_t at) {
    return std::uint32_t(b[at]) << 24 | std::uint32_t(b[at + 1]) << 16 | std::uint32_t(b[at + 2]) << 8 | b[at + 3];
}

// The dimensions of an IDX file of unsigned bytes with `rank` dimensions, when it is one.
std::optional<std::vector<std::uint32_t>> idx_dimensions(std::span<const std::uint8_t> b, std::size_t rank) {
    const std::size_t header = 4 + 4 * rank;
    if (b.size() < header || big_endian(b, 0) != 0x800u + rank) return std::nullopt;
    std::vector<std::uint32_t> dims;
    std::uint64_t count = 1;
    for (std::size_t d = 0; d < rank; ++d) {
        dims.push_back(big_endian(b, 4 + 4 * d));
        if (__builtin_mul_overflow(count, std::uint64_t(dims.back()), &count)) return std::nullopt;
    }
    if (count != b.size() - header) return std::nullopt;
    return dims;
}

// The set the format defines for these files, or nothing when they are not a valid pair.
std::optional<lowbit::nn::labeled_images> expected_set(std::span<const std::uint8_t> images,
                                                       std::span<const std::uint8_t> labels) {
    const auto shape = idx_dimensions(images, 3), count = idx_dimensions(labels, 1);
    if (!shape || !count || (*shape)[0] != (*count)[0]) return std::nullopt;
    const std::uint64_t rows = (*shape)[1], cols = (*shape)[2];
    if (rows == 0 || cols == 0 || rows * cols > INT_MAX) return std::nullopt;
    lowbit::nn::labeled_images set;
    set.rows = int(rows);
    set.cols = int(cols);
    set.images.resize(Eigen::Index((*shape)[0]), Eigen::Index(rows * cols));
    for (Eigen::Index i = 0; i < set.images.size(); ++i) set.images.data()[i] = float(images[16 + std::size_t(i)]) / 255.0f;
    set.labels.assign(labels.begin() + 8, labels.end());
    return set;
}

bool is_gzip(std::span<const std::uint8_t> file) { return file.size() >= 2 && file[0] == 0x1F && file[1] == 0x8B; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    const std::uint8_t options = data[0];
    const std::span<const std::uint8_t> rest(data + 3, size - 3);
    const std::size_t image_length = std::min<std::size_t>(data[1] | std::size_t(data[2]) << 8, rest.size());
    const std::span<const std::uint8_t> image_idx = rest.first(image_length), label_idx = rest.subspan(image_length);
    const bytes image_file = (options & 1) != 0 ? gzipped(image_idx) : bytes(image_idx.begin(), image_idx.end());
    const bytes label_file = (options & 2) != 0 ? gzipped(label_idx) : bytes(label_idx.begin(), label_idx.end());
    const lowbit_fuzz::scratch_file images("idx-images", image_file), labels("idx-labels", label_file);

    std::optional<lowbit::nn::labeled_images> set;
    try {
        set = lowbit::nn::read_idx(images.path, labels.path);
    } catch (const std::runtime_error& e) {
        expect(std::string_view(e.what()).starts_with("lowbit::nn::read_idx: "),
               [&] { return std::string("a rejection that does not name read_idx: ") + e.what(); });
    } catch (const std::exception& e) {
        finding(std::string("read_idx threw something other than std::runtime_error: ") + e.what());
    }
    if (set) {
        expect(set->images.rows() == Eigen::Index(set->labels.size()) &&
                   set->images.cols() == Eigen::Index(set->rows) * set->cols,
               [] { return std::string("read_idx returned a set whose sizes do not agree"); });
    }

    // The IDX bytes are known unless a file is the fuzzer's own gzip stream.
    if (((options & 1) == 0 && is_gzip(image_file)) || ((options & 2) == 0 && is_gzip(label_file))) return 0;
    const auto expected = expected_set(image_idx, label_idx);
    expect(set.has_value() == expected.has_value(), [&] {
        return std::string("read_idx ") + (set ? "accepted" : "rejected") + " files that the IDX format says are " +
               (expected ? "valid" : "invalid");
    });
    if (set) {
        expect(set->rows == expected->rows && set->cols == expected->cols && set->labels == expected->labels &&
                   set->images.rows() == expected->images.rows() && set->images.cols() == expected->images.cols() &&
                   // (element by element: Eigen's == walks every column of a 0-row matrix)
                   std::equal(set->images.data(), set->images.data() + set->images.size(), expected->images.data()),
               [] { return std::string("read_idx read other images or labels than the files hold"); });
    }
    return 0;
}
