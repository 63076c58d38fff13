"""SSH into a session's VM: commands, an interactive PTY and file uploads, over paramiko.

paramiko rather than OpenSSH so the password lives only in this process's memory (never in an
argv or environment), and so the VM's host key can be pinned for one session without touching
~/.ssh/known_hosts (every VM is new, so there is nothing to check it against).

Every foreign exception (paramiko's, socket's) is translated here into one ClaveError sentence.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import select
import shlex
import signal
import socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, BinaryIO

from clave.errors import ClaveError, CommandFailed, HostKeyChanged
from clave.support.command import Result

if TYPE_CHECKING:
    import paramiko

DEFAULT_TERM = "xterm-256color"
BACKOFF_START, BACKOFF_MAX = 0.2, 2.0
PORT_PROBE_TIMEOUT, PORT_POLL_INTERVAL = 1.0, 0.05   # before sshd listens
HEARTBEAT_INTERVAL, HEARTBEAT_GRACE = 10.0, 20.0
RUN_MARKER = "CLAVE_RUN"  # environment variable tagging the processes of one run()
EXIT_CONNECTION_LOST = 255  # what OpenSSH's `ssh` returns when the connection drops
EXIT_BROKEN_PIPE = 141      # 128 + SIGPIPE: what a shell reports for a writer whose reader left
RELAY_TICK = 1.0            # seconds between looks at a quiet streamed command
RELAY_RETRY = 0.01          # seconds before retrying input the channel's window refused
STATUS_WAIT = 5.0           # seconds for the exit status once the output has ended
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.ECONNRESET: "connection reset",
}


def quote(value: str) -> str:
    """Quote one word for a remote POSIX shell; every string entering a remote shell goes here."""
    return shlex.quote(value)


def preload() -> None:
    """Import paramiko on a daemon thread: about 0.1 s of CPU the first connection would
    otherwise wait for, hidden behind the preflight and the VM's boot."""
    import importlib

    threading.Thread(target=importlib.import_module, args=("paramiko",), daemon=True,
                     name="preload-paramiko").start()


