#!/bin/sh
# The official postgres image's contract, as far as the prewarm chart uses it:
# initialise PGDATA once (superuser POSTGRES_USER with POSTGRES_PASSWORD,
# database POSTGRES_DB, password auth over TCP), then run the server.
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${PGDATA:=/var/lib/postgresql/data}"
socket=/var/run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$pwfile"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  postgres -D "$PGDATA" -c listen_addresses= -k "$socket" &
  pid=$!
  until pg_isready -q -h "$socket"; do sleep 0.2; done
  if [ "$POSTGRES_DB" != postgres ]; then
    createdb -h "$socket" -U "$POSTGRES_USER" "$POSTGRES_DB"
  fi
  kill "$pid"
  wait "$pid" || true
fi
if [ "${1:-postgres}" = postgres ]; then
  shift || true
  exec postgres -D "$PGDATA" -c listen_addresses='*' -k "$socket" "$@"
fi
exec "$@"
