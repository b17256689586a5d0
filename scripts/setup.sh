#!/usr/bin/env bash
# Installs every Debian package ftte needs to build, test and run its demos. Idempotent: does
# nothing when all are present. Needs root (or sudo) only when something is missing.
#   scripts/setup.sh            build, test and demo dependencies
#   scripts/setup.sh --bench    also PyTorch (python3-torch), for side-by-side benchmarks
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libopenblas-dev       # CBLAS GEMM (OpenBLAS, pthread variant)
  zlib1g-dev            # gzip'd IDX files
  nlohmann-json3-dev    # safetensors headers
  libgtest-dev libgmock-dev libbenchmark-dev
  libtomlplusplus-dev   # experiment configs (TOML)
  gnuplot-nox           # plots of simulation results
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc  # ftte serve/client
  libssl-dev openssl    # TLS test certificates
  libsodium-dev         # device tokens: random generation and hashing (BLAKE2b)
  libsentencepiece-dev  # subword tokenizers (SentencePiece; host only: Debian has no arm64 build)
  openmpi-bin libopenmpi-dev  # mpirun ... ftte simulate across processes and hosts
  bible-kjv bible-kjv-text  # text corpus for the language-model experiments
  dataset-fashion-mnist # /usr/share/datasets/fashion-mnist
  clang-format
  # arm64: the device side cross-compiled with Debian's aarch64 toolchain and its tests run under
  # qemu-user (scripts/test.sh); the :arm64 libraries come from Debian's multiarch archive.
  crossbuild-essential-arm64 qemu-user
  libsodium-dev:arm64 zlib1g-dev:arm64 libgtest-dev:arm64
  libgrpc++-dev:arm64 libprotobuf-dev:arm64
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(python3 python3-torch)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then
    sudo_cmd=(sudo)
  else
    echo "setup: need root to install: ${missing[*]}; run as root or install sudo" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  "${sudo_cmd[@]}" dpkg --add-architecture arm64
fi
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done" >&2
