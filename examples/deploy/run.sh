#!/usr/bin/env bash
# A federation on this machine: `ftte serve` and two `ftte client` processes on loopback, over
# TLS with certificates made on the spot (scripts/make_certs.sh), FTTE on the cnn under an 8 MiB
# budget, until the held-out accuracy reaches the target in serve.toml.
#   examples/deploy/run.sh [OUT_DIR]          (default out/deploy; needs a release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/deploy}
ftte=build/release/ftte
[[ -x $ftte ]] || { echo "run.sh: build first: cmake --preset release && cmake --build build/release" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
scripts/make_certs.sh "$out/certs"
"$ftte" serve --config examples/deploy/serve.toml \
  --set server.state_dir="$out/state" --set server.insecure=false \
  --set server.tls_cert="$out/certs/server.pem" --set server.tls_key="$out/certs/server.key" \
  2> >(tee "$out/server.log" >&2) &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until grep -q "listening on" "$out/server.log" 2>/dev/null; do sleep 0.2; done
for i in 0 1; do
  "$ftte" client --server localhost:50051 --tls-ca "$out/certs/ca.pem" \
    --enroll-key demo-enrolment-key --memory-budget 16MiB --shard $i/2 --samples 4000 \
    --name "phone-$i" 2> "$out/client$i.log" &
done
wait $server
trap - EXIT
wait
tail -n 1 "$out"/client*.log
