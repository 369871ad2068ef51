# Shared preamble of the CLI test scripts, sourced after they set case_name:
# a scratch directory, failure reporting, the test-data check and the error
# contract every qlm command keeps.
# shellcheck shell=bash

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

fail() {
  echo "FAIL [$case_name]: $*"
  exit 1
}

# need_data PATH...: every PATH exists, else say which is missing.
need_data() {
  local p
  for p in "$@"; do
    [ -e "$p" ] || { echo "missing test data: $p (expected ../shared beside the repository)"; exit 1; }
  done
}

# expect_error CODE WORD CMD...: CMD (stdin empty) exits with CODE, prints
# exactly one stderr line, starting with "error: " and containing WORD, and
# nothing on stdout.
expect_error() {
  local want=$1 word=$2
  shift 2
  "$@" </dev/null >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  echo "\$ ${*}  -> exit $rc: $(cat "$TMP/err")"
  [ "$rc" -eq "$want" ] || fail "exit code $rc, expected $want"
  [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "expected one stderr line, got: $(cat "$TMP/err")"
  grep -q '^error: ' "$TMP/err" || fail "stderr does not start with 'error: '"
  grep -qF -- "$word" "$TMP/err" || fail "error message does not mention '$word'"
  [ ! -s "$TMP/out" ] || fail "stdout not empty: $(cat "$TMP/out")"
}
