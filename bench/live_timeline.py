#!/usr/bin/env python3
"""Live timeline benchmark: how fast a programme change reaches every gateway of a
fleet, with each combination of its three channels (push, pull, gossip) cut.

Starts `sut up` with --gateways N (57 by default: the million fleet of
bench/connections.sh) on a show whose round is an hour away, then for each scenario
cuts the channels it names at every gateway (`channel NAME down`, or `kill config-0`
for one config service), makes --changes programme changes with `sut timeline` (a
round's rate), and reads from every gateway's applied log when it took each version.

Printed per scenario: the changes made, the median over changes of the p50 apply time
over gateways, the worst gateway's apply time over all changes, how many changes
reached every gateway within 1 s and within 3 s, and the channels that delivered
first. With every channel cut no gateway may apply anything: the row says how many did
(must be 0) and that the gateways still hold the old version, whose countdown keeps
running.

The fleet is idle but for the changes: it measures the channels themselves, not a
machine busy with load (profiles/live-show.yaml does that on 4 gateways).

    bench/live_timeline.py [--gateways 57] [--changes 5] [--base-port 7300]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUT = ROOT / "target" / "release" / "sut"

TIMELINE = """version: 1
rounds:
  - { id: 1, start: 1h, duration: 10m, envelopes: 1000, rate: 100, amount_cents: [1, 500], sponsors: [1, 2, 3] }
"""

SCENARIOS = [
    ("all channels up", [], False),
    ("push down", ["push"], False),
    ("pull down", ["pull"], False),
    ("gossip down", ["gossip"], False),
    ("config-0 down", [], True),
    ("push+pull down", ["push", "pull"], False),
    ("push+gossip down", ["push", "gossip"], False),
    ("pull+gossip down", ["pull", "gossip"], False),
    ("all three down", ["push", "pull", "gossip"], False),
]


def applied(data, gateways, version):
    """{gateway: (applied_unix_ms, channel)} of every gateway that took `version`."""
    out = {}
    for g in range(gateways):
        p = data / f"gateway-{g}.timeline.jsonl"
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            try:
                a = json.loads(line)
            except ValueError:
                continue
            if a["version"] == version:
                out[g] = (a["applied_unix_ms"], a["signed_unix_ms"], a["channel"])
    return out


def held_versions(manifest):
    """The version each gateway decides on, from its /metrics."""
    held = []
    for name, addr in manifest["metrics"]:
        if not name.startswith("gateway-"):
            continue
        body = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
        for line in body.splitlines():
            if line.startswith("sut_config_version "):
                held.append(int(float(line.split()[1])))
    return held


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateways", type=int, default=57)
    ap.add_argument("--changes", type=int, default=5)
    ap.add_argument("--base-port", type=int, default=7300)
    args = ap.parse_args()
    n = args.gateways
    tmp = Path(tempfile.mkdtemp(prefix="live-timeline-"))
    data = tmp / "data"
    (tmp / "timeline.yaml").write_text(TIMELINE)
    up = subprocess.Popen(
        [str(SUT), "up", "--gateways", str(n), "--data", str(data), "--timeline",
         str(tmp / "timeline.yaml"), "--base-port", str(args.base_port), "--countdown", "1s"],
        stdin=subprocess.PIPE, stdout=(tmp / "up.log").open("w"), stderr=subprocess.STDOUT,
        text=True,
    )

    def control(line):
        up.stdin.write(line + "\n")
        up.stdin.flush()

    try:
        started = time.time()
        while not (data / "manifest.json").exists():
            if time.time() - started > 300:
                raise SystemExit("sut up did not come up; see " + str(tmp / "up.log"))
            time.sleep(0.2)
        manifest = json.loads((data / "manifest.json").read_text())
        print(f"# {n} gateways up in {time.time() - started:.1f} s; data in {data}")
        print(f"{'scenario':<18} {'changes':>7} {'p50 ms':>8} {'max ms':>8} "
              f"{'<=1s':>5} {'<=3s':>5}  first by")
        rate = 100
        for name, cut, kill_config in SCENARIOS:
            for c in cut:
                control(f"channel {c} down")
            if kill_config:
                control("kill config-0")
            time.sleep(1.5)
            p50s, worst, within1, within3, firsts, reached = [], 0.0, 0, 0, {}, []
            for _ in range(args.changes):
                rate += 1
                out = subprocess.run(
                    [str(SUT), "timeline", "--data", str(data), "rate", "1", str(rate)],
                    capture_output=True, text=True, check=True,
                ).stdout
                version = int(out.split("timeline version ")[1].split(":")[0])
                deadline = time.time() + (3.5 if len(cut) == 3 else 10)
                got = {}
                while time.time() < deadline:
                    got = applied(data, n, version)
                    if len(got) == n:
                        break
                    time.sleep(0.05)
                reached.append(len(got))
                lags = sorted(a - s for a, s, _ in got.values())
                if lags:
                    p50s.append(lags[(len(lags) - 1) // 2])
                    worst = max(worst, lags[-1])
                if len(got) == n:
                    within1 += lags[-1] <= 1000
                    within3 += lags[-1] <= 3000
                for _, _, ch in got.values():
                    firsts[ch] = firsts.get(ch, 0) + 1
            held = held_versions(manifest) if len(cut) == 3 else []
            for c in cut:
                control(f"channel {c} up")
            if kill_config:
                control("start config-0")
            if len(cut) == 3:
                print(f"{name:<18} {args.changes:>7} {'-':>8} {'-':>8} {'-':>5} {'-':>5}  "
                      f"gateways that applied any: {max(reached)} (must be 0); "
                      f"versions held: {sorted(set(held))} (the countdown of the version held runs on)")
            else:
                first = ", ".join(f"{k} {v}" for k, v in sorted(firsts.items()))
                print(f"{name:<18} {args.changes:>7} {statistics.median(p50s):>8.0f} "
                      f"{worst:>8.0f} {within1:>5} {within3:>5}  {first}")
            time.sleep(1.5)
    finally:
        up.send_signal(2)
        try:
            up.wait(timeout=120)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
