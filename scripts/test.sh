#!/usr/bin/env bash
# Installs what is missing, builds lowbit in Release and runs every test; then builds and runs the
# datapath and rounding tests again for the other x86-64 levels, whose kernels differ (they are
# chosen at compile time): AVX2 (x86-64-v3) and the SSE2 baseline (x86-64). Set
# LOWBIT_TEST_LEVELS="" to skip those, or to a list of -march values to choose them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release
cmake --build "$root/build/release" -j "$(nproc)"
ctest --test-dir "$root/build/release" --output-on-failure -j "$(nproc)"

levels=${LOWBIT_TEST_LEVELS-x86-64-v3 x86-64}
if [[ $(uname -m) != x86_64 ]]; then levels=""; fi
for level in $levels; do
  echo "lowbit: datapath and rounding tests built with -march=$level"
  cmake -S "$root" -B "$root/build/$level" -DCMAKE_BUILD_TYPE=Release -DLOWBIT_ARCH="$level" \
        -DLOWBIT_TEST_FILTER='^(datapath|rounding)/' -DLOWBIT_BUILD_BENCHMARKS=OFF -DLOWBIT_BUILD_EXAMPLES=OFF
  cmake --build "$root/build/$level" -j "$(nproc)"
  ctest --test-dir "$root/build/$level" --output-on-failure -j "$(nproc)"
done
