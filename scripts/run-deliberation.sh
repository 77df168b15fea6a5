#!/usr/bin/env bash
# run-deliberation.sh - set up, build, and run examples/deliberation end to
# end: three councils (developer, QA, architect) deliberate on a plan, every
# LLM call a durable step run by cerebelum-llm-worker against the
# OpenAI-compatible stub (tests/llmstub), on the embedded default store (a
# private PostgreSQL in a temp dir), with a person's sign-off in the middle
# (given by the script). Set CEREBELUM_DATABASE_URL to use your own
# PostgreSQL instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -d build ] || meson setup build --buildtype=release >/dev/null
ninja -C build cli/cerebelum workers/llm/cerebelum-llm-worker >/dev/null
exec examples/deliberation/run.sh build/cli/cerebelum build/workers/llm/cerebelum-llm-worker
