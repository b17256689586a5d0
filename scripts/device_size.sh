#!/usr/bin/env bash
# Prints the stripped size of the device library of a build (libftte_device.so, what an app
# ships) and the shared libraries it needs, and fails when ftte's own part exceeds the budget.
#   scripts/device_size.sh BUILD_DIR [MAX_BYTES]     (default budget 3 MB = 3,000,000 bytes)
set -euo pipefail
build=${1:?usage: scripts/device_size.sh BUILD_DIR [MAX_BYTES]}
max=${2:-3000000}
lib="$build/src/net/libftte_device.so"
if [[ ! -f "$lib" ]]; then
  echo "device_size: $lib not found; configure with -DFTTE_DEVICE_LIBRARY=ON (presets device, arm64) and build" >&2
  exit 1
fi
machine=$(LC_ALL=C readelf -h "$lib" | sed -n 's/^ *Machine: *//p')
case "$machine" in
  *AArch64*) strip=aarch64-linux-gnu-strip ;;
  *) strip=strip ;;
esac
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$strip" --strip-all -o "$tmp" "$lib"
bytes=$(stat -c %s "$tmp")
needed=$(LC_ALL=C readelf -d "$lib" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
exported=$(LC_ALL=C readelf --dyn-syms -W "$lib" | awk '$5 == "GLOBAL" && $7 != "UND"' | wc -l)
echo "device_size: $lib ($machine): $bytes bytes stripped, $exported exported symbols;" \
  "needs: $needed"
if ((bytes > max)); then
  echo "device_size: $bytes bytes is over the budget of $max bytes (issue 15: <= 3 MB)" >&2
  exit 1
fi
