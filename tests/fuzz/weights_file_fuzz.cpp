// Fuzz target: the weights file reader (lowbit/nn/weights_file.hpp).
//
// Input: one byte of options, then the file's bytes.
//   bit 0: first overwrite the file's last 4 bytes with the CRC-32 of the others, so that the
//          fuzzer gets past the checksum to files the reader accepts;
//   bit 1: also write the file to disk and read it by its path, and, when it is valid, load it
//          with load_weights (bits 2-3 choose the tensor list: the file's own, or one with the
//          last tensor dropped, the first renamed or the first reshaped).
// Properties, from the format and the errors documented at the top of the header:
//   - read_weights throws std::runtime_error whose message starts with "weights file '<name>'",
//     or returns the tensors (nothing else escapes; no allocation beyond what the bytes hold, which
//     libFuzzer's -malloc_limit_mb would report);
//   - the format has one encoding per content, so a file that reads is exactly the bytes that
//     weights_file_bytes writes for what was read (unique non-empty names, shapes that match the
//     values, the CRC);
//   - by path the same happens; load_weights of the file's own list copies every bit; of another
//     list it throws std::runtime_error and writes nothing.
#include "fuzz_input.hpp"

#include <lowbit/nn/weights_file.hpp>

#include <zlib.h>

#include <unistd.h>

#include <algorithm>
#include <bit>
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

using lowbit::nn::named_tensor;
using lowbit_fuzz::expect;
using lowbit_fuzz::finding;
using bytes = std::vector<unsigned char>;

// What a read gives, or nothing when it rejects the file as documented (std::runtime_error whose
// message starts with "weights file '<name>'").
template <class Read>
std::optional<std::vector<named_tensor>> read_or_reject(Read&& read, const std::string& name) {
    try {
        return read();
    } catch (const std::runtime_error& e) {
        const std::string prefix = "weights file '" + name + "'";
        expect(std::string_view(e.what()).starts_with(prefix), [&] {
            return "a rejection that does not start with \"" + prefix + "\": " + e.what();
        });
        return std::nullopt;
    } catch (const std::exception& e) {
        finding(std::string("read_weights threw something other than std::runtime_error: ") + e.what());
    }
}

std::vector<lowbit::nn::tensor_view> views_of(const std::vector<named_tensor>& tensors) {
    std::vector<lowbit::nn::tensor_view> views;
    for (const named_tensor& t : tensors) views.push_back({t.name, t.shape, t.values});
    return views;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [](float x, float y) { return std::bit_cast<std::uint32_t>(x) == std::bit_cast<std::uint32_t>(y); });
}

bool same_tensors(const std::vector<named_tensor>& a, const std::vector<named_tensor>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const named_tensor& x, const named_tensor& y) {
        return x.name == y.name && x.shape == y.shape && same_bits(x.values, y.values);
    });
}

// load_weights with the file's own list (variant 0) or a list that differs from it.
void check_load(const std::filesystem::path& path, const std::vector<named_tensor>& file, int variant) {
    std::vector<named_tensor> expected = file;
    if (variant == 1 && !expected.empty()) expected.pop_back();
    if (variant == 1 && file.empty()) expected.push_back({"extra", {}, {0.0f}});
    const auto taken = [&](const std::string& name) {
        return std::any_of(file.begin(), file.end(), [&](const named_tensor& t) { return t.name == name; });
    };
    if (variant == 2 && !expected.empty())
        while (taken(expected[0].name)) expected[0].name += '~';  // a name the file does not have
    if (variant == 3 && !expected.empty()) expected[0].shape.push_back(1);  // the same values, another shape
    const bool differs = variant != 0 && !(variant >= 2 && file.empty());
    std::vector<std::vector<float>> storage;
    for (const named_tensor& t : expected) storage.emplace_back(t.values.size(), 42.0f);
    std::vector<lowbit::nn::tensor_ref> refs;
    for (std::size_t i = 0; i < expected.size(); ++i) refs.push_back({expected[i].name, expected[i].shape, storage[i]});
    try {
        lowbit::nn::load_weights(path, refs);
        expect(!differs, [&] { return "load_weights accepted a tensor list that differs from the file (variant " + std::to_string(variant) + ")"; });
        for (std::size_t i = 0; i < file.size(); ++i)
            expect(same_bits(storage[i], file[i].values),
                   [&] { return "load_weights changed the values of tensor " + std::to_string(i); });
    } catch (const std::runtime_error& e) {
        expect(differs, [&] { return std::string("load_weights rejected the file's own tensor list: ") + e.what(); });
        for (const auto& values : storage)
            expect(std::all_of(values.begin(), values.end(), [](float v) { return v == 42.0f; }),
                   [] { return std::string("load_weights wrote into the tensors before rejecting the file"); });
    } catch (const std::exception& e) {
        finding(std::string("load_weights threw something other than std::runtime_error: ") + e.what());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t options = data[0];
    bytes file(data + 1, data + size);
    if ((options & 1) != 0 && file.size() >= 4) {
        const std::size_t body = file.size() - 4;
        const auto crc = std::uint32_t(crc32_z(crc32_z(0, nullptr, 0), file.data(), body));
        for (int b = 0; b < 4; ++b) file[body + std::size_t(b)] = static_cast<unsigned char>(crc >> (8 * b));
    }
    const auto tensors = read_or_reject([&] { return lowbit::nn::read_weights(file, "fuzz"); }, "fuzz");
    if (tensors) {
        bytes written;
        try {
            written = lowbit::nn::weights_file_bytes(views_of(*tensors));
        } catch (const std::invalid_argument& e) {
            finding(std::string("read_weights returned tensors that weights_file_bytes rejects: ") + e.what());
        }
        expect(written == file, [] { return std::string("read_weights accepted bytes other than those weights_file_bytes writes for what it read"); });
    }
    if ((options & 2) == 0) return 0;

    const lowbit_fuzz::scratch_file scratch("weights.bin", file);
    const std::filesystem::path& path = scratch.path;
    const auto by_path = read_or_reject([&] { return lowbit::nn::read_weights(path); }, path.string());
    expect(by_path.has_value() == tensors.has_value() && (!tensors || same_tensors(*tensors, *by_path)),
           [] { return std::string("read_weights of the path and of the bytes disagree"); });
    if (tensors) check_load(path, *tensors, (options >> 2) & 3);
    return 0;
}
