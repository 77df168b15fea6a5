#!/usr/bin/env bash
# chaos.sh - random SIGKILLs of the engine, the server and the workers,
# PostgreSQL immediate restarts and backend terminations, under a mixed
# workload; then the integrity checks of the crash test. docs/chaos.md.
#
#   tests/chaos/chaos.sh [--rounds N] [--seed S] [--build DIR] [options]
#
# It starts a private PostgreSQL (tests/harness/with-postgres.sh; always its
# own, since it restarts it) with two databases:
#   - "engine": an embedded engine (chaos_driver engine) with local handlers,
#     starting executions of e_dag, e_wait (sleep, retry, approval, signal)
#     and e_parent (a sub-workflow); a client-only process (chaos_driver
#     decide) approves and signals them now and then, engine up or down;
#   - "server": `cerebelum serve --demo-handlers` with remote workers
#     (chaos_driver worker) on queues q1 and q2, and a client (chaos_driver
#     client) that starts r_dag, r_wait and r_parent through the server and
#     approves and signals them through it.
# Each round waits a random pause and injects one fault, drawn with the
# seeded RNG: kill -9 the engine (and restart it), kill -9 the server (and
# restart it on the same port), kill -9 a worker (and start another),
# pg_ctl -m immediate restart, or pg_terminate_backend of 1-3 random backends
# of the two databases; opt-in, pg-stall: SIGSTOP a backend for 0.5-5 s.
# After the last round the running engine and server must finish everything
# without a restart, then the store is checked against the handlers' run
# logs. Exit 0 if every check passed, 1 otherwise, 2 for a usage error.
# Only loopback addresses; every process and temp dir goes on any exit.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

rounds=300 seed=$RANDOM build= exe= driver= workers=3 min_pause=0.2 max_pause=2.5
engine_rate=8 client_rate=6 time_limit=2400 drain_timeout=120 keep=0
faults="engine,server,worker,pg-restart,pg-terminate"
all_faults="$faults,pg-stall"
usage() {
  cat >&2 <<EOF
usage: chaos.sh [--rounds N] [--seed S] [--build DIR | --exe CEREBELUM --driver CHAOS_DRIVER]
                [--workers N] [--min-pause S] [--max-pause S] [--faults LIST]
                [--engine-rate R] [--client-rate R] [--time-limit S] [--drain-timeout S] [--keep]
  --rounds N        faults to inject (default 300)
  --seed S          seed of the fault sequence (default random; printed)
  --build DIR       build directory (default build-rel, else build)
  --workers N       remote worker processes (default 3)
  --min-pause S, --max-pause S
                    random pause before each fault, seconds (default 0.2, 2.5)
  --faults LIST     comma-separated subset of: $all_faults
                    (default: all but pg-stall)
  --engine-rate R, --client-rate R
                    executions started per second by the embedded engine and
                    through the server (default 8 and 6)
  --time-limit S    stop injecting after S seconds even if rounds remain (default 2400)
  --drain-timeout S longest wait for the last executions to finish (default 120)
  --keep            keep the work directory (logs, run logs) and print its path
EOF
  exit 2
}
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift ;;
    --seed) seed=$2; shift ;;
    --build) build=$2; shift ;;
    --exe) exe=$2; shift ;;
    --driver) driver=$2; shift ;;
    --workers) workers=$2; shift ;;
    --min-pause) min_pause=$2; shift ;;
    --max-pause) max_pause=$2; shift ;;
    --faults) faults=$2; shift ;;
    --engine-rate) engine_rate=$2; shift ;;
    --client-rate) client_rate=$2; shift ;;
    --time-limit) time_limit=$2; shift ;;
    --drain-timeout) drain_timeout=$2; shift ;;
    --keep) keep=1 ;;
    -h|--help) usage ;;
    *) echo "chaos.sh: unknown option $1" >&2; usage ;;
  esac
  [ $# -gt 0 ] && shift
done
for v in "$rounds" "$seed" "$workers" "$time_limit" "$drain_timeout"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "chaos.sh: not a number: $v" >&2; usage; }
done
[ "$workers" -ge 1 ] && [ "$workers" -le 16 ] || { echo "chaos.sh: --workers is 1 to 16" >&2; exit 2; }
[ "$drain_timeout" -ge 1 ] || { echo "chaos.sh: --drain-timeout is at least 1" >&2; exit 2; }
if [ -z "$build" ]; then
  if [ -d "$root/build-rel" ]; then build=$root/build-rel; else build=$root/build; fi
