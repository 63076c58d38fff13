"""The one way clave runs a host program: an argv list in, a frozen Result out."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from clave.errors import CommandFailed, ToolMissing


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    exited: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exited == 0

    def tail(self, lines: int = 10) -> str:
        """The last lines of output (stderr after stdout), for error messages."""
        text = "\n".join(part for part in (self.stdout.rstrip(), self.stderr.rstrip()) if part)
        return "\n".join(text.splitlines()[-lines:])

    def last_line(self) -> str:
        for text in (self.stderr, self.stdout):
            lines = [line for line in text.strip().splitlines() if line.strip()]
            if lines:
                return lines[-1].strip()
        return ""


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    timeout: float | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    missing_fix: str = "install it and make sure it is on PATH.",
) -> Result:
    """Run argv (never through a shell), capture its output, raise CommandFailed on non-zero.

    `check=False` returns the failed Result instead, for exits the caller expects.
    """
    args = tuple(os.fspath(a) for a in argv)
    try:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError as err:
        if cwd is not None and not Path(cwd).is_dir():
            raise
        raise ToolMissing(args[0], missing_fix) from err
    except subprocess.TimeoutExpired as err:
        result = Result(args, -1, _text(err.stdout), _text(err.stderr))
        raise CommandFailed(result, f"timed out after {timeout:g} s") from err
    result = Result(args, done.returncode, done.stdout, done.stderr)
    if check and not result.ok:
        raise CommandFailed(result)
    return result


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