class SshExecutor:
    """One SSH connection to a VM, opened on first use and reopened when it drops.

    Usable as a context manager; `close()` is idempotent.
    """

    def __init__(self, user: str = "admin", port: int = 22, connect_timeout: float = 5.0):
        self.user, self.port, self.connect_timeout = user, port, connect_timeout
        self.host: str | None = None
        self._password: str | None = None
        self._pinned: str | None = None
        self._last_error: str | None = None
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:  # never shows the password
        return f"SshExecutor({self.user}@{self.host}:{self.port})"

    def __enter__(self) -> SshExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration -------------------------------------------------------------------

    def set_host(self, host: str) -> SshExecutor:
        if host != self.host:
            self.close()
        self.host = host
        return self

    def use_password(self, password: str) -> SshExecutor:
        """Held in memory only: never written to an argv, environment or file."""
        self._password = password
        return self

    @property
    def host_key_fingerprint(self) -> str | None:
        """The SHA256 fingerprint pinned at this session's first successful connection."""
        return self._pinned

    @host_key_fingerprint.setter
    def host_key_fingerprint(self, fingerprint: str | None) -> None:
        self._pinned = fingerprint

    def pin_host_key(self, fingerprint: str) -> SshExecutor:
        """Accept only this key: how a later process of the same session keeps the pin."""
        self._pinned = fingerprint
        return self

    def last_error(self) -> str | None:
        return self._last_error

    # -- connection ----------------------------------------------------------------------

    def transport(self, timeout: float | None = None) -> paramiko.Transport:
        """The live paramiko Transport, connecting (and pinning the host key) if needed."""
        with self._lock:
            if self._client is not None:
                current = self._client.get_transport()
                if current is not None and current.is_active():
                    return current
                self.close()
            return self._open(timeout or self.connect_timeout)

    def _open(self, timeout: float) -> paramiko.Transport:
        import paramiko

        _quiet_paramiko()
        host = self._require_host()
        seen: list[str] = []
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_PinPolicy(host, self._pinned, seen))
        sock = None
        try:
            sock = socket.create_connection((host, self.port), timeout=timeout)
            # SSH's small messages must not wait on Nagle for the VM's delayed ACK: 40 ms
            # per command and per handshake step otherwise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.connect(
                host, self.port, username=self.user, password=self._password,
                timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                allow_agent=False, look_for_keys=False, sock=sock,
            )
        except Exception as err:
            client.close()
            if sock is not None:
                sock.close()
            raise self._translate(err, timeout) from err
        self._pinned = self._pinned or seen[0]
        self._client = client
        return client.get_transport()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def test(self) -> bool:
        """Connect and run `true`; never raises, records `last_error()`."""
        try:
            return self._probe(self.connect_timeout)
        except ClaveError as err:
            self._last_error = err.message
            return False

    def wait_ready(self, timeout: float = 90) -> None:
        """Poll until the VM accepts a login (backoff 0.2 s doubling to 2 s).

        A changed host key stops at once; anything else (refused, wrong password while PAM's
        boot-time nologin is in place) is retried until the deadline.
        """
        deadline = time.monotonic() + timeout
        delay = BACKOFF_START
        while True:
            remaining = deadline - time.monotonic()
            if remaining > 0 and not self._port_open(min(PORT_PROBE_TIMEOUT, remaining)):
                # sshd is not listening yet: a TCP connect is cheap, so look again soon
                self._last_error = f"nothing listens on {self.host}:{self.port} yet"
                time.sleep(min(PORT_POLL_INTERVAL, remaining))
                continue
            try:
                self.transport(max(0.5, min(self.connect_timeout, remaining)))
                self._last_error = None
                return
            except HostKeyChanged:
                raise
            except ClaveError as err:
                self._last_error = err.message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClaveError(
                    f"{self.user}@{self.host} did not accept SSH logins within {timeout:g} s "
                    f"(last error: {self._last_error or 'none'})."
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, BACKOFF_MAX)

    def _port_open(self, timeout: float) -> bool:
        try:
            with socket.create_connection((self._require_host(), self.port), timeout=timeout):
                return True
        except OSError:
            return False

    def _probe(self, timeout: float) -> bool:
        self.transport(timeout)
        result = self.run("true", timeout=max(timeout, 5))
        if not result.ok:
            self._last_error = f"`true` exited {result.exited} on {self.host}: {result.last_line()}"
            return False
        self._last_error = None
        return True

    # -- commands ------------------------------------------------------------------------

    def run(
        self,
        command: str,
        timeout: float = 60,
        *,
        check: bool = False,
        env: Mapping[str, str] | None = None,
        input: str | bytes | None = None,
    ) -> Result:
        """Run one shell command; its exit code and output come back as a Result.

        `env` reaches the command through a 0600 file that the command sources and deletes
        (sshd drops variables it was not told to accept, and argv would expose secrets).
        On timeout the remote command and what it started are killed, as far as possible.
        """
        transport = self.transport()
        argv = ("ssh", f"{self.user}@{self.host}", command)
        marker = secrets.token_hex(8)
        line = (f"{self._env_prefix(env)}export {RUN_MARKER}={marker}; "
                f'exec "${{SHELL:-/bin/sh}}" -c {quote(command)}')
        data = input.encode() if isinstance(input, str) else input
        chan = None
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.exec_command(line)
            stdout, stderr, exited = _collect(chan, data, timeout)
        except TimeoutError as err:
            self._kill_remote(marker)
            raise ClaveError(
                f"`{_short(command)}` on {self.host} did not finish within {timeout:g} s; "
                "it was stopped."
            ) from err
        except ClaveError:
            raise
        except Exception as err:
            raise self._lost(err, command) from err
        finally:
            if chan is not None:
                chan.close()
        if exited < 0 and not transport.is_active():
            raise ClaveError(f"the SSH connection to {self.host} dropped while running "
                             f"`{_short(command)}`.")
        result = Result(argv, exited, _text(stdout), _text(stderr))
        if check and not result.ok:
            raise CommandFailed(result, f"{_short(command)}: {result.last_line() or 'no output'}")
        return result

    def interactive(self, command: str, env: Mapping[str, str] | None = None) -> int:
        """Run `command` on a PTY wired to this terminal; returns its exit code.

        Raw mode sends Ctrl-C to the remote program as a byte. The local terminal is restored
        on every exit path; a dropped connection returns 255 with `last_error()` set.
        """
        self._last_error = None
        env = dict(env or {})
        term = env.get("TERM") or os.environ.get("TERM") or DEFAULT_TERM
        transport = self.transport()
        line = self._env_prefix({k: v for k, v in env.items() if k != "TERM"}) + command
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
        except Exception as err:
            raise self._lost(err, command) from err
        try:
            with _RawTerminal() as terminal:
                cols, rows = terminal.size()
                chan.get_pty(term=term, width=cols, height=rows)
                chan.exec_command(line)
                alive = terminal.pump(chan, Heartbeat(transport), on_resize=chan.resize_pty)
        except ClaveError:
            raise
        except Exception as err:
            alive = False
            self._last_error = self._lost(err, command).message
        finally:
            chan.close()
        if alive and chan.exit_status_ready():
            status = chan.recv_exit_status()
            if status >= 0:
                return status
            # No exit status: the connection died (the transport notices a moment after the
            # channel) or the program was killed by a signal. 255 either way, as with OpenSSH.
            if not _goes_down(transport, within=1.0):
                self._last_error = (f"`{_short(command)}` on {self.host} ended without an exit "
                                    "status (killed by a signal?).")
                return EXIT_CONNECTION_LOST
        self._last_error = self._last_error or (
            f"the SSH connection to {self.host} dropped while running `{_short(command)}`."
        )
        self.close()
        return EXIT_CONNECTION_LOST

    def stream(self, command: str, stdin: int | None, stdout: BinaryIO,
               stderr: BinaryIO) -> int:
        """Run `command` without a PTY, as `ssh host cmd` in a pipeline: what arrives on the
        `stdin` fd (None: nothing) is passed on, EOF included; its output comes back as it is
        written, each stream to its own file. Returns its exit status (255 with
        `last_error()` set when the connection dropped). Ctrl-C, or a reader that went away
        (`| head`), ends the remote command too."""
        self._last_error = None
        transport = self.transport()
        marker = secrets.token_hex(8)
        line = f'export {RUN_MARKER}={marker}; exec "${{SHELL:-/bin/sh}}" -c {quote(command)}'
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.exec_command(line)
        except Exception as err:
            raise self._lost(err, command) from err
        try:
            _relay(chan, stdin, stdout, stderr, Heartbeat(transport))
        except BrokenPipeError:
            self._kill_remote(marker)
            return EXIT_BROKEN_PIPE
        except KeyboardInterrupt:
            self._kill_remote(marker)
            raise
        finally:
            chan.close()
        if chan.status_event.wait(STATUS_WAIT) and chan.exit_status >= 0:
            return chan.exit_status
        self._last_error = f"the SSH connection to {self.host} dropped while running " \
                           f"`{_short(command)}`."
        return EXIT_CONNECTION_LOST

    def put_file(self, remote_path: str, content: bytes, mode: int = 0o600) -> None:
        """Upload over SFTP; the file gets `mode` before any content is written (secrets)."""
        self.put_files({remote_path: (content, mode)})

    def put_files(self, files: Mapping[str, tuple[bytes, int]]) -> None:
        """Several uploads over one SFTP session: path -> (content, mode), mode set first."""
        transport = self.transport()
        remote_path = ""
        try:
            import paramiko

            with paramiko.SFTPClient.from_transport(transport) as sftp:
                for remote_path, (content, mode) in files.items():
                    with sftp.open(remote_path, "wb") as handle:
                        handle.chmod(mode)
                        handle.write(content)
        except Exception as err:
            if isinstance(err, OSError) and transport.is_active():  # SFTP's own refusal
                reason = err.strerror or str(err)
                raise ClaveError(f"cannot write {remote_path} on {self.host}: "
                                 f"{reason[0].lower()}{reason[1:]}") from err
            raise self._lost(err, f"upload {remote_path}") from err

    # -- helpers -------------------------------------------------------------------------

    def _env_prefix(self, env: Mapping[str, str] | None) -> str:
        if not env:
            return ""
        bad = [name for name in env if not ENV_NAME.fullmatch(name)]
        if bad:
            raise ClaveError(f"cannot pass {bad[0]!r} to the VM: not a valid variable name.")
        name = f".clave-env-{secrets.token_hex(8)}"
        self.put_file(name, "".join(f"{k}={quote(v)}\n" for k, v in env.items()).encode())
        path = f'"$HOME"/{name}'
        return f"set -a; . {path}; set +a; rm -f {path}; "

    def _kill_remote(self, marker: str) -> None:
        """Best effort: end a timed-out command and everything it started.

        They are found by the marker variable in their environment, which survives the exec
        a shell does for a lone command and is inherited by children (even setsid ones).
        """
        script = (
            f"p=$(grep -alsF {RUN_MARKER}={marker} /proc/[0-9]*/environ | cut -d/ -f3); "
            '[ -n "$p" ] || exit 0; kill -TERM $p 2>/dev/null; sleep 0.5; '
            "kill -KILL $p 2>/dev/null; exit 0"
        )
        try:
            chan = self.transport().open_session(timeout=self.connect_timeout)
            try:
                chan.exec_command(script)
                _collect(chan, None, 5)
            finally:
                chan.close()
        except Exception:  # the timeout is what the user needs to hear about, not this
            return

    def _require_host(self) -> str:
        if not self.host:
            raise ClaveError("no SSH host is set; the VM's address is not known yet.")
        return self.host

    def _lost(self, err: BaseException, command: str) -> ClaveError:
        if isinstance(err, ClaveError):
            return err
        return ClaveError(
            f"the SSH connection to {self.host} failed while running `{_short(command)}`: "
            f"{_reason(err, self.connect_timeout)}"
        )

    def _translate(self, err: BaseException, timeout: float) -> ClaveError:
        import paramiko

        if isinstance(err, ClaveError):
            return err
        login = f"SSH login as {self.user}@{self.host} failed"
        where = f"cannot reach {self.user}@{self.host}:{self.port}"
        if isinstance(err, paramiko.BadAuthenticationType):
            allowed = ", ".join(err.allowed_types) or "nothing"
            return ClaveError(f"{login}: the server refuses passwords (it allows {allowed})")
        if isinstance(err, paramiko.AuthenticationException):
            return ClaveError(f"{login}: wrong password")
        if self._password is None and "authentication methods" in str(err):
            return ClaveError(f"{login}: no password was given")
        return ClaveError(f"{where}: {_reason(err, timeout)}")


