// lowbit/datapath/gemm.hpp: C = A B on a simulated accelerator datapath (see gemm_spec.hpp).
//
//   lowbit::gemm_stats stats;
//   Eigen::MatrixXf C = lowbit::gemm(A, B, spec, &stats);   // A: M x K, B: K x N, any storage
//   lowbit::gemm(A, B, C, spec);                            // fills C (resized when it can be)
//   lowbit::gemm(A, B, C, spec, &stats, &report);           // report: which kernel ran, and why
//                                                           // no faster one (gemm_report.hpp)
//   Eigen::MatrixXf D = lowbit::gemm_add(A, B, C, spec);    // D = A B + C, the accumulation
//                                                           // starting from C (gemm_spec.hpp)
//   lowbit::gemm_add(A, B, C, D, spec, &stats, &report);    // fills D
//   float d = lowbit::dot(a, b, spec);                      // spans of K floats, or Eigen vectors
//
// Threads: spec.threads (0: OpenMP's default) split the rows of C; every output is computed by
// one thread in a fixed order, so results and counts are identical for any thread count.
// Events are counted only when a gemm_stats is given, and cost nothing otherwise.
//
// What runs under gemm (the rounding of the inputs, every accumulation kernel, the exact path) is
// in gemm_core.hpp: included at the end of this header in header-only use, and left out under
// LOWBIT_COMPILED_LIB (CMake target lowbit::compiled), where src/compiled.cpp has compiled it once.
#pragma once

#include <lowbit/datapath/gemm_report.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/datapath/quantizer.hpp>
#include <lowbit/datapath/reused_buffer.hpp>
#include <lowbit/datapath/thread_count.hpp>
#include <lowbit/datapath/tile_pool.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace lowbit {

