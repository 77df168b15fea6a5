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
#                 dispatch latency to the worker's handler;
#   bench_delib:  deliberations on cerebelum-llm-worker against the
#                 OpenAI-compatible stub: per-call overhead at 0/50/500 ms,
#                 a ring against its critical path, 100 at once;
#   bench_outbox: the outbox (with a private nats-server -js): W1 with rows
#                 and without, publish lag under W1, drain of 10,000 rows.
#   bench_trigger: NATS trigger -> execution started at 1, 100, 1000 msg/s
#                 and one trigger's most starts/s (needs nats-server; built
#                 with libnats only).
#   bench_shards: W1 with 1, 2, 3 engine processes, cross-process wake-up,
#                 takeover after kill -9 of one engine of three (issue 13)
# SLEEPERS=N and SLEEP_MS=M change the second one (RESTART_SLEEP_MS the
# restart's sleeps, 90000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -d build-release ] || meson setup build-release --buildtype=release -Dtests=false >/dev/null
ninja -C build-release bench/bench_engine bench/bench_shards bench/bench_sleep bench/bench_remote bench/bench_delib bench/bench_outbox \
  cli/cerebelum workers/llm/cerebelum-llm-worker >/dev/null
[ -x build-release/bench/bench_trigger ] || ninja -C build-release bench/bench_trigger >/dev/null 2>&1 || true
tests/harness/with-postgres.sh tests/harness/with-nats.sh bash -c '
  base=${CEREBELUM_TEST_DATABASE_URL%/*}
  psql -q "$CEREBELUM_TEST_DATABASE_URL" -c "CREATE DATABASE bench" -c "CREATE DATABASE bench_sleep" \
    -c "CREATE DATABASE bench_remote" -c "CREATE DATABASE bench_delib" -c "CREATE DATABASE bench_outbox" -c "CREATE DATABASE bench_restart" &&
  CEREBELUM_DATABASE_URL="$base/bench" build-release/bench/bench_engine &&
  CEREBELUM_DATABASE_URL="$base/bench_sleep" build-release/bench/bench_sleep "${SLEEPERS:-100000}" "${SLEEP_MS:-20000}" &&
  CEREBELUM_DATABASE_URL="$base/bench_restart" build-release/bench/bench_sleep restart "${SLEEPERS:-100000}" "${RESTART_SLEEP_MS:-90000}" &&
  CEREBELUM_DATABASE_URL="$base/bench_remote" build-release/bench/bench_remote build-release/cli/cerebelum &&
  CEREBELUM_DATABASE_URL="$base/bench_delib" build-release/bench/bench_delib build-release/cli/cerebelum \
    build-release/workers/llm/cerebelum-llm-worker tests/llmstub/llmstub.py &&
  NATS_URL="$CEREBELUM_TEST_NATS_URL" CEREBELUM_DATABASE_URL="$base/bench_outbox" build-release/bench/bench_outbox &&
  build-release/bench/bench_shards "$CEREBELUM_TEST_DATABASE_URL"'
if [ -x build-release/bench/bench_trigger ]; then
  tests/harness/with-postgres.sh tests/harness/with-nats.sh bash -c '
    psql -q "$CEREBELUM_TEST_DATABASE_URL" -c "CREATE DATABASE bench_trigger" &&
    CEREBELUM_DATABASE_URL="${CEREBELUM_TEST_DATABASE_URL%/*}/bench_trigger" \
    CEREBELUM_NATS_URL="$CEREBELUM_TEST_NATS_URL" build-release/bench/bench_trigger'
fi
