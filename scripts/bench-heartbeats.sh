#!/usr/bin/env bash
# Heartbeat ingestion benchmark (docs/benchmarks.md): builds the release server and the
# benchmark, then for SQLite and PostgreSQL with 10,000 and 100,000 registered devices loads
# the bare axum baseline, the real server (agent API, real database) and the baseline again,
# and prints one markdown table.
#
#   scripts/bench-heartbeats.sh            the four configurations (closed loop, c=64)
#   scripts/bench-heartbeats.sh --all      also open loop at 20,000/s (100,000 devices), every run
#                                          (`--keep-alive` is no longer run: the agent API
#                                          closes every connection after one request)
#
# Environment (all optional): BENCH_WARMUP (5s), BENCH_DURATION (20s), BENCH_CONCURRENCY (64),
# BENCH_REPEAT (1: runs of each configuration; the table then shows the median run and the
# range), BENCH_WAIT_QUIET (300s: how long each load waits for other work on the machine to
# stop), BENCH_OUT (where the JSON lines go; default target/bench/heartbeats-<time>.jsonl).
# Extra arguments go to every `watchgrid-bench heartbeats` run.
# PostgreSQL runs need the server binaries (initdb, pg_ctl): apt-get install postgresql.
set -euo pipefail
cd "$(dirname "$0")/.."

all=0
if [ "${1:-}" = "--all" ]; then
  all=1
  shift
fi
warmup=${BENCH_WARMUP:-5s}
duration=${BENCH_DURATION:-20s}
concurrency=${BENCH_CONCURRENCY:-64}
wait_quiet=${BENCH_WAIT_QUIET:-300s}
repeat=${BENCH_REPEAT:-1}
mkdir -p target/bench
out=${BENCH_OUT:-target/bench/heartbeats-$(date -u +%Y%m%dT%H%M%SZ).jsonl}

log() { printf 'bench-heartbeats.sh: %s\n' "$*" >&2; }

log "building the release server and benchmark"
cargo build --release -p watchgrid-server -p watchgrid-bench

bench() {
  target/release/watchgrid-bench heartbeats --warmup "$warmup" --duration "$duration" \
    --wait-quiet "$wait_quiet" --output "$out" "$@" >/dev/null
}

status=0
log "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
for run in $(seq 1 "$repeat"); do
  for backend in sqlite postgres; do
    for devices in 10000 100000; do
      log "run $run/$repeat: $backend, $devices devices, closed loop, c=$concurrency"
      bench --backend "$backend" --devices "$devices" --concurrency "$concurrency" "$@" || status=1
    done
  done
  if [ "$all" = 1 ]; then
    for backend in sqlite postgres; do
      log "run $run/$repeat: $backend, 100000 devices, open loop at 20000/s"
      bench --backend "$backend" --devices 100000 --concurrency 256 --rate 20000 "$@" || status=1
    done
  fi
done

log "results: $out"
echo
if [ "$repeat" -gt 1 ]; then
  target/release/watchgrid-bench table --median "$out"
else
  target/release/watchgrid-bench table "$out"
fi
exit "$status"
