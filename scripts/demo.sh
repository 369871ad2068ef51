#!/usr/bin/env bash
# Installs dependencies, builds, and generates a paragraph with the built-in
# model (models/austen-gemma3, a small Gemma 3 trained on Jane Austen).
# The text goes to stdout; the timing summary to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release
echo "== qlm run (built-in Austen model, seed 42)" >&2
build/bin/qlm run -p "It is a truth universally acknowledged" -n 120 --seed 42
echo
