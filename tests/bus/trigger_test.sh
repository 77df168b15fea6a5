#!/usr/bin/env bash
# trigger_test.sh CEREBELUM - NATS JetStream triggers end to end (docs/bus.md):
# a real nats-server (tests/harness/with-nats.sh) and a real `cerebelum serve
# --nats` on a fresh database of the test PostgreSQL. Checks:
#   one message starts one execution; the same message again (Msg-Id
#   duplicate) and republished under a new Msg-Id with the same key in its
#   data start none more; a poison message (bad JSON, a missing field) is
#   recorded once and terminated (never seen again); for_each over roles
#   starts one execution per role with its item; the process _exit()ing
#   between the start's commit and the ack leaves no duplicate after the
#   restart, and the message is acked; kill -9 during a burst of 500
#   messages: executions = distinct keys; `cerebelum bus` shows the killed
#   serve's triggers stale (no fetch for three fetch waits) and exits 1;
#   approve and signal triggers reach executions waiting (hibernated), a
#   second approval counts as done, not refused; a signal message whose
#   serve _exit()s between the signal's commit and the ack is delivered
#   once (a blueprint waiting twice for the signal still waits);
#   with PostgreSQL stopped a message is nak'ed (with a delay, the serve
#   stays up) and starts its execution once the store is back.
# Skips (77) without CEREBELUM_TEST_NATS_URL or CEREBELUM_TEST_DATABASE_URL.
set -u
exe=$1
[ -n "${CEREBELUM_TEST_NATS_URL:-}" ] || { echo "CEREBELUM_TEST_NATS_URL unset: skipped"; exit 77; }
. "$(dirname "$0")/../cli/lib.sh"
export CEREBELUM_NATS_URL=$CEREBELUM_TEST_NATS_URL
# Each test run has its own database, but the nats-server may be shared by
# several tests: private stream and subjects.
S="T$$"
sub="t$$"

# count KEY_PREFIX: executions whose idempotency key starts with it.
count() {
  psql -qtA "$CEREBELUM_DATABASE_URL" -c \
    "SELECT count(*) FROM cbm_executions WHERE idempotency_key LIKE '$1%'"
}
# wait_count PREFIX N [SECONDS]: until count PREFIX is N.
wait_count() {
  local i c
  for i in $(seq $((${3:-20} * 10))); do
    c=$(count "$1")
    [ "$c" = "$2" ] && return 0
    sleep 0.1
  done
  fail "executions with key $1*: $c, want $2"
  return 1
}
# consumer_idle NAME: `bus` shows the consumer with nothing pending or in flight.
consumer_idle() {
  local i
  for i in $(seq 100); do
    run bus
    grep -Eq "^$1 +$S +[^ ]+ +0 +0 " <<<"$out" && return 0
    sleep 0.1
  done
  fail "consumer of $1 never idle: $out $err"
}

cat >"$tmp/bp.json" <<'EOF2'
{"name": "trig_echo", "steps": [{"name": "a", "handler": "echo"}]}
EOF2
cat >"$tmp/one.json" <<EOF2
{"name": "one", "stream": "$S", "stream_subjects": ["$sub.>"], "consumer": "one",
 "subject": "$sub.one", "blueprint": "trig_echo", "key": "\$.msg.data.idempotency_key",
 "inputs": {"x": "\$.msg.data.x", "subject": "\$.msg.subject"},
 "wait_ms": 200, "ack_wait_ms": 2000, "nak_delay_ms": 200, "batch": 1}
EOF2
cat >"$tmp/roles.json" <<EOF2
{"name": "roles", "stream": "$S", "stream_subjects": ["$sub.>"], "consumer": "roles",
 "subject": "$sub.plan.approved", "blueprint": "trig_echo",
 "key": "\$.msg.data.idempotency_key", "for_each": "\$.msg.data.payload.roles",
 "inputs": {"role": "\$.item", "story": "\$.msg.data.payload.story_id"},
 "wait_ms": 200, "ack_wait_ms": 2000}
EOF2

cat >"$tmp/appr_bp.json" <<'EOF2'
{"name": "trig_appr", "steps": [{"name": "sign_off", "kind": "approval", "approval_type": "plan"}]}
EOF2
cat >"$tmp/sig_bp.json" <<'EOF2'
{"name": "trig_sig", "steps": [{"name": "go", "kind": "signal", "signal": "go"}]}
EOF2
cat >"$tmp/sig2_bp.json" <<'EOF2'
{"name": "trig_sig2", "steps": [{"name": "first", "kind": "signal", "signal": "go"},
 {"name": "second", "kind": "signal", "signal": "go", "depends_on": ["first"]}]}
