#!/usr/bin/env python3
"""What durable writes cost everything else on this machine: the half step of
bench/shakes.py with few envelopes (so the system itself writes little), beside a
synthetic writer making the flushes the system makes at 200 envelopes a second.

The writer keeps four files under data/ (as the envelope backend, two gateways and
payment: 553, 280, 280 and 179 commits a second, measured with sut_store_batches_total
on 2026-12-03), each commit `fdatasync`ed:

  redb  six 4 KB pages at random places of a 64 MB file (what a redb commit writes here:
        strace shows five or six pwrite64s of 4 KB and a 320-byte header)
  log   one 4 KB page at the tail (what an append-only log would write)
  none  no writer

--scale multiplies the commit rates. Printed per run: shake p99, p99.9 and the load
generator's send lag p99.

    bench/flush_cost.py [--mode redb|log|none] [--scale 1.0] [--runs 2]
                        [--rate 9.5] [--envelopes 10]
"""

import argparse
import os
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shakes  # noqa: E402
from system import ROOT  # noqa: E402

RATES = [553, 280, 280, 179]
PAGE = 4096
FILE_BYTES = 64 << 20


def path_of(i):
    return ROOT / "data" / f"flush-cost-{i}.bin"


def prepare():
    """Writes each file whole once: a database's pages are written blocks, and a write
    into a hole (or an unwritten extent) would also cost the filesystem's journal."""
    chunk = os.urandom(1 << 20)
    for i in range(len(RATES)):
        with open(path_of(i), "wb") as f:
            for _ in range(FILE_BYTES // len(chunk)):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())


def writer(i, rate, mode, stop):
    fd = os.open(path_of(i), os.O_RDWR)
    try:
        page = os.urandom(PAGE)
        tail, period, due = 0, 1.0 / rate, time.monotonic()
        while not stop.is_set():
            if mode == "redb":
                for _ in range(6):
                    os.pwrite(fd, page, random.randrange(FILE_BYTES // PAGE) * PAGE)
            else:
                os.pwrite(fd, page, (tail // PAGE) * PAGE)
                tail = (tail + 200) % FILE_BYTES
            os.fdatasync(fd)
            due += period
            time.sleep(max(0.0, due - time.monotonic()))
    finally:
        os.close(fd)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["redb", "log", "none"], default="redb")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--rate", type=float, default=9.5, help="shakes a user wants per second")
    ap.add_argument("--envelopes", type=int, default=10, help="the timeline's envelopes/s")
    a = ap.parse_args()
    if a.scale <= 0 or a.runs < 1 or a.rate <= 0 or a.envelopes < 1:
        sys.exit("--scale, --rate, --runs and --envelopes must be positive")
    shakes.TIMELINE = shakes.TIMELINE.replace("rate: 200", f"rate: {a.envelopes}")
    (ROOT / "data").mkdir(exist_ok=True)
    print(f"mode {a.mode}, {sum(RATES) * a.scale:.0f} commits/s, 2,000 users wanting "
          f"{a.rate} shakes/s, {a.envelopes} envelopes/s")
    if a.mode != "none":
        prepare()
        time.sleep(5)  # let the writeback of the preparation settle
    try:
        for k in range(a.runs):
            one_run(a, k)
    finally:
        for i in range(len(RATES)):
            path_of(i).unlink(missing_ok=True)


def one_run(a, k):
    stop = threading.Event()
    threads = [] if a.mode == "none" else [
        threading.Thread(target=writer, args=(i, r * a.scale, a.mode, stop))
        for i, r in enumerate(RATES)]
    for t in threads:
        t.start()
    try:
        r = shakes.shakes(2000, a.rate, 10, 19100, "flush-cost")
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"  run {k + 1}: shake p99 {r['p99_ms']:.3f} ms, p99.9 {r['p999_ms']:.3f} ms, "
          f"send lag p99 {r['send_lag_p99_ms']:.3f} ms, errors {r['errors']}")


if __name__ == "__main__":
    main()
