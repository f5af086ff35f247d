#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for a while and prints, per target, the
# executions, the corpus it ended with and the crashes found (files under
# fuzz/artifacts/TARGET/). Needs the nightly toolchain and cargo-fuzz:
#   cargo install cargo-fuzz
#
#   bench/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]      (default 60 s, every target)
#
# FUZZ_RUNS=N stops each target after N executions instead (SECONDS stays the cap):
#   FUZZ_RUNS=10000000 bench/fuzz.sh 3600 client_frames
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(client_frames rpc_messages cookie_and_token profile schedule resource_manifest)
fi
printf '%-18s %14s %10s %8s\n' target executions corpus crashes
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  log=$(mktemp)
  # The committed seeds are read; what the run finds goes to a scratch corpus.
  scratch=$(mktemp -d)
  cargo +nightly fuzz run "$t" "$scratch" "corpus/$t" -- \
    -max_total_time="$secs" ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} -print_final_stats=1 >"$log" 2>&1 || true
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  size=$(find "$scratch" -type f | wc -l)
  after=$(find "artifacts/$t" -type f | wc -l)
  printf '%-18s %14s %10s %8s\n' "$t" "${runs:-?}" "$size" "$((after - before))"
  if [ "$after" -gt "$before" ]; then
    grep -m3 -E 'panicked|ERROR' "$log" | sed 's/^/    /'
  fi
  rm -rf "$scratch" "$log"
done
