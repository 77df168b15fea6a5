#!/usr/bin/env bash
# crash_test.sh DRIVER - kill -9 an engine at random moments, restart it, and
# check that nothing acknowledged was lost and no completed step ran again.
#
# Executions of two blueprints: a DAG, and a timeline that sleeps, fails and
# retries after a back-off, and waits for an approval. Generations 0..K-1
# each keep starting executions and are SIGKILLed after a random 0.3-1.5 s;
# a client-only process approves what waits for approval while the engine is
# up (in odd generations) and while it is down (after every kill); generation K runs to the end. Then, in the store and the run log:
#   - every acknowledged execution (and every execution at all) completed;
#   - every history is seq 1..n with no gap, one StepCompleted per step and one
#     ExecutionCompleted;
#   - no step ran after the run whose result was recorded (a completed step
#     never runs again), and no step ran twice within one process;
#   - each recorded result came from a run that really happened.
set -u
driver=$1
K=${CRASH_KILLS:-6}
[ -n "${CEREBELUM_TEST_DATABASE_URL:-}" ] || exit 77
name="cbm_crash_$$_$RANDOM"
work=$(mktemp -d /tmp/cbm-crash.XXXXXX)
admin=$CEREBELUM_TEST_DATABASE_URL
url="${admin%/*}/$name"
cleanup() {
  [ -n "${pid:-}" ] && kill -9 "$pid" 2>/dev/null
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
psql -q "$admin" -c "CREATE DATABASE $name" || exit 1
runs=$work/runs acked=$work/acked
: >"$runs"; : >"$acked"
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=1"

# Engine generations are even numbers, approvers odd, so gen order is time order.
for k in $(seq 0 $((K - 1))); do
  gen=$((2 * k))
  # 1000 batches: far more than it can start before the kill, so the kill
  # always lands in the middle of work (starts, steps and commits in flight).
  "$driver" run "$url" "$gen" "$runs" "$acked" 1000 20 2>>"$work/driver.log" &
  pid=$!
  sleep "$(awk -v s=$RANDOM 'BEGIN { srand(s); printf "%.2f", 0.3 + rand() * 1.2 }')"
  if [ $((k % 2)) = 1 ]; then   # approve while the engine is up
    "$driver" approve "$url" "$((gen + 1))" >>"$work/approve.log" 2>>"$work/driver.log"
  fi
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  pid=
  # approve while no engine is up
  "$driver" approve "$url" "$((gen + 1))" >>"$work/approve.log" 2>>"$work/driver.log" || {
    echo "approver failed"; cat "$work/driver.log"; exit 1; }
  echo "generation $gen killed; $(wc -l <"$acked") acknowledged, $(wc -l <"$runs") step runs so far, $(tail -n1 "$work/approve.log")"
done
timeout 300 "$driver" run "$url" "$((2 * K))" "$runs" "$acked" 1 20 final 2>>"$work/driver.log" || {
  echo "final generation failed"; cat "$work/driver.log"; exit 1; }

q() { psql -qtAX "$url" -c "$1"; }
psql -q "$url" <<SQL || exit 1
CREATE TABLE runs (gen int, execution_id uuid, step text, attempt int);
CREATE TABLE acked (id uuid);
\copy runs FROM '$runs' WITH (FORMAT text, DELIMITER ' ')
\copy acked FROM '$acked'
SQL

fail=0
check() {  # check DESCRIPTION SQL: the SQL must return 0
  local got; got=$(q "$2")
  if [ "$got" = "0" ]; then echo "ok: $1"; else echo "FAIL: $1 ($got)"; fail=1; fi
}
echo "executions: $(q 'SELECT count(*) FROM cbm_executions'), acknowledged: $(q 'SELECT count(*) FROM acked'), step runs: $(q 'SELECT count(*) FROM runs'), re-runs after crashes: $(q "SELECT count(*) - (SELECT count(*) FROM cbm_events WHERE type='StepCompleted') FROM runs")"
check "some executions were acknowledged" "SELECT CASE WHEN count(*) > 0 THEN 0 ELSE 1 END FROM acked"
check "kills landed mid-step (some steps really re-ran)" \
  "SELECT CASE WHEN (SELECT count(*) FROM runs) > (SELECT count(*) FROM cbm_events WHERE type = 'StepCompleted') THEN 0 ELSE 1 END"
check "every acknowledged execution completed" \
  "SELECT count(*) FROM acked a LEFT JOIN cbm_executions x ON x.id = a.id WHERE x.status IS DISTINCT FROM 'completed'"
check "no execution left unfinished" "SELECT count(*) FROM cbm_executions WHERE status <> 'completed'"
check "histories have no gap" \
  "SELECT count(*) FROM (SELECT execution_id FROM cbm_events GROUP BY 1 HAVING max(seq) <> count(*) OR min(seq) <> 1) g"
check "projection last_seq matches history" \
  "SELECT count(*) FROM cbm_executions x WHERE last_seq <> (SELECT max(seq) FROM cbm_events e WHERE e.execution_id = x.id)"
check "each step completed exactly once" \
  "SELECT count(*) FROM (SELECT x.id FROM cbm_executions x LEFT JOIN cbm_events e ON e.execution_id = x.id AND e.type = 'StepCompleted' GROUP BY x.id HAVING count(e.seq) <> 4 OR count(DISTINCT e.payload->>'step') <> 4) g"
check "no timer left behind" "SELECT count(*) FROM cbm_timers"
check "crash2: one sleep wake-up, one approval, one retry each" \
  "SELECT count(*) FROM cbm_executions x WHERE blueprint = 'crash2' AND (
     (SELECT count(*) FROM cbm_events e WHERE e.execution_id = x.id AND type = 'TimerFired' AND payload->>'key' = 'sleep:nap') <> 1
  OR (SELECT count(*) FROM cbm_events e WHERE e.execution_id = x.id AND type = 'ApprovalGranted') <> 1
  OR (SELECT count(*) FROM cbm_events e WHERE e.execution_id = x.id AND type = 'StepRetryScheduled') <> 1
  OR (SELECT count(*) FROM cbm_events e WHERE e.execution_id = x.id AND type = 'StepFailed') <> 1)"
