"""Cold start of the cheap commands: `clave --help` and `clave sessions` (target < 150 ms).

Each run is a fresh process with its own empty CLAVE_HOME, so nothing is cached in-process
and `sessions` takes its "no database yet" path; one more line times `sessions` reading a
store of three sessions (opening SQLite, drawing the table). Prints median, min and max.
A benchmark prints figures; it asserts nothing.

    python bench/cold_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 150.0


def time_runs(argv: list[str], runs: int, seeded: bool = False) -> list[float]:
    """Wall time in ms of `runs` fresh processes; the first (cold disk cache) is discarded."""
    timings = []
    for _ in range(runs + 1):
        with tempfile.TemporaryDirectory(prefix="clave-bench-") as home:
            env = {**os.environ, "CLAVE_HOME": home,
                   "XDG_CONFIG_HOME": str(Path(home) / "config"),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                               os.environ.get("PYTHONPATH")]))}
            if seeded:
                subprocess.run([sys.executable, "-c", SEED], env=env, check=True)
            started = time.perf_counter()
            subprocess.run(argv, env=env, cwd=home, check=True, stdout=subprocess.DEVNULL)
            timings.append((time.perf_counter() - started) * 1000)
    return timings[1:]


SEED = """
from clave.store import Store
with Store.open() as store:
    for n in range(3):
        store.add(session_id=f"bench{n:03d}", project_name="shop", project_dir="/code/shop",
                  vm_name=f"clave-bench{n:03d}", tunnel_port=8081 + n, status="running")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per command (default 20)")
    runs = parser.parse_args().runs

    commands = {
        "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
        "python -m clave --help": [sys.executable, "-m", "clave", "--help"],
        "python -m clave sessions": [sys.executable, "-m", "clave", "sessions"],
    }
    script = shutil.which("clave")
    if script:
        commands[f"clave --help ({script})"] = [script, "--help"]
        commands["clave sessions"] = [script, "sessions"]

    print(f"{runs} runs each, fresh process and empty CLAVE_HOME per run; target < "
          f"{TARGET_MS:.0f} ms")
    print(f"{'command':<48} {'median':>8} {'min':>8} {'max':>8}")
    seeded = "python -m clave sessions (3 sessions)"
    commands[seeded] = [sys.executable, "-m", "clave", "sessions"]
    for name, argv in commands.items():
        timings = time_runs(argv, runs, seeded=name == seeded)
        print(f"{name:<48} {statistics.median(timings):>6.1f}ms {min(timings):>6.1f}ms "
              f"{max(timings):>6.1f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
