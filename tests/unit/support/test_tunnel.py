"""The detached forwarder against a real OpenSSH server on 127.0.0.1 (see sshd.py).

Without namespaces "the VM" is this machine seen through sshd: a local forward's destination
and a reverse forward's listener are both on 127.0.0.1, reached through the SSH connection.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import socketserver
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from clave.errors import ClaveError
from clave.support.ssh import SshExecutor
from clave.support.tunnel import (
    MODULE,
    ForwarderLaunch,
    forwarder_alive,
    start_forwarder,
    stop_forwarder,
)
from tests.unit.support.sshd import free_port, wait_until

PAGE = b"hello through the tunnel\n"


@pytest.fixture(scope="module")
def web():
    """A plain HTTP server on 127.0.0.1 playing nginx in the VM."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def echo():
    """A line echo server on 127.0.0.1 playing the host's MariaDB/Redis."""

    class Echo(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(b"echo:" + line)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def forwarders():
    """Start forwarders for a test; whatever it leaves running is stopped afterwards."""
    pids: list[int] = []

    def start(server, tmp_path: Path, **kwargs) -> int:
        kwargs.setdefault("local", [])
        kwargs.setdefault("remote", [])
        kwargs.setdefault("host_key", None)
        pid = start_forwarder(host=server.host, user=server.user, password=server.password,
                              port=server.port, log_path=tmp_path / "tunnel.log", **kwargs)
        pids.append(pid)
        return pid

    yield start
    for pid in pids:
        stop_forwarder(pid)


def get(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return response.read()


def test_a_local_forward_serves_the_vms_web_page(sshd, web, forwarders, tmp_path):
    port = free_port()
    forwarders(sshd, tmp_path, local=[(port, "127.0.0.1", web)])
    assert get(port) == PAGE
    assert get(port) == PAGE  # one channel per connection


def test_a_reverse_forward_lets_the_vm_reach_a_host_service(sshd, echo, forwarders, tmp_path):
    vm_port = free_port()
    forwarders(sshd, tmp_path, remote=[(vm_port, "127.0.0.1", echo)])
    with SshExecutor(sshd.user, sshd.port).set_host(sshd.host).use_password(sshd.password) as ssh:
        result = ssh.run(f"exec 3<>/dev/tcp/127.0.0.1/{vm_port}; printf 'ping\\n' >&3; "
                         "head -n1 <&3", timeout=10)
    assert result.stdout == "echo:ping\n", result.stderr


def test_local_listeners_bind_127_0_0_1_only(sshd, web, forwarders, tmp_path):
    port = free_port()
    forwarders(sshd, tmp_path, local=[(port, "127.0.0.1", web)])
    assert listening_addresses(port) == ["127.0.0.1"]


def test_the_forwarder_runs_in_its_own_session_without_the_password(
    sshd, web, forwarders, tmp_path
):
    pid = forwarders(sshd, tmp_path, local=[(free_port(), "127.0.0.1", web)])
    assert os.getsid(pid) == pid  # Ctrl-C in the user's terminal never reaches it
    secret = sshd.password.encode()
    assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert secret not in Path(f"/proc/{pid}/environ").read_bytes()
    assert MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    log = (tmp_path / "tunnel.log")
    assert "connected to" in log.read_text() and sshd.password not in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o600


def test_the_forwarder_exits_when_the_vm_goes_away(own_sshd, web, forwarders, tmp_path):
    pid = forwarders(own_sshd, tmp_path, local=[(free_port(), "127.0.0.1", web)])
    own_sshd.kill_all()
    assert wait_until(lambda: not forwarder_alive(pid), timeout=10)
    assert "exiting: the SSH connection" in (tmp_path / "tunnel.log").read_text()


def test_the_forwarder_exits_when_the_vm_stops_answering(own_sshd, web, forwarders, tmp_path):
    pid = forwarders(own_sshd, tmp_path, local=[(free_port(), "127.0.0.1", web)],
                     keepalive_interval=0.2, dead_after=1)
    assert wait_until(lambda: own_sshd.session_pids(), timeout=5)
    own_sshd.freeze()  # TCP stays open, nothing answers: a powered-off VM
    assert wait_until(lambda: not forwarder_alive(pid), timeout=10)
    assert "stopped answering" in (tmp_path / "tunnel.log").read_text()


def test_stopping_the_forwarder_frees_its_port_at_once(sshd, web, forwarders, tmp_path):
    port = free_port()
    pid = forwarders(sshd, tmp_path, local=[(port, "127.0.0.1", web)])
    assert get(port) == PAGE  # leaves a closed connection behind on the port
    stop_forwarder(pid)
    assert not forwarder_alive(pid)
    stop_forwarder(pid)  # idempotent
    again = forwarders(sshd, tmp_path, local=[(port, "127.0.0.1", web)])
    assert get(port) == PAGE
    os.kill(again, signal.SIGKILL)  # even a SIGKILL leaves nothing that blocks the port
    assert wait_until(lambda: not forwarder_alive(again), timeout=5)
    forwarders(sshd, tmp_path, local=[(port, "127.0.0.1", web)])
    assert get(port) == PAGE


def test_stop_forwarder_never_signals_a_process_that_is_not_a_forwarder():
    other = subprocess.Popen(["sleep", "30"])
    try:
        assert forwarder_alive(other.pid) is False
        stop_forwarder(other.pid)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_stop_forwarder_of_a_gone_pid_is_a_no_op():
    gone = subprocess.Popen(["true"])
    gone.wait()
    stop_forwarder(gone.pid)
    assert forwarder_alive(gone.pid) is False


def test_a_wrong_password_is_reported_and_nothing_is_left_running(sshd, tmp_path):
    with pytest.raises(ClaveError) as caught:
        start_forwarder(host=sshd.host, user=sshd.user, password="wrong", port=sshd.port,
                        host_key=None, local=[], remote=[], log_path=tmp_path / "t.log")
    assert str(caught.value) == f"SSH login as {sshd.user}@127.0.0.1 failed: wrong password"
    assert our_forwarders() == []


def test_a_local_port_in_use_is_reported_before_connecting(sshd, web, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ClaveError) as caught:
            start_forwarder(host=sshd.host, user=sshd.user, password=sshd.password,
                            port=sshd.port, host_key=None, local=[(port, "127.0.0.1", web)],
                            remote=[], log_path=tmp_path / "t.log")
    assert str(caught.value) == (
        f"cannot listen on 127.0.0.1:{port}: Address already in use; "
        "another program is using that port."
    )
    assert our_forwarders() == []


def test_a_vm_port_in_use_is_reported(sshd, echo, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ClaveError, match=f"refused to listen on 127.0.0.1:{port} for the "
                                             f"forward to 127.0.0.1:{echo}"):
            start_forwarder(host=sshd.host, user=sshd.user, password=sshd.password,
                            port=sshd.port, host_key=None, local=[],
                            remote=[(port, "127.0.0.1", echo)], log_path=tmp_path / "t.log")
    assert our_forwarders() == []


def test_a_different_pinned_host_key_is_refused(sshd, tmp_path):
    with pytest.raises(ClaveError, match="changed during this session"):
        start_forwarder(host=sshd.host, user=sshd.user, password=sshd.password, port=sshd.port,
                        host_key="SHA256:not-the-key", local=[], remote=[],
                        log_path=tmp_path / "t.log")


def test_the_pinned_host_key_is_accepted(sshd, web, forwarders, tmp_path):
    with SshExecutor(sshd.user, sshd.port).set_host(sshd.host).use_password(sshd.password) as ssh:
        assert ssh.test()
        pinned = ssh.host_key_fingerprint
    port = free_port()
    forwarders(sshd, tmp_path, host_key=pinned, local=[(port, "127.0.0.1", web)])
    assert get(port) == PAGE


def listening_addresses(port: int) -> list[str]:
    """Local addresses with a LISTEN socket on `port`, from /proc/net/tcp{,6}."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    if len(address) == 8:
                        found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                    else:
                        found.append(f"ipv6:{address}")
    return found


def our_forwarders() -> list[int]:
    """Forwarder processes still running whose parent is this test process."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{name}/stat").read_text()
            state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            if int(ppid) == os.getpid() and state != "Z" and MODULE.encode() in cmdline:
                pids.append(int(name))
    return pids


def test_a_forwarder_launched_ahead_of_time_opens_the_tunnel_when_given_its_orders(
        sshd, web, tmp_path):
    launch = ForwarderLaunch(tmp_path / "tunnel.log")
    try:
        assert forwarder_alive(launch.pid)            # waiting, paramiko already imported
        port = free_port()
        pid = launch.start(host=sshd.host, user=sshd.user, password=sshd.password,
                           port=sshd.port, host_key=None, local=[(port, "127.0.0.1", web)],
                           remote=[])
        assert pid == launch.pid and get(port) == PAGE
    finally:
        stop_forwarder(launch.pid)


def test_an_order_returns_at_once_and_ready_tells_the_host_key_the_forwarder_saw(
        sshd, web, tmp_path):
    with SshExecutor(sshd.user, sshd.port).set_host(sshd.host).use_password(sshd.password) as ssh:
        ssh.wait_ready(10)
        seen = ssh.host_key_fingerprint
    launch = ForwarderLaunch(tmp_path / "tunnel.log")
    try:
        port = free_port()
        launch.order(host=sshd.host, user=sshd.user, password=sshd.password, port=sshd.port,
                     host_key=None, local=[(port, "127.0.0.1", web)], remote=[], wait=30)
        assert launch.ordered and launch.host_key is None
        assert launch.ready() == launch.pid and launch.host_key == seen
        assert get(port) == PAGE
    finally:
        stop_forwarder(launch.pid)


def test_a_forwarder_still_waiting_for_sshd_stops_at_once_when_asked(tmp_path):
    launch = ForwarderLaunch(tmp_path / "tunnel.log")
    nobody = free_port()                     # nothing listens: it keeps waiting for sshd
    launch.order(host="127.0.0.1", user="admin", password="x", port=nobody, host_key=None,
                 local=[], remote=[], wait=60)
    assert wait_until(lambda: "to accept a login" in (tmp_path / "tunnel.log").read_text(), 30)
    stop_forwarder(launch.pid, timeout=10)
    assert launch.proc.wait(10) == 0          # it honoured SIGTERM: no SIGKILL was needed
    assert "asked to stop before the tunnel was up" in (tmp_path / "tunnel.log").read_text()


def test_a_cancelled_launch_leaves_no_process(tmp_path):
    launch = ForwarderLaunch(tmp_path / "tunnel.log")
    launch.cancel()
    launch.cancel()
    assert not forwarder_alive(launch.pid)


def test_a_launch_whose_clave_died_exits_by_itself_quietly(tmp_path):
    launch = ForwarderLaunch(tmp_path / "tunnel.log")
    launch.proc.stdin.close()                       # what the launcher's death looks like
    assert launch.proc.wait(timeout=10) == 0
    assert "Traceback" not in (tmp_path / "tunnel.log").read_text()