fi
exe=${exe:-$build/cli/cerebelum}
driver=${driver:-$build/tests/chaos/chaos_driver}
for b in "$exe" "$driver"; do
  [ -x "$b" ] || { echo "chaos.sh: $b not built (meson setup build-rel -Dbuildtype=debugoptimized && ninja -C build-rel)" >&2; exit 2; }
done
IFS=, read -r -a fault_kinds <<<"$faults"
for f in "${fault_kinds[@]}"; do
  case $f in engine|server|worker|pg-restart|pg-terminate|pg-stall) ;; *) echo "chaos.sh: unknown fault '$f'" >&2; exit 2 ;; esac
done

# A private PostgreSQL of our own: re-run inside the harness, which stops it
# and removes its directory however this script ends.
if [ -z "${CHAOS_INNER:-}" ]; then
  CHAOS_INNER=1 exec "$root/tests/harness/with-postgres.sh" "$0" --rounds "$rounds" --seed "$seed" \
    --exe "$exe" --driver "$driver" --workers "$workers" --min-pause "$min_pause" \
    --max-pause "$max_pause" --faults "$faults" --engine-rate "$engine_rate" \
    --client-rate "$client_rate" --time-limit "$time_limit" --drain-timeout "$drain_timeout" \
    $([ $keep = 1 ] && echo --keep)
fi

admin=$CEREBELUM_TEST_DATABASE_URL
pgdata=$CEREBELUM_TEST_PGDATA
pgbin=$CEREBELUM_TEST_PGBIN
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)
db_e="chaos_engine" db_r="chaos_server"
url_e="${admin%/*}/$db_e" url_r="${admin%/*}/$db_r"
work=$(mktemp -d /tmp/cbm-chaos.XXXXXX)
mkdir -p "$work/logs"
export GRPC_VERBOSITY=${GRPC_VERBOSITY:-ERROR} CEREBELUM_LOG=${CEREBELUM_LOG:-warn}
export CHAOS_DRAIN_S=$drain_timeout   # the drivers' drain deadline
unset CEREBELUM_SERVER CEREBELUM_TOKEN CEREBELUM_TLS_CA CEREBELUM_LISTEN CEREBELUM_STATE_DIR CEREBELUM_DATABASE_URL

