#!/usr/bin/env python3
"""What each hostile client costs honest users of the same gateway.

Starts `sut up --gateways 1` and keeps HONEST users on it, each shaking (with its
cookie) and sending a heartbeat every 100 ms. For each attack it measures the honest
round trips for a few seconds before the attack and while it runs, and prints their p99
before and during and the ratio, the gateway's resident memory before and during, and
how the gateway bounded the attack (`sut_gateway_connection_limits_total`,
`sut_gateway_errors_total` and the throttle tier, from its /metrics).

Attacks (each by one attacking process, this script):
  flood      one logged-in connection writing shakes with ~60 KB garbage cookies, 16 to
             a write, as fast as the gateway takes them, reading what comes back
  slow-pre   CONNS connections each sending the first bytes of a frame, then nothing
  slow-post  CONNS logged-in connections each holding 60 KB of a 64 KB frame
  silent     CONNS logged-in connections that never send again
  deaf       20 logged-in connections writing heartbeats and never reading a reply
  cookies    one connection shaking with 65,000-byte cookies as fast as it is answered

    bench/hostile.py [--attacks flood,slow-pre,...] [--conns 2000] [--seconds 8]
"""

import argparse
import asyncio
import os
import re
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

from system import ROOT, sut_up
from wire import heartbeat, hello, login, parse_shake_reply, read_frame, shake
ATTACKS = ["flood", "slow-pre", "slow-post", "silent", "deaf", "cookies"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))] if xs else float("nan")


def scrape(addr):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out.decode(errors="replace")


def metric(text, name):
    """{labels: value} of one family's samples."""
    found = {}
    for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M):
        found[m.group(1) or ""] = float(m.group(2))
    return found


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def gateway_pid(data):
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gateway" in cmd and str(data).encode() in cmd:
            return int(p.name)
    sys.exit("no gateway process found")


class Honest:
    """Honest users' round trips, recorded while `recording` is set."""

    def __init__(self):
        self.samples = []
        self.recording = False
        self.errors = 0

    async def user(self, addr, uid, key, stop):
        reader, writer = await login(addr, uid, key)
        cookie = b""
        await asyncio.sleep((uid % 100) / 1000.0)
        while not stop.is_set():
            for request in (shake(cookie), heartbeat()):
                sent = time.monotonic()
                writer.write(request)
                try:
                    reply = await asyncio.wait_for(read_frame(reader), 30)
                except (asyncio.TimeoutError, asyncio.IncompleteReadError):
                    self.errors += 1
                    return
                if self.recording:
                    self.samples.append((time.monotonic() - sent) * 1000.0)
                parsed = parse_shake_reply(reply)
                if parsed:
                    cookie = parsed[1]
            await asyncio.sleep(0.1)
        writer.close()


async def attack(kind, addr, key, conns, stop):
    host, port = addr.rsplit(":", 1)
    port = int(port)
    held = []
    try:
        if kind == "flood":
            r, w = await asyncio.open_connection(host, port)
            w.write(hello(10_000_000, key))
            burst = shake(b"\x5a" * 60_000) * 16

            async def drain():
                while await r.read(1 << 16):
                    pass

            t = asyncio.ensure_future(drain())
            while not stop.is_set():
                w.write(burst)
                await w.drain()
            t.cancel()
            held.append(w)
        elif kind == "cookies":
            r, w = await login(addr, 10_000_001, key)
            while not stop.is_set():
                w.write(shake(b"\x01" * 65_000))
                try:
                    await read_frame(r)
                except asyncio.IncompleteReadError:
                    break
            held.append(w)
        elif kind == "deaf":
            for i in range(20):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect((host, port))
                s.setblocking(False)
                s.send(hello(10_000_100 + i, key))
                held.append(s)
            beats = heartbeat() * 1000
            while not stop.is_set():
                for s in held:
                    try:
                        s.send(beats)
                    except OSError:
                        pass
                await asyncio.sleep(0.01)
        else:
            for i in range(conns):
                _, w = await asyncio.open_connection(host, port)
                if kind == "slow-pre":
                    w.write(b"\x00\x00\x10")
                elif kind == "slow-post":
                    w.write(hello(10_001_000 + i, key) + struct.pack(">I", 64 * 1024) + b"\x01" * 60_000)
                elif kind == "silent":
                    w.write(hello(10_001_000 + i, key))
                held.append(w)
            await stop.wait()
    finally:
        for h in held:
            h.close()


def label(k):
    """The value of a sample's one label, e.g. `{limit="rate_waits"}` -> rate_waits."""
    return k.split("=")[-1].strip('}"')


def grown(before, after):
    return {label(k): int(v - before.get(k, 0)) for k, v in after.items() if v > before.get(k, 0)}


async def measure(kind, addr, metrics_addr, key, pid, honest, seconds, conns):
    start = scrape(metrics_addr)
    honest.samples = []
    honest.recording = True
    rss_before = rss_kib(pid)
    await asyncio.sleep(seconds)
    before = list(honest.samples)
    honest.samples = []
    stop = asyncio.Event()
    attacker = asyncio.ensure_future(attack(kind, addr, key, conns, stop))
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        peak = max(peak, rss_kib(pid))
    during = list(honest.samples)
    text = scrape(metrics_addr)
    stop.set()
    await asyncio.gather(attacker, return_exceptions=True)
    honest.recording = False
    limits = grown(metric(start, "sut_gateway_connection_limits_total"),
                   metric(text, "sut_gateway_connection_limits_total"))
    errors = grown(metric(start, "sut_gateway_errors_total"),
                   metric(text, "sut_gateway_errors_total"))
    tier = metric(text, "sut_gateway_throttle_tier").get("", float("nan"))
    await asyncio.sleep(2)
    return before, during, rss_before, peak, limits, errors, tier


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--honest", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--base-port", type=int, default=7500)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        with sut_up(data, 1, a.base_port) as (m, key):
            addr = m["gateway_addrs"][0]
            metrics_addr = dict(m["metrics"])["gateway-0"]
            pid = gateway_pid(data)
            rows = []

            async def run():
                honest = Honest()
                stop = asyncio.Event()
                users = [asyncio.ensure_future(honest.user(addr, u, key, stop))
                         for u in range(1, a.honest + 1)]
                await asyncio.sleep(1)
                for kind in a.attacks.split(","):
                    print(f"{kind} ...", flush=True)
                    rows.append((kind, *await measure(kind, addr, metrics_addr, key, pid,
                                                      honest, a.seconds, a.conns)))
                stop.set()
                await asyncio.gather(*users, return_exceptions=True)
                return honest.errors

            honest_errors = asyncio.run(run())
    print(f"\n{'attack':<10} {'honest p99 before':>18} {'during':>9} {'ratio':>6} "
          f"{'gateway RSS before':>19} {'peak':>9}  tier  bounded by")
    for kind, before, during, rss0, peak, limits, errors, tier in rows:
        p0, p1 = pct(before, 99), pct(during, 99)
        how = ", ".join(f"{k} {v}" for k, v in limits.items()) or "-"
        codes = ", ".join(f"{k} {v}" for k, v in errors.items()) or "-"
        print(f"{kind:<10} {p0:15.2f} ms {p1:6.2f} ms {p1 / p0:6.2f} {rss0 / 1024:15.1f} MiB"
              f" {peak / 1024:5.1f} MiB  {tier:4.0f}  {how}; codes: {codes}")
    print(f"honest users dropped: {honest_errors}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
