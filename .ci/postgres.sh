#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the store tests; sourced by .ci/run.
#
#   source .ci/postgres.sh && pg_start    exports AUDITKIT_TEST_PG_URL, installs a stop trap
#
# Debian's packages (apt-get install postgresql) put initdb and pg_ctl under
# /usr/lib/postgresql/<version>/bin. initdb refuses to run as root, so as root the
# server runs as the `postgres` user the package creates. The data directory is a
# fresh temporary folder, trust-authenticated, listening on 127.0.0.1 only.

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$dir" ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq postgresql) >/dev/null 2>&1 || true
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  echo "$dir"
}

pg_as_owner() {  # run a command as the data directory's owner
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
  local bin port
  bin=$(pg_bin)
  if [ -z "$bin" ]; then
    echo "warning: PostgreSQL is not installed; the PostgreSQL store tests will be skipped"
    return 0
  fi
  PG_TMP=$(mktemp -d /tmp/auditkit-pg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_TMP"; fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  pg_as_owner "$bin/initdb" -D "$PG_TMP/data" -U auditkit -A trust -E UTF8 >/dev/null
  pg_as_owner "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w \
    -o "-h 127.0.0.1 -p $port -k $PG_TMP" start >/dev/null
  export PG_BIN="$bin" PG_TMP
  export AUDITKIT_TEST_PG_URL="postgresql+psycopg://auditkit@127.0.0.1:$port/postgres"
  trap pg_stop EXIT
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') running for the store tests on port $port"
}

pg_stop() {
  if [ -n "${PG_TMP:-}" ] && [ -d "$PG_TMP/data" ]; then
    pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_TMP"
  fi
}
