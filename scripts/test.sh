#!/usr/bin/env bash
# Sets up, builds and runs every test: a Release build with warnings as errors, then the same
# suite under AddressSanitizer + UndefinedBehaviorSanitizer, then builds the device side alone
# (FTTE_WITH_SERVER=OFF: what an app embeds, with the C example) to prove it needs no server code.
#   scripts/test.sh [--no-sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

if [[ "${1:-}" != "--no-sanitize" ]]; then
  cmake --preset sanitize >/dev/null
  cmake --build --preset sanitize -j "$jobs"
  ctest --preset sanitize -j "$jobs"
fi

cmake --preset device >/dev/null
cmake --build --preset device -j "$jobs"
echo "test.sh: device-only build (FTTE_WITH_SERVER=OFF) built: build/device/examples/device_c"
