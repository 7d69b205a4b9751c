// Differential fuzz target: lowbit::gemm's fast paths (the vectorized chains, the AVX-512 scaled
// chain, the integer chain) against its exact reference lane (lowbit/datapath/gemm.hpp), on small
// arbitrary shapes, specs and values.
//
// Input: the first byte's bit 0 says whether a gemm_spec's text (gemm_spec.hpp's grammar) follows,
// up to a newline; the rest are FuzzedDataProvider bytes: the spec's fields (unless given as
// text), M, N, K in 0..20, the storage orders, a style for the values, and the values (any float
// bits, NaN, infinity and subnormals included; or finite values near the input format's grid; or
// small integers times a shared power of two).
// The exact lane runs when per-product records are asked for (record_lost with a gemm_stats, as
// tests/datapath/fast_datapath_test.cpp forces it); the same gemm call without records takes the
// fast path wherever it applies (gemm_report says which ran), with and without events.
// Properties (gemm.hpp, fast_datapath.hpp: the fast paths are used only where they provably equal
// the exact definition):
//   - the calls agree on errors: std::invalid_argument for a spec that cannot run, alike, and
//     nothing else;
//   - C is bit for bit the same (any NaN equals any NaN: payloads are not promised), and the
//     events counted with and without records are the same (the call with events runs where the
//     one without took a fast path: otherwise it would only repeat the exact lane).
// threads stays 1 (thread invariance has tests of its own).
#include "fuzz_specs.hpp"

#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/gemm_report.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

using lowbit_fuzz::describe_value;
using lowbit_fuzz::expect;
using lowbit_fuzz::finding;
using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct outcome {
    Eigen::MatrixXf c;
    lowbit::gemm_stats stats;
    lowbit::gemm_report report;
};

// gemm's result, or nothing when it rejects the spec with std::invalid_argument.
template <class MA, class MB>
std::optional<outcome> run(const MA& a, const MB& b, const lowbit::gemm_spec& spec, bool count) {
    outcome o;
    try {
        lowbit::gemm(a, b, o.c, spec, count ? &o.stats : nullptr, &o.report);
    } catch (const std::invalid_argument&) {
        return std::nullopt;
    } catch (const std::exception& e) {
        finding(std::string("gemm threw something other than std::invalid_argument: ") + e.what());
    }
    return o;
}

std::string describe_events(const lowbit::gemm_stats& s) {
    return "macs " + std::to_string(s.macs) + ", zero operands " + std::to_string(s.zero_operand) + ", product overflows " +
           std::to_string(s.product_overflows) + ", product underflows " + std::to_string(s.product_underflows) +
           ", accumulator overflows " + std::to_string(s.accumulator_overflows) + ", swamps " + std::to_string(s.swamps) +
           ", inexact additions " + std::to_string(s.inexact_additions);
}

bool same_events(const lowbit::gemm_stats& a, const lowbit::gemm_stats& b) {
    return a.macs == b.macs && a.zero_operand == b.zero_operand && a.product_overflows == b.product_overflows &&
           a.product_underflows == b.product_underflows && a.accumulator_overflows == b.accumulator_overflows &&
           a.swamps == b.swamps && a.inexact_additions == b.inexact_additions;
}

// The first (i, j) where two results differ bit for bit (NaN equal to NaN), if any.
std::optional<std::pair<Eigen::Index, Eigen::Index>> first_difference(const Eigen::MatrixXf& x, const Eigen::MatrixXf& y) {
    if (x.rows() != y.rows() || x.cols() != y.cols()) return std::pair<Eigen::Index, Eigen::Index>{-1, -1};
    for (Eigen::Index i = 0; i < x.rows(); ++i)
        for (Eigen::Index j = 0; j < x.cols(); ++j)
            if (!lowbit_fuzz::same_value(x(i, j), y(i, j))) return std::pair{i, j};
    return std::nullopt;
}

void compare(const outcome& exact, const outcome& fast, const char* which) {
    const auto at = first_difference(exact.c, fast.c);
    expect(!at, [&] {
        if (at->first < 0) return std::string(which) + ": C has another shape";
        return std::string(which) + " (kernel " + lowbit::to_string(fast.report.kernel) + ") differs from the exact lane at (" +
               std::to_string(at->first) + ", " + std::to_string(at->second) + "): " +
               describe_value(fast.c(at->first, at->second)) + " vs " + describe_value(exact.c(at->first, at->second));
    });
}

