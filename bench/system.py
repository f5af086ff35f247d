"""A system under test for the benchmark scripts: `sut up` on a data directory of its
own, waited for until its manifest is written, and stopped cleanly afterwards."""

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUT = ROOT / "target" / "release" / "sut"


@contextlib.contextmanager
def sut_up(data, gateways, base_port, *flags, timeline=None):
    """Yields (manifest, auth key) of a running `sut up --gateways N` on `timeline`
    (profiles/timeline.yaml by default), its show starting at once."""
    if not SUT.exists():
        sys.exit("build first: cargo build --release --workspace")
    args = [str(SUT), "up", "--gateways", str(gateways), "--data", str(data), "--timeline",
            str(timeline or ROOT / "profiles" / "timeline.yaml"), "--countdown", "0s", "--base-port",
            str(base_port), *flags]
    sut = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        manifest = Path(data) / "manifest.json"
        deadline = time.monotonic() + 60
        while not manifest.exists():
            if time.monotonic() > deadline or sut.poll() is not None:
                sys.exit("sut up did not start")
            time.sleep(0.05)
        yield json.loads(manifest.read_text()), (Path(data) / "auth.key").read_bytes()
    finally:
        sut.send_signal(signal.SIGTERM)
        sut.wait(timeout=120)
