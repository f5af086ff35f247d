#!/usr/bin/env python3
"""Several hosts on this machine: a distributed run against one host's run.

Network namespaces on a bridge (scripts/hosts.sh; root) stand in for machines: the
system under test (`sut up --host`) in host 0, `loadgen coordinator` in host 1, one
`loadgen agent` in each of hosts 2 .. N+1. The same profile and seed then runs from one
host (`loadgen run` in host 2, as many workers as the agents had in all) against a fresh
system. Both systems are stopped and audited (`sut audit`). It prints, side by side:

- requests per operation and shake outcomes (what the stages and seed decide must be
  equal; opens, shares and grabs follow timing);
- latency percentiles, each from one merged histogram (never averaged);
- each agent's segment, clock offset, start against the common start and bytes sent;
- what the coordinator's merging cost: CPU per agent per second, and per report.

    bench/hosts.py [--agents 2] [--users 20000] [--hold 30] [--workers-per-agent 1]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
TOKEN = "bench hosts: a token shared by the coordinator and its agents"
TIMELINE = """
rounds:
  - { id: 1, start: 2s, duration: 30s, envelopes: 20000, rate: 1000, amount_cents: [1, 500], sponsors: [1, 2, 3, 4] }
"""


def profile(ip, data, users, hold):
    return f"""
target:
  addresses:
    gateways: [{ip}:7110, {ip}:7111]
    auth_key_file: {data}/auth.key
users: {users}
seed: 5
stages:
  - {{ duration: 10s, target: {users} }}
  - {{ duration: {hold}s, target: {users} }}
  - {{ duration: 3s, target: 0 }}
behaviour:
  shake_rate: 0.5
  open_probability: 0.8
  heartbeat_interval: 20s
  split: {{ share_probability: 0.5, friends: 3, grab_delay: 1s }}
