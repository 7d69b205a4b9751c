// Stochastic rounding of an array gives the same bits whatever the number of threads and however
// the array is split among them: each element's random bits depend only on (seed, index).
#include <lowbit/rounding/float_quantizer.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

TEST_CASE("array rounding does not depend on the thread count or the split") {
    std::vector<float> x(100003);
    std::mt19937 gen(5);
    std::normal_distribution<float> dist;
    for (auto& v : x) v = dist(gen);
    const lowbit::float_quantizer q{.format = lowbit::fp8_e4m3, .mode = lowbit::rounding::stochastic, .seed = 99};
    std::vector<float> one(x.size());
    q(std::span<const float>(x), std::span<float>(one));
    for (const int threads : {2, 3, 7}) {
        std::vector<float> many(x.size());
        const std::size_t piece = (x.size() + std::size_t(threads) - 1) / std::size_t(threads);
#pragma omp parallel for num_threads(threads)
        for (int t = 0; t < threads; ++t) {
            const std::size_t begin = std::size_t(t) * piece, end = std::min(x.size(), begin + piece);
            if (begin < end)
                q(std::span<const float>(x.data() + begin, end - begin), std::span<float>(many.data() + begin, end - begin),
                  begin);
        }
        INFO(threads << " threads");
        CHECK(std::memcmp(one.data(), many.data(), x.size() * sizeof(float)) == 0);
    }
}
