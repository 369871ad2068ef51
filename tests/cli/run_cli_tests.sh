#!/usr/bin/env bash
# CLI test cases for qlm (registered one per ctest entry in CMakeLists.txt):
#   run_cli_tests.sh CASE QLM GOLDEN_TOOL SHARED_DIR [EXAMPLE]
# Each case exits 0 on success and prints what went wrong otherwise.
set -u -o pipefail

case_name=$1
QLM=$2
TOOL=$3
SHARED=$4
EXAMPLE=${5:-none}

LLAMA=$SHARED/fixtures/tiny-llama
AUSTEN=$SHARED/models/austen-gemma3

source "$(dirname "$0")/common.sh"
need_data "$LLAMA" "$AUSTEN"

# A copy of tiny-llama to break in some way.
copy_llama() {
  mkdir -p "$TMP/m"
  cp "$LLAMA/config.json" "$LLAMA/model.safetensors" "$LLAMA/tokenizer.model" "$TMP/m/"
  chmod u+w "$TMP/m"/*
}

case "$case_name" in
  logits_matches_golden)
    for model in "$LLAMA" "$AUSTEN" "$SHARED/fixtures/tiny-gemma" "$SHARED/fixtures/tiny-gemma2"; do
      ids=$("$TOOL" ids "$model/golden/1.json") || fail "cannot read $model/golden/1.json"
      "$QLM" logits -m "$model" --ids "$ids" -o "$TMP/l.f32" || fail "qlm logits failed on $model"
      "$TOOL" compare "$TMP/l.f32" "$model/golden/1.f32" || fail "logits differ from $model/golden/1.f32"
    done
    # --mmap maps the weights instead of reading them: bitwise the same logits.
    ids=$("$TOOL" ids "$AUSTEN/golden/1.json") || fail "cannot read $AUSTEN/golden/1.json"
    "$QLM" logits -m "$AUSTEN" --ids "$ids" -o "$TMP/read.f32" || fail "qlm logits failed"
    "$QLM" logits -m "$AUSTEN" --ids "$ids" -o "$TMP/mapped.f32" --mmap ||
      fail "qlm logits --mmap failed"
    cmp -s "$TMP/mapped.f32" "$TMP/read.f32" || fail "--mmap changed the logits"
    ;;
  logits_every_isa)
    ids=$("$TOOL" ids "$AUSTEN/golden/0.json")
    ran=0
    for isa in scalar avx2 avx512 neon; do
      if "$QLM" logits -m "$AUSTEN" --ids "$ids" -o "$TMP/l.f32" --kernels "$isa" 2>"$TMP/err"; then
        "$TOOL" compare "$TMP/l.f32" "$AUSTEN/golden/0.f32" || fail "$isa logits differ"
        ran=$((ran + 1))
      else
        # Only "this CPU / build lacks it" is acceptable, as a usage error.
        grep -q '^error: ' "$TMP/err" || fail "$isa: $(cat "$TMP/err")"
        echo "$isa unavailable: $(cat "$TMP/err")"
      fi
    done
    [ "$ran" -ge 1 ] || fail "no kernel table ran"
    ;;
  logits_bad_ids)
    expect_error 2 "--ids" "$QLM" logits -m "$LLAMA" --ids 2,x,5 -o "$TMP/l.f32"
    expect_error 2 "8000" "$QLM" logits -m "$LLAMA" --ids 2,8000 -o "$TMP/l.f32"
    expect_error 2 "-1" "$QLM" logits -m "$LLAMA" --ids 2,-1 -o "$TMP/l.f32"
    expect_error 1 "cannot write" "$QLM" logits -m "$LLAMA" --ids 2,5 -o "$TMP/no/such/dir/l.f32"
    ;;
  run_greedy_deterministic)
    # Greedy output is the reference's greedy continuation, run after run.
    "$QLM" run -m "$AUSTEN" -p "It is a truth universally acknowledged" -n 40 --temp 0 \
      >"$TMP/a" 2>/dev/null || fail "qlm run failed"
    "$QLM" run -m "$AUSTEN" -p "It is a truth universally acknowledged" -n 40 --temp 0 -t 2 \
      >"$TMP/b" 2>/dev/null || fail "qlm run -t 2 failed"
    [ -s "$TMP/a" ] || fail "no text generated"
    cmp -s "$TMP/a" "$TMP/b" || fail "greedy output differs between runs: '$(cat "$TMP/a")' vs '$(cat "$TMP/b")'"
    echo "greedy: $(cat "$TMP/a")"
    ;;
  run_seed_deterministic)
    args=(run -m "$AUSTEN" -p "Mr. Darcy" -n 40 --temp 1.0 --top-k 0 --top-p 1 --min-p 0)
    "$QLM" "${args[@]}" --seed 7 >"$TMP/a" 2>/dev/null || fail "qlm run failed"
    "$QLM" "${args[@]}" --seed 7 >"$TMP/b" 2>/dev/null || fail "qlm run failed"
    "$QLM" "${args[@]}" --seed 8 >"$TMP/c" 2>/dev/null || fail "qlm run failed"
    cmp -s "$TMP/a" "$TMP/b" || fail "same seed, different text"
    cmp -s "$TMP/a" "$TMP/c" && fail "seeds 7 and 8 gave the same 40 tokens"
    echo "seed 7: $(cat "$TMP/a")"
    ;;
  run_stdout_is_only_text)
    "$QLM" run -m "$AUSTEN" -p "Emma" -n 20 --temp 0 >"$TMP/out" 2>"$TMP/err" || fail "qlm run failed"
    grep -q "eval time" "$TMP/err" || fail "no timing summary on stderr: $(cat "$TMP/err")"
    grep -q "load time" "$TMP/err" || fail "no load time on stderr"
    grep -q -e "eval time" -e "load time" -e "model " "$TMP/out" && fail "log lines on stdout"
    [ -s "$TMP/out" ] || fail "no text on stdout"
    ;;
  run_builtin_model_from_any_cwd)
    # -m omitted: the embedded model, found from the executable or the source tree.
    (cd "$TMP" && "$QLM" run -p "Elizabeth" -n 8 --temp 0 >"$TMP/out" 2>"$TMP/err") ||
      fail "qlm run without -m failed: $(cat "$TMP/err")"
    grep -q "austen-gemma3" "$TMP/err" || fail "did not use the built-in model: $(cat "$TMP/err")"
    [ -s "$TMP/out" ] || fail "no text"
    ;;
  run_bad_values)
    expect_error 2 "--temp" "$QLM" run -m "$AUSTEN" -p hi --temp -1
    expect_error 2 "--top-p" "$QLM" run -m "$AUSTEN" -p hi --top-p 2
    expect_error 2 "--top-p" "$QLM" run -m "$AUSTEN" -p hi --top-p 0
    expect_error 2 "--min-p" "$QLM" run -m "$AUSTEN" -p hi --min-p 1.5
    expect_error 2 "--top-k" "$QLM" run -m "$AUSTEN" -p hi --top-k -3
    expect_error 2 "--repeat-penalty" "$QLM" run -m "$AUSTEN" -p hi --repeat-penalty 0
    expect_error 2 "--threads" "$QLM" run -m "$AUSTEN" -p hi -t 0
    expect_error 2 "--n-predict" "$QLM" run -m "$AUSTEN" -p hi -n -5
    expect_error 2 "bogus" "$QLM" run -m "$AUSTEN" -p hi --kernels bogus
    expect_error 2 "prompt" "$QLM" run -m "$AUSTEN"
    # A flag qlm does not know is rejected by the parser (non-zero exit).
    "$QLM" run -m "$AUSTEN" -p hi --no-such-flag >/dev/null 2>&1 && fail "unknown flag accepted"
    true
    ;;
  run_prompt_longer_than_context)
    expect_error 2 "context" "$QLM" run -m "$AUSTEN" -c 8 -n 4 \
      -p "It is a truth universally acknowledged, that a single man in possession of a good fortune"
    ;;
  error_missing_model_dir)
    expect_error 1 "$TMP/nothing-here" "$QLM" run -m "$TMP/nothing-here" -p hi
    ;;
  error_no_config)
    copy_llama
    rm "$TMP/m/config.json"
    expect_error 1 "config.json" "$QLM" run -m "$TMP/m" -p hi -n 2
    ;;
  error_unknown_model_type)
    copy_llama
    sed -i 's/"model_type": *"llama"/"model_type": "gpt2"/' "$TMP/m/config.json"
    grep -q gpt2 "$TMP/m/config.json" || fail "could not edit config.json"
    expect_error 1 "gpt2" "$QLM" run -m "$TMP/m" -p hi -n 2
    ;;
  error_truncated_safetensors)
    copy_llama
    size=$(stat -c %s "$LLAMA/model.safetensors")
    head -c $((size - 1000)) "$LLAMA/model.safetensors" >"$TMP/m/model.safetensors"
    expect_error 1 "model.safetensors" "$QLM" run -m "$TMP/m" -p hi -n 2
    head -c 100 "$LLAMA/model.safetensors" >"$TMP/m/model.safetensors"
    expect_error 1 "model.safetensors" "$QLM" logits -m "$TMP/m" --ids 2 -o "$TMP/l.f32"
    head -c 4 "$LLAMA/model.safetensors" >"$TMP/m/model.safetensors"
    expect_error 1 "model.safetensors" "$QLM" run -m "$TMP/m" -p hi -n 2
    ;;
  error_shape_mismatch)
    copy_llama
    sed -i 's/"intermediate_size": *352/"intermediate_size": 353/' "$TMP/m/config.json"
    grep -q '"intermediate_size": 353' "$TMP/m/config.json" || fail "could not edit config.json"
    expect_error 1 "mlp.gate_proj.weight" "$QLM" run -m "$TMP/m" -p hi -n 2
    grep -q "\[352, 128\]" "$TMP/err" || fail "error does not give the actual shape"
    grep -q "\[353, 128\]" "$TMP/err" || fail "error does not give the expected shape"
    ;;
  error_missing_tensor)
    copy_llama
    sed -i 's/"num_hidden_layers": *3/"num_hidden_layers": 4/' "$TMP/m/config.json"
    grep -q '"num_hidden_layers": 4' "$TMP/m/config.json" || fail "could not edit config.json"
    expect_error 1 "model.layers.3." "$QLM" run -m "$TMP/m" -p hi -n 2
    ;;
  error_missing_tokenizer)
    copy_llama
    rm "$TMP/m/tokenizer.model"
    expect_error 1 "tokenizer.model" "$QLM" run -m "$TMP/m" -p hi -n 2
    ;;
  example_simple_generate)
    # examples/simple_generate.cc: the library API from a program linking only qlm_core.
    "$EXAMPLE" "$AUSTEN" "Mr. Knightley" 24 >"$TMP/a" 2>"$TMP/err" || fail "example failed: $(cat "$TMP/err")"
    "$EXAMPLE" "$AUSTEN" "Mr. Knightley" 24 >"$TMP/b" 2>/dev/null || fail "example failed"
    [ -s "$TMP/a" ] || fail "example printed no text"
    cmp -s "$TMP/a" "$TMP/b" || fail "seeded example output differs between runs"
    grep -q "24 generated" "$TMP/err" || fail "no summary: $(cat "$TMP/err")"
    "$EXAMPLE" "$TMP/nothing" >/dev/null 2>"$TMP/err" && fail "missing model accepted"
    grep -q "^error: " "$TMP/err" || fail "no error line"
    ;;
  *)
    echo "unknown case $case_name"
    exit 2
    ;;
esac
echo "PASS [$case_name]"
