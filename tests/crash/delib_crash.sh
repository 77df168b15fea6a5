#!/usr/bin/env bash
# delib_crash.sh CEREBELUM LLM_WORKER STUB - durable deliberation under
# kill -9, against the OpenAI-compatible stub (its journal is the judge).
#
#   1. Server kills: 20 deliberations (ring, 3 agents, judge: 12 calls each)
#      run on two LLM workers while `cerebelum serve` is SIGKILLed at random
#      moments, several times, and restarted on the same database. Every
#      deliberation completes, and every call (child execution, step) is
#      completed exactly once in the stub's journal: no finished call is
#      sent again after any crash.
#   2. Worker kills: a worker running one call at a time is SIGKILLed at
#      random moments and restarted; at most one call per kill is paid for
#      twice (the one it was running).
#   3. The stub is killed in the middle of streams and restarted on its
#      port: the calls it dropped fail as retryable and are retried, and every
#      deliberation completes.
# Skipped (77) without CEREBELUM_TEST_DATABASE_URL.
set -u
cbm=$1 worker=$2 stub=$3
KILLS=${DELIB_KILLS:-4}
[ -n "${CEREBELUM_TEST_DATABASE_URL:-}" ] || exit 77
name="cbm_delib_$$_$RANDOM"
work=$(mktemp -d /tmp/cbm-delib-crash.XXXXXX)
admin=$CEREBELUM_TEST_DATABASE_URL
url="${admin%/*}/$name"
pids=()
cleanup() {
  for p in "${pids[@]}" ${spid:-} ${stubpid:-}; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
die() {
  echo "delib_crash: $*" >&2
  for f in "$work"/*.err; do echo "--- $f" >&2; tail -25 "$f" >&2; done
  exit 1
}
psql -q "$admin" -c "CREATE DATABASE $name" || exit 1
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
export CEREBELUM_DATABASE_URL=$url

rnd() { python3 -c "import random; print(round(random.uniform($1, $2), 2))"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stub_start() { # port
  python3 "$stub" --port "$1" --models stub-model --ttft-ms 20 --tps 400 \
    --journal "$work/journal.jsonl" >>"$work/stub.out" 2>>"$work/stub.err" &
  stubpid=$!
  for i in $(seq 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$1/health', timeout=1)" \
      2>/dev/null && return 0
    sleep 0.1
  done
  die "the stub did not start"
}
serve_start() { # port
  "$cbm" serve --listen "127.0.0.1:$1" 2>>"$work/serve.err" &
  spid=$!
  for i in $(seq 600); do
    grep -q "serving on 127.0.0.1:$1" "$work/serve.err" 2>/dev/null && return 0
    kill -0 "$spid" 2>/dev/null || die "serve exited"
    sleep 0.05
  done
  die "serve did not start"
}
worker_start() { # id concurrency
  "$worker" --server "127.0.0.1:$sport" --base-url "http://127.0.0.1:$port/v1" --model stub-model \
    --queue llm --concurrency "$2" --worker-id "$1" >/dev/null 2>>"$work/$1.err" &
  echo $!
}
# Deliberations that are not completed yet (ids from the file $1).
unfinished() {
  local n=0 id st
  while read -r id; do
    st=$("$cbm" show "$id" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null)
    [ "$st" = failed ] && die "deliberation $id failed: $("$cbm" show "$id" 2>&1 | tail -3)"
    [ "$st" = completed ] || n=$((n + 1))
  done <"$1"
  echo "$n"
}
wait_all() { # file timeout_s
  for i in $(seq $(($2 * 2))); do
    [ "$(unfinished "$1")" = 0 ] && return 0
    sleep 0.5
  done
  die "$(unfinished "$1") deliberations of $1 unfinished after $2 s"
}
# Calls completed at the stub more than once (for executions in file $1).
repaid() {
  python3 - "$work/journal.jsonl" <<'PY'
import json, sys, collections
done = collections.Counter()
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("status") == "completed" and e.get("task"):
        exe, step, attempt = e["task"].rsplit("/", 2)
        done[(exe, step)] += 1
print(sum(v - 1 for v in done.values()), len(done))
PY
}

port=$(free_port); sport=$(free_port)
stub_start "$port"
serve_start "$sport"
export CEREBELUM_SERVER=127.0.0.1:$sport
cat >"$work/council.json" <<'JSON'
{"name": "crash", "role": "developer", "queue": "llm",
 "model": {"name": "stub-model", "max_tokens": 64},
 "system_prompt": "You are {{agent}}, {{persona}}.",
 "prompts": {"generate": "Solve: {{task}}", "critique": "Critique: {{proposal}}",
             "revise": "Revise {{proposal}} given {{critiques}}",
             "score": "Score {{proposal}} on {{rubric}}"},
 "rubric": {"correctness": {"weight": 1, "description": "it is right"}},
 "agents": [{"id": "a1", "persona": "careful"}, {"id": "a2", "persona": "quick"},
            {"id": "a3", "persona": "sceptical"}]}
JSON
"$cbm" council put "$work/council.json" >/dev/null || die "council put failed"
cat >"$work/bp.json" <<'JSON'
{"name": "delib_crash", "steps": [
  {"name": "d", "kind": "deliberation", "council": "crash", "task": "$.inputs.task",
   "agents": 3, "rounds": 1, "topology": "ring", "scoring": {"mode": "judge"},
   "selection": {"rule": "top_score", "min_proposals": 1},
   "call": {"timeout_ms": 60000, "heartbeat_timeout_ms": 3000,
            "retry": {"max_attempts": 20, "initial_ms": 100, "max_ms": 1000}}}]}
JSON
"$cbm" blueprint register "$work/bp.json" >/dev/null || die "blueprint register failed"
w1=$(worker_start w1 8); w2=$(worker_start w2 8); pids+=("$w1" "$w2")

# ---- 1. server kills
: >"$work/ids1"
for i in $(seq 20); do
  "$cbm" start delib_crash --input "{\"task\": \"problem $i\"}" --id "crash-$i" >>"$work/ids1" ||
    die "start $i failed"
done
for k in $(seq "$KILLS"); do
  sleep "$(rnd 0.3 1.5)"
  kill -9 "$spid"; wait "$spid" 2>/dev/null
  sleep "$(rnd 0 1)"
  serve_start "$sport"
done
wait_all "$work/ids1" 240
read -r twice calls < <(repaid)
echo "server kills: $KILLS kills, $calls calls completed at the stub, $twice paid twice"
[ "$calls" -ge 240 ] || die "only $calls distinct calls completed, want 240"
[ "$twice" = 0 ] || die "$twice finished calls were sent again after a server crash"

# ---- 2. worker kills: one worker, one call at a time
kill -TERM "$w1" "$w2"; wait "$w1" "$w2" 2>/dev/null; pids=()
: >"$work/ids2"
for i in $(seq 5); do
  "$cbm" start delib_crash --input "{\"task\": \"worker kill $i\"}" --id "wk-$i" >>"$work/ids2" ||
    die "start failed"
done
before=$twice
w=$(worker_start w3 1); pids+=("$w")
for k in $(seq "$KILLS"); do
  sleep "$(rnd 0.5 1.5)"
  kill -9 "$w"; wait "$w" 2>/dev/null
  w=$(worker_start w3 1); pids=("$w")
done
wait_all "$work/ids2" 240
read -r twice calls < <(repaid)
echo "worker kills: $KILLS kills, $((twice - before)) calls paid twice"
[ $((twice - before)) -le "$KILLS" ] || die "$((twice - before)) calls paid twice for $KILLS kills"

# ---- 3. stub kills mid-stream
w4=$(worker_start w4 8); pids+=("$w4")
: >"$work/ids3"
for i in $(seq 5); do
  "$cbm" start delib_crash --input "{\"task\": \"stub kill $i\"}" --id "sk-$i" >>"$work/ids3" ||
    die "start failed"
done
for k in 1 2; do
  sleep "$(rnd 0.3 0.8)"
  kill -9 "$stubpid"; wait "$stubpid" 2>/dev/null
  sleep 0.5
  stub_start "$port"
done
wait_all "$work/ids3" 240
retried=$(python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("status") == "completed" and e.get("task") and int(e["task"].rsplit("/", 1)[1]) > 1:
        n += 1
print(n)' "$work/journal.jsonl")
echo "stub kills: every deliberation completed; $retried calls completed on a later attempt in the whole run"
echo "delib_crash: ok"
