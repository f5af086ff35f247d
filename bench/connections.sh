#!/usr/bin/env bash
# The long-connection benchmark: ramps to TARGET connections (default 1,000,000) from
# load generator workers to a gateway fleet on this one machine, holds them for 60 s
# with heartbeats and a light shake rate, lets them go, audits the system, and prints
# the figures: connections held, ramp rate, drops, user-space bytes per connection for
# the load generator and the gateways (PSS / connections), kernel bytes per connection
# (slab delta / connections) and CPU while holding.
#
#   bench/connections.sh [TARGET] [MODE]
#
# MODE is `full` (default: heartbeats every 5 minutes and a shake every 10 per user),
# `heartbeats` (heartbeats only) or `idle` (no requests at all while holding), to
# split the cost of holding from the cost of the requests.
#
# A million connections need ~10 GB of kernel memory for the sockets, ~57 gateway
# processes and ~54 worker processes (20,000 open files each at most).
set -euo pipefail
target=${1:-1000000}
mode=${2:-full}
case $target in
  ''|*[!0-9]*) echo "usage: $0 [TARGET connections, a whole number] [full|heartbeats|idle]" >&2; exit 2 ;;
esac
case $mode in
  full) shakes='0.0016667'; beats='300s' ;;
  heartbeats) shakes='0'; beats='300s' ;;
  idle) shakes='0'; beats='100000s' ;;
  *) echo "MODE must be full, heartbeats or idle, not '$mode'" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
cargo build --release --workspace

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)," \
  "open files per process $(ulimit -Sn) (hard $(ulimit -Hn))," \
  "ephemeral ports $(tr '\t' '-' < /proc/sys/net/ipv4/ip_local_port_range)," \
  "somaxconn $(cat /proc/sys/net/core/somaxconn)"

# The profile's timeline is relative to it, so the scaled copy lives beside it.
profile="profiles/.connections-$target-$mode.yaml"
trap 'rm -f "$profile"' EXIT
sed -e "s/^users: 1000000/users: $target/" \
    -e "s/target: 1000000 }/target: $target }/" \
    -e "s/^name: million/name: connections-$target-$mode/" \
    -e "s/^  shake_rate: 0.0016667/  shake_rate: $shakes/" \
    -e "s/^  heartbeat_interval: 300s/  heartbeat_interval: $beats/" \
    profiles/million.yaml > "$profile"
grep -q "shake_rate: $shakes" "$profile" && grep -q "heartbeat_interval: $beats" "$profile" \
  || { echo "profiles/million.yaml changed shape; update this script" >&2; exit 1; }
summary=${SUMMARY:-target/bench-connections-$target-$mode.json}
./target/release/loadgen run "$profile" --summary-json "$summary"
echo "summary as JSON: $summary (see .resources)"
