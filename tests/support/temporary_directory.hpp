// tests/support/temporary_directory.hpp: a fresh, empty directory for a test's files, removed with
// everything in it when the test ends (also when it fails).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace lowbit_test {

class temporary_directory {
public:
    temporary_directory() {
        // mkdtemp picks a name nobody else has and creates it in one step (no race with other
        // tests running in parallel under CTest).
        std::string pattern = (std::filesystem::temp_directory_path() / "lowbit-test-XXXXXX").string();
        if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
        path_ = pattern;
    }
    ~temporary_directory() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    temporary_directory(const temporary_directory&) = delete;
    temporary_directory& operator=(const temporary_directory&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

}  // namespace lowbit_test
