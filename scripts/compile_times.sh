#!/usr/bin/env bash
# The README's compile-time table: CPU time (user + system) and peak memory of compiling one file,
# on one core, `g++ -std=c++20 -O2 -march=native -fopenmp -c`, header-only and as a user of
# lowbit::compiled (the same command with -DLOWBIT_COMPILED_LIB, as that CMake target passes it).
#   scripts/compile_times.sh [compiler]     (default g++; prints a Markdown table)
# Run it on an idle machine: the figures are times.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cxx=${1:-g++}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/quantize.cpp" <<'EOF'
#include <lowbit/rounding/quantize.hpp>
int main() { return lowbit::quantize(1.3f, lowbit::fp8_e4m3) > 1.0f; }
EOF
cat >"$work/gemm.cpp" <<'EOF'
#include <lowbit/datapath/gemm.hpp>
int main() {
    const Eigen::MatrixXf a = Eigen::MatrixXf::Random(8, 32);
    const lowbit::gemm_spec spec{.input_a = lowbit::fp8_e4m3, .input_b = lowbit::fp8_e4m3,
                                 .accumulator = lowbit::lba_m7e4_acc, .chunk = 16};
    return lowbit::gemm(a, a.transpose(), spec).sum() > 0;
}
EOF
cat >"$work/umbrella_quantize.cpp" <<'EOF'
#include <lowbit/lowbit.hpp>
int main() { return lowbit::quantize(1.3f, lowbit::fp8_e4m3) > 1.0f; }
EOF
sed 's|lowbit/datapath/gemm.hpp|lowbit/lowbit.hpp|' "$work/gemm.cpp" >"$work/umbrella_gemm.cpp"
cat >"$work/network.cpp" <<'EOF'
#include <lowbit/nn.hpp>
namespace nn = lowbit::nn;
int main() {
    nn::network net({1, 28, 28});
    net.add("conv", nn::conv2d({.channels = 1, .height = 28, .width = 28, .kernel = 3, .padding = 1}, 8));
    net.add("relu", nn::relu{}).add("pool", nn::max_pool2d({8, 28, 28}, 2));
    net.add("flatten", nn::flatten{}).add("fc", nn::linear(8 * 14 * 14, 10));
    net.set_datapath({.spec = lowbit::gemm_spec{.accumulator = lowbit::lba_m7e4_acc, .chunk = 16}});
    nn::tensor x{nn::matrix::Random(4, 28 * 28), {1, 28, 28}};
    return net.forward(x, nn::pass::inference).values.sum() > 0;
}
EOF

files=(quantize gemm umbrella_quantize umbrella_gemm network "$root/examples/lba_fashion_mnist.cpp")
names=("\`lowbit/rounding/quantize.hpp\`, one \`quantize\` call"
       "\`lowbit/datapath/gemm.hpp\`, one \`gemm\` call"
       "\`lowbit/lowbit.hpp\` (everything, nn included), one \`quantize\` call"
       "\`lowbit/lowbit.hpp\`, one \`gemm\` call"
       "a small network (\`lowbit/nn.hpp\`: conv, pool, linear on a datapath)"
       "the flagship, \`examples/lba_fashion_mnist.cpp\`")
flags=(-std=c++20 -O2 -march=native -fopenmp -I"$root/include" -I/usr/include/eigen3 -I"$root/examples")

measure() {  # file, extra flags...: "12.3 s, 456 MiB"
    local src=$1; shift
    [[ $src == /* ]] || src="$work/$src.cpp"
    /usr/bin/time -f '%U %S %M' -o "$work/time" "$cxx" "${flags[@]}" "$@" -c "$src" -o "$work/out.o"
    read -r user sys kb <"$work/time"
    awk -v u="$user" -v s="$sys" -v k="$kb" 'BEGIN {
        m = k / 1024; printf "%.1f s, %s", u + s, (m >= 1024 ? sprintf("%.2f GiB", m / 1024) : sprintf("%d MiB", m)) }'
}

echo "| the file ($cxx) | header-only | with \`lowbit::compiled\` |"
echo "|---|---|---|"
for i in "${!files[@]}"; do
    header_only=$(measure "${files[$i]}")
    compiled=$(measure "${files[$i]}" -DLOWBIT_COMPILED_LIB)
    echo "| ${names[$i]} | $header_only | $compiled |"
done
