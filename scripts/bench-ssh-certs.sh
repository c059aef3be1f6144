#!/usr/bin/env bash
# User-certificate signing benchmark (docs/benchmarks.md#ssh-user-certificate-signing): builds
# the release server and benchmark, then runs `watchgrid-bench ssh-certs` against the real API
# (POST /api/ssh/certificates) on a fresh SQLite database and, when WATCHGRID_BENCH_PG_URL
# points at an EMPTY PostgreSQL database the benchmark may use, on PostgreSQL.
#
# Environment (all optional): BENCH_WARMUP (5s), BENCH_DURATION (20s), BENCH_CONCURRENCY (16),
# BENCH_OUT (where the JSON lines go; default target/bench/ssh-certs-<time>.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
warmup=${BENCH_WARMUP:-5s}
duration=${BENCH_DURATION:-20s}
concurrency=${BENCH_CONCURRENCY:-16}
mkdir -p target/bench
out=${BENCH_OUT:-target/bench/ssh-certs-$(date -u +%Y%m%dT%H%M%SZ).jsonl}

printf 'bench-ssh-certs.sh: building the release server and benchmark\n' >&2
cargo build --release -p watchgrid-server -p watchgrid-bench
target/release/watchgrid-bench ssh-certs --warmup "$warmup" --duration "$duration" \
  --concurrency "$concurrency" --output "$out" "$@"
if [ -n "${WATCHGRID_BENCH_PG_URL:-}" ]; then
  target/release/watchgrid-bench ssh-certs --warmup "$warmup" --duration "$duration" \
    --concurrency "$concurrency" --output "$out" --database-url "$WATCHGRID_BENCH_PG_URL" "$@"
fi
printf 'bench-ssh-certs.sh: results in %s\n' "$out" >&2
