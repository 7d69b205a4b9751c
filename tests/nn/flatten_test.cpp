// Tests of lowbit/nn/flatten.hpp: channels x height x width to {C*H*W, 1, 1} with the values
// unchanged bit for bit (a sample is one CHW row: element (c, y, x) stays at column
// (c*H + y)*W + x), in both passes; backward hands dL/dy back unchanged with the input's shape
// (the identity map's exact gradient).
#include <lowbit/nn/flatten.hpp>

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <bit>
#include <cstdint>
#include <random>

namespace {

using lowbit::nn::flatten;
using lowbit::nn::matrix;
using lowbit::nn::pass;
using lowbit::nn::shape3;
using lowbit::nn::tensor;

matrix random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
    std::mt19937_64 engine(seed);
    matrix m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = float(double(engine() >> 11) * 0x1p-53 - 0.5);
    return m;
}

bool same_bits(const matrix& a, const matrix& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
    for (Eigen::Index i = 0; i < a.size(); ++i)
        if (std::bit_cast<std::uint32_t>(a.data()[i]) != std::bit_cast<std::uint32_t>(b.data()[i])) return false;
    return true;
}

}  // namespace

TEST_CASE("flatten: the shape becomes {C*H*W, 1, 1}, the values do not move") {
    flatten f;
    CHECK(f.describe() == "flatten");
    for (const shape3 in : {shape3{3, 4, 5}, shape3{1, 1, 7}, shape3{6, 1, 1}, shape3{2, 3, 1}}) {
        CAPTURE(in.to_string());
        CHECK(f.output_shape(in) == shape3{in.size(), 1, 1});
        const matrix x = random_matrix(4, in.size(), 71);
        for (const pass p : {pass::inference, pass::training}) {
            const tensor y = f.forward({x, in}, p);
            CHECK(y.shape == shape3{in.size(), 1, 1});
            CHECK(same_bits(y.values, x));
            // Element (n, c, y, x) of the input is feature (c*H + y)*W + x of the output.
            const int c = in.channels - 1, yy = in.height - 1, xx = in.width / 2;
            CHECK(y.values(3, (c * in.height + yy) * in.width + xx) == x(3, (c * in.height + yy) * in.width + xx));
        }
    }
}

TEST_CASE("flatten: backward returns dL/dy unchanged in the input's shape") {
    flatten f;
    const shape3 in{2, 3, 4};
    const matrix x = random_matrix(3, in.size(), 72), dy = random_matrix(3, in.size(), 73);
    (void)f.forward({x, in}, pass::training);
    const tensor dx = f.backward({dy, {in.size(), 1, 1}});
    CHECK(dx.shape == in);
    CHECK(same_bits(dx.values, dy));
    // A later forward with another shape: backward follows the latest input.
    const shape3 other{5, 1, 2};
    (void)f.forward({random_matrix(2, other.size(), 74), other}, pass::training);
    CHECK(f.backward({random_matrix(2, other.size(), 75), {other.size(), 1, 1}}).shape == other);
}
