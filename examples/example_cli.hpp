// examples/example_cli.hpp: what every example's command line shares: a main that reports an error
// and exits with a non-zero code instead of aborting, the output folder (created when missing),
// the dataset folder, validators for numbers that must be finite, and the heap settings of a
// training program.
#pragma once

#include "keep_freed_memory.hpp"

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>


namespace examples {

namespace detail {

// s as a double, or an explanation of why it is not one.
inline std::string read_number(const std::string& s, double& value) {
    try {
        std::size_t used = 0;
        value = std::stod(s, &used);
        if (used == s.size()) return {};
    } catch (const std::exception&) {
    }
    return "'" + s + "' is not a number";
}

}  // namespace detail

// A finite number (CLI::Range and CLI::PositiveNumber let NaN through: every comparison with NaN
// is false). Combine with a range: ->check(examples::finite)->check(CLI::Range(0.0, 100.0)).
inline const CLI::Validator finite(
    [](std::string& s) -> std::string {
        double v = 0;
        if (auto why = detail::read_number(s, v); !why.empty()) return why;
        return std::isfinite(v) ? std::string() : "'" + s + "' must be a finite number";
    },
    "FINITE");

// A finite number > 0, such as a learning rate.
inline const CLI::Validator finite_positive(
    [](std::string& s) -> std::string {
        double v = 0;
        if (auto why = detail::read_number(s, v); !why.empty()) return why;
        return std::isfinite(v) && v > 0 ? std::string() : "'" + s + "' must be a finite number > 0";
    },
    "POSITIVE");

// --out DIR: where the example writes its files; created (with its parents) when missing.
inline CLI::Option* add_out_option(CLI::App& app, std::string& out, const std::string& what) {
    return app.add_option("--out", out, "folder for " + what + ", created when missing (default: " + out + ")");
}

// The folder of --out, created when missing; an error that names it when it cannot be.
inline const std::string& prepare_out(const std::string& out) {
    std::error_code error;
    std::filesystem::create_directories(out, error);
    if (error || !std::filesystem::is_directory(out))
        throw std::runtime_error("--out '" + out + "': cannot create or use this folder" +
                                 (error ? ": " + error.message() : std::string()));
    return out;
}

// --data DIR: the Fashion-MNIST folder (the four IDX files, gzipped or not).
inline CLI::Option* add_data_option(CLI::App& app, std::string& data) {
    return app.add_option("--data", data, "Fashion-MNIST folder (default: " + data + ", Debian's dataset-fashion-mnist)");
}

// Runs body(), an example's work after its options are parsed (keep_freed_memory first), and
// returns its exit code; an exception (a bad option value, a missing dataset, a malformed file,
// a folder that cannot be written) is reported as "<program>: error: <message>" with exit code 1.
template <class F>
int run(const char* program, F&& body) {
    keep_freed_memory();
    try {
        return body();
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "%s: error: %s\n", program, e.what());
        return 1;
    }
}

}  // namespace examples
