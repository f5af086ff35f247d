#!/usr/bin/env bash
# What merging one worker (or agent) report costs the coordinator: decoding it (each
# operation's HDR histogram from its V2 form) and adding it into the run's figures.
# Three runs each of a busy report (10,000 samples per operation over five decades of
# latency) and a light one (300 samples); prints µs per report and reports/s per core.
#
#   bench/merge_cost.sh [REPORTS]
set -euo pipefail
cd "$(dirname "$0")/.."
reports=${1:-2000}
cargo build --release -q -p loadgen --example merge_cost
for samples in 10000 300; do
  for run in 1 2 3; do
    echo "run $run: $(target/release/examples/merge_cost "$reports" "$samples")"
  done
done
