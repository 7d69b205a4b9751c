// Tests of lowbit/types/minifloat_eigen.hpp: minifloat as an Eigen scalar. Products whose every
// partial result is exact (small integers, quarters) equal the exact product whatever order Eigen
// picks; minifloat<fp16> and minifloat<bf16> agree with Eigen's own half and bfloat16, which
// compute in float (correctly rounded for these formats by Figueroa's theorem) and round once.
#include <lowbit/types/minifloat_eigen.hpp>

#include <lowbit/formats/float_format.hpp>

#include <catch2/catch.hpp>
#include <Eigen/Core>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>

namespace {

using half = lowbit::minifloat<lowbit::fp16>;
using bf16 = lowbit::minifloat<lowbit::bf16>;
using e4m3 = lowbit::minifloat<lowbit::fp8_e4m3>;
template <class T>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;

// Random integers in [-range, range] as a matrix of T, and the same as int64.
template <class T>
std::pair<matrix<T>, Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic>> random_integers(
    Eigen::Index rows, Eigen::Index cols, int range, std::mt19937& rng) {
    std::uniform_int_distribution<int> dist(-range, range);
    matrix<T> m(rows, cols);
    Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic> exact(rows, cols);
    for (Eigen::Index i = 0; i < rows; ++i)
        for (Eigen::Index j = 0; j < cols; ++j) {
            const int v = dist(rng);
            m(i, j) = T(v);
            exact(i, j) = v;
        }
    return {m, exact};
}

template <class T, class Exact>
void check_equal(const matrix<T>& got, const Exact& exact, double scale = 1.0) {
    REQUIRE(got.rows() == exact.rows());
    REQUIRE(got.cols() == exact.cols());
    for (Eigen::Index i = 0; i < got.rows(); ++i)
        for (Eigen::Index j = 0; j < got.cols(); ++j) REQUIRE(double(got(i, j)) == double(exact(i, j)) * scale);
}

}  // namespace

TEST_CASE("NumTraits of minifloat") {
    using N = Eigen::NumTraits<half>;
    static_assert(!N::IsComplex && !N::IsInteger && N::IsSigned && !N::RequireInitialization);
    static_assert(!Eigen::NumTraits<lowbit::minifloat<lowbit::ue4m3>>::IsSigned);
    static_assert(std::is_same_v<N::Real, half> && std::is_same_v<N::NonInteger, half> && std::is_same_v<N::Literal, half>);
    CHECK(double(N::epsilon()) == 0x1p-10);
    CHECK(double(N::highest()) == 65504.0);
    CHECK(double(N::lowest()) == -65504.0);
    CHECK(double(N::infinity()) == std::numeric_limits<double>::infinity());
    CHECK(std::isnan(double(N::quiet_NaN())));
    CHECK(N::digits10() == 3);
    CHECK(N::digits() == 11);
    CHECK(double(N::dummy_precision()) == 0x1p-7);
    CHECK(double(Eigen::NumTraits<e4m3>::dummy_precision()) == 0.5);
}

TEST_CASE("numeric_limits of minifloat<fp16> equal Eigen::half's, bf16 Eigen::bfloat16's") {
    // Except where Eigen 3.4 is wrong: half's epsilon is 2^-13 (the raw code 0x0800 where 0x1400
    // is meant) and its is_bounded false; bfloat16's round_error is 16128 (the raw code 0x3F00 read
    // as a value) and its has_denorm absent; both say is_iec559 false. minifloat_test checks
    // those members against IEEE binary16 directly.
    const auto same_limits = [](auto ours, auto theirs) {
        using A = std::numeric_limits<decltype(ours)>;
        using B = std::numeric_limits<decltype(theirs)>;
        CHECK(+A::is_signed == +B::is_signed);
        CHECK(+A::is_integer == +B::is_integer);
        CHECK(+A::is_exact == +B::is_exact);
        CHECK(+A::has_infinity == +B::has_infinity);
        CHECK(+A::has_quiet_NaN == +B::has_quiet_NaN);
        CHECK(+A::has_signaling_NaN == +B::has_signaling_NaN);
        CHECK(+A::round_style == +B::round_style);
        CHECK(+A::digits == +B::digits);
        CHECK(+A::digits10 == +B::digits10);
        CHECK(+A::max_digits10 == +B::max_digits10);
        CHECK(+A::radix == +B::radix);
        CHECK(+A::min_exponent == +B::min_exponent);
        CHECK(+A::max_exponent == +B::max_exponent);
        CHECK(+A::min_exponent10 == +B::min_exponent10);
        CHECK(+A::max_exponent10 == +B::max_exponent10);
        CHECK(double(A::min()) == double(float(B::min())));
        CHECK(double(A::max()) == double(float(B::max())));
        CHECK(double(A::lowest()) == double(float(B::lowest())));
        CHECK(double(A::denorm_min()) == double(float(B::denorm_min())));
        CHECK(double(A::infinity()) == double(float(B::infinity())));
        CHECK(std::isnan(double(A::quiet_NaN())));
    };
    same_limits(half{}, Eigen::half{});
    same_limits(bf16{}, Eigen::bfloat16{});
}