class _PinPolicy:
    """paramiko host-key policy: accept the first key of a session, refuse any other later."""

    def __init__(self, host: str, pinned: str | None, seen: list[str]):
        self.host, self.pinned, self.seen = host, pinned, seen

    def missing_host_key(self, client: object, hostname: str, key: paramiko.PKey) -> None:
        fingerprint = key.fingerprint
        if self.pinned and fingerprint != self.pinned:
            raise HostKeyChanged(
                f"the SSH host key of {self.host} changed during this session ({self.pinned} "
                f"before, {fingerprint} now); refusing to connect."
            )
        self.seen.append(fingerprint)


class Heartbeat:
    """Notices a peer that vanished without closing TCP (a VM powered off, a network gone).

    paramiko's own keepalive expects no reply, so it never notices; this asks for one
    (`keepalive@openssh.com`, which OpenSSH answers even when refusing it).
    """

    def __init__(
        self,
        transport: paramiko.Transport,
        interval: float = HEARTBEAT_INTERVAL,
        grace: float = HEARTBEAT_GRACE,
    ):
        self.transport, self.interval, self.grace = transport, interval, grace
        self._last = time.monotonic()
        self._sent = 0.0
        self._pending: threading.Thread | None = None

    def dead(self) -> bool:
        """Call now and then; True once the transport closed or a probe went unanswered."""
        if not self.transport.is_active():
            return True
        now = time.monotonic()
        if self._pending is not None:
            if self._pending.is_alive():
                return now - self._sent > self.grace
            self._pending, self._last = None, now
        elif now - self._last >= self.interval:
            self._pending = threading.Thread(target=self._ask, daemon=True)
            self._sent = now
            self._pending.start()
        return False

    def _ask(self) -> None:
        # a dead transport shows up as is_active() == False; nothing to report from here
        with contextlib.suppress(Exception):
            self.transport.global_request("keepalive@openssh.com", wait=True)


