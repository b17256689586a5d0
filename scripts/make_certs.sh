#!/usr/bin/env bash
# Makes a private CA, a server certificate and a device (client) certificate for trying TLS and
# mutual TLS on one machine (tests use it too). For production use certificates from your own
# PKI. Needs the openssl command (scripts/setup.sh installs it).
#   scripts/make_certs.sh DIR [HOST]     HOST defaults to localhost; 127.0.0.1 is always valid
# Writes DIR/ca.pem, DIR/server.pem, DIR/server.key, DIR/device.pem, DIR/device.key.
set -euo pipefail
dir=${1:?usage: make_certs.sh DIR [HOST]}
host=${2:-localhost}
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 30 -subj "/CN=ftte test CA" 2>/dev/null
sign() {  # name CN extensions
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" \
    -days 30 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
sign server "$host" "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1"
sign device "ftte device" "extendedKeyUsage=clientAuth"
chmod 600 ./*.key
echo "make_certs: wrote ca.pem, server.pem/.key, device.pem/.key in $dir" >&2