engine_pid= server_pid= client_pid=
declare -a wpid winc
cleanup() {
  local p
  trap - EXIT INT TERM
  for p in $engine_pid $server_pid $client_pid "${wpid[@]}" ${final_pids:-} ${bounded_pid:-}; do
    [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
  done
  resume_stalled
  wait 2>/dev/null
  if [ $keep = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo "chaos.sh: interrupted"; exit 130' INT TERM

log() { printf '[%5ds] %s\n' "$SECONDS" "$*"; }
q() { psql -qtAX "$1" -c "$2"; }
psql -q "$admin" -c "CREATE DATABASE $db_e" -c "CREATE DATABASE $db_r" || exit 1
# Commit timestamps, so the checks know when a completion became durable (a
# decision's events carry the time it was made; its commit may come seconds
# later, after a reconnect). Takes a restart, which is not counted as a fault.
psql -q "$admin" -c "ALTER SYSTEM SET track_commit_timestamp = on" || exit 1
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdata" -m fast -w -t 120 -l "$(dirname "$pgdata")/server.log" \
  restart >/dev/null || exit 1

RANDOM=$seed
# rand N: sets r to a number in [0, N) from the seeded sequence (30 bits).
# Never in a command substitution: bash reseeds RANDOM in subshells, so
# $(rand N) would not follow the seed.
rand() { r=$(( ((RANDOM << 15) | RANDOM) % $1 )); }
pause_lo=$(awk -v x="$min_pause" 'BEGIN { printf "%d", x * 1000 }')
pause_hi=$(awk -v x="$max_pause" 'BEGIN { printf "%d", x * 1000 }')
[ "$pause_hi" -gt "$pause_lo" ] || pause_hi=$((pause_lo + 1))
# next_pause: sets pause to min_pause + a random part of the range, in seconds.
next_pause() {
  rand $((pause_hi - pause_lo))
  pause=$(awk -v ms=$((pause_lo + r)) 'BEGIN { printf "%.3f", ms / 1000 }')
}

declare -A count=([engine]=0 [server]=0 [worker]=0 [pg-restart]=0 [pg-terminate]=0 [pg-stall]=0)
backends_terminated=0 decides=0 decide_failed=0 unplanned=0
unplanned_log=$work/unplanned.txt
: >"$unplanned_log"

# ---- the processes -------------------------------------------------------------
gen=0 port=0 addr=
# wait_line FILE REGEX PID SECONDS: until FILE has a line matching REGEX.
wait_line() {
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    grep -Eq "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
start_engine() {
  gen=$((gen + 1))
  "$driver" engine "$url_e" "$gen" "$work/runs-e" "$work/acked-e" "$engine_rate" \
    >"$work/logs/engine.$gen.out" 2>"$work/logs/engine.$gen.err" &
  engine_pid=$!
}
server_n=0
start_server() {
  local n=$((server_n += 1))
  "$exe" serve --listen "127.0.0.1:$port" --database-url "$url_r" --demo-handlers \
    2>"$work/logs/server.$n.err" &
  server_pid=$!
  if ! wait_line "$work/logs/server.$n.err" '^cerebelum: serving on' "$server_pid" 120; then
    unplanned "server $n did not come up in 120 s: $(tail -n 2 "$work/logs/server.$n.err" | tr '\n' ' ')"
    return 1
  fi
  addr=$(sed -n 's/^cerebelum: serving on \([^ ]*\).*/\1/p' "$work/logs/server.$n.err")
  port=${addr##*:}
}
start_worker() {  # start_worker I
  local i=$1 queues
  winc[$i]=$(( ${winc[$i]:-0} + 1 ))
  case $((i % 3)) in 0) queues=q1,q2 ;; 1) queues=q1 ;; 2) queues=q2 ;; esac
  "$driver" worker "$addr" "w$i.${winc[$i]}" "$work/runs-r" "$queues" 4 \
    >/dev/null 2>"$work/logs/worker.$i.${winc[$i]}.err" &
  wpid[$i]=$!
}
start_client() {
  "$driver" client "$addr" "$work/acked-r" "$client_rate" \
    >"$work/logs/client.out" 2>>"$work/logs/client.err" &
  client_pid=$!
}
unplanned() { unplanned=$((unplanned + 1)); log "UNPLANNED: $*"; echo "$*" >>"$unplanned_log"; }
# reap NAME PID: a process that ended without being killed by us.
reap() {
  local rc
  wait "$2" 2>/dev/null; rc=$?
  unplanned "$1 (pid $2) exited on its own with status $rc"
}
kill9() { kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
supervise() {
  local i
  if ! kill -0 "$engine_pid" 2>/dev/null; then reap "engine gen $gen" "$engine_pid"; start_engine; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then reap "server" "$server_pid"; start_server; fi
  for ((i = 0; i < workers; i++)); do
    if ! kill -0 "${wpid[$i]}" 2>/dev/null; then reap "worker w$i.${winc[$i]}" "${wpid[$i]}"; start_worker "$i"; fi
  done
  if ! kill -0 "$client_pid" 2>/dev/null; then reap "client" "$client_pid"; start_client; fi
}
# bounded SECONDS CMD...: run CMD, kill -9 it after SECONDS; its status, 124
# when killed. (Not timeout(1): a timeout killed by the cleanup would leave
# its child behind; the cleanup kills bounded_pid itself.)
bounded() {
  local limit=$1 rc; shift
  "$@" &
  bounded_pid=$!
  timeout "$limit" tail --pid="$bounded_pid" -f /dev/null || kill -KILL "$bounded_pid" 2>/dev/null
  wait "$bounded_pid"; rc=$?
  bounded_pid=
  [ $rc = 137 ] && rc=124
  return $rc
}
decide() {  # a client-only process approves and signals on the engine database
  decides=$((decides + 1))
  local rc
  bounded 30 "$driver" decide "$url_e" "d$decides" >>"$work/logs/decide.out" 2>>"$work/logs/decide.err"
  rc=$?
  case $rc in
    0) ;;
    1) decide_failed=$((decide_failed + 1)) ;;  # the store was away: it says so and exits 1
    *) unplanned "decide process $decides exited with $rc" ;;
  esac
}
pg_restart() {
  resume_stalled   # a stopped backend would hold up the shutdown
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdata" -m immediate -w -t 120 \
    -l "$(dirname "$pgdata")/server.log" restart >/dev/null 2>>"$work/logs/pg_ctl.err" ||
    { unplanned "pg_ctl restart failed: $(tail -n 1 "$work/logs/pg_ctl.err")"; return 1; }
}
# pg-stall: SIGSTOP one random backend of the two databases and SIGCONT it
# 0.5-5 s later, in the background, so the faults that follow land while it
# is stopped. Three times in four a committer (its last statement appended
# events): its engine's next commit then waits inside PostgreSQL, and lands
# when the backend goes on — after the engine was killed and the next one
# loaded, if the rounds fall so.
pg_stall() {
  local pid ms committer
  rand 4; committer=$([ $r != 0 ] && echo "query LIKE '%INSERT INTO cbm_events%' DESC,")
  rand 1000
  pid=$(psql -qtAX "$admin" -c "SELECT setseed($r / 1000.0)" -c "SELECT pid FROM pg_stat_activity
          WHERE datname IN ('$db_e', '$db_r') AND pid <> pg_backend_pid()
          ORDER BY $committer random() LIMIT 1" | tail -n 1)
  [ -n "$pid" ] || return 0
  rand 4500; ms=$((500 + r))
  kill -STOP "$pid" 2>/dev/null || return 0
  echo "$pid" >>"$work/stalled"
  log "stalled backend $pid ($(q "$admin" "SELECT datname || ', ' || state || ', ' || CASE WHEN query LIKE '%INSERT INTO cbm_events%' THEN 'a committer' ELSE 'last: ' || left(regexp_replace(query, '\s+', ' ', 'g'), 40) END FROM pg_stat_activity WHERE pid = $pid")) for $ms ms"
  (sleep "$(awk -v ms=$ms 'BEGIN { printf "%.3f", ms / 1000 }')"; kill -CONT "$pid" 2>/dev/null) &
}
resume_stalled() {  # every backend ever stopped goes on (PostgreSQL cannot stop otherwise)
  local p
  [ -f "$work/stalled" ] || return 0
  while read -r p; do kill -CONT "$p" 2>/dev/null; done <"$work/stalled"
}
pg_terminate() {
  local n got
  rand 3; n=$((1 + r))
  rand 1000
  got=$(psql -qtAX "$admin" -c "SELECT setseed($r / 1000.0)" \
    -c "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity
          WHERE datname IN ('$db_e', '$db_r') AND pid <> pg_backend_pid() ORDER BY random() LIMIT $n) s" \
    2>/dev/null | tail -n 1)
  backends_terminated=$((backends_terminated + ${got:-0}))
}

log "chaos: seed $seed, $rounds rounds, faults $faults, $workers workers, PostgreSQL at ${admin#*@}"
start_server || exit 1
start_engine
for ((i = 0; i < workers; i++)); do start_worker "$i"; done
start_client
wait_line "$work/logs/engine.$gen.out" '^ready' "$engine_pid" 60 || { echo "engine did not start"; cat "$work/logs/engine.$gen.err"; exit 1; }
wait_line "$work/logs/client.out" '^ready' "$client_pid" 60 || { echo "client did not start"; cat "$work/logs/client.err"; exit 1; }

# ---- the rounds ------------------------------------------------------------------
t_start=$SECONDS
round=0
while [ $round -lt "$rounds" ] && [ $((SECONDS - t_start)) -lt "$time_limit" ]; do
  round=$((round + 1))
  next_pause
  sleep "$pause"
  rand ${#fault_kinds[@]}
  kind=${fault_kinds[$r]}
  count[$kind]=$((count[$kind] + 1))
  case $kind in
    engine)
      kill9 "$engine_pid"
      echo "$gen $(date +%s%3N)" >>"$work/killed-e"
      rand 2; [ $r = 0 ] && decide   # decide while no engine is up
      start_engine ;;
    server)
      kill9 "$server_pid"
      start_server ;;
    worker)
      rand "$workers"; i=$r
      kill9 "${wpid[$i]}"
      start_worker "$i" ;;
    pg-restart) pg_restart ;;
    pg-terminate) pg_terminate ;;
    pg-stall) pg_stall ;;
  esac
  echo "$(date +%T.%3N) round $round $kind$( [ "$kind" = worker ] && echo " w$i") (after $pause s)" >>"$work/faults.log"
  rand 4; [ $r = 0 ] && decide
  supervise
  if [ $((round % 10)) = 0 ] || [ $round = "$rounds" ]; then
    log "round $round/$rounds: acknowledged $(wc -l <"$work/acked-e") (engine) + $(wc -l <"$work/acked-r") (server), runs $(cat "$work"/runs-? 2>/dev/null | wc -l), unplanned exits $unplanned"
  fi
