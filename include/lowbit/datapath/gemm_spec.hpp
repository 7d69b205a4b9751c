// lowbit/datapath/gemm_spec.hpp: what one lane of an accelerator does, as plain data.
//
// For C = A B (A: M x K, B: K x N), each output C(i, j) is one dot product over k, computed as:
//
//   a_k = input_a(A(i, k)),  b_k = input_b(B(k, j))       (Q_W, Q_A of the paper; exact if unset)
//   p_k = product(a_k * b_k)                              (Q_prod rounds the exact product once)
//
// K is cut into chunks of `chunk` elements (the last may be shorter; chunk = 0: one chunk). Each
// chunk is reduced from +0 by the accumulation model, with Q_acc = accumulator rounding each exact
// partial sum once:
//   sequential  acc = Q_acc(acc + p_k), k ascending (the FMA chain of Blumenfeld et al.)
//   fma         acc = Q_acc(a_k * b_k + acc): one rounding of the exact a*b + acc; no Q_prod
//   pairwise    an adder tree of width 2^ceil(log2 n) over the chunk's n products: at each level
//               neighbours 2t and 2t+1 are added and rounded by Q_acc, a missing neighbour is 0
//               (a chunk of one product is that product)
//   fused       Q_acc(exact sum of the chunk's p_k): an ideal, quire-like unit
//   aligned     the running acc and the next `group` products are aligned to the largest exponent
//               E = max floor(log2 |t|) among them; each term t is cut to a multiple of
//               2^(E - window) (the `window` bits below that exponent are kept), by truncation
//               toward zero or toward minus infinity (`cut`); the cut terms are summed exactly and
//               acc = Q_acc(that sum). With window = 13 or 14 this is the FP8 tensor-core adder.
//               How exponents are read (the conventions of real matrix units, see hardware.hpp):
//                 align = value      a product's exponent is floor(log2 |p_k|) (the default)
//                 align = operands   it is e(a_k) + e(b_k), the exponents of its operands, so the
//                                    product's significand lies in [1, 4) and the largest term
//                                    keeps `window` or window + 1 bits below its leading bit
//                                    (NVIDIA); needs exact products (no product quantizer)
//                 subnormal_exponent = min_normal   a subnormal operand or accumulator is read at
//                                    its format's smallest normal exponent, with a significand
//                                    below 1 (NVIDIA; the addend a chain starts from is read as a
//                                    value of the accumulator's format); `own`: floor(log2 |x|)
//                 zero_exponent = z  a zero product or a zero accumulator takes part in the
//                                    largest exponent as 2^z (NVIDIA: -126); unset: zeros do not.
//                                    The group is then a fixed-point sum even when every term is
//                                    zero, and a zero sum is +0.
//   two_level   AMD CDNA3's fused dot: each group of `group` products, aligned on their operands'
//               exponents (subnormal_exponent and zero_exponent as above), is split into `sub_dots`
//               interleaved sub-dots (product k in sub-dot k mod sub_dots). Level 1: each sub-dot's
//               products are cut toward zero to `window` bits below the sub-dot's largest exponent
//               and summed exactly; with several sub-dots, each sub-sum is cut toward minus infinity
//               to `window` bits below the largest of their exponents, and they are added: the
//               products' sum P, with exponent E_p. Level 2: with E = max(E_p, e(acc)), P is cut
//               toward minus infinity to `sum_window` bits below E, and acc to `window` bits below
//               E (with several sub-dots, an acc whose exponent e(acc), read as above, is below
//               E - window - 1 is dropped), and acc = Q_acc(their exact sum). An infinite or NaN
//               product or acc makes acc = Q_acc(the IEEE sum of acc and the group's products);
//               otherwise a product of magnitude 2^128 or more makes the group's result an
//               infinity of its sign (NaN with both signs). Needs exact products.
// The chunk results r_c are then accumulated in order by the chunk accumulator, from -0 (the
// identity of IEEE addition, so that a chunk's result keeps the sign of its zero):
//   total = chunk_accumulator(total + r_c)
// and C(i, j) = total rounded to float (nearest even) if it is not a float already.
//
// An unset quantizer is exact: products and sums are kept exactly (an unset accumulator makes
// every model a fused one). Integer quantizers round to an integer grid and wrap or saturate; an
// integer product, accumulator or chunk accumulator that is zero is +0 (a register has no -0).
//
// An addend (gemm_add: D = A B + C, as a matrix unit's instruction computes it): C(i, j), rounded
// by `addend` (unset: as given), is the value the accumulation starts from: the first chunk's
// running accumulator in sequential, fma, aligned and two_level chains (the first chunk's exact
// sum when the accumulator is exact), the chunk accumulator's running total for pairwise and fused
// chunks, which have no running accumulator. Without an addend that value is +0.
//
// Stochastic rounding draws its random bits from Philox (random_bits_at) with the key
// gemm_random_key(quantizer seed, role) and an index that names the rounding, so results do not
// depend on threads, and quantizers that share a seed still draw independent bits:
//   input_a: i*K + k          input_b: k*N + j          addend: i*N + j
//   product, and accumulator of sequential/fma: (i*N + j)*K + k  (the step that adds product k)
//   accumulator of aligned and two_level: (i*N + j)*K + k_last  (k_last: the group's last product)
//   accumulator of pairwise: (i*N + j)*2K + 2*chunk_start + h, h the node's heap number in its
//     chunk's tree (root 1, children of h: 2h and 2h+1; leaves are not rounded)
//   accumulator of fused: (i*N + j)*K + chunk_start
//   chunk accumulator: (i*N + j)*chunks + c
//
// Text form (to_string writes it, gemm_spec::parse reads it back; case-insensitive): fields
// "name=value" separated by spaces, in any order, each at most once; a field left out keeps its
// default. Quantizers as quantizer.hpp spells them, model and cut by their names:
//   "input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:toward_zero
//    accumulator=lba_m7e4_acc:toward_zero model=sequential chunk=16
//    chunk_accumulator=lba_m7e4_acc:toward_zero"          (the flagship's datapath)
// Fields: input_a, input_b, product, accumulator, chunk_accumulator, model, chunk, window, group,
// sum_window, sub_dots, cut, align (value or operands), subnormal_exponent (own or min_normal), zero_exponent (an
// integer or none), addend (a quantizer), threads, record_lost (0 or 1). to_string writes the five
// quantizers, model and chunk always, the others where they differ from the default.
#pragma once

