#!/usr/bin/env bash
# scripts/fuzz.sh: builds the libFuzzer targets of tests/fuzz with clang into build/fuzz and runs
# each for LOWBIT_FUZZ_SECONDS seconds (default 30) on a scratch copy of its seed corpus
# (tests/fuzz/corpus/<target>, which stays as committed). Fails if any target reports a finding.
#
#   scripts/fuzz.sh                              # every target
#   scripts/fuzz.sh gemm_diff quantize_diff      # only these
#   LOWBIT_FUZZ_SECONDS=600 scripts/fuzz.sh      # longer runs
#
# LOWBIT_FUZZ_JOBS: how many compilers, and then fuzzers, run at once (default: nproc). Each
# target's log goes to build/fuzz/logs/<target>.log, and an input that failed to
# build/fuzz/findings/<target>/
# (reproduce: build/fuzz/tests/fuzz/<target>_fuzz <that file>). See tests/fuzz/README.md.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=${LOWBIT_FUZZ_SECONDS:-30}
jobs=${LOWBIT_FUZZ_JOBS:-$(nproc)}
build=build/fuzz

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for source in tests/fuzz/*_fuzz.cpp; do
    name=$(basename "$source" .cpp)
    targets+=("${name%_fuzz}")
  done
fi

cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLOWBIT_BUILD_FUZZERS=ON -DLOWBIT_BUILD_TESTS=OFF -DLOWBIT_BUILD_BENCHMARKS=OFF \
  -DLOWBIT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]/%/_fuzz}"

# The dictionary of a target's text input, where it reads text.
dictionary_of() {
  case "$1" in
    spec_strings | quantize_diff | gemm_diff) echo "-dict=tests/fuzz/specs.dict" ;;
  esac
}

# Runs one target; its exit status goes to $build/logs/<target>.status.
run_target() {
  local name=$1 scratch findings log status=0
  scratch=$(mktemp -d)
  cp -r "tests/fuzz/corpus/$name" "$scratch/corpus"
  findings="$build/findings/$name"
  mkdir -p "$findings"
  log="$build/logs/$name.log"
  # shellcheck disable=SC2046  # the dictionary option is one word or none
  "$build/tests/fuzz/${name}_fuzz" "$scratch/corpus" $(dictionary_of "$name") \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$findings/" >"$log" 2>&1 || status=$?
  rm -rf "$scratch"
  echo "$status" >"$build/logs/$name.status"
}

# The targets run side by side, `jobs` at a time (each fuzzer is one process on one core).
mkdir -p "$build/logs"
for name in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run_target "$name" &
done
wait

failed=()
for name in "${targets[@]}"; do
  log="$build/logs/$name.log"
  status=$(cat "$build/logs/$name.status")
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
  if [ "$status" -eq 0 ]; then
    printf '%-14s ok       %12s executions %8s exec/s\n' "$name" "${runs:-?}" "${rate:-?}"
  else
    printf '%-14s FINDING  (exit %d; log %s)\n' "$name" "$status" "$log"
    tail -n 40 "$log"
    failed+=("$name")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: findings in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no findings (${#targets[@]} targets, ${seconds} s each)"
