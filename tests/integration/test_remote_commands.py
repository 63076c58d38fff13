"""`clave exec ID -- CMD...` and `clave ssh ID` against a real Linux test VM.

One VM serves the whole module: booted once with the fixture app shared under the tag
`project` and mounted at /srv/project, as BootVm leaves a session's VM. Each test seeds a
session row, as a running session's clave leaves it, with the VM's address and the host key
pinned at the first connection. `exec` runs in-process through `clave.cli.main` (stdout is
not a terminal there); `clave ssh` and an interactive `exec` run on a pseudo-terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clave import cli
from clave.home import Home
from clave.store import Store
from clave.support.ssh import SshExecutor
from tests.harness.fakevm import FakeVm
from tests.harness.fixtures import BOOT_TIMEOUT, copy_app
from tests.pty_process import PtyProcess

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin"
SID = "rem0te01"
WRONG_KEY = "SHA256:" + "A" * 43   # the shape of an OpenSSH fingerprint, not this VM's


@dataclass(frozen=True)
class SessionVm:
    vm: FakeVm
    project: Path       # the host directory the VM sees at /srv/project
    host_key: str       # its SSH host key fingerprint, as a session pins it


@pytest.fixture(scope="module")
def session_vm(bridge, tmp_path_factory) -> Iterator[SessionVm]:
    base = tmp_path_factory.mktemp("remote")
    project = copy_app(base / "project")
    vm = FakeVm.boot("clave-remote", {"project": str(project)}, base / "state")
    try:
        vm.wait_ssh(BOOT_TIMEOUT)
        vm.mount_share("project", "/srv/project")
        with SshExecutor().set_host(vm.ip).use_password(ADMIN) as first:
            first.wait_ready(timeout=BOOT_TIMEOUT)
            host_key = first.host_key_fingerprint
        assert host_key and host_key.startswith("SHA256:")
        yield SessionVm(vm, project, host_key)
    finally:
        vm.destroy()


def seed(session_id: str = SID, **values) -> None:
    """A session row as a running clave writes it (this test's own CLAVE_HOME)."""
    with Store.open(Home.from_env()) as store:
        store.add(session_id=session_id, project_name="app", project_dir="/tmp/app",
                  status="running", clave_pid=os.getpid(), **values)


@pytest.fixture
def session(session_vm: SessionVm) -> SessionVm:
    seed(vm_name="clave-" + SID, vm_ip=session_vm.vm.ip, host_key=session_vm.host_key)
    return session_vm


def clave(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- clave exec, output captured ---------------------------------------------------------------

def test_exec_prints_the_commands_output_and_exits_zero(session, capsys):
    code, out, err = clave(capsys, "exec", SID, "--", "ls", "-1")
    assert (code, err) == (0, "")
    assert out.splitlines() == sorted(p.name for p in session.project.iterdir()
                                      if not p.name.startswith("."))


def test_exec_returns_the_remote_exit_code(session, capsys):
    code, _, _ = clave(capsys, "exec", SID, "--", "sh", "-c", "exit 7")
    assert code == 7


def test_exec_keeps_stdout_and_stderr_apart(session, capsys):
    code, out, err = clave(capsys, "exec", SID, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (code, out, err) == (3, "out\n", "err\n")


def test_exec_hands_each_argument_over_intact(session, capsys):
    words = ["a b", "$(id)", "é", "it's", '"quoted"', "*", "`hostname`", "a\\b", "; exit 9", ""]
    code, out, _ = clave(capsys, "exec", SID, "--", "printf", "[%s]\\n", *words)
    assert code == 0
    assert out.splitlines() == [f"[{word}]" for word in words]


def test_exec_runs_in_the_project_directory_as_admin(session, capsys):
    code, out, _ = clave(capsys, "exec", SID, "--", "sh", "-c", 'pwd; id -un; cat marker.txt')
    assert code == 0
    assert out.splitlines()[:2] == ["/srv/project", ADMIN]
    assert out.splitlines()[2:] == (session.project / "marker.txt").read_text().splitlines()


def test_exec_writes_to_the_shared_project(session, capsys):
    made = session.project / "made-by-exec.txt"
    try:
        code, _, _ = clave(capsys, "exec", SID, "--", "sh", "-c", "echo hi > made-by-exec.txt")
        assert code == 0
        assert made.read_text() == "hi\n"
    finally:
        made.unlink(missing_ok=True)


def test_exec_in_a_pipeline_reads_its_stdin_and_streams_its_output(session):
    done = subprocess.run(
        [sys.executable, "-m", "clave", "exec", SID, "--", "sh", "-c",
         "tr a-z A-Z; echo end; echo warn >&2"],
        input=b"from the pipe\n", capture_output=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout, done.stderr) == (0, b"FROM THE PIPE\nend\n", b"warn\n")


# -- refusals ----------------------------------------------------------------------------------

def test_an_unknown_id_exits_2_naming_it_and_creates_nothing(capsys, clave_home):
    for command in (["exec", "nosuch01", "--", "true"], ["ssh", "nosuch01"]):
        code, out, err = clave(capsys, *command)
        assert (code, out) == (2, "")
        assert err == ("clave: no session 'nosuch01': `clave sessions` lists the running "
                       "ones.\n")
    assert list(clave_home.iterdir()) == []


def test_an_unknown_id_among_other_sessions_exits_2(capsys):
    seed(vm_ip="192.0.2.1")
    code, _, err = clave(capsys, "exec", "nosuch01", "--", "true")
    assert code == 2
    assert "no session 'nosuch01'" in err


def test_a_session_without_a_vm_address_is_a_clear_error(capsys):
    seed()
    for command in (["exec", SID, "--", "true"], ["ssh", SID]):
        code, out, err = clave(capsys, *command)
        assert (code, out) == (1, "")
        assert err == f"clave: session {SID} has no VM address yet; wait for it to boot.\n"


def test_a_changed_host_key_is_refused_before_anything_runs(session_vm, capsys):
    seed(vm_ip=session_vm.vm.ip, host_key=WRONG_KEY)
    ran = session_vm.project / "ran.txt"
    code, out, err = clave(capsys, "exec", SID, "--", "touch", "ran.txt")
    assert (code, out) == (1, "")
    assert f"the SSH host key of {session_vm.vm.ip} changed" in err
    assert f"{WRONG_KEY} before, {session_vm.host_key} now" in err
    assert "refusing to connect" in err
    assert not ran.exists()


def test_an_unreachable_vm_is_a_clear_error_within_the_timeout(bridge, capsys, monkeypatch):
    nobody = f"{bridge.prefix}.250"   # on the VM network, no VM behind it
    seed(vm_ip=nobody)
    monkeypatch.setenv("CLAVE_SSH_CONNECT_TIMEOUT", "1")
    started = time.monotonic()
    code, _, err = clave(capsys, "exec", SID, "--", "true")
    assert code == 1
    assert err.startswith(f"clave: cannot reach {ADMIN}@{nobody}:22: ")
    assert time.monotonic() - started < 5


# -- on a terminal -------------------------------------------------------------------------------

CHILD = """
import sys, termios
sys.path.insert(0, {root!r})
from clave import cli
before = termios.tcgetattr(0)
code = cli.main({argv!r})
after = termios.tcgetattr(0)
sys.stdout.write("\\r\\n[restored=%s code=%s]\\r\\n" % (before == after, code))
sys.stdout.flush()
sys.exit(code)
"""


class Terminal(PtyProcess):
    """`clave ARGV` as a child on a new pseudo-terminal, as if typed in a user's terminal."""

    def __init__(self, *argv: str, size: tuple[int, int] = (24, 80)):
        super().__init__(CHILD.format(root=str(ROOT), argv=list(argv)), size=size)

    def read_until(self, marker: bytes, timeout: float = 20) -> bytes:
        return super().read_until(marker, timeout)

    def type(self, text: str) -> None:
        self.write(text.encode())

    def finish(self, timeout: float = 20) -> int:
        self.read_until(b"code=", timeout)
        self.read_until(b"]\r\n", 2)
        return self.reap()


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for child in started:   # a failed test must not leave its clave running
        if child.code is None:
            child.kill()


def on_terminal(terminals: list[Terminal], *argv: str) -> Terminal:
    child = Terminal(*argv)
    terminals.append(child)
    return child


def test_ssh_opens_a_login_shell_in_the_project_and_returns_its_exit_code(session, terminals):
    child = on_terminal(terminals, "ssh", SID)
    child.read_until(b"$ ")                     # the prompt: the shell is reading
    child.type("pwd; id -un; exit 3\n")
    code = child.finish()
    text = child.text()
    assert code == 3, text
    assert "\r\n/srv/project\r\n" in text
    assert f"\r\n{ADMIN}\r\n" in text
    assert "[restored=True code=3]" in text


def test_exec_on_a_terminal_gets_a_pseudo_terminal_in_the_project(session, terminals):
    child = on_terminal(terminals, "exec", SID, "--", "sh", "-c", "tty; pwd; stty size; exit 4")
    code = child.finish()
    lines = child.text().splitlines()
    assert code == 4, child.text()
    assert lines[0].startswith("/dev/pts/")
    assert lines[1:3] == ["/srv/project", "24 80"]
    assert "[restored=True code=4]" in child.text()


def test_a_connection_dropped_during_ssh_is_reported(session, terminals):
    child = on_terminal(terminals, "ssh", SID)
    child.read_until(b"$ ")
    # the session's own sshd processes go, as when a VM powers off mid-session
    child.type("sudo pkill -KILL -f 'sshd: admin'\n")
    code = child.finish()
    text = child.text()
    assert code == 255, text
    assert f"clave: the SSH connection to {session.vm.ip} dropped" in text
    assert "[restored=True code=255]" in text
