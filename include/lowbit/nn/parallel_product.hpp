// lowbit/nn/parallel_product.hpp: the layers' fp32 products (the forward GEMM without a datapath,
// and every backward GEMM), cut into tiles that lowbit's threads take one at a time.
//
//   matrix c = detail::tiled_product(a, b, threads);              // A B
//   matrix d = detail::tiled_product(a.transpose(), b, threads);  // A^T B (row-major matrices)
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

#include <Eigen/Core>

#include <algorithm>
#include <type_traits>

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

// An operand of a product: a row-major matrix or the transpose of one (a column-major view of the
// same storage), so that every product of the layers is one of four storage pairs.
struct product_operand {
    const float* data;
    Eigen::Index rows, cols;  // of the operand as it is multiplied
    bool column_major;        // true for a transposed row-major matrix
    product_operand(const matrix& m) : data(m.data()), rows(m.rows()), cols(m.cols()), column_major(false) {}
    template <class M>
        requires std::is_same_v<std::remove_const_t<M>, matrix>
    product_operand(const Eigen::Transpose<M>& t)
        : data(t.nestedExpression().data()), rows(t.rows()), cols(t.cols()), column_major(true) {}
};

// C = A B, or C += A B with `accumulate` (C then already A's rows x B's columns), in tiles
// (parallel_product_core.hpp). A template of a dummy parameter so that lowbit::compiled can
// compile it once for a program (see datapath/gemm.hpp).
template <class = void>
void product_in_tiles(const product_operand& a, const product_operand& b, matrix& c, bool accumulate, int threads);

// C = A B, cut along the longer of C's two sides.
inline matrix tiled_product(const product_operand& a, const product_operand& b, int threads) {
    matrix c;
    product_in_tiles(a, b, c, false, threads);
    return c;
}

// G += A B (the weight gradient G += dC X^T). When the reduction (A's columns) is longer than G's
// columns, it is cut into parts whose products are added to G in order (the layers' conv weight
// gradients: 64 x 288 from a reduction over 25,088 positions); otherwise G's columns are cut.
inline void add_tiled_product(matrix& g, const product_operand& a, const product_operand& b, int threads) {
    product_in_tiles(a, b, g, true, threads);
}

}  // namespace lowbit::nn::detail

#ifndef LOWBIT_COMPILED_LIB
#include <lowbit/nn/parallel_product_core.hpp>
#endif
