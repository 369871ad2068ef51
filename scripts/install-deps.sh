#!/usr/bin/env bash
# Installs the Debian 12 packages qlm's build, tests and tools need.
# Idempotent: does nothing (not even `apt-get update`) when all are present.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libxsimd-dev libsentencepiece-dev libfmt-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev
  # NEON kernels: cross-built and run under user-mode qemu in scripts/test.sh.
  g++-aarch64-linux-gnu qemu-user
  # Fuzzing (scripts/fuzz.sh): clang and its libFuzzer/sanitizer runtimes.
  clang libclang-rt-14-dev
  # Tools: scripts/make-bad-corpus.py, scripts/quantization-table.sh.
  python3
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