namespace detail {

using row_major_floats = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_major_view = Eigen::Map<row_major_floats>;  // over a reused_buffer

// The two entry points into gemm_core.hpp. They are function templates of a dummy parameter only
// so that they can be compiled once for a whole program: their kernels are most of the compile
// time of any file that calls gemm (85 of 95 s at -O3 for a file with one call).

// The n elements at piece, elements begin.. of an input, quantized (element e with random index
// e, so that any split of the array gives the same values); with `stats`, their input events
// added to it.
template <class = void>
void quantize_rows_piece(const quantizer& q, gemm_role role, float* piece, std::size_t begin, std::size_t n,
                         gemm_stats* stats);

// C (row-major M x N) from the quantized A (row-major M x K) and B (row-major K x N), each
// output's accumulation starting from addend[i*N + j] (the quantized C of gemm_add; nullptr: +0):
// the integer chain for integer accumulators, the vectorized paths for float ones where they apply
// (each says why not in the report), the exact path otherwise. Resets *report; adds the MACs and
// events to *stats.
template <class = void>
void multiply_quantized(const row_major_view& a, const row_major_view& b_rows, const float* addend,
                        row_major_view& c, const gemm_spec& spec, gemm_stats* stats, gemm_report* report);

// Applies an input quantizer to the n elements at data (random index e for element e), split
// among threads.
inline void quantize_input(const quantizer& q, gemm_role role, float* data, std::size_t n, int threads = 1) {
    const std::int64_t pieces = std::max<std::int64_t>(1, std::min<std::int64_t>(threads, std::int64_t(n / 4096)));
    const std::size_t piece = (n + std::size_t(pieces) - 1) / std::size_t(pieces);
    for_each_tile(pieces, int(pieces), [&](std::int64_t t) {
        const std::size_t begin = std::size_t(t) * piece, end = std::min(n, begin + piece);
        if (begin < end) quantize_rows_piece(q, role, data + begin, begin, end - begin, nullptr);
    });
}

// dst(i, j) = src(i, j) for the rows [first, first + count), cast to dst's scalar, in tiles of
// 32 x 32: a copy between storage orders then reads and writes whole cache lines (Eigen's
// assignment walks one side with a stride of a whole column, missing the cache at every element).
template <class S, class D>
void copy_rows_tiled(const Eigen::MatrixBase<S>& src, Eigen::MatrixBase<D>& dst, Eigen::Index first, Eigen::Index count) {
    using T = typename D::Scalar;
    constexpr Eigen::Index tile = 32;
    for (Eigen::Index r0 = first; r0 < first + count; r0 += tile)
        for (Eigen::Index c0 = 0; c0 < src.cols(); c0 += tile) {
            const Eigen::Index r1 = std::min(r0 + tile, first + count), c1 = std::min(c0 + tile, src.cols());
            for (Eigen::Index r = r0; r < r1; ++r)
                for (Eigen::Index c = c0; c < c1; ++c) dst.coeffRef(r, c) = T(src.coeff(r, c));
        }
}

// The rows [first, first + count) of src, cast to float, into the same rows of dst (row-major),
// then quantized: element e of dst has random index e, whatever the split of the rows. With
// `stats`, the piece's input events are added to it.
template <class D>
void copy_quantized_rows(const Eigen::MatrixBase<D>& src, row_major_view& dst, Eigen::Index first, Eigen::Index count,
                         const quantizer& q, gemm_role role, gemm_stats* stats) {
    copy_rows_tiled(src, dst, first, count);
    const std::size_t begin = std::size_t(first * dst.cols()), n = std::size_t(count * dst.cols());
    quantize_rows_piece(q, role, dst.data() + begin, begin, n, stats);
}

// f(first, count) for pieces of the rows [0, rows) of a matrix of `size` elements, split among up
// to `threads` threads (one piece for small matrices, where threads cost more than they save).
template <class F>
void for_row_pieces(Eigen::Index rows, Eigen::Index size, int threads, F&& f) {
    const Eigen::Index pieces = std::max<Eigen::Index>(1, std::min<Eigen::Index>(threads, size / 16384));
    const Eigen::Index piece = (rows + pieces - 1) / pieces;
    for_each_tile(pieces, int(pieces), [&](std::int64_t t) {
        const Eigen::Index first = std::min(rows, t * piece), count = std::min(rows, first + piece) - first;
        if (count > 0) f(first, count);
    });
}

// src cast to float, quantized, as a row-major matrix in the slot's buffer: a transposing copy for
// column-major src, which like the rounding is split among threads by rows (a serial copy would cap
// the speed-up of the whole GEMM).
template <class D>
row_major_view quantized_rows(const Eigen::MatrixBase<D>& src, const quantizer& q, gemm_role role, int threads,
                              buffer_slot slot, gemm_stats* stats = nullptr) {
    row_major_view dst(reused_buffer(slot, std::size_t(src.size())), src.rows(), src.cols());
    for_row_pieces(src.rows(), src.size(), threads, [&](Eigen::Index first, Eigen::Index count) {
        copy_quantized_rows(src, dst, first, count, q, role, stats);
    });
    return dst;
}

// C resized to rows x cols where it can be (a dynamic Matrix or Array within its compile-time
// bounds); a C of another shape that cannot be (fixed-size, or a Map, Block or Ref, which
// Eigen's resize would only assert on) is refused with the shapes named.
template <class D>
void fit_output(Eigen::MatrixBase<D>& C, Eigen::Index rows, Eigen::Index cols, const char* function) {
    if (C.rows() == rows && C.cols() == cols) return;
    if constexpr (std::is_base_of_v<Eigen::PlainObjectBase<D>, D>) {
        const auto fits = [](int fixed, int max, Eigen::Index n) {
            return fixed == Eigen::Dynamic ? (max == Eigen::Dynamic || n <= max) : n == fixed;
        };
        if (fits(D::RowsAtCompileTime, D::MaxRowsAtCompileTime, rows) &&
            fits(D::ColsAtCompileTime, D::MaxColsAtCompileTime, cols)) {
            C.derived().resize(rows, cols);
            return;
        }
    }
    throw std::invalid_argument(std::string(function) + ": output shape: C is " + std::to_string(C.rows()) + " x " +
                                std::to_string(C.cols()) + " and must be " + std::to_string(rows) + " x " +
                                std::to_string(cols) +
                                ", which it cannot be resized to (fixed-size, or a Map, Block or Ref)");
}

inline void check_accumulator_format(const quantizer& q, const char* field) {
    if (const auto* f = q.as_float(); f != nullptr && f->format.man_bits > 50)
        throw std::invalid_argument(std::string("lowbit::gemm_spec: ") + field + ": man_bits = " +
                                    std::to_string(f->format.man_bits) +
                                    " is more than the 50 an exactly simulated accumulator can have: leave "
                                    "the quantizer unset for an exact accumulator");
}

// The two front ends in one: D = A B (+ C when `addend` points at it), the output written to D.
template <class DA, class DB, class DC, class DD>
void gemm_into(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B, const Eigen::MatrixBase<DC>* addend,
               Eigen::MatrixBase<DD>& D, const gemm_spec& spec, gemm_stats* stats, gemm_report* report,
               const char* function) {
    spec.validate();
    check_accumulator_format(spec.accumulator, "accumulator");
    check_accumulator_format(spec.chunk_accumulator, "chunk_accumulator");
    if (A.cols() != B.rows())
        throw std::invalid_argument(std::string(function) + ": shape mismatch: A is " + std::to_string(A.rows()) +
                                    " x " + std::to_string(A.cols()) + " and B is " + std::to_string(B.rows()) + " x " +
                                    std::to_string(B.cols()) + ": A's columns (K) must equal B's rows");
    const Eigen::Index M = A.rows(), N = B.cols();
    if (addend != nullptr && (addend->rows() != M || addend->cols() != N))
        throw std::invalid_argument(std::string(function) + ": shape mismatch: C is " +
                                    std::to_string(addend->rows()) + " x " + std::to_string(addend->cols()) +
                                    " and A B is " + std::to_string(M) + " x " + std::to_string(N));
    fit_output(D, M, N, function);
    if (spec.record_lost && stats == nullptr)
        throw std::invalid_argument(std::string(function) + ": record_lost = true needs a gemm_stats to record into");

    const int threads = thread_count(spec.threads);
    const row_major_view a = quantized_rows(A, spec.input_a, gemm_role::input_a, threads, buffer_slot::input_a, stats);
    const row_major_view b_rows =
        quantized_rows(B, spec.input_b, gemm_role::input_b, threads, buffer_slot::input_b, stats);
    const float* c_in = nullptr;
    if (addend != nullptr)  // (C's input events are not counted: gemm_stats counts A's and B's)
        c_in = quantized_rows(*addend, spec.addend, gemm_role::addend, threads, buffer_slot::addend).data();

    row_major_view d(reused_buffer(buffer_slot::output, std::size_t(M * N)), M, N);
    multiply_quantized(a, b_rows, c_in, d, spec, stats, report);
    // Back in D's storage order and type, by rows split among threads as above.
    for_row_pieces(M, d.size(), threads, [&](Eigen::Index first, Eigen::Index count) {
        copy_rows_tiled(d, D, first, count);
    });
}

}  // namespace detail


