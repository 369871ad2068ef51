#!/usr/bin/env bash
# Reproduces the quality table of docs/quantization.md: quantizes the Austen
# model to every format (RTN and GPTQ), scores each .qlm with
# `qlm perplexity --kld-against` the f32 source over ../shared/corpus/valid.txt,
# and prints one markdown row per recipe.
#
#   scripts/quantization-table.sh [OUT_DIR] [THREADS]
#
# Needs a release build (scripts/build.sh) and python3 (to read --json).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-build/quality}
threads=${2:-2}
qlm=${QLM:-build/bin/qlm}
src=models/austen-gemma3
text=../shared/corpus/valid.txt
[[ -x $qlm ]] || { echo "error: $qlm not built; run scripts/build.sh" >&2; exit 1; }
[[ -f $text ]] || { echo "error: $text is missing (../shared/corpus)" >&2; exit 1; }
mkdir -p "$out"

# name | qlm quantize flags
recipes=(
  "bf16|--quant bf16"
  "int8|--quant int8"
  "sfp8|--quant sfp8"
  "sfp8 GPTQ|--quant sfp8 --method gptq"
  "sfp8 GPTQ + int8 head|--quant sfp8 --method gptq --head-quant int8"
  "q4 g128 RTN|--quant q4"
  "q4 g128 GPTQ|--quant q4 --method gptq"
  "q4 g128 GPTQ act-order|--quant q4 --method gptq --act-order"
)

echo "| recipe | bits/weight (matrices) | ppl | mean KLD | KLD p99 | top-1 | quantize time |"
echo "|---|---|---|---|---|---|---|"
base_ppl=$($qlm perplexity -m $src -f $text -t "$threads" --json 2>/dev/null |
  python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])')
echo "| f32 (base) | 32 | $base_ppl | 0 | 0 | 100 % | - |"
for r in "${recipes[@]}"; do
  name=${r%%|*}
  flags=${r#*|}
  file=$out/$(echo "$name" | tr ' ' '-').qlm
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  summary=$($qlm quantize $src "$file" $flags -t "$threads" 2>/dev/null)
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  bpw=$(echo "$summary" | sed -n 's/.*= \([0-9.]*\) bits\/weight.*/\1/p' | head -1)
  $qlm perplexity -m "$file" -f $text -t "$threads" --kld-against $src --json 2>/dev/null |
    python3 -c '
import json, sys
j = json.load(sys.stdin)
name, bpw, secs = sys.argv[1:4]
print("| %s | %s | %.4f | %.6f | %.6f | %.3f %% | %.1f s |" % (
    name, bpw, j["ppl"], j["kld_mean"], j["kld_p99"], 100 * j["top1_agreement"], float(secs)))
' "$name" "$bpw" "$secs"
done
