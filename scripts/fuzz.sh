#!/usr/bin/env bash
# Builds qlm's libFuzzer targets (fuzz/) with clang into build/fuzz and runs
# each one, one after another, for SECONDS seconds (default 60).
#   scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 20
#                                                  scripts/fuzz.sh 600 qlm_file gptq
# Fails (exit 1) on any crash, sanitizer report, leak, timeout (an input that
# takes more than 10 s), out-of-memory (RSS over 2 GB or one allocation over
# 512 MB) or broken invariant; the input that triggered it is saved under
# build/fuzz/artifacts/TARGET/ (reproduce: build/fuzz/bin/fuzz_TARGET FILE).
# Seeds come from scripts/make-bad-corpus.py --seeds (generated files and
# ../shared); what the fuzzer finds is kept in build/fuzz/corpus/TARGET and
# reused by the next run. Prints the executions per target at the end (and
# writes them to build/fuzz/summary.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

seconds=${1:-60}
shift || true
all_targets=(safetensors model_config weight_store qlm_file gptq tokenizer cli prompt_cache)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || {
  echo "fuzz.sh: SECONDS must be a positive integer, got '$seconds'" >&2
  exit 2
}

# Inputs larger than this are never tried: enough for every seed that
# matters (the tiny model files are 3-12 KB), small enough to stay fast.
max_len() {
  case "$1" in
    model_config) echo 8192 ;;
    cli) echo 1024 ;;
    gptq) echo 24576 ;;
    tokenizer) echo 65536 ;;
    *) echo 16384 ;;
  esac
}

scripts/install-deps.sh  # clang and its libFuzzer runtime are in the package list

build=$repo/build/fuzz
echo "== fuzz: building the fuzz targets (clang, ASan + UBSan + libFuzzer) in $build"
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DQLM_FUZZ=ON -DQLM_BUILD_TESTS=OFF \
  -DQLM_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" --target qlm_fuzz_all -j "$(nproc)"

shared=$(cd "$repo/.." && pwd)/shared
seed_args=()
if [ -d "$shared" ]; then
  seed_args=(--shared "$shared")
else
  echo "fuzz: $shared not found: seeding from generated files only"
fi
python3 scripts/make-bad-corpus.py --seeds "$build/seeds" "${seed_args[@]}"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=0:${ASAN_OPTIONS:-}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}

summary=$build/summary.txt
: >"$summary"
failed=()
for t in "${targets[@]}"; do
  bin=$build/bin/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz: no target '$t' (have: ${all_targets[*]})" >&2; exit 2; }
  corpus=$build/corpus/$t artifacts=$build/artifacts/$t work=$build/run/$t
  mkdir -p "$corpus" "$artifacts" "$build/seeds/$t"
  rm -rf "$work" && mkdir -p "$work"  # an empty working directory (see fuzz/cli_fuzz.cc)
  dict=()
  [ -f "$repo/fuzz/$t.dict" ] && dict=(-dict="$repo/fuzz/$t.dict")
  log=$build/fuzz_$t.log
  echo "== fuzz: $t for ${seconds}s (max_len $(max_len "$t"))"
  set +e
  (cd "$work" && timeout --signal=KILL $((seconds * 2 + 120)) "$bin" "$corpus" "$build/seeds/$t" \
    -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=512 -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" \
    >"$log" 2>&1)
  rc=$?
  set -e
  execs=$(grep -a 'stat::number_of_executed_units' "$log" | tail -1 | awk '{print $2}')
  cov=$(grep -aE '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 | grep -oE 'cov: [0-9]+' || true)
  line=$(printf '%-13s %4ss  %12s execs  %s  exit %s' "$t" "$seconds" "${execs:-?}" "${cov:-cov: ?}" "$rc")
  echo "$line" | tee -a "$summary"
  if [ "$rc" -ne 0 ] || grep -aqE '^==[0-9]+==ERROR|runtime error:|FUZZ_CHECK failed|deadly signal' "$log"; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $rc); last lines of $log:" >&2
    tail -40 "$log" >&2
    ls -1 "$artifacts" >&2 || true
  fi
done

echo "== fuzz: executions per target (${seconds}s each):"
cat "$summary"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
echo "== fuzz: no crash, leak, timeout or OOM in ${#targets[@]} targets"
