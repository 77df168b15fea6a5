#!/usr/bin/env bash
# setup.sh - install what Cerebelum needs on Debian 12 (idempotent).
# As root it runs apt-get; otherwise it prints the exact apt-get line and stops.
set -euo pipefail

PKGS=(build-essential meson ninja-build pkg-config python3
      libuv1-dev libcjson-dev libpq-dev libssl-dev uuid-dev libcmocka-dev
      libgrpc-dev libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev
      libcurl4-openssl-dev     # cerebelum-llm-worker (workers/llm)
      libnats-dev nats-server  # bus/ (NATS JetStream triggers and outbox) and its tests
      libmicrohttpd-dev        # HTTP in the server: JSON API, /metrics, health (docs/http.md)
      python3-prometheus-client  # the http suite parses /metrics with it
      python3-grpcio openssl postgresql postgresql-client
      clang libclang-rt-dev    # the fuzz suite: clang and libFuzzer (tests/fuzz)
      chromium nodejs)         # the console suite: headless Chromium driven by playwright-core (tests/console)
# npm: Debian's package, unless a nodejs that bundles its own npm is installed.
command -v npm >/dev/null || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# The console suite's npm package (pinned in tests/console/package-lock.json)
# goes into tests/console/node_modules (git-ignored), never system-wide.
console_npm() {
  local d
  d="$(cd "$(dirname "$0")/.." && pwd)/tests/console"
  [ -d "$d/node_modules/playwright-core" ] && return 0
  command -v npm >/dev/null || return 0
  echo "setup: npm ci in $d (playwright-core)"
  (cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
}
[ ${#missing[@]} -eq 0 ] && { console_npm; exit 0; }

if [ "$(id -u)" != 0 ]; then
  echo "Missing packages. Run, as root:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's postgresql package starts a cluster on port 5432; Cerebelum never
# uses it (tests and the embedded store run private servers), so leave it be.
console_npm
