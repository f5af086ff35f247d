#!/usr/bin/env python3
"""Open-path benchmark: sustained credited opens per second, end to end, durable.

Starts the system under test (`sut up`: payment, the envelope backend, N gateways) with
every gateway told to put --opens synthetic opens through its real open path at start-up
(`--bench-opens`: the durable pass-through queue, the forwarder, the backend's durable
record and outbox, payment's durable ledger; only the client connection and the token
check are skipped). It then polls payment's /metrics until every open is credited and
prints:

- credited opens per second, sustained (between 10 % and 90 % of all credited) and
  overall (first to last credit);
- the group-commit batch sizes each database saw (operations per fsync'd transaction);

once with fsync (the real configuration) and once with --no-fsync, and the ratio of
the two: what durability costs here.

    bench/opens.py [--opens 200000] [--gateways 2]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUT = ROOT / "target" / "release" / "sut"


def scrape(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        return r.read().decode()


def value(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run(opens_per_gateway, gateways, fsync, base_port):
    data = ROOT / "data" / ("bench-opens" + ("" if fsync else "-nofsync"))
    shutil.rmtree(data, ignore_errors=True)
    args = [str(SUT), "up", "--gateways", str(gateways), "--data", str(data),
            "--timeline", str(ROOT / "profiles" / "timeline.yaml"),
            "--base-port", str(base_port), "--countdown", "1s",
            "--bench-opens", str(opens_per_gateway)]
    if not fsync:
        args.append("--no-fsync")
    data.mkdir(parents=True, exist_ok=True)
    log = open(data.parent / (data.name + ".log"), "w")
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=log, stderr=log)
    total = opens_per_gateway * gateways
    try:
        manifest = data / "manifest.json"
        deadline = time.time() + 60
        while not manifest.exists():
            if proc.poll() is not None or time.time() > deadline:
                sys.exit(f"sut up did not start; see {log.name}")
            time.sleep(0.05)
        metrics = dict(json.loads(manifest.read_text())["metrics"])
        samples = []  # (time, credited)
        last_change = time.time()
        while True:
            credited = value(scrape(metrics["payment"]), "sut_payment_credits_total",
                             result="credited")
            now = time.time()
            if not samples or credited != samples[-1][1]:
                last_change = now
            samples.append((now, credited))
            if credited >= total:
                break
            if now - last_change > 60:
                sys.exit(f"credits stalled at {credited:.0f} of {total}; see {log.name}")
            time.sleep(0.05)
        batches = {}
        for name, addr in metrics.items():
            text = scrape(addr)
            db = "queue" if name.startswith("gateway") else name
            b, o = batches.get(db, (0.0, 0.0))
            batches[db] = (b + value(text, "sut_store_batches_total"),
                           o + value(text, "sut_store_operations_total"))
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(timeout=120)

    def at(fraction):
        for t, c in samples:
            if c >= fraction * total:
                return t
        return samples[-1][0]

    first = next(t for t, c in samples if c > 0)
    sustained = 0.8 * total / max(at(0.9) - at(0.1), 1e-9)
    overall = total / max(samples[-1][0] - first, 1e-9)
    return sustained, overall, batches


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--opens", type=int, default=200_000, help="opens in all")
    ap.add_argument("--gateways", type=int, default=2)
    a = ap.parse_args()
    if not SUT.exists():
        sys.exit("build first: cargo build --release --workspace")
    per = a.opens // a.gateways
    results = {}
    for fsync, port in [(True, 7400), (False, 7500)]:
        label = "fsync" if fsync else "no fsync"
        print(f"running {per * a.gateways} opens over {a.gateways} gateways, {label} ...",
              flush=True)
        results[label] = run(per, a.gateways, fsync, port)
    print(f"\n{'':34}{'fsync':>14}{'no fsync':>14}")
    rows = [("credited opens/s, sustained (10-90 %)", 0), ("credited opens/s, first to last", 1)]
    for title, i in rows:
        print(f"{title:34}{results['fsync'][i]:>14.0f}{results['no fsync'][i]:>14.0f}")
    total = per * a.gateways
    print("opens per durable transaction (transactions):")
    for db, what in [("queue", "gateway queues (appends + acks)"),
                     ("envelope", "envelope backend"), ("payment", "payment")]:
        cells = []
        for label in ["fsync", "no fsync"]:
            b, _ = results[label][2].get(db, (0, 0))
            cells.append(f"{total / max(b, 1):.0f} ({b:.0f})")
        print(f"{'  ' + what:34}{cells[0]:>14}{cells[1]:>14}")
    ratio = results["fsync"][0] / max(results["no fsync"][0], 1e-9)
    print(f"\nsustained, fsync / no fsync: {ratio:.2f}")


if __name__ == "__main__":
    main()
