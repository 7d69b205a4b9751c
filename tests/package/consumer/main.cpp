// A project outside lowbit that uses the installed package.
#include <lowbit/lowbit.hpp>

#include <cstdio>

int main() {
    const float y = lowbit::quantize(1.0625f, lowbit::fp8_e4m3);
    std::printf("quantize(1.0625, e4m3) = %g\n", double(y));
    return y == 1.0f ? 0 : 1;
}
