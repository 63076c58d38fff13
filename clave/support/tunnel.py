"""One detached SSH forwarder process per session: local (-L) and reverse (-R) forwards.

`start_forwarder()` runs `python -m clave.support.tunnel` in its own session (Ctrl-C in the
user's terminal never reaches it), hands it the password and the forwards as JSON on stdin
(never argv or environment), and returns its pid once every listener is up. The forwarder
exits by itself when the SSH connection dies (the VM went away) and on SIGTERM; its listeners
use SO_REUSEADDR and are closed on exit, so the next session can bind the same port at once.
The caller writes the pid to the journal; `stop_forwarder()` / `clave cleanup` end it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from clave.errors import ClaveError
from clave.support import process

if TYPE_CHECKING:
    import paramiko

MODULE = "clave.support.tunnel"
KEEPALIVE_INTERVAL, DEAD_AFTER = 10.0, 30.0
CHANNEL_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
Forward = tuple[int, str, int]  # (listen port on 127.0.0.1, destination host, destination port)
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "PYTHONPATH")
log = logging.getLogger(MODULE)
_children: dict[int, subprocess.Popen] = {}  # forwarders this process started, to reap them


class ForwarderLaunch:
    """A forwarder process started ahead of time.

    It imports paramiko while the VM boots, then waits on stdin for its orders, so opening
    the tunnel once SSH answers costs only the connection. Closing stdin unheard (clave
    died, or `cancel()`) makes it exit.
    """

    def __init__(self, log_path: Path):
        self.log_path = log_path
        ready_r, ready_w = os.pipe()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", MODULE],
                stdin=subprocess.PIPE, stdout=log_fd, stderr=log_fd,
                pass_fds=(ready_w,), start_new_session=True, env=_child_env(), cwd="/",
            )
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
            os.close(log_fd)
        self.ready_fd, self.ready_r = ready_w, ready_r
        self.host: str | None = None
        self.host_key: str | None = None
        _children[self.proc.pid] = self.proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ordered(self) -> bool:
        return self.proc.stdin is None or self.proc.stdin.closed

    def order(
        self,
        *,
        host: str,
        user: str,
        password: str,
        port: int = 22,
        host_key: str | None,
        local: list[Forward],
        remote: list[Forward],
        wait: float = 0,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        dead_after: float = DEAD_AFTER,
    ) -> None:
        """Hand over the orders and return at once: it connects while clave goes on.

        `local`: host 127.0.0.1:port -> (dest host, port) as seen from the VM.
        `remote`: VM 127.0.0.1:port -> (host address, port) on this machine.
        `host_key`: the session's pinned fingerprint (None: accept the first key; `ready()`
        tells which). `wait`: seconds to wait for sshd to accept a login (a booting VM).
        """
        config = {
            "host": host, "user": user, "password": password, "port": port,
            "host_key": host_key, "local": [list(f) for f in local],
            "remote": [list(f) for f in remote], "ready_fd": self.ready_fd,
            "connect_timeout": CONNECT_TIMEOUT, "wait": wait,
            "keepalive_interval": keepalive_interval, "dead_after": dead_after,
        }
        self.host = host
        with contextlib.suppress(BrokenPipeError, ValueError), self.proc.stdin:
            self.proc.stdin.write(json.dumps(config).encode())   # died: ready() says so

    def ready(self, timeout: float = 15) -> int:
        """The pid once every listener is up; `host_key` is then the key it saw.

        Raises ClaveError with the forwarder's own sentence when it cannot start.
        """
        try:
            message = _read_ready(self.ready_r, timeout)
        finally:
            self._close_ready()
        if message is not None and message.get("ok"):
            self.host_key = message.get("host_key")
            return self.pid
        died = self.proc.poll() is not None
        stop_forwarder(self.pid, timeout=2)
        if message is not None and message.get("error"):
            raise ClaveError(message["error"])
        what = "stopped at start" if died else f"was not ready within {timeout:g} s"
        raise ClaveError(f"the SSH forwarder to {self.host} {what} (log: {self.log_path}): "
                         f"{_last_line(self.log_path) or 'no output'}")

    def start(self, *, ready_timeout: float = 15, **orders) -> int:
        """`order()`, then `ready()`."""
        self.order(**orders)
        return self.ready(ready_timeout)

    def cancel(self) -> None:
        """Never mind: the forwarder exits (idempotent)."""
        self._close_ready()
        stop_forwarder(self.pid, timeout=2)

    def _close_ready(self) -> None:
        if self.ready_r is not None:
            os.close(self.ready_r)
            self.ready_r = None


def start_forwarder(*, log_path: Path, **orders) -> int:
    """Launch a forwarder and start it at once (see ForwarderLaunch.order for the orders)."""
    return ForwarderLaunch(log_path).start(**orders)


def hasten_forwarder(pid: int) -> None:
    """SIGTERM without waiting: stop_forwarder() later finds it gone, or nearly."""
    if forwarder_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def stop_forwarder(pid: int, timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL after `timeout`. Idempotent; only ever signals our forwarder."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        if not forwarder_alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not forwarder_alive(pid):
                return
            time.sleep(0.02)
    if forwarder_alive(pid):
        raise ClaveError(f"the SSH forwarder (pid {pid}) did not stop, even after SIGKILL.")


def forwarder_alive(pid: int) -> bool:
    """True while `pid` is a running (not zombie) clave forwarder, not some reused pid."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:  # ours and exited: reaped, not a zombie
        del _children[pid]
        return False
    found = process.describe(pid)
    if found is None:
        return False
    state, args = found
    return not state.startswith(("Z", "X")) and MODULE in args


