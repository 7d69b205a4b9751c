// lowbit/datapath/lns_gemm.hpp: C = A B with logarithmic (LNS) operands on a simulated datapath.
//
//   lowbit::lns_gemm_spec spec;                               // lns8 inputs, per-tensor scales,
//   spec.conversion = {.method = lowbit::lns_conversion::mitchell};   // exact table by default
//   spec.datapath.accumulator = lowbit::float_quantizer{.format = lowbit::bf16};
//   spec.datapath.chunk = 16;
//   Eigen::MatrixXf C = lowbit::lns_gemm(A, B, spec, &stats);  // A, B: float matrices
//
//   lowbit::lns_matrix a = lowbit::lns_encode(A, {.format = lowbit::lns8}, lns_input_scale::per_tensor_max);
//   Eigen::MatrixXf C = lowbit::lns_gemm(a, b, spec);          // already-encoded operands
//
// Operands. An lns_matrix holds, per element, sign in {-1, 0, +1} and an integer k: the value is
// sign * 2^(k / gamma) on the grid of its lns_format (gamma = 2^frac_bits, k in [k_min, k_max]; k
// is ignored where sign = 0). A per-tensor scale 2^(j / gamma) is part of the format
// (format.scaled(j): the offset moves by j), so k is the whole exponent, scale included. A and B
// may have different formats with the same frac_bits.
//
// Products. The product of A(i, k) and B(k, j) is sign_a sign_b 2^(s / gamma) with s = k_a + k_b,
// exactly (an integer add). The converter (lns_conversion.hpp) makes it linear: s = q gamma + r,
// 0 <= r < gamma, and the converted product is
//
//   t_k = sign_a sign_b 2^q c_r       (c_r: the table constant rounded to T bits, or 1 + r/gamma)
//
// an exact double (c_r has at most 53 significant bits; the validated range below keeps 2^q c_r
// normal). q_min and q_max are the smallest and largest q of any product the two formats can make
// (from their k ranges, not from the data): q_min = floor((k_min_A + k_min_B) / gamma).
//
// Accumulation, `accumulation`:
//   per_product  the K terms t_k go through `datapath` exactly as the rounded products p_k go
//                through lowbit::gemm (gemm_spec.hpp): its accumulator, model, chunk,
//                chunk_accumulator, window, group and cut, with the random indices of gemm_spec.hpp
//                (term k of output (i, j) is "product k"); fma equals sequential, the terms being
//                exact already. C(i, j) = the total rounded to float, nearest even.
//   bucketed     the paper's energy trick. For each remainder r, bucket r receives the integer
//                terms u_k = sign_a sign_b 2^(q - q_min) of the products with that r (the terms of
//                the other products are 0): K terms that go through `datapath` as above (the same
//                models and chunks; the accumulator counts in units of 2^q_min, the smallest
//                product's weight: int_quantizer{.format = {.bits = P}} is a P-bit integer bucket
//                that wraps or saturates; unset is exact). Bucket r's roundings draw their random
//                bits with the seeds of `datapath`'s quantizers plus r. Each bucket's result B_r
//                is then multiplied by its constant, and
//
//                  C(i, j) = float(bucket_sum(sum over r of c_r B_r 2^q_min))
//
//                where the gamma scaled buckets are summed exactly and rounded once by
//                `bucket_sum` (an ideal final adder; unset: no rounding), whose stochastic
//                rounding uses the key gemm_random_key(seed, gemm_role::product) (products are
//                never rounded in an LNS datapath, so that stream is free) and index i*N + j; the
//                result lands in float, nearest even. Buckets must be integer: the accumulators
//                are unset or int_quantizers with fraction_bits <= 0 (< 0: the bucket drops the
//                low bits of its sums, by its rounding mode).
//
// How the two relate. By distributivity, sum_k t_k = sum_r c_r sum_{k in r} u_k 2^q_min exactly,
// whatever the constants: so bucketed = per_product, bit for bit, whenever both accumulate
// exactly: per_product with unset accumulator and chunk_accumulator; bucketed with buckets that
// neither round nor overflow (unset, or P-bit integers wide enough: |B_r| <= K 2^(q_max - q_min)
// needs P >= q_max - q_min + ceil(log2 K) + 2 for signed wrap or saturate, and wrapping
// accumulators with fraction_bits = 0 give the exact sum modulo 2^P whenever the final sum fits,
// whatever the partial sums did) and unset bucket_sum. That holds for any table precision T and for
// Mitchell: both carry the same conversion error, |sum_k t_k - sum_k sign_k 2^(s_k/gamma)| <=
// 2^-(T+1) sum_k 2^(s_k/gamma) for a table and mitchell_max_relative_error (6.15%) times the same
// sum for Mitchell, whose error has the sign of each product (it overestimates). Otherwise they
// differ by the accumulators' own errors: per_product with a float accumulator of unit roundoff u
// (2^-(man_bits+1) for nearest modes, twice that for directed ones) rounds each term at most
// d = (terms per chunk) + (chunks) times on its way to the total (sequential; a pairwise tree:
// ceil(log2 chunk) + chunks), so it is within ((1 + u)^d - 1) sum|t_k| of the exact sum (Higham,
// "Accuracy and Stability of Numerical Algorithms", 4.2), while the exact buckets have no error
// at all (both results then land in float, 2^-24 relative each); a narrow bucket that wraps is off by a multiple of 2^P 2^q_min c_r, one that saturates
// or truncates by as much as it lost. tests/datapath/lns_gemm_test.cpp checks the identity and
// measures these differences against the bounds.
//
// Validated ranges: -1022 <= q_min and q_max <= 960, so every converted product is a normal
// double and sums of up to 2^62 of them stay finite; bucketed also needs q_max - q_min <= 1023
// (the unit terms 2^(q - q_min) are doubles). Events (gemm_stats): macs, zero_operand (products
// with a zero operand), and the accumulators' events as gemm_spec.hpp defines them (bucketed: in
// every bucket, plus the bucket_sum rounding's overflow and inexactness); no product events (LNS
// products are exact). record_lost: a term lost to its accumulator (bucketed: in its bucket).
//
// Threads: datapath.threads split the rows of C; every output is computed by one thread in a fixed
// order, so results and counts are identical for any thread count. Speed (gemm_report says which
// kernel ran, and why a faster one did not):
//   - outputs that are the exact sum of their products (exact per-product accumulation, or signed
//     integer buckets of no fraction bits that no sum can overflow: the identity above) run 64 at
//     a time in int64 lanes where the constants and the products' spread fit 62 bits (Mitchell,
//     tables of up to about 20 bits on lns8): integer_sum_lanes;
//   - other per-product accumulations run in the lanes of fast_datapath.hpp (every model where each
//     product is a float; sequential and fma chains with double products, the 52-bit table's):
//     vectorized_chain;
//   - bucketed accumulators that are exact or wrap without fraction bits, outside the aligned model
//     and without event counting, take a shortcut: the buckets are summed in 64-bit integers and
//     combined in 128-bit ones (proven equal: wrapping is arithmetic modulo 2^P and no term is ever
//     rounded, so every model reduces to a sum modulo 2^P per chunk), when the bounds allow (lns8
//     at any practical K; not lns16, whose products span 2^256); exact buckets and bucket_sum
//     whose sums pass 2^62 (lns8 at gamma 4: products spanning 2^64) in 128-bit integers, up to
//     2^125: integer_buckets;
//   - the rest, event counting included, one output at a time through exact_datapath::reduce.
//
// The kernels are in lns_core.hpp: included at the end of this header in header-only use, and
// compiled once into lowbit::compiled otherwise (see gemm.hpp).
#pragma once

