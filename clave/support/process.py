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
    return " ".join(result.stdout.split()) or None if result.ok else None


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
    try:   # a zombie is dead for our purposes
        if Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1][:1] == "Z":
            return False
    except OSError:
        pass
    return stamp is None or started(pid) == stamp
