#!/usr/bin/env python3
"""What strict per-user limits cost: shake latency, split by outcome, with and without.

Starts `sut up` (2 gateways, profiles/timeline.yaml's first round: 3,000 envelopes at
200/s) once with strict limits (every win reserved at the user's owner, the envelope
backend, before it is issued) and once with `--no-strict-limits`, alternating, and in
each drives USERS simulated users (one long connection each, split over the gateways)
that shake every second with the cookie they were given. It prints, per run, the p50
and p99 of shakes that won an envelope (the path strictness lengthens) and of all other
shakes (a greeting or nothing: the path it must not touch), and the medians over runs
with their ratio strict / without. Latency is measured from the send to the reply by
this client, on this machine, so it includes this script's own scheduling: compare the
ratio, not the absolute figures.

    bench/strict_limits.py [--users 2000] [--runs 3] [--seconds 15]
"""

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from system import ROOT, sut_up
from wire import login, parse_shake_reply, read_frame, shake



async def user(addr, uid, key, until, wins, others):
    reader, writer = await login(addr, uid, key)
    cookie = b""
    # Spread the users' phases over the second.
    await asyncio.sleep((uid % 1000) / 1000.0)
    while time.monotonic() < until:
        sent = time.monotonic()
        writer.write(shake(cookie))
        reply = parse_shake_reply(await read_frame(reader))
        ms = (time.monotonic() - sent) * 1000.0
        if reply is not None:
            tag, cookie = reply
            (wins if tag == 2 else others).append(ms)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - sent)))
    writer.close()


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def run_once(strict, users, seconds, base_port):
    flags = [] if strict else ["--no-strict-limits"]
    with tempfile.TemporaryDirectory() as tmp, \
            sut_up(Path(tmp) / "data", 2, base_port, *flags) as (m, key):
        # Round 1 starts 5 s into the show.
        start = m["show_start_ms"] / 1000.0 + 5.0
        time.sleep(max(0.0, start - time.time()))
        wins, others = [], []
        until = time.monotonic() + seconds

        async def drive():
            gws = m["gateway_addrs"]
            await asyncio.gather(*(user(gws[u % len(gws)], u, key, until, wins, others)
                                   for u in range(1, users + 1)))

        asyncio.run(drive())
        return wins, others


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--base-port", type=int, default=7400)
    a = ap.parse_args()
    rows = {True: [], False: []}
    for i in range(a.runs):
        for strict in (True, False):
            wins, others = run_once(strict, a.users, a.seconds, a.base_port)
            row = (len(wins), pct(wins, 50), pct(wins, 99), len(others), pct(others, 50),
                   pct(others, 99))
            rows[strict].append(row)
            name = "strict " if strict else "without"
            print(f"run {i + 1} {name}: wins {row[0]:>5} p50 {row[1]:6.2f} ms p99 {row[2]:7.2f} ms;"
                  f" other shakes {row[3]:>6} p50 {row[4]:6.2f} ms p99 {row[5]:7.2f} ms", flush=True)
    med = {k: [statistics.median(r[j] for r in v) for j in range(6)] for k, v in rows.items()}
    print("\nmedians over runs          strict    without   strict/without")
    for j, label in [(1, "win p50 ms"), (2, "win p99 ms"), (4, "other shake p50 ms"),
                     (5, "other shake p99 ms")]:
        s, w = med[True][j], med[False][j]
        print(f"  {label:<22} {s:9.2f} {w:10.2f} {s / w if w else float('nan'):12.2f}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