# -- the forwarder process -------------------------------------------------------------------


def main() -> int:
    """Entry point of `python -m clave.support.tunnel`: config JSON arrives on stdin."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format=f"%(asctime)s tunnel[{os.getpid()}] %(message)s")
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    import paramiko  # noqa: F401  (warm up while the launcher waits for the VM)

    orders = sys.stdin.read()
    sys.stdin.close()
    if not orders:
        return 0   # launched ahead of time, then cancelled (or its clave died)
    config = json.loads(orders)
    ready = os.fdopen(config["ready_fd"], "w")
    stop, serving = threading.Event(), threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()
        if not serving.is_set():
            raise _Stopped   # still waiting for sshd: no use waiting any longer

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    forwarder = Forwarder(config)
    try:
        forwarder.start()
    except ClaveError as err:
        log.info("not started: %s", err)
        _report(ready, {"error": err.message})
        forwarder.close()
        return 1
    except _Stopped:
        log.info("asked to stop before the tunnel was up")
        forwarder.close()
        return 0
    serving.set()
    _report(ready, {"ok": True, "host_key": forwarder.host_key})
    reason = forwarder.serve(stop)
    log.info("exiting: %s", reason)
    forwarder.close()
    return 0


class _Stopped(Exception):
    """A signal arrived before the forwarder served."""


class Forwarder:
    """The listeners and the SSH transport of one session's forwarder."""

    def __init__(self, config: dict):
        self.config = config
        self.where = f"{config['user']}@{config['host']}"
        self.local = [tuple(f) for f in config["local"]]
        self.remote = {f[0]: (f[1], f[2]) for f in config["remote"]}
        self.listeners: list[socket.socket] = []
        self.transport: paramiko.Transport | None = None
        self.host_key: str | None = None

    def start(self) -> None:
        for port, dest_host, dest_port in self.local:  # bind first: the cheapest failure
            self.listeners.append(_listen(port))
            log.info("listening on 127.0.0.1:%s -> %s:%s in the VM", port, dest_host, dest_port)
        self._connect()
        for vm_port, (dest_host, dest_port) in self.remote.items():
            try:
                self.transport.request_port_forward("127.0.0.1", vm_port, handler=self._incoming)
            except Exception as err:
                raise ClaveError(
                    f"the VM ({self.config['host']}) refused to listen on 127.0.0.1:{vm_port} "
                    f"for the forward to {dest_host}:{dest_port} (is the port taken?): {err}"
                ) from err
            log.info("VM 127.0.0.1:%s -> %s:%s on this machine", vm_port, dest_host, dest_port)
        for listener, forward in zip(self.listeners, self.local, strict=True):
            threading.Thread(target=self._accept, args=(listener, forward), daemon=True).start()

    def _connect(self) -> None:
        from clave.support.ssh import SshExecutor

        ssh = SshExecutor(self.config["user"], self.config["port"], self.config["connect_timeout"])
        ssh.set_host(self.config["host"]).use_password(self.config["password"])
        if self.config.get("host_key"):
            ssh.pin_host_key(self.config["host_key"])
        if self.config.get("wait"):             # ordered while the VM boots
            log.info("waiting up to %ss for %s to accept a login", self.config["wait"],
                     self.where)
            ssh.wait_ready(self.config["wait"])
        self.transport = ssh.transport()
        self.host_key = ssh.host_key_fingerprint
        log.info("connected to %s:%s (host key %s)", self.where, self.config["port"],
                 self.host_key)

    def serve(self, stop: threading.Event) -> str:
        """Block until SIGTERM or the connection dies; returns why."""
        from clave.support.ssh import Heartbeat

        heartbeat = Heartbeat(self.transport, self.config["keepalive_interval"],
                              self.config["dead_after"])
        tick = min(0.5, self.config["keepalive_interval"] / 2)
        while not stop.wait(tick):
            if not self.transport.is_active():
                return f"the SSH connection to {self.where} closed"
            if heartbeat.dead():
                return f"{self.where} stopped answering"
        return "asked to stop"

    def close(self) -> None:
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                listener.close()
        if self.transport is not None:
            self.transport.close()

    def _accept(self, listener: socket.socket, forward: Forward) -> None:
        _, dest_host, dest_port = forward
        while True:
            try:
                client, peer = listener.accept()
            except OSError:
                return  # closed on exit
            threading.Thread(target=self._outgoing, args=(client, peer, dest_host, dest_port),
                             daemon=True).start()

    def _outgoing(self, client: socket.socket, peer: tuple, dest_host: str, dest_port: int) -> None:
        try:
            chan = self.transport.open_channel("direct-tcpip", (dest_host, dest_port), peer,
                                               timeout=CHANNEL_TIMEOUT)
        except Exception as err:
            log.info("cannot open %s:%s in the VM: %s", dest_host, dest_port, err)
            client.close()
            return
        _pump(client, chan)

    def _incoming(self, chan: paramiko.Channel, origin: tuple, server: tuple) -> None:
        """paramiko calls this on its transport thread: hand off at once."""
        threading.Thread(target=self._reverse, args=(chan, server[1]), daemon=True).start()

    def _reverse(self, chan: paramiko.Channel, vm_port: int) -> None:
        dest = self.remote.get(vm_port)
        if dest is None:
            chan.close()
            return
        try:
            sock = socket.create_connection(dest, timeout=CHANNEL_TIMEOUT)
            sock.settimeout(None)
        except OSError as err:
            log.info("a VM connection to 127.0.0.1:%s could not reach %s:%s: %s",
                     vm_port, *dest, err)
            chan.close()
            return
        _pump(sock, chan)


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebind at once after a kill
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as err:
        sock.close()
        raise ClaveError(f"cannot listen on 127.0.0.1:{port}: {err.strerror or err}; "
                         "another program is using that port.") from err
    sock.listen(64)
    return sock


def _pump(sock: socket.socket, chan: paramiko.Channel) -> None:
    """Copy bytes both ways until both directions ended; half-closes are passed on."""
    open_ends = {sock, chan}
    try:
        while open_ends:
            ready, _, _ = select.select(list(open_ends), [], [], 60)
            if sock in ready:
                data = sock.recv(65536)
                if data:
                    chan.sendall(data)
                else:
                    chan.shutdown_write()
                    open_ends.discard(sock)
            if chan in ready:
                data = chan.recv(65536)
                if data:
                    sock.sendall(data)
                else:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                    open_ends.discard(chan)
            if chan.closed:
                break
    except OSError:
        pass  # the other side reset; both ends are closed below
    finally:
        chan.close()
        sock.close()


def _report(ready, message: dict) -> None:
    with contextlib.suppress(OSError), ready:
        ready.write(json.dumps(message) + "\n")


def _read_ready(fd: int, timeout: float) -> dict | None:
    """The forwarder's one-line readiness report, or None if it died or took too long."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        data += chunk
    try:
        return json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        return None


def _child_env() -> dict[str, str]:
    """A minimal environment (no tokens of the user's); clave importable from a checkout."""
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else ""
    return ""


if __name__ == "__main__":
    sys.exit(main())
