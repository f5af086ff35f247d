#!/usr/bin/env python3
"""Shakes through the gateways against a bare echo over the same connections, in one run.

For each of --runs rounds, on this machine, one after the other:

1. echo and shakes, saturated, in pairs of slices: both set up at once, and run in turn
   (the other side's client stopped with SIGSTOP meanwhile), --pairs times, --slice
   seconds each after 1 s to settle, so that each pair meets the machine in the same
   state (the host's load moves both by a third within minutes; measured apart, their
   ratio moved with it).
   - echo: 2 echo servers (one single-threaded process each, as the gateways), one
     echo client process (as one load generator worker) keeping one shake-sized
     request in flight on each of --users connections;
   - shakes: `sut up` with 2 gateways (tiers off, a 5 ms tier-0 interval, no per-user
     frame cap) and the load generator with --users users in one worker, each wanting
     200 shakes/s; decided shakes counted from the gateways' metrics.
   Per pair: shakes / echo, and the generator's CPU per request over the echo
   client's; CPU per request of every part (from /proc), over all slices.
2. shakes at half of step 1's median rate (the same users wanting half as many
   shakes): shake p50/p99/p99.9 (from intended send times, as always), the
   generator's send lag, the worker's CPU per request; apart, the shakes that won an
   envelope (each waits for its reservation and durable record; the timeline issues
   200 a second, 0.5 to 1.3 % of the decided shakes at half on this machine) and the
   rest, decided in memory.
3. echo at that same request rate per connection: its CPU per request and latency.
4. the half step again with `sut up --no-fsync`: the same shakes with no durable
   flushes at all, which is the most any storage design could take off step 2's
   latencies on this machine.
5. (with --quic) shakes saturated, every user over QUIC, run on its own: decided
   shakes/s over QUIC against step 1's mean over TCP, and the CPU per decided shake of
   each part.

Printed per round and as min / median / max over the rounds: shakes / echo (goal at
least 0.8), the generator's CPU per request / the echo client's at saturation and at
half (goal at most 1), and the half-capacity latencies (goal p99 <= 1 ms, p99.9 <= 5 ms).
Every durable step stays on (a win is recorded, with fsync, before its reply) except in
step 4. CPU is split into user space and kernel (from /proc/PID/stat) for every part;
"user-space budget for 0.8" is what the shake path's user space may cost per decided
shake, given its kernel time, for the two saturated sides' CPU to stand at 0.8 (below
zero: its kernel time alone is more than that).

    bench/shakes.py [--runs 3] [--users 2000] [--seconds 10] [--pairs 6] [--slice 3]
                    [--quic]
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from system import ROOT, sut_up  # noqa: E402

LOADGEN = ROOT / "target" / "release" / "loadgen"
ECHO = ROOT / "target" / "release" / "echo-reference"
TICK = os.sysconf("SC_CLK_TCK")
WARMUP = 4  # seconds before measuring: connections up, rates steady

TIMELINE = """version: 1
tiers: [5ms, 1s]
rounds:
  - id: 1
    start: 0s
    duration: 1h
    envelopes: 1000000
    rate: 200
    amount_cents: [1, 2000]
    sponsors: [1, 2, 3, 4]
    resources: [100]
"""


def cpu_split(pids):
    """CPU seconds used so far by these processes: (user space, kernel)."""
    user = kernel = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11])
            kernel += int(fields[12])
        except (OSError, IndexError):
            pass
    return user / TICK, kernel / TICK


def cpu_now(parts):
    """`cpu_split` of each part: {part: (user, kernel)}."""
    return {k: cpu_split(pids) for k, pids in parts.items()}


def rates(before, after, seconds):
    """Cores used per part between two `cpu_split` readings: {part: (user, kernel)}."""
    return {k: tuple((a - b) / seconds for a, b in zip(after[k], before[k])) for k in after}


def split_line(parts, per_s):
    """'part u U k K' per part, in us per request at `per_s` requests a second."""
    return " ".join(f"{k} u {u * 1e6 / per_s:.1f} k {kern * 1e6 / per_s:.1f}"
                    for k, (u, kern) in parts.items())


def pids_of(exe, *words):
    """Processes running `exe` whose arguments include every one of `words`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [c.decode(errors="replace") for c in cmd if c]
        if args and os.path.basename(args[0]) == exe and all(w in args for w in words):
            found.append(int(pid))
    return found


def echo(users, rate, seconds, port):
    addrs = [f"127.0.0.1:{port + i}" for i in range(2)]
    servers = [subprocess.Popen([str(ECHO), "serve", "--listen", a]) for a in addrs]
    try:
        time.sleep(0.3)
        client = subprocess.Popen(
            [str(ECHO), "drive", "--connect", ",".join(addrs), "--connections", str(users),
             "--rate", str(rate), "--warmup", f"{WARMUP}s", "--measure", f"{seconds}s"],
            stdout=subprocess.PIPE, text=True)
        out, _ = client.communicate()
        if client.returncode != 0:
            sys.exit("the echo client failed")
        return json.loads(out)
    finally:
        for s in servers:
            s.terminate()
            s.wait()