done
resume_stalled
t_chaos=$((SECONDS - t_start))
log "faults done after $t_chaos s; draining"

# ---- drain: no more starts; decide until nothing is unfinished -------------------
# The engine and the server that run now must finish everything by
# themselves: no restart here, since a restart resumes whatever a fault left
# stranded (an execution left `running` with nothing scheduled, say) and
# would hide it. Only if they do not finish in time (a failure) are they
# restarted, to tell "stranded until a restart" from "lost".
# await PID...: wait for each; they stop themselves after drain_timeout
# (status 3), a minute later they are killed. Sets rcs to their statuses.
await() {
  local p rcs_=
  for p in "$@"; do
    timeout $((drain_timeout + 60)) tail --pid="$p" -f /dev/null || kill -KILL "$p" 2>/dev/null
  done
  for p in "$@"; do wait "$p"; rcs_="$rcs_ $?"; done
  rcs=${rcs_# }
}
# show_left DB: what is not completed, briefly.
show_left() {
  local left
  left=$(q "$1" "SELECT count(*) FROM cbm_executions WHERE status <> 'completed'")
  [ "$left" = 0 ] && return 0
  echo "--- ${1##*/}: $left executions not completed (blueprint, status, count):"
  q "$1" "SELECT blueprint, status, count(*) FROM cbm_executions WHERE status <> 'completed' GROUP BY 1, 2 ORDER BY 1, 2" | sed 's/^/  /'
  echo "  the last events of three of them (timers, tasks):"
  q "$1" "SELECT x.id, x.status, (SELECT string_agg(e.type || coalesce(':' || (e.payload->>'step'), ''), ' ' ORDER BY e.seq)
            FROM (SELECT * FROM cbm_events e WHERE e.execution_id = x.id ORDER BY seq DESC LIMIT 6) e),
          (SELECT string_agg(key, ',') FROM cbm_timers t WHERE t.execution_id = x.id),
          (SELECT string_agg(step || '#' || attempt || '@' || coalesce(lease_owner, '-'), ',') FROM cbm_tasks k WHERE k.execution_id = x.id)
          FROM cbm_executions x WHERE status <> 'completed' ORDER BY updated_at LIMIT 3" | sed 's/^/  /'
}
kill -USR1 "$client_pid" "$engine_pid"
await "$engine_pid" "$client_pid"
read -r rc_e rc_c <<<"$rcs"
engine_pid= client_pid=
t_drain=$((SECONDS - t_start - t_chaos))
log "drained in $t_drain s (engine $rc_e, server side $rc_c)"
drain_fail=
if [ "$rc_e" != 0 ]; then
  drain_fail="$drain_fail engine($rc_e)"
  echo "the running engine did not finish its executions within $drain_timeout s:"
  show_left "$url_e"
  gen=$((gen + 1))
  "$driver" engine "$url_e" "$gen" "$work/runs-e" "$work/acked-e" 1 final \
    >"$work/logs/engine.final.out" 2>"$work/logs/engine.final.err" &
  final_pids=$!
  await $final_pids; final_pids=
  log "after a restart of the engine: $rcs (0: everything finished)"