TEST_CASE("conversions and arithmetic agree with Eigen::half and Eigen::bfloat16") {
    std::mt19937 rng(5);
    for (int i = 0; i < 100000; ++i) {
        const float x = std::bit_cast<float>(std::uint32_t(rng()));
        if (std::isnan(x)) continue;
        REQUIRE(half(x).bits() == std::bit_cast<std::uint16_t>(Eigen::half(x)));
        REQUIRE(bf16(x).bits() == std::bit_cast<std::uint16_t>(Eigen::bfloat16(x)));
        const std::uint16_t ca = std::uint16_t(rng()), cb = std::uint16_t(rng());
        const half a = half::from_bits(ca), b = half::from_bits(cb);
        const auto ea = std::bit_cast<Eigen::half>(ca), eb = std::bit_cast<Eigen::half>(cb);
        const auto agree = [](half ours, Eigen::half theirs) {
            const double t = double(float(theirs));
            return std::isnan(t) ? std::isnan(double(ours)) : ours.bits() == std::bit_cast<std::uint16_t>(theirs);
        };
        REQUIRE(agree(a + b, ea + eb));
        REQUIRE(agree(a - b, ea - eb));
        REQUIRE(agree(a * b, ea * eb));
        REQUIRE(agree(a / b, ea / eb));
    }
}

TEST_CASE("Eigen products of small integers are exact") {
    std::mt19937 rng(9);
    SECTION("fp16, small and blocked sizes") {
        // Below 10^5 multiply-adds, where Eigen's OpenMP product stays on one thread: its threads
        // spin-wait on each other, which takes seconds on a loaded machine.
        for (auto [m, k, n] : {std::array<int, 3>{3, 4, 5}, {1, 7, 1}, {16, 16, 16}, {40, 50, 30}, {70, 33, 41}}) {
            auto [a, a_exact] = random_integers<half>(m, k, 3, rng);
            auto [b, b_exact] = random_integers<half>(k, n, 3, rng);
            const matrix<half> c = a * b;  // |entries| <= 9 k <= 450 < 2^11: every partial sum exact
            check_equal(c, a_exact * b_exact);
            const matrix<half> ct = b.transpose() * a.transpose();
            check_equal(ct, (a_exact * b_exact).transpose());
        }
    }
    SECTION("fp16 quarters") {
        // Multiples of 1/4 in [-2, 2]: products are multiples of 1/16 of magnitude <= 4, sums of
        // 8 of them <= 32: at most 10 significant bits, exact in fp16.
        auto [a, a_exact] = random_integers<half>(6, 8, 8, rng);
        auto [b, b_exact] = random_integers<half>(8, 5, 8, rng);
        const matrix<half> qa = a * half(0.25), qb = b * half(0.25);
        check_equal(matrix<half>(qa * qb), a_exact * b_exact, 1.0 / 16);
    }
    SECTION("fp8_e4m3") {
        auto [a, a_exact] = random_integers<e4m3>(2, 3, 1, rng);  // entries -1, 0, 1: sums <= 3
        auto [b, b_exact] = random_integers<e4m3>(3, 2, 2, rng);
        check_equal(matrix<e4m3>(a * b), a_exact * b_exact);
    }
}

TEST_CASE("other Eigen operations on minifloat matrices") {
    matrix<half> a(2, 2);
    a << half(1), half(-2), half(3.5), half(4);
    CHECK(double(a.sum()) == 6.5);
    CHECK(double(a.cwiseAbs().maxCoeff()) == 4.0);
    CHECK(double((a + a)(1, 0)) == 7.0);
    CHECK(double((a * half(0.5))(0, 1)) == -1.0);
    CHECK(double(a.transpose()(0, 1)) == 3.5);
    CHECK(a.isApprox(a));
    CHECK(!a.isApprox(matrix<half>(a * half(2))));
    matrix<half> z = matrix<half>::Zero(2, 3);
    CHECK(double(z.sum()) == 0.0);
    CHECK(double(matrix<half>::Identity(3, 3).trace()) == 3.0);
    std::ostringstream out;
    out << a;
    CHECK(out.str() == "  1  -2\n3.5   4");
}
