#!/usr/bin/env bash
# Fuzz the real watchgrid-server against its own OpenAPI document with schemathesis, on SQLite
# and on PostgreSQL: examples, coverage (positive and negative values), fuzzing and stateful
# sequences, failing on any 5xx, an undocumented status, a wrong content type or a body that
# does not match its schema. Bounded: WATCHGRID_SCHEMATHESIS_SECONDS per backend (default 60:
# both backends, with the build, in about 3 minutes).
#
# Needs python3 (schemathesis is installed from PyPI into target/schemathesis-venv on first
# use) and, for PostgreSQL, WATCHGRID_TEST_DATABASE_URL (a server where it may create a
# database of its own; without it only SQLite runs). Called at the end of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }

SCHEMATHESIS_VERSION=4.32.5
seconds=${WATCHGRID_SCHEMATHESIS_SECONDS:-60}
venv=target/schemathesis-venv
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi
cargo build --quiet -p watchgrid-server --bin watchgrid-server
server_bin="$PWD/target/debug/watchgrid-server"

work=$(mktemp -d "${TMPDIR:-/tmp}/watchgrid-schemathesis.XXXXXX")
server_pid=
pg_db=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "$pg_db" ]; then psql -q "$WATCHGRID_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_backend NAME DATABASE_URL
run_backend() {
  local name=$1 url=$2 port base token dir
  dir="$work/$name"
  mkdir -p "$dir"
  port=$(free_port)
  base="http://127.0.0.1:$port"
  # Limits far above the run's rate: the fuzzer must meet the handlers, not the limiters.
  (cd "$dir" && exec env -i PATH="$PATH" \
    WATCHGRID_LISTEN="127.0.0.1:$port" DATABASE_URL="$url" WATCHGRID_DATA_DIR="$dir/data" \
    WATCHGRID_WG_BACKEND=none ADMIN_PASSWORD=Schemathesis-Admin-9 \
    WATCHGRID_RATELIMIT_LOGIN_CAPACITY=100000 WATCHGRID_RATELIMIT_REGISTRATION_CAPACITY=100000 \
    WATCHGRID_RATELIMIT_UNAUTHENTICATED_CAPACITY=100000 \
    "$server_bin" serve >"$dir/server.log" 2>&1) &
  server_pid=$!
  local deadline=$((SECONDS + 60))
  until curl -fsS "$base/readyz" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$server_pid" 2>/dev/null; then
      log "$name: the server did not become ready"; cat "$dir/server.log" >&2; return 1
    fi
    sleep 0.2
  done
  if ! token=$(curl -fsS "$base/api/auth/login" -H 'content-type: application/json' \
    -d '{"username":"admin","password":"Schemathesis-Admin-9"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'); then
    log "$name: could not log in as the bootstrap administrator"; return 1
  fi
  log "$name: fuzzing $base for ${seconds}s"
  local status=0
  # Left out: the agent listener's operations (not served here), the relay (an upgrade that
  # holds the connection), and the calls that end the run's own session or account.
  "$venv/bin/st" run "$base/api/openapi.json" \
    --header "Authorization: Bearer $token" \
    --exclude-tag agent-api \
    --exclude-operation-id ssh_relay --exclude-operation-id logout \
    --exclude-operation-id change_password --exclude-operation-id users_delete \
    --exclude-operation-id users_update --exclude-operation-id tenants_delete \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing,stateful \
    --max-time "$seconds" --workers 2 --request-timeout 10 \
    --seed 1 \
    --report junit --report-dir "target/schemathesis-$name" || status=$?
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  if grep -q "panicked" "$dir/server.log"; then
    log "$name: the server panicked"; grep -A5 panicked "$dir/server.log" >&2; status=1
  fi
  return $status
}

failed=0
run_backend sqlite "sqlite://$work/sqlite.db?mode=rwc" || failed=1
if [ -n "${WATCHGRID_TEST_DATABASE_URL:-}" ]; then
  pg_db="watchgrid_schemathesis_$$"
  psql -q "$WATCHGRID_TEST_DATABASE_URL" -c "CREATE DATABASE $pg_db" >/dev/null
  pg_url=$(python3 -c 'import sys, urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' \
    "$WATCHGRID_TEST_DATABASE_URL" "$pg_db")
  run_backend postgres "$pg_url" || failed=1
else
  log "WATCHGRID_TEST_DATABASE_URL is not set: PostgreSQL skipped"
fi
exit $failed
