#!/usr/bin/env python3
"""What each fault of a run cost its users, second by second, from the run's summary.

For each fault (a part down, hung or crashed, or the disk full) it prints when it began
and ended, and from its start until 5 s after its end: the errors, the fewest users
connected (drops show there), the worst shake and open p99 and the fewest opens in a
second; then how long after the fault ended the shake p99 was back under twice the
baseline (the median of the seconds before the first fault; at least baseline + 20 ms,
the noise of this machine) for good: the time to recover.

    bench/faults.py PROFILE                 run the profile, then print
    bench/faults.py --summary SUMMARY.json  print from a run already made
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

DOWN = {"killed", "stopped", "crashed", "paused", "disk_full"}
UP = {"started", "resumed", "disk_freed"}


def fault_windows(faults):
    """(part, what, start, end) for each down event and the up event that closed it."""
    open_, out = {}, []
    for e in faults:
        if e["event"] in DOWN:
            open_.setdefault(e["part"], (e["event"], e["at_s"]))
        elif e["event"] in UP and e["part"] in open_:
            what, start = open_.pop(e["part"])
            out.append((e["part"], what, start, e["at_s"]))
    for part, (what, start) in open_.items():
        out.append((part, what, start, None))
    return sorted(out, key=lambda w: w[2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("profile", nargs="?")
    ap.add_argument("--summary")
    args = ap.parse_args()
    if args.summary:
        summary = Path(args.summary)
    elif args.profile:
        summary = Path(tempfile.mkdtemp()) / "summary.json"
        subprocess.run(["./target/release/loadgen", "run", args.profile, "--summary-json", str(summary)],
                       check=False, stdout=subprocess.DEVNULL)
    else:
        ap.error("give a profile or --summary")
    r = json.loads(summary.read_text())
    series = r["series"]
    windows = fault_windows(r["faults"])
    if not windows:
        sys.exit("no faults in this run")
    first = windows[0][2]
    before = [s for s in series if 6 <= s["t_s"] < first and s["shakes"] > 0]
    base_p99 = statistics.median(s["shake_p99_ms"] for s in before) if before else 0.0
    print(f"{r['profile']}: baseline (seconds before the first fault): shake p99 {base_p99:.2f} ms")
    base_opens = statistics.median(s["opens"] for s in before) if before else 0
    print(f"  opens a second {base_opens:.0f} (the rounds' rate)")
    print(f"{'fault':<22} {'from':>6} {'to':>6} {'errors':>7} {'connected':>9} {'shake p99 worst':>16} {'open p99 worst':>15} {'opens/s least':>13} {'recovered':>10}")
    for i, (part, what, start, end) in enumerate(windows):
        next_start = windows[i + 1][2] if i + 1 < len(windows) else float("inf")
        stop = (end if end is not None else series[-1]["t_s"]) + 5
        during = [s for s in series if start <= s["t_s"] <= stop]
        errors = sum(s["errors"] for s in during)
        worst = max((s["shake_p99_ms"] for s in during), default=0.0)
        worst_open = max((s["open_p99_ms"] for s in during), default=0.0)
        fewest = min((s["connected"] for s in during), default=0)
        least_opens = min((s["opens"] for s in during), default=0)
        recovered = "-"
        if end is not None:
            after = [s for s in series if s["t_s"] >= end and s["shakes"] > 0]
            bar = max(2 * base_p99, base_p99 + 20)
            bad = [s["t_s"] for s in after if s["shake_p99_ms"] > bar]
            # Recovered once no later second of the fault's aftermath (10 s, or until the
            # next fault) is bad.
            late = [t for t in bad if t <= min(end + 10, next_start)]
            recovered = f"{(max(late) - end + 1) if late else 0:.0f} s"
        print(f"{part + ' ' + what:<22} {start:>5.1f}s {('%.1fs' % end) if end else '-':>6} {errors:>7} {fewest:>9} "
              f"{worst:>13.1f} ms {worst_open:>12.1f} ms {least_opens:>13} {recovered:>10}")


if __name__ == "__main__":
    main()