fi
if [ "$rc_c" != 0 ]; then
  drain_fail="$drain_fail server($rc_c)"
  echo "the running server did not finish its executions within $drain_timeout s:"
  show_left "$url_r"
  kill9 "$server_pid"; start_server
  "$driver" client "$addr" "$work/acked-r" 1 final >"$work/logs/client.final.out" 2>>"$work/logs/client.err" &
  final_pids=$!
  await $final_pids; final_pids=
  log "after a restart of the server: $rcs (0: everything finished)"
fi
# stop NAME PID: it was sent SIGTERM; it must exit 0 within 30 s (else kill -9).
stop_rc=0
stop() {
  local rc
  if ! timeout 30 tail --pid="$2" -f /dev/null; then
    kill -KILL "$2" 2>/dev/null
    unplanned "$1 did not stop within 30 s of SIGTERM"
  fi
  wait "$2"; rc=$?
  [ $rc = 0 ] || { stop_rc=$rc; log "$1 exited $rc on SIGTERM"; }
}
for ((i = 0; i < workers; i++)); do kill -TERM "${wpid[$i]}" 2>/dev/null; done
for ((i = 0; i < workers; i++)); do stop "worker w$i.${winc[$i]}" "${wpid[$i]}"; done
wpid=()
kill -TERM "$server_pid"
stop server "$server_pid"
server_pid=

# ---- checks ------------------------------------------------------------------------
touch "$work/runs-e" "$work/runs-r" "$work/killed-e"
psql -q "$url_e" <<SQL || exit 1
CREATE TABLE chaos_runs (gen int, execution_id uuid, step text, attempt int, t bigint);
CREATE TABLE chaos_acked (id uuid);
CREATE TABLE chaos_killed (gen int, t bigint);
\copy chaos_runs FROM '$work/runs-e' WITH (FORMAT text, DELIMITER ' ')
\copy chaos_killed FROM '$work/killed-e' WITH (FORMAT text, DELIMITER ' ')
\copy chaos_acked FROM '$work/acked-e'
SQL
psql -q "$url_r" <<SQL || exit 1
CREATE TABLE chaos_runs (worker text, execution_id uuid, step text, attempt int, t bigint);
CREATE TABLE chaos_acked (id uuid);
\copy chaos_runs FROM '$work/runs-r' WITH (FORMAT text, DELIMITER ' ')
\copy chaos_acked FROM '$work/acked-r'
SQL

