#!/usr/bin/env bash
# run.sh [ARGS...] - build the release tree and run the engine benchmark on a
# private PostgreSQL (fsync and synchronous_commit on), printing its figures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -d build-release ] || meson setup build-release --buildtype=release -Dtests=false >/dev/null
ninja -C build-release bench/bench_engine >/dev/null
tests/harness/with-postgres.sh bash -c '
  psql -q "$CEREBELUM_TEST_DATABASE_URL" -c "CREATE DATABASE bench" &&
  CEREBELUM_DATABASE_URL="${CEREBELUM_TEST_DATABASE_URL%/*}/bench" build-release/bench/bench_engine "$@"' _ "$@"
