#!/usr/bin/env bash
# CLI test for `qlm bench` (issue 7): runs it on the tiny random shape and
# checks the JSON lines and the markdown table.
#   bench_test.sh CASE QLM SHARED_DIR
set -u -o pipefail

case_name=$1
QLM=$2
SHARED=$3

source "$(dirname "$0")/common.sh"

"$QLM" random-model --shape tiny-test -o "$TMP/m" >"$TMP/rm.out" 2>&1 ||
  fail "random-model failed: $(cat "$TMP/rm.out")"

case "$case_name" in
  bench_json)
    "$QLM" bench -m "$TMP/m" -p 16 -n 4 -r 2 -t 2 --json >"$TMP/out" 2>"$TMP/err" ||
      fail "bench failed: $(cat "$TMP/err")"
    cat "$TMP/out"
    [ "$(wc -l <"$TMP/out")" -eq 2 ] || fail "expected 2 JSON lines"
    python3 - "$TMP/out" <<'PY' || exit 1
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
tests = [l["test"] for l in lines]
assert tests == ["pp16", "tg4"], tests
for l in lines:
    for k in ("test", "tokens_per_s", "stddev", "bytes_per_token", "bandwidth_fraction"):
        assert k in l, (k, l)
    assert l["tokens_per_s"] > 0, l
    assert l["stddev"] >= 0, l
tg = lines[1]
assert tg["bytes_per_token"] > 0, tg
assert 0 < tg["bandwidth_fraction"] < 1000, tg
assert tg["bandwidth_fraction_paired"] is None, tg  # only with --paired
assert all(l["mmap"] is False for l in lines), lines  # read into memory by default
PY
    # --mmap: the weights mapped instead; same keys, "mmap": true. --no-mmap
    # names the default.
    for flag in --mmap --no-mmap; do
      "$QLM" bench -m "$TMP/m" -p 0 -n 2 -r 1 -t 1 $flag --json >"$TMP/out" 2>"$TMP/err" ||
        fail "bench $flag failed: $(cat "$TMP/err")"
      python3 - "$TMP/out" "$flag" <<'PY' || exit 1
import json, sys
tg = json.loads(open(sys.argv[1]).read())
assert tg["test"] == "tg2" and tg["tokens_per_s"] > 0, tg
assert tg["mmap"] is (sys.argv[2] == "--mmap"), tg
PY
    done
    # --paired: every token followed by a probe slice of its bytes.
    "$QLM" bench -m "$TMP/m" -p 0 -n 4 -r 2 -t 2 --paired --json >"$TMP/out" 2>"$TMP/err" ||
      fail "bench --paired failed: $(cat "$TMP/err")"
    grep -q 'paired' "$TMP/err" || fail "no per-repetition paired line: $(cat "$TMP/err")"
    python3 - "$TMP/out" <<'PY' || exit 1
import json, sys
tg = json.loads(open(sys.argv[1]).read())
assert tg["test"] == "tg4", tg
assert 0 < tg["bandwidth_fraction_paired"] < 1000, tg
assert tg["bandwidth_fraction_paired_stddev"] >= 0, tg
PY
    ;;
  bench_table)
    "$QLM" bench -m "$TMP/m" -p 8 -n 2 -r 1 -t 1 >"$TMP/out" 2>"$TMP/err" ||
      fail "bench failed: $(cat "$TMP/err")"
    cat "$TMP/out"
    grep -q '^| model | size | params | format | ISA | threads | test | t/s' "$TMP/out" ||
      fail "no table header"
    grep -q '| pp8 |' "$TMP/out" || fail "no pp8 row"
    grep -q '| tg2 |' "$TMP/out" || fail "no tg2 row"
    "$QLM" bench -m "$TMP/m" -r 0 >"$TMP/out" 2>"$TMP/err"
    [ $? -eq 2 ] || fail "-r 0 should be a usage error (exit 2)"
    grep -q 'repetitions' "$TMP/err" || fail "error does not name -r: $(cat "$TMP/err")"
    ;;
  bench_profile)
    # --profile: one JSON line per decode-linear shape and one for the rest;
    # their shares add up to the decode time, and the table has the same rows.
    "$QLM" bench -m "$TMP/m" -p 0 -n 4 -r 2 -t 2 --profile --json >"$TMP/out" 2>"$TMP/err" ||
      fail "bench --profile failed: $(cat "$TMP/err")"
    cat "$TMP/out"
    python3 - "$TMP/out" "$TMP/m/config.json" <<'PY' || exit 1
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
c = json.load(open(sys.argv[2]))
tg = [l for l in lines if "profile" not in l]
lin = [l for l in lines if l.get("profile") == "linear"]
rest = [l for l in lines if l.get("profile") == "rest"]
assert len(tg) == 1 and tg[0]["test"] == "tg4", lines
assert len(rest) == 1, lines
layers = c["num_hidden_layers"]
loops = sum(l["loops_per_token"] for l in lin)
assert abs(loops - (4 * layers + 1)) < 1e-9, (loops, layers)  # qkv, o, gate+up, down; head
for l in lin:
    assert l["test"] == "tg4" and l["rows"] > 0 and l["cols"] > 0, l
    assert l["ms_per_token"] > 0 and l["gb_per_s"] > 0 and l["bandwidth_fraction"] > 0, l