class _RawTerminal:
    """The local terminal in raw mode for one interactive session, restored on every exit.

    Raw mode turns Ctrl-C into a byte for the remote program instead of SIGINT for clave.
    SIGWINCH only wakes the pump through a pipe: resizing from inside a signal handler could
    deadlock on a lock the interrupted code holds.
    """

    def __init__(self, stdin: int = 0, stdout: int = 1):
        self.stdin, self.stdout = stdin, stdout
        self._saved: list | None = None
        self._old_handler: object = None
        self._wake_r, self._wake_w = os.pipe()

    def __enter__(self) -> _RawTerminal:
        import termios
        import tty

        if os.isatty(self.stdin):
            self._saved = termios.tcgetattr(self.stdin)
            tty.setraw(self.stdin, termios.TCSADRAIN)  # TCSAFLUSH would drop typeahead
        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGWINCH, self._on_winch)
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        try:
            if self._saved is not None:
                termios.tcsetattr(self.stdin, termios.TCSADRAIN, self._saved)
        finally:
            if self._old_handler is not None:
                signal.signal(signal.SIGWINCH, self._old_handler)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _on_winch(self, signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"w")

    def size(self) -> tuple[int, int]:
        for fd in (self.stdout, self.stdin):
            with contextlib.suppress(OSError):
                size = os.get_terminal_size(fd)
                return size.columns, size.lines
        return 80, 24

    def pump(self, chan: paramiko.Channel, heartbeat: Heartbeat, on_resize) -> bool:
        """Copy bytes both ways until the remote side ends; False when the connection died."""
        reading_stdin = True
        sent_size = self.size()
        while True:
            watched = [chan, self._wake_r] + ([self.stdin] if reading_stdin else [])
            ready, _, _ = select.select(watched, [], [], 1.0)
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
            # Compare sizes on every wake-up rather than trusting SIGWINCH to arrive first:
            # it may land on a paramiko thread and reach us after the keys typed after it.
            if self.size() != sent_size:
                sent_size = self.size()
                on_resize(*sent_size)
            if chan in ready:
                data = chan.recv(65536)
                if not data:
                    chan.status_event.wait(5)  # exit-status may trail the EOF
                    return heartbeat.transport.is_active()
                _write_all(self.stdout, data)
            if self.stdin in ready:
                data = os.read(self.stdin, 65536)
                if data:
                    chan.sendall(data)
                else:
                    chan.shutdown_write()
                    reading_stdin = False
            if heartbeat.dead():
                return False