EOF2
cat >"$tmp/appr.json" <<EOF2
{"name": "appr", "stream": "$S", "consumer": "appr", "subject": "$sub.approve",
 "action": "approve", "execution": "\$.msg.data.execution", "step": "sign_off",
 "inputs": {"by": "\$.msg.data.by"}, "wait_ms": 200, "ack_wait_ms": 2000}
EOF2
cat >"$tmp/sig.json" <<EOF2
{"name": "sig", "stream": "$S", "consumer": "sig", "subject": "$sub.signal",
 "action": "signal", "execution": "\$.msg.data.execution", "signal": "go",
 "inputs": {"v": "\$.msg.data.v"}, "wait_ms": 200, "ack_wait_ms": 2000}
EOF2

check 2 "serve --nats needs a value" serve --nats
check 0 "trigger put" trigger put "$tmp/one.json" && match out '^[0-9a-f]{64}$' "put prints the version"
check 0 "trigger put again" trigger put "$tmp/one.json" && match out ' \(unchanged\)$' "unchanged"
check 0 "trigger put roles (stdin)" trigger put - <"$tmp/roles.json"
echo '{"name": "bad", "stream": "S"}' >"$tmp/bad.json"
check 1 "an invalid trigger" trigger put "$tmp/bad.json" && match err "trigger 'bad': consumer: is required" "why"
check 0 "trigger put appr" trigger put "$tmp/appr.json"
check 0 "trigger put sig" trigger put "$tmp/sig.json"
check 0 "trigger list" trigger list && match out "^one +$S +one +$sub.one +trig_echo" "list"

start_server main --listen 127.0.0.1:0 --nats "$CEREBELUM_NATS_URL" || exit 1
export CEREBELUM_SERVER=$addr
check 0 "register" blueprint register "$tmp/bp.json"
check 0 "register trig_appr" blueprint register "$tmp/appr_bp.json"
check 0 "register trig_sig" blueprint register "$tmp/sig_bp.json"
check 0 "register trig_sig2" blueprint register "$tmp/sig2_bp.json"
consumer_idle one
consumer_idle roles
consumer_idle appr
consumer_idle sig
sleep 2.2  # a health report from the serve
check 0 "bus: healthy" bus && match out "^one +$S +one +0 +0 +[0-9]+ +[0-9.]+s .* fetching$" "bus line"
check 0 "health (GetHealth)" health && match out "^OK +trigger one +fetching, " "health: trigger" &&
  match out "^OK +outbox +on, " "health: the outbox is on (serve --nats)"

# ---- one message, one execution; redelivery and republish: none more -------------
check 0 "publish" publish "$sub.one" --data '{"idempotency_key": "k1", "x": 1}' --msg-id m1 &&
  match out "^stream $S seq [0-9]+$" "publish output"
wait_count "trig:one:k1" 1
check 0 "the same Msg-Id again" publish "$sub.one" --data '{"idempotency_key": "k1", "x": 1}' --msg-id m1 &&
  match out "duplicate" "dropped by Msg-Id"
check 0 "a new Msg-Id, the same key" publish "$sub.one" --data '{"idempotency_key": "k1", "x": 2}' --msg-id m2
consumer_idle one
sleep 0.5
wait_count "trig:one:k1" 1
exec_id=$(psql -qtA "$CEREBELUM_DATABASE_URL" -c "SELECT id FROM cbm_executions WHERE idempotency_key = 'trig:one:k1'")
wait_status "$exec_id" completed
check 0 "show" show "$exec_id" --json &&
  py "inputs from the template" "j['inputs'] == {'x': 1, 'subject': '$sub.one'}"

# ---- poison: recorded once, terminated --------------------------------------------
check 0 "publish bad JSON" publish "$sub.one" --data 'not json' --msg-id p1
check 0 "publish without the key" publish "$sub.one" --data '{"x": 3}' --msg-id p2
consumer_idle one
sleep 2.5  # past ack_wait: a message not terminated would come back
check 0 "trigger failures" trigger failures --json &&
  py "two failures, once each" "len(j) == 2 and sorted(f['data'] for f in j) == ['not json', '{\"x\": 3}']" &&
  py "reasons" "any('is not JSON' in f['reason'] for f in j) and any('idempotency_key: not found' in f['reason'] for f in j)"
check 0 "trigger failures (text)" trigger failures && match out "not JSON" "failures text"

