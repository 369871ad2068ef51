#!/usr/bin/env bash
# CLI tests for `qlm random-model` (one ctest entry per case):
#   random_model_test.sh CASE QLM SHARED_DIR
# Exits 0 on success, prints what went wrong otherwise.
set -u -o pipefail

case_name=$1
QLM=$2
SHARED=$3

TOKENIZER=$SHARED/models/austen-gemma3/tokenizer.model

source "$(dirname "$0")/common.sh"
need_data "$TOKENIZER"

case "$case_name" in
  random_model_list)
    "$QLM" random-model --list >"$TMP/out" 2>"$TMP/err" || fail "--list failed: $(cat "$TMP/err")"
    cat "$TMP/out"
    for shape in gemma-2-2b gemma-3-1b gemma-3-270m llama-2-7b; do
      grep -q "^$shape " "$TMP/out" || fail "--list does not show $shape"
    done
    grep -q "2.61 B" "$TMP/out" || fail "--list does not give gemma-2-2b's 2.61 B parameters"
    grep -q tiny-test "$TMP/out" && fail "--list shows the test-only shapes"
    true
    ;;
  random_model_writes)
    # The built-in tokenizer is found from the executable or the source tree.
    (cd "$TMP" && "$QLM" random-model --shape tiny-test -o "$TMP/m" --seed 5 2>"$TMP/err") ||
      fail "random-model failed: $(cat "$TMP/err")"
    grep -q "wrote tiny-test" "$TMP/err" || fail "no summary on stderr: $(cat "$TMP/err")"
    for f in config.json model.safetensors tokenizer.model; do
      [ -s "$TMP/m/$f" ] || fail "$f not written"
    done
    cmp -s "$TMP/m/tokenizer.model" "$TOKENIZER" || fail "tokenizer.model is not the Austen tokenizer"
    grep -q '"model_type": "gemma3_text"' "$TMP/m/config.json" || fail "config.json: $(cat "$TMP/m/config.json")"
    ls "$TMP/m"/*.tmp >/dev/null 2>&1 && fail "temporary files left behind"
    # Same seed, same bytes; an existing model needs --force.
    expect_error 1 "--force" "$QLM" random-model --shape tiny-test -o "$TMP/m" --seed 5
    "$QLM" random-model --shape tiny-test -o "$TMP/m2" --seed 5 --tokenizer "$TOKENIZER" 2>/dev/null ||
      fail "second write failed"
    cmp -s "$TMP/m/model.safetensors" "$TMP/m2/model.safetensors" || fail "same seed, different weights"
    "$QLM" random-model --shape tiny-test -o "$TMP/m2" --seed 6 --force 2>/dev/null || fail "--force failed"
    cmp -s "$TMP/m/model.safetensors" "$TMP/m2/model.safetensors" && fail "seeds 5 and 6 gave the same weights"
    # Mistakes.
    expect_error 2 "nonesuch" "$QLM" random-model --shape nonesuch -o "$TMP/x"
    [ -e "$TMP/x" ] && fail "an unknown shape created the output directory"
    expect_error 2 "--shape" "$QLM" random-model -o "$TMP/x"
    expect_error 2 "-o" "$QLM" random-model --shape tiny-test
    expect_error 1 "$TMP/no/tokenizer.model" "$QLM" random-model --shape tiny-test -o "$TMP/x" \
      --tokenizer "$TMP/no/tokenizer.model"
    [ -e "$TMP/x/config.json" ] && fail "a failed run left a config.json"
    true
    ;;
  random_model_runs)
    # Every architecture's random model loads, gives finite logits and
    # generates (random weights: the text is nonsense, it only has to run).
    for shape in tiny-test tiny-test-gemma2 tiny-test-llama; do
      "$QLM" random-model --shape "$shape" -o "$TMP/$shape" 2>/dev/null || fail "$shape: random-model failed"
      "$QLM" logits -m "$TMP/$shape" --ids 2,100,200,300 -o "$TMP/l.f32" 2>"$TMP/err" ||
        fail "$shape: qlm logits failed: $(cat "$TMP/err")"
      [ "$(stat -c %s "$TMP/l.f32")" -eq $((4 * 8000 * 4)) ] || fail "$shape: logits file has the wrong size"
      od -An -v -tf4 "$TMP/l.f32" | grep -qi -e nan -e inf && fail "$shape: non-finite logits"
      "$QLM" run -m "$TMP/$shape" -p "It is a truth" -n 8 --temp 0 >"$TMP/out" 2>"$TMP/err" ||
        fail "$shape: qlm run failed: $(cat "$TMP/err")"
      echo "$shape: $(cat "$TMP/out")"
    done
    # config.json's vocab_size (8192) padded past the tokenizer (8000 pieces):
    # the padding rows are never sampled, even hot and unfiltered.
    "$QLM" random-model --shape tiny-test-padded -o "$TMP/padded" 2>/dev/null ||
      fail "tiny-test-padded: random-model failed"
    "$QLM" run -m "$TMP/padded" -p "It is a truth" -n 400 --temp 3 --top-k 0 --top-p 1 --min-p 0 \
      -s 7 >"$TMP/out" 2>"$TMP/err" || fail "padded vocab: qlm run failed: $(cat "$TMP/err")"
    true
    ;;
  *)
    echo "unknown case $case_name"
    exit 2
    ;;
esac
echo "PASS [$case_name]"
