#!/usr/bin/env bash
# remote_test.sh CEREBELUM WPROBE - remote workers end to end.
#
# Real `cerebelum serve` processes on a fresh database of the test
# PostgreSQL, and workers played by wprobe (the WorkerService protocol,
# call by call, or as a small worker loop), over loopback TCP:
#   - every WorkerService RPC, its error statuses, ListWorkers;
#   - queues and capability routing, results accepted once (a duplicate is
#     acknowledged, ignored and recorded as ResultIgnored);
#   - long polls: empty at the requested time, a task committed while polls
#     are parked reaches exactly one of them, a poller killed while parked
#     loses nothing;
#   - leases: a worker killed (SIGKILL) mid-task -> the attempt fails with
#     lease_expired after the lease, the retry runs elsewhere and completes
#     once; the dead attempt's late result is ignored; unregister releases;
#   - heartbeats extend leases and name tasks to cancel;
#   - the server killed (SIGKILL) under load and restarted: workers
#     reconnect, every execution completes, no step completes twice.
# Servers and workers are always killed and the database dropped, on failure
# too. Skips (77) without CEREBELUM_TEST_DATABASE_URL.
set -u
exe=$1
wprobe=$2
[ -n "${CEREBELUM_TEST_DATABASE_URL:-}" ] || { echo "CEREBELUM_TEST_DATABASE_URL unset: skipped"; exit 77; }

tmp=$(mktemp -d /tmp/cbm-remote-test.XXXXXX)
db="cbm_remote_$$_$RANDOM"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  psql -q "$CEREBELUM_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql -q "$CEREBELUM_TEST_DATABASE_URL" -c "CREATE DATABASE $db" || exit 1
export CEREBELUM_DATABASE_URL="${CEREBELUM_TEST_DATABASE_URL%/*}/$db"
unset CEREBELUM_SERVER CEREBELUM_TOKEN CEREBELUM_TLS_CA CEREBELUM_LISTEN CEREBELUM_STATE_DIR

fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
now_ms() { date +%s%3N; }
sql() { psql -qtAX "$CEREBELUM_DATABASE_URL" -c "$1"; }

# start_server NAME [PORT]: cerebelum serve in the background; sets addr, spid.
start_server() {
  local name=$1 port=${2:-0} i
  "$exe" serve --listen "127.0.0.1:$port" 2>"$tmp/$name.err" &
  spid=$!
  pids+=("$spid")
  for i in $(seq 600); do
    addr=$(sed -n 's/^cerebelum: serving on \([^ ]*\).*/\1/p' "$tmp/$name.err")
    [ -n "$addr" ] && { export CEREBELUM_SERVER=$addr; return 0; }
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
  done
  fail "server $name did not start:"$'\n'"$(cat "$tmp/$name.err")"
  exit 1
}
# w ARGS...: one wprobe call against the server; sets rc, out.
w() {
  out=$("$wprobe" "$addr" "$@" 2>"$tmp/wprobe.err")
  rc=$?
}
expect() { # expect WHAT REGEX: $out must match
  if grep -Eq -- "$2" <<<"$out"; then ok "$1"; else fail "$1: got '$out' (rc $rc), want /$2/ $(cat "$tmp/wprobe.err")"; fi
}
cli() { "$exe" "$@" 2>"$tmp/cli.err"; }
start() { cli start "$1" --input "${2:-{\}}" | head -1; }
status_of() { sql "SELECT status FROM cbm_executions WHERE id = '$1'"; }
# wait_status ID STATUS [TENTHS]
wait_status() {
  local i
  for i in $(seq "${3:-300}"); do
    [ "$(status_of "$1")" = "$2" ] && return 0
    sleep 0.1
  done
  fail "execution $1 is '$(status_of "$1")', never reached $2"
  return 1
}
events() { sql "SELECT string_agg(type, ' ' ORDER BY seq) FROM cbm_events WHERE execution_id = '$1'"; }

start_server main

cat >"$tmp/two.json" <<'EOF'
{"name": "two", "steps": [
  {"name": "fetch", "queue": "default", "handler": "echo"},
  {"name": "infer", "queue": "gpu", "handler": "echo", "depends_on": ["fetch"],
   "requires": {"gpu": "true"}}]}
