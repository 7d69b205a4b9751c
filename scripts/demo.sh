#!/usr/bin/env bash
# Installs what is missing, builds lowbit in Release and runs the flagship example: 12-bit
# accumulators on Fashion-MNIST (20-30 minutes on 2 cores: 11 formats zero-shot, 12 fine-tunings;
# pass --quick for a short run).
# Results (table, CSV, PNG plots) go to build/lba_fashion_mnist unless --out says otherwise.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release
cmake --build "$root/build/release" -j "$(nproc)" --target lba_fashion_mnist
"$root/build/release/examples/lba_fashion_mnist" --out "$root/build/lba_fashion_mnist" "$@"
