// lowbit/nn/weights_file.hpp: a network's named float tensors in one file, written atomically,
// read back bit for bit, loaded into the network only when everything matches.
//
//   lowbit::nn::save_weights("cnn.bin", std::vector<lowbit::nn::tensor_view>{
//       {"conv1.weight", {32, 1, 3, 3}, conv1_w}, {"conv1.bias", {32}, conv1_b}});
//   lowbit::nn::load_weights("cnn.bin", std::vector<lowbit::nn::tensor_ref>{
//       {"conv1.weight", {32, 1, 3, 3}, conv1_w}, {"conv1.bias", {32}, conv1_b}});
//   auto all = lowbit::nn::read_weights("cnn.bin");      // every tensor, with its own storage
//   auto same = lowbit::nn::read_weights(bytes, "cnn.bin");  // from a file's bytes in memory
//   auto bytes = lowbit::nn::weights_file_bytes(views);  // what save_weights would write
//
// The format, byte for byte. Integers and floats are little-endian whatever the host; floats are
// IEEE 754 binary32 bit patterns, copied, never converted (NaN payloads, -0 and subnormals survive).
//
//   offset  size        field
//   0       8           magic: the ASCII bytes "LOWBITW1" (4C 4F 57 42 49 54 57 31)
//   8       4           u32 version = 1
//   12      4           u32 tensor count T
//   then T tensors, each:
//           4           u32 name length L (>= 1)
//           L           name: UTF-8 bytes, no terminator; names are unique within a file
//           4           u32 rank R (0 for a scalar)
//           8 R         R x i64 dimensions, each >= 0, outermost first
//           4 N         N = prod(dimensions) x float32 values, row-major (N = 1 when R = 0;
//                       N = 0 when a dimension is 0)
//   then    4           u32 CRC-32 of every byte before it (zlib's crc32, the CRC of gzip and PNG:
//                       polynomial 0x04C11DB7 bit-reflected, initial value and final xor 0xFFFFFFFF)
//   and nothing after it.
//
// Example, one tensor "b" of shape [2] holding 1.0f and -2.0f (45 bytes):
//   4C 4F 57 42 49 54 57 31 | 01 00 00 00 | 01 00 00 00 | 01 00 00 00 62 | 01 00 00 00 |
//   02 00 00 00 00 00 00 00 | 00 00 80 3F 00 00 00 C0 | C5 BB F4 80
// (the last 4 bytes: CRC-32 0x80F4BBC5 of the 41 bytes before them).
//
// Writing is atomic: the bytes go to a temporary file beside the destination
// (<path>.tmp.<pid>.<n>), which is fsync'ed, closed and then renamed over <path>. A reader therefore
// sees either the old file or the complete new one, and a crash or error at any point leaves the
// old file intact (on error the temporary is removed before the exception leaves save_weights).
// After the rename the directory is fsync'ed too, so that the rename itself survives a power cut;
// that last step is best effort: once the rename has happened the new file is in place, and an
// exception would wrongly tell the caller that the save failed. Consequences of the rename: the
// new file has the default permissions (0666 minus the umask), not those of the file it replaces,
// and a symbolic link at <path> is replaced by the file, not followed. The whole file is built in
// memory before it is written (one copy of the weights; the networks here are small).
//
// Names are written as the bytes the caller gives; UTF-8 is the convention, not checked (lowbit's
// layers use ASCII names such as "conv1.weight").
//
// Errors:
//  * std::invalid_argument: the tensors handed to save_weights or load_weights are inconsistent
//    by themselves (an empty or repeated name, a negative dimension, a shape whose product is not
//    the number of values); the message names the tensor and the field.
//  * std::runtime_error: everything whose cause is the file or the file system, the message
//    starting "weights file '<path>'": not found, cannot be created/written/renamed, bad magic,
//    unsupported version, truncated (naming the tensor and the field being read), a size that
//    cannot fit in what remains of the file, a negative dimension, an empty or repeated name, CRC
//    mismatch, trailing bytes; and, in load_weights, a file whose tensors are not exactly the
//    network's (missing, unexpected, or a different name or shape at some position).
// Every length read from a file is compared with the bytes that remain before anything is
// allocated for it, so a corrupt length cannot make the reader allocate gigabytes.
#pragma once