check "both blueprints ran" "SELECT 2 - count(DISTINCT blueprint) FROM cbm_executions"
check "one ExecutionCompleted per execution" \
  "SELECT count(*) FROM (SELECT x.id FROM cbm_executions x LEFT JOIN cbm_events e ON e.execution_id = x.id AND e.type = 'ExecutionCompleted' GROUP BY x.id HAVING count(e.seq) <> 1) g"
check "no completed step ran again" \
  "SELECT count(*) FROM runs r JOIN (SELECT execution_id, payload->>'step' AS step, (payload->'result'->>'gen')::int AS gen FROM cbm_events WHERE type = 'StepCompleted') c USING (execution_id, step) WHERE r.gen > c.gen"
check "no step ran twice in one process" \
  "SELECT count(*) FROM (SELECT 1 FROM runs GROUP BY gen, execution_id, step, attempt HAVING count(*) > 1) g"
check "each recorded handler result came from a real run" \
  "SELECT count(*) FROM (SELECT execution_id, payload->>'step' AS step, (payload->'result'->>'gen')::int AS gen FROM cbm_events WHERE type = 'StepCompleted' AND payload->>'step' <> 'nap') c WHERE gen IS NULL OR NOT EXISTS (SELECT 1 FROM runs r WHERE r.execution_id = c.execution_id AND r.step = c.step AND r.gen = c.gen)"
check "sleeps ran no handler" "SELECT count(*) FROM runs WHERE step = 'nap'"
[ $fail = 0 ] || { echo "--- driver log"; tail -n 50 "$work/driver.log"; }
exit $fail