share = sum(l["share"] for l in lin) + rest[0]["share"]
assert abs(share - 1) < 1e-6, share
# Every row is the same decode time per token split up: ms / share is that time.
per_token = [l["ms_per_token"] / l["share"] for l in lin + rest if l["share"] > 0]
assert max(per_token) - min(per_token) < 1e-6 * max(per_token), per_token
PY
    # That time is Σ decode time / Σ tokens; tokens_per_s is the mean of the
    # repetitions' rates, so the two match exactly with one repetition (with
    # several, one preempted repetition moves the mean of rates far away).
    "$QLM" bench -m "$TMP/m" -p 0 -n 4 -r 1 -t 2 --profile --json >"$TMP/out" 2>"$TMP/err" ||
      fail "bench --profile -r 1 failed: $(cat "$TMP/err")"
    python3 - "$TMP/out" <<'PY' || exit 1
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
tg = [l for l in lines if "profile" not in l]
rest = [l for l in lines if l.get("profile") == "rest"]
assert len(tg) == 1 and len(rest) == 1, lines
# rest's share is > 0 in practice; fall back to a linear row if not.
row = rest[0] if rest[0]["share"] > 0 else [l for l in lines if l.get("profile") == "linear"][0]
per_token_ms = row["ms_per_token"] / row["share"]
ratio = per_token_ms * tg[0]["tokens_per_s"] / 1000
assert abs(ratio - 1) < 1e-6, (ratio, per_token_ms, tg[0])
PY
    "$QLM" bench -m "$TMP/m" -p 0 -n 2 -r 1 -t 1 --profile >"$TMP/out" 2>"$TMP/err" ||
      fail "bench --profile (table) failed: $(cat "$TMP/err")"
    cat "$TMP/out"
    grep -q '^| linear (rows × K) | format | loops/token | ms/token | share | GB/s | of probe |' \
      "$TMP/out" || fail "no profile table header"
    grep -q '^| everything else' "$TMP/out" || fail "no 'everything else' row"
    ;;
  bench_profile_prefill)
    # --profile with a pp test: the prefill linears per prompt, in GFLOP/s;
    # the head runs once per prompt (only the last token's logits), the rest
    # once per layer, and the shares add up to the prefill time.
    "$QLM" bench -m "$TMP/m" -p 8 -n 0 -r 2 -t 2 --profile --json >"$TMP/out" 2>"$TMP/err" ||
      fail "bench -p --profile failed: $(cat "$TMP/err")"
    cat "$TMP/out"
    python3 - "$TMP/out" "$TMP/m/config.json" <<'PY' || exit 1
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
c = json.load(open(sys.argv[2]))
pp = [l for l in lines if "profile" not in l]
lin = [l for l in lines if l.get("profile") == "linear"]
rest = [l for l in lines if l.get("profile") == "rest"]
assert len(pp) == 1 and pp[0]["test"] == "pp8", lines
assert len(rest) == 1 and rest[0]["test"] == "pp8", lines
layers = c["num_hidden_layers"]
loops = sum(l["loops_per_prompt"] for l in lin)
assert abs(loops - (4 * layers + 1)) < 1e-9, (loops, layers)
for l in lin:
    assert l["test"] == "pp8" and l["rows"] > 0 and l["cols"] > 0, l
    assert l["ms_per_prompt"] > 0 and l["gflop_per_s"] > 0, l
    assert "gb_per_s" not in l, l
share = sum(l["share"] for l in lin) + rest[0]["share"]
assert abs(share - 1) < 1e-6, share
# GFLOP/s is 2 · tokens · rows · K over the loop's time: the head (vocab
# rows) sees one token per prompt, every other linear eight.
for l in lin:
    tokens = 1 if l["rows"] == c["vocab_size"] else 8
    want = 2 * tokens * l["rows"] * l["cols"] * l["loops_per_prompt"] / (l["ms_per_prompt"] * 1e6)
    assert abs(l["gflop_per_s"] / want - 1) < 1e-6, (l, want)
PY
    "$QLM" bench -m "$TMP/m" -p 8 -n 2 -r 1 -t 1 --profile >"$TMP/out" 2>"$TMP/err" ||
      fail "bench -p -n --profile (table) failed: $(cat "$TMP/err")"
    cat "$TMP/out"
    grep -q '^| linear (rows × K) | format | loops/prompt | ms/prompt | share | GFLOP/s |' \
      "$TMP/out" || fail "no prefill profile table header"
    grep -q '^| linear (rows × K) | format | loops/token | ms/token | share | GB/s | of probe |' \
      "$TMP/out" || fail "no decode profile table header"
    ;;
  bench_kv_type)
    # An int8 KV cache reads 1 byte per element + one f32 scale per row
    # instead of 4 bytes per element: tg bytes/token must shrink by exactly
    # that (tiny-test: every layer sees all positions of a 4-token run).
    for kv in f32 int8; do
      "$QLM" bench -m "$TMP/m" -p 0 -n 4 -r 1 -t 1 --kv-type $kv --json >"$TMP/$kv" 2>"$TMP/err" ||
        fail "bench --kv-type $kv failed: $(cat "$TMP/err")"
    done
    python3 - "$TMP/f32" "$TMP/int8" "$TMP/m/config.json" <<'PY' || exit 1
import json, sys
f32, i8 = (json.loads(open(p).read()) for p in sys.argv[1:3])
c = json.load(open(sys.argv[3]))
assert f32["kv_type"] == "f32" and i8["kv_type"] == "int8", (f32, i8)
hd = c.get("head_dim", c["hidden_size"] // c["num_attention_heads"])
kvh = c.get("num_key_value_heads", c["num_attention_heads"])
positions = c["num_hidden_layers"] * (1 + 2 + 3 + 4) / 4  # mean positions read per token
want = positions * 2 * kvh * (hd * 4 - (hd + 4))
got = f32["bytes_per_token"] - i8["bytes_per_token"]
assert abs(got - want) < 1e-6 * f32["bytes_per_token"], (got, want)
PY
    expect_error 2 "--kv-type" "$QLM" bench -m "$TMP/m" --kv-type q5
    ;;
  *) fail "unknown case" ;;
esac
echo "PASS [$case_name]"