#include <lowbit/nn/definitions.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// What only the definitions use (compiled once into lowbit::compiled, or inline header-only).
#if LOWBIT_NN_DEFINE
#include <zlib.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#endif

namespace lowbit::nn {

// What save_weights writes: a name, a shape and the values (row-major), borrowed from the caller.
struct tensor_view {
    std::string name;
    std::vector<std::int64_t> shape;
    std::span<const float> values;
};

// Where load_weights puts a tensor: the name and shape it must have in the file, and the storage.
struct tensor_ref {
    std::string name;
    std::vector<std::int64_t> shape;
    std::span<float> values;
};

// What read_weights returns: a tensor with its own storage.
struct named_tensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::vector<float> values;
};

namespace detail {

static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4,
              "the weights file stores IEEE 754 binary32; this platform's float is something else");

inline constexpr std::string_view weights_magic = "LOWBITW1";
inline constexpr std::uint32_t weights_version = 1;

// (Appended piece by piece: g++ 12 warns -Wrestrict, wrongly, on "'" + string + "'"; GCC bug 105329.)
LOWBIT_NN_INLINE std::string weights_quoted(std::string_view text);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::string weights_quoted(std::string_view text) {
    std::string s(1, '\'');
    s += text;
    s += '\'';
    return s;
}
#endif

LOWBIT_NN_INLINE std::string shape_string(std::span<const std::int64_t> shape);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::string shape_string(std::span<const std::int64_t> shape) {
    std::string s = "[";
    for (std::size_t d = 0; d < shape.size(); ++d) {
        if (d != 0) s += ", ";
        s += std::to_string(shape[d]);
    }
    return s + "]";
}
#endif

#if LOWBIT_NN_DEFINE
inline std::string errno_text(int error) { return std::generic_category().message(error); }
#endif

// prod(shape) when every dimension is >= 0 and the product is at most `limit`; otherwise false.
// (Comparing step by step, because the product of a corrupt shape can exceed 64 bits.)
LOWBIT_NN_INLINE bool element_count_within(std::span<const std::int64_t> shape, std::uint64_t limit, std::uint64_t& count);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE bool element_count_within(std::span<const std::int64_t> shape, std::uint64_t limit, std::uint64_t& count) {
    if (std::any_of(shape.begin(), shape.end(), [](std::int64_t d) { return d < 0; })) return false;
    if (std::find(shape.begin(), shape.end(), 0) != shape.end()) {
        count = 0;
        return true;
    }
    count = 1;
    for (const std::int64_t d : shape) {
        if (count > limit / std::uint64_t(d)) return false;
        count *= std::uint64_t(d);
    }
    return count <= limit;
}
#endif

