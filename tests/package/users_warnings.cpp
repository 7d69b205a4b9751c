// A user's file, compiled header-only with -Wall -Wextra -Werror by g++ and clang++ (CTest
// "package: ... without warnings"): every datapath is instantiated and emitted here (gemm in
// each accumulation model and kernel, block-scaled and LNS GEMMs), and every header is parsed, so
// a warning in lowbit's headers, the vector kernels included, fails the test. (Not the layers'
// passes: they emit Eigen's float products, and with g++ 12 at -march=native any Eigen float
// product draws over a hundred -Wmaybe-uninitialized warnings from GCC's own AVX-512 headers
// inside Eigen's kernels, GCC bug 105593: a three-line Eigen program gets 117.)
#include <lowbit/lowbit.hpp>

#include <cstdio>

int main() {
    const Eigen::MatrixXf a = Eigen::MatrixXf::Random(8, 32), b = Eigen::MatrixXf::Random(32, 4);
    lowbit::gemm_spec spec{.input_a = lowbit::fp8_e4m3, .input_b = lowbit::fp8_e4m3,
                           .accumulator = lowbit::lba_m7e4_acc, .chunk = 16};
    lowbit::gemm_stats stats;
    float sum = lowbit::gemm(a, b, spec, &stats).sum();
    const std::vector<float> w(a.data(), a.data() + a.size()), x(b.data(), b.data() + b.size());
    const auto W = lowbit::quantize_blocks(w.data(), 8, 32, lowbit::mxfp8_e4m3, 1);
    const auto X = lowbit::quantize_blocks(x.data(), 32, 4, lowbit::mxfp8_e4m3, 0);
    sum += lowbit::block_scaled_gemm(W, X, lowbit::gemm_spec{}, &stats).sum();
    sum += lowbit::lns_gemm(a, b, lowbit::lns_gemm_spec{}, &stats).sum();
    std::printf("%g\n", double(sum));
    return 0;
}
