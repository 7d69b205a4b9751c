// Tests of lowbit/datapath/conv.hpp against definitions written here from the header's layout
// comment, never from its loops:
//  * im2col equals "row (c, i, j), column (n, oy, ox) holds images(n, c, oy*stride + i - padding,
//    ox*stride + j - padding), 0 outside", entry by entry, on geometries with stride 1/2,
//    padding 0/1/2, kernels 1/3/5, channels 1/3 and non-square images; the output size equals a
//    count of the window positions that fit;
//  * a direct convolution (six nested loops, in double) equals W * im2col (in double), and
//    columns_to_images(W * im2col) puts every output where the direct convolution has it;
//  * col2im is the adjoint of im2col (<im2col(x), y> == <x, col2im(y)>; exactly for integer data),
//    and equals a naive scatter-add in double;
//  * columns_to_images / images_to_columns follow their layouts and invert each other bit for bit;
//  * invalid geometries and mismatched sizes throw messages naming the field and the value.
#include <lowbit/datapath/conv.hpp>

#include "support/exception_message.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Catch::Contains;
using lowbit::conv_geometry;
using lowbit::matrix_rm;
using lowbit_test::message_of;

// Uniform in [lo, hi), from mt19937_64's fixed output (not the implementation-defined distributions).
struct rng {
    std::mt19937_64 engine;
    explicit rng(std::uint64_t seed) : engine(seed) {}
    double uniform(double lo, double hi) { return lo + (hi - lo) * (double(engine() >> 11) * 0x1p-53); }
    int integer(int lo, int hi) { return lo + int(engine() % std::uint64_t(hi - lo + 1)); }  // [lo, hi]
};

matrix_rm random_matrix(Eigen::Index rows, Eigen::Index cols, rng& r) {
    matrix_rm m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = float(r.uniform(-1, 1));
    return m;
}

// Small integers: every sum of a few of them is exact in float.
matrix_rm integer_matrix(Eigen::Index rows, Eigen::Index cols, rng& r) {
    matrix_rm m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = float(r.integer(-8, 8));
    return m;
}

// The number of window positions along one axis: oy = 0, 1, ... while the window's last row
// oy*stride + kernel - 1 stays inside the padded input (size + 2 padding).
int positions_along(int size, int kernel, int stride, int padding) {
    int count = 0;
    for (int o = 0; o * stride + kernel - 1 <= size + 2 * padding - 1; ++o) ++count;
    return count;
}

// images(n, c, y, x) for a CHW sample, 0 outside the image (the zero padding).
double pixel(const matrix_rm& images, const conv_geometry& g, Eigen::Index n, int c, int y, int x) {
    if (y < 0 || y >= g.height || x < 0 || x >= g.width) return 0.0;
    return images(n, (Eigen::Index(c) * g.height + y) * g.width + x);
}

std::string describe(const conv_geometry& g) {
    return "channels " + std::to_string(g.channels) + ", " + std::to_string(g.height) + " x " +
           std::to_string(g.width) + ", kernel " + std::to_string(g.kernel) + ", stride " +
           std::to_string(g.stride) + ", padding " + std::to_string(g.padding);
}

// Stride 1/2, padding 0/1/2, kernels 1/3/5, channels 1/3, square and non-square images, windows
// that leave a remainder, a kernel as large as the padded input.
std::vector<conv_geometry> geometries() {
    return {
        {.channels = 1, .height = 5, .width = 5, .kernel = 3, .stride = 1, .padding = 0},
        {.channels = 3, .height = 6, .width = 4, .kernel = 3, .stride = 1, .padding = 1},
        {.channels = 3, .height = 7, .width = 5, .kernel = 5, .stride = 2, .padding = 2},
        {.channels = 1, .height = 4, .width = 6, .kernel = 1, .stride = 1, .padding = 0},
        {.channels = 1, .height = 4, .width = 6, .kernel = 1, .stride = 2, .padding = 1},
        {.channels = 3, .height = 5, .width = 8, .kernel = 3, .stride = 2, .padding = 0},
        {.channels = 1, .height = 3, .width = 3, .kernel = 5, .stride = 1, .padding = 1},
        {.channels = 3, .height = 9, .width = 6, .kernel = 5, .stride = 1, .padding = 0},
        {.channels = 3, .height = 6, .width = 7, .kernel = 3, .stride = 2, .padding = 2},
        {.channels = 1, .height = 8, .width = 3, .kernel = 5, .stride = 2, .padding = 1},
        {.channels = 1, .height = 1, .width = 1, .kernel = 1, .stride = 1, .padding = 0},
    };
}

