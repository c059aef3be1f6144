#!/usr/bin/env bash
# Run Watchgrid's whole test suite on this machine, setting up what it needs:
#   - the system packages the tests use (installed with apt-get when run as root on Debian,
#     otherwise named with the command that installs them);
#   - a throwaway PostgreSQL cluster, started from the local PostgreSQL binaries and removed
#     afterwards, unless WATCHGRID_TEST_DATABASE_URL already points at a server.
# Every integration test runs on SQLite and on PostgreSQL, each on a database of its own.
# Extra arguments go to the test runner, e.g. `scripts/test.sh -p watchgrid-store`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }

# --- system packages ---------------------------------------------------------------------------
missing=()
have_pg_server() {
  [ -n "${WATCHGRID_PG_BIN:-}" ] && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && return 0
  command -v initdb >/dev/null && command -v pg_ctl >/dev/null
}
have_pg_server || missing+=(postgresql)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
# The end-to-end tests: network namespaces, WireGuard's tools and an independent implementation.
command -v ip >/dev/null || missing+=(iproute2)
command -v ping >/dev/null || missing+=(iputils-ping)
command -v wg >/dev/null || missing+=(wireguard-tools)
command -v wireguard-go >/dev/null || missing+=(wireguard-go)
# The SSH CA is checked against OpenSSH itself.
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
# Magic DNS is queried with dig and forwards to a dnsmasq the tests run.
command -v dig >/dev/null || missing+=(bind9-dnsutils)
command -v dnsmasq >/dev/null || missing+=(dnsmasq)
command -v runuser >/dev/null || missing+=(util-linux)
# The OpenAPI fuzzing run (scripts/schemathesis.sh) installs schemathesis into a venv.
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v psql >/dev/null || missing+=(postgresql-client)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The Debian package starts a cluster of its own; the suite does not use it.
    if command -v pg_lsclusters >/dev/null; then
      pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
        pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
      done
    fi
  else
    log "missing: ${missing[*]}"
    log "install them, e.g. on Debian/Ubuntu: sudo apt-get install ${missing[*]}"
    log "(or set WATCHGRID_PG_BIN to a directory holding initdb and pg_ctl)"
    exit 1
  fi
fi

# --- build once --------------------------------------------------------------------------------
cargo build --workspace --all-targets --quiet

# --- throwaway PostgreSQL ----------------------------------------------------------------------
if [ -z "${WATCHGRID_TEST_DATABASE_URL:-}" ]; then
  pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/watchgrid-test-pg.XXXXXX")
  pg_tool=target/debug/watchgrid-test-pg
  cleanup() {
    "$pg_tool" stop "$pg_dir" >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  }
  trap cleanup EXIT
  WATCHGRID_TEST_DATABASE_URL=$("$pg_tool" start "$pg_dir")
  export WATCHGRID_TEST_DATABASE_URL
  log "PostgreSQL test cluster at $WATCHGRID_TEST_DATABASE_URL ($pg_dir)"
fi

# --- run ---------------------------------------------------------------------------------------
if cargo nextest --version >/dev/null 2>&1; then
  # Doc tests first: nextest does not run them, and its summary should close the output.
  cargo test --workspace --doc --quiet
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi

# --- the API against its OpenAPI document (after the cargo tests; skipped for a subset run) ----
if [ $# -eq 0 ]; then
  scripts/schemathesis.sh
fi
