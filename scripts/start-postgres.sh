#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the telemetry store tests.
#
#   scripts/start-postgres.sh            -> prints the database URL, then the data directory
#   scripts/start-postgres.sh --stop DIR -> stops the server of that data directory, removes it
#
# Works on a fresh Debian machine as root: installs PostgreSQL from Debian when it is missing,
# runs the server as the `postgres` user (initdb refuses root), in a temporary directory, on a
# free port, with trust authentication on 127.0.0.1 only.
set -euo pipefail

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -z "$dir" && -x "$(command -v initdb || true)" ]]; then
    dir=$(dirname "$(command -v initdb)")
  fi
  echo "$dir"
}

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

if [[ "${1:-}" == "--stop" ]]; then
  dir=${2:?usage: start-postgres.sh --stop DATADIR}
  as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  exit 0
fi

BIN=$(pg_bin)
if [[ -z "$BIN" || ! -x "$BIN/initdb" ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "start-postgres.sh: PostgreSQL is not installed; run as root or: apt-get install -y postgresql" >&2
    exit 1
  fi
  echo "start-postgres.sh: installing PostgreSQL from Debian..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  BIN=$(pg_bin)
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DIR=$(mktemp -d /tmp/localroute-pg.XXXXXX)
chmod 755 "$DIR"
if [[ $(id -u) -eq 0 ]]; then
  chown postgres:postgres "$DIR"
fi
as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 >"$DIR/initdb.log" 2>&1 \
  || { cat "$DIR/initdb.log" >&2; exit 1; }
as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
  || { cat "$DIR/server.log" >&2; exit 1; }
as_owner "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres localroute_test
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/localroute_test"
echo "$DIR"
