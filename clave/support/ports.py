"""Local ports for session tunnels: free now, and promised to one clave process.

Binding a probe socket only says a port is free this instant; two clave processes probing
together would both pick it. So each candidate also gets an flock on its own file under
CLAVE_HOME/ports, held for the whole `with` block: the caller starts the tunnel (which
binds the port) inside the block, and by the time the lock is released the port is
visibly in use.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clave.errors import ClaveError
from clave.home import Home

FIRST_PORT = 8081
LAST_PORT = 8199


@contextmanager
def allocate_port(
    lo: int = FIRST_PORT, hi: int = LAST_PORT, *, lock_dir: Path | None = None
) -> Iterator[int]:
    """Yield a port in lo..hi that nothing is bound to and no other clave holds."""
    directory = lock_dir if lock_dir is not None else Home.from_env().root / "ports"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    held = in_use = 0
    for port in range(lo, hi + 1):
        fd = _try_lock(directory / f"{port}.lock")
        if fd is None:
            held += 1
            continue
        try:
            if port_in_use(port):
                in_use += 1
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield port
            return
        finally:
            os.close(fd)  # closing the descriptor releases the flock
    raise ClaveError(
        f"no free port in {lo}–{hi}: {in_use} in use by other programs, {held} held by "
        "other clave sessions; end a session (`clave sessions`) or free a port, then retry."
    )


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when binding host:port fails (a listener, or a socket lingering in TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive flock on path, or None when someone has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd
