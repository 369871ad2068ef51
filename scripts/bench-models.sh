#!/usr/bin/env bash
# Reproduces the model table of docs/benchmarks.md: `qlm bench` on a
# Gemma-2-2B-shaped random model in every weight format at 2 and 1 threads,
# printed as markdown rows (t/s, and decode as a fraction of the read
# bandwidth, which `qlm bench` re-measures right before every tg repetition;
# "read bandwidth" is the mean of those probes, the fraction the mean of the
# per-repetition fractions; "paired fraction" compares every decoded token
# with a probe read of the same bytes right after it, `qlm bench --paired`).
#
#   [QLM=path/to/qlm] [REPS=2] [PROFILE=1] scripts/bench-models.sh [MODEL_DIR] [QLM_DIR]
#
# PROFILE=1 adds `qlm bench --profile` and prints a second table: each tg
# run's decode linears per shape (ms/token, share of decode time, GB/s and
# its fraction of the probe) and the rest of the decode time, and each pp
# run's prefill linears (ms/prompt, share, GFLOP/s).
#
# MODEL_DIR (default build/models/gemma-2-2b) is written with
# `qlm random-model --shape gemma-2-2b` when absent (5.2 GB, bf16); q4, int8
# and sfp8 are read from .qlm files made once with `qlm quantize` beside it
# (QLM_DIR, default: MODEL_DIR's parent). Run it on an otherwise idle
# machine: every number is memory- or compute-bound and shared cores skew both.
set -euo pipefail
cd "$(dirname "$0")/.."

model=${1:-build/models/gemma-2-2b}
qdir=${2:-$(dirname "$model")}
qlm=${QLM:-build/bin/qlm}
reps=${REPS:-2}
profile_flag=()
[[ ${PROFILE:-0} == 1 ]] && profile_flag=(--profile)
profile_rows=$(mktemp)
trap 'rm -f "$profile_rows"' EXIT
[[ -x $qlm ]] || { echo "error: $qlm not built; run scripts/build.sh" >&2; exit 1; }
[[ -f $model/config.json ]] || $qlm random-model --shape gemma-2-2b -o "$model"
name=$(basename "$model")
for f in q4 int8 sfp8; do
  [[ -f $qdir/$name-$f.qlm ]] || $qlm quantize "$model" "$qdir/$name-$f.qlm" --quant "$f" >/dev/null
done

# format | model argument | pp tokens | tg tokens | threads...
runs=(
  "q4|$qdir/$name-q4.qlm|512|128|2 1"
  "int8|$qdir/$name-int8.qlm|512|128|2 1"
  "sfp8|$qdir/$name-sfp8.qlm|512|64|2"
  "bf16|$model|128|32|2 1"
  "f32|$model --quant f32|64|16|2"
)

echo "| format | threads | test | t/s | bytes/token | read bandwidth | fraction | paired fraction |"
echo "|---|---:|---|---:|---:|---:|---:|---:|"
for r in "${runs[@]}"; do
  IFS='|' read -r format margs pp tg threads <<<"$r"
  for t in $threads; do
    # shellcheck disable=SC2086
    $qlm bench -m $margs -p "$pp" -n "$tg" -r "$reps" -t "$t" --paired --json "${profile_flag[@]}" \
      2>/dev/null | python3 -c '
import json, sys
fmt, profile_rows = sys.argv[1], open(sys.argv[2], "a")
for line in sys.stdin:
    j = json.loads(line)
    if "profile" in j:
        # tg rows: ms per token, GB/s of weight bytes, fraction of the probe;
        # pp rows (prefill): ms per prompt and GFLOP/s.
        pp = "ms_per_prompt" in j
        ms = j["ms_per_prompt"] if pp else j["ms_per_token"]
        if j["profile"] == "linear":
            shape = "%s × %s" % (j["rows"], j["cols"]) if j["rows"] else "other shapes"
            rate = ("%.0f GFLOP/s" % j["gflop_per_s"] if j["gflop_per_s"] else "-") if pp else \
                "%.1f GB/s" % j["gb_per_s"]
            frac = "-" if pp else "%.1f %%" % (100 * j["bandwidth_fraction"])
            profile_rows.write("| %s | %d | %s | %s | %.3f | %.1f %% | %s | %s |\n" % (
                fmt, j["threads"], j["test"], shape, ms, 100 * j["share"], rate, frac))
        else:
            profile_rows.write("| %s | %d | %s | everything else | %.3f | %.1f %% | | |\n" % (
                fmt, j["threads"], j["test"], ms, 100 * j["share"]))
        continue
    tg = j["test"].startswith("tg")
    print("| %s | %d | %s | %.2f ± %.2f | %s | %s | %s | %s |" % (
        fmt, j["threads"], j["test"], j["tokens_per_s"], j["stddev"],
        "%.2f GB" % (j["bytes_per_token"] / 1e9) if tg else "-",
        "%.1f GB/s" % (j["read_bandwidth"] / 1e9) if tg else "-",
        "%.1f ± %.1f %%" % (100 * j["bandwidth_fraction"],
                            100 * j["bandwidth_fraction_stddev"]) if tg else "-",
        "%.1f ± %.1f %%" % (100 * j["bandwidth_fraction_paired"],
                            100 * j["bandwidth_fraction_paired_stddev"]) if tg else "-"))
' "$format" "$profile_rows"
  done
done
if [[ -s $profile_rows ]]; then
  echo
  echo "| format | threads | test | linear (rows × K) | ms/token (tg), ms/prompt (pp) | share | rate | of probe |"
  echo "|---|---:|---|---|---:|---:|---:|---:|"
  cat "$profile_rows"
fi
