#!/usr/bin/env bash
# llm_worker_test.sh CEREBELUM LLM_WORKER LLMSTUB - cerebelum-llm-worker end
# to end: a real `cerebelum serve` on a fresh database of the test
# PostgreSQL, the real worker process, the stub (tests/llmstub) as the model
# server, all over loopback.
#   - the model server down at start: the worker says so and tries again
#     (not registered meanwhile), then serves once the stub comes up, with
#     the capabilities gpu=true (given) and model=stub-model (found);
#   - one generate call per §3's input completes with §4's result, and the
#     stub's journal has that attempt completed, same prompt hash and seed;
#   - 429 with Retry-After: 2 -> llm_rate_limited with retry_after_ms 2000,
#     and the retry waits for it; a context-length error is not retried;
#   - a stall ends in llm_stalled and the stub sees the connection aborted;
#   - an execution cancelled while its call hangs: the worker aborts the
#     transfer (the stub journals it aborted);
#   - SIGTERM drains the worker, which exits 0.
# Everything started is killed and the database dropped, on failure too
# (tests/cli/lib.sh). Skips (77) without CEREBELUM_TEST_DATABASE_URL.
set -u
exe=$1 worker=$2 stub=$3
dir=$(cd "$(dirname "$0")" && pwd)
# The temp dir, the fresh database, cleanup on exit, fail, start_server.
. "$dir/../cli/lib.sh"
unset CEREBELUM_LLM_BASE_URL CEREBELUM_LLM_API_KEY CEREBELUM_TLS_CLIENT_CERT CEREBELUM_TLS_CLIENT_KEY
# A short lease: heartbeats (lease / 3) carry cancels to the worker quickly.
export CEREBELUM_LEASE_MS=3000

