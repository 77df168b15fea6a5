#!/usr/bin/env bash
# lib.sh - what the CLI tests share (sourced by cli_test.sh and
# council_test.sh after they set exe, the `cerebelum` program, and probe_exe,
# client_probe): a private temp dir and a fresh database of the test
# PostgreSQL (CEREBELUM_DATABASE_URL points at it), both removed on exit with
# every server started; and the helpers below that run the program and check
# exit codes, stdout and stderr, and start and stop servers. Without
# CEREBELUM_TEST_DATABASE_URL (tests/harness/with-postgres.sh sets it) the
# test is skipped (77).
[ -n "${CEREBELUM_TEST_DATABASE_URL:-}" ] || { echo "CEREBELUM_TEST_DATABASE_URL unset: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/cbm-cli-test.XXXXXX)
db="cbm_cli_$$_$RANDOM"
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
now_ms() { date +%s%3N; }

# run ARGS...: run the program; sets rc, out (stdout), err (stderr), ms.
run() {
  local t0
  t0=$(now_ms)
  "$exe" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  ms=$(($(now_ms) - t0))
  out=$(cat "$tmp/out")
  err=$(cat "$tmp/err")
}
# probe ARGS...: client_probe against the main server; sets rc, out, err.
probe() {
  "$probe_exe" "$main_addr" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  out=$(cat "$tmp/out")
  err=$(cat "$tmp/err")
}
# check WANT_RC WHAT ARGS...: run, and fail unless the exit code is WANT_RC.
check() {
  local want=$1 what=$2
  shift 2
  run "$@"
  if [ "$rc" != "$want" ]; then
    fail "$what: exit $rc, want $want (cerebelum $*)"$'\n'"  stdout: $out"$'\n'"  stderr: $err"
    return 1
  fi
  return 0
}
# match VAR REGEX WHAT: the text in $VAR (out or err) must match.
match() {
  if ! grep -Eq -- "$2" <<<"${!1}"; then
    fail "$3: $1 does not match /$2/:"$'\n'"  ${!1}"
  fi
}
# exactly VAR TEXT WHAT: the text in $VAR must be TEXT.
exactly() {
  if [ "${!1}" != "$2" ]; then
    fail "$3: $1 is not what was expected"$'\n'"  got:  ${!1}"$'\n'"  want: $2"
  fi
}
# py WHAT EXPR: evaluate a Python expression on j = json.loads(stdout).
py() {
  local got
  got=$(python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" <<<"$out" 2>&1)
  [ "$got" = "True" ] || fail "$1: $2 is $got; stdout: $out"
}

# start_server NAME ARGS...: cerebelum serve in the background; waits for
# its "serving on" line and sets addr and pid. Returns 1 if it never comes.
start_server() {
  local name=$1 i
  shift
  "$exe" serve --demo-handlers "$@" 2>"$tmp/$name.err" &
  pid=$!
  pids+=("$pid")
  for i in $(seq 600); do
    addr=$(sed -n 's/^cerebelum: serving on \([^ ]*\).*/\1/p' "$tmp/$name.err")
    [ -n "$addr" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  fail "server $name did not start:"$'\n'"$(cat "$tmp/$name.err")"
  return 1
}
# stop_server PID SIGNAL NAME: signal it, wait (at most 30 s), check exit 0.
stop_server() {
  local p=$1 sig=$2 name=$3 i st
  kill -"$sig" "$p"
  for i in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then
    fail "$name: still running 30 s after SIG$sig"
    kill -KILL "$p"
  fi
  wait "$p"
  st=$?
  [ "$st" = 0 ] || fail "$name: exit $st after SIG$sig, want 0:"$'\n'"$(cat "$tmp/$name.err")"
  grep -q "SIG$sig received, shutting down" "$tmp/$name.err" || fail "$name: no shutdown message"
  grep -q "^cerebelum: stopped$" "$tmp/$name.err" || fail "$name: no 'stopped' message"
}
# wait_status ID STATUS: poll `show --json` until the execution has STATUS.
wait_status() {
  local i
  for i in $(seq 100); do
    run show "$1" --json
    [ "$rc" = 0 ] && python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["status"] != sys.argv[1])' "$2" <<<"$out" && return 0
    sleep 0.1
  done
  fail "execution $1 never reached status $2; last: $out $err"
  return 1
}

uuid_re='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