@contextlib.contextmanager
def shake_load(users, rate, run_seconds, port, name, transport="tcp", durable=True):
    """`sut up` with 2 gateways and the load generator's run against it for
    `run_seconds`: yields (the run's process, {part: pids}, the summary's path, the
    manifest) once the worker is up; on leaving, interrupts the run (SIGINT: it stops its
    users and writes its summary) if it is still going 3 s after its planned end, and
    waits for its end. Saturated, each user owes its schedule's shakes and sends them all
    before it leaves (they count late, as they should), which would take minutes."""
    data = ROOT / "data" / f"bench-shakes-{name}"
    shutil.rmtree(data, ignore_errors=True)  # sut_up waits for a fresh manifest
    data.mkdir(parents=True)
    timeline = data.parent / f"bench-shakes-{name}-timeline.yaml"
    timeline.write_text(TIMELINE)
    flags = ["--no-tiers", "--frames-per-second", "100000"] + ([] if durable else ["--no-fsync"])
    with sut_up(data, 2, port, *flags, timeline=timeline) as (manifest, _key):
        gateways = manifest["gateway_addrs"]
        profile = data.parent / f"bench-shakes-{name}.yaml"
        summary = data.parent / f"bench-shakes-{name}.json"
        profile.write_text(f"""name: shakes-{name}
target:
  addresses:
    gateways: {json.dumps(gateways)}
    auth_key_file: {data / "auth.key"}
    quic_cert: {data / "quic-cert.pem"}
users: {users}
stages:
  - {{ duration: 1s, target: {users} }}
  - {{ duration: {run_seconds}s, target: {users} }}
behaviour:
  shake_rate: {rate}
  open_probability: 0.9
  heartbeat_interval: 60s
  request_timeout: 30s
  transport: {transport}
""")
        started = time.monotonic()
        run = subprocess.Popen([str(LOADGEN), "run", str(profile), "--workers", "1",
                                "--summary-json", str(summary)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        workers = []
        while not workers and run.poll() is None:
            time.sleep(0.05)
            workers = pids_of("loadgen", "--worker")
        parts = {"worker": workers, "gateways": pids_of("sut", "gateway"),
                 "backend": pids_of("sut", "envelope"), "payment": pids_of("sut", "payment")}
        try:
            yield run, parts, summary, manifest
        finally:
            for pid in workers:  # a paired slice may have left it stopped
                os.kill(pid, signal.SIGCONT)
            time.sleep(max(0.0, started + 4 + run_seconds - time.monotonic()))
            if run.poll() is None:
                run.send_signal(signal.SIGINT)
            out, _ = run.communicate()
        # 1: a threshold breached (the profile has none); 130: interrupted, as above.
        if run.returncode not in (0, 1, 130) or not summary.exists():
            sys.exit(f"loadgen run failed:\n{out}")


def shakes(users, rate, seconds, port, name, transport="tcp", durable=True):
    with shake_load(users, rate, WARMUP + seconds + 1, port, name, transport,
                    durable) as (_run, parts, summary, _manifest):
        time.sleep(WARMUP + 1)
        c0, t0 = cpu_now(parts), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_now(parts), time.monotonic()
        cores = {k: sum(v) for k, v in rates(c0, c1, t1 - t0).items()}
    report = json.loads(summary.read_text())
    steady = [s for s in report["series"] if WARMUP + 1 <= s["t_s"] < WARMUP + 1 + seconds]
    decided = sum(s["shakes"] for s in steady) / max(1, len(steady))
    replies = sum(s["shakes"] + s["come_back_later"] + s["opens"] for s in steady)
    replies /= max(1, len(steady))
    shake = report["ops"]["shake"]
    return {
        "decided_per_s": decided,
        "replies_per_s": replies,
        "cores": cores,
        "cpu_us_per_request": cores["worker"] * 1e6 / max(1.0, replies),
        "p50_ms": shake["p50_ms"],
        "p99_ms": shake["p99_ms"],
        "p999_ms": shake["p999_ms"],
        "send_lag_p99_ms": report["send_lag_p99_ms"],
        "won": report["shake_wins"],
        "not_won": report["shake_not_won"],
        "errors": sum(report["errors_by_kind"].values()),
    }


def decided_so_far(manifest):
    """Shakes the gateways decided so far (every reason but `throttled`), from their
    metrics."""
    total = 0
    for name, addr in manifest["metrics"]:
        if not name.startswith("gateway-"):
            continue
        text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith("sut_gateway_shakes_total{") and 'reason="throttled"' not in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def paired(users, pairs, slice_s, port, name):
    """Echo and shakes saturated, both set up at once over `users` connections each, and
    run in turn: slices of `slice_s` seconds (after 1 s to settle), the other side's
    client stopped (SIGSTOP) meanwhile, so each pair of slices meets the machine in the
    same state. Returns, per pair, each side's requests a second and CPU split by part;
    and the errors the load generator counted."""
    addrs = [f"127.0.0.1:{port + i}" for i in range(2)]
    progress = ROOT / "data" / f"bench-shakes-{name}-echo-progress"
    servers = [subprocess.Popen([str(ECHO), "serve", "--listen", a]) for a in addrs]
    run_s = pairs * 2 * (slice_s + 1) + WARMUP + 5
    client = None
    try:
        time.sleep(0.3)
        client = subprocess.Popen(
            [str(ECHO), "drive", "--connect", ",".join(addrs), "--connections", str(users),
             "--warmup", "0s", "--measure", f"{run_s + 60}s", "--progress-file", str(progress)],
            stdout=subprocess.DEVNULL)
        time.sleep(WARMUP)
        os.kill(client.pid, signal.SIGSTOP)
        echo_parts = {"servers": [s.pid for s in servers], "client": [client.pid]}
        with shake_load(users, 200, run_s, port + 100, name) as (_run, parts, summary, manifest):
            time.sleep(WARMUP)
            sides = {
                "echo": (client.pid, echo_parts, lambda: float(progress.read_text())),
                "shakes": (parts["worker"][0], parts, lambda: decided_so_far(manifest)),
            }
            os.kill(parts["worker"][0], signal.SIGSTOP)
            slices = []
            for i in range(pairs):
                order = ["echo", "shakes"] if i % 2 == 0 else ["shakes", "echo"]
                pair = {}
                for side in order:
                    pid, side_parts, count = sides[side]
                    os.kill(pid, signal.SIGCONT)
                    time.sleep(1)
                    n0, c0, t0 = count(), cpu_now(side_parts), time.monotonic()
                    time.sleep(slice_s)
                    n1, c1, t1 = count(), cpu_now(side_parts), time.monotonic()
                    os.kill(pid, signal.SIGSTOP)
                    pair[side] = {"per_s": (n1 - n0) / (t1 - t0), "split": rates(c0, c1, t1 - t0)}
                slices.append(pair)
        errors = sum(json.loads(summary.read_text())["errors_by_kind"].values())
    finally:
        if client is not None:
            os.kill(client.pid, signal.SIGCONT)
            client.terminate()
            client.wait()
        for s in servers:
            s.terminate()
            s.wait()
    return slices, errors


def mean_of(pairs, side):
    """One side's requests a second and CPU split by part, each the mean over the pairs
    (the slices are equally long)."""
    split = {part: tuple(statistics.fmean(p[side]["split"][part][i] for p in pairs)
                         for i in (0, 1))
             for part in pairs[0][side]["split"]}
    return statistics.fmean(p[side]["per_s"] for p in pairs), split


def one_round(a, k):
    port = a.port
    pairs, errors = paired(a.users, a.pairs, a.slice, port, f"pairs{k}")
    echo_rate, echo_split = mean_of(pairs, "echo")
    shake_rate, shake_split = mean_of(pairs, "shakes")
    echo_sat = {"requests_per_s": echo_rate, "split": echo_split}
    sat = {"decided_per_s": shake_rate, "split": shake_split, "errors": errors}
    ratios = [p["shakes"]["per_s"] / p["echo"]["per_s"] for p in pairs]

    def cpu_us(side, part):
        return sum(side["split"][part]) * 1e6 / max(1.0, side["per_s"])

    gen = [cpu_us(p["shakes"], "worker") / cpu_us(p["echo"], "client") for p in pairs]
    half_rate = statistics.median(p["shakes"]["per_s"] for p in pairs) / 2 / a.users
    half = shakes(a.users, round(half_rate, 3), a.seconds, port + 100, f"half{k}")
    echo_half = echo(a.users, half_rate, a.seconds, port)
    loose = shakes(a.users, round(half_rate, 3), a.seconds, port + 100, f"loose{k}",
                   durable=False)
    quic = {}
    if a.quic:
        q = shakes(a.users, 200, a.seconds, port + 100, f"quic{k}", "quic")
        quic = {
            "QUIC: decided shakes/s, saturated": q["decided_per_s"],
            "QUIC / TCP decided shakes/s": q["decided_per_s"] / sat["decided_per_s"],
            "QUIC: CPU us per decided shake": " ".join(
                f"{k} {v * 1e6 / max(1.0, q['decided_per_s']):.1f}" for k, v in q["cores"].items()),
            "QUIC: errors": f"{q['errors']}",
        }
    return quic | {
        "echo requests/s (mean of slices)": echo_sat["requests_per_s"],
        "decided shakes/s (mean of slices)": sat["decided_per_s"],
        "shakes / echo (median of pairs)": statistics.median(ratios),
        "shakes / echo, each pair": " ".join(f"{r:.3f}" for r in ratios),
        "gen / echo CPU per request, saturated (median)": statistics.median(gen),
        "gen / echo CPU per request, each pair": " ".join(f"{r:.3f}" for r in gen),
    } | budget(echo_sat, sat) | {
        "half: offered shakes/s": half_rate * a.users,
        "half: decided shakes/s": half["decided_per_s"],
        "half: shake p50 ms": half["p50_ms"],
        "half: shake p99 ms": half["p99_ms"],
        "half: shake p99.9 ms": half["p999_ms"],
        "half: send lag p99 ms": half["send_lag_p99_ms"],
        "half: wins, share of decided shakes %": 100 * half["won"]["count"] / max(
            1, half["won"]["count"] + half["not_won"]["count"]),
        "half: won shake p50 / p99 ms":
            f"{half['won']['p50_ms']:.3f} / {half['won']['p99_ms']:.3f}",
        "half: shake not won p99 ms": half["not_won"]["p99_ms"],
        "half: shake not won p99.9 ms": half["not_won"]["p999_ms"],
        "half: gen CPU us/request": half["cpu_us_per_request"],
        "half: echo CPU us/request": echo_half["cpu_us_per_request"],
        "half: gen / echo CPU per request":
            half["cpu_us_per_request"] / echo_half["cpu_us_per_request"],
        "half: echo p99 / p99.9 ms": f"{echo_half['p99_ms']:.2f} / {echo_half['p999_ms']:.2f}",
        "half, no fsync: decided shakes/s": loose["decided_per_s"],
        "half, no fsync: shake p99 ms": loose["p99_ms"],
        "half, no fsync: shake p99.9 ms": loose["p999_ms"],
        "half, no fsync: send lag p99 ms": loose["send_lag_p99_ms"],
        "half, no fsync: won shake p50 / p99 ms":
            f"{loose['won']['p50_ms']:.3f} / {loose['won']['p99_ms']:.3f}",
        "errors (sat, half, no fsync)": f"{sat['errors']}, {half['errors']}, {loose['errors']}",
    }


def budget(echo_sat, sat):
    """CPU per request of both saturated steps, split into user space and kernel, and the
    user space the shake path may spend per decided shake for its CPU per shake to be
    the echo's over 0.8."""
    echo_rate, shake_rate = echo_sat["requests_per_s"], max(1.0, sat["decided_per_s"])
    echo_cpu = sum(sum(v) for v in echo_sat["split"].values()) / echo_rate
    kernel = sum(v[1] for v in sat["split"].values()) / shake_rate
    user = sum(v[0] for v in sat["split"].values()) / shake_rate
    return {
        "CPU us per echo request, saturated": split_line(echo_sat["split"], echo_rate),
        "CPU us per decided shake, saturated": split_line(sat["split"], shake_rate),
        "echo CPU us per request, all parts": echo_cpu * 1e6,
        "shake CPU us per decided shake, kernel": kernel * 1e6,
        "shake CPU us per decided shake, user space": user * 1e6,
        "user-space budget for 0.8, us per shake": (echo_cpu / 0.8 - kernel) * 1e6,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=10,
                    help="measured seconds per step after the paired one")
    ap.add_argument("--pairs", type=int, default=6,
                    help="pairs of echo and shake slices, saturated")
    ap.add_argument("--slice", type=int, default=3, help="measured seconds per slice")
    ap.add_argument("--port", type=int, default=19000)
    ap.add_argument("--quic", action="store_true",
                    help="also the saturated shake path with every user over QUIC")
    a = ap.parse_args()
    if min(a.runs, a.users, a.seconds, a.pairs, a.slice) < 1:
        sys.exit("--runs, --users, --seconds, --pairs and --slice must each be at least 1")
    rounds = []
    for k in range(a.runs):
        r = one_round(a, k)
        rounds.append(r)
        print(f"run {k + 1} of {a.runs}:")
        for key, v in r.items():
            print(f"  {key:44} {v:.3f}" if isinstance(v, float) else f"  {key:44} {v}")
        sys.stdout.flush()
    print(f"\nover {a.runs} runs: min / median / max")
    for key, v in rounds[0].items():
        if not isinstance(v, float):
            continue
        vals = [r[key] for r in rounds]
        print(f"  {key:44} {min(vals):10.3f} {statistics.median(vals):10.3f} {max(vals):10.3f}")


if __name__ == "__main__":
    main()
