#!/usr/bin/env bash
# run_example.sh EXE MODE [ARGS...]
# MODE db: run EXE on a fresh database of the test server.
# MODE embedded: run EXE with no database URL, so it initialises and runs its
#   own private PostgreSQL in a temp state dir (the README's default path).
# Passes when EXE exits 0 (the examples check their own results).
set -u
exe=$1 mode=$2
shift 2
case "$mode" in
db)
  [ -n "${CEREBELUM_TEST_DATABASE_URL:-}" ] || exit 77
  name="cbm_ex_$$_$RANDOM"
  psql -q "$CEREBELUM_TEST_DATABASE_URL" -c "CREATE DATABASE $name" || exit 1
  trap 'psql -q "$CEREBELUM_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1' EXIT
  CEREBELUM_DATABASE_URL="${CEREBELUM_TEST_DATABASE_URL%/*}/$name" "$exe" "$@"
  ;;
embedded)
  dir=$(mktemp -d /tmp/cbm-state.XXXXXX)
  trap 'rm -rf "$dir"' EXIT
  unset CEREBELUM_DATABASE_URL
  CEREBELUM_STATE_DIR="$dir" "$exe" "$@" || exit 1
  # The engine must have stopped the server it started.
  if [ -f "$dir/pgdata/postmaster.pid" ]; then
    echo "private PostgreSQL still running after exit" >&2
    exit 1
  fi
  ;;
esac
