"""Is the process that wrote a pid still that process? A pid alone is not enough: after a
reboot, or once pids wrap around, another program can hold the pid of a clave that died,
and its session would look attached forever.
"""

from __future__ import annotations

import os
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def started(pid: int) -> str | None:
    """An opaque stamp of when `pid` started (None: no such process, or unknowable).

    Linux: the boot's id and the start time in clock ticks from /proc. macOS: `ps`'s
    start time, to the second.
    """
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self").exists():
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            return f"{BOOT_ID.read_text().strip()}:{fields[19]}"
        except (OSError, IndexError):
            return None
    from clave.support.command import run

    result = run(["ps", "-o", "lstart=", "-p", str(pid)], check=False)
    stamp = " ".join(result.stdout.split()) if result.ok else ""
    return stamp or None


def describe(pid: int) -> tuple[str, str] | None:
    """(state, command line) of a process, or None when there is no such process."""
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        return stat[stat.rindex(")") + 2:].split()[0], args
    from clave.support.command import run  # macOS: no /proc

    result = run(["ps", "-o", "stat=,args=", "-p", str(pid)], check=False)
    if not result.ok or not result.stdout.strip():
        return None
    state, _, args = result.stdout.strip().partition(" ")
    return state, args


def alive(pid: int | None, stamp: str | None = None) -> bool:
    """`pid` runs, is no zombie, and (when `stamp` is known) is the process that started
    then."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    found = describe(pid)
    if found is not None and found[0].startswith(("Z", "X")):   # a zombie is dead to us
        return False
    return stamp is None or started(pid) == stamp
