#!/usr/bin/env bash
# console_test.sh CEREBELUM REMOTE_WORKER SCREENSHOT_DIR [LLM_WORKER] - the
# web console (docs/console.md) in headless Chromium.
#
# Starts a real `cerebelum serve --demo-handlers --http 127.0.0.1:0 --token T`
# on a fresh database of the test PostgreSQL and a real remote worker
# (examples/remote/remote_worker.c) against it, then runs console_test.mjs:
# Debian's chromium driven by playwright-core (tests/console/node_modules,
# installed by scripts/setup.sh) clicks through the pages and asserts on
# their DOM. With LLM_WORKER (cerebelum-llm-worker, built when libcurl is
# found) it also runs a deliberation against the model-server stub
# (tests/llmstub/llmstub.py) for the deliberation view. Screenshots of the main pages go to SCREENSHOT_DIR. Skips (77)
# without CEREBELUM_TEST_DATABASE_URL (tests/harness/with-postgres.sh), or
# without chromium, node or playwright-core (scripts/setup.sh installs them).
set -u
exe=$1
worker_exe=$2
shots=$3
llm_exe=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
[ -n "${CEREBELUM_TEST_DATABASE_URL:-}" ] || { echo "CEREBELUM_TEST_DATABASE_URL unset: skipped"; exit 77; }
chromium=${CHROMIUM:-$(command -v chromium || true)}
[ -n "$chromium" ] && [ -x "$chromium" ] || { echo "no chromium (scripts/setup.sh installs Debian's): skipped"; exit 77; }
command -v node >/dev/null || { echo "no node (scripts/setup.sh installs it): skipped"; exit 77; }
[ -d "$here/node_modules/playwright-core" ] ||
  { echo "no tests/console/node_modules/playwright-core (scripts/setup.sh installs it): skipped"; exit 77; }

tmp=$(mktemp -d /tmp/cbm-console-test.XXXXXX)
db="cbm_console_$$_$RANDOM"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  wait 2>/dev/null
  psql -q "$CEREBELUM_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql -q "$CEREBELUM_TEST_DATABASE_URL" -c "CREATE DATABASE $db" || exit 1
export CEREBELUM_DATABASE_URL="${CEREBELUM_TEST_DATABASE_URL%/*}/$db"
unset CEREBELUM_SERVER CEREBELUM_TOKEN CEREBELUM_LISTEN CEREBELUM_HTTP CEREBELUM_STATE_DIR
token="console-$RANDOM$RANDOM"

"$exe" serve --demo-handlers --listen 127.0.0.1:0 --http 127.0.0.1:0 --token "$token" 2>"$tmp/serve.err" &
pids+=($!)
grpc="" http=""
for _ in $(seq 600); do
  line=$(grep -m1 '^cerebelum: serving on ' "$tmp/serve.err")
  if [ -n "$line" ]; then
    grpc=$(sed -n 's/^cerebelum: serving on \([^ ,]*\).*/\1/p' <<<"$line")
    http=$(sed -n 's/.*HTTP on \([^ ,]*\).*/\1/p' <<<"$line")
    break
  fi
  kill -0 "${pids[0]}" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$http" ] || [ -z "$grpc" ]; then
  echo "FAIL: the server did not start with HTTP:" >&2
  cat "$tmp/serve.err" >&2
  exit 1
fi

# A worker for the workers page and the remote steps of "pipeline".
"$worker_exe" "$grpc" default,gpu --capability gpu=true --concurrency 2 --id console-worker \
  --token "$token" 2>"$tmp/worker.err" &
pids+=($!)

# A deliberation: the model-server stub and an LLM worker on queue "llm".
delib=""
if [ -n "$llm_exe" ]; then
  python3 "$here/../llmstub/llmstub.py" --port 0 --port-file "$tmp/stub.port" --models stub-model \
    >"$tmp/stub.out" 2>"$tmp/stub.err" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$tmp/stub.port" ] && break; sleep 0.1; done
  [ -s "$tmp/stub.port" ] || { echo "FAIL: the LLM stub did not start" >&2; cat "$tmp/stub.err" >&2; exit 1; }
  "$llm_exe" --server "$grpc" --token "$token" --base-url "http://127.0.0.1:$(cat "$tmp/stub.port")/v1" \
    --model stub-model --queue llm --capability gpu=true --concurrency 8 --worker-id console-llm \
    2>"$tmp/llm.err" &
  pids+=($!)
  delib="$here/../../examples/deliberation/councils/developer.json"
fi

mkdir -p "$shots"
rm -f "$shots"/*.png
CONSOLE_URL="http://$http" CONSOLE_TOKEN="$token" CONSOLE_SHOTS="$shots" CHROMIUM="$chromium" \
  PIPELINE_JSON="$here/../../examples/remote/pipeline.json" COUNCIL_JSON="$delib" \
  node "$here/console_test.mjs"
rc=$?
if [ "$rc" != 0 ]; then
  echo "--- serve's stderr (last 40 lines)" >&2
  tail -n 40 "$tmp/serve.err" >&2
  echo "--- worker's stderr (last 20 lines)" >&2
  tail -n 20 "$tmp/worker.err" >&2
  [ -f "$tmp/llm.err" ] && { echo "--- the LLM worker's stderr (last 20 lines)" >&2; tail -n 20 "$tmp/llm.err" >&2; }
fi
exit "$rc"
