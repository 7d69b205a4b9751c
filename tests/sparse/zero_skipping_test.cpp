// Tests of lowbit/sparse/zero_skipping.hpp: the non-zero product count against a naive count over
// every (i, k, j), a convolution's count against the SCNN model's multiplies on the same tensors,
// and skipping zero pairs against the dense datapath: lowbit::dot over each output's non-zero
// pairs only equals lowbit::gemm's output bit for bit, zero outputs included.
#include <lowbit/sparse/zero_skipping.hpp>

#include <lowbit/analysis/scnn_model.hpp>
#include <lowbit/datapath/gemm.hpp>

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

namespace {

// Random values on the FP8 e4m3 grid, a `density` fraction non-zero (the rest +0 or -0).
lowbit::matrix_rm sparse_fp8(Eigen::Index rows, Eigen::Index cols, double density, bool nonnegative, std::mt19937& gen) {
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    std::normal_distribution<float> normal;
    std::bernoulli_distribution keep(density), negative_zero(0.3);
    lowbit::matrix_rm m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) {
        const float v = normal(gen);
        m.data()[i] = keep(gen) ? e4m3(nonnegative ? std::fabs(v) : v) : (!nonnegative && negative_zero(gen) ? -0.0f : 0.0f);
    }
    return m;
}

std::int64_t naive_count(const lowbit::matrix_rm& A, const lowbit::matrix_rm& B) {
    std::int64_t n = 0;
    for (Eigen::Index i = 0; i < A.rows(); ++i)
        for (Eigen::Index k = 0; k < A.cols(); ++k)
            for (Eigen::Index j = 0; j < B.cols(); ++j) n += A(i, k) != 0 && B(k, j) != 0;
    return n;
}

}  // namespace

TEST_CASE("zero skipping: non-zero products against a naive count") {
    std::mt19937 gen(5);
    for (const double d : {0.0, 0.2, 0.7, 1.0}) {
        const auto A = sparse_fp8(7, 33, d, false, gen), B = sparse_fp8(33, 5, 0.5, true, gen);
        const auto c = lowbit::sparse::count_multiplies(A, B);
        CHECK(c.nonzero == naive_count(A, B));
        CHECK(c.dense == 7 * 33 * 5);
    }
    // -0 is skipped, NaN is not: a 1 x 3 times 3 x 1 with (-0, NaN, 1) . (1, 1, 0) has one pair
    lowbit::matrix_rm a(1, 3), b(3, 1);
    a << -0.0f, std::numeric_limits<float>::quiet_NaN(), 1.0f;
    b << 1.0f, 1.0f, 0.0f;
    CHECK(lowbit::sparse::nonzero_products(a, b) == 1);
    CHECK_THROWS_AS(lowbit::sparse::nonzero_products(a, a), std::invalid_argument);
}

TEST_CASE("zero skipping: a convolution's count equals the SCNN model's multiplies") {
    std::mt19937 gen(9);
    for (const auto& g : {lowbit::conv_geometry{.channels = 3, .height = 9, .width = 7, .kernel = 3, .stride = 1, .padding = 1},
                          lowbit::conv_geometry{.channels = 2, .height = 11, .width = 11, .kernel = 5, .stride = 2, .padding = 2},
                          lowbit::conv_geometry{.channels = 4, .height = 6, .width = 6, .kernel = 1, .stride = 1, .padding = 0}}) {
        const int filters = 5;
        const auto weights = sparse_fp8(filters, g.patch(), 0.4, false, gen);
        const auto images = sparse_fp8(3, g.input_size(), 0.6, true, gen);
        const auto counted = lowbit::sparse::count_conv_multiplies(weights, images, g);
        const lowbit::sparse::conv_shape shape{filters, g.channels, g.height, g.width, g.kernel, g.kernel, g.stride, g.padding, 1};
        std::int64_t modelled = 0;
        for (Eigen::Index n = 0; n < images.rows(); ++n)
            modelled += lowbit::scnn_model(shape, std::span<const float>(weights.data(), std::size_t(weights.size())),
                                           std::span<const float>(images.row(n).data(), std::size_t(images.cols())))
                            .multiplies;
        CHECK(counted.nonzero == modelled);
        CHECK(counted.dense == std::int64_t(filters) * g.patch() * 3 * g.out_height() * g.out_width());
    }
}

