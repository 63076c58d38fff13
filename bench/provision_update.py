"""`clave provision --update` with nothing stale (target < 1 s, no VM booted).

The world: the fake tart (tests/fakes/tart) first on PATH with its own TART_HOME, a stopped
base VM `clave-base` made by `tart create --linux`, and the host's provisioning record
($CLAVE_HOME/provision-state.json) written by the same code a finished build uses, for the
built-in fragments. Each run is a fresh `python -m clave provision --update` process; the
first is discarded (cold disk cache). Prints median, min and max wall time, and what tart
was asked (a `run` or `clone` would mean a VM was booted). Asserts nothing.

    python bench/provision_update.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKES = ROOT / "tests" / "fakes"
TARGET_MS = 1000.0

SEED = """
from pathlib import Path
from clave import config
from clave.home import Home
from clave.tasks import catalog

project = Path.cwd()
catalog.image_build(config.load(project), Home.from_env().ensure(), project).save_state()
"""


def world(root: Path) -> tuple[dict[str, str], Path]:
    """The environment and project directory of a provisioned machine, nothing booted."""
    project = root / "project"
    project.mkdir()
    env = {**os.environ,
           "PATH": f"{FAKES}{os.pathsep}{os.environ.get('PATH', '')}",
           "TART_HOME": str(root / "tart"), "FAKE_TART_LOG": str(root / "tart-calls.jsonl"),
           "CLAVE_HOME": str(root / "clave-home"), "XDG_CONFIG_HOME": str(root / "config"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    for knob in ("CLAVE_FAKEVM", "CLAVE_PROVISION_DIR", "FAKE_TART_LATENCY", "FAKE_TART_FAIL"):
        env.pop(knob, None)
    subprocess.run(["tart", "create", "clave-base", "--linux"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-c", SEED], env=env, cwd=project, check=True)
    return env, project


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    runs = parser.parse_args().runs

    with tempfile.TemporaryDirectory(prefix="clave-bench-") as tmp:
        env, project = world(Path(tmp))
        log = Path(env["FAKE_TART_LOG"])
        log.unlink(missing_ok=True)
        timings, last = [], None
        for _ in range(runs + 1):
            started = time.perf_counter()
            last = subprocess.run([sys.executable, "-m", "clave", "provision", "--update"],
                                  env=env, cwd=project, capture_output=True, text=True)
            timings.append((time.perf_counter() - started) * 1000)
        timings = timings[1:]
        calls = [json.loads(line)["argv"] for line in log.read_text().splitlines()]

    verbs = Counter(argv[0] for argv in calls)
    booted = verbs["run"] + verbs["clone"]
    print(f"clave provision --update, nothing stale: {runs} runs (fresh process each); "
          f"target < {TARGET_MS:.0f} ms with no VM booted")
    print(f"  median {statistics.median(timings):.0f} ms   min {min(timings):.0f} ms   "
          f"max {max(timings):.0f} ms")
    per_run = ", ".join(f"{verb} x{count / (runs + 1):g}" for verb, count in sorted(verbs.items()))
    print(f"  tart calls per run: {per_run or 'none'}; VMs booted or cloned: {booted}")
    print(f"  exit {last.returncode}: {(last.stdout + last.stderr).strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
