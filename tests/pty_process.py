"""A Python child on a new pseudo-terminal, as if started in a user's terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time


class PtyProcess:
    def __init__(self, script: str, env: dict[str, str] | None = None,
                 size: tuple[int, int] = (24, 80)):
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # the child: exec at once (the parent may have threads)
            os.environ.update(env or {})
            os.environ["TERM"] = "xterm-test"
            os.execv(sys.executable, [sys.executable, "-c", script])
        self.resize(*size)
        self.output = b""
        self.code: int | None = None    # set once the child is reaped

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def read_until(self, marker: bytes, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.output and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                self.output += chunk
        return self.output

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def reap(self, timeout: float = 5) -> int:
        """The child's exit code; one that will not exit is killed and the test fails."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.master)
                self.code = os.waitstatus_to_exitcode(status)
                return self.code
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"the child did not exit; output: {self.output!r}")

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        os.close(self.master)
        self.code = os.waitstatus_to_exitcode(status)
