// lowbit/nn/parallel_product_core.hpp: the tiled products of parallel_product.hpp. That header
// includes this one at its end in header-only use; under LOWBIT_COMPILED_LIB (CMake target
// lowbit::compiled) src/compiled.cpp compiles it once, with the four storage pairs of the operands
// and both ways of cutting: each is an instantiation of Eigen's float product, most of the compile
// time of a layer.
#pragma once

#include <lowbit/datapath/tile_pool.hpp>
#include <lowbit/nn/parallel_product.hpp>
#include <lowbit/nn/tensor.hpp>

#include <Eigen/Core>

#include <cstddef>
#include <vector>

namespace lowbit::nn::detail {

// f(x as an Eigen map of its storage order).
template <class F>
void with_map(const product_operand& x, F&& f) {
    if (x.column_major)
        f(Eigen::Map<const Eigen::MatrixXf>(x.data, x.rows, x.cols));
    else
        f(Eigen::Map<const matrix>(x.data, x.rows, x.cols));
}

// C = A B, cut along the longer of C's two sides.
template <class A, class B>
void assign_in_tiles(matrix& c, const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b, int threads) {
    const Eigen::Index m = a.rows(), n = b.cols();
    c.resize(m, n);
    const bool by_columns = n >= m;
    const Eigen::Index extent = by_columns ? n : m;
    const Eigen::Index tiles = tile_count(double(m) * double(a.cols()) * double(n), extent);
    lowbit::detail::for_each_tile(tiles, threads, [&](Eigen::Index t) {
        const span_of_tile s = tile_span(t, tiles, extent);
        if (by_columns)
            c.middleCols(s.begin, s.length).noalias() = a * b.middleCols(s.begin, s.length);
        else
            c.middleRows(s.begin, s.length).noalias() = a.middleRows(s.begin, s.length) * b;
    });
}

// G += A B: G's columns cut, or the reduction cut into parts added to G in order.
template <class A, class B>
void add_in_tiles(matrix& g, const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b, int threads) {
    const Eigen::Index m = g.rows(), k = a.cols(), n = g.cols();
    const double work = double(m) * double(k) * double(n);
    if (k <= n) {
        const Eigen::Index tiles = tile_count(work, n);
        lowbit::detail::for_each_tile(tiles, threads, [&](Eigen::Index t) {
            const span_of_tile s = tile_span(t, tiles, n);
            g.middleCols(s.begin, s.length).noalias() += a * b.middleCols(s.begin, s.length);
        });
        return;
    }
    const Eigen::Index parts = tile_count(work, k);
    std::vector<matrix> partial(static_cast<std::size_t>(parts));
    lowbit::detail::for_each_tile(parts, threads, [&](Eigen::Index t) {
        const span_of_tile s = tile_span(t, parts, k);
        partial[std::size_t(t)].noalias() = a.middleCols(s.begin, s.length) * b.middleRows(s.begin, s.length);
    });
    for (const matrix& p : partial) g += p;
}

template <class>
void product_in_tiles(const product_operand& a, const product_operand& b, matrix& c, bool accumulate, int threads) {
    eigen_assert(a.cols == b.rows && (!accumulate || (c.rows() == a.rows && c.cols() == b.cols)));
    with_map(a, [&](const auto& ma) {
        with_map(b, [&](const auto& mb) {
            if (accumulate)
                add_in_tiles(c, ma, mb, threads);
            else
                assign_in_tiles(c, ma, mb, threads);
        });
    });
}

#ifdef LOWBIT_COMPILED_LIB
extern template void product_in_tiles<>(const product_operand&, const product_operand&, matrix&, bool, int);
#endif

}  // namespace lowbit::nn::detail
