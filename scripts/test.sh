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

# NEON: the kernels and their tests cross-built for aarch64 and run under
# qemu-aarch64 (CMAKE_CROSSCOMPILING_EMULATOR), so NEON code really executes.
echo "== neon-cross build and tests (qemu-aarch64)"
neon_start=$(date +%s)
scripts/build.sh neon-cross
ctest --preset neon-cross -j "$(nproc)"
echo "== neon-cross: passed in $(( $(date +%s) - neon_start )) s"

# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer
# (-O1 -g; benchmarks are not built): memory errors, leaks and UB fail it.
echo "== asan build and tests (ASan + UBSan)"
asan_start=$(date +%s)
scripts/build.sh asan
ctest --preset asan -j "$(nproc)"
echo "== asan: passed in $(( $(date +%s) - asan_start )) s"

# Every libFuzzer target for a short run (docs/robustness.md); the long runs
# are `scripts/fuzz.sh 600`, by hand.
echo "== fuzz: every target for 20 s"
fuzz_start=$(date +%s)
scripts/fuzz.sh 20
echo "== fuzz: passed in $(( $(date +%s) - fuzz_start )) s"

# Leave the release CLI in build/bin/qlm (each preset publishes its own there;
# this no-op build of release re-publishes it).
scripts/build.sh release >/dev/null

echo "== test.sh: all passed in $(( $(date +%s) - start )) s"