#include <lowbit/datapath/quantizer.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace lowbit {

// Which rounding of the datapath a random stream belongs to.
enum class gemm_role : std::uint8_t { input_a, input_b, product, accumulator, chunk_accumulator, addend };

// The Philox key of a role's stream: the quantizer's seed mixed with the role.
constexpr std::uint64_t gemm_random_key(std::uint64_t seed, gemm_role role) {
    return seed ^ (0x9E3779B97F4A7C15ull * (std::uint64_t(role) + 1));
}

enum class accumulation : std::uint8_t { sequential, fma, pairwise, fused, aligned, two_level };
enum class alignment_cut : std::uint8_t { toward_zero, toward_negative };
enum class alignment_exponent : std::uint8_t { value, operands };
enum class subnormal_exponent : std::uint8_t { own, min_normal };

namespace detail {
// Whether gemm_add's addend starts a chunk's running accumulator (else the chunk accumulator's
// total): see the top.
inline bool addend_starts_chunk(accumulation model) {
    return model == accumulation::sequential || model == accumulation::fma || model == accumulation::aligned ||
           model == accumulation::two_level;
}
}  // namespace detail

constexpr const char* to_string(alignment_cut c) { return c == alignment_cut::toward_zero ? "toward_zero" : "toward_negative"; }
constexpr const char* to_string(alignment_exponent a) { return a == alignment_exponent::value ? "value" : "operands"; }
constexpr const char* to_string(subnormal_exponent e) { return e == subnormal_exponent::own ? "own" : "min_normal"; }

