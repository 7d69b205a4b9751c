#!/usr/bin/env bash
# Installs the Debian packages lowbit's build, tests, benchmarks and examples need, clang and its
# runtimes included (the fuzz targets, ThreadSanitizer), as root or with sudo when it is there.
# Does nothing when they are all present.
set -euo pipefail
packages=(g++ cmake make ninja-build git pkg-config libeigen3-dev catch2 libbenchmark-dev libmpfr-dev libgmp-dev
          librandom123-dev zlib1g-dev libcli11-dev gnuplot-nox dataset-fashion-mnist python3-torch
          clang libclang-rt-14-dev libomp-14-dev
          python3-dev pybind11-dev python3-numpy python3-pytest python3-hypothesis)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "lowbit: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