TEST_CASE("zero skipping: the dense datapath's outputs equal dot products over the non-zero pairs only") {
    std::mt19937 gen(17);
    const Eigen::Index M = 12, K = 150, N = 10;
    int zero_outputs = 0;
    for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::fma, lowbit::accumulation::fused})
        for (const auto mode : {lowbit::rounding::nearest_even, lowbit::rounding::toward_zero,
                                lowbit::rounding::toward_negative, lowbit::rounding::toward_positive})
            for (const double density : {0.05, 0.3, 0.8}) {
                const auto A = sparse_fp8(M, K, density, false, gen);
                const auto B = sparse_fp8(K, N, 0.5, true, gen);
                lowbit::gemm_spec spec;
                spec.product = lowbit::float_quantizer{.format = lowbit::lba_m7e4_prod, .mode = mode};
                spec.accumulator = lowbit::float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = mode};
                spec.model = model;
                spec.threads = 1;
                const Eigen::MatrixXf dense = lowbit::gemm(A, B, spec);
                for (Eigen::Index i = 0; i < M; ++i)
                    for (Eigen::Index j = 0; j < N; ++j) {
                        std::vector<float> a, b;
                        for (Eigen::Index k = 0; k < K; ++k)
                            if (A(i, k) != 0 && B(k, j) != 0) a.push_back(A(i, k)), b.push_back(B(k, j));
                        const float skipped = a.empty() ? 0.0f : lowbit::dot(a, b, spec);
                        INFO("model " << lowbit::to_string(model) << " mode " << int(mode) << " density " << density
                                      << " output " << i << "," << j << ": " << dense(i, j) << " vs " << skipped);
                        CHECK(std::bit_cast<std::uint32_t>(dense(i, j)) == std::bit_cast<std::uint32_t>(skipped));
                        zero_outputs += dense(i, j) == 0;
                    }
            }
    CHECK(zero_outputs > 0);  // the sparse cases do reach the zero outputs
}

TEST_CASE("zero skipping: zero outputs of the datapath are +0 where a skipped pair could decide them") {
    // Where IEEE 754 adders under toward_negative would give -0 (+0 + -0, x + (-x)), and for -0
    // operands, lowbit's datapath gives +0 (its chains start from +0): what skipping every zero
    // product (no pair left: +0) gives too. A negative product that underflows in an fma chain,
    // Q(a b + 0) with a b < 0, is IEEE's -0: no pair is skipped there (its operands are non-zero),
    // and the chunk total, which starts from -0, keeps it.
    const std::vector<std::pair<std::vector<float>, std::vector<float>>> cases{
        {{-1, 2}, {0, 0}}, {{-0.0f}, {1}}, {{-1e-30f}, {1e-30f}}, {{-1e-30f, -1}, {1e-30f, 0}}, {{1, -1}, {1, 1}},
        {{1, -1, -1}, {1, 1, 0}}};
    for (const auto mode : {lowbit::rounding::nearest_even, lowbit::rounding::toward_negative, lowbit::rounding::toward_zero,
                            lowbit::rounding::toward_positive})
        for (const auto model : {lowbit::accumulation::sequential, lowbit::accumulation::fma, lowbit::accumulation::fused}) {
            lowbit::gemm_spec spec;
            spec.product = lowbit::float_quantizer{.format = lowbit::lba_m7e4_prod, .mode = mode};
            spec.accumulator = lowbit::float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = mode};
            spec.model = model;
            for (const auto& [a, b] : cases) {
                INFO("mode " << int(mode) << " model " << lowbit::to_string(model) << " a[0] " << a[0]);
                const bool negative_underflow = model == lowbit::accumulation::fma && a[0] == -1e-30f;
                CHECK(std::bit_cast<std::uint32_t>(lowbit::dot(a, b, spec)) == (negative_underflow ? 0x80000000u : 0u));
            }
        }
}