constexpr const char* to_string(accumulation a) {
    switch (a) {
        case accumulation::sequential: return "sequential";
        case accumulation::fma: return "fma";
        case accumulation::pairwise: return "pairwise";
        case accumulation::fused: return "fused";
        case accumulation::aligned: return "aligned";
        case accumulation::two_level: return "two_level";
    }
    return "?";
}

struct gemm_spec {
    quantizer input_a{};            // Q_W: each element of A
    quantizer input_b{};            // Q_A: each element of B
    quantizer product{};            // Q_prod
    quantizer accumulator{};        // Q_acc
    accumulation model = accumulation::sequential;
    int chunk = 0;                  // elements of K per chunk; 0: one chunk
    quantizer chunk_accumulator{};  // accumulates the chunk results
    int window = 14;                // aligned, two_level: bits kept below the largest exponent
    int group = 32;                 // aligned, two_level: products aligned together
    int sum_window = 31;            // two_level: bits of the products' sum kept at level 2
    int sub_dots = 1;               // two_level: interleaved sub-dots of a group (FP8: 2)
    alignment_cut cut = alignment_cut::toward_zero;
    alignment_exponent align = alignment_exponent::value;              // aligned: see the top
    subnormal_exponent subnormals = subnormal_exponent::own;           // aligned: see the top
    std::optional<int> zero_exponent{};                                // aligned: see the top
    quantizer addend{};             // C of gemm_add (D = A B + C); unset: C as given
    int threads = 1;                // OpenMP threads, at most the processors present (more are
                                    // capped to those); 0: OpenMP's default. Results do not depend on it.
    bool record_lost = false;       // gemm_stats::lost: which products' contributions were lost

    // Throws std::invalid_argument naming the field when the spec cannot be run.
    void validate() const {
        const auto check = [](const quantizer& q, const char* field) {
            try {
                q.validate();
            } catch (const std::invalid_argument& e) {
                throw std::invalid_argument(std::string("lowbit::gemm_spec: ") + field + ": " + e.what());
            }
        };
        check(input_a, "input_a");
        check(input_b, "input_b");
        check(product, "product");
        check(accumulator, "accumulator");
        check(chunk_accumulator, "chunk_accumulator");
        check(addend, "addend");
        const auto fail = [](const char* field, int value, const char* why) {
            throw std::invalid_argument(std::string("lowbit::gemm_spec: ") + field + " = " + std::to_string(value) +
                                        " " + why);
        };
        if (chunk < 0) fail("chunk", chunk, "must be >= 0 (0: one chunk)");
        if (window < 1) fail("window", window, "must be >= 1");
        if (window > 1000) fail("window", window, "must be <= 1000");
        if (group < 1) fail("group", group, "must be >= 1");
        if (threads < 0) fail("threads", threads, "must be >= 0 (0: OpenMP's default)");
        if (int(model) > int(accumulation::two_level)) fail("model", int(model), "is not a lowbit::accumulation");
        if (sum_window < 1 || sum_window > 1000) fail("sum_window", sum_window, "must be in [1, 1000]");
        if (sub_dots < 1 || sub_dots > 64) fail("sub_dots", sub_dots, "must be in [1, 64]");
        if (model == accumulation::two_level && !product.is_exact())
            throw std::invalid_argument("lowbit::gemm_spec: model = two_level aligns exact products on their operands' "
                                        "exponents, and product = " + to_string(product) +
                                        " rounds them: leave the product unset");
        if (int(cut) > int(alignment_cut::toward_negative)) fail("cut", int(cut), "is not a lowbit::alignment_cut");
        if (int(align) > int(alignment_exponent::operands)) fail("align", int(align), "is not a lowbit::alignment_exponent");
        if (int(subnormals) > int(subnormal_exponent::min_normal))
            fail("subnormal_exponent", int(subnormals), "is not a lowbit::subnormal_exponent");
        if (zero_exponent && (*zero_exponent < -2200 || *zero_exponent > 2200))
            fail("zero_exponent", *zero_exponent, "must be within [-2200, 2200] (or unset: zeros do not take part)");
        const auto aligned_only = [&](bool set, const char* field) {
            if (set && model != accumulation::aligned && model != accumulation::two_level)
                throw std::invalid_argument(std::string("lowbit::gemm_spec: ") + field +
                                            " is an option of the aligned and two_level models, and model = " +
                                            to_string(model));
        };
        aligned_only(align != alignment_exponent::value, "align = operands");
        aligned_only(subnormals != subnormal_exponent::own, "subnormal_exponent = min_normal");
        aligned_only(zero_exponent.has_value(), "zero_exponent");
        if (sub_dots != 1 && model != accumulation::two_level)
            fail("sub_dots", sub_dots, "is an option of the two_level model (leave it 1)");
        if (align == alignment_exponent::operands && !product.is_exact())
            throw std::invalid_argument("lowbit::gemm_spec: align = operands aligns exact products on their operands' "
                                        "exponents, and product = " + to_string(product) +
                                        " rounds them: leave the product unset");
    }

