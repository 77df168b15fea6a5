#!/usr/bin/env bash
# run.sh TARGET CORPUS FINDINGS SECONDS [DICT] - the short run of one fuzz
# target, as the 'fuzz' suite runs it (tests/fuzz/meson.build).
#
# The target runs for SECONDS (CBM_FUZZ_SECONDS overrides it) on a temporary
# copy of CORPUS, so the repository is never written to; new inputs it finds
# are thrown away with the copy. A crash, a leak, a UBSan report or a slow
# input makes libFuzzer write the input to FINDINGS/ and this script exit 1
# (libFuzzer's own default exit code, 77, would read as "skipped" to meson).
# Reproduce a finding with `TARGET FINDINGS/crash-...`.
set -uo pipefail
target=$1 corpus=$2 findings=$3 seconds=${CBM_FUZZ_SECONDS:-$4} dict=${5:-}

[ -x "$target" ] || { echo "run.sh: $target is not built" >&2; exit 1; }
[ -d "$corpus" ] || { echo "run.sh: no corpus at $corpus" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/cbm-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
cp -R "$corpus"/. "$work"/
mkdir -p "$findings" || exit 1

args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
      -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1
      -artifact_prefix="$findings/")
[ -n "$dict" ] && args+=(-dict="$dict")
echo "run.sh: $(basename "$target") for ${seconds}s on $(ls "$corpus" | wc -l) seeds"
"$target" "${args[@]}" "$work"
rc=$?
if [ $rc -ne 0 ]; then
  echo "run.sh: $(basename "$target") failed (exit $rc); inputs in $findings:" >&2
  ls -l "$findings" >&2
  exit 1
fi
exit 0
