#!/usr/bin/env bash
# Quantization from the CLI (issue 6): --quant at load, qlm quantize and the
# .qlm file, AutoGPTQ checkpoints, GPTQ, qlm perplexity. One ctest entry per
# case (tests/cli/CMakeLists.txt):
#   quantize_test.sh CASE QLM GOLDEN_TOOL SHARED_DIR
set -u -o pipefail

case_name=$1
QLM=$2
TOOL=$3
SHARED=$4

LLAMA=$SHARED/fixtures/tiny-llama
GEMMA2=$SHARED/fixtures/tiny-gemma2
AUSTEN=$SHARED/models/austen-gemma3
GPTQ=$SHARED/gptq/austen-gemma3-gptq-g128
VALID=$SHARED/corpus/valid.txt
TRAIN=$SHARED/corpus/train.txt

source "$(dirname "$0")/common.sh"
need_data "$LLAMA" "$GEMMA2" "$AUSTEN" "$GPTQ" "$VALID" "$TRAIN"

# logits MODEL OUT [ARGS...]: the logits of golden/1's ids.
logits() {
  local model=$1 out=$2
  shift 2
  "$QLM" logits -m "$model" --ids "$IDS" -o "$out" "$@" 2>"$TMP/lerr" ||
    fail "qlm logits -m $model $*: $(cat "$TMP/lerr")"
}

