#!/usr/bin/env bash
# CLI tests for qlm chat, qlm info, --help and the error contract (issue 8):
#   chat_and_errors_test.sh CASE QLM SHARED_DIR
# Each case exits 0 on success and prints what went wrong otherwise.
set -u -o pipefail

case_name=$1
QLM=$2
SHARED=$3
LLAMA=$SHARED/fixtures/tiny-llama
AUSTEN=$SHARED/models/austen-gemma3

source "$(dirname "$0")/common.sh"
need_data "$LLAMA" "$AUSTEN"

# turn_field N FIELD: from chat's stderr ("turn N: prefilled P tokens with C
# already cached; ..."), P (FIELD=prefilled) or C (FIELD=cached).
turn_field() {
  local line
  line=$(grep -E "^turn $1: prefilled" "$TMP/err") || fail "no 'turn $1:' line in: $(cat "$TMP/err")"
  case $2 in
    prefilled) echo "$line" | sed -E 's/^turn [0-9]+: prefilled ([0-9]+) tokens.*/\1/' ;;
    cached) echo "$line" | sed -E 's/.* with ([0-9]+) already cached.*/\1/' ;;
  esac
}

CHAT=("$QLM" chat -m "$AUSTEN" -n 8 --temp 0 -c 512 -t 1)
LONG="It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. What do you think of that?"

