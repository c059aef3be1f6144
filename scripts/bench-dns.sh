#!/usr/bin/env bash
# Magic DNS benchmark (docs/benchmarks.md): the release watchgrid-server with N device names
# (default 10,000) in one tenant, and dnsmasq serving the same names from a hosts file, both on
# loopback, each loaded by dnsperf with the same query file, alternating, BENCH_REPEAT times.
# Then the time from an API record creation to the first correct answer, BENCH_RECORDS times.
#
#   scripts/bench-dns.sh
#
# Environment (all optional): BENCH_DEVICES (10000), BENCH_DURATION (15: seconds per dnsperf
# run), BENCH_CLIENTS (4: dnsperf -c), BENCH_OUTSTANDING (200: dnsperf -q), BENCH_REPEAT (3),
# BENCH_RECORDS (20), BENCH_DNS_RATE_LIMIT (off: dnsperf asks from one address; a number far
# above the load measures the limiter's cost per query), BENCH_KEEP (1 keeps the work
# directory), BENCH_SERVER_BIN (a server
# binary to use instead of building the release one).
# Needs: dnsperf, dnsmasq, dig (bind9-dnsutils), sqlite3, curl, jq. Runs as any user (ports
# above 1024, loopback only).
set -euo pipefail
cd "$(dirname "$0")/.."

devices=${BENCH_DEVICES:-10000}
duration=${BENCH_DURATION:-15}
clients=${BENCH_CLIENTS:-4}
outstanding=${BENCH_OUTSTANDING:-200}
repeat=${BENCH_REPEAT:-3}
records=${BENCH_RECORDS:-20}
domain=watchgrid.internal
password=Bench-Admin-Pass-1

log() { printf 'bench-dns.sh: %s\n' "$*" >&2; }
for tool in dnsperf dnsmasq dig sqlite3 curl jq; do
  command -v "$tool" >/dev/null || { log "$tool is missing (apt-get install dnsperf dnsmasq bind9-dnsutils sqlite3 curl jq)"; exit 1; }
done

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
server_bin=${BENCH_SERVER_BIN:-target/release/watchgrid-server}
if [ -z "${BENCH_SERVER_BIN:-}" ]; then
  log "building the release server"
  cargo build --release -p watchgrid-server >&2
fi

work=$(mktemp -d /tmp/bench-dns.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
http_port=$(free_port)
dns_port=$(free_port)
dnsmasq_port=$(free_port)
agent_port=$(free_port)

# The overlay is 127.0.0.0/8: the server is 127.0.0.1, device i is 127.0.0.0 + i + 2, and
# dnsperf asks from device 0's address (-a 127.0.0.2), as a device of the tenant would.
ip_of() { local n=$(($1 + 2)); echo "127.$((n >> 16 & 255)).$((n >> 8 & 255)).$((n & 255))"; }

log "seeding $devices devices into SQLite"
db="$work/watchgrid.db"
export DATABASE_URL="sqlite://$db" WATCHGRID_DATA_DIR="$work/data"
"$server_bin" migrate >/dev/null 2>&1
sqlite3 "$db" <<SQL
INSERT INTO tenants (id, slug, name, created_at)
  VALUES (randomblob(16), 'bench', 'Benchmark', '2026-01-01T00:00:00+00:00');
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $devices - 1)
INSERT INTO devices (id, tenant_id, name, hostname, kind, os, agent_version, wg_public_key,
                     overlay_ip, credential_hash, tags, onboarding_token_id, created_at, last_seen_at)
SELECT randomblob(16), (SELECT id FROM tenants WHERE slug = 'bench'), 'dev-' || i, 'dev-' || i,
       'plain', '', '', printf('bench-key-%06d', i),
       printf('127.%d.%d.%d', ((i + 2) >> 16) & 255, ((i + 2) >> 8) & 255, (i + 2) & 255),
       NULL, '[]', NULL, '2026-01-01T00:00:00+00:00', NULL
FROM n;
SQL

queries="$work/queries.txt"
hosts="$work/hosts"
for ((i = 0; i < devices; i++)); do
  echo "dev-$i.bench.$domain A" >>"$queries"
  echo "$(ip_of "$i") dev-$i.bench.$domain" >>"$hosts"
done
# Shuffle so that neither server sees names in insertion order.
shuf "$queries" -o "$queries"