template <class DA, class DB, class DC>
void gemm(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B, Eigen::MatrixBase<DC>& C,
          const gemm_spec& spec, gemm_stats* stats = nullptr, gemm_report* report = nullptr) {
    detail::gemm_into(A, B, static_cast<const Eigen::MatrixBase<DC>*>(nullptr), C, spec, stats, report, "lowbit::gemm");
}

// D = A B + C on the datapath: each output's accumulation starts from C(i, j), rounded by
// spec.addend (gemm_spec.hpp says where C enters each model). C: M x N, any storage.
template <class DA, class DB, class DC, class DD>
void gemm_add(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B, const Eigen::MatrixBase<DC>& C,
              Eigen::MatrixBase<DD>& D, const gemm_spec& spec, gemm_stats* stats = nullptr,
              gemm_report* report = nullptr) {
    detail::gemm_into(A, B, &C, D, spec, stats, report, "lowbit::gemm_add");
}

// Overload for an Eigen::Ref, a Map or a block passed as a temporary D.
template <class DA, class DB, class DC, class DD>
void gemm_add(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B, const Eigen::MatrixBase<DC>& C,
              Eigen::MatrixBase<DD>&& D, const gemm_spec& spec, gemm_stats* stats = nullptr,
              gemm_report* report = nullptr) {
    gemm_add(A, B, C, D, spec, stats, report);
}

