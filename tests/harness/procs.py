"""Host processes as the harness sees them: run a tool, ask /proc whether a pid still lives.

Liveness reads the state field of /proc/<pid>/stat because `kill -0` succeeds on zombies
(a process re-parented to a PID 1 that reaps slowly stays a zombie for seconds), and every
recorded pid carries its start time so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from subprocess import CompletedProcess


class HarnessError(Exception):
    """The test harness could not build or tear down what a test asked for."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30) -> CompletedProcess:
    """Run a host tool; a failure names the command and its last line of output."""
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise HarnessError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {last}")
    return done


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after its closing one
    return text[text.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Clock ticks since host boot at which pid started (None when it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def alive(pid: int | None, started: int | None = None) -> bool:
    """pid runs and is not a zombie (and, given `started`, is still the same process)."""
    if not pid:
        return False
    fields = _stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started


def signal_pid(pid: int | None, sig: int, started: int | None = None) -> None:
    """Send sig to pid if it is still the process we recorded; gone is fine."""
    if alive(pid, started):
        with contextlib.suppress(ProcessLookupError):  # exited since the check
            os.kill(pid, sig)  # type: ignore[arg-type]


def wait_gone(pids: Iterable[tuple[int | None, int | None]], timeout: float) -> bool:
    """Poll until none of the (pid, start time) pairs is alive; False on timeout."""
    pending = [(p, s) for p, s in pids if p]
    deadline = time.monotonic() + timeout
    while True:
        pending = [(p, s) for p, s in pending if alive(p, s)]
        if not pending or time.monotonic() >= deadline:
            return not pending
        time.sleep(0.02)


def children(pid: int) -> list[int]:
    """Direct children of pid (from /proc/<pid>/task/<pid>/children)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def parent(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def environ(pid: int) -> dict[str, str]:
    """The environment pid started with ({} when unreadable or gone)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def net_ns(pid: int | str) -> str | None:
    """The network namespace id of pid, e.g. 'net:[4026531840]' (None when unreadable)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        signal_pid(pid, signal.SIGKILL)
