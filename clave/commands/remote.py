"""`clave ssh ID` and `clave exec ID -- CMD...`: into a running session's VM, in /srv/project."""

from __future__ import annotations

import shlex
import sys

from clave.errors import ClaveError, UsageError
from clave.home import Home

PROJECT_DIR = "/srv/project"


def _connect(session_id: str, settings, home: Home):
    from clave.store import Store
    from clave.tasks.catalog import ssh_executor

    if not home.db.exists():
        raise UsageError(f"no session {session_id!r}: `clave sessions` lists the running ones.")
    store = Store.open(home)
    try:
        record = store.get(session_id)
    finally:
        store.close()
    if record is None:
        raise UsageError(f"no session {session_id!r}: `clave sessions` lists the running ones.")
    if not record.vm_ip:
        raise ClaveError(f"session {session_id} has no VM address yet; wait for it to boot.")
    ssh = ssh_executor(settings).set_host(record.vm_ip)
    if record.host_key:
        ssh.pin_host_key(record.host_key)
    return ssh


def _on_terminal(ssh, line: str) -> int:
    """Run `line` on a PTY wired to this terminal; a dropped connection is said, not silent."""
    from clave.engine import foreground_child

    with foreground_child():
        code = ssh.interactive(line)
    if ssh.last_error():    # set only when the connection died (exit 255, as with OpenSSH)
        print(f"clave: {ssh.last_error()}", file=sys.stderr)
    return code


def shell(*, session_id: str, settings, home: Home) -> int:
    ssh = _connect(session_id, settings, home)
    try:
        return _on_terminal(ssh, f"cd {PROJECT_DIR} && exec \"$SHELL\" -l")
    finally:
        ssh.close()


def execute(*, session_id: str, command: list[str], settings, home: Home) -> int:
    if not command:
        raise UsageError("clave exec: give a command after `--`, e.g. "
                         "`clave exec ID -- php artisan test`.")
    ssh = _connect(session_id, settings, home)
    try:
        line = f"cd {PROJECT_DIR} && {shlex.join(command)}"
        if sys.stdin.isatty() and sys.stdout.isatty():
            return _on_terminal(ssh, line)
        sys.stdout.flush()
        code = ssh.stream(line, _stdin_fd(), sys.stdout.buffer, sys.stderr.buffer)
        if ssh.last_error():
            print(f"clave: {ssh.last_error()}", file=sys.stderr)
        return code
    finally:
        ssh.close()


def _stdin_fd() -> int | None:
    """This process's stdin as an fd to pass on, or None when there is none to read."""
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):   # closed, or a test's stand-in object
        return None