template <class DA, class DB, class DC>
Eigen::MatrixXf gemm_add(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B,
                         const Eigen::MatrixBase<DC>& C, const gemm_spec& spec, gemm_stats* stats = nullptr,
                         gemm_report* report = nullptr) {
    Eigen::MatrixXf D(A.rows(), B.cols());
    gemm_add(A, B, C, D, spec, stats, report);
    return D;
}

template <class DA, class DB>
Eigen::MatrixXf gemm(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B, const gemm_spec& spec,
                     gemm_stats* stats = nullptr, gemm_report* report = nullptr) {
    Eigen::MatrixXf C(A.rows(), B.cols());
    gemm(A, B, C, spec, stats, report);
    return C;
}

// Overload for an Eigen::Ref, a Map or a block passed as a temporary.
template <class DA, class DB, class DC>
void gemm(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DB>& B, Eigen::MatrixBase<DC>&& C,
          const gemm_spec& spec, gemm_stats* stats = nullptr, gemm_report* report = nullptr) {
    gemm(A, B, C, spec, stats, report);
}

// The dot product of a and b on the datapath: gemm of a 1 x K by a K x 1.
inline float dot(std::span<const float> a, std::span<const float> b, const gemm_spec& spec,
                 gemm_stats* stats = nullptr) {
    if (a.size() != b.size())
        throw std::invalid_argument("lowbit::dot: shape mismatch: a has " + std::to_string(a.size()) +
                                    " elements and b has " + std::to_string(b.size()));
    const Eigen::Map<const Eigen::Matrix<float, 1, Eigen::Dynamic>> row(a.data(), Eigen::Index(a.size()));
    const Eigen::Map<const Eigen::VectorXf> column(b.data(), Eigen::Index(b.size()));
    Eigen::Matrix<float, 1, 1> c;
    gemm(row, column, c, spec, stats);
    return c(0, 0);
}

// The same for Eigen vectors (rows or columns, any expression: a.row(i), v.segment(k, n), a map).
template <class DA, class DB>
float dot(const Eigen::MatrixBase<DA>& a, const Eigen::MatrixBase<DB>& b, const gemm_spec& spec,
          gemm_stats* stats = nullptr) {
    if ((a.rows() != 1 && a.cols() != 1) || (b.rows() != 1 && b.cols() != 1))
        throw std::invalid_argument("lowbit::dot: a is " + std::to_string(a.rows()) + " x " + std::to_string(a.cols()) +
                                    " and b is " + std::to_string(b.rows()) + " x " + std::to_string(b.cols()) +
                                    ": both must be vectors (one row or one column; lowbit::gemm multiplies matrices)");
    if (a.size() != b.size())
        throw std::invalid_argument("lowbit::dot: shape mismatch: a has " + std::to_string(a.size()) +
                                    " elements and b has " + std::to_string(b.size()));
    const Eigen::Matrix<float, 1, Eigen::Dynamic> row = a.reshaped().transpose().template cast<float>();
    const Eigen::VectorXf column = b.reshaped().template cast<float>();
    Eigen::Matrix<float, 1, 1> c;
    gemm(row, column, c, spec, stats);
    return c(0, 0);
}

}  // namespace lowbit


#ifndef LOWBIT_COMPILED_LIB
#include <lowbit/datapath/gemm_core.hpp>
#endif
