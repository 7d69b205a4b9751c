// Tests of lowbit/scaling/clip_gradients.hpp: STE, PWL and MAD factors on hand values (inside,
// on and beyond the clipping scalar, negative, zero), constexpr use, and the span versions.
#include <lowbit/scaling/clip_gradients.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

static_assert(lowbit::ste_factor(7.0, 2.0) == 1.0);
static_assert(lowbit::pwl_factor(-2.0f, 2.0f) == 1.0f);
static_assert(lowbit::mad_factor(-8.0, 2.0) == 0.25);

TEST_CASE("STE, PWL and MAD factors on hand values") {
    const double s = 2.0;
    struct row {
        double x, ste, pwl, mad;
    };
    const row rows[] = {
        {0.0, 1, 1, 1},         // zero is inside: no division by |x|
        {-0.0, 1, 1, 1},
        {0.5, 1, 1, 1},         // |x| < s
        {-1.5, 1, 1, 1},
        {2.0, 1, 1, 1},         // |x| = s: inside (the quantizer reproduces s itself)
        {-2.0, 1, 1, 1},
        {2.5, 1, 0, 0.8},       // |x| > s: MAD attenuates by s / |x|
        {-4.0, 1, 0, 0.5},
        {-8.0, 1, 0, 0.25},
        {1e300, 1, 0, 2e-300},
    };
    for (const auto& r : rows) {
        CAPTURE(r.x);
        CHECK(lowbit::ste_factor(r.x, s) == r.ste);
        CHECK(lowbit::pwl_factor(r.x, s) == r.pwl);
        CHECK(lowbit::mad_factor(r.x, s) == Approx(r.mad).epsilon(1e-15));
        // float gives the same (the values are exact in float except 1e300, which is inf).
        if (std::fabs(r.x) < 1e30) {
            CHECK(lowbit::pwl_factor(float(r.x), 2.0) == float(r.pwl));  // 2.0 converts to float
            CHECK(lowbit::mad_factor(float(r.x), 2.0f) == float(r.mad));
        }
    }
    // Just beyond s: PWL drops to 0, MAD stays continuous (just below 1).
    const double above = std::nextafter(s, 3.0);
    CHECK(lowbit::pwl_factor(above, s) == 0.0);
    CHECK(lowbit::mad_factor(above, s) < 1.0);
    CHECK(lowbit::mad_factor(above, s) > 1.0 - 1e-15);
    // Infinity: PWL 0, MAD 0; NaN: PWL 0, MAD NaN.
    const double inf = std::numeric_limits<double>::infinity();
    CHECK(lowbit::pwl_factor(-inf, s) == 0.0);
    CHECK(lowbit::mad_factor(inf, s) == 0.0);
    CHECK(lowbit::pwl_factor(std::nan(""), s) == 0.0);
    CHECK(std::isnan(lowbit::mad_factor(std::nan(""), s)));
}

TEST_CASE("span versions fill the output") {
    const std::vector<float> x{0.0f, 1.0f, -3.0f, 6.0f, -1.5f};
    std::vector<float> out(x.size(), -1.0f);
    lowbit::ste_factor(x, 1.5f, out);
    CHECK(out == std::vector<float>{1, 1, 1, 1, 1});
    lowbit::pwl_factor(x, 1.5f, out);
    CHECK(out == std::vector<float>{1, 1, 0, 0, 1});
    lowbit::mad_factor(x, 1.5f, out);
    CHECK(out == std::vector<float>{1, 1, 0.5f, 0.25f, 1});

    const std::vector<double> xd{-3.0, 0.5};
    std::vector<double> outd(2);
    lowbit::mad_factor(xd, 1.5, outd);
    CHECK(outd == std::vector<double>{0.5, 1.0});

    // In place.
    std::vector<double> inplace{-3.0, 0.5, 4.5};
    lowbit::mad_factor(inplace, 1.5, inplace);
    CHECK(inplace == std::vector<double>{0.5, 1.0, 1.0 / 3.0});

    using Catch::Matchers::Contains;
    std::vector<float> short_out(2);
    CHECK_THROWS_WITH(lowbit::pwl_factor(x, 1.5f, short_out), Contains("out has 2 elements, x has 5"));
    CHECK_THROWS_WITH(lowbit::mad_factor(x, 0.0f, out), Contains("s = 0"));
    CHECK_THROWS_WITH(lowbit::ste_factor(xd, -1.0, outd), Contains("s = -1"));
}
