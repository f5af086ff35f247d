#!/usr/bin/env bash
# Shakes through the gateways against a bare echo over the same connections, in one run
# (see bench/shakes.py for what is measured and printed).
#
#   bench/shakes.sh [--runs 3] [--users 2000] [--seconds 10]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
exec python3 bench/shakes.py "$@"