#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/gemm_report.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/datapath/lns_conversion.hpp>
#include <lowbit/datapath/quantizer.hpp>
#include <lowbit/formats/lns_format.hpp>
#include <lowbit/rounding/lns_quantize.hpp>
#include <lowbit/rounding/random_bits.hpp>
#include <lowbit/types/lns.hpp>

#include <Eigen/Core>

#include <bit>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace lowbit {

// A matrix of LNS values: sign(i, j) * 2^(k(i, j) / gamma), zero where sign(i, j) = 0.
struct lns_matrix {
    lns_format format = lns8;  // the grid, per-tensor scale included (format.scaled(j))
    Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic> k;
    Eigen::Matrix<std::int8_t, Eigen::Dynamic, Eigen::Dynamic> sign;  // -1, 0 or +1

    Eigen::Index rows() const { return k.rows(); }
    Eigen::Index cols() const { return k.cols(); }

    // The value of an element, correctly rounded to double (lns_format::magnitude).
    double value(Eigen::Index i, Eigen::Index j) const {
        const int s = sign(i, j);
        return s == 0 ? 0.0 : s * format.magnitude(k(i, j));
    }
    Eigen::MatrixXd values() const {
        Eigen::MatrixXd v(rows(), cols());
        for (Eigen::Index j = 0; j < cols(); ++j)
            for (Eigen::Index i = 0; i < rows(); ++i) v(i, j) = value(i, j);
        return v;
    }

