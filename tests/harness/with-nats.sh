#!/usr/bin/env bash
# with-nats.sh CMD [ARGS...]
#
# Starts a private `nats-server -js` (Debian's nats-server) with its
# JetStream store in a fresh temp dir, on 127.0.0.1 at a free private port,
# exports CEREBELUM_TEST_NATS_URL (nats://127.0.0.1:PORT) and, for tests that
# stop and restart it, CEREBELUM_TEST_NATS_CONF (a config file that gives the
# same port and store) and CEREBELUM_TEST_NATS_PIDFILE; runs CMD, and stops
# the server and removes the dir on any exit, failure or signal included.
# Exit status is CMD's. Without nats-server it runs CMD anyway with
# CEREBELUM_TEST_NATS_URL unset (tests that need NATS then skip with 77, and
# say so).
set -u
if ! command -v nats-server >/dev/null; then
  echo "with-nats: no nats-server (apt-get install nats-server); NATS tests will skip" >&2
  exec "$@"
fi
dir=$(mktemp -d /tmp/cbm-nats.XXXXXX)
pid=
stop() {
  if [ -n "$(cat "$dir/nats.pid" 2>/dev/null)" ]; then
    kill -TERM "$(cat "$dir/nats.pid")" 2>/dev/null
    for i in $(seq 50); do kill -0 "$(cat "$dir/nats.pid")" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$(cat "$dir/nats.pid")" 2>/dev/null
  fi
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
cat >"$dir/nats.conf" <<CONF
listen: 127.0.0.1:$port
pid_file: "$dir/nats.pid"
jetstream {
  store_dir: "$dir/js"
  max_memory_store: 256MB
  max_file_store: 2GB
}
CONF
nats-server -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
for i in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.1
done
python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null ||
  { echo "with-nats: nats-server did not start" >&2; cat "$dir/nats.log" >&2; exit 2; }

export CEREBELUM_TEST_NATS_URL="nats://127.0.0.1:$port"
export CEREBELUM_TEST_NATS_CONF="$dir/nats.conf"
export CEREBELUM_TEST_NATS_PIDFILE="$dir/nats.pid"
"$@"
