// A project outside lowbit that links the installed compiled library (lowbit::compiled) and
// multiplies on a datapath: its kernels come from the library, not from this file.
#include <lowbit/lowbit.hpp>

#include <cstdio>

int main() {
    // 1 + 2^-4 + 2^-4 is 1.125 exactly, but an e4m3 accumulator (steps of 2^-3 at 1) rounds each
    // step to nearest even: 1 + 2^-4 is a tie that goes to 1, twice.
    Eigen::MatrixXf a(1, 3), b(3, 1);
    a << 1.0f, 0.0625f, 0.0625f;
    b << 1.0f, 1.0f, 1.0f;
    lowbit::gemm_spec spec;
    spec.accumulator = lowbit::quantizer(lowbit::fp8_e4m3);
    const Eigen::MatrixXf c = lowbit::gemm(a, b, spec);
    std::printf("gemm on an e4m3 accumulator: %g\n", double(c(0, 0)));
    return c(0, 0) == 1.0f ? 0 : 1;
}
