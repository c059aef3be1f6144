#!/usr/bin/env bash
# Watchgrid with a real data plane, on one Linux machine: the server and an agent each in a
# network namespace of their own, joined by a veth pair. The agent enrolls, brings up its
# WireGuard tunnel (userspace, boringtun), comes online, pings the server through the tunnel and
# asks Magic DNS for its own name. Everything it made (namespaces, processes, sockets, the
# temporary directory) is removed on exit, Ctrl-C included.
#
# Needs root (namespaces, TUN devices) and iproute2, ping and curl; dig (bind9-dnsutils) for the
# Magic DNS step. Builds the programs with cargo unless --bin-dir names a directory holding
# watchgrid-server, watchgrid-agent and watchgrid.
#
#   sudo scripts/demo.sh              # build if needed, show it working, wait for Ctrl-C
#   sudo scripts/demo.sh --no-wait    # show it working and clean up at once (used by the test)
set -euo pipefail

usage() {
    echo "usage: $0 [--bin-dir DIR] [--no-wait]" >&2
    exit 2
}

bin_dir=""
wait_for_ctrl_c=1
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) [ $# -ge 2 ] || usage; bin_dir="$2"; shift 2 ;;
        --no-wait) wait_for_ctrl_c=0; shift ;;
        -h | --help) usage ;;
        *) echo "demo: unknown argument $1" >&2; usage ;;
    esac
done

say() { echo "demo: $*"; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (network namespaces and TUN devices need it): sudo $0"
for tool in ip ping curl; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install iproute2 iputils-ping curl)"
done

repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "$bin_dir" ]; then
    say "building watchgrid-server, watchgrid-agent and watchgrid (cargo build --release)"
    (cd "$repo" && cargo build --release -q -p watchgrid-server -p watchgrid-agent -p watchgrid-cli)
    bin_dir="$repo/target/release"
fi
for program in watchgrid-server watchgrid-agent watchgrid; do
    [ -x "$bin_dir/$program" ] || fail "$bin_dir/$program is missing"
done

# Unique names: namespaces are per host, and userspace WireGuard sockets are host-wide too.
tag="$$"
srv_ns="wgdemo-srv-$tag"
dev_ns="wgdemo-dev-$tag"
srv_wg="wgds$tag"
dev_wg="wgda$tag"
work="$(mktemp -d /tmp/watchgrid-demo.XXXXXX)"
pids=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    ip netns del "$dev_ns" 2>/dev/null || true
    ip netns del "$srv_ns" 2>/dev/null || true
    rm -f "/var/run/wireguard/$srv_wg.sock" "/var/run/wireguard/$dev_wg.sock"
    rm -rf "$work"
    say "cleaned up (namespaces $srv_ns and $dev_ns removed)"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "tag $tag; logs in $work while it runs"
in_srv() { ip netns exec "$srv_ns" "$@"; }
in_dev() { ip netns exec "$dev_ns" "$@"; }

# Poll "$@" every 0.5 s until it succeeds, or fail after $1 seconds naming $2.
wait_until() {
    local seconds="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "--- server log ---" >&2; tail -n 30 "$work/server.log" >&2 || true
            echo "--- agent log ---" >&2; tail -n 30 "$work/agent.log" >&2 || true
            fail "timed out after ${seconds}s waiting for $what"
        fi
        sleep 0.5
    done
}

ip netns add "$srv_ns"
ip netns add "$dev_ns"
ip link add "veth-s$tag" type veth peer name "veth-d$tag"
ip link set "veth-s$tag" netns "$srv_ns"
ip link set "veth-d$tag" netns "$dev_ns"
in_srv ip addr add 10.99.0.1/24 dev "veth-s$tag"
in_dev ip addr add 10.99.0.2/24 dev "veth-d$tag"
for ns in "$srv_ns" "$dev_ns"; do
    ip netns exec "$ns" ip link set lo up
done
in_srv ip link set "veth-s$tag" up
in_dev ip link set "veth-d$tag" up

password="Demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
say "starting watchgrid-server (development mode, userspace WireGuard on $srv_wg)"
in_srv env -i PATH="$PATH" \
    WATCHGRID_DATA_DIR="$work/server" \
    WATCHGRID_LISTEN=0.0.0.0:8080 \
    ADMIN_PASSWORD="$password" \
    WATCHGRID_WG_BACKEND=userspace \
    WATCHGRID_WG_INTERFACE="$srv_wg" \
    WATCHGRID_WG_ENDPOINT=10.99.0.1:51820 \
    WATCHGRID_HEARTBEAT_INTERVAL_SECS=5 \
    "$bin_dir/watchgrid-server" >"$work/server.log" 2>&1 &
pids+=("$!")
wait_until 60 "the server to be healthy with its WireGuard interface up" \
    sh -c "ip netns exec '$srv_ns' curl -fsS http://127.0.0.1:8080/healthz | grep -q '\"wireguard\":\"ok\"'"
say "server healthy: $(in_srv curl -fsS http://127.0.0.1:8080/healthz)"

# The CLI keeps its session in the demo's directory, not the caller's home.
cli() {
    in_srv env -i PATH="$PATH" WATCHGRID_CONFIG_DIR="$work/cli" "$bin_dir/watchgrid" \
        --server http://127.0.0.1:8080 "$@"
}
printf '%s\n' "$password" | cli login --username admin --password-stdin >/dev/null
token="$(cli tokens onboarding create --description demo --max-uses 1 2>/dev/null)"
[ -n "$token" ] || fail "no onboarding token"

agent() {
    in_dev env -i PATH="$PATH" "$bin_dir/watchgrid-agent" \
        --state-dir "$work/agent" --interface "$dev_wg" --no-ssh "$@"
}
say "enrolling the agent"
agent enroll --server http://10.99.0.1:8080 --token "$token"
agent run >"$work/agent.log" 2>&1 &
pids+=("$!")

wait_until 60 "the device to be online" sh -c "
    ip netns exec '$srv_ns' env -i PATH='$PATH' WATCHGRID_CONFIG_DIR='$work/cli' \
        '$bin_dir/watchgrid' --server http://127.0.0.1:8080 devices list --status online \
        | grep -q online"
say "the device is online:"
cli devices list

server_ip="100.64.0.1"
wait_until 20 "a ping through the tunnel" in_dev ping -c 1 -W 1 "$server_ip"
say "ping through the tunnel:"
in_dev ping -c 3 -i 0.2 "$server_ip"
say "ping through the tunnel ok"

if command -v dig >/dev/null; then
    name="$(sed -n 's/.*"device_name": *"\([^"]*\)".*/\1/p' "$work/agent/state.json")"
    fqdn="$name.default.watchgrid.internal"
    answer="$(in_dev dig @"$server_ip" +time=2 +tries=3 +short "$fqdn" A)"
    [ -n "$answer" ] || fail "Magic DNS gave no answer for $fqdn"
    say "Magic DNS: $fqdn -> $answer"
else
    say "dig is missing (apt-get install bind9-dnsutils): skipping the Magic DNS query"
fi

say "done: a device enrolled and online through a real WireGuard tunnel"
if [ "$wait_for_ctrl_c" -eq 1 ]; then
    say "try: sudo ip netns exec $dev_ns ping $server_ip    (Ctrl-C here stops and cleans up)"
    while true; do sleep 3600; done
fi