case "$case_name" in
  quant_flag_formats)
    # Every format at load time runs; .qlm files written by qlm quantize give
    # bit-identical logits to the same --quant at load; q8_0 is int8.
    IDS=$("$TOOL" ids "$LLAMA/golden/1.json")
    for f in f32 bf16 int8 q4 sfp8; do
      logits "$LLAMA" "$TMP/load_$f.f32" --quant "$f"
      "$QLM" quantize "$LLAMA" "$TMP/$f.qlm" --quant "$f" -t 2 >"$TMP/qout" 2>"$TMP/qerr" ||
        fail "qlm quantize --quant $f failed"
      grep -q "bits/weight" "$TMP/qout" || fail "no size summary: $(cat "$TMP/qout")"
      # stderr is not a terminal here: plain progress lines, the last at 100 %.
      grep -q '^writing: [0-9]*/[0-9]* (100%)' "$TMP/qerr" || fail "no progress: $(cat "$TMP/qerr")"
      if grep -q $'\r' "$TMP/qerr"; then fail "terminal progress bar written to a file"; fi
      logits "$TMP/$f.qlm" "$TMP/file_$f.f32"
      cmp -s "$TMP/load_$f.f32" "$TMP/file_$f.f32" || fail "$f: .qlm logits differ from --quant $f"
    done
    "$TOOL" compare "$TMP/load_f32.f32" "$LLAMA/golden/1.f32" || fail "--quant f32 misses the golden"
    logits "$LLAMA" "$TMP/q8_0.f32" --quant q8_0
    cmp -s "$TMP/q8_0.f32" "$TMP/load_int8.f32" || fail "q8_0 is not int8"
    logits "$LLAMA" "$TMP/g32.f32" --quant q4 --group-size 32
    cmp -s "$TMP/g32.f32" "$TMP/load_q4.f32" && fail "--group-size 32 had no effect"
    "$QLM" run --help | grep -q "q8_0" || fail "--help does not mention the q8_0 alias"
    expect_error 2 "--quant" "$QLM" run -m "$LLAMA" -p hi --quant q3
    expect_error 2 "--group-size" "$QLM" run -m "$LLAMA" -p hi --quant q4 --group-size 48
    expect_error 2 "--group-size" "$QLM" logits -m "$LLAMA" --ids 2 -o "$TMP/x" --quant int8 --group-size 64
    ;;
  qlm_file_round_trip)
    # f32 and bf16 .qlm files reproduce the goldens; the file is page-padded;
    # a .qlm converts to another .qlm; corrupt files are clean errors.
    IDS=$("$TOOL" ids "$GEMMA2/golden/1.json")
    for f in f32 bf16; do
      "$QLM" quantize "$GEMMA2" "$TMP/$f.qlm" --quant "$f" >/dev/null 2>&1 || fail "quantize $f"
      [ $(($(stat -c %s "$TMP/$f.qlm") % 4096)) -eq 0 ] || fail "$f.qlm size is not a multiple of 4096"
      logits "$TMP/$f.qlm" "$TMP/$f.f32"
      "$TOOL" compare "$TMP/$f.f32" "$GEMMA2/golden/1.f32" || fail "$f.qlm misses the golden"
    done
    "$QLM" quantize "$TMP/f32.qlm" "$TMP/again.qlm" --quant q4 >/dev/null 2>&1 || fail ".qlm -> .qlm"
    logits "$TMP/again.qlm" "$TMP/again.f32"
    logits "$GEMMA2" "$TMP/q4.f32" --quant q4
    cmp -s "$TMP/again.f32" "$TMP/q4.f32" || fail "q4 from a .qlm differs from q4 from the HF dir"
    run_out=$("$QLM" run -m "$TMP/bf16.qlm" -p "Emma" -n 4 --temp 0 2>/dev/null) || fail "qlm run on a .qlm"
    cp "$TMP/bf16.qlm" "$TMP/trunc.qlm"
    truncate -s 8192 "$TMP/trunc.qlm"
    expect_error 1 "trunc.qlm" "$QLM" run -m "$TMP/trunc.qlm" -p hi -n 1
    printf 'hello' >"$TMP/text.qlm"
    expect_error 1 "text.qlm" "$QLM" run -m "$TMP/text.qlm" -p hi -n 1
    expect_error 2 "--quant" "$QLM" quantize "$LLAMA" "$TMP/x.qlm" --quant q5
    expect_error 2 "--method" "$QLM" quantize "$LLAMA" "$TMP/x.qlm" --quant q4 --method awq
    expect_error 2 "q4" "$QLM" quantize "$LLAMA" "$TMP/x.qlm" --quant int8 --method gptq
    [ ! -e "$TMP/x.qlm" ] && [ ! -e "$TMP/x.qlm.partial" ] || fail "a failed quantize left a file"
    ;;
  gptq_checkpoint)
    # The AutoGPTQ checkpoint loads directly and matches its goldens on
    # every kernel table (goldens from the dequantized weights: compared
    # with f32 activations, QLM_ACTIVATIONS=f32, not the default int8 path
    # for q4 weights); converted to .qlm (q4 linears kept bit for bit,
    # --head-quant f32 keeps its f16 embedding exact) it gives the same logits.
    ran=0
    for n in 0 1 2; do
      IDS=$("$TOOL" ids "$GPTQ/golden/$n.json")
      for isa in scalar avx2 avx512 neon; do
        if QLM_ACTIVATIONS=f32 "$QLM" logits -m "$GPTQ" --ids "$IDS" -o "$TMP/l.f32" --kernels "$isa" \
          2>"$TMP/err"; then
          "$TOOL" compare "$TMP/l.f32" "$GPTQ/golden/$n.f32" || fail "$isa golden $n"
          ran=$((ran + 1))
        else
          grep -q '^error: ' "$TMP/err" || fail "$isa: $(cat "$TMP/err")"
        fi
      done
    done
    [ "$ran" -ge 3 ] || fail "no kernel table ran"
    IDS=$("$TOOL" ids "$GPTQ/golden/1.json")
    "$QLM" quantize "$GPTQ" "$TMP/g.qlm" --quant q4 --head-quant f32 >"$TMP/qout" 2>"$TMP/qerr" ||
      fail "quantize GPTQ dir: $(cat "$TMP/qerr")"
    grep -q "q_proj.weight q4 copy" "$TMP/qerr" || fail "GPTQ linears were not copied: $(cat "$TMP/qerr")"
    logits "$TMP/g.qlm" "$TMP/file.f32"
    logits "$GPTQ" "$TMP/dir.f32"
    cmp -s "$TMP/file.f32" "$TMP/dir.f32" || fail "GPTQ .qlm differs from the GPTQ directory"
    ;;
  perplexity_json)
    "$QLM" perplexity -m "$LLAMA" --quant int8 -f "$VALID" -c 64 --chunks 3 --kld-against f32 \
      --json -t 2 >"$TMP/out" 2>"$TMP/err" || fail "perplexity: $(cat "$TMP/err")"
    echo "$(cat "$TMP/out")"
    [ "$(wc -l <"$TMP/out")" -eq 1 ] || fail "expected one JSON line"
    for key in '"ppl":' '"kld_mean":' '"kld_p99":' '"top1_agreement":' '"tokens":93'; do
      grep -qF "$key" "$TMP/out" || fail "missing $key"
    done
    grep -q '"kld_mean":null' "$TMP/out" && fail "kld_mean is null against a base"
    "$QLM" perplexity -m "$LLAMA" -f "$VALID" -c 64 --chunks 2 --json >"$TMP/out" 2>/dev/null ||
      fail "perplexity without base"
    grep -qF '"kld_mean":null' "$TMP/out" || fail "kld_mean should be null without a base"
    "$QLM" perplexity -m "$LLAMA" -f "$VALID" -c 64 --chunks 2 --kld-against "$LLAMA" >"$TMP/out" \
      2>/dev/null || fail "perplexity against a path"
    grep -q "top-1 agreement 100.000 %" "$TMP/out" || fail "self-agreement not 100%: $(cat "$TMP/out")"
    expect_error 2 "fewer than one window" "$QLM" perplexity -m "$LLAMA" -f "$LLAMA/config.json" -c 512
    ;;
  gptq_solver)
    # A short GPTQ run end to end: writes a q4 .qlm that loads and scores.
    "$QLM" quantize "$LLAMA" "$TMP/g.qlm" --quant q4 --group-size 32 --method gptq --act-order \
      --calib "$TRAIN" --calib-sequences 4 --calib-tokens 64 -t 2 >"$TMP/out" 2>"$TMP/err" ||
      fail "gptq quantize: $(cat "$TMP/err")"
    grep -q "q_proj.weight q4 gptq" "$TMP/err" || fail "no GPTQ tensors: $(cat "$TMP/err")"
    "$QLM" perplexity -m "$TMP/g.qlm" -f "$VALID" -c 64 --chunks 2 --kld-against "$LLAMA" --json \
      >"$TMP/ppl" 2>/dev/null || fail "perplexity of the GPTQ file"
    grep -q '"kld_mean":' "$TMP/ppl" || fail "no KLD: $(cat "$TMP/ppl")"
    ;;
  *)
    fail "unknown case"
    ;;
esac
echo "PASS [$case_name]"