// A value: style 0 any bits or near the grid (consume_value), 1 the same but finite, 2 a small
// integer times 2^base.
float consume_entry(FuzzedDataProvider& in, int style, const lowbit::float_format& near, int base) {
    if (style == 2) return std::ldexp(float(in.ConsumeIntegralInRange(-64, 64)), base);
    const float x = lowbit_fuzz::consume_value<float>(in, near);
    return style == 1 && !std::isfinite(x) ? 0.0f : x;
}

template <class MA, class MB>
void check(const MA& a, const MB& b, lowbit::gemm_spec spec) {
    spec.threads = 1;
    spec.record_lost = false;
    lowbit::gemm_spec recorded = spec;
    recorded.record_lost = true;
    const auto exact = run(a, b, recorded, true);
    const auto fast = run(a, b, spec, false);
    expect(exact.has_value() == fast.has_value(),
           [] { return std::string("gemm with and without records disagree on rejecting the spec"); });
    if (!exact) return;
    expect(exact->report.kernel == lowbit::gemm_kernel::exact,
           [&] { return "record_lost did not force the exact lane: " + std::string(lowbit::to_string(exact->report.kernel)); });
    compare(*exact, *fast, "gemm without events");
    // Counting events only narrows the fast paths: where none ran without them, the exact lane
    // would run again, as it just did.
    if (fast->report.kernel == lowbit::gemm_kernel::exact) return;
    const auto counted = run(a, b, spec, true);
    expect(counted.has_value(), [] { return std::string("gemm with events rejects a spec that it runs without"); });
    compare(*exact, *counted, "gemm with events");
    expect(same_events(exact->stats, counted->stats), [&] {
        return "events of the exact lane (" + describe_events(exact->stats) + ") and of kernel " +
               lowbit::to_string(counted->report.kernel) + " (" + describe_events(counted->stats) + ") differ";
    });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::span<const std::uint8_t> rest(data + 1, size - 1);
    std::optional<lowbit::gemm_spec> parsed;
    if ((data[0] & 1) != 0) {
        const auto end = std::find(rest.begin(), rest.end(), std::uint8_t('\n'));
        const std::string_view text(reinterpret_cast<const char*>(rest.data()), std::size_t(end - rest.begin()));
        try {
            parsed = lowbit::gemm_spec::parse(text);
        } catch (const std::invalid_argument&) {
            return 0;
        }
        rest = rest.subspan(std::min(rest.size(), std::size_t(end - rest.begin()) + 1));
    }
    FuzzedDataProvider in(rest.data(), rest.size());
    const lowbit::gemm_spec spec = parsed ? *parsed : lowbit_fuzz::consume_gemm_spec(in);
    const auto m = in.ConsumeIntegralInRange<Eigen::Index>(0, 20), n = in.ConsumeIntegralInRange<Eigen::Index>(0, 20),
               k = in.ConsumeIntegralInRange<Eigen::Index>(0, 20);
    const bool a_row_major = in.ConsumeBool(), b_row_major = in.ConsumeBool();
    const int style = in.ConsumeIntegralInRange(0, 2), base = in.ConsumeIntegralInRange(-20, 20);
    const auto near_of = [](const lowbit::quantizer& q) {
        const auto* f = q.as_float();
        return f != nullptr && f->format.is_valid() ? f->format : lowbit::fp8_e4m3;
    };
    Eigen::MatrixXf a(m, k), b(k, n);
    for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = consume_entry(in, style, near_of(spec.input_a), base);
    for (Eigen::Index i = 0; i < b.size(); ++i) b.data()[i] = consume_entry(in, style, near_of(spec.input_b), base);
    lowbit_fuzz::input_description() = [&] {
        std::string s = lowbit::to_string(spec) + "; " + std::to_string(m) + " x " + std::to_string(k) + " times " +
                        std::to_string(k) + " x " + std::to_string(n) + "; A (column-major)";
        for (Eigen::Index i = 0; i < a.size(); ++i) s += " " + describe_value(a.data()[i]);
        s += "; B (column-major)";
        for (Eigen::Index i = 0; i < b.size(); ++i) s += " " + describe_value(b.data()[i]);
        return s;
    };
    // (to_string of an invalid spec can fail: the description is then the exception's message)
    try {
        spec.validate();
    } catch (const std::invalid_argument& e) {
        lowbit_fuzz::input_description() = [what = std::string(e.what())] { return "an invalid spec: " + what; };
    }
    if (a_row_major && b_row_major) check(row_major(a), row_major(b), spec);
    else if (a_row_major) check(row_major(a), b, spec);
    else if (b_row_major) check(a, row_major(b), spec);
    else check(a, b, spec);
    return 0;
}
