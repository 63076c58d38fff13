"""Pseudo-terminals for the UI tests: a program driven like a person at a keyboard, and a
tiny screen that applies the few escape sequences clave's UI emits, so a test can assert
what the user finally sees rather than the bytes that drew it."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import sys
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CPR_QUERY = b"\x1b[6n"
CPR_REPLY = b"\x1b[1;1R"          # what a real terminal answers to blessed's cursor query
ROWS, COLS = 24, 80


def set_size(fd: int, rows: int = ROWS, cols: int = COLS) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtyProgram:
    """`python -c code` whose stdin, stdout and stderr are a new pseudo-terminal.

    It is its session's leader with the pty as controlling terminal (os.forkpty), so a
    Ctrl-C byte sent here reaches it as SIGINT, as it would from a real keyboard.
    """

    def __init__(self, code: str, env: dict[str, str] | None = None):
        environ = {"PATH": os.environ.get("PATH", ""), "TERM": "xterm-256color",
                   "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                   "HOME": os.environ.get("HOME", "/tmp"), **(env or {})}
        pid, fd = os.forkpty()
        if pid == 0:                                   # the child: size the pty, then exec
            try:
                set_size(0)
                os.execve(sys.executable, [sys.executable, "-c", code], environ)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = b""
        self._mark = 0
        self.status: int | None = None

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Read until `pattern` appears in the output after the previous match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()[self._mark:]
            match = regex.search(text)
            if match:
                self._mark += match.end()
                return match
            if time.monotonic() > deadline or not self._read(deadline - time.monotonic()):
                raise AssertionError(f"{pattern!r} never appeared; output so far:\n{self.text()!r}")

    def wait(self, timeout: float = 20.0) -> int:
        """The exit status, after reading everything the program wrote."""
        deadline = time.monotonic() + timeout
        while self._read(max(deadline - time.monotonic(), 0)):
            pass
        while self.status is None and time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
            else:
                select.select([], [], [], 0.05)
        if self.status is None:
            self.kill()
            raise AssertionError(f"the program did not exit; output:\n{self.text()!r}")
        return self.status

    def kill(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.status = -9
        os.close(self.fd)

    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")

    def _read(self, timeout: float) -> bool:
        """One chunk (answering cursor queries on the way); False at end of output."""
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:                                # EIO: the child closed the pty
            return False
        if not chunk:
            return False
        for _ in range(chunk.count(CPR_QUERY)):
            self.send(CPR_REPLY)
        self.output += chunk
        return True


_CSI = re.compile(r"\x1b\[([0-9;?>]*)([A-Za-z])")
_OTHER_ESCAPES = re.compile(r"\x1bP.*?\x1b\\|\x1b[()][A-Z0-9]|\x1b[=>]", re.DOTALL)


class Screen:
    """Applies text, CR/LF, cursor-up (CUU), erase-below (ED) and erase-line (EL);
    ignores colours and queries. Enough to see what clave's UI leaves on screen."""

    def __init__(self) -> None:
        self.lines: list[str] = [""]
        self.row = self.col = 0

    def feed(self, text: str) -> Screen:
        text = _OTHER_ESCAPES.sub("", text)
        position = 0
        for match in _CSI.finditer(text):
            self._text(text[position:match.start()])
            self._control(match.group(1), match.group(2))
            position = match.end()
        self._text(text[position:])
        return self

    def visible(self) -> list[str]:
        lines = [line.rstrip() for line in self.lines]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def _text(self, text: str) -> None:
        for char in text:
            if char == "\n":
                self.row += 1
                self.col = 0
                while len(self.lines) <= self.row:
                    self.lines.append("")
            elif char == "\r":
                self.col = 0
            elif char >= " ":
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[:self.col] + char + line[self.col + 1:]
                self.col += 1

    def _control(self, params: str, command: str) -> None:
        if command == "A":
            self.row = max(0, self.row - int(params or 1))
        elif command == "J" and params in ("", "0"):
            self.lines[self.row] = self.lines[self.row][:self.col]
            del self.lines[self.row + 1:]
        elif command == "K" and params in ("", "0"):
            self.lines[self.row] = self.lines[self.row][:self.col]
