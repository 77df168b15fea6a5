#!/usr/bin/env bash
# two_servers.sh CEREBELUM WPROBE - remote workers with two `cerebelum serve`
# processes on one database (issue 13, item 5): the engines split the shards;
# a worker that talks to only one server runs every step of every execution,
# also of those the other engine owns. A result for an execution another
# engine owns is decided by the receiving engine from the store (an outside
# decision under the optimistic lock, with a wake-up for the owner) and is
# accepted exactly once.
# Servers and workers are always killed and the database dropped, on failure
# too. Skips (77) without CEREBELUM_TEST_DATABASE_URL.
set -u
exe=$1
wprobe=$2
[ -n "${CEREBELUM_TEST_DATABASE_URL:-}" ] || { echo "CEREBELUM_TEST_DATABASE_URL unset: skipped"; exit 77; }

tmp=$(mktemp -d /tmp/cbm-two-servers.XXXXXX)
db="cbm_two_$$_$RANDOM"
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
export CEREBELUM_SHARD_LEASE_MS=1500
unset CEREBELUM_SERVER CEREBELUM_TOKEN CEREBELUM_TLS_CA CEREBELUM_LISTEN CEREBELUM_STATE_DIR

fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
sql() { psql -qtAX "$CEREBELUM_DATABASE_URL" -c "$1"; }

# start_server NAME: sets addr
start_server() {
  local name=$1 i
  "$exe" serve --listen "127.0.0.1:0" 2>"$tmp/$name.err" &
  pids+=("$!")
  for i in $(seq 600); do
    addr=$(sed -n 's/^cerebelum: serving on \([^ ]*\).*/\1/p' "$tmp/$name.err")
    [ -n "$addr" ] && return 0
    sleep 0.1
  done
  fail "server $name did not start: $(cat "$tmp/$name.err")"
  exit 1
}

start_server a; addr_a=$addr
start_server b; addr_b=$addr

# Both engines hold shards (the second takes its share within a few rounds).
for i in $(seq 150); do
  [ "$(sql "SELECT count(DISTINCT owner) FROM cbm_shard_leases WHERE owner IS NOT NULL")" = 2 ] && break
  sleep 0.1
done
[ "$(sql "SELECT count(DISTINCT owner) FROM cbm_shard_leases WHERE owner IS NOT NULL")" = 2 ] \
  && ok "two engines hold shards" || fail "shard owners: $(sql "SELECT owner, count(*) FROM cbm_shard_leases GROUP BY 1")"

cat >"$tmp/three.json" <<'EOF2'
{"name": "three", "steps": [
  {"name": "a", "queue": "tq", "handler": "echo"},
  {"name": "b", "queue": "tq", "handler": "echo", "depends_on": ["a"]},
  {"name": "c", "queue": "tq", "handler": "echo", "depends_on": ["b"]}]}
EOF2
CEREBELUM_SERVER=$addr_a "$exe" blueprint register "$tmp/three.json" >/dev/null || fail "register"
N=24
for i in $(seq $N); do
  CEREBELUM_SERVER=$addr_a "$exe" start three --input '{}' >/dev/null 2>>"$tmp/start.err" || fail "start $i: $(cat "$tmp/start.err")"
done
# Executions on both engines' shards: the worker below (server b only)
# runs steps of executions engine a owns.
owners=$(sql "SELECT count(DISTINCT l.owner) FROM cbm_executions e JOIN cbm_shard_leases l ON l.shard = e.shard")
[ "$owners" = 2 ] && ok "the executions are spread over both engines' shards" \
  || fail "owners of the executions' shards: $owners (re-run: 24 random ids all on one side)"

timeout 120 "$wprobe" "$addr_b" work wb tq "" $((N * 3)) >"$tmp/work.out" 2>"$tmp/work.err" &
wp=$!; pids+=("$wp")
for i in $(seq 600); do
  [ "$(sql "SELECT count(*) FROM cbm_executions WHERE status = 'completed'")" = $N ] && break
  sleep 0.1
done
wait "$wp" 2>/dev/null
done_n=$(sql "SELECT count(*) FROM cbm_executions WHERE status = 'completed'")
[ "$done_n" = $N ] && ok "all $N executions completed through one server's worker" \
  || fail "completed $done_n of $N; $(sql "SELECT status, count(*) FROM cbm_executions GROUP BY 1")"
acc=$(grep -c ' accepted$' "$tmp/work.out")
[ "$acc" = $((N * 3)) ] && ok "every result accepted once ($acc)" \
  || fail "accepted $acc of $((N * 3)): $(grep -v ' accepted$' "$tmp/work.out" | head -5) $(tail -3 "$tmp/work.err")"
sc=$(sql "SELECT count(*) FROM cbm_events WHERE type = 'StepCompleted'")
per=$(sql "SELECT count(*) FROM (SELECT execution_id, payload->>'step' s, count(*) FROM cbm_events WHERE type = 'StepCompleted' GROUP BY 1, 2 HAVING count(*) > 1) d")
[ "$sc" = $((N * 3)) ] && [ "$per" = 0 ] && ok "each step completed once ($sc StepCompleted)" \
  || fail "StepCompleted $sc, steps completed twice: $per"
[ "$(sql "SELECT count(*) FROM cbm_tasks")" = 0 ] && ok "no task rows left" || fail "task rows left: $(sql "SELECT count(*) FROM cbm_tasks")"

# A duplicate of an accepted result, sent to the other server: ignored.
w() { out=$("$wprobe" "$@" 2>"$tmp/wprobe.err"); }
w "$addr_b" register wd tq
id=$(CEREBELUM_SERVER=$addr_a "$exe" start three --input '{}' | head -1)
w "$addr_b" poll wd 5000
tid=$(awk '{print $2}' <<<"$out")
w "$addr_b" submit wd "$tid" ok '{"n":1}'
grep -q '^accepted$' <<<"$out" && ok "a result accepted by server b" || fail "submit to b: $out $(cat "$tmp/wprobe.err")"
w "$addr_a" register wd tq
w "$addr_a" submit wd "$tid" ok '{"n":2}'
grep -Eq '^ignored: (already completed|execution completed)' <<<"$out" \
  && ok "the same result sent to server a is ignored" || fail "duplicate to a: $out $(cat "$tmp/wprobe.err")"
[ "$(sql "SELECT count(*) FROM cbm_events WHERE execution_id = '$id' AND type = 'StepCompleted'")" = 1 ] \
  && ok "one StepCompleted for it" || fail "StepCompleted for $id: $(sql "SELECT string_agg(type, ' ' ORDER BY seq) FROM cbm_events WHERE execution_id = '$id'")"

echo "$fails failure(s)"
[ "$fails" = 0 ]
