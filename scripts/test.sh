#!/usr/bin/env bash
# test.sh - set up, build with AddressSanitizer + UndefinedBehaviorSanitizer,
# and run every test suite against a private PostgreSQL started for the run
# (tests/harness/with-postgres.sh). Ends with the line "N passed, N failed".
# Extra arguments go to `meson test` (e.g. --suite unit).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1

BUILD=${BUILD:-build-asan}
if [ ! -d "$BUILD" ]; then
  meson setup "$BUILD" -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug -Dwerror=true >/dev/null || exit 1
fi
ninja -C "$BUILD" || { echo "0 passed, 1 failed"; exit 1; }

tests/harness/with-postgres.sh meson test -C "$BUILD" --print-errorlogs \
  --num-processes 2 "$@"
rc=$?

python3 - "$BUILD/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
try:
    with open(sys.argv[1]) as f:
        for line in f:
            r = json.loads(line).get("result")
            if r in ("OK", "EXPECTEDFAIL"): passed += 1
            elif r == "SKIP": skipped += 1
            else: failed += 1
except FileNotFoundError:
    failed = 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $rc