passed=0 failed=0
check() {  # check DB DESCRIPTION SQL [DETAIL_SQL]: SQL must return 0; else DETAIL_SQL's rows are shown
  local got
  got=$(q "$1" "$3" 2>&1)
  if [ "$got" = "0" ]; then
    passed=$((passed + 1)); echo "ok: $2"
  else
    failed=$((failed + 1)); echo "FAIL: $2 ($(head -c 300 <<<"$got" | tr '\n' ' '))"
    [ -n "${4:-}" ] && psql -X "$1" -c "$4" 2>&1 | sed 's/^/    /'
  fi
}
check_both() {  # check_both DESCRIPTION SQL
  check "$url_e" "engine: $1" "$2"
  check "$url_r" "server: $1" "$2"
}
check_both "some executions were acknowledged" "SELECT CASE WHEN count(*) > 0 THEN 0 ELSE 1 END FROM chaos_acked"
check_both "every acknowledged execution exists and completed" \
  "SELECT count(*) FROM chaos_acked a LEFT JOIN cbm_executions x ON x.id = a.id WHERE x.status IS DISTINCT FROM 'completed'"
check_both "no execution left unfinished or failed" "SELECT count(*) FROM cbm_executions WHERE status <> 'completed'"
check_both "histories are seq 1..n with no gap" \
  "SELECT count(*) FROM (SELECT execution_id FROM cbm_events GROUP BY 1 HAVING max(seq) <> count(*) OR min(seq) <> 1) g"
check_both "every execution has a history" \
  "SELECT count(*) FROM cbm_executions x WHERE NOT EXISTS (SELECT 1 FROM cbm_events e WHERE e.execution_id = x.id)"
check_both "projection last_seq matches the history" \
  "SELECT count(*) FROM cbm_executions x WHERE last_seq <> (SELECT max(seq) FROM cbm_events e WHERE e.execution_id = x.id)"
check_both "each step completed at most once (per execution, step; so per attempt)" \
  "SELECT count(*) FROM (SELECT 1 FROM cbm_events WHERE type = 'StepCompleted' GROUP BY execution_id, payload->>'step' HAVING count(*) > 1) g"
# The steps each blueprint completes with StepCompleted (approvals, signals and
# sub-workflows end with their own events).
expect_steps="('e_dag','a b c d'),('e_wait','a d f nap'),('e_parent','a d'),('e_child','x y'),
  ('r_dag','a b c d'),('r_wait','a d f nap'),('r_parent','a d'),('r_child','x y')"
check_both "every execution completed exactly its blueprint's steps" \
  "SELECT count(*) FROM cbm_executions x LEFT JOIN (VALUES $expect_steps) w(bp, steps) ON w.bp = x.blueprint
   WHERE w.steps IS DISTINCT FROM (SELECT string_agg(payload->>'step', ' ' ORDER BY payload->>'step')
     FROM cbm_events e WHERE e.execution_id = x.id AND e.type = 'StepCompleted')"
check_both "one ExecutionCompleted per execution" \
  "SELECT count(*) FROM cbm_executions x WHERE (SELECT count(*) FROM cbm_events e WHERE e.execution_id = x.id AND e.type = 'ExecutionCompleted') <> 1"
check_both "no timer row left" "SELECT count(*) FROM cbm_timers"
check_both "no task row left" "SELECT count(*) FROM cbm_tasks"
check_both "waits: one sleep wake-up, one approval, one signal each" \
  "SELECT count(*) FROM cbm_executions x WHERE blueprint IN ('e_wait', 'r_wait') AND (
     (SELECT count(*) FROM cbm_events e WHERE e.execution_id = x.id AND type = 'TimerFired' AND payload->>'key' = 'sleep:nap') <> 1
  OR (SELECT count(*) FROM cbm_events e WHERE e.execution_id = x.id AND type = 'ApprovalGranted') <> 1
  OR (SELECT count(*) FROM cbm_events e WHERE e.execution_id = x.id AND type = 'SignalReceived') <> 1
  OR (SELECT count(*) FROM cbm_events e WHERE e.execution_id = x.id AND type = 'StepFailed' AND payload->>'step' = 'f') < 1)"