def _goes_down(transport: paramiko.Transport, within: float) -> bool:
    deadline = time.monotonic() + within
    while transport.is_active():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _quiet_paramiko() -> None:
    """paramiko logs tracebacks for failures we report ourselves; without a handler of its
    own, Python's last-resort handler would print them over clave's progress display."""
    logger = logging.getLogger("paramiko")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


def _relay(chan: paramiko.Channel, stdin: int | None, stdout: BinaryIO,
           stderr: BinaryIO, heartbeat: Heartbeat) -> None:
    """Copy stdin to the channel and its two output streams back until the command has
    exited and nothing is left to read, or the VM stopped answering. Local stdin reaching
    EOF is passed on.

    Input is sent only as the channel's window allows, so a command that writes without
    reading never blocks this loop (and with it its own output).
    """
    pending, reading = b"", stdin is not None
    if not reading:
        chan.shutdown_write()
    while True:
        watched = [chan, stdin] if reading and not pending else [chan]
        ready, _, _ = select.select(watched, [], [], RELAY_RETRY if pending else RELAY_TICK)
        while chan.recv_stderr_ready():
            _write_flush(stderr, chan.recv_stderr(65536))
        while chan.recv_ready():
            _write_flush(stdout, chan.recv(65536))
        if chan.closed or (chan.exit_status_ready() and chan.eof_received):
            if not (chan.recv_ready() or chan.recv_stderr_ready()):
                return
            continue
        if not ready and heartbeat.dead():
            return
        if reading and not pending and stdin in ready:
            pending = os.read(stdin, 65536)
            if not pending:
                chan.shutdown_write()
                reading = False
        if pending and chan.send_ready():
            try:
                pending = pending[chan.send(pending):]
            except OSError:
                if not chan.closed:
                    raise
                pending = b""    # the command is gone: its output is what is left to read


