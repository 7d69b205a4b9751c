#!/usr/bin/env bash
# Installs what is missing, builds lowbit in Release (with its Python package) and runs every test
# (pytest on tests/python included). Then, for the other
# x86-64 levels, whose kernels differ (they are chosen at compile time), builds and runs again:
#   - AVX2 (x86-64-v3): the datapath and rounding tests, in Release;
#   - the SSE2 baseline (x86-64): the datapath, rounding, formats, nn and types tests (the weights
#     and IDX file readers included) under AddressSanitizer + UndefinedBehaviorSanitizer, which
#     makes this build CI's sanitizer run too (scripts/sanitize.sh builds the others). Left out
#     there: the exhaustive enumerations (every fp16/bf16 input, every mode of round_shift, the
#     MPFR hard cases, the model sweeps), which run 30-100x slower under ASan at -O1 and check
#     numerics that the Release runs check; their code paths run under ASan in the other cases;
#     and the AVX-512 chain's tests, whose kernels an SSE2 build does not have (what they run
#     there is the paths the fast-path tests cover);
# and last builds the libFuzzer targets (native kernels, ASan + UBSan) and runs each for
# LOWBIT_FUZZ_SECONDS (default 30) on its seed corpus (scripts/fuzz.sh).
# LOWBIT_TEST_LEVELS="" skips the other levels (or lists the -march values to build), and
# LOWBIT_FUZZ_SECONDS=0 the fuzzers.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Each stage's start, with the minutes since this script began: CI's budget is 60 minutes.
stage() { printf 'lowbit [%d:%02d]: %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }
# New build folders use Ninja, which compiles a target's files while the libraries it links are
# still being built (Make waits for them), so that no core idles while lowbit::compiled's kernels
# compile; a folder configured before keeps its generator.
generator() { if [[ ! -f $1/CMakeCache.txt ]]; then echo Ninja; else sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$1/CMakeCache.txt"; fi; }
"$root/scripts/install-deps.sh"
stage "Release build of everything (native instruction set, the Python package too), then every test"
cmake -S "$root" -B "$root/build/release" -G "$(generator "$root/build/release")" -DCMAKE_BUILD_TYPE=Release -DLOWBIT_BUILD_PYTHON=ON
cmake --build "$root/build/release" -j "$(nproc)"
ctest --test-dir "$root/build/release" --output-on-failure -j "$(nproc)"

levels=${LOWBIT_TEST_LEVELS-x86-64-v3 x86-64}
if [[ $(uname -m) != x86_64 ]]; then levels=""; fi
for level in $levels; do
  exclude=()
  if [[ $level == x86-64 ]]; then
    stage "datapath, rounding, formats, nn and types tests built with -march=$level under ASan + UBSan"
    options=(-DCMAKE_BUILD_TYPE=Debug -DLOWBIT_SANITIZE=address -DLOWBIT_TEST_FILTER='^(datapath|rounding|formats|nn|types)/')
    exclude=(-E 'every fp16 and bf16 input|exhaustive fp16 and bf16|round_shift equals the rounding core|pairwise, fused and aligned models|random hard cases|integer chain equals the exact path|the AVX-512 chain')
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  else
    stage "datapath and rounding tests built with -march=$level"
    options=(-DCMAKE_BUILD_TYPE=Release -DLOWBIT_TEST_FILTER='^(datapath|rounding)/')
  fi
  cmake -S "$root" -B "$root/build/$level" -G "$(generator "$root/build/$level")" -DLOWBIT_ARCH="$level" "${options[@]}" \
        -DLOWBIT_BUILD_BENCHMARKS=OFF -DLOWBIT_BUILD_EXAMPLES=OFF
  cmake --build "$root/build/$level" -j "$(nproc)"
  ctest --test-dir "$root/build/$level" --output-on-failure -j "$(nproc)" "${exclude[@]}"
done

if [[ ${LOWBIT_FUZZ_SECONDS:-30} != 0 && -x "$root/scripts/fuzz.sh" ]]; then
  stage "fuzz targets, ${LOWBIT_FUZZ_SECONDS:-30} s each"
  LOWBIT_FUZZ_SECONDS=${LOWBIT_FUZZ_SECONDS:-30} "$root/scripts/fuzz.sh"
fi
stage "all passed"
