#!/usr/bin/env bash
# Installs dependencies, builds (Release) and runs the whole test suite.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
start=$(date +%s)

echo "== release build and tests"
scripts/build.sh release
ctest --preset release -j "$(nproc)"

echo "== test.sh: all passed in $(( $(date +%s) - start )) s"