    // The spec a text names (see the top), validated; std::invalid_argument naming what is wrong.
    static gemm_spec parse(std::string_view text);

    friend bool operator==(const gemm_spec&, const gemm_spec&) = default;
};

inline gemm_spec gemm_spec::parse(std::string_view text) {
    gemm_spec spec;
    std::vector<std::string> seen;
    std::string_view rest = text;
    const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
    while (true) {
        while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
        if (rest.empty()) break;
        std::size_t end = 0;
        while (end < rest.size() && !is_space(rest[end])) ++end;
        const std::string_view field = rest.substr(0, end);
        rest.remove_prefix(end);
        const auto equals = field.find('=');
        if (equals == std::string_view::npos || equals == 0)
            detail::bad_text("gemm_spec", text, "has '" + std::string(field) + "', not name=value");
        const std::string name = detail::lowercase(field.substr(0, equals));
        const std::string_view value = field.substr(equals + 1);
        if (std::find(seen.begin(), seen.end(), name) != seen.end())
            detail::bad_text("gemm_spec", text, "gives " + name + " twice");
        seen.push_back(name);
        const auto quantizer_of = [&](quantizer& q) {
            try {
                q = quantizer::parse(value);
            } catch (const std::invalid_argument& e) {
                detail::bad_text("gemm_spec", text, name + ": " + e.what());
            }
        };
        const auto number = [&](int& n) { n = detail::parse_count<int>("gemm_spec", text, value); };
        const std::string lower = detail::lowercase(value);
        if (name == "input_a") quantizer_of(spec.input_a);
        else if (name == "input_b") quantizer_of(spec.input_b);
        else if (name == "product") quantizer_of(spec.product);
        else if (name == "accumulator") quantizer_of(spec.accumulator);
        else if (name == "chunk_accumulator") quantizer_of(spec.chunk_accumulator);
        else if (name == "addend") quantizer_of(spec.addend);
        else if (name == "chunk") number(spec.chunk);
        else if (name == "window") number(spec.window);
        else if (name == "group") number(spec.group);
        else if (name == "sum_window") number(spec.sum_window);
        else if (name == "sub_dots") number(spec.sub_dots);
        else if (name == "threads") number(spec.threads);
        else if (name == "model") {
            bool found = false;
            for (const accumulation a : {accumulation::sequential, accumulation::fma, accumulation::pairwise,
                                         accumulation::fused, accumulation::aligned, accumulation::two_level})
                if (lower == to_string(a)) spec.model = a, found = true;
            if (!found)
                detail::bad_text("gemm_spec", text, "has model '" + std::string(value) +
                                                        "' (sequential, fma, pairwise, fused, aligned or two_level)");
        } else if (name == "cut") {
            if (lower == "toward_zero") spec.cut = alignment_cut::toward_zero;
            else if (lower == "toward_negative") spec.cut = alignment_cut::toward_negative;
            else detail::bad_text("gemm_spec", text, "has cut '" + std::string(value) + "' (toward_zero or toward_negative)");
        } else if (name == "align") {
            if (lower == "value") spec.align = alignment_exponent::value;
            else if (lower == "operands") spec.align = alignment_exponent::operands;
            else detail::bad_text("gemm_spec", text, "has align '" + std::string(value) + "' (value or operands)");
        } else if (name == "subnormal_exponent") {
            if (lower == "own") spec.subnormals = subnormal_exponent::own;
            else if (lower == "min_normal") spec.subnormals = subnormal_exponent::min_normal;
            else
                detail::bad_text("gemm_spec", text,
                                 "has subnormal_exponent '" + std::string(value) + "' (own or min_normal)");
        } else if (name == "zero_exponent") {
            if (lower == "none") {
                spec.zero_exponent.reset();
            } else {
                const bool negative = !value.empty() && value.front() == '-';
                const int magnitude =
                    detail::parse_count<int>("gemm_spec", text, negative ? value.substr(1) : value);
                spec.zero_exponent = negative ? -magnitude : magnitude;
            }
        } else if (name == "record_lost") {
            if (lower == "1" || lower == "true") spec.record_lost = true;
            else if (lower == "0" || lower == "false") spec.record_lost = false;
            else detail::bad_text("gemm_spec", text, "has record_lost '" + std::string(value) + "' (0 or 1)");
        } else {
            detail::bad_text("gemm_spec", text,
                             "has an unknown field '" + name +
                                 "' (input_a, input_b, product, accumulator, chunk_accumulator, model, chunk, window, "
                                 "group, sum_window, sub_dots, cut, align, subnormal_exponent, zero_exponent, addend, threads, "
                                 "record_lost)");
        }
    }
    spec.validate();
    return spec;
}

