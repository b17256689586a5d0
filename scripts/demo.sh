#!/usr/bin/env bash
# Sets up, builds and runs the main job: train the FedAvg CNN on Fashion-MNIST for one epoch
# on this machine and print test accuracy and measured peak training memory.
#   scripts/demo.sh [extra flags for `ftte train`]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target ftte
exec build/release/ftte train --model cnn --data fashion-mnist --epochs 1 "$@"
