// lowbit/nn/parallel_product.hpp: the layers' fp32 products (the forward GEMM without a datapath,
// and every backward GEMM), cut into tiles that lowbit's threads take one at a time.
//
//   matrix c = detail::tiled_product(a, b, threads);              // A B
//   matrix d = detail::tiled_product(a.transpose(), b, threads);  // A^T B (any Eigen expressions)
//   detail::add_tiled_product(g, a, b.transpose(), threads);       // G += A B^T
//
// Why not Eigen's own parallel GEMM: its threads wait for each other by spinning at every packed
// block, so on a shared machine a thread that loses its core stalls the others (training the
// flagship's CNN ran 2.5-3.4x slower beside one busy process, 12x beside two), and for the
// layers' thin shapes (32 x 9 x 100,000) it splits the work badly. Here each tile is an ordinary
// one-thread Eigen product, and lowbit's threads take the next tile when they finish one
// (datapath/tile_pool.hpp), so a slowed thread simply takes fewer tiles.
//
// The tiles depend on the shapes only, never on the thread count, and a product split along its
// reduction adds its parts in a fixed order: results are the same bits for any number of threads.
#pragma once

#include <lowbit/datapath/tile_pool.hpp>
#include <lowbit/nn/tensor.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace lowbit::nn::detail {

// A tile is at least this much work (multiply-accumulates; about 30-100 microseconds), there are
// at most max_tiles of them, and each spans at least min_tile_extent rows or columns.
inline constexpr double tile_work = double(1 << 21);
inline constexpr Eigen::Index max_tiles = 64, min_tile_extent = 16;

// How many tiles a product of this much work over `extent` rows or columns is cut into.
inline Eigen::Index tile_count(double work, Eigen::Index extent) {
    const Eigen::Index by_work = Eigen::Index(work / tile_work), by_extent = extent / min_tile_extent;
    return std::max<Eigen::Index>(1, std::min({by_work, by_extent, max_tiles}));
}

// Tile t of `tiles` near-equal pieces of [0, extent): its first index and its length.
struct span_of_tile {
    Eigen::Index begin, length;
};
inline span_of_tile tile_span(Eigen::Index t, Eigen::Index tiles, Eigen::Index extent) {
    const Eigen::Index begin = extent * t / tiles, end = extent * (t + 1) / tiles;
    return {begin, end - begin};
}

// C = A B, cut along the longer of C's two sides.
template <class A, class B>
matrix tiled_product(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b, int threads) {
    eigen_assert(a.cols() == b.rows());
    const Eigen::Index m = a.rows(), n = b.cols();
    matrix c(m, n);
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
    return c;
}

// G += A B (the weight gradient G += dC X^T). When the reduction (A's columns) is longer than G's
// columns, it is cut into parts whose products are added to G in order (the layers' conv weight
// gradients: 64 x 288 from a reduction over 25,088 positions); otherwise G's columns are cut.
template <class A, class B>
void add_tiled_product(matrix& g, const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b, int threads) {
    eigen_assert(a.cols() == b.rows() && g.rows() == a.rows() && g.cols() == b.cols());
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

}  // namespace lowbit::nn::detail