EOF
cat >"$tmp/lease.json" <<'EOF'
{"name": "leased", "steps": [
  {"name": "work", "queue": "jobs", "handler": "hang", "heartbeat_timeout_ms": 1000,
   "retry": {"max_attempts": 3, "initial_ms": 10}}]}
EOF
cat >"$tmp/once.json" <<'EOF'
{"name": "once", "steps": [{"name": "only", "queue": "solo", "handler": "echo"}]}
EOF
cat >"$tmp/hib.json" <<'EOF'
{"name": "hib", "steps": [
  {"name": "a", "queue": "hq", "handler": "echo"},
  {"name": "b", "kind": "approval", "depends_on": ["a"]}]}
EOF
cat >"$tmp/load.json" <<'EOF'
{"name": "load", "steps": [
  {"name": "a", "queue": "q", "handler": "slow", "retry": {"max_attempts": 5, "initial_ms": 10}},
  {"name": "b", "queue": "q", "handler": "echo", "depends_on": ["a"],
   "retry": {"max_attempts": 5, "initial_ms": 10}},
  {"name": "c", "queue": "q", "handler": "slow", "depends_on": ["b"],
   "retry": {"max_attempts": 5, "initial_ms": 10}}]}
EOF
for b in two lease once load hib; do cli blueprint register "$tmp/$b.json" >/dev/null || fail "register $b: $(cat "$tmp/cli.err")"; done

# ---- protocol errors --------------------------------------------------------------
w register "" default;            expect "register without id" "^error INVALID_ARGUMENT"
w register w0 "";                 expect "register without queues" "^error INVALID_ARGUMENT: queues"
w register w0 local;              expect "register the local queue" "^error INVALID_ARGUMENT"
w poll nobody 0;                  expect "poll by an unknown worker" "^error FAILED_PRECONDITION: worker 'nobody' is not registered"
w register w0 default;            expect "register" "^ok heartbeat_interval_ms=[0-9]+ max_wait_ms=60000"
w poll w0 0 other;                expect "poll a queue not registered" "^error INVALID_ARGUMENT: queues\[0\]"
w heartbeat nobody 1:x;           expect "heartbeat by an unknown worker" "^unknown_worker"
w submit w0 garbage ok '{}';      expect "submit a malformed task id" "^error INVALID_ARGUMENT: task_id"
w submit w0 "1:00000000-0000-0000-0000-000000000000:1:s" raw 0; expect "submit TASK_STATUS_UNSPECIFIED" "^error INVALID_ARGUMENT: status"
w submit w0 "1:00000000-0000-0000-0000-000000000000:1:s" ok '{bad'; expect "submit bad JSON" "^error INVALID_ARGUMENT: result_json"
w submit w0 "1:00000000-0000-0000-0000-000000000000:1:s" ok '{}'; expect "submit for an unknown execution" "^ignored: unknown execution"

# ---- long polls -----------------------------------------------------------------------
t0=$(now_ms); w poll w0 700; t1=$(now_ms)
expect "an empty poll answers empty" "^empty$"
[ $((t1 - t0)) -ge 600 ] && ok "the empty answer came after the wait ($((t1 - t0)) ms)" || fail "empty poll answered after $((t1 - t0)) ms, before its 700 ms wait"

# Three polls parked on queue solo; one task: exactly one of them gets it.
w register s1 solo; w register s2 solo; w register s3 solo
for s in s1 s2 s3; do "$wprobe" "$addr" poll $s 4000 >"$tmp/park.$s" 2>&1 & pids+=($!); done
sleep 0.5
id=$(start once)
wait "${pids[@]: -3}" 2>/dev/null
got=$(cat "$tmp"/park.s? | grep -c '^task ')
empties=$(cat "$tmp"/park.s? | grep -c '^empty$')
[ "$got" = 1 ] && [ "$empties" = 2 ] && ok "a task committed while 3 polls were parked reached exactly one" \
  || fail "parked polls: $got got a task, $empties empty: $(cat "$tmp"/park.s?)"
