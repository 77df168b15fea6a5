#!/usr/bin/env bash
# with-postgres.sh CMD [ARGS...]
#
# Starts a private PostgreSQL in a fresh temp dir (unix socket in that dir and
# TCP on 127.0.0.1 at a free private port), exports CEREBELUM_TEST_DATABASE_URL
# (a superuser URL to the `postgres` database; tests create their own
# databases), runs CMD, and stops the server and removes the dir on any exit,
# failure or signal included. Exit status is CMD's.
set -u
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
[ -x "$PGBIN/initdb" ] || { echo "with-postgres: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 2; }

dir=$(mktemp -d /tmp/cbm-pg.XXXXXX)
chmod 755 "$dir"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$dir"
  as_pg=(runuser -u postgres --)
fi

stop() {
  "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

# A free port: ask the kernel, then hope nobody takes it in the next second.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')

"${as_pg[@]}" "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 2; }
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=128MB -c fsync=on -c synchronous_commit=on" \
  start >/dev/null || { cat "$dir/server.log" >&2; exit 2; }

export CEREBELUM_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/postgres"
export CEREBELUM_TEST_PGDATA="$dir/data"
export CEREBELUM_TEST_PGBIN="$PGBIN"
export CEREBELUM_TEST_PGPORT="$port"
export CEREBELUM_TEST_PGSOCKDIR="$dir"
"$@"