#if LOWBIT_NN_DEFINE
// The checks that save_weights and load_weights make on the caller's tensors (tensor_view or
// tensor_ref): what the format can hold, and what a sensible network has.
template <class Tensor>
void check_tensor_list(std::span<const Tensor> tensors, const char* function) {
    const std::string where = std::string("lowbit::nn::") + function + ": ";
    constexpr std::uint64_t u32_max = std::numeric_limits<std::uint32_t>::max();
    if (tensors.size() > u32_max)
        throw std::invalid_argument(where + std::to_string(tensors.size()) + " tensors; the format holds at most " +
                                    std::to_string(u32_max));
    std::unordered_map<std::string_view, std::size_t> seen;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const Tensor& t = tensors[i];
        const std::string which = "tensor " + std::to_string(i) + " (" + weights_quoted(t.name) + ")";
        if (t.name.empty()) throw std::invalid_argument(where + "tensor " + std::to_string(i) + " has an empty name");
        if (t.name.size() > u32_max)
            throw std::invalid_argument(where + "tensor " + std::to_string(i) + " has a name of " +
                                        std::to_string(t.name.size()) + " bytes; at most " + std::to_string(u32_max));
        if (const auto [it, inserted] = seen.emplace(t.name, i); !inserted)
            throw std::invalid_argument(where + which + " repeats the name of tensor " + std::to_string(it->second));
        if (t.shape.size() > u32_max)
            throw std::invalid_argument(where + which + " has rank " + std::to_string(t.shape.size()) +
                                        "; at most " + std::to_string(u32_max));
        for (std::size_t d = 0; d < t.shape.size(); ++d)
            if (t.shape[d] < 0)
                throw std::invalid_argument(where + which + " has shape " + shape_string(t.shape) + ": dimension " +
                                            std::to_string(d) + " = " + std::to_string(t.shape[d]) +
                                            " is negative");
        std::uint64_t count = 0;
        const bool countable = element_count_within(t.shape, std::numeric_limits<std::uint64_t>::max(), count);
        if (!countable || count != t.values.size())
            throw std::invalid_argument(where + which + " has shape " + shape_string(t.shape) + " (" +
                                        (countable ? std::to_string(count) : std::string("more than 2^64")) +
                                        " values) but " + std::to_string(t.values.size()) + " values");
    }
}
#endif

// Appends little-endian encodings to a byte buffer.
LOWBIT_NN_INLINE void put_u32(std::vector<unsigned char>& out, std::uint32_t v);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void put_u32(std::vector<unsigned char>& out, std::uint32_t v) {
    for (int b = 0; b < 4; ++b) out.push_back(static_cast<unsigned char>(v >> (8 * b)));
}
#endif
LOWBIT_NN_INLINE void put_i64(std::vector<unsigned char>& out, std::int64_t v);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void put_i64(std::vector<unsigned char>& out, std::int64_t v) {
    const auto u = static_cast<std::uint64_t>(v);
    for (int b = 0; b < 8; ++b) out.push_back(static_cast<unsigned char>(u >> (8 * b)));
}
#endif
LOWBIT_NN_INLINE void put_floats(std::vector<unsigned char>& out, std::span<const float> values);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void put_floats(std::vector<unsigned char>& out, std::span<const float> values) {
    const std::size_t at = out.size();
    out.resize(at + 4 * values.size());
    if constexpr (std::endian::native == std::endian::little) {
        if (!values.empty()) std::memcpy(out.data() + at, values.data(), 4 * values.size());  // the same bytes
    } else {
        for (std::size_t i = 0; i < values.size(); ++i) {
            const auto bits = std::bit_cast<std::uint32_t>(values[i]);
            for (int b = 0; b < 4; ++b) out[at + 4 * i + std::size_t(b)] = static_cast<unsigned char>(bits >> (8 * b));
        }
    }
}
#endif

LOWBIT_NN_INLINE std::uint32_t crc32_of(std::span<const unsigned char> bytes);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::uint32_t crc32_of(std::span<const unsigned char> bytes) {
    return static_cast<std::uint32_t>(crc32_z(crc32_z(0, nullptr, 0), bytes.data(), bytes.size()));
}
#endif

// A file descriptor closed on scope exit (errors of that close are irrelevant on the error paths
// where it happens; the normal path closes explicitly and checks).
struct unique_fd {
    int fd = -1;
    ~unique_fd();
    int release() { return std::exchange(fd, -1); }
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE unique_fd::~unique_fd() {
    if (fd >= 0) ::close(fd);
}
#endif

// Writes all of `bytes` to fd, resuming after short writes and signals.
LOWBIT_NN_INLINE void write_all(int fd, std::span<const unsigned char> bytes, const std::string& where);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void write_all(int fd, std::span<const unsigned char> bytes, const std::string& where) {
    while (!bytes.empty()) {
        const ::ssize_t n = ::write(fd, bytes.data(), std::min<std::size_t>(bytes.size(), std::size_t(1) << 30));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error(where + ": write failed: " + errno_text(errno));
        }
        bytes = bytes.subspan(std::size_t(n));
    }
}
#endif