line=$(grep -h '^task ' "$tmp"/park.s? | head -1)
tid=$(awk '{print $2}' <<<"$line"); who=$(grep -l '^task ' "$tmp"/park.s? | head -1 | sed 's/.*park\.//')
w submit "$who" "$tid" ok '{"n":1}';  expect "the result is accepted" "^accepted$"
w submit "$who" "$tid" ok '{"n":2}';  expect "a duplicate result is acknowledged and ignored" "^ignored: (already completed|execution completed)"
wait_status "$id" completed
[ "$(sql "SELECT count(*) FROM cbm_events WHERE execution_id = '$id' AND type = 'StepCompleted'")" = 1 ] \
  && ok "one StepCompleted" || fail "StepCompleted count: $(events "$id")"
[ "$(sql "SELECT result::text FROM cbm_executions WHERE id = '$id'")" = '{"only": {"n": 1}}' ] \
  && ok "the first result counts" || fail "result: $(sql "SELECT result FROM cbm_executions WHERE id = '$id'")"

# A result for an execution that is not in memory (hibernated while it
# waits for a person): the engine loads it and decides on it at once — the
# late duplicate is recorded as ignored with the step's reason.
w register h1 hq
id=$(start hib)
w poll h1 5000; expect "the hib task is polled" "^task "
tid=$(awk '{print $2}' <<<"$out")
w submit h1 "$tid" ok '{"n":1}';  expect "hib: the result is accepted" "^accepted$"
wait_status "$id" awaiting_approval
w submit h1 "$tid" ok '{"n":2}';  expect "a result for a hibernated execution is decided on: ignored" "^ignored: already completed"
[ "$(sql "SELECT count(*) FROM cbm_events WHERE execution_id = '$id' AND type = 'ResultIgnored'")" = 1 ] \
  && ok "the hibernated execution recorded one ResultIgnored" || fail "hib events: $(events "$id")"
[ "$(status_of "$id")" = awaiting_approval ] && ok "and still awaits its approval" \
  || fail "hib status: $(status_of "$id")"

# A poller killed while parked: the task goes to the next poll, none lost.
"$wprobe" "$addr" poll s1 30000 >"$tmp/killed.out" 2>&1 &
kp=$!; pids+=($kp)
sleep 0.5
kill -KILL $kp; wait $kp 2>/dev/null
id=$(start once)
w poll s2 3000
expect "after a parked poller was killed, the task reaches the next poll" "^task "
tid=$(awk '{print $2}' <<<"$out")
w submit s2 "$tid" ok '{}'; expect "its result is accepted" "^accepted$"
wait_status "$id" completed

