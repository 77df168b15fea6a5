#!/usr/bin/env bash
# test.sh - set up, build with AddressSanitizer + UndefinedBehaviorSanitizer,
# and run every test suite against a private PostgreSQL started for the run
# (tests/harness/with-postgres.sh) and a private nats-server -js
# (tests/harness/with-nats.sh); then the fuzz suite, from a second build
# with clang and libFuzzer (build-fuzz, tests/fuzz, docs/fuzzing.md), where
# each target runs for a few seconds. Ends with the line
# "N passed, N failed, N skipped", which counts both runs.
# Extra arguments go to `meson test` of the first run (e.g. --suite unit) and
# leave the fuzz run out; FUZZ=1 runs it anyway, FUZZ=0 never.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1

BUILD=${BUILD:-build-asan}
if [ ! -d "$BUILD" ]; then
  meson setup "$BUILD" -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug -Dwerror=true >/dev/null || exit 1
fi
ninja -C "$BUILD" || { echo "0 passed, 1 failed"; exit 1; }

tests/harness/with-postgres.sh tests/harness/with-nats.sh meson test -C "$BUILD" --print-errorlogs \
  --num-processes 2 "$@"
rc=$?
logs=("$BUILD/meson-logs/testlog.json")

# The fuzz suite. Without clang or libFuzzer, or when its build fails, its
# log is missing, which counts as a failure below: never a silent skip.
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
if [ "${FUZZ:-$([ $# -eq 0 ] && echo 1 || echo 0)}" = 1 ]; then
  logs+=("$FUZZ_BUILD/meson-logs/testlog.json")
  rm -f "$FUZZ_BUILD/meson-logs/testlog.json"
  if ! command -v clang >/dev/null; then
    echo "test.sh: clang is missing, so the fuzz suite cannot run (scripts/setup.sh installs it)" >&2
    rc=1
  elif [ ! -d "$FUZZ_BUILD" ] && ! CC=clang meson setup "$FUZZ_BUILD" -Dfuzz=true \
      -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
      -Dwerror=true >/dev/null; then
    echo "test.sh: cannot configure $FUZZ_BUILD (clang with libFuzzer)" >&2
    rm -rf "$FUZZ_BUILD"
    rc=1
  elif ! ninja -C "$FUZZ_BUILD"; then
    rc=1
  else
    meson test -C "$FUZZ_BUILD" --suite fuzz --print-errorlogs --num-processes 2 || rc=1
  fi
fi

python3 - "${logs[@]}" <<'PY'
import json, sys
passed = failed = skipped = 0
for log in sys.argv[1:]:
    try:
        with open(log) as f:
            for line in f:
                r = json.loads(line).get("result")
                if r in ("OK", "EXPECTEDFAIL"): passed += 1
                elif r == "SKIP": skipped += 1
                else: failed += 1
    except FileNotFoundError:
        failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $rc