// The temporary's name: unique per process (pid) and per call within it (n), so that concurrent
// saves to one path, from threads or processes, never share a temporary.
LOWBIT_NN_INLINE std::filesystem::path temporary_for(const std::filesystem::path& path);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::filesystem::path temporary_for(const std::filesystem::path& path) {
    static std::atomic<unsigned long long> calls{0};
    return std::filesystem::path(path.string() + ".tmp." + std::to_string(::getpid()) + "." +
                                 std::to_string(calls.fetch_add(1)));
}
#endif

// Reads bytes front to back, every read checked against what remains.
class weights_reader {
public:
    weights_reader(std::span<const unsigned char> bytes, std::string where) : bytes_(bytes), where_(std::move(where)) {}

    std::size_t remaining() const { return bytes_.size() - pos_; }
    std::size_t position() const { return pos_; }

    // Throws "truncated" unless n more bytes are there; `what` names what is being read.
    void need(std::uint64_t n, const std::string& what) const;
    std::span<const unsigned char> take(std::size_t n, const std::string& what);
    std::uint32_t u32(const std::string& what);
    std::int64_t i64(const std::string& what);
    void floats(std::span<float> out, const std::string& what);

private:
    std::span<const unsigned char> bytes_;
    std::size_t pos_ = 0;
    std::string where_;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void weights_reader::need(std::uint64_t n, const std::string& what) const {
    if (n > remaining())
        throw std::runtime_error(where_ + " is truncated or corrupt: " + what + " needs " + std::to_string(n) +
                                 " bytes at offset " + std::to_string(pos_) + ", but only " +
                                 std::to_string(remaining()) + " remain (file size " +
                                 std::to_string(bytes_.size()) + ")");
}

LOWBIT_NN_INLINE std::span<const unsigned char> weights_reader::take(std::size_t n, const std::string& what) {
    need(n, what);
    const auto s = bytes_.subspan(pos_, n);
    pos_ += n;
    return s;
}

LOWBIT_NN_INLINE std::uint32_t weights_reader::u32(const std::string& what) {
    const auto s = take(4, what);
    std::uint32_t v = 0;
    for (int b = 0; b < 4; ++b) v |= std::uint32_t(s[std::size_t(b)]) << (8 * b);
    return v;
}

LOWBIT_NN_INLINE std::int64_t weights_reader::i64(const std::string& what) {
    const auto s = take(8, what);
    std::uint64_t v = 0;
    for (int b = 0; b < 8; ++b) v |= std::uint64_t(s[std::size_t(b)]) << (8 * b);
    return static_cast<std::int64_t>(v);
}

LOWBIT_NN_INLINE void weights_reader::floats(std::span<float> out, const std::string& what) {
    const auto s = take(4 * out.size(), what);
    if constexpr (std::endian::native == std::endian::little) {
        if (!out.empty()) std::memcpy(out.data(), s.data(), s.size());
    } else {
        for (std::size_t i = 0; i < out.size(); ++i) {
            std::uint32_t bits = 0;
            for (int b = 0; b < 4; ++b) bits |= std::uint32_t(s[4 * i + std::size_t(b)]) << (8 * b);
            out[i] = std::bit_cast<float>(bits);
        }
    }
}
#endif

LOWBIT_NN_INLINE std::vector<unsigned char> read_whole_file(const std::filesystem::path& path, const std::string& where);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::vector<unsigned char> read_whole_file(const std::filesystem::path& path, const std::string& where) {
    unique_fd file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (file.fd < 0) {
        const int error = errno;
        if (error == ENOENT) throw std::runtime_error(where + " not found");
        throw std::runtime_error(where + " cannot be opened: " + errno_text(error));
    }
    struct ::stat info {};
    if (::fstat(file.fd, &info) != 0) throw std::runtime_error(where + " cannot be examined: " + errno_text(errno));
    if (!S_ISREG(info.st_mode)) throw std::runtime_error(where + " is not a regular file");
    std::vector<unsigned char> bytes(static_cast<std::size_t>(info.st_size));
    std::size_t used = 0;
    while (used < bytes.size()) {
        const ::ssize_t n = ::read(file.fd, bytes.data() + used, bytes.size() - used);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error(where + " cannot be read: " + errno_text(errno));
        }
        if (n == 0) break;  // shrank while we read: parse what is there, which will say truncated
        used += std::size_t(n);
    }
    bytes.resize(used);
    return bytes;
}
#endif

