"""After clave itself crashes (SIGKILL): `clave cleanup` and `clave --resume`, end to end.

A SIGKILLed clave runs no teardown: its VM (`tart run` is in its own process session), its
SSH forwarder and its Herd proxy outlive it, and its session row stays with a dead
clave_pid. These tests check that the pieces really survive, that `clave cleanup` removes
every one of them but the code (the clone is kept, its branch saved into the project), and
that `clave --resume` re-attaches to the same VM and finishes the session normally.
The world is tests/e2e/session_world.py's; run with `python -m pytest -p
tests.harness.fixtures tests/e2e/test_crash.py` (as root: the VMs are Linux namespaces).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.session_world import FAKES, ROOT, World, wait_for
from tests.harness.plugin import require_plugin

require_plugin()

from tests.harness import leaks  # noqa: E402  (after the skip: it needs the plugin's env)
from tests.harness.fakevm import OWNER_ENV  # noqa: E402

KILLED = -signal.SIGKILL
WORK = """\
echo "a feature" >feature.txt
git add feature.txt
git commit -q -m "Add a feature"
echo "not committed yet" >draft.txt
pause
"""
CLI_TIMEOUT = 120
HELD = "held-git-clone"


@pytest.fixture
def world(tmp_path, host_services, bridge) -> World:
    """One world per test; afterwards nothing of it may be left anywhere.

    The harness's leak check finds VMs and the processes the tests started, but a forwarder
    whose clave died is nobody's child and carries no owner tag: any process still holding
    a file of the world (its logs live in CLAVE_HOME) is a leftover too.
    """
    owner = os.environ[OWNER_ENV]
    baseline = set(leaks.check(owner))
    world = World.create(tmp_path / "world", host_services)
    yield world
    world.close()
    left = world.leftovers()
    left += leaks.wait_clean(owner, baseline)
    left += [f"process {pid} ({what}) still holds {path}"
             for pid, what, path in _holding(world.root)]
    _force_clean(world)
    if left:
        pytest.fail("the crashed session left behind:\n  " + "\n  ".join(left), pytrace=False)


# -- clave cleanup ------------------------------------------------------------------------------

def test_cleanup_after_a_sigkill_during_claude_removes_everything_but_keeps_the_work(world):
    world.script(WORK)
    session = world.start("--on-exit", "discard")
    vm = world.wait_paused()[0]
    row = _row(world)
    sid, port, proxy = row["session_id"], row["tunnel_port"], f"{row['proxy_name']}.test"
    branch, clone = row["clone_branch"], Path(row["clone_path"])

    _crash(session)

    # what a crashed clave leaves: all of it still running
    assert _vm_state(world, vm) == "running"
    assert _get(f"http://127.0.0.1:{port}/")["hostname"] == vm
    assert proxy in world.herd_proxies()
    after = _row(world)
    assert (after["status"], after["clave_pid"]) == ("running", session.pid)
    assert not _alive(session.pid)
    tunnel_pid = after["tunnel_pid"]
    assert _alive(tunnel_pid)

    dry = _clave(world, "cleanup", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    listed = _listed(dry.stdout)
    assert listed == {("vm", vm), ("tunnel", f"pid {tunnel_pid}"), ("proxy", row["proxy_name"]),
                      ("record", sid), ("clone", str(clone))}, dry.stdout
    assert "kept" in _line(dry.stdout, str(clone))
    assert _vm_state(world, vm) == "running" and proxy in world.herd_proxies()
    assert _row(world) == after and _alive(tunnel_pid)
    assert world.git("branch", "--list", branch) == ""       # not saved yet either

    done = _clave(world, "cleanup")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Cleaned up 5 of 5." in done.stdout
    assert world.vms() == [] and world.herd_proxies() == {} and world.session_rows() == []
    _stopped(tunnel_pid, port)
    assert not world.clave_home.joinpath("sessions", sid).exists()
    # the code: the clone stays as it was, its branch (Claude's commit) is in the project
    assert world.clones() == [clone]
    assert (clone / "draft.txt").read_text() == "not committed yet\n"
    assert world.git("show", f"{branch}:feature.txt") == "a feature"
    assert world.git("status", "--porcelain") == ""

    again = _clave(world, "cleanup")
    assert (again.returncode, again.stdout.strip()) == (0, "Nothing to clean up.")


def test_a_cleanup_that_cannot_remove_the_proxy_keeps_the_record_for_the_next_one(world):
    world.script("pause\n")
    session = world.start("--on-exit", "keep")
    world.wait_paused()
    row = _row(world)
    sid, proxy, tunnel_pid = row["session_id"], row["proxy_name"], row["tunnel_pid"]
    _crash(session)

    failing = _clave(world, "cleanup", path=_failing_unproxy(world))
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert f"could not remove proxy {proxy}: " in failing.stderr, failing.stderr
    assert "Nginx could not be restarted." in _line(failing.stderr, "could not remove proxy")
    assert (f"could not remove record {sid}: its Herd proxy is still there; the record stays "
            "so that the next `clave cleanup` finds it.") in failing.stderr
    assert "Cleaned up 3 of 5." in failing.stdout
    assert world.vms() == []
    _stopped(tunnel_pid)
    assert f"{proxy}.test" in world.herd_proxies() and _row(world)["session_id"] == sid

    again = _clave(world, "cleanup")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _listed(again.stdout) == {("proxy", proxy), ("clone", row["clone_path"]),
                                     ("record", sid)}
    assert world.herd_proxies() == {} and world.session_rows() == []


# -- clave --resume -------------------------------------------------------------------------------

def test_resume_after_a_sigkill_reattaches_to_the_same_vm_and_ends_the_session_normally(world):
    world.script(WORK)
    crashed = world.start("--on-exit", "discard")
    vm = world.wait_paused()[0]
    before = _row(world)
    _crash(crashed)

    (world.test_dir / f"paused-{vm}").unlink()
    (world.test_dir / "records" / f"{vm}.json").unlink()
    world.script("echo resumed >resumed.txt\ngit add resumed.txt\n"
                 "git commit -q -m 'Resume the work'\npause\n")
    resumed = world.start("--resume", "--on-exit", "merge")
    assert world.wait_paused(sessions=[resumed]) == [vm]
    resumed.expect(rf"Resuming session {before['session_id']}\.")

    record = world.record(vm)                 # Claude started again, in the same VM
    assert (record["hostname"], record["cwd"], record["user"]) == (vm, "/srv/project", "admin")
    row = _row(world)
    assert row["clave_pid"] == resumed.pid and row["status"] == "running"
    for key in ("vm_name", "vm_ip", "tunnel_port", "tunnel_pid", "proxy_name", "clone_path"):
        assert row[key] == before[key], key
    verbs = _verbs(world)                     # the VM was neither cloned nor started again
    assert (verbs.count("clone"), verbs.count("run")) == (1, 1), verbs
    assert _get(f"http://127.0.0.1:{row['tunnel_port']}/")["hostname"] == vm

    world.resume(vm)
    assert resumed.wait() == 0
    assert "merged clave/s-" in resumed.text
    assert world.vms() == [] and world.herd_proxies() == {} and world.session_rows() == []
    _stopped(row["tunnel_pid"], row["tunnel_port"])
    # the work of both Claude runs is in the base branch
    for name, text in (("feature.txt", "a feature"), ("draft.txt", "not committed yet"),
                       ("resumed.txt", "resumed")):
        assert (world.project / name).read_text() == text + "\n", name
    assert world.git("branch", "--list", "clave/*") == "" and world.clones() == []


def test_resume_reopens_a_dead_tunnel_on_a_new_port_and_points_the_proxy_at_it(world):
    world.script("pause\n")
    crashed = world.start("--on-exit", "discard")
    vm = world.wait_paused()[0]
    before = _row(world)
    _crash(crashed)
    os.kill(before["tunnel_pid"], signal.SIGKILL)   # the forwarder went too
    _stopped(before["tunnel_pid"])
    (world.test_dir / f"paused-{vm}").unlink()

    with _occupied(before["tunnel_port"]):          # and another program took its port
        resumed = world.start("--resume", "--on-exit", "discard")
        assert world.wait_paused(sessions=[resumed]) == [vm]
    row = _row(world)
    port = row["tunnel_port"]
    assert port != before["tunnel_port"] and row["tunnel_pid"] != before["tunnel_pid"]
    assert _get(f"http://127.0.0.1:{port}/")["hostname"] == vm
    site = f"{row['proxy_name']}.test"
    assert world.herd_proxies() == {site: {"target": f"http://127.0.0.1:{port}", "secure": True}}
    assert row["app_url"] == f"https://{site}"
    resumed.expect(rf"Session {row['session_id']}: https://{site} on branch")
    assert _verbs(world).count("run") == 1

    world.resume(vm)
    assert resumed.wait() == 0
    assert world.vms() == [] and world.herd_proxies() == {} and world.session_rows() == []
    _stopped(row["tunnel_pid"], port)


def test_resume_refuses_a_session_that_is_still_attached_and_says_when_none_is_detached(world):
    world.script("pause\n")
    session = world.start("--on-exit", "discard")
    vm = world.wait_paused()[0]
    before, calls = _row(world), len(world.tart_calls())
    sid = before["session_id"]

    attached = _clave(world, "--resume", sid)
    assert attached.returncode == 2
    assert attached.stderr.strip() == (f"clave: session {sid} is still attached in another "
                                       f"terminal (clave pid {session.pid}).")
    none = _clave(world, "--resume")
    assert none.returncode == 2
    assert none.stderr.strip() == ("clave: there is no detached session of this project to "
                                   "resume: `clave sessions` lists them.")
    assert _row(world) == before and len(world.tart_calls()) == calls
    assert attached.stdout == none.stdout == ""

    world.resume(vm)                          # the attached session never noticed
    assert session.wait() == 0
    assert world.vms() == [] and world.session_rows() == []


def test_resume_without_an_id_asks_for_one_when_several_sessions_are_detached(tmp_path):
    project = _detached(tmp_path, {"aaaa1111": "running", "bbbb2222": "running"})
    done = _resume(project)
    assert (done.returncode, done.stderr.strip()) == (2, (
        "clave: several sessions of this project are detached (aaaa1111, bbbb2222): "
        "name one with `clave --resume ID`."))


def test_resume_refuses_a_session_whose_clave_died_tearing_it_down(tmp_path):
    project = _detached(tmp_path, {"aaaa1111": "tearing_down"})
    done = _resume(project, "aaaa1111")
    assert (done.returncode, done.stderr.strip()) == (2, (
        "clave: session aaaa1111 was being torn down when its clave stopped: `clave cleanup` "
        "finishes that."))
    assert _detached_rows() == {"aaaa1111": "tearing_down"}


# -- a crash before the VM booted ----------------------------------------------------------------

def test_cleanup_after_a_sigkill_before_the_vm_booted_removes_the_vm_and_the_empty_share(world):
    # the VM takes two minutes to get an address; clave is killed as CloneRepo starts its
    # `git clone`: the directory for the code is shared, the code not cloned
    session = world.start("--on-exit", "keep", env={
        "FAKE_TART_LATENCY": "run=120", "PATH": f"{_holding_clone(world)}:{world.env['PATH']}"})
    wait_for(lambda: (world.root / HELD).exists(), 60, "CloneRepo to run `git clone`", [session])
    _crash(session)

    row = _row(world)
    sid, vm, share = row["session_id"], row["vm_name"], Path(row["clone_path"])
    assert share.is_dir() and list(share.iterdir()) == [], "CloneRepo ran before the kill"
    wait_for(lambda: _vm_state(world, vm) == "running", 30, "the VM to start without clave")
    assert _alive(row["tart_pid"])
    assert (row["tunnel_pid"], row["proxy_name"], row["vm_ip"]) == (None, None, None)

    done = _clave(world, "cleanup")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _listed(done.stdout) == {("vm", vm), ("share", str(share)), ("record", sid)}
    assert "Cleaned up 3 of 3." in done.stdout
    assert world.vms() == [] and world.session_rows() == [] and world.clones() == []
    _stopped(row["tart_pid"])
    assert not world.clave_home.joinpath("sessions", sid).exists()
    assert world.git("branch", "--list", "clave/*") == ""


# -- helpers -------------------------------------------------------------------------------------

def _holding_clone(world: World) -> Path:
    """A `git` ahead of the real one on PATH that holds the session's `git clone` until its
    clave is gone: a crash at a known point, after StartVm shared the empty directory."""
    shim = world.root / "hold-bin"
    shim.mkdir()
    held, git = shlex.quote(str(world.root / HELD)), shlex.quote(shutil.which("git"))
    (shim / "git").write_text(f"""#!/bin/sh
