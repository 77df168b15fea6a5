#!/usr/bin/env bash
# run.sh CEREBELUM LLM_WORKER [STUB] - the fleet example end to end: a
# swe-ai-fleet `planning.plan.approved` envelope with a list of roles,
# published on NATS JetStream, starts one deliberation per role through a
# trigger (trigger.json: for_each over payload.roles, keyed by the
# envelope's idempotency_key), with no code in between.
#
# Needs CEREBELUM_DATABASE_URL. Starts a private nats-server -js (or uses
# CEREBELUM_NATS_URL), the LLM stub (tests/llmstub), `cerebelum serve
# --nats` and two LLM workers; puts the councils
# of examples/deliberation, registers fleet_role.json, puts the trigger,
# publishes plan_approved.json with `cerebelum publish`, then publishes it
# again under a new Nats-Msg-Id (a redelivery or a producer's retry):
# exactly three executions, one per role, each completed by its role's
# council, and (bus) the republished message's three starts found existing.
# Their results reach NATS through the outbox: the nats-server it starts
# maps cerebelum.execution.fleet_role.completed to
# agent.deliberation.completed (nats.conf), and a subscriber there
# (natsctl.py) sees exactly three messages, one per role, each with its
# winner. Prints a summary; exit 0 when all of that held.
set -u
cbm=$1 worker=$2
dir=$(cd "$(dirname "$0")" && pwd)
stub=${3:-$dir/../../tests/llmstub/llmstub.py}
tmp=$(mktemp -d /tmp/cbm-fleet-example.XXXXXX)
chmod 755 "$tmp"
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
die() { echo "run.sh: $*" >&2; for f in "$tmp"/*.err; do echo "--- $f" >&2; tail -20 "$f" >&2; done; exit 1; }

mapped=0
if [ -z "${CEREBELUM_NATS_URL:-}" ]; then
  command -v nats-server >/dev/null || die "no nats-server (apt-get install nats-server) and no CEREBELUM_NATS_URL"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  nats-server -c "$dir/nats.conf" -js -a 127.0.0.1 -p "$port" -sd "$tmp/js" \
    >"$tmp/nats.out" 2>"$tmp/nats.err" &
  mapped=1
  pids+=($!)
  export CEREBELUM_NATS_URL="nats://127.0.0.1:$port"
  for i in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
fi

# Where the fleet hears of finished deliberations: a stream (the outbox's
# publish needs one to acknowledge it) and a subscriber.
if [ $mapped = 1 ]; then
  python3 "$dir/natsctl.py" "$CEREBELUM_NATS_URL" stream AGENT_DELIBERATIONS \
    agent.deliberation.completed >/dev/null || die "cannot create the stream AGENT_DELIBERATIONS"
  python3 "$dir/natsctl.py" "$CEREBELUM_NATS_URL" sub agent.deliberation.completed 900 \
    >"$tmp/completed.out" 2>"$tmp/sub.err" &
  pids+=($!)
fi

python3 "$stub" --port 0 --port-file "$tmp/stub.port" --models stub-model --ttft-ms 5 \
  --journal "$tmp/journal.jsonl" >"$tmp/stub.out" 2>"$tmp/stub.err" &
pids+=($!)
for i in $(seq 100); do [ -s "$tmp/stub.port" ] && break; sleep 0.1; done
[ -s "$tmp/stub.port" ] || die "the stub did not start"
base="http://127.0.0.1:$(cat "$tmp/stub.port")/v1"

# The trigger commands work on the database itself, so this example needs
# one by URL (the embedded store of a state dir has no URL to give them).
[ -n "${CEREBELUM_DATABASE_URL:-}" ] || die "set CEREBELUM_DATABASE_URL (trigger put works on the database)"
"$cbm" trigger put "$dir/trigger.json" >/dev/null || die "trigger put failed"
"$cbm" serve --listen 127.0.0.1:0 --nats "$CEREBELUM_NATS_URL" --demo-handlers \
  2>"$tmp/serve.err" &
spid=$!; pids+=("$spid")
for i in $(seq 600); do
  addr=$(sed -n 's/^cerebelum: serving on \([^ ,]*\).*/\1/p' "$tmp/serve.err")
  [ -n "$addr" ] && break
  kill -0 "$spid" 2>/dev/null || die "serve exited"
  sleep 0.1
done
[ -n "$addr" ] || die "serve did not start"
export CEREBELUM_SERVER=$addr
echo "serving on $addr; NATS at $CEREBELUM_NATS_URL; model server (stub) at $base"

for w in 1 2; do
  "$worker" --server "$addr" --base-url "$base" --model stub-model --queue llm \
    --capability gpu=true --concurrency 8 2>"$tmp/llm-$w.err" &
  pids+=($!)
done
for c in developer qa architect; do
  "$cbm" council put "$dir/../deliberation/councils/$c.json" >/dev/null || die "council put $c failed"
done
"$cbm" blueprint register "$dir/fleet_role.json" >/dev/null || die "blueprint register failed"

# The trigger's consumer is created by serve's bus: wait until it fetches.
for i in $(seq 100); do "$cbm" bus >"$tmp/bus.out" 2>&1 && break; sleep 0.2; done
msg=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$dir/plan_approved.json")
"$cbm" publish planning.plan.approved --data "$msg" --msg-id plan-approved-7 || die "publish failed"
"$cbm" publish planning.plan.approved --data "$msg" --msg-id plan-approved-7-retry >/dev/null ||
  die "republish failed"

ids=()
for i in $(seq 1200); do
  mapfile -t ids < <("$cbm" list --blueprint fleet_role --json |
    python3 -c 'import json,sys; [print(x["id"]) for x in json.load(sys.stdin)]')
  done_n=$("$cbm" list --blueprint fleet_role --status completed --json |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [ "${#ids[@]}" -ge 3 ] && [ "$done_n" = "${#ids[@]}" ] && break
  sleep 0.2
done
[ "${#ids[@]}" = 3 ] || die "${#ids[@]} executions of fleet_role, want 3"
[ "$done_n" = 3 ] || die "$done_n of 3 completed"
for id in "${ids[@]}"; do
  "$cbm" show "$id" --json | python3 -c '
import json, sys
x = json.load(sys.stdin)
role = x["inputs"]["role"]
steps = x["state"]["steps"]
w = steps[role]["result"]["winner"]
others = [r for r in ("developer", "qa", "architect") if r != role]
assert all(steps.get(r, {}).get("status") != "completed" for r in others), steps
print("%s  role %-9s winner %s score %.3f" % (x["id"], role, w["agent"], w["score"]))
' || die "execution $id is not what was expected"
done
# The republished message found its three executions: 3 started, 3 existing.
for i in $(seq 50); do
  "$cbm" bus --json >"$tmp/bus.json" 2>/dev/null
  python3 -c 'import json,sys; t=[t for t in json.load(open(sys.argv[1])) if t["trigger"] == "fleet-plan-approved"][0]; sys.exit(not (t.get("started") == 3 and t.get("existing") == 3))' "$tmp/bus.json" && break
  sleep 0.2
done
"$cbm" bus
python3 -c 'import json,sys; t=[t for t in json.load(open(sys.argv[1])) if t["trigger"] == "fleet-plan-approved"][0]; sys.exit(not (t.get("started") == 3 and t.get("existing") == 3))' "$tmp/bus.json" ||
  die "bus: want 3 started and 3 existing (the republish): $(cat "$tmp/bus.json")"

# Their results on agent.deliberation.completed, each once.
if [ $mapped = 1 ]; then
  for i in $(seq 150); do [ "$(wc -l <"$tmp/completed.out")" -ge 3 ] && break; sleep 0.2; done
  sleep 2 # nothing more may come
  python3 - "$tmp/completed.out" <<'PY' || die "agent.deliberation.completed: $(cat "$tmp/completed.out")"
import json, sys
msgs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
roles = []
for m in msgs:
    assert m["event"] == "completed" and m["blueprint"] == "fleet_role", m
    result = m["payload"]["result"]
    (role,) = [r for r in ("developer", "qa", "architect") if result.get(r)]
    roles.append(role)
    print("agent.deliberation.completed  %s  role %-9s winner %s" % (
        m["execution_id"], role, result[role]["winner"]["agent"]))
assert sorted(roles) == ["architect", "developer", "qa"], roles
PY
else
  echo "(not checked: agent.deliberation.completed needs the mapping of nats.conf on your NATS server)"
fi
echo "one plan.approved (published twice) -> 3 deliberations, one per role, 3 results on agent.deliberation.completed"
