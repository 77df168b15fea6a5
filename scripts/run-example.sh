#!/usr/bin/env bash
# run-example.sh - set up, build, and run examples/hello end to end on the
# embedded default store (a private PostgreSQL in ./.cerebelum).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -d build ] || meson setup build --buildtype=release >/dev/null
ninja -C build examples/hello >/dev/null
exec build/examples/hello "$@"
