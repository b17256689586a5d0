#!/usr/bin/env bash
# Sets up, builds and runs the main job: `ftte simulate` with its built-in experiment (the cnn
# on Fashion-MNIST over 100 simulated devices, FTTE vs FedBuff vs FedAvg), a few minutes on
# 2 cores. Results, a summary table and a plot go to out/sim/.
#   scripts/demo.sh [extra flags for `ftte simulate`]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target ftte
exec build/release/ftte simulate --threads "$(nproc)" "$@"
