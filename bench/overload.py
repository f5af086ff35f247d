#!/usr/bin/env python3
"""Overload benchmark: what the throttle tiers save.

1. Capacity sweep (tiers off): the offered shake load climbs in steps; the capacity is
   the highest rate of decided shakes over a step whose every second kept its shake
   p99 under --bound-ms.
2. The overload profile at 4x that capacity, twice in one go: with tiers, and without.
   Normal load (half the capacity), a surge to 4x, normal again.

Printed for both: goodput during the surge (shakes answered with a real decision per
second) / capacity, p99 and p99.9 of admitted (decided) shakes over the run and the
worst second of the surge, seconds until tiers engage after the surge starts and until
replies are back at tier 0 after it ends, errors, and the peak RSS of each process.

The gateways get a known, small capacity (--shake-cost of CPU per decision, 1 ms by
default) so that this machine can offer them four times what they can take while the
load generator runs beside them.

With --runs N the whole (sweep included) is done N times and each figure is printed as
min / median / max over the runs, each run judged against its own sweep's capacity.

With --timeline FILE (relative to profiles/) the show runs on another timeline, e.g.
one whose rounds start after the run, to see the shake path without wins.

    bench/overload.py [--shake-cost 1ms] [--bound-ms 50] [--runs 1] [--tiers-only]
                      [--timeline timeline.yaml]
"""

import argparse
import json
import statistics
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "target" / "release" / "loadgen"
SHAKE_RATE = 2.0  # shakes a user wants per second
TIER0_INTERVAL = 2.0  # seconds, tier 0 of profiles/timeline.yaml
PER_USER = min(SHAKE_RATE, 1 / TIER0_INTERVAL)  # requests/s one user offers at tier 0


TIMELINE = "timeline.yaml"


def profile(name, users_steps, tiers, shake_cost, data):
    stages = "\n".join(
        f"  - {{ duration: {d}s, target: {u} }}" for d, u in users_steps
    )
    peak = max(u for _, u in users_steps)
    return f"""name: {name}
target:
  spawn:
    gateways: 2
    timeline: {TIMELINE}
    data: {data}
    countdown: 2s
    settle: 2s
    shake_cost: {shake_cost}
    tiers: {str(tiers).lower()}
users: {peak}
stages:
{stages}
behaviour:
  shake_rate: {SHAKE_RATE}
  open_probability: 0.9
  heartbeat_interval: 60s
  request_timeout: 60s
"""


