#!/usr/bin/env bash
# Generates the fixture-derived malformed cases from ../shared into a
# temporary folder (scripts/make-bad-corpus.py --from-shared) and runs
# `qlm logits` on each under qlm_run_bounded.
#   run_shared_cases.sh PYTHON MAKE_BAD_CORPUS SHARED RUN_BOUNDED QLM [BOUNDS...]
set -u -o pipefail
python=$1 script=$2 shared=$3 runner=$4 qlm=$5
shift 5

[ -d "$shared/fixtures/tiny-llama" ] || {
  echo "missing test data: $shared/fixtures/tiny-llama (expected ../shared beside the repository)"
  exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" "$script" --from-shared "$shared" --out "$tmp/cases" || exit 1

total=0 failed=0
while IFS=$'\t' read -r kind rel outcome phrase cli; do
  case "$kind" in '#'* | '') continue ;; esac
  total=$((total + 1))
  if ! "$runner" "$@" --outcome "$outcome" --expect "$phrase" -- \
    "$qlm" logits --ids 2,3 -o /dev/null -m "$tmp/cases/$rel"; then
    failed=$((failed + 1))
  fi
done <"$tmp/cases/MANIFEST"
echo "shared fixture cases: $((total - failed)) of $total passed"
[ "$total" -gt 0 ] && [ "$failed" -eq 0 ]