case "$case_name" in
  chat_two_turns_keeps_cache)
    printf '%s\nAnd?\n' "$LONG" | "${CHAT[@]}" >"$TMP/out" 2>"$TMP/err" || fail "chat failed: $(cat "$TMP/err")"
    cat "$TMP/err"
    [ -n "$(tr -d '[:space:]' <"$TMP/out")" ] || fail "no answer text on stdout"
    p1=$(turn_field 1 prefilled); c1=$(turn_field 1 cached)
    p2=$(turn_field 2 prefilled); c2=$(turn_field 2 cached)
    [ "$c1" -eq 0 ] || fail "turn 1 started with $c1 cached tokens"
    # Turn 2 continues the cache: everything of turn 1 (its prompt at least)
    # is cached, and only the short new turn is prefilled.
    [ "$c2" -ge "$p1" ] || fail "turn 2 cached $c2 < turn 1's prompt $p1"
    [ "$p2" -le 20 ] || fail "turn 2 prefilled $p2 tokens: history was re-prefilled?"
    [ "$p2" -lt "$p1" ] || fail "turn 2 prefilled $p2 >= turn 1's $p1"
    grep -q "^prompt eval time" "$TMP/err" || fail "no timing summary"
    ;;
  chat_clear_and_exit)
    printf 'Hello there\n/clear\nHello there\n/exit\nnever answered\n' | "${CHAT[@]}" \
      >"$TMP/out" 2>"$TMP/err" || fail "chat failed: $(cat "$TMP/err")"
    cat "$TMP/err"
    [ "$(turn_field 2 cached)" -eq 0 ] || fail "/clear did not empty the cache"
    [ "$(turn_field 1 prefilled)" -eq "$(turn_field 2 prefilled)" ] ||
      fail "after /clear the same message prefilled a different number of tokens"
    ! grep -q "^turn 3:" "$TMP/err" || fail "/exit did not stop reading input"
    # Greedy: the same message from an empty cache gives the same answer.
    [ "$(sed -n 1p "$TMP/out")" = "$(sed -n 2p "$TMP/out")" ] || true
    ;;
  chat_system_prompt)
    printf 'Hello\n' | "${CHAT[@]}" >"$TMP/out" 2>"$TMP/err" || fail "chat failed"
    plain=$(turn_field 1 prefilled)
    printf 'Hello\n' | "${CHAT[@]}" -sys "You are Miss Bennet." >"$TMP/out" 2>"$TMP/err" ||
      fail "chat -sys failed: $(cat "$TMP/err")"
    with_sys=$(turn_field 1 prefilled)
    [ "$with_sys" -gt "$plain" ] || fail "-sys did not add to the first turn ($with_sys vs $plain)"
    ;;
  chat_llama_template)
    printf 'Hello\nAgain\n' | "$QLM" chat -m "$LLAMA" -n 4 --temp 0 -c 256 >"$TMP/out" 2>"$TMP/err" ||
      fail "chat on tiny-llama failed: $(cat "$TMP/err")"
    grep -q "chat template llama2" "$TMP/err" || fail "llama model did not use the llama2 template"
    [ "$(turn_field 2 cached)" -gt 0 ] || fail "turn 2 lost the cache"
    ;;
  chat_empty_stdin)
    "${CHAT[@]}" </dev/null >"$TMP/out" 2>"$TMP/err" || fail "chat with empty stdin failed"
    [ ! -s "$TMP/out" ] || fail "stdout not empty"
    ;;
  chat_sigint_stops_answer)
    # Ctrl-C while answering stops the answer, not the chat: the next line is
    # still read and answered.
    mkfifo "$TMP/in"
    "$QLM" chat -m "$AUSTEN" -n -1 -c 1024 -t 1 --temp 1 --min-p 0 -s 1 <"$TMP/in" \
      >"$TMP/out" 2>"$TMP/err" &
    pid=$!
    exec 3>"$TMP/in"
    echo "Hello" >&3
    for _ in $(seq 100); do [ -s "$TMP/out" ] && break; sleep 0.1; done
    [ -s "$TMP/out" ] || { kill $pid; fail "no answer started: $(cat "$TMP/err")"; }
    kill -INT $pid
    for _ in $(seq 100); do grep -q "^turn 1:" "$TMP/err" && break; sleep 0.1; done
    printf 'Again\n/exit\n' >&3
    exec 3>&-
    wait $pid || fail "chat exited with $? after Ctrl-C: $(cat "$TMP/err")"
    cat "$TMP/err"
    grep -q "answer stopped" "$TMP/err" || fail "Ctrl-C did not stop the answer"
    grep -q "^turn 2:" "$TMP/err" || fail "the chat did not go on after Ctrl-C"
    ;;
  usage_errors)
    for cmd in "run -p hi" chat; do
      # shellcheck disable=SC2086 # $cmd is the subcommand and its prompt
      {
        expect_error 2 "--temp" "$QLM" $cmd -m "$AUSTEN" --temp -1
        expect_error 2 "--top-p" "$QLM" $cmd -m "$AUSTEN" --top-p 2
        expect_error 2 "--threads" "$QLM" $cmd -m "$AUSTEN" -t 0
        expect_error 2 "bogus" "$QLM" $cmd -m "$AUSTEN" --kernels bogus
        expect_error 2 "--no-such-flag" "$QLM" $cmd -m "$AUSTEN" --no-such-flag
        expect_error 2 "--temp" "$QLM" $cmd -m "$AUSTEN" --temp notanumber
      }
    done
    expect_error 2 "frobnicate" "$QLM" frobnicate
    expect_error 2 "--no-such-flag" "$QLM" info --no-such-flag
    # An ISA this CPU (or this build) cannot run is a usage error.
    for isa in neon avx512 avx2; do
      if ! "$QLM" info --no-model --kernels $isa >/dev/null 2>&1; then
        expect_error 2 "$isa" "$QLM" run -m "$AUSTEN" -p hi --kernels $isa
        break
      fi
    done
    ;;
  runtime_errors)
    expect_error 1 "$TMP/missing" "$QLM" run -m "$TMP/missing" -p hi
    expect_error 1 "$TMP/missing" "$QLM" chat -m "$TMP/missing"
    expect_error 1 "$TMP/missing" "$QLM" info -m "$TMP/missing"
    expect_error 1 "$TMP/no-such-file.txt" "$QLM" run -m "$AUSTEN" -f "$TMP/no-such-file.txt"
    mkdir -p "$TMP/m"
    cp "$LLAMA/config.json" "$LLAMA/model.safetensors" "$LLAMA/tokenizer.model" "$TMP/m/"
    chmod u+w "$TMP/m"/*
    sed -i 's/"model_type": *"llama"/"model_type": "gpt2"/' "$TMP/m/config.json"
    expect_error 1 "gpt2" "$QLM" run -m "$TMP/m" -p hi
    expect_error 1 "gpt2" "$QLM" chat -m "$TMP/m"
    # A prompt longer than the context (-c): qlm run reports it as a usage
    # error (2: raise -c), see docs/cli.md.
    expect_error 2 "context" "$QLM" run -m "$AUSTEN" -c 8 -p "$LONG"
    ;;
  chat_message_longer_than_context)
    # In chat a too-long message is reported and the chat goes on.
    printf '%s\nHi\n' "$LONG" | "$QLM" chat -m "$AUSTEN" -n 2 --temp 0 -c 24 >"$TMP/out" 2>"$TMP/err" ||
      fail "chat exited on a too-long message: $(cat "$TMP/err")"
    grep -q "^error: .*context" "$TMP/err" || fail "no error line for the long message"
    grep -q "^turn 1:" "$TMP/err" || fail "chat did not go on after the long message"
    ;;
  info_json)
    "$QLM" info --json >"$TMP/out" 2>"$TMP/err" || fail "info --json failed: $(cat "$TMP/err")"
    python3 -c 'import json,sys; json.load(sys.stdin)' <"$TMP/out" || fail "info --json is not JSON"
    "$QLM" info --json -m "$LLAMA" -c 128 >"$TMP/out" || fail "info -m failed"
    python3 - "$TMP/out" <<'PY' || fail "info --json -m content"
import json, sys
j = json.load(open(sys.argv[1]))
m = j["model"]
assert m["model_type"] == "llama", m["model_type"]
assert m["memory"]["kv_cache_bytes"] > 0 and m["memory"]["kv_cache_context"] == 128
assert m["memory"]["weights_mapped_bytes"] > 0
assert sum(f["tensors"] for f in m["formats"].values()) >= 2 + 7 * m["num_layers"] - 1
assert j["kernels"]["chosen"]
PY
    # KV cache grows with -c (tiny-llama has no sliding window).
    small=$("$QLM" info --json -m "$LLAMA" -c 64 | python3 -c 'import json,sys; print(json.load(sys.stdin)["model"]["memory"]["kv_cache_bytes"])')
    big=$("$QLM" info --json -m "$LLAMA" -c 128 | python3 -c 'import json,sys; print(json.load(sys.stdin)["model"]["memory"]["kv_cache_bytes"])')
    [ "$big" -gt "$small" ] || fail "KV bytes did not grow with -c ($small vs $big)"
    "$QLM" info -m "$AUSTEN" >"$TMP/out" || fail "info text failed"
    grep -q "KV cache" "$TMP/out" || fail "info text lacks the memory line"
    ;;
  log_file_and_verbose)
    # Global logging options work before and after the subcommand; the log
    # file gets the log, stdout still only the text.
    "$QLM" run -m "$AUSTEN" -p "Emma" -n 3 --temp 0 --log-file "$TMP/log" >"$TMP/out" 2>"$TMP/err" ||
      fail "run --log-file failed: $(cat "$TMP/err")"
    grep -q "load time" "$TMP/log" || fail "the log file lacks the timing summary"
    ! grep -q "load time" "$TMP/out" || fail "logs on stdout"
    "$QLM" -v run -m "$AUSTEN" -p "Emma" -n 3 --temp 0 >"$TMP/out" 2>"$TMP/err" || fail "-v run failed"
    printf 'Hi\n' | "$QLM" chat -m "$AUSTEN" -n 3 --temp 0 -v >"$TMP/out" 2>"$TMP/err" ||
      fail "chat -v failed"
    grep -q "^turn 1: prompt eval" "$TMP/err" || fail "-v did not enable debug lines"
    printf 'Hi\n' | "$QLM" chat -m "$AUSTEN" -n 3 --temp 0 >"$TMP/out" 2>"$TMP/err"
    ! grep -q "^turn 1: prompt eval" "$TMP/err" || fail "debug lines without -v"
    expect_error 1 "--log-file" "$QLM" --log-file "$TMP/log/under-a-file" info --no-model
    ;;
  help_every_subcommand)
    "$QLM" --help >"$TMP/help" || fail "qlm --help failed"
    subs=$(sed -n '/^Subcommands:/,$p' "$TMP/help" | awk 'NR > 1 && NF { print $1 }')
    [ -n "$subs" ] || fail "no subcommands listed in qlm --help"
    for s in $subs; do
      "$QLM" "$s" --help >"$TMP/out" 2>&1 || fail "qlm $s --help exited non-zero"
      grep -q "Options:" "$TMP/out" || fail "qlm $s --help lists no options"
    done
    for s in run chat; do
      "$QLM" $s --help >"$TMP/out"
      grep -q -- "--temp FLOAT=0.8" "$TMP/out" || fail "qlm $s --help lacks the --temp default"
    done
    echo "checked: $subs"
    ;;
  *)
    fail "unknown case"
    ;;
esac
echo "ok [$case_name]"
