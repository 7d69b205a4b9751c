// Tests of lowbit/nn/parallel_product.hpp (the layers' fp32 products in tiles on lowbit's threads).
//  * Against products summed in double by plain loops, within the float error bound of a dot
//    product of length K: |error| <= K * 2^-24 * sum_k |a_ik b_kj| (plus a little for the
//    accumulated rounding of the bound itself), on the layers' shapes (thin and wide: the CNN's
//    conv1, conv2 and fc1 forward and backward) and on ragged ones.
//  * The same bits for 1, 2 and 3 threads (the tiles depend on the shapes only).
//  * The reduction-split G += A B adds to what G held.
//  * Threads: Eigen's own thread setting outside the tiles is unchanged afterwards.
//  * conv2d's and linear's forward and backward passes: the same bits on 1 and 2 threads.
#include <lowbit/nn/parallel_product.hpp>

#include <lowbit/nn/conv2d.hpp>
#include <lowbit/nn/linear.hpp>

#include "support/random_floats.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <random>
#include <tuple>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using lowbit::nn::matrix;
namespace detail = lowbit::nn::detail;

matrix random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
    std::mt19937_64 engine(seed);
    matrix m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = float(double(engine() >> 11) * 0x1p-53 * 2 - 1);
    return m;
}

// |got - exact| within K float roundings of the magnitudes' sum, element by element.
template <class A, class B>
void check_product(const matrix& got, const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b,
                   const matrix* added_to = nullptr) {
    REQUIRE(got.rows() == a.rows());
    REQUIRE(got.cols() == b.cols());
    const Eigen::Index k = a.cols();
    std::int64_t bad = 0;
    for (Eigen::Index i = 0; i < got.rows(); ++i)
        for (Eigen::Index j = 0; j < got.cols(); ++j) {
            double exact = added_to != nullptr ? double((*added_to)(i, j)) : 0.0, magnitude = std::fabs(exact);
            for (Eigen::Index l = 0; l < k; ++l) {
                const double term = double(a(i, l)) * double(b(l, j));
                exact += term, magnitude += std::fabs(term);
            }
            if (std::fabs(double(got(i, j)) - exact) > double(k + 2) * 0x1p-24 * magnitude * 1.01) ++bad;
        }
    CHECK(bad == 0);
}

}  // namespace

TEST_CASE("tiled_product equals the product summed in double, within float's error bound") {
    // (M, K, N): conv1 forward on a batch of 16 (32 x 9 x 16*784), conv2's (64 x 288 x 4*196), fc1's
    // (128 x 3136 x 64), fc2's, and ragged shapes around the tile limits.
    const auto shapes = {std::tuple{32, 9, 12544}, std::tuple{64, 288, 784}, std::tuple{128, 3136, 64},
                         std::tuple{10, 128, 64},  std::tuple{1, 1, 1},      std::tuple{17, 33, 1000},
                         std::tuple{1000, 33, 17}, std::tuple{3, 5000, 2}};
    std::uint64_t seed = 1;
    for (const auto& [m, k, n] : shapes) {
        CAPTURE(m, k, n);
        const matrix a = random_matrix(m, k, seed++), b = random_matrix(k, n, seed++);
        for (const int threads : {1, 2}) {
            CAPTURE(threads);
            check_product(detail::tiled_product(a, b, threads), a, b);
            // A^T B: the input gradient's product, with A stored as K x M.
            const matrix at = a.transpose();
            check_product(detail::tiled_product(at.transpose(), b, threads), a, b);
            // G += A B^T: the weight gradient's, with B stored as N x K; G starts non-zero.
            const matrix bt = b.transpose(), start = random_matrix(m, n, seed);
            matrix g = start;
            detail::add_tiled_product(g, a, bt.transpose(), threads);
            check_product(g, a, b, &start);
        }
    }
}