def _write_flush(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _collect(
    chan: paramiko.Channel, data: bytes | None, timeout: float
) -> tuple[bytes, bytes, int]:
    """Send stdin, read stdout and stderr to EOF and wait for the exit status, all by a deadline.

    Raises TimeoutError when the deadline passes. stderr is drained by a thread so a command
    that fills one stream never blocks on the other.
    """
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    errors: list[bytes] = []
    failure: list[BaseException] = []

    def drain_stderr() -> None:
        try:
            while chunk := chan.recv_stderr(65536):
                errors.append(chunk)
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            failure.append(err)

    chan.settimeout(remaining())
    reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    if data:
        chan.sendall(data)
    chan.shutdown_write()
    output: list[bytes] = []
    while True:
        chan.settimeout(remaining())
        chunk = chan.recv(65536)
        if not chunk:
            break
        output.append(chunk)
    reader.join(remaining())
    if reader.is_alive() or (failure and isinstance(failure[0], socket.timeout | TimeoutError)):
        raise TimeoutError
    if not chan.status_event.wait(remaining()):
        raise TimeoutError
    return b"".join(output), b"".join(errors), chan.recv_exit_status()


def _reason(err: BaseException, timeout: float) -> str:
    """One lower-case phrase for a connection failure."""
    import paramiko

    if isinstance(err, paramiko.ssh_exception.NoValidConnectionsError):
        first = next(iter(err.errors.values()), None)
        if first is not None:
            err = first
    if isinstance(err, socket.timeout | TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(err, OSError) and err.errno in _REASONS:
        return _REASONS[err.errno]
    if isinstance(err, OSError) and err.strerror:
        return err.strerror[0].lower() + err.strerror[1:]
    if isinstance(err, EOFError):
        return "the server closed the connection"
    if "protocol banner" in str(err):
        if isinstance(err.__context__, socket.timeout | TimeoutError):
            return f"no SSH greeting within {timeout:g} s"
        return "the connection closed before the SSH greeting"
    text = str(err).strip().rstrip(".") or type(err).__name__
    return text[0].lower() + text[1:]


def _short(command: str, limit: int = 60) -> str:
    first = command.strip().splitlines()[0] if command.strip() else command
    return first if len(first) <= limit and first == command.strip() else first[:limit] + "…"


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