// The bytes of a weights file holding `tensors`, checked by the caller (check_tensor_list).
LOWBIT_NN_INLINE std::vector<unsigned char> encode_weights(std::span<const tensor_view> tensors);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::vector<unsigned char> encode_weights(std::span<const tensor_view> tensors) {
    std::vector<unsigned char> bytes(weights_magic.begin(), weights_magic.end());
    put_u32(bytes, weights_version);
    put_u32(bytes, std::uint32_t(tensors.size()));
    for (const tensor_view& t : tensors) {
        put_u32(bytes, std::uint32_t(t.name.size()));
        bytes.insert(bytes.end(), t.name.begin(), t.name.end());
        put_u32(bytes, std::uint32_t(t.shape.size()));
        for (const std::int64_t d : t.shape) put_i64(bytes, d);
        put_floats(bytes, t.values);
    }
    put_u32(bytes, crc32_of(bytes));
    return bytes;
}
#endif

}  // namespace detail

// The bytes that save_weights writes for `tensors`, in memory. Throws std::invalid_argument for
// inconsistent tensors, as save_weights does.
LOWBIT_NN_INLINE std::vector<unsigned char> weights_file_bytes(std::span<const tensor_view> tensors);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::vector<unsigned char> weights_file_bytes(std::span<const tensor_view> tensors) {
    detail::check_tensor_list(tensors, "weights_file_bytes");
    return detail::encode_weights(tensors);
}
#endif

// Writes `tensors` to `path` in the format above, atomically (see above). Throws
// std::invalid_argument for inconsistent tensors (before touching the file system) and
// std::runtime_error when the file cannot be written; either way a file at `path` is unchanged.
LOWBIT_NN_INLINE void save_weights(const std::filesystem::path& path, std::span<const tensor_view> tensors);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void save_weights(const std::filesystem::path& path, std::span<const tensor_view> tensors) {
    detail::check_tensor_list(tensors, "save_weights");
    const std::vector<unsigned char> bytes = detail::encode_weights(tensors);

    const std::filesystem::path temporary = detail::temporary_for(path);
    const std::string where = "weights file " + detail::weights_quoted(path.string());
    const std::string temporary_where = where + " (temporary " + detail::weights_quoted(temporary.string()) + ")";
    detail::unique_fd file{::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666)};
    if (file.fd < 0)
        throw std::runtime_error(temporary_where + " cannot be created: " + detail::errno_text(errno));
    try {
        detail::write_all(file.fd, bytes, temporary_where);
        if (::fsync(file.fd) != 0) throw std::runtime_error(temporary_where + ": fsync failed: " + detail::errno_text(errno));
        // close can report a deferred write error (NFS, quotas): it must succeed before the rename.
        if (::close(file.release()) != 0)
            throw std::runtime_error(temporary_where + ": close failed: " + detail::errno_text(errno));
        if (::rename(temporary.c_str(), path.c_str()) != 0)
            throw std::runtime_error(temporary_where + " cannot be renamed to " + detail::weights_quoted(path.string()) +
                                     ": " + detail::errno_text(errno));
    } catch (...) {
        if (file.fd >= 0) ::close(file.release());
        ::unlink(temporary.c_str());
        throw;
    }
    const std::filesystem::path directory = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    detail::unique_fd dir{::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (dir.fd >= 0) ::fsync(dir.fd);  // best effort, see the top of this file
}
#endif

