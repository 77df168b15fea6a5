#!/usr/bin/env bash
# run.sh CEREBELUM REMOTE_WORKER [N] - the remote example end to end.
#
# Starts `cerebelum serve` on CEREBELUM_DATABASE_URL (loopback, a port the
# kernel picks), two workers (queue "default"; queue "gpu" with the
# capability gpu=true), registers pipeline.json (fetch on default -> infer on
# gpu -> publish on default), starts N executions with the CLI (idempotency
# keys page-1..N), waits for them, checks every result and which worker ran
# which step, repeats a start (same key: the same execution, not started
# again), then drains the workers and stops the server with SIGTERM.
# Exit 0 when all of that held. Everything it started is stopped on exit.
set -u
cbm=$1 worker=$2 n=${3:-3}
dir=$(cd "$(dirname "$0")" && pwd)
[ -n "${CEREBELUM_DATABASE_URL:-}" ] || { echo "run.sh: set CEREBELUM_DATABASE_URL" >&2; exit 2; }
tmp=$(mktemp -d /tmp/cbm-remote-example.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
die() { echo "run.sh: $*" >&2; for f in "$tmp"/*.err; do echo "--- $f" >&2; tail -20 "$f" >&2; done; exit 1; }

"$cbm" serve --listen 127.0.0.1:0 2>"$tmp/serve.err" &
spid=$!; pids+=("$spid")
for i in $(seq 300); do
  addr=$(sed -n 's/^cerebelum: serving on \([^ ]*\).*/\1/p' "$tmp/serve.err")
  [ -n "$addr" ] && break
  kill -0 "$spid" 2>/dev/null || die "serve exited"
  sleep 0.1
done
[ -n "$addr" ] || die "serve did not start"
export CEREBELUM_SERVER=$addr
echo "serving on $addr"

"$worker" "$addr" default --id w-default --concurrency 2 2>"$tmp/w-default.err" &
w1=$!; pids+=("$w1")
"$worker" "$addr" gpu --capability gpu=true --id w-gpu 2>"$tmp/w-gpu.err" &
w2=$!; pids+=("$w2")

"$cbm" blueprint register "$dir/pipeline.json" || die "register failed"
ids=()
for i in $(seq "$n"); do
  id=$("$cbm" start pipeline --input "{\"url\": \"https://example.com/$i\"}" --id "page-$i" 2>>"$tmp/cli.err") ||
    die "start $i failed"
  ids+=("$id")
done
for id in "${ids[@]}"; do
  for i in $(seq 300); do
    st=$("$cbm" show "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    [ "$st" = completed ] && break
    [ "$st" = failed ] && die "execution $id failed"
    sleep 0.1
  done
  [ "$st" = completed ] || die "execution $id is $st after 30 s"
  "$cbm" show "$id" --json | python3 -c '
import json, sys
x = json.load(sys.stdin)
r = x["result"]["publish"]
assert r == {"published": True, "summary": "6 words, starting '"'"'durable work'"'"'"}, r
assert x["state"]["steps"]["infer"]["result"]["device"] == "gpu"' || die "wrong result for $id"
  echo "$id completed: $("$cbm" show "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["publish"]["summary"])')"
done
# Each queue's steps ran on its own worker.
[ "$(grep -c '\] infer:' "$tmp/w-gpu.err")" -ge "$n" ] || die "the gpu worker did not run every infer"
grep -q '\] infer:' "$tmp/w-default.err" && die "the default worker ran an infer"
[ "$(grep -c '\] fetch ' "$tmp/w-default.err")" -ge "$n" ] || die "the default worker did not run every fetch"
# The same key again: the same execution, nothing started.
again=$("$cbm" start pipeline --input '{"url": "https://example.com/1"}' --id page-1 2>"$tmp/again.err")
[ "$again" = "${ids[0]}" ] || die "same key gave $again, want ${ids[0]}"
grep -q "existing execution" "$tmp/again.err" || die "a repeated start did not say 'existing'"
echo "start --id page-1 again: $(cat "$tmp/again.err")"

# Drain the workers, then stop the server.
kill -TERM "$w1" "$w2"
wait "$w1" || die "worker default exited $?"
wait "$w2" || die "worker gpu exited $?"
grep -q "stopped:" "$tmp/w-gpu.err" || die "the gpu worker did not drain"
kill -TERM "$spid"
wait "$spid" || die "serve exited $?"
echo "ok: $n executions across two workers"