TEST_CASE("tiled products are the same bits for any thread count") {
    // Shapes whose tiles are many: the columns (conv), the rows (a tall product), the reduction
    // (a weight gradient over many positions).
    const auto shapes = {std::tuple{32, 9, 50000}, std::tuple{64, 288, 3136}, std::tuple{3136, 128, 64},
                         std::tuple{64, 25088, 288}};
    std::uint64_t seed = 100;
    for (const auto& [m, k, n] : shapes) {
        CAPTURE(m, k, n);
        const matrix a = random_matrix(m, k, seed++), b = random_matrix(k, n, seed++);
        const matrix one = detail::tiled_product(a, b, 1);
        matrix g1 = matrix::Zero(m, n);
        detail::add_tiled_product(g1, a, b, 1);
        for (const int threads : {2, 3}) {
            CAPTURE(threads);
            CHECK(detail::tiled_product(a, b, threads) == one);
            matrix g = matrix::Zero(m, n);
            detail::add_tiled_product(g, a, b, threads);
            CHECK(g == g1);
        }
    }
}

TEST_CASE("tile counts: at least one, never more than the extent allows or max_tiles") {
    CHECK(detail::tile_count(0, 0) == 1);
    CHECK(detail::tile_count(1e12, 1) == 1);
    CHECK(detail::tile_count(1e12, 1 << 20) == detail::max_tiles);
    CHECK(detail::tile_count(10 * detail::tile_work, 1 << 20) == 10);
    CHECK(detail::tile_count(1e12, 5 * detail::min_tile_extent + 3) == 5);
    // The spans cover [0, extent) in order, without gaps.
    for (const Eigen::Index tiles : {1, 3, 7, 64}) {
        Eigen::Index next = 0;
        for (Eigen::Index t = 0; t < tiles; ++t) {
            const detail::span_of_tile s = detail::tile_span(t, tiles, 1001);
            CHECK(s.begin == next);
            CHECK(s.length >= 1001 / tiles);
            next = s.begin + s.length;
        }
        CHECK(next == 1001);
    }
}

#if defined(_OPENMP)
TEST_CASE("the tiles leave the caller's OpenMP thread count as it was") {
    const int before = omp_get_max_threads();
    const matrix a = random_matrix(64, 288, 5), b = random_matrix(288, 5000, 6);
    (void)detail::tiled_product(a, b, 2);
    CHECK(omp_get_max_threads() == before);
}
#endif

#if defined(_OPENMP)
TEST_CASE("a convolution's and a linear layer's training pass are the same bits on 1 and 2 threads") {
    // The layers' fp32 products run on lowbit's threads (the number OpenMP allows: thread_count(0)),
    // in tiles fixed by the shapes.
    const lowbit::conv_geometry g{.channels = 8, .height = 14, .width = 14, .kernel = 3, .padding = 1};
    const matrix x = random_matrix(32, g.input_size(), 11);
    const matrix dy_conv = random_matrix(32, 16 * 14 * 14, 12);
    const matrix x_linear = random_matrix(64, 300, 13), dy_linear = random_matrix(64, 40, 14);
    struct results {
        matrix conv_y, conv_dx, conv_dw, linear_y, linear_dx, linear_dw;
    };
    const auto run = [&](int threads) {
        const int before = omp_get_max_threads();
        omp_set_num_threads(threads);
        lowbit::nn::conv2d conv(g, 16, 3);
        lowbit::nn::linear fc(300, 40, 4);
        results r;
        r.conv_y = conv.forward({x, {g.channels, g.height, g.width}}, lowbit::nn::pass::training).values;
        r.conv_dx = conv.backward({dy_conv, {16, 14, 14}}).values;
        r.conv_dw = conv.weight().grad;
        r.linear_y = fc.forward({x_linear, {300, 1, 1}}, lowbit::nn::pass::training).values;
        r.linear_dx = fc.backward({dy_linear, {40, 1, 1}}).values;
        r.linear_dw = fc.weight().grad;
        omp_set_num_threads(before);
        return r;
    };
    const results one = run(1), two = run(2);
    CHECK(one.conv_y == two.conv_y);
    CHECK(one.conv_dx == two.conv_dx);
    CHECK(one.conv_dw == two.conv_dw);
    CHECK(one.linear_y == two.linear_y);
    CHECK(one.linear_dx == two.linear_dx);
    CHECK(one.linear_dw == two.linear_dw);
}
#endif