    // The same values on the finer grid of frac_bits (>= format.frac_bits): every k times
    // 2^(frac_bits - format.frac_bits), the log field that many bits wider and the offset scaled
    // alike, so the values and the range are exactly those of *this. lns_gemm multiplies operands
    // of one grid base: a 5-bit operand of base 2^(1/2) meets lns8 (base 2^(1/8)) refined to 3.
    // Throws std::invalid_argument when frac_bits is coarser or the finer format is impossible.
    lns_matrix refined(int frac_bits) const {
        const int shift = frac_bits - format.frac_bits;
        if (shift < 0)
            throw std::invalid_argument("lowbit::lns_matrix::refined(" + std::to_string(frac_bits) +
                                        "): coarser than the matrix's frac_bits = " + std::to_string(format.frac_bits) +
                                        " (a coarser grid would round)");
        const lns_format f{.log_bits = format.log_bits + shift, .frac_bits = frac_bits,
                           .offset = shift > 20 ? 0 : format.offset * (1 << shift)};  // (shift > 20: frac_bits invalid)
        if (!f.is_valid())
            throw std::invalid_argument("lowbit::lns_matrix::refined(" + std::to_string(frac_bits) +
                                        "): the finer format has no valid lns_format (log_bits " +
                                        std::to_string(format.log_bits) + " + " + std::to_string(shift) + ")");
        return {f, k * (1 << shift), sign};
    }

    // Throws std::invalid_argument naming `name`'s field and element when the matrix is malformed.
    const lns_matrix& validate(const std::string& name = "lns_matrix") const {
        try {
            format.validate();
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(name + ".format: " + e.what());
        }
        if (sign.rows() != k.rows() || sign.cols() != k.cols())
            throw std::invalid_argument(name + ".sign is " + std::to_string(sign.rows()) + " x " +
                                        std::to_string(sign.cols()) + " but " + name + ".k is " +
                                        std::to_string(k.rows()) + " x " + std::to_string(k.cols()));
        const auto where = [&](const char* field, Eigen::Index i, Eigen::Index j) {
            return name + "." + field + "(" + std::to_string(i) + ", " + std::to_string(j) + ") = ";
        };
        for (Eigen::Index j = 0; j < cols(); ++j)
            for (Eigen::Index i = 0; i < rows(); ++i) {
                const int s = sign(i, j);
                if (s < -1 || s > 1) throw std::invalid_argument(where("sign", i, j) + std::to_string(s) + " must be -1, 0 or +1");
                if (s != 0 && (k(i, j) < format.k_min() || k(i, j) > format.k_max()))
                    throw std::invalid_argument(where("k", i, j) + std::to_string(k(i, j)) + " is outside [" +
                                                std::to_string(format.k_min()) + ", " +
                                                std::to_string(format.k_max()) + "], the k range of " + name +
                                                ".format");
            }
        return *this;
    }
};

// Where the per-tensor scale of an encoded matrix comes from.
enum class lns_input_scale : std::uint8_t {
    none,            // the quantizer's format as it is
    per_tensor_max,  // format.scaled(j), j = lns_scale_exponent_for_max(max |x|): the largest
                     // magnitude lands on the top code or one step below it, never above
};

namespace detail {

template <class T>
struct is_lns_number : std::false_type {};
template <lns_format F, class P>
struct is_lns_number<lns<F, P>> : std::true_type {};

}  // namespace detail

// x rounded by q (element (i, j) with the random index i * cols + j, as gemm_spec.hpp numbers
// input_a), on q.format or on its per-tensor scaled version. Throws std::invalid_argument for
// NaN elements (the operand has no NaN), an invalid format or random_bits.
template <class D>
    requires std::is_arithmetic_v<typename D::Scalar>