// Every tensor of a weights file whose bytes are in memory, in file order. Throws
// std::runtime_error naming the file (`name`, as read_weights(path) names the path) and the
// problem when the bytes are not a valid weights file.
LOWBIT_NN_INLINE std::vector<named_tensor> read_weights(std::span<const unsigned char> bytes, std::string_view name);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::vector<named_tensor> read_weights(std::span<const unsigned char> bytes, std::string_view name) {
    const std::string where = "weights file " + detail::weights_quoted(name);
    detail::weights_reader in(bytes, where);

    const auto magic = in.take(detail::weights_magic.size(), "the magic number \"LOWBITW1\"");
    if (!std::equal(magic.begin(), magic.end(), detail::weights_magic.begin())) {
        std::string hex;
        for (const unsigned char c : magic) {
            char two[4];
            std::snprintf(two, sizeof two, "%02X", unsigned(c));
            if (!hex.empty()) hex += ' ';
            hex += two;
        }
        throw std::runtime_error(where + " has a bad magic number (" + hex +
                                 "): not a lowbit weights file, which starts with \"LOWBITW1\"");
    }
    const std::uint32_t version = in.u32("the version");
    if (version != detail::weights_version)
        throw std::runtime_error(where + " has unsupported version " + std::to_string(version) +
                                 "; this lowbit reads version " + std::to_string(detail::weights_version));
    const std::uint32_t count = in.u32("the tensor count");

    std::vector<named_tensor> tensors;
    // A tensor takes at least 9 bytes (name length, a 1-byte name, rank): a corrupt count cannot
    // make this reserve more than the file could describe.
    tensors.reserve(std::min<std::size_t>(count, in.remaining() / 9));
    std::unordered_set<std::string_view> names;
    for (std::uint32_t i = 0; i < count; ++i) {
        const std::string which = "tensor " + std::to_string(i);
        named_tensor t;
        const std::uint32_t name_length = in.u32("the name length of " + which);
        if (name_length == 0) throw std::runtime_error(where + " is corrupt: " + which + " has an empty name");
        const auto name = in.take(name_length, "the " + std::to_string(name_length) + "-byte name of " + which);
        t.name.assign(name.begin(), name.end());
        const std::string named = which + " (" + detail::weights_quoted(t.name) + ")";
        const std::uint32_t rank = in.u32("the rank of " + named);
        in.need(8 * std::uint64_t(rank), "the " + std::to_string(rank) + " dimensions of " + named);
        t.shape.resize(rank);
        for (std::uint32_t d = 0; d < rank; ++d) t.shape[d] = in.i64("dimension " + std::to_string(d) + " of " + named);
        for (std::uint32_t d = 0; d < rank; ++d)
            if (t.shape[d] < 0)
                throw std::runtime_error(where + " is corrupt: " + named + " has shape " + detail::shape_string(t.shape) +
                                         " with a negative dimension");
        // Counted up to 2^62 values (2^64 bytes); more cannot be in any file.
        std::uint64_t values = 0;
        if (!detail::element_count_within(t.shape, std::numeric_limits<std::uint64_t>::max() / 4, values))
            throw std::runtime_error(where + " is truncated or corrupt: the values of " + named + ", shape " +
                                     detail::shape_string(t.shape) + ", need more than 2^64 bytes at offset " +
                                     std::to_string(in.position()) + ", but only " + std::to_string(in.remaining()) +
                                     " remain");
        const std::string what = "the " + std::to_string(values) + " values of " + named + ", shape " +
                                 detail::shape_string(t.shape) + ",";
        in.need(4 * values, what);  // before allocating them
        t.values.resize(std::size_t(values));
        in.floats(t.values, what);
        tensors.push_back(std::move(t));
    }
    // Duplicate names are checked after reading, when the strings no longer move.
    for (std::size_t i = 0; i < tensors.size(); ++i)
        if (!names.insert(tensors[i].name).second)
            throw std::runtime_error(where + " is corrupt: tensor " + std::to_string(i) + " repeats the name " +
                                     detail::weights_quoted(tensors[i].name) + " of an earlier tensor");
    const std::size_t crc_offset = in.position();
    const std::uint32_t stored = in.u32("the CRC-32 after the last tensor");
    if (in.remaining() != 0)
        throw std::runtime_error(where + " has " + std::to_string(in.remaining()) +
                                 " trailing bytes after the CRC-32 at offset " + std::to_string(crc_offset));
    const std::uint32_t computed = detail::crc32_of(std::span(bytes).first(crc_offset));
    if (stored != computed) {
        char text[96];
        std::snprintf(text, sizeof text, "stored 0x%08X, computed 0x%08X", unsigned(stored), unsigned(computed));
        throw std::runtime_error(where + " is corrupt: CRC-32 mismatch (" + text + " over the first " +
                                 std::to_string(crc_offset) + " bytes)");
    }
    return tensors;
}
#endif

