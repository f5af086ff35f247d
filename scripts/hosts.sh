#!/bin/sh
# Hosts on one machine, for tests and benchmarks: network namespaces joined by veth
# pairs to one bridge, each with its own address (root only).
#
#   scripts/hosts.sh up PREFIX N SUBNET   namespaces PREFIX0 .. PREFIX<N-1> at SUBNET.2 ..
#                                         SUBNET.<N+1> (SUBNET like 10.231.7), the bridge
#                                         PREFIXbr at SUBNET.1
#   scripts/hosts.sh down PREFIX N        removes them (what exists of them)
#
# Each namespace gets the widest ephemeral port range (1024-65535). Run a command on
# host i with `ip netns exec PREFIXi COMMAND`. PREFIX must be at most
# 9 characters (interface names hold 15).
set -eu
usage() { echo "usage: $0 up PREFIX N SUBNET | down PREFIX N" >&2; exit 2; }
[ $# -ge 3 ] || usage
cmd=$1 prefix=$2 n=$3
[ ${#prefix} -le 9 ] || { echo "$0: PREFIX '$prefix' is longer than 9 characters" >&2; exit 2; }
case $cmd in
up)
    [ $# -eq 4 ] || usage
    subnet=$4
    ip link add "${prefix}br" type bridge
    ip addr add "$subnet.1/24" dev "${prefix}br"
    ip link set "${prefix}br" up
    i=0
    while [ "$i" -lt "$n" ]; do
        ns="$prefix$i"
        ip netns add "$ns"
        ip link add "${prefix}v$i" type veth peer name "${prefix}p$i"
        ip link set "${prefix}p$i" netns "$ns"
        ip link set "${prefix}v$i" master "${prefix}br" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$subnet.$((i + 2))/24" dev "${prefix}p$i"
        ip -n "$ns" link set "${prefix}p$i" up
        # A load host's connections to few gateway ports each take an ephemeral port:
        # the widest range keeps the kernel's search for a free one short.
        ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
        i=$((i + 1))
    done
    ;;
down)
    i=0
    while [ "$i" -lt "$n" ]; do
        ip netns del "$prefix$i" 2>/dev/null || true
        ip link del "${prefix}v$i" 2>/dev/null || true
        i=$((i + 1))
    done
    ip link del "${prefix}br" 2>/dev/null || true
    ;;
*) usage ;;
esac
