#!/usr/bin/env bash
# Builds lowbit's tests under a sanitizer and runs them:
#   scripts/sanitize.sh address [REGEX]   AddressSanitizer + UndefinedBehaviorSanitizer (g++), with
#                                         libstdc++'s assertions; errors stop the test that hits them
#   scripts/sanitize.sh thread [REGEX]    ThreadSanitizer (clang++, whose OpenMP runtime reports its
#                                         synchronization to TSan through libarcher)
# REGEX chooses the tests by their path under tests/ (default: every test; CI runs the address
# build on datapath, rounding, formats, nn and types). Build folders: build/asan, build/tsan.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kind=${1:?usage: scripts/sanitize.sh address|thread [REGEX]}
filter=${2:-/}
case "$kind" in
  address)
    build="$root/build/asan"
    compiler=(-DCMAKE_CXX_COMPILER="${CXX:-g++}")
    # Leaks are checked too; halt at the first error so that it names one place.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    ;;
  thread)
    build="$root/build/tsan"
    compiler=(-DCMAKE_CXX_COMPILER=clang++)
    archer=$(clang++ -print-file-name=libarcher.so)
    if [[ ! -e $archer ]]; then archer=/usr/lib/llvm-14/lib/libarcher.so; fi
    export OMP_TOOL_LIBRARIES=$archer
    export TSAN_OPTIONS=${TSAN_OPTIONS:-ignore_noninstrumented_modules=1:halt_on_error=1:second_deadlock_stack=1}
    ;;
  *) echo "scripts/sanitize.sh: '$kind' is not address or thread" >&2; exit 2 ;;
esac
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DLOWBIT_SANITIZE="$kind" "${compiler[@]}" \
      -DLOWBIT_TEST_FILTER="$filter" -DLOWBIT_BUILD_BENCHMARKS=OFF -DLOWBIT_BUILD_EXAMPLES=OFF
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