check_both "sub-workflows: each parent took one child's result, each child has a completed parent" \
  "SELECT (SELECT count(*) FROM cbm_executions x WHERE blueprint IN ('e_parent', 'r_parent') AND
            (SELECT count(*) FROM cbm_events e WHERE e.execution_id = x.id AND type = 'ChildCompleted') <> 1)
        + (SELECT count(*) FROM cbm_executions c WHERE blueprint IN ('e_child', 'r_child') AND NOT EXISTS (
            SELECT 1 FROM cbm_events s JOIN cbm_executions p ON p.id = (s.payload->'parent'->>'execution_id')::uuid
            WHERE s.execution_id = c.id AND s.seq = 1 AND p.status = 'completed'))"
check_both "kills landed mid-step (some steps really ran again)" \
  "SELECT CASE WHEN (SELECT count(*) FROM chaos_runs) > (SELECT count(*) FROM cbm_events WHERE type = 'StepCompleted' AND payload->'result'->>'t' IS NOT NULL) THEN 0 ELSE 1 END"

# Local steps (embedded engine): generations are in time order, so a run by a
# later generation than the one whose result was recorded ran a completed step.
engine_done="SELECT execution_id, payload->>'step' AS step, (payload->>'attempt')::int AS attempt, seq,
   (payload->'result'->>'gen')::int AS gen, (extract(epoch FROM recorded_at) * 1000)::bigint AS t_decided,
   (extract(epoch FROM coalesce(pg_xact_commit_timestamp(xmin), recorded_at)) * 1000)::bigint AS t_committed
   FROM cbm_events WHERE type = 'StepCompleted' AND payload->'result'->>'gen' IS NOT NULL"
check "$url_e" "engine: no completed step ran again (no run by a later engine than the recorded one)" \
  "SELECT count(*) FROM chaos_runs r JOIN ($engine_done) c USING (execution_id, step) WHERE r.gen > c.gen" \
  "SELECT c.execution_id, c.step, c.attempt, c.gen AS recorded_gen, r.gen AS rerun_gen, r.attempt AS rerun_attempt,
     k.t - c.t_decided AS decided_ms_before_kill, c.t_committed - k.t AS committed_ms_after_kill,
     r.t - k.t AS rerun_ms_after_kill, r.t - c.t_committed AS rerun_ms_after_commit
   FROM chaos_runs r JOIN ($engine_done) c USING (execution_id, step) LEFT JOIN chaos_killed k ON k.gen = c.gen
   WHERE r.gen > c.gen ORDER BY c.execution_id LIMIT 10"
check "$url_e" "engine: no step attempt ran twice in one process" \
  "SELECT count(*) FROM (SELECT 1 FROM chaos_runs GROUP BY gen, execution_id, step, attempt HAVING count(*) > 1) g"
check "$url_e" "engine: each recorded handler result came from a logged run" \
  "SELECT count(*) FROM cbm_events c WHERE type = 'StepCompleted' AND payload->>'step' <> 'nap' AND NOT EXISTS (
     SELECT 1 FROM chaos_runs r WHERE r.execution_id = c.execution_id AND r.step = c.payload->>'step'
       AND r.gen = (c.payload->'result'->>'gen')::int AND r.t = (c.payload->'result'->>'t')::bigint)"
check "$url_e" "engine: sleeps ran no handler" "SELECT count(*) FROM chaos_runs WHERE step = 'nap'"

# Remote steps: delivery is at least once until the completion commits (a
# lease taken with synchronous_commit off can be lost with PostgreSQL, and
# the task handed out again), so two runs of one attempt are allowed; after
# it, none. So: no run of a later attempt than the completed one (the
# engine never schedules one), and no run of the completed attempt that
# started more than a second after the completion committed (the commit
# timestamp of its StepCompleted row; a task claimed just before that commit
# reaches its worker a little after it).
remote_done="SELECT execution_id, payload->>'step' AS step, (payload->>'attempt')::int AS attempt,
   (extract(epoch FROM coalesce(pg_xact_commit_timestamp(xmin), recorded_at)) * 1000)::bigint AS t_done,
   (extract(epoch FROM recorded_at) * 1000)::bigint AS t_decided, payload->'result' AS result
   FROM cbm_events WHERE type = 'StepCompleted' AND payload->'result'->>'by' IS NOT NULL"
check "$url_r" "server: each recorded worker result came from a logged run of that attempt" \
  "SELECT count(*) FROM ($remote_done) c WHERE NOT EXISTS (SELECT 1 FROM chaos_runs r WHERE r.execution_id = c.execution_id
     AND r.step = c.step AND r.attempt = c.attempt AND r.worker = c.result->>'by' AND r.t = (c.result->>'t')::bigint)"
