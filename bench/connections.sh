#!/usr/bin/env bash
# The long-connection benchmark: ramps to TARGET connections (default 1,000,000) from
# load generator workers to a gateway fleet on this one machine, holds them for 60 s
# with heartbeats and a light shake rate, lets them go, audits the system, and prints
# the figures: connections held, ramp rate, drops, user-space bytes per connection for
# the load generator and the gateways (PSS / connections), kernel bytes per connection
# (slab delta / connections) and CPU while holding.
#
#   bench/connections.sh [TARGET] [MODE] [RAMP] [TRANSPORT]
#
# MODE is `full` (default: heartbeats every 5 minutes and a shake every 10 per user),
# `heartbeats` (heartbeats only) or `idle` (no requests at all while holding), to
# split the cost of holding from the cost of the requests.
#
# RAMP is the planned connections a second (default 8,000: what this 2-core machine
# sustains with the gateways and workers beside each other; an open-loop ramp planned
# past that falls behind, and connections that wait too long time out and retry). The
# benchmark prints the rate reached against the planned one.
#
# TRANSPORT is `tcp` (default) or `quic`: every user over QUIC, each load generator
# worker's users over its one UDP socket, the gateways' QUIC endpoints on the UDP ports
# of their TCP ports' numbers. The same figures then say what a QUIC connection costs
# on each side (goal: at most 20 KB of user space per connection per side).
#
# A million connections need ~10 GB of kernel memory for the sockets, ~57 gateway
# processes and ~54 worker processes (20,000 open files each at most).
set -euo pipefail
target=${1:-1000000}
mode=${2:-full}
ramp=${3:-8000}
transport=${4:-tcp}
case $transport in
  tcp|quic) ;;
  *) echo "TRANSPORT must be tcp or quic, not '$transport'" >&2; exit 2 ;;
esac
for n in "$target" "$ramp"; do
  case $n in
    ''|*[!0-9]*|0) echo "usage: $0 [TARGET connections] [full|heartbeats|idle] [RAMP connections/s] [tcp|quic], whole numbers" >&2; exit 2 ;;
  esac
done
ramp_s=$(( (target + ramp - 1) / ramp ))
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
profile="profiles/.connections-$target-$mode-$transport.yaml"
trap 'rm -f "$profile"' EXIT
sed -e "s/^users: 1000000/users: $target/" \
    -e "s/duration: 125s, target: 1000000 }/duration: ${ramp_s}s, target: $target }/" \
    -e "s/target: 1000000 }/target: $target }/" \
    -e "s/^name: million/name: connections-$target-$mode-$transport/" \
    -e "s/^  request_timeout: 30s/  request_timeout: 30s\n  transport: $transport/" \
    -e "s/^  shake_rate: 0.0016667/  shake_rate: $shakes/" \
    -e "s/^  heartbeat_interval: 300s/  heartbeat_interval: $beats/" \
    profiles/million.yaml > "$profile"
grep -q "shake_rate: $shakes" "$profile" && grep -q "heartbeat_interval: $beats" "$profile" \
  && grep -q "duration: ${ramp_s}s, target: $target }" "$profile" \
  && grep -q "^  transport: $transport" "$profile" \
  || { echo "profiles/million.yaml changed shape; update this script" >&2; exit 1; }
summary=${SUMMARY:-target/bench-connections-$target-$mode-$transport.json}
status=0
./target/release/loadgen run "$profile" --summary-json "$summary" || status=$?
echo "summary as JSON: $summary (see .resources)"
python3 - "$summary" "$target" "$ramp" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
res, target, ramp = r["resources"], int(sys.argv[2]), int(sys.argv[3])
held = res["peak"]["connected"]
print(f"ramp: planned {ramp} connections/s, reached {res['ramp_connections_per_s']:.0f}/s"
      f" ({res['ramp_connections_per_s'] / ramp:.2f} of plan); held {held} of {target};"
      f" drops {r['connection_drops']}; errors {sum(r['errors_by_kind'].values())}")
PY
exit $status