lns_matrix lns_encode(const Eigen::MatrixBase<D>& x, const lns_quantizer& q,
                      lns_input_scale scale = lns_input_scale::none) {
    q.format.validate();
    if (q.mode == lns_rounding::stochastic_log) detail::check_random_bits(q.random_bits);
    double amax = 0;
    for (Eigen::Index j = 0; j < x.cols(); ++j)
        for (Eigen::Index i = 0; i < x.rows(); ++i) {
            const double v = double(x(i, j));
            if (v != v)
                throw std::invalid_argument("lowbit::lns_encode: element (" + std::to_string(i) + ", " +
                                            std::to_string(j) + ") is NaN: an LNS operand must be a number");
            amax = std::max(amax, std::fabs(v));
        }
    lns_matrix m;
    m.format = q.format;
    if (scale == lns_input_scale::per_tensor_max) m.format = q.format.scaled(lns_scale_exponent_for_max(amax, q.format));
    m.k.resize(x.rows(), x.cols());
    m.sign.resize(x.rows(), x.cols());
    // Nonzero floats and doubles of normal exponent by the threshold table, without branches
    // (subnormal doubles are no float's value: those of a double matrix go the general way).
    if (const auto table = detail::lns_table_rounding::make(m.format, q.mode, q.on_underflow)) {
        // (contiguous columns: x itself where it has them, else one column-major copy)
        const Eigen::Ref<const Eigen::Matrix<typename D::Scalar, Eigen::Dynamic, Eigen::Dynamic>> columns(x);
        bool subnormal = false;
        for (Eigen::Index j = 0; j < x.cols(); ++j)
            subnormal = subnormal | table->encode(columns.col(j).data(), x.rows(), &m.k(0, j), &m.sign(0, j));
        if (!subnormal) return m;
    }
    for (Eigen::Index j = 0; j < x.cols(); ++j)  // (in storage order; the random index is by rows)
        for (Eigen::Index i = 0; i < x.rows(); ++i) {
            const double v = double(x(i, j));
            const std::uint64_t index = std::uint64_t(i) * std::uint64_t(x.cols()) + std::uint64_t(j);
            const std::uint32_t random = q.mode == lns_rounding::stochastic_log ? random_bits_at(q.seed, index) : 0u;
            const std::optional<int> k =
                v == 0 ? std::nullopt : lns_round_magnitude(std::fabs(v), m.format, q.mode, q.on_underflow, random, q.random_bits);
            m.k(i, j) = k ? *k : m.format.k_min();
            m.sign(i, j) = std::int8_t(!k ? 0 : v < 0 ? -1 : 1);
        }
    return m;
}

// The codes of a matrix of lowbit::lns<F> numbers. Throws std::invalid_argument for NaN codes.
template <class D>
    requires detail::is_lns_number<typename D::Scalar>::value
lns_matrix lns_encode(const Eigen::MatrixBase<D>& x) {
    lns_matrix m;
    m.format = D::Scalar::format;
    m.k.resize(x.rows(), x.cols());
    m.sign.resize(x.rows(), x.cols());
    for (Eigen::Index j = 0; j < x.cols(); ++j)
        for (Eigen::Index i = 0; i < x.rows(); ++i) {
            const auto v = x(i, j);
            if (v.is_nan())
                throw std::invalid_argument("lowbit::lns_encode: element (" + std::to_string(i) + ", " +
                                            std::to_string(j) + ") is NaN: an LNS operand must be a number");
            m.k(i, j) = v.is_zero() ? m.format.k_min() : v.k();
            m.sign(i, j) = std::int8_t(v.is_zero() ? 0 : v.is_negative() ? -1 : 1);
        }
    return m;
}

enum class lns_accumulation : std::uint8_t { per_product, bucketed };

constexpr const char* to_string(lns_accumulation a) {
    return a == lns_accumulation::per_product ? "per_product" : a == lns_accumulation::bucketed ? "bucketed" : "?";
}

// How a float operand becomes an LNS operand (lns_gemm on float matrices only).
struct lns_input {
    lns_quantizer quantizer{};  // format lns8, nearest_log; its seed is keyed per role (gemm_random_key)
    lns_input_scale scale = lns_input_scale::per_tensor_max;
};

