"""SSH test helpers: a real OpenSSH server on 127.0.0.1 (no namespaces), a pty child.

`running_sshd()` creates a throwaway user (`clvssh-<pid>-<hex>`, random password), a host key
and a config in a temporary directory, starts `sshd -D` on a free port, and removes all of it
afterwards, session processes and the user included. Needs root and openssh-server; otherwise
the tests skip (under CLAVE_REQUIRE_VMS=1 they fail instead).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from tests.pty_process import PtyProcess

ROOT = Path(__file__).resolve().parents[3]
SSHD = "/usr/sbin/sshd"
USER_PREFIX = "clvssh-"
CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile none
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication no
AuthorizedKeysFile none
AllowUsers {user}
UseDNS no
MaxStartups 50
Subsystem sftp internal-sftp
AllowTcpForwarding yes
LogLevel VERBOSE
"""


def require_sshd() -> None:
    """Skip (or fail under CLAVE_REQUIRE_VMS=1) where a real sshd cannot run."""
    missing = [tool for tool in (SSHD, "/usr/bin/ssh-keygen", "/usr/sbin/useradd")
               if not os.access(tool, os.X_OK)]
    reason = None
    if os.geteuid() != 0:
        reason = "needs root to run a real sshd with a throwaway user"
    elif missing:
        reason = f"needs openssh-server (missing {', '.join(missing)})"
    if reason and os.environ.get("CLAVE_REQUIRE_VMS") == "1":
        pytest.fail(reason + " (CLAVE_REQUIRE_VMS=1)")
    if reason:
        pytest.skip(reason)


class Login(Protocol):
    host: str
    port: int
    user: str
    password: str


@dataclass
class LocalSshd:
    user: str
    password: str
    workdir: Path
    port: int = 0
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None
    _orphans: set[int] = field(default_factory=set)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def log(self) -> Path:
        return self.workdir / "sshd.log"

    def start(self, *, new_host_key: bool = False) -> None:
        """Start sshd (a fresh host key if asked) and wait until it accepts TCP connections."""
        key = self.workdir / "host_key"
        if new_host_key or not key.exists():
            key.unlink(missing_ok=True)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                           check=True, capture_output=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        for _attempt in range(5):
            self.port = self.port or free_port()
            config = self.workdir / "sshd_config"
            config.write_text(CONFIG.format(port=self.port, host_key=key, user=self.user))
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                             stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            if self._wait_listening():
                return
            self.proc.wait()
            self.port = 0  # another process took the port between probe and bind
        raise RuntimeError(f"sshd did not start: {self.log.read_text()[-2000:]}")

    def _wait_listening(self, timeout: float = 5) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(self.address, 0.2):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop the listening daemon only; open sessions live on, as with OpenSSH."""
        self._orphans |= self.session_pids()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def restart(self, *, new_host_key: bool = False) -> None:
        self.stop()
        self.start(new_host_key=new_host_key)

    def session_pids(self) -> set[int]:
        """sshd's per-connection processes and everything the user runs."""
        pids = set(self._orphans)
        if self.proc is not None:
            pids |= descendants(self.proc.pid)
        uid = pwd.getpwnam(self.user).pw_uid
        pids |= {pid for pid in all_pids() if owner(pid) == uid}
        return {pid for pid in pids if alive(pid)}

    def kill_all(self) -> None:
        """SIGKILL the daemon and every session: what a VM power-off does to TCP peers.

        The daemon goes first so no new session starts; then sweep until nothing is left, as
        a session's monitor may be forking its user process right now.
        """
        known = set(self._orphans)
        if self.proc is not None:
            known |= descendants(self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        for _sweep in range(50):
            targets = {pid for pid in known | self.session_pids() if alive(pid)}
            for pid in list(targets):
                targets |= descendants(pid)
            if not targets:
                break
            for pid in targets:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
            known |= targets
            time.sleep(0.02)
        self._orphans.clear()

    def freeze(self) -> None:
        """SIGSTOP every session process: a VM that stops answering without closing TCP."""
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)


CHILD = """
import json, os, signal, sys, termios
sys.path.insert(0, {root!r})
from clave.support.ssh import SshExecutor
def interrupted(signum, frame):  # what clave's signal handling does with SIGTERM
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, interrupted)
cfg = json.loads(os.environ["CLAVE_TEST_SSH"])
ex = SshExecutor(cfg["user"], cfg["port"]).set_host(cfg["host"]).use_password(cfg["password"])
before = termios.tcgetattr(0)
try:
    code = ex.interactive(cfg["command"], env=cfg.get("env"))
except KeyboardInterrupt:
    code = 130
after = termios.tcgetattr(0)
sys.stdout.write("\\r\\n[restored=%s code=%s error=%s]\\r\\n" % (before == after, code,
                                                                  ex.last_error()))
sys.stdout.flush()
sys.exit(code)
"""


class PtyChild(PtyProcess):
    """`SshExecutor.interactive(command)` in a child on a new pseudo-terminal."""

    def __init__(self, login: Login, command: str, env: dict | None = None, size=(24, 80)):
        cfg = {"host": login.host, "user": login.user, "port": login.port,
               "password": login.password, "command": command, "env": env}
        super().__init__(CHILD.format(root=str(ROOT)),
                         env={"CLAVE_TEST_SSH": json.dumps(cfg)}, size=size)

    def finish(self, timeout: float = 15) -> int:
        self.read_until(b"\x00never", timeout)
        return self.reap()


@contextlib.contextmanager
def running_sshd() -> Iterator[LocalSshd]:
    require_sshd()
    remove_stale_users()
    user = f"{USER_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    workdir = Path(tempfile.mkdtemp(prefix="clave-sshd-"))
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", user], check=True, capture_output=True)
    server = LocalSshd(user=user, password=password, workdir=workdir)
    try:
        subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True,
                       capture_output=True)
        server.start()
        yield server
    finally:
        server.kill_all()
        delete_user(user)
        shutil.rmtree(workdir, ignore_errors=True)


def delete_user(user: str) -> None:
    subprocess.run(["userdel", "-r", "-f", user], capture_output=True)


def remove_stale_users() -> None:
    """Users left by a test run that was SIGKILLed (their creator's pid is gone)."""
    for entry in pwd.getpwall():
        match = re.fullmatch(re.escape(USER_PREFIX) + r"(\d+)-[0-9a-f]+", entry.pw_name)
        if match and not alive(int(match.group(1))):
            for pid in all_pids():
                if owner(pid) == entry.pw_uid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            delete_user(entry.pw_name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def alive(pid: int) -> bool:
    """Running and not a zombie (kill -0 succeeds on zombies)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        fields = stat_fields(pid)
        if fields:
            children.setdefault(int(fields[1]), []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout` passes (a bound, not an assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A 127.0.0.1 port that silently drops new connections, like an address nobody answers.

    A listener with a full accept queue: Linux drops further SYNs, so `connect()` hangs
    until the client's own timeout, exactly as for a powered-off host.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)
    try:
        yield port
    finally:
        filler.close()
        listener.close()