log "starting watchgrid-server (Magic DNS on 127.0.0.1:$dns_port)"
WATCHGRID_LISTEN="127.0.0.1:$http_port" \
  ADMIN_PASSWORD="$password" WATCHGRID_WG_BACKEND=none WATCHGRID_OVERLAY_CIDR=127.0.0.0/8 \
  WATCHGRID_AGENT_LISTEN="127.0.0.1:$agent_port" WATCHGRID_DNS_LISTEN="127.0.0.1:$dns_port" \
  WATCHGRID_DNS_RATE_LIMIT="${BENCH_DNS_RATE_LIMIT:-off}" \
  WATCHGRID_LOG_LEVEL=warn "$server_bin" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$http_port/readyz" 2>/dev/null && break
  sleep 0.1
done
dig @127.0.0.1 -p "$dns_port" -b 127.0.0.2 +short "dev-9.bench.$domain" | grep -qx "$(ip_of 9)" \
  || { log "Magic DNS does not answer"; cat "$work/server.log" >&2; exit 1; }

log "starting dnsmasq (the same names from a hosts file, 127.0.0.1:$dnsmasq_port)"
dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null --pid-file \
  --bind-interfaces --listen-address=127.0.0.1 --port="$dnsmasq_port" --addn-hosts="$hosts" \
  --local="/$domain/" --user="$(id -un)" --cache-size=10000 >"$work/dnsmasq.log" 2>&1 &
pids+=($!)
sleep 0.5
dig @127.0.0.1 -p "$dnsmasq_port" +short "dev-9.bench.$domain" | grep -qx "$(ip_of 9)" \
  || { log "dnsmasq does not answer"; cat "$work/dnsmasq.log" >&2; exit 1; }

# dnsperf's summary: queries per second, lost queries, average latency.
perf() {
  local port=$1
  dnsperf -s 127.0.0.1 -p "$port" -a 127.0.0.2 -d "$queries" -l "$duration" -c "$clients" \
    -q "$outstanding" 2>&1 | awk '
      /Queries sent:/ {sent=$3}
      /Queries lost:/ {lost=$3}
      /Queries per second:/ {qps=$4}
      /Average Latency/ {lat=$4}
      /Response codes:/ {noerror=$4}
      END {printf "%s %s %s %s %s\n", qps, sent, lost, lat, noerror}'
}

echo "| run | server | queries/s | sent | lost | NOERROR | avg latency (s) |"
echo "|---|---|---:|---:|---:|---:|---:|"
for ((run = 1; run <= repeat; run++)); do
  for server in magic-dns dnsmasq; do
    port=$dns_port
    [ "$server" = dnsmasq ] && port=$dnsmasq_port
    read -r qps sent lost lat noerror < <(perf "$port")
    echo "| $run | $server | $qps | $sent | $lost | $noerror | $lat |"
  done
done

log "record creation → first correct answer, $records times"
token=$(curl -fsS "http://127.0.0.1:$http_port/api/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" | jq -r .access_token)
# The admin's tenant is `default`; a device of `default` asks. Enroll none: add one plain
# device to `default` so that its address may ask.
asker=$(curl -fsS "http://127.0.0.1:$http_port/api/devices" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' -d '{"name":"asker"}' | jq -r .device.overlay_ip)
summary() { sort -n | awk -v what="$1" '
  {v[NR]=$1} END {printf "%s, %d runs: min %.1f ms, median %.1f ms, max %.1f ms\n", what, NR, v[1]/1000, v[int((NR+1)/2)]/1000, v[NR]/1000}'; }
latencies=()
api=()
retries=0
for ((i = 0; i < records; i++)); do
  value="192.0.2.$((i + 1))"
  start=$(date +%s%N)
  curl -fsS -o /dev/null "http://127.0.0.1:$http_port/api/dns/records" \
    -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"name\":\"r$i\",\"type\":\"A\",\"value\":\"$value\",\"ttl\":60}"
  api+=($((($(date +%s%N) - start) / 1000)))
  until [ "$(dig @127.0.0.1 -p "$dns_port" -b "$asker" +short +time=1 +tries=1 "r$i.default.$domain")" = "$value" ]; do
    retries=$((retries + 1))
  done
  latencies+=($((($(date +%s%N) - start) / 1000)))
done
# The floor of the measurement: one dig process asking for a name that exists.
digs=()
for ((i = 0; i < records; i++)); do
  start=$(date +%s%N)
  dig @127.0.0.1 -p "$dns_port" -b "$asker" +short "r0.default.$domain" >/dev/null
  digs+=($((($(date +%s%N) - start) / 1000)))
done
echo
printf '%s\n' "${latencies[@]}" | summary "record creation to first correct answer (curl POST, then dig until right)"
printf '%s\n' "${api[@]}" | summary "of which the API call (curl)"
printf '%s\n' "${digs[@]}" | summary "one dig of an existing name (the measurement's floor)"
echo "digs that did not yet see the new record: $retries of $records"
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load average before the run: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