# ---- for_each over roles ----------------------------------------------------------
check 0 "plan.approved" publish "$sub.plan.approved" --msg-id pa1 \
  --data '{"idempotency_key": "plan-7", "payload": {"story_id": "s-7", "roles": ["dev", "qa", "arch"]}}'
wait_count "trig:roles:plan-7:" 3
roles=$(psql -qtA "$CEREBELUM_DATABASE_URL" -c "SELECT string_agg(inputs::jsonb->>'role', ',' ORDER BY idempotency_key) FROM cbm_executions WHERE idempotency_key LIKE 'trig:roles:plan-7:%'")
[ "$roles" = "dev,qa,arch" ] || fail "roles: $roles"
consumer_idle roles

# ---- approval and signal triggers reach waiting (hibernated) executions ------------
check 0 "start trig_appr" start trig_appr && appr_id=$out
check 0 "start trig_sig" start trig_sig && sig_id=$out
wait_status "$appr_id" awaiting_approval
check 0 "publish an approval" publish "$sub.approve" --data "{\"execution\": \"$appr_id\", \"by\": \"po\"}" --msg-id a1
wait_status "$appr_id" completed
check 0 "show the approved" show "$appr_id" --json &&
  py "the response from the message" "j['result'] == {'sign_off': {'by': 'po'}}"
check 0 "the approval again, a new Msg-Id" publish "$sub.approve" --data "{\"execution\": \"$appr_id\", \"by\": \"po\"}" --msg-id a2
check 0 "publish a signal" publish "$sub.signal" --data "{\"execution\": \"$sig_id\", \"v\": 7}" --msg-id s1
wait_status "$sig_id" completed
check 0 "show the signalled" show "$sig_id" --json &&
  py "the payload from the message" "j['result'] == {'go': {'v': 7}}"
consumer_idle appr
consumer_idle sig
sleep 2.2
check 0 "bus --json" bus --json &&
  py "the second approval counted as existing, not refused" "[t for t in j if t['trigger'] == 'appr'][0]['existing'] == 1 and [t for t in j if t['trigger'] == 'appr'][0]['failures'] == 0"

# ---- _exit between the commit and the ack -----------------------------------------
stop_server "$pid" TERM main
CEREBELUM_TEST_EXIT_BEFORE_ACK=1 "$exe" serve --listen 127.0.0.1:0 --nats "$CEREBELUM_NATS_URL" \
  --demo-handlers 2>"$tmp/exit.err" &
xpid=$!
pids+=("$xpid")
sleep 1
check 0 "publish (the server will _exit)" publish "$sub.one" --data '{"idempotency_key": "kx", "x": 9}' --msg-id mx
for i in $(seq 100); do kill -0 "$xpid" 2>/dev/null || break; sleep 0.1; done
wait "$xpid"
st=$?
[ "$st" = 3 ] || fail "the test hook: exit $st, want 3: $(cat "$tmp/exit.err")"
[ "$(count trig:one:kx)" = 1 ] || fail "the start committed before the _exit"
start_server main2 --listen 127.0.0.1:0 --nats "$CEREBELUM_NATS_URL" || exit 1
export CEREBELUM_SERVER=$addr
consumer_idle one   # redelivered after ack_wait, landed on the execution, acked
wait_count "trig:one:kx" 1

# ---- a signal _exit between its commit and the ack: delivered once -----------------
# trig_sig2 waits for "go" twice: a signal delivered twice would complete it.
check 0 "start trig_sig2" start trig_sig2 && sig2_id=$out
wait_status "$sig2_id" awaiting_signal
signals() {
  psql -qtA "$CEREBELUM_DATABASE_URL" -c \
    "SELECT count(*) FROM cbm_events WHERE execution_id = '$1' AND type = 'SignalReceived'"
}
stop_server "$pid" TERM main2
CEREBELUM_TEST_EXIT_BEFORE_ACK=1 "$exe" serve --listen 127.0.0.1:0 --nats "$CEREBELUM_NATS_URL" \
  --demo-handlers 2>"$tmp/exit2.err" &
xpid=$!
pids+=("$xpid")
sleep 1
check 0 "publish a signal (the server will _exit)" publish "$sub.signal" \
  --data "{\"execution\": \"$sig2_id\", \"v\": 1}" --msg-id sx1
