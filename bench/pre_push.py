#!/usr/bin/env python3
"""Resource pre-push benchmark: runs profiles/pre-push.yaml (or --profile) --runs times
and prints, as min / median / max over the runs, what decides whether the sponsors'
images reached the phones before the show:

- coverage when the first round began (the profile's gate: at least 90 %), and the first
  second at which 90 % of the online phones held every item;
- greetings that found their images (hits), missed them, or showed a tampered copy;
- tampered copies refused, against the responses the servers corrupted on purpose;
- bytes received and the peak second, retries and resumed downloads;
- the shake p99 of the same run (the show's own latency beside the downloads).

Figures come from each run's summary JSON; nothing here asserts a time. The machine is
shared and noisy: compare runs of one invocation with each other.

    bench/pre_push.py [--runs 3] [--profile profiles/pre-push.yaml] [-- EXTRA LOADGEN ARGS]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "target" / "release" / "loadgen"


def first_at(series, share):
    """The first second at which `share` of the online phones were covered."""
    for t, covered, online in series:
        if online and covered / online >= share:
            return t
    return None


def one_run(profile, extra, report_dir):
    summary = report_dir / "summary.json"
    cmd = [str(LOADGEN), "run", str(profile), "--report-dir", str(report_dir),
           "--summary-json", str(summary)] + extra
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not summary.exists():
        sys.exit(f"loadgen left no summary (exit {done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(summary.read_text())
    p = report.get("pre_push") or {}
    servers = p.get("servers") or {}
    shake = report["ops"].get("shake", {})
    return {
        "exit": done.returncode,
        "before show %": None if p.get("before_show") is None else 100 * p["before_show"],
        "90 % covered at s": first_at(p.get("coverage_series", []), 0.9),
        "greeting hits": p.get("greeting_hits", 0),
        "greeting misses": p.get("greeting_misses", 0),
        "tampered shown": p.get("tampered_shown", 0),
        "tampered refused": p.get("tampered_refused", 0),
        "corrupted by servers": servers.get("corrupted"),
        "MiB received": p.get("bytes", 0) / 1048576,
        "peak MiB/s": p.get("peak_bytes_per_s", 0) / 1048576,
        "retries": p.get("retries", 0),
        "resumed": p.get("resumed", 0),
        "shake p99 ms": shake.get("p99_ms"),
    }


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"
    return str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", default=str(ROOT / "profiles" / "pre-push.yaml"))
    ap.add_argument("extra", nargs="*", help="more `loadgen run` arguments (after --)")
    args = ap.parse_args()
    if not LOADGEN.exists():
        sys.exit(f"{LOADGEN} is missing: run `cargo build --release` first")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            r = one_run(args.profile, args.extra, Path(tmp) / f"run{i}")
            runs.append(r)
            print(f"run {i + 1}: exit {r['exit']}, before the show {fmt(r['before show %'])} %, "
                  f"greetings {r['greeting hits']} hits / {r['greeting misses']} misses", flush=True)
    print(f"\n{'figure':<22} {'min':>10} {'median':>10} {'max':>10}")
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        if not values:
            print(f"{key:<22} {'-':>10} {'-':>10} {'-':>10}")
            continue
        print(f"{key:<22} {fmt(min(values)):>10} {fmt(statistics.median(values)):>10} {fmt(max(values)):>10}")


if __name__ == "__main__":
    main()