bool same_bits(const matrix_rm& a, const matrix_rm& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
    for (Eigen::Index i = 0; i < a.size(); ++i)
        if (std::bit_cast<std::uint32_t>(a.data()[i]) != std::bit_cast<std::uint32_t>(b.data()[i])) return false;
    return true;
}

}  // namespace

TEST_CASE("conv: output sizes are the number of window positions that fit") {
    for (const conv_geometry& g : geometries()) {
        CAPTURE(describe(g));
        CHECK(g.out_height() == positions_along(g.height, g.kernel, g.stride, g.padding));
        CHECK(g.out_width() == positions_along(g.width, g.kernel, g.stride, g.padding));
        CHECK(g.patch() == g.channels * g.kernel * g.kernel);
        CHECK(g.input_size() == g.channels * g.height * g.width);
    }
}

TEST_CASE("conv: im2col equals its definition entry by entry") {
    rng r(11);
    for (const conv_geometry& g : geometries()) {
        CAPTURE(describe(g));
        const Eigen::Index batch = 3;
        const matrix_rm images = random_matrix(batch, g.input_size(), r);
        const matrix_rm cols = lowbit::im2col(images, g);
        const int oh = positions_along(g.height, g.kernel, g.stride, g.padding);
        const int ow = positions_along(g.width, g.kernel, g.stride, g.padding);
        REQUIRE(cols.rows() == Eigen::Index(g.channels) * g.kernel * g.kernel);
        REQUIRE(cols.cols() == batch * oh * ow);
        int mismatches = 0;
        for (int c = 0; c < g.channels; ++c)
            for (int i = 0; i < g.kernel; ++i)
                for (int j = 0; j < g.kernel; ++j)
                    for (Eigen::Index n = 0; n < batch; ++n)
                        for (int oy = 0; oy < oh; ++oy)
                            for (int ox = 0; ox < ow; ++ox) {
                                const Eigen::Index row = (Eigen::Index(c) * g.kernel + i) * g.kernel + j;
                                const Eigen::Index col = (n * oh + oy) * ow + ox;
                                const double expected = pixel(images, g, n, c, oy * g.stride + i - g.padding,
                                                              ox * g.stride + j - g.padding);
                                if (double(cols(row, col)) != expected) ++mismatches;
                            }
        CHECK(mismatches == 0);
    }
}

TEST_CASE("conv: a direct convolution equals W * im2col, and columns_to_images lays it out") {
    rng r(12);
    for (const conv_geometry& g : geometries()) {
        CAPTURE(describe(g));
        const Eigen::Index batch = 2;
        const int filters = 4, oh = g.out_height(), ow = g.out_width(), k = g.kernel;
        const matrix_rm images = random_matrix(batch, g.input_size(), r);
        const matrix_rm weights = random_matrix(filters, g.patch(), r);  // filter f: (c, i, j) order
        const matrix_rm cols = lowbit::im2col(images, g);
        const Eigen::MatrixXd product = weights.cast<double>() * cols.cast<double>();  // in double
        const matrix_rm out = lowbit::columns_to_images(weights * cols, batch);       // in float
        REQUIRE(out.rows() == batch);
        REQUIRE(out.cols() == Eigen::Index(filters) * oh * ow);
        double worst_double = 0, worst_float = 0;
        for (Eigen::Index n = 0; n < batch; ++n)
            for (int f = 0; f < filters; ++f)
                for (int oy = 0; oy < oh; ++oy)
                    for (int ox = 0; ox < ow; ++ox) {
                        double direct = 0, magnitude = 0;
                        for (int c = 0; c < g.channels; ++c)
                            for (int i = 0; i < k; ++i)
                                for (int j = 0; j < k; ++j) {
                                    const double term =
                                        double(weights(f, (c * k + i) * k + j)) *
                                        pixel(images, g, n, c, oy * g.stride + i - g.padding, ox * g.stride + j - g.padding);
                                    direct += term;
                                    magnitude += std::fabs(term);
                                }
                        // Both sums are of the same exact double products (float x float), in
                        // different orders: each is within K * 2^-53 * sum|terms| of the exact sum.
                        const double k_terms = g.patch();
                        const double in_double = product(f, (n * oh + oy) * ow + ox);
                        worst_double = std::max(worst_double, std::fabs(in_double - direct) /
                                                                  (2 * k_terms * 0x1p-53 * magnitude + 1e-300));
                        // Float GEMM: within K * 2^-24 * sum|terms| (plus its final rounding).
                        const double in_float = out(n, (Eigen::Index(f) * oh + oy) * ow + ox);
                        worst_float = std::max(worst_float, std::fabs(in_float - direct) /
                                                                ((k_terms + 1) * 0x1p-24 * magnitude + 1e-300));
                    }
        CHECK(worst_double <= 1.0);  // ratios to the error bounds
        CHECK(worst_float <= 1.0);
    }
}