// Every tensor of the file at `path`, in file order. Throws std::runtime_error naming the file and
// the problem when it is missing or not a valid weights file.
LOWBIT_NN_INLINE std::vector<named_tensor> read_weights(const std::filesystem::path& path);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::vector<named_tensor> read_weights(const std::filesystem::path& path) {
    const std::string where = "weights file " + detail::weights_quoted(path.string());
    return read_weights(detail::read_whole_file(path, where), path.string());
}
#endif

// Loads the file at `path` into `tensors`: the file must hold exactly these names, in this order,
// with these shapes. Otherwise std::runtime_error saying what differs, and nothing is written into
// the tensors: the whole file is read and checked before the first value is copied.
LOWBIT_NN_INLINE void load_weights(const std::filesystem::path& path, std::span<const tensor_ref> tensors);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void load_weights(const std::filesystem::path& path, std::span<const tensor_ref> tensors) {
    detail::check_tensor_list(tensors, "load_weights");
    std::vector<named_tensor> file = read_weights(path);
    const std::string where = "weights file " + detail::weights_quoted(path.string());

    // Which names are missing or unexpected says more than "tensor 3 differs" when layers were
    // added or removed, so that comes first.
    std::unordered_set<std::string_view> in_file, in_network;
    for (const named_tensor& t : file) in_file.insert(t.name);
    for (const tensor_ref& t : tensors) in_network.insert(t.name);
    std::string missing, unexpected;
    const auto add_to = [](std::string& list, std::string_view name) {
        if (!list.empty()) list += ", ";
        list += detail::weights_quoted(name);
    };
    for (const tensor_ref& t : tensors)
        if (!in_file.contains(t.name)) add_to(missing, t.name);
    for (const named_tensor& t : file)
        if (!in_network.contains(t.name)) add_to(unexpected, t.name);
    if (!missing.empty() || !unexpected.empty())
        throw std::runtime_error(where + " holds " + std::to_string(file.size()) + " tensors, the network expects " +
                                 std::to_string(tensors.size()) +
                                 (missing.empty() ? "" : "; missing from the file: " + missing) +
                                 (unexpected.empty() ? "" : "; in the file but not in the network: " + unexpected));

    // Same names (both lists are free of repeats, so the counts agree too): order and shapes.
    std::size_t first = file.size(), differing = 0;
    for (std::size_t i = 0; i < file.size(); ++i)
        if (file[i].name != tensors[i].name || file[i].shape != tensors[i].shape) {
            if (differing++ == 0) first = i;
        }
    if (differing != 0)
        throw std::runtime_error(where + ": tensor " + std::to_string(first) + " is " +
                                 detail::weights_quoted(file[first].name) + " with shape " +
                                 detail::shape_string(file[first].shape) + " but the network expects " +
                                 detail::weights_quoted(tensors[first].name) + " with shape " +
                                 detail::shape_string(tensors[first].shape) +
                                 (differing > 1 ? " (and " + std::to_string(differing - 1) + " more tensors differ)"
                                                : std::string()));

    for (std::size_t i = 0; i < file.size(); ++i)
        std::copy(file[i].values.begin(), file[i].values.end(), tensors[i].values.begin());
}
#endif

}  // namespace lowbit::nn
