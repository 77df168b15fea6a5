#!/usr/bin/env bash
# run.sh CEREBELUM LLM_WORKER [STUB] - the deliberation example end to end.
#
# The swe-ai-fleet flow on Cerebelum: a plan comes in, three roles
# (developer, QA, architect) deliberate on it in parallel, each a council of
# three agents in a ring (propose, critique the neighbour, revise) scored by
# a judge; the architect's winner goes to a person for sign-off; then the
# plan completes. Every LLM call is one durable step run by
# `cerebelum-llm-worker` against an OpenAI-compatible server: here the stub
# (tests/llmstub/llmstub.py), since no model server runs on this machine.
# Point --base-url of the workers at vLLM or llama.cpp server instead and
# nothing else changes.
#
# Uses CEREBELUM_DATABASE_URL when set, else the embedded store in a temp
# dir. Starts the stub, `cerebelum serve` (loopback, a port the kernel
# picks) and two LLM workers; puts the three councils; registers
# plan_review.json; starts it on plan.json; approves the sign-off when it is
# asked; checks the result (a winner per role, scores, token usage) and the
# stub's journal (every call completed exactly once); prints a summary.
# Exit 0 when all of that held. Everything it started is stopped on exit.
set -u
cbm=$1 worker=$2
dir=$(cd "$(dirname "$0")" && pwd)
stub=${3:-$dir/../../tests/llmstub/llmstub.py}
tmp=$(mktemp -d /tmp/cbm-delib-example.XXXXXX)
chmod 755 "$tmp"  # the embedded store may run PostgreSQL as another user
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for i in $(seq 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
die() { echo "run.sh: $*" >&2; for f in "$tmp"/*.err; do echo "--- $f" >&2; tail -30 "$f" >&2; done; exit 1; }

python3 "$stub" --port 0 --port-file "$tmp/stub.port" --models stub-model --ttft-ms 5 \
  --journal "$tmp/journal.jsonl" >"$tmp/stub.out" 2>"$tmp/stub.err" &
pids+=($!)
for i in $(seq 100); do [ -s "$tmp/stub.port" ] && break; sleep 0.1; done
[ -s "$tmp/stub.port" ] || die "the stub did not start"
base="http://127.0.0.1:$(cat "$tmp/stub.port")/v1"

db=()
[ -n "${CEREBELUM_DATABASE_URL:-}" ] || db=(--state-dir "$tmp/state")
"$cbm" serve --listen 127.0.0.1:0 "${db[@]}" 2>"$tmp/serve.err" &
spid=$!; pids+=("$spid")
for i in $(seq 600); do
  addr=$(sed -n 's/^cerebelum: serving on \([^ ]*\).*/\1/p' "$tmp/serve.err")
  [ -n "$addr" ] && break
  kill -0 "$spid" 2>/dev/null || die "serve exited"
  sleep 0.1
done
[ -n "$addr" ] || die "serve did not start"
export CEREBELUM_SERVER=$addr
echo "serving on $addr; model server (stub) at $base"

for w in 1 2; do
  "$worker" --server "$addr" --base-url "$base" --model stub-model --queue llm \
    --capability gpu=true --concurrency 8 2>"$tmp/llm-$w.err" &
  pids+=($!)
done

for c in developer qa architect; do
  "$cbm" council put "$dir/councils/$c.json" >/dev/null || die "council put $c failed"
done
"$cbm" blueprint register "$dir/plan_review.json" >/dev/null || die "blueprint register failed"
id=$("$cbm" start plan_review --input "$(cat "$dir/plan.json")" --id plan-7 2>>"$tmp/cli.err") ||
  die "start failed"
echo "plan_review $id started"

status() { "$cbm" show "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }
for i in $(seq 1200); do
  st=$(status)
  [ "$st" = awaiting_approval ] || [ "$st" = completed ] || [ "$st" = failed ] && break
  sleep 0.1
done
[ "$st" = awaiting_approval ] || die "plan_review is $st, not awaiting the sign-off"
winner=$("$cbm" show "$id" --json | python3 -c '
import json, sys
x = json.load(sys.stdin)
print(x["state"]["steps"]["architect"]["result"]["winner"]["agent"])')
echo "architect council chose $winner; signing off"
"$cbm" approve "$id" sign_off --response "{\"approved\": true, \"design\": \"$winner\"}" --who lead \
  >/dev/null || die "approve failed"
for i in $(seq 300); do
  st=$(status)
  [ "$st" = completed ] || [ "$st" = failed ] && break
  sleep 0.1
done
[ "$st" = completed ] || die "plan_review is $st after the sign-off"

"$cbm" show "$id" --json >"$tmp/final.json"
python3 - "$tmp/final.json" "$tmp/journal.jsonl" <<'PY' || die "the result or the journal is wrong"
import json, sys, collections
x = json.load(open(sys.argv[1]))
steps = x["state"]["steps"]
calls = 0
for role in ("developer", "qa", "architect"):
    r = steps[role]["result"]
    w = r["winner"]
    assert w["agent"] and w["content"], (role, w)
    assert len(r["ranking"]) == 3, (role, r["ranking"])
    for k in r["ranking"]:
        assert 0 <= k["score"] <= 1 and k["criteria"], (role, k)
    u = r["usage"]
    assert u["completion_tokens"] > 0 and u["prompt_tokens"] > 0, (role, u)
    assert r["failed"] == [], (role, r["failed"])
    print(f"{role:10s} winner {w['agent']:7s} score {w['score']:.3f}  "
          f"ranking {', '.join(k['agent'] + '=' + format(k['score'], '.2f') for k in r['ranking'])}  "
          f"tokens {u['prompt_tokens']}+{u['completion_tokens']}")
# The stub's journal: 3 roles x 12 calls, each completed exactly once.
done = collections.Counter()
for line in open(sys.argv[2]):
    e = json.loads(line)
    if e["status"] == "completed":
        exe, step, attempt = e["task"].rsplit("/", 2)
        done[(exe, step)] += 1
assert len(done) == 36, f"{len(done)} distinct calls completed, want 36"
assert max(done.values()) == 1, [k for k, v in done.items() if v > 1]
print(f"36 LLM calls, each completed once at the model server")
PY
echo
"$cbm" deliberation show "$id" | sed -n '1,16p'
echo "(cerebelum deliberation show $id prints every call of the three deliberations)"
echo "plan_review $id completed"