"""


class Hosts:
    def __init__(self, n):
        self.prefix, self.n = f"bh{os.getpid() % 100000}", n
        self.subnet = f"10.232.{os.getpid() % 200 + 20}"
        subprocess.run(["sh", ROOT / "scripts/hosts.sh", "up", self.prefix, str(n), self.subnet],
                       check=True)

    def ip(self, i):
        return f"{self.subnet}.{i + 2}"

    def cmd(self, i, *args):
        return ["ip", "netns", "exec", f"{self.prefix}{i}", *map(str, args)]

    def down(self):
        subprocess.run(["sh", ROOT / "scripts/hosts.sh", "down", self.prefix, str(self.n)])


def start_system(hosts, work, name):
    data = work / name
    shutil.rmtree(data, ignore_errors=True)
    log = open(work / f"{name}.log", "w")
    p = subprocess.Popen(hosts.cmd(0, BIN / "sut", "up", "--gateways", 2, "--countdown", "1s",
                                   "--base-port", 7100, "--no-tiers", "--host", hosts.ip(0), "--data", data,
                                   "--timeline", work / "timeline.yaml"),
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    while not (data / "manifest.json").exists():
        if p.poll() is not None:
            sys.exit(f"sut up exited: see {work / (name + '.log')}")
        time.sleep(0.1)
    return p


def stop_and_audit(p, work, name):
    p.terminate()
    p.wait(timeout=120)
    out = subprocess.run([BIN / "sut", "audit", "--data", work / name], capture_output=True,
                         text=True)
    return "PASS" if out.returncode == 0 else "FAIL"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=2)
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--hold", type=int, default=30)
    ap.add_argument("--workers-per-agent", type=int, default=1)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/hosts.py makes network namespaces: run it as root")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "sut", "-p", "loadgen"],
                   cwd=ROOT, check=True)
    work = ROOT / "data" / "bench-hosts"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "timeline.yaml").write_text(TIMELINE)
    hosts = Hosts(a.agents + 2)
    env = dict(os.environ, LOADGEN_TOKEN=TOKEN)
    try:
        sut = start_system(hosts, work, "data-many")
        (work / "many.yaml").write_text(profile(hosts.ip(0), work / "data-many", a.users, a.hold))
        listen = f"{hosts.ip(1)}:7700"
        coord = subprocess.Popen(
            hosts.cmd(1, BIN / "loadgen", "coordinator", work / "many.yaml", "--agents", a.agents,
                      "--listen", listen, "--workers-per-agent", a.workers_per_agent, "--summary-json",
                      work / "many.json", "--report-dir", work / "many"),
            env=env, stdout=open(work / "coordinator.out", "w"),
            stderr=open(work / "coordinator.log", "w"))
        agents = [subprocess.Popen(hosts.cmd(2 + i, BIN / "loadgen", "agent", "--coordinator",
                                             listen, "--name", f"agent-{i}"),
                                   env=env, stdout=subprocess.DEVNULL,
                                   stderr=open(work / f"agent-{i}.log", "w"))
                  for i in range(a.agents)]
        many_ok = coord.wait() == 0
        for p in agents:
            p.wait(timeout=60)
        audit_many = stop_and_audit(sut, work, "data-many")

        sut = start_system(hosts, work, "data-one")
        (work / "one.yaml").write_text(profile(hosts.ip(0), work / "data-one", a.users, a.hold))
        one = subprocess.run(
            hosts.cmd(2, BIN / "loadgen", "run", work / "one.yaml", "--workers",
                      a.agents * a.workers_per_agent,
                      "--summary-json", work / "one.json", "--report-dir", work / "one"),
            stdout=open(work / "one.out", "w"), stderr=open(work / "one.log", "w"))
        audit_one = stop_and_audit(sut, work, "data-one")
    finally:
        hosts.down()

    m = json.loads((work / "many.json").read_text())
    s = json.loads((work / "one.json").read_text())
    print(f"{a.users} users, {a.agents} agents on their own hosts against one host "
          f"({time.strftime('%Y-%m-%d')})")
    print(f"runs passed: distributed {many_ok}, one host {one.returncode == 0}; "
          f"audits: distributed {audit_many}, one host {audit_one}")
    print(f"{'op':<10} {'requests (many / one)':>24} {'p50 ms':>15} {'p99 ms':>15} "
          f"{'p99.9 ms':>15}")
    for op in sorted(set(m["ops"]) | set(s["ops"])):
        mo, so = m["ops"].get(op, {}), s["ops"].get(op, {})
        if not mo.get("count") and not so.get("count"):
            continue
        same = "=" if mo.get("count") == so.get("count") else "≠"
        print(f"{op:<10} {mo.get('count', 0):>11} {same} {so.get('count', 0):<10} "
              + " ".join(f"{mo.get(k, 0):>7.2f}/{so.get(k, 0):<7.2f}"
                         for k in ("p50_ms", "p99_ms", "p999_ms")))
    print(f"shakes wanted: distributed {m['desired_shakes']}, one host {s['desired_shakes']} "
          f"(tiers off: the schedule's alone)")
    print(f"shake outcomes: distributed {m['shake_outcomes']}, one host {s['shake_outcomes']}")
    c = m["cluster"]
    for ag in c["agents"]:
        print(f"  {ag['name']}: segment {ag['segment']}, clock {ag['clock_offset_ms']:+} ms, "
              f"started {ag['started_after_ms']:+} ms, {ag['reports']} reports, "
              f"{ag['bytes'] / 1024:.0f} KiB, {ag['state']}")
    agent_s = c["seconds"] * len(c["agents"])
    reports = sum(ag["reports"] for ag in c["agents"])
    print(f"coordinator: {c['coordinator_cpu_s']:.2f} CPU-s over {c['seconds']:.0f} s = "
          f"{c['coordinator_cpu_s'] * 1000 / agent_s:.1f} ms of CPU per agent per second, "
          f"{c['coordinator_cpu_s'] * 1e6 / max(reports, 1):.0f} µs per report; "
          f"{sum(ag['bytes'] for ag in c['agents']) / 1024 / agent_s:.1f} KiB/s per agent; "
          f"{c['relayed_mail']} shares relayed between agents")


if __name__ == "__main__":
    main()
