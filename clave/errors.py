"""Every sentence clave says when it stops, and the exit code that goes with it.

`cli.main()` catches `ClaveError` once, prints its message to stderr and exits with
`exit_code`. Subclasses stay tiny: a name, an exit code, sometimes a message builder.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clave.support.command import Result

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_AVAILABLE = 3
EXIT_INTERRUPTED = 130


class ClaveError(Exception):
    """One clear sentence for the user; `exit_code` is what the process returns."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ClaveError):
    """Bad flags, environment or input: refused before anything is created."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """An invalid settings file or value (names the file, the JSON path and the fix)."""


class NotAvailable(ClaveError):
    """A command whose machinery is not built (or not installed) here."""

    exit_code = EXIT_NOT_AVAILABLE


class ToolMissing(ClaveError):
    """An outside program (tart, herd, git, claude) is not installed."""

    def __init__(self, tool: str, fix: str):
        super().__init__(f"`{tool}` was not found: {fix}")
        self.tool = tool


class CommandFailed(ClaveError):
    """An outside program exited non-zero; carries its Result (argv, exit code, output)."""

    def __init__(self, result: Result, message: str | None = None):
        self.result = result
        tool = " ".join([os.path.basename(result.argv[0]), *result.argv[1:2]])
        detail = message or result.last_line() or "no output"
        super().__init__(f"`{tool}` failed (exit {result.exited}): {detail}")


class HostKeyChanged(ClaveError):
    """The VM answered with a different SSH host key than earlier in the same session."""


class StepFailed(ClaveError):
    """A pipeline step failed without raising a ClaveError of its own."""


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: doit and clave treat all three like Ctrl-C."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
