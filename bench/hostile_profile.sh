#!/usr/bin/env bash
# What hostile users cost the honest ones in a full flow: profiles/hostile.yaml run
# with its hostile share set to 0 (the reference) and as shipped (2 %), one after the
# other, RUNS times. Prints, per pair, the honest users' shake/open/grab p99 and errors
# with and without the attackers and the ratio; then min, median and max of the ratios.
#
#   bench/hostile_profile.sh [RUNS]        (default 3; each pair takes about 2.5 min)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build --release -q --workspace
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed 's/^    share: 0.02$/    share: 0.0/' profiles/hostile.yaml >"$work/reference.yaml"
grep -q 'share: 0.0$' "$work/reference.yaml" || { echo "could not set the share to 0" >&2; exit 1; }
sed -i "s#timeline: timeline.yaml#timeline: $PWD/profiles/timeline.yaml#" "$work/reference.yaml"
p99() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('%.3f' % r['ops'][sys.argv[2]]['p99_ms'])" "$1" "$2"; }
errs() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(sum(o['errors'] for o in r['ops'].values()))" "$1"; }
printf '%-4s %-7s %12s %12s %12s %7s %9s\n' run users shake_p99 open_p99 grab_p99 errors passed
ratios=()
for i in $(seq 1 "$runs"); do
  for kind in reference hostile; do
    profile=profiles/hostile.yaml
    [ "$kind" = reference ] && profile="$work/reference.yaml"
    ./target/release/loadgen run "$profile" --summary-json "$work/$kind.json" \
      --report-dir "$work/report-$kind" >"$work/$kind.log" 2>&1 && ok=yes || ok=no
    printf '%-4s %-9s %10s %12s %12s %7s %9s\n' "$i" "$kind" "$(p99 "$work/$kind.json" shake)" \
      "$(p99 "$work/$kind.json" open)" "$(p99 "$work/$kind.json" grab)" "$(errs "$work/$kind.json")" "$ok"
  done
  r=$(python3 -c "import json; a=json.load(open('$work/hostile.json')); b=json.load(open('$work/reference.json')); print('%.2f' % (a['ops']['shake']['p99_ms']/b['ops']['shake']['p99_ms']))")
  echo "     honest shake p99 with / without hostile users: $r"
  ratios+=("$r")
done
python3 -c "import sys,statistics as s; v=sorted(map(float,sys.argv[1:])); print('ratio of honest shake p99 (hostile / reference): min %.2f, median %.2f, max %.2f over %d runs' % (v[0], s.median(v), v[-1], len(v)))" "${ratios[@]}"