for i in $(seq 100); do kill -0 "$xpid" 2>/dev/null || break; sleep 0.1; done
wait "$xpid"
st=$?
[ "$st" = 3 ] || fail "the test hook (signal): exit $st, want 3: $(cat "$tmp/exit2.err")"
[ "$(signals "$sig2_id")" = 1 ] || fail "the signal committed before the _exit: $(signals "$sig2_id")"
start_server main2 --listen 127.0.0.1:0 --nats "$CEREBELUM_NATS_URL" || exit 1
export CEREBELUM_SERVER=$addr
consumer_idle sig   # redelivered after ack_wait, found delivered, acked
sleep 2.2           # a health report
check 0 "bus --json after the signal's redelivery" bus --json &&
  py "the redelivered signal counted as existing" "[t for t in j if t['trigger'] == 'sig'][0]['existing'] >= 1"
[ "$(signals "$sig2_id")" = 1 ] || fail "signal delivered $(signals "$sig2_id") times, want once"
wait_status "$sig2_id" awaiting_signal
check 0 "a second signal, a new Msg-Id" publish "$sub.signal" \
  --data "{\"execution\": \"$sig2_id\", \"v\": 2}" --msg-id sx2
wait_status "$sig2_id" completed
check 0 "show trig_sig2" show "$sig2_id" --json &&
  py "each wait took one message" "j['result'] == {'second': {'v': 2}} and j['state']['steps']['first']['result'] == {'v': 1}"

# ---- kill -9 during a burst of 500 --------------------------------------------------
# Trigger one fetches one message at a time (batch 1): with batches of 10 a
# burst of 500 is started within a few hundred ms, before a poll of the
# database can see it begin and the kill land.
"$exe" publish "$sub.one" --count 500 --data '{"idempotency_key": "b{n}", "x": {n}}' \
  --msg-id 'burst-{n}' >"$tmp/burst.out" 2>&1 &
bpid=$!
for i in $(seq 500); do  # kill it once the first executions are in
  [ "$(count trig:one:b)" -ge 20 ] && break
  sleep 0.01
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null
wait "$bpid" || fail "burst publish: $(cat "$tmp/burst.out")"
before=$(count "trig:one:b")
for i in $(seq 100); do  # no report for three report periods (6 s)
  run bus
  [ "$rc" = 1 ] && break
  sleep 0.1
done
check 1 "bus: the killed serve's trigger is stale" bus &&
  match out "^one .*STALE: no fetch for [0-9.]+ s \(3 waits are 0.6 s\); no report from " "stale line"
# The health answer of a server without --nats on the same database says so too.
CEREBELUM_NATS_URL= start_server plain --listen 127.0.0.1:0 || exit 1
check 1 "health: the killed serve's trigger" health --server "${addr%,}" &&
  match out "^NOT OK +trigger one +stale: no report for [0-9.]+ s from " "health: stale trigger"
stop_server "$pid" TERM plain
start_server main3 --listen 127.0.0.1:0 --nats "$CEREBELUM_NATS_URL" || exit 1
export CEREBELUM_SERVER=$addr
wait_count "trig:one:b" 500 60
consumer_idle one
sleep 2.5
wait_count "trig:one:b" 500
echo "burst: $before executions when killed, 500 after the restart"
[ "$before" -lt 500 ] || fail "the burst was done before the kill: nothing tested"

# ---- the store down: nak'ed with a delay, started once it is back -----------------
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)
"${as_pg[@]}" "$CEREBELUM_TEST_PGBIN/pg_ctl" -D "$CEREBELUM_TEST_PGDATA" -m fast -w stop >/dev/null ||
  fail "pg_ctl stop"
check 0 "publish while the store is down" publish "$sub.one" --data '{"idempotency_key": "down", "x": 5}' --msg-id down1
sleep 2
kill -0 "$pid" 2>/dev/null || fail "serve died while the store was down: $(tail -5 "$tmp/main3.err")"
"${as_pg[@]}" "$CEREBELUM_TEST_PGBIN/pg_ctl" -D "$CEREBELUM_TEST_PGDATA" -w -t 60 \
  -l "$CEREBELUM_TEST_PGDATA/../server.log" \
  -o "-p $CEREBELUM_TEST_PGPORT -k $CEREBELUM_TEST_PGSOCKDIR -c listen_addresses=127.0.0.1 -c max_connections=200" \
  start >/dev/null || fail "pg_ctl start"
wait_count "trig:one:down" 1 60
consumer_idle one
sleep 2.5
check 0 "bus --json after the outage" bus --json &&
  py "naks counted while the store was down" "[t for t in j if t['trigger'] == 'one'][0]['naks'] > 0"
stop_server "$pid" TERM main3

[ "$fails" = 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all trigger checks passed"