# ---- queues, capabilities, workers ---------------------------------------------------
"$wprobe" "$addr" work wd default "" 5 >"$tmp/wd.out" 2>&1 & wdp=$!; pids+=($wdp)
"$wprobe" "$addr" work wnogpu gpu "" 100 >"$tmp/wnogpu.out" 2>&1 & pids+=($!)
ids=()
for i in 1 2 3 4 5; do ids+=("$(start two "{\"i\":$i}")"); done
sleep 1.5
[ "$(grep -c '^done ' "$tmp/wnogpu.out")" = 0 ] && ok "a worker without gpu=true got no gpu task" \
  || fail "worker without the capability ran: $(cat "$tmp/wnogpu.out")"
w workers gpu
expect "ListWorkers by queue" "worker wnogpu queues=gpu caps= active=0 alive=1"
"$wprobe" "$addr" work wgpu gpu "gpu=true,model=m1" 5 >"$tmp/wgpu.out" 2>&1 & wgp=$!; pids+=($wgp)
for id in "${ids[@]}"; do wait_status "$id" completed; done
wait $wdp $wgp
[ "$(grep -c '^done .* infer 1 accepted' "$tmp/wgpu.out")" = 5 ] && ok "the gpu worker ran the 5 gpu steps" \
  || fail "gpu worker: $(cat "$tmp/wgpu.out")"
res=$(sql "SELECT result::text FROM cbm_executions WHERE id = '${ids[0]}'")
grep -q '"by": "wgpu"' <<<"$res" && ok "the result came from the gpu worker" || fail "result $res"
w workers
expect "ListWorkers shows capabilities" "worker wgpu queues=gpu caps=gpu=true,model=m1"
run=$(cli workers --json); rcw=$?
[ $rcw = 0 ] && python3 -c 'import json,sys; ws=json.load(sys.stdin); sys.exit(not any(w["worker_id"]=="wgpu" and w["capabilities"].get("model")=="m1" for w in ws))' <<<"$run" \
  && ok "cerebelum workers --json" || fail "cerebelum workers: rc $rcw $run $(cat "$tmp/cli.err")"

# Sticky routing: the next step of an execution goes to the worker that ran
# its previous step when that worker has a poll parked (here it parked first,
# so without the preference the other, later poll would be picked).
cat >"$tmp/sticky.json" <<'EOF2'
{"name": "sticky", "steps": [
  {"name": "one", "queue": "st", "handler": "echo"},
  {"name": "two", "queue": "st", "handler": "echo", "depends_on": ["one"]}]}
EOF2
cli blueprint register "$tmp/sticky.json" >/dev/null || fail "register sticky"
w register sa st; w register sb st
id=$(start sticky)
w poll sa 3000; expect "sa takes step one" "^task [^ ]+ $id one 1"
tid=$(awk '{print $2}' <<<"$out")
"$wprobe" "$addr" poll sa 5000 >"$tmp/sticky.sa" 2>&1 & spa=$!; pids+=($spa)
sleep 0.3
"$wprobe" "$addr" poll sb 5000 >"$tmp/sticky.sb" 2>&1 & spb=$!; pids+=($spb)
sleep 0.3
w submit sa "$tid" ok '{}'; expect "step one accepted" "^accepted$"
wait $spa $spb
grep -q "^task [^ ]* $id two 1" "$tmp/sticky.sa" && grep -qx empty "$tmp/sticky.sb" \
  && ok "step two went to the worker that ran step one" \
  || fail "sticky: sa: $(cat "$tmp/sticky.sa") sb: $(cat "$tmp/sticky.sb")"
tid=$(awk '{print $2}' "$tmp/sticky.sa")
w submit sa "$tid" ok '{}'; wait_status "$id" completed

# ---- leases -----------------------------------------------------------------------------
# A worker takes the task and dies (SIGKILL): after the 1 s lease the attempt
# fails with lease_expired and the retry goes to a live worker.
"$wprobe" "$addr" work doomed jobs "" 1 >"$tmp/doomed.out" 2>&1 & dp=$!; pids+=($dp)
sleep 0.3
id=$(start leased)
for i in $(seq 50); do grep -q '^hanging' "$tmp/doomed.out" && break; sleep 0.1; done
grep -q "^hanging $id work 1" "$tmp/doomed.out" && ok "the doomed worker took attempt 1" || fail "doomed: $(cat "$tmp/doomed.out")"
kill -KILL $dp; wait $dp 2>/dev/null
dead_tid=$(sql "SELECT id || ':' || execution_id || ':' || attempt || ':' || step FROM cbm_tasks WHERE execution_id = '$id'")
w register rescuer jobs
w poll rescuer 5000
expect "after the lease ran out, the retry is handed to another worker" "^task [^ ]+ $id work 2 hang"
tid=$(awk '{print $2}' <<<"$out")
w heartbeat rescuer "$tid" "$dead_tid"
expect "a heartbeat extends the held lease and cancels the lost one" "^extension [0-9]+"$'\n'"cancel $dead_tid$"
w submit doomed "$dead_tid" ok '{"late":true}'
expect "the dead attempt's late result is ignored" "^ignored: stale attempt 1 \(current 2\)"
w submit rescuer "$tid" ok '{"rescued":true}'; expect "the retry's result is accepted" "^accepted$"
wait_status "$id" completed
ev=$(events "$id")
[ "$ev" = "ExecutionStarted StepScheduled StepFailed StepRetryScheduled TimerFired StepScheduled ResultIgnored StepCompleted ExecutionCompleted" ] \
  && ok "history: lease_expired failure, retry, ignored late result, one completion" || fail "history: $ev"
sql "SELECT payload->'error'->>'kind' FROM cbm_events WHERE execution_id = '$id' AND type = 'StepFailed'" | grep -qx lease_expired \
  && ok "the failure's kind is lease_expired" || fail "StepFailed kind"
[ "$(sql "SELECT count(*) FROM cbm_tasks WHERE execution_id = '$id'")" = 0 ] && ok "no task row left" || fail "task rows left"

# Unregister releases leased tasks at once (attempt counted, retried).
id=$(start leased)
w register leaver jobs; w poll leaver 5000; expect "leaver takes the task" "^task [^ ]+ $id work 1"
w unregister leaver; expect "unregister releases the leased task" "^released 1$"
w poll rescuer 5000; expect "the released task is retried" "^task [^ ]+ $id work 2"
tid=$(awk '{print $2}' <<<"$out"); w submit rescuer "$tid" ok '{}'; expect "accepted" "^accepted$"
wait_status "$id" completed
sql "SELECT payload->'error'->>'kind' FROM cbm_events WHERE execution_id = '$id' AND type = 'StepFailed'" | grep -qx worker_left \
  && ok "the released attempt failed with kind worker_left" || fail "no worker_left failure: $(events "$id")"

# Cancelling an execution ends its running remote attempt: the row goes,
# the worker's next heartbeat is told to stop, a late result is ignored.
id=$(start leased)
w register canc jobs; w poll canc 5000; expect "a task to cancel" "^task [^ ]+ $id work 1"
tid=$(awk '{print $2}' <<<"$out")
cli cancel "$id" --reason test >/dev/null || fail "cancel: $(cat "$tmp/cli.err")"
wait_status "$id" cancelled
[ "$(sql "SELECT count(*) FROM cbm_tasks WHERE execution_id = '$id'")" = 0 ] && ok "cancel deletes the task row" || fail "task row left after cancel"
w heartbeat canc "$tid"; expect "the heartbeat says to stop the cancelled task" "^cancel $tid$"
w submit canc "$tid" ok '{}'; expect "a result after the cancel is ignored" "^ignored: execution cancelled"

# ---- server killed under load ----------------------------------------------------------
n=30
ids=()
for i in $(seq $n); do ids+=("$(start load "{\"i\":$i}")"); done
for k in 1 2 3; do "$wprobe" "$addr" work "lw$k" q "" 1000000 >"$tmp/lw$k.out" 2>&1 & pids+=($!); done
sleep 1.5
port=${addr##*:}
kill -KILL "$spid"; wait "$spid" 2>/dev/null
done_before=$(cat "$tmp"/lw?.out | grep -c '^done .* accepted')
start_server restarted "$port"
for id in "${ids[@]}"; do wait_status "$id" completed 600 || break; done
done_total=$(cat "$tmp"/lw?.out | grep -c '^done .* accepted')
echo "steps accepted before the kill: $done_before, in all: $done_total"
[ "$done_before" -gt 0 ] && [ "$done_before" -lt $((3 * n)) ] && ok "the server was killed mid-load" \
  || fail "kill did not land mid-load ($done_before of $((3 * n)))"
dups=$(sql "SELECT count(*) FROM (SELECT execution_id, payload->>'step' FROM cbm_events WHERE type = 'StepCompleted'
            AND execution_id IN (SELECT id FROM cbm_executions WHERE blueprint = 'load')
            GROUP BY 1, 2 HAVING count(*) > 1) d")
total=$(sql "SELECT count(*) FROM cbm_events WHERE type = 'StepCompleted' AND execution_id IN (SELECT id FROM cbm_executions WHERE blueprint = 'load')")
[ "$dups" = 0 ] && [ "$total" = $((3 * n)) ] && ok "every step of $n executions completed exactly once across the restart" \
  || fail "completions: $total (want $((3 * n))), steps completed twice: $dups"
[ "$(sql "SELECT count(*) FROM cbm_tasks")" = 0 ] && ok "no task rows left" || fail "task rows left: $(sql "SELECT count(*) FROM cbm_tasks")"

kill -TERM "$spid"; wait "$spid"; st=$?
[ $st = 0 ] && ok "the server stops on SIGTERM" || fail "server exit $st: $(tail -5 "$tmp/restarted.err")"

echo "remote: $fails failure(s)"
[ $fails = 0 ]