case " $* " in *" clone --local "*)
    if [ ! -e {held} ]; then
        : >{held}
        while kill -0 $PPID 2>/dev/null; do sleep 0.05; done
        exit 1
    fi;;
esac
exec {git} "$@"
""")
    (shim / "git").chmod(0o755)
    return shim


def _failing_unproxy(world: World) -> Path:
    """A `herd` ahead of the fake on PATH whose `unproxy` fails (Herd's nginx is stuck)."""
    shim = world.root / "failing-herd-bin"
    shim.mkdir()
    (shim / "herd").write_text(f"""#!/bin/sh
if [ "$1" = unproxy ]; then
    echo "Nginx could not be restarted." >&2
    exit 1
fi
exec {shlex.quote(str(FAKES / "herd"))} "$@"
""")
    (shim / "herd").chmod(0o755)
    return shim


def _crash(session) -> None:
    """SIGKILL clave; then wait for the children it was waiting on (its process group) to
    end by themselves. What it started in sessions of their own lives on."""
    session.signal(signal.SIGKILL)
    assert session.wait() == KILLED
    wait_for(lambda: not _group(session.pid), 30, f"the children of clave {session.pid}")


def _group(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit() and _alive(int(entry.name)) and int(
                    (entry / "stat").read_text().rsplit(") ", 1)[1].split()[2]) == pgid:
                found.append(int(entry.name))
    return found


def _detached(tmp_path: Path, statuses: dict[str, str]) -> Path:
    """A project directory and session rows (id: status) whose clave died; no VM at all."""
    from clave.home import Home
    from clave.store import Store

    project = tmp_path / "app"
    project.mkdir()
    with Store.open(Home.from_env()) as store:
        for sid, status in statuses.items():
            store.add(session_id=sid, project_name="app", project_dir=str(project),
                      status=status, clave_pid=_dead_pid())
    return project


def _detached_rows() -> dict[str, str]:
    from clave.home import Home
    from clave.store import Store

    with Store.open(Home.from_env()) as store:
        return {r.session_id: r.status.value for r in store.sessions()}


def _resume(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clave", "--resume", *args], cwd=project,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=CLI_TIMEOUT)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _verbs(world: World) -> list[str]:
    return [call["argv"][0] for call in world.tart_calls()]


def _clave(world: World, *args: str, path: Path | None = None) -> subprocess.CompletedProcess:
    """`clave ARGS` in the project, off a terminal (plain output); `path`: programs that
    come before the fakes."""
    env = {**world.env, "PATH": f"{path}:{world.env['PATH']}"} if path else world.env
    return subprocess.run([sys.executable, "-m", "clave", *args], cwd=world.project,
                          env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=CLI_TIMEOUT)


def _listed(text: str) -> set[tuple[str, str]]:
    """(KIND, NAME) of each row of cleanup's table; NAME may hold one space (`pid N`)."""
    rows = set()
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] not in ("vm", "tunnel", "proxy", "record", "clone", "share",
                                         "base"):
            continue
        name = " ".join(words[1:3]) if words[0] == "tunnel" else words[1]
        rows.add((words[0], name))
    return rows


def _line(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def _row(world: World) -> dict:
    rows = world.session_rows()
    assert len(rows) == 1, rows
    return rows[0]


def _vm_state(world: World, vm: str) -> str | None:
    listed = json.loads(world.tart("list", "--format", "json").stdout)
    return next((entry["State"] for entry in listed if entry["Name"] == vm), None)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=15) as response:
        return json.loads(response.read())


def _alive(pid: int | None) -> bool:
    """Any thread of pid still runs. A SIGKILLed process's main thread turns zombie before
    its other threads have exited and let go of its files (the forwarder's ports)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (OSError, TypeError):
        return False
    for task in tasks:
        with contextlib.suppress(OSError):
            if (task / "stat").read_text().rsplit(") ", 1)[1][:1] not in ("Z", "X"):
                return True
    return False


def _stopped(pid: int, port: int | None = None) -> None:
    """pid is gone, and with it its listener on port (the kernel closes it as it exits)."""
    wait_for(lambda: not _alive(pid) and not (port and _listening(port)), 10,
             f"process {pid} to be gone" + (f" and port {port} closed" if port else ""))


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def _occupied(port: int):
    """Another program listens on port meanwhile: this one, or one that was quicker (the
    machine's other test runs use the same port range)."""
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
        except OSError:
            assert _listening(port), f"port {port} is neither free nor listened on"
        yield


def _holding(root: Path) -> list[tuple[int, str, str]]:
    """(pid, comm, path) of every live process with an open file or cwd below root."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            links = [entry / "cwd", *(entry / "fd").iterdir()]
            for link in links:
                with contextlib.suppress(OSError):
                    target = os.readlink(link)
                    if target.startswith(f"{root}/") and _alive(int(entry.name)):
                        found.append((int(entry.name), (entry / "comm").read_text().strip(),
                                      target))
                        break
    return found


def _force_clean(world: World) -> None:
    """After a failure: remove what a session left, so the next test starts clean."""
    from tests.harness.fakevm import FakeVm
    from tests.harness.network import Network

    holders = {pid for pid, _what, _path in _holding(world.root)}
    for pid in holders:            # `tart run` (its VM goes with it), forwarders, ...
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not any(map(_alive, holders)), 10, "leftover processes to die")
    for record in Network.from_env().slots().values():
        if str(record.get("state_dir", "")).startswith(str(world.tart_home)):
            with contextlib.suppress(Exception):
                FakeVm(record).destroy()
