#!/usr/bin/env bash
# Installs what is missing, builds lowbit in Release and runs every test.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release
cmake --build "$root/build/release" -j "$(nproc)"
ctest --test-dir "$root/build/release" --output-on-failure -j "$(nproc)"