struct lns_gemm_spec {
    lns_input input_a{};  // A(i, k): random index i*K + k, key gemm_random_key(seed, input_a)
    lns_input input_b{};  // B(k, j): random index k*N + j, key gemm_random_key(seed, input_b)
    lns_converter conversion{};
    lns_accumulation accumulation = lns_accumulation::per_product;
    gemm_spec datapath{};    // accumulator, model, chunks, threads, record_lost (see the header)
    quantizer bucket_sum{};  // bucketed: the rounding of the sum of the scaled buckets

    // Throws std::invalid_argument naming the field when the spec cannot be run.
    void validate() const {
        const auto prefixed = [](const std::string& field, auto&& check) {
            try {
                check();
            } catch (const std::invalid_argument& e) {
                throw std::invalid_argument("lowbit::lns_gemm_spec: " + field + ": " + e.what());
            }
        };
        prefixed("input_a.quantizer.format", [&] { input_a.quantizer.format.validate(); });
        prefixed("input_b.quantizer.format", [&] { input_b.quantizer.format.validate(); });
        prefixed("conversion", [&] { conversion.validate(); });
        prefixed("datapath", [&] { datapath.validate(); });
        prefixed("datapath", [&] { detail::check_accumulator_format(datapath.accumulator, "accumulator"); });
        prefixed("datapath", [&] { detail::check_accumulator_format(datapath.chunk_accumulator, "chunk_accumulator"); });
        prefixed("bucket_sum", [&] { bucket_sum.validate(); });
        prefixed("bucket_sum", [&] { detail::check_accumulator_format(bucket_sum, "bucket_sum"); });
        const auto fail = [](const std::string& what) { throw std::invalid_argument("lowbit::lns_gemm_spec: " + what); };
        if (accumulation != lns_accumulation::per_product && accumulation != lns_accumulation::bucketed)
            fail("accumulation = " + std::to_string(int(accumulation)) + " is not a lowbit::lns_accumulation");
        const auto must_be_unset = [&](const quantizer& q, const char* field, const char* why) {
            if (!q.is_exact()) fail(std::string(field) + " must be unset: " + why);
        };
        must_be_unset(datapath.input_a, "datapath.input_a", "LNS inputs are rounded by input_a.quantizer");
        must_be_unset(datapath.input_b, "datapath.input_b", "LNS inputs are rounded by input_b.quantizer");
        must_be_unset(datapath.product, "datapath.product",
                      "an LNS product is exact (k_a + k_b); its conversion to linear is set by `conversion`");
        if (datapath.model == accumulation::two_level)
            fail("datapath.model = two_level aligns products on their operands' float exponents, which LNS codes do "
                 "not have");
        if (datapath.align == alignment_exponent::operands)
            fail("datapath.align = operands aligns a product on its operands' float exponents, which LNS codes do "
                 "not have: use align = value");
        if (accumulation == lns_accumulation::per_product) {
            must_be_unset(bucket_sum, "bucket_sum", "it rounds the buckets of bucketed accumulation only");
            return;
        }
        for (const auto& [q, field] : {std::pair{&datapath.accumulator, "datapath.accumulator"},
                                       std::pair{&datapath.chunk_accumulator, "datapath.chunk_accumulator"}}) {
            if (q->as_float() != nullptr)
                fail(std::string(field) +
                     " is a float quantizer, but bucketed accumulation sums integers (units of the smallest "
                     "product): use an int_quantizer, or leave it unset (exact)");
            if (const auto* i = q->as_int(); i != nullptr && i->fraction_bits > 0)
                fail(std::string(field) + ".fraction_bits = " + std::to_string(i->fraction_bits) +
                     " must be <= 0 for bucketed accumulation: the bucket terms are integers");
        }
    }
};

