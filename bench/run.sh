#!/usr/bin/env bash
# run.sh - build the release tree and run the benchmarks on a private
# PostgreSQL (fsync and synchronous_commit on), printing their figures:
#   bench_engine: W1 (2,000 x 3 steps), W2 (10 sequential steps x 200), and
#                 the raw PostgreSQL ceiling;
#   bench_sleep:  100,000 executions asleep at once (RSS), and the lateness
#                 of their wake-ups; then a restart with 100,000 asleep:
#                 process start -> ready, duplicate step runs;
#   bench_remote: W1 and W2 with every step run by a worker over gRPC on
#                 loopback (cerebelum serve + cerebelum/worker.h), and the
#                 dispatch latency to the worker's handler.
# SLEEPERS=N and SLEEP_MS=M change the second one (RESTART_SLEEP_MS the
# restart's sleeps, 90000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -d build-release ] || meson setup build-release --buildtype=release -Dtests=false >/dev/null
ninja -C build-release bench/bench_engine bench/bench_sleep bench/bench_remote cli/cerebelum >/dev/null
tests/harness/with-postgres.sh bash -c '
  base=${CEREBELUM_TEST_DATABASE_URL%/*}
  psql -q "$CEREBELUM_TEST_DATABASE_URL" -c "CREATE DATABASE bench" -c "CREATE DATABASE bench_sleep" \
    -c "CREATE DATABASE bench_remote" -c "CREATE DATABASE bench_restart" &&
  CEREBELUM_DATABASE_URL="$base/bench" build-release/bench/bench_engine &&
  CEREBELUM_DATABASE_URL="$base/bench_sleep" build-release/bench/bench_sleep "${SLEEPERS:-100000}" "${SLEEP_MS:-20000}" &&
  CEREBELUM_DATABASE_URL="$base/bench_restart" build-release/bench/bench_sleep restart "${SLEEPERS:-100000}" "${RESTART_SLEEP_MS:-90000}" &&
  CEREBELUM_DATABASE_URL="$base/bench_remote" build-release/bench/bench_remote build-release/cli/cerebelum'
