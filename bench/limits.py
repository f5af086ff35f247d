#!/usr/bin/env python3
"""Per-user limits against cheaters, by sync interval of the shared limit view, with
and without strict limits.

Runs profiles/adversarial.yaml (a tenth of the users drop or replay their cookie and
hop to another gateway after every envelope) once per sync interval of the gateways'
shared view (the third limit layer) and mode, and prints for each: adversarial users,
how many got past the limits and their share, hops, and honest users over the limit
(must be 0). An interval of 1h stands for "no third layer": only the cookie (which
cheaters drop) and each gateway's own table (which they hop away from) remain. Mode
`strict` reserves every win at the user's owner before it is issued (the default of
the system); `without` runs the three layers alone (`strict_limits: false`).

    bench/limits.py [--intervals 200ms,1s,5s,1h] [--modes strict,without]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "target" / "release" / "loadgen"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--intervals", default="200ms,1s,5s,1h")
    ap.add_argument("--modes", default="strict,without")
    a = ap.parse_args()
    if not LOADGEN.exists():
        sys.exit("build first: cargo build --release --workspace")
    base = (ROOT / "profiles" / "adversarial.yaml").read_text()
    rows = []
    runs = [(m, i) for m in a.modes.split(",") for i in a.intervals.split(",")]
    for mode, interval in runs:
        with tempfile.TemporaryDirectory() as tmp:
            profile = Path(tmp) / "adversarial.yaml"
            strict = "true" if mode == "strict" else "false"
            text = base.replace("sync_interval: 1s",
                                f"sync_interval: {interval}\n    strict_limits: {strict}")
            text = text.replace("timeline: timeline.yaml",
                                f"timeline: {ROOT / 'profiles' / 'timeline.yaml'}")
            profile.write_text(text)
            summary = Path(tmp) / "summary.json"
            print(f"{mode}, sync interval {interval} ...", flush=True)
            run = subprocess.run([str(LOADGEN), "run", str(profile), "--summary-json",
                                  str(summary), "--report-dir", str(Path(tmp) / "report")],
                                 capture_output=True, text=True)
            if not summary.exists():
                sys.exit(f"run failed:\n{run.stderr[-3000:]}")
            r = json.loads(summary.read_text())
            l = r["limits"]
            rows.append((mode, interval, l["adversarial_users"], l["adversarial_over_limit"],
                         l["hops"], l["honest_over_limit"], r["passed"]))
    print(f"\n{'mode':>8} {'sync interval':>14} {'cheaters':>9} {'past limits':>12} {'share':>8} {'hops':>6} {'honest over':>12} {'passed':>7}")
    for mode, interval, users, over, hops, honest, passed in rows:
        share = 100.0 * over / max(users, 1)
        print(f"{mode:>8} {interval:>14} {users:>9} {over:>12} {share:>7.2f}% {hops:>6} {honest:>12} {str(passed):>7}")


if __name__ == "__main__":
    main()