class PeakRss(threading.Thread):
    """Polls /proc for the run's processes and keeps each one's peak RSS (VmHWM)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peaks = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                exe = os.path.basename(cmd[0].decode(errors="replace")) if cmd else ""
                if exe not in ("sut", "loadgen") or len(cmd) < 2:
                    continue
                args = [c.decode(errors="replace") for c in cmd[1:]]
                if exe == "sut":
                    role = args[0] + (f"-{args[2]}" if args[0] == "gateway" else "")
                else:
                    role = "loadgen worker" if "--worker" in args else "loadgen"
                hwm = next(
                    (int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:")),
                    0,
                )
                self.peaks[role] = max(self.peaks.get(role, 0), hwm)
            time.sleep(1)


def run(name, steps, tiers, shake_cost):
    path = ROOT / "profiles" / f".{name}.yaml"
    data = ROOT / "data" / name
    path.write_text(profile(name, steps, tiers, shake_cost, data))
    summary = ROOT / "target" / f"bench-{name}.json"
    rss = PeakRss()
    rss.start()
    try:
        out = subprocess.run(
            [str(LOADGEN), "run", str(path), "--summary-json", str(summary)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        rss.stop.set()
        path.unlink(missing_ok=True)
    if not summary.exists():
        sys.exit(f"{name} failed:\n{out.stdout}\n{out.stderr}")
    report = json.loads(summary.read_text())
    return report, rss.peaks


def audit_verdict(audit):
    if audit is None:
        return "-"
    clean = not audit["violations"] and audit["lost"] == 0 and audit["duplicated"] == 0
    return "PASS" if clean else "FAIL"


def capacity_sweep(shake_cost, bound_ms):
    step_s, users = 8, []
    for k in range(1, 11):
        users.append((1, 500 * k))  # a 1 s ramp to each level
        users.append((step_s, 500 * k))
    report, _ = run("overload-sweep", users, False, shake_cost)
    series = report["series"]
    best, t0, rows = 0.0, 0.0, []
    for i in range(0, len(users), 2):
        level = users[i][1]
        start = t0 + users[i][0] + 3  # skip the ramp and let the step settle
        end = t0 + users[i][0] + users[i + 1][0]
        t0 = end
        secs = [s for s in series if start <= s["t_s"] < end]
        if not secs:
            continue
        rate = sum(s["shakes"] for s in secs) / len(secs)
        worst = max(s["shake_p99_ms"] for s in secs)
        ok = worst < bound_ms
        rows.append((level, level * PER_USER, rate, worst, ok))
        if ok:
            best = max(best, rate)
    print("capacity sweep (tiers off): users, offered/s, decided/s, worst second's p99")
    for level, offered, rate, worst, ok in rows:
        mark = "ok " if ok else "over"
        print(f"  {mark} {level:6d} {offered:8.0f} {rate:9.0f} {worst:10.1f} ms")
    return best


def overload(capacity, tiers, shake_cost):
    normal = max(1, round(capacity * 0.5 / PER_USER))
    surge = max(normal + 1, round(capacity * 4 / PER_USER))
    steps = [(3, normal), (12, normal), (2, surge), (25, surge), (1, normal), (20, normal)]
    name = "overload-tiers" if tiers else "overload-no-tiers"
    report, peaks = run(name, steps, tiers, shake_cost)
    surge_start, surge_end = 3 + 12, 3 + 12 + 2 + 25
    series = report["series"]
    during = [s for s in series if surge_start + 3 <= s["t_s"] < surge_end]
    goodput = sum(s["shakes"] for s in during) / max(1, len(during))
    raised = [
        s["t_s"]
        for s in series
        if s["t_s"] >= surge_start and any(int(k) > 0 for k in s["replies_by_tier"])
    ]
    engage = raised[0] - surge_start if raised else None
    relax = None
    after = [s for s in series if s["t_s"] >= surge_end]
    for i, s in enumerate(after):
        if all(all(int(k) == 0 for k in t["replies_by_tier"]) for t in after[i:]):
            relax = s["t_s"] - surge_end
            break
    shake = report["ops"]["shake"]
    return {
        "normal users": normal,
        "surge users": surge,
        "goodput/s": goodput,
        "goodput / capacity": goodput / capacity if capacity else 0,
        "admitted p99 ms (run)": shake["p99_ms"],
        "admitted p99.9 ms (run)": shake["p999_ms"],
        "worst second's p99 ms (surge)": max((s["shake_p99_ms"] for s in during), default=0),
        "come back later": report["shake_outcomes"].get("come_back_later", 0),
        "tiers engaged after s": engage,
        "tiers relaxed after s": relax,
        "errors": sum(report["errors_by_kind"].values()),
        "audit": audit_verdict(report.get("audit")),
        "peak RSS MiB": {k: round(v / 1024, 1) for k, v in sorted(peaks.items())},
    }


def one_run(a):
    capacity = a.capacity or capacity_sweep(a.shake_cost, a.bound_ms)
    if capacity <= 0:
        sys.exit("no step kept its p99 under the bound; raise --bound-ms")
    print(f"capacity: {capacity:.0f} decided shakes/s with every second's p99 < {a.bound_ms} ms")
    modes = (True,) if a.tiers_only else (True, False)
    results = {t: overload(capacity, t, a.shake_cost) for t in modes}
    print("\noverload at 4x capacity: normal, surge for 27 s, normal")
    print(f"  {'':34} " + " ".join(f"{'tiers on' if t else 'tiers off':>14}" for t in modes))
    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
    for key in results[True]:
        if key == "peak RSS MiB":
            continue
        print(f"  {key:34} " + " ".join(f"{fmt(results[t][key]):>14}" for t in modes))
    for tiers in modes:
        label = "tiers on " if tiers else "tiers off"
        print(f"  peak RSS MiB, {label}: {results[tiers]['peak RSS MiB']}")
    sys.stdout.flush()
    return capacity, results[True]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shake-cost", default="1ms")
    ap.add_argument("--bound-ms", type=float, default=50.0)
    ap.add_argument("--capacity", type=float, help="skip the sweep and use this capacity")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--tiers-only", action="store_true", help="skip the run without tiers")
    ap.add_argument("--timeline", default="timeline.yaml", help="relative to profiles/")
    a = ap.parse_args()
    global TIMELINE
    TIMELINE = a.timeline
    if not (ROOT / "profiles" / a.timeline).is_file():
        sys.exit(f"--timeline: profiles/{a.timeline} is not a file")
    if a.runs < 1:
        sys.exit("--runs must be at least 1")
    subprocess.run(["cargo", "build", "--release", "--workspace"], cwd=ROOT, check=True)
    runs = []
    for k in range(a.runs):
        print(f"\n== run {k + 1} of {a.runs}")
        runs.append(one_run(a))
    if a.runs > 1:
        print(f"\ntiers on, over {a.runs} runs: min / median / max")
        caps = [c for c, _ in runs]
        print(f"  {'capacity':34} {min(caps):10.0f} {statistics.median(caps):10.0f} {max(caps):10.0f}")
        for key, v in runs[0][1].items():
            vals = [r[key] for _, r in runs if isinstance(r[key], (int, float))]
            if len(vals) != len(runs) or isinstance(v, bool):
                continue
            print(f"  {key:34} {min(vals):10.3f} {statistics.median(vals):10.3f} {max(vals):10.3f}")


if __name__ == "__main__":
    main()