namespace detail {

// The exponent range of the products of two LNS formats with the same frac_bits.
struct lns_product_range {
    int q_min = 0, q_max = 0;
};

// (encoded: A and B come from lns_encode, valid by construction: their elements are not checked)
inline lns_product_range lns_check_operands(const lns_matrix& A, const lns_matrix& B, const lns_gemm_spec& spec,
                                            bool encoded = false) {
    if (!encoded) {
        A.validate("A");
        B.validate("B");
    }
    const auto fail = [](const std::string& what) { throw std::invalid_argument("lowbit::lns_gemm: " + what); };
    if (A.format.frac_bits != B.format.frac_bits)
        fail("B.format.frac_bits = " + std::to_string(B.format.frac_bits) + " differs from A.format.frac_bits = " +
             std::to_string(A.format.frac_bits) + ": the product's log k_a + k_b needs one gamma");
    if (A.cols() != B.rows())
        fail("shape mismatch: A is " + std::to_string(A.rows()) + " x " + std::to_string(A.cols()) + " and B is " +
             std::to_string(B.rows()) + " x " + std::to_string(B.cols()) + ": A's columns (K) must equal B's rows");
    const int b = A.format.frac_bits;
    const lns_product_range range{int(floor_shift(std::int64_t(A.format.k_min()) + B.format.k_min(), b)),
                                  int(floor_shift(std::int64_t(A.format.k_max()) + B.format.k_max(), b))};
    if (range.q_min < -1022 || range.q_max > 960)
        fail("the products of A.format and B.format span 2^" + std::to_string(range.q_min) + " .. 2^" +
             std::to_string(range.q_max + 1) + ", outside [2^-1022, 2^961]: move the formats' offsets (scales)");
    if (spec.accumulation == lns_accumulation::bucketed && range.q_max - range.q_min > 1023)
        fail("bucketed accumulation: q_max - q_min = " + std::to_string(range.q_max - range.q_min) +
             " > 1023: the bucket terms 2^(q - q_min) would not fit a double");
    return range;
}

// lns_gemm, once the arguments are checked (lns_core.hpp). A template only so that the compiled
// library can instantiate it once for a whole program (see gemm.hpp).
template <class = void>
Eigen::MatrixXf lns_multiply(const lns_matrix& A, const lns_matrix& B, const lns_gemm_spec& spec,
                             const lns_product_range& range, gemm_stats* stats, gemm_report* report);

// lns_gemm once spec is validated: the operands checked (their elements unless `encoded`), then run.
inline Eigen::MatrixXf lns_gemm_checked(const lns_matrix& A, const lns_matrix& B, const lns_gemm_spec& spec,
                                        bool encoded, gemm_stats* stats, gemm_report* report) {
    const lns_product_range range = lns_check_operands(A, B, spec, encoded);
    if (spec.datapath.record_lost && stats == nullptr)
        throw std::invalid_argument("lowbit::lns_gemm: datapath.record_lost = true needs a gemm_stats to record into");
    return lns_multiply(A, B, spec, range, stats, report);
}

}  // namespace detail

// C = A B on the LNS datapath of `spec` (see the header). A: M x K, B: K x N, encoded. *report,
// when given, says which kernel ran (gemm_report.hpp).
inline Eigen::MatrixXf lns_gemm(const lns_matrix& A, const lns_matrix& B, const lns_gemm_spec& spec,
                                gemm_stats* stats = nullptr, gemm_report* report = nullptr) {
    spec.validate();
    return detail::lns_gemm_checked(A, B, spec, false, stats, report);
}

// C = A B for float (or any arithmetic) matrices: each rounded to LNS by spec.input_a / input_b
// first (random indices as gemm_spec.hpp's input_a and input_b).
template <class DA, class DB>
    requires std::is_arithmetic_v<typename DA::Scalar> && std::is_arithmetic_v<typename DB::Scalar>
Eigen::MatrixXf lns_gemm(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B, const lns_gemm_spec& spec,
                         gemm_stats* stats = nullptr, gemm_report* report = nullptr) {
    spec.validate();
    lns_quantizer qa = spec.input_a.quantizer, qb = spec.input_b.quantizer;
    qa.seed = gemm_random_key(qa.seed, gemm_role::input_a);
    qb.seed = gemm_random_key(qb.seed, gemm_role::input_b);
    return detail::lns_gemm_checked(lns_encode(A, qa, spec.input_a.scale), lns_encode(B, qb, spec.input_b.scale), spec,
                                    true, stats, report);
}

}  // namespace lowbit

#ifndef LOWBIT_COMPILED_LIB
#include <lowbit/datapath/lns_core.hpp>
#endif