TEST_CASE("conv: col2im is the adjoint of im2col and a scatter-add back to the pixels") {
    rng r(13);
    for (const conv_geometry& g : geometries()) {
        CAPTURE(describe(g));
        const Eigen::Index batch = 3;
        const int oh = g.out_height(), ow = g.out_width(), k = g.kernel;
        const Eigen::Index columns = batch * oh * ow;

        // Integer data: every float sum below is exact, so the two inner products are equal exactly.
        {
            const matrix_rm x = integer_matrix(batch, g.input_size(), r);
            const matrix_rm y = integer_matrix(g.patch(), columns, r);
            const double left = (lowbit::im2col(x, g).cast<double>().array() * y.cast<double>().array()).sum();
            const double right = (x.cast<double>().array() * lowbit::col2im(y, batch, g).cast<double>().array()).sum();
            CHECK(left == right);
        }

        // Random data: col2im against a scatter-add in double; the adjoint identity within the
        // rounding of col2im's float sums (each pixel gathers at most kernel^2 values per channel).
        const matrix_rm x = random_matrix(batch, g.input_size(), r);
        const matrix_rm y = random_matrix(g.patch(), columns, r);
        Eigen::MatrixXd scatter = Eigen::MatrixXd::Zero(batch, g.input_size());  // column-major: index (n, p)
        Eigen::MatrixXd scatter_abs = Eigen::MatrixXd::Zero(batch, g.input_size());
        for (int c = 0; c < g.channels; ++c)
            for (int i = 0; i < k; ++i)
                for (int j = 0; j < k; ++j)
                    for (Eigen::Index n = 0; n < batch; ++n)
                        for (int oy = 0; oy < oh; ++oy)
                            for (int ox = 0; ox < ow; ++ox) {
                                const int py = oy * g.stride + i - g.padding, px = ox * g.stride + j - g.padding;
                                if (py < 0 || py >= g.height || px < 0 || px >= g.width) continue;
                                const double v = y((c * k + i) * k + j, (n * oh + oy) * ow + ox);
                                scatter(n, (c * g.height + py) * g.width + px) += v;
                                scatter_abs(n, (c * g.height + py) * g.width + px) += std::fabs(v);
                            }
        const matrix_rm back = lowbit::col2im(y, batch, g);
        REQUIRE(back.rows() == batch);
        REQUIRE(back.cols() == g.input_size());
        const double bound = double(k * k) * 0x1p-24;
        int outside = 0;
        for (Eigen::Index n = 0; n < batch; ++n)
            for (Eigen::Index p = 0; p < g.input_size(); ++p)
                if (std::fabs(double(back(n, p)) - scatter(n, p)) > bound * scatter_abs(n, p)) ++outside;
        CHECK(outside == 0);

        const double left = (lowbit::im2col(x, g).cast<double>().array() * y.cast<double>().array()).sum();
        const double right = (x.cast<double>().array() * back.cast<double>().array()).sum();
        const double scale = (x.cast<double>().array().abs() * scatter_abs.array()).sum();
        CHECK(std::fabs(left - right) <= bound * scale + 1e-12);
    }
}