check "$url_r" "server: no completed step ran again (no run of a later attempt)" \
  "SELECT count(*) FROM chaos_runs r JOIN ($remote_done) c USING (execution_id, step) WHERE r.attempt > c.attempt"
check "$url_r" "server: no completed step ran again (no run of its attempt started > 1 s after it committed)" \
  "SELECT count(*) FROM chaos_runs r JOIN ($remote_done) c USING (execution_id, step, attempt) WHERE r.t > c.t_done + 1000"
check "$url_r" "server: the workers ran every remote step and only those" \
  "SELECT count(*) FROM chaos_runs WHERE step NOT IN ('a', 'c', 'd', 'f', 'x')"
# The processes: none died by itself, the last ones stopped cleanly.
[ "$unplanned" = 0 ] && { passed=$((passed + 1)); echo "ok: no process exited or failed unplanned"; } ||
  { failed=$((failed + 1)); echo "FAIL: $unplanned unplanned exits or failures:"; sed 's/^/  /' "$unplanned_log"; }
[ -z "$drain_fail" ] && { passed=$((passed + 1)); echo "ok: the running engine and server finished everything within the drain (${t_drain} s)"; } ||
  { failed=$((failed + 1)); echo "FAIL: drain:$drain_fail (3: not finished in ${drain_timeout} s without a restart)"; }
[ "$stop_rc" = 0 ] && { passed=$((passed + 1)); echo "ok: the workers and the server stopped cleanly on SIGTERM"; } ||
  { failed=$((failed + 1)); echo "FAIL: a worker or the server exited $stop_rc on SIGTERM"; }

# ---- what is left, when something is ------------------------------------------------------
show_left "$url_e"
show_left "$url_r"
if [ $keep = 1 ]; then
  pg_dump -Fc -f "$work/$db_e.dump" "$url_e" && pg_dump -Fc -f "$work/$db_r.dump" "$url_r" &&
    echo "databases dumped to $work/$db_e.dump and $work/$db_r.dump (pg_restore -C -d postgres FILE)"
fi

# ---- summary -----------------------------------------------------------------------------
stat() {  # stat DB: executions, steps completed, step runs
  echo "$(q "$1" "SELECT count(*) FROM cbm_executions") executions ($(q "$1" "SELECT count(*) FROM chaos_acked") acknowledged starts), $(q "$1" "SELECT count(*) FROM cbm_events WHERE type = 'StepCompleted'") steps completed, $(q "$1" "SELECT count(*) FROM chaos_runs") handler runs, $(q "$1" "SELECT count(*) FROM cbm_events") events"
}
echo
echo "chaos summary (seed $seed)"
echo "  rounds:     $round of $rounds in $t_chaos s, drain $t_drain s, total ${SECONDS} s"
echo "  faults:     engine kill -9 ${count[engine]}, server kill -9 ${count[server]}, worker kill -9 ${count[worker]}, PostgreSQL immediate restart ${count[pg-restart]}, backend terminations ${count[pg-terminate]} ($backends_terminated backends), backend stalls ${count[pg-stall]}"
echo "  deciders:   $decides client-only approve/signal processes on the engine database ($decide_failed found the store away)"
echo "  engine:     $(stat "$url_e")"
echo "  server:     $(stat "$url_r")"
echo "  re-runs:    engine $(q "$url_e" "SELECT count(*) - (SELECT count(*) FROM cbm_events WHERE type = 'StepCompleted' AND payload->'result'->>'gen' IS NOT NULL) FROM chaos_runs") handler runs whose result was not recorded, server $(q "$url_r" "SELECT count(*) - (SELECT count(*) FROM cbm_events WHERE type = 'StepCompleted' AND payload->'result'->>'by' IS NOT NULL) FROM chaos_runs"); lease expiries $(q "$url_r" "SELECT count(*) FROM cbm_events WHERE type = 'StepFailed' AND payload->'error'->>'kind' = 'lease_expired'"), results ignored $(q "$url_r" "SELECT count(*) FROM cbm_events WHERE type = 'ResultIgnored'")"
echo "  remote:     $(q "$url_r" "SELECT count(*) FROM (SELECT 1 FROM chaos_runs GROUP BY execution_id, step, attempt HAVING count(*) > 1) g") attempts ran more than once; the latest run of a completed attempt started $(q "$url_r" "SELECT coalesce(max(r.t - c.t_done), 0) || ' ms after its completion committed (' || coalesce(max(r.t - c.t_decided), 0) || ' ms after it was decided)' FROM chaos_runs r JOIN ($remote_done) c USING (execution_id, step, attempt)")"
echo "  checks:     $passed passed, $failed failed"
[ "$failed" = 0 ]
