#!/usr/bin/env bash
# Installs dependencies, builds, and runs qlm on the built-in model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release
build/bin/qlm info