TEST_CASE("conv: columns_to_images and images_to_columns follow their layouts and invert each other") {
    rng r(14);
    for (const Eigen::Index batch : {1, 2, 5})
        for (const Eigen::Index filters : {1, 3})
            for (const Eigen::Index positions : {1, 6}) {
                CAPTURE(batch, filters, positions);
                const matrix_rm c = random_matrix(filters, batch * positions, r);
                const matrix_rm images = lowbit::columns_to_images(c, batch);
                REQUIRE(images.rows() == batch);
                REQUIRE(images.cols() == filters * positions);
                int wrong = 0;
                for (Eigen::Index n = 0; n < batch; ++n)
                    for (Eigen::Index f = 0; f < filters; ++f)
                        for (Eigen::Index p = 0; p < positions; ++p)
                            wrong += images(n, f * positions + p) != c(f, n * positions + p);
                CHECK(wrong == 0);
                CHECK(same_bits(lowbit::images_to_columns(images, filters), c));

                const matrix_rm other = random_matrix(batch, filters * positions, r);
                const matrix_rm columns = lowbit::images_to_columns(other, filters);
                REQUIRE(columns.rows() == filters);
                REQUIRE(columns.cols() == batch * positions);
                CHECK(same_bits(lowbit::columns_to_images(columns, batch), other));
            }
}

TEST_CASE("conv: invalid geometries and sizes are rejected with the field and the value") {
    const conv_geometry ok{.channels = 2, .height = 5, .width = 4, .kernel = 3, .stride = 1, .padding = 0};
    CHECK_NOTHROW(ok.validate());
    const auto with = [&](auto change) {
        conv_geometry g = ok;
        change(g);
        return message_of([&] { g.validate(); });
    };
    CHECK_THAT(with([](conv_geometry& g) { g.channels = 0; }), Contains("channels = 0 must be >= 1"));
    CHECK_THAT(with([](conv_geometry& g) { g.height = -1; }), Contains("height = -1 must be >= 1"));
    CHECK_THAT(with([](conv_geometry& g) { g.width = 0; }), Contains("width = 0 must be >= 1"));
    CHECK_THAT(with([](conv_geometry& g) { g.kernel = 0; }), Contains("kernel = 0 must be >= 1"));
    CHECK_THAT(with([](conv_geometry& g) { g.stride = 0; }), Contains("stride = 0 must be >= 1"));
    CHECK_THAT(with([](conv_geometry& g) { g.padding = -2; }), Contains("padding = -2 must be >= 0"));
    CHECK_THAT(with([](conv_geometry& g) { g.kernel = 5; }), Contains("kernel = 5 is larger than the padded input"));
    CHECK(with([](conv_geometry& g) { g.kernel = 5, g.padding = 1; }) == "");  // 4 + 2 >= 5
    CHECK_THAT(with([](conv_geometry& g) { g.kernel = 7, g.padding = 1; }), Contains("kernel = 7"));

    // im2col validates the geometry and the image size.
    const matrix_rm images = matrix_rm::Zero(2, ok.input_size());
    conv_geometry bad = ok;
    bad.stride = 0;
    CHECK_THAT(message_of([&] { (void)lowbit::im2col(images, bad); }), Contains("stride = 0"));
    CHECK_THAT(message_of([&] { (void)lowbit::im2col(matrix_rm::Zero(2, 39), ok); }),
               Contains("im2col: each image has 39 values") && Contains("2 x 5 x 4 = 40"));

    // col2im: the columns must be patch x batch * positions.
    const Eigen::Index columns = 2 * ok.out_height() * ok.out_width();  // 2 * 3 * 2 = 12
    CHECK(lowbit::col2im(matrix_rm::Zero(ok.patch(), columns), 2, ok).cols() == ok.input_size());
    CHECK_THAT(message_of([&] { (void)lowbit::col2im(matrix_rm::Zero(ok.patch(), columns), 3, ok); }),
               Contains("col2im: cols is 18 x 12 but the geometry and batch need 18 x 18"));
    CHECK_THAT(message_of([&] { (void)lowbit::col2im(matrix_rm::Zero(17, columns), 2, ok); }),
               Contains("cols is 17 x 12") && Contains("need 18 x 12"));
    CHECK_THAT(message_of([&] { (void)lowbit::col2im(matrix_rm::Zero(ok.patch(), columns), 2, bad); }),
               Contains("stride = 0"));
}