inline std::string to_string(const gemm_spec& spec) {
    const gemm_spec defaults;
    std::string s;
    const auto field = [&](const char* name, const std::string& value) {
        if (!s.empty()) s += ' ';
        ((s += name) += '=') += value;
    };
    field("input_a", to_string(spec.input_a));
    field("input_b", to_string(spec.input_b));
    field("product", to_string(spec.product));
    field("accumulator", to_string(spec.accumulator));
    field("model", to_string(spec.model));
    field("chunk", std::to_string(spec.chunk));
    field("chunk_accumulator", to_string(spec.chunk_accumulator));
    if (spec.window != defaults.window) field("window", std::to_string(spec.window));
    if (spec.group != defaults.group) field("group", std::to_string(spec.group));
    if (spec.sum_window != defaults.sum_window) field("sum_window", std::to_string(spec.sum_window));
    if (spec.sub_dots != defaults.sub_dots) field("sub_dots", std::to_string(spec.sub_dots));
    if (spec.cut != defaults.cut) field("cut", to_string(spec.cut));
    if (spec.align != defaults.align) field("align", to_string(spec.align));
    if (spec.subnormals != defaults.subnormals) field("subnormal_exponent", to_string(spec.subnormals));
    if (spec.zero_exponent) field("zero_exponent", std::to_string(*spec.zero_exponent));
    if (!spec.addend.is_exact()) field("addend", to_string(spec.addend));
    if (spec.threads != defaults.threads) field("threads", std::to_string(spec.threads));
    if (spec.record_lost) field("record_lost", "1");
    return s;
}

}  // namespace lowbit
