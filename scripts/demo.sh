#!/usr/bin/env bash
# Installs what is missing, builds lowbit in Release and runs the flagship example.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release
cmake --build "$root/build/release" -j "$(nproc)" --target quantization_tour
"$root/build/release/examples/quantization_tour" "$@"