ok() { echo "ok: $*"; }
sql() { psql -qtAX "$CEREBELUM_DATABASE_URL" -c "$1"; }
cli() { "$exe" "$@" 2>"$tmp/cli.err"; }
# wait_for TENTHS COMMAND...: until COMMAND succeeds
wait_for() {
  local n=$1 i; shift
  for i in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
  return 1
}
status_of() { sql "SELECT status FROM cbm_executions WHERE id = '$1'"; }
done_() { case "$(status_of "$1")" in completed|failed|cancelled) return 0;; esac; return 1; }
# jq-less JSON: py EXPR evaluates EXPR with x = the JSON on stdin
py() { python3 -c "import json,sys; x=json.load(sys.stdin); print($1)"; }
journal() { curl -s "http://127.0.0.1:$port/_stub/journal"; }
# entry TASK FIELD: that field of the task's settled journal entries, one a line
entry() {
  journal | python3 -c "
import json, sys
for e in json.load(sys.stdin):
    if e['task'] == sys.argv[1] and e['status'] != 'in_flight': print(e[sys.argv[2]])" "$1" "$2"
}
script() { curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/_stub/script" -d "$1"; }

# ---- the server, and a port for the stub that does not listen yet --------------
start_server main --listen 127.0.0.1:0 || exit 1
export CEREBELUM_SERVER=$addr
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')

# ---- 1. the model server down at start -------------------------------------------
"$worker" --server "$addr" --base-url "http://127.0.0.1:$port/v1/" --capability gpu=true \
  --concurrency 4 --worker-id llm-w1 --stall-timeout-ms 1000 2>"$tmp/w1.err" &
wpid=$!; pids+=("$wpid")
tries() { [ "$(grep -c 'does not answer with a model list' "$tmp/w1.err")" -ge "$1" ]; }
if wait_for 100 tries 2; then ok "model server down: the worker says so and tries again"
else fail "the worker did not retry the model list: $(cat "$tmp/w1.err")"; fi
registered() { cli workers --json | py "[w['worker_id'] for w in x].count('llm-w1')" | grep -q '^1$'; }
if registered; then fail "the worker registered before it knew its model"
else ok "no registration before the model list"; fi
kill -0 "$wpid" 2>/dev/null && ok "the worker is still up" || fail "the worker exited: $(cat "$tmp/w1.err")"

python3 "$stub" --port "$port" --models stub-model,other --journal "$tmp/journal.jsonl" \
  >"$tmp/stub.out" 2>"$tmp/stub.err" &
stubpid=$!; pids+=("$stubpid")
if wait_for 400 registered; then ok "the stub came up: the worker registered"
else fail "the worker never registered: $(cat "$tmp/w1.err")"; fi
caps=$(cli workers --json | py "[w['capabilities'] for w in x if w['worker_id'] == 'llm-w1'][0]")
grep -q "'model': 'stub-model'" <<<"$caps" && grep -q "'gpu': 'true'" <<<"$caps" &&
  ok "capabilities $caps" || fail "capabilities: $caps"

# ---- 2. one call -----------------------------------------------------------------
inputs=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$dir/call_inputs.json")
# bp NAME STEP ARGS RETRY: a blueprint of one LLM task step
bp() {
  cat >"$tmp/$1.json" <<JSON
{"name": "$1", "steps": [{"name": "$2", "queue": "llm", "handler": "cbm.llm.generate",
  "requires": {"model": "stub-model"}, "args": $3, "retry": $4}]}
JSON
  cli blueprint register "$tmp/$1.json" >/dev/null
}
bp call gen.0 '{"phase": "generate", "agent": 0, "round": 0}' '{"max_attempts": 1}' ||
  fail "register: $(cat "$tmp/cli.err")"
id=$(cli start call --input "$inputs" | head -1)
wait_for 300 done_ "$id" || fail "the call did not end: $(status_of "$id")"
res=$(cli show "$id" --json)
r=$(py "json.dumps(x['result']['gen.0'])" <<<"$res")
[ "$(status_of "$id")" = completed ] && ok "the call completed" || fail "the call: $res"
for k in agent phase content finish_reason model seed usage ttft_ms latency_ms prompt_sha256; do
  py "x['$k']" <<<"$r" >/dev/null 2>&1 || fail "the result has no $k: $r"
done
[ "$(py "x['agent'], x['phase'], x['model']" <<<"$r")" = "dev-1 generate stub-model" ] &&
  ok "result: $(py "x['agent'], x['usage']" <<<"$r")" || fail "result: $r"
[ "$(entry "$id/gen.0/1" status)" = completed ] && ok "journal: $id/gen.0/1 completed" ||
  fail "journal: $(journal)"
[ "$(entry "$id/gen.0/1" prompt_sha256)" = "$(py "x['prompt_sha256']" <<<"$r")" ] &&
  [ "$(entry "$id/gen.0/1" seed)" = "$(py "x['seed']" <<<"$r")" ] &&
  ok "the stub hashed the same prompt and got the same seed" || fail "hash or seed differ: $(journal)"

# faulty NAME STEP RETRY RULE [nowait]: a blueprint of one call, the stub
# scripted with RULE for it, one execution started (id) and, unless
# nowait, waited for (err: its error)
faulty() {
  bp "$1" "$2" '{"phase": "generate", "agent": 0}' "$3" || fail "register $1: $(cat "$tmp/cli.err")"
  [ "$(script "$4")" = 200 ] || fail "script $4"
  id=$(cli start "$1" --input "$inputs" | head -1)
  [ "${5:-}" = nowait ] && return
  wait_for 300 done_ "$id" || fail "$1 did not end"
  err=$(sql "SELECT error FROM cbm_executions WHERE id = '$id'")
}
# settled TASK TENTHS: the task's journal status once settled, or ""
settled() {
  local s= i
  for i in $(seq "$2"); do s=$(entry "$1" status); [ -n "$s" ] && break; sleep 0.1; done
  echo "$s"
}

# ---- 3. 429 with Retry-After, then a context length -----------------------------
faulty rl rl.0 '{"max_attempts": 2, "initial_ms": 10}' \
  '{"match": "/rl.0/1", "fault": "429", "retry_after_s": 2}'
[ "$(status_of "$id")" = completed ] && ok "429: the retry completed" || fail "429: $(status_of "$id")"
failed=$(sql "SELECT payload FROM cbm_events WHERE execution_id = '$id' AND type = 'StepFailed'")
grep -q '"llm_rate_limited"' <<<"$failed" && grep -Eq '"retry_after_ms": ?2000' <<<"$failed" &&
  ok "429 recorded: $failed" || fail "429 recorded as: $failed"
t1=$(entry "$id/rl.0/1" started_ms) t2=$(entry "$id/rl.0/2" started_ms)
[ -n "$t1" ] && [ -n "$t2" ] && [ $((t2 - t1)) -ge 2000 ] &&
  ok "the retry waited $((t2 - t1)) ms for Retry-After: 2" || fail "retry after ${t1:-?} -> ${t2:-?}"

faulty ctx cx.0 '{"max_attempts": 3, "initial_ms": 10}' \
  '{"match": "/cx.0/", "fault": "context_length", "times": -1}'
n=$(journal | python3 -c "import json,sys; print(sum(1 for e in json.load(sys.stdin) if '/cx.0/' in (e['task'] or '')))")
grep -q '"llm_context_length"' <<<"$err" && [ "$n" = 1 ] &&
  ok "context length: failed once, not retried ($err)" || fail "context length: $err, $n calls"

# ---- 4. a stall -------------------------------------------------------------------
faulty stall st.0 '{"max_attempts": 1}' '{"match": "/st.0/", "fault": "stall", "after_tokens": 2}'
grep -q '"llm_stalled"' <<<"$err" && ok "stall: $err" || fail "stall: $err"
s=$(settled "$id/st.0/1" 30)
[ "$s" = aborted ] && ok "the stub saw the stalled call aborted" || fail "stall journal: $s"

# ---- 5. a cancel while the call hangs ----------------------------------------------
faulty hang hg.0 '{"max_attempts": 1}' '{"match": "/hg.0/", "fault": "hang"}' nowait
inflight() { journal | grep -q "$id/hg.0/1"; }
wait_for 100 inflight || fail "the hanging call never reached the stub"
cli cancel "$id" --reason test >/dev/null || fail "cancel: $(cat "$tmp/cli.err")"
s=$(settled "$id/hg.0/1" 150)
[ "$s" = aborted ] && ok "cancel: the worker aborted the transfer" || fail "cancel journal: ${s:-in flight}"

# ---- 6. drain ------------------------------------------------------------------------
kill -TERM "$wpid"
wait "$wpid"; rc=$?
[ $rc = 0 ] && ok "SIGTERM: drained, exit 0" || fail "SIGTERM: exit $rc: $(tail -5 "$tmp/w1.err")"
grep -q "stopped:" "$tmp/w1.err" || fail "no 'stopped' line: $(tail -5 "$tmp/w1.err")"
if grep -q "ERROR: LeakSanitizer\|runtime error" "$tmp/w1.err"; then fail "sanitizers: $(cat "$tmp/w1.err")"; fi

[ $fails = 0 ] && echo "all passed" || echo "$fails failed"
[ $fails = 0 ]
