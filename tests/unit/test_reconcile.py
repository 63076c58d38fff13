"""Reconcile: what crashed sessions left (fake tart and herd, real git and SQLite), removed.

A session is live while its clave process runs (`clave_pid`); only dead sessions' things are
leftovers, and a leftover clone is kept with its branch saved, never deleted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clave.errors import ClaveError
from clave.reconcile import Leftover, find_leftovers, remove_all
from clave.support import process
from clave.support.git import GitManager
from clave.support.herd import HerdManager
from clave.support.tart import TartManager
from tests.unit.steps.world import BASE_VM, PROJECT, base_template, world_fixture  # noqa: F401

DEAD, LIVE = "abcd1234", "live5678"


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def session_row(world, sid: str, pid: int, **values) -> None:
    world.store.add(session_id=sid, project_name=PROJECT, project_dir=str(world.project),
                    base_branch="main", status="running", clave_pid=pid, **values)


def make_clone(world, sid: str) -> Path:
    clone = world.project / ".clave" / "wt" / f"s-{sid}"
    GitManager().clone_local(world.project, clone, f"clave/s-{sid}")
    (clone / "feature.txt").write_text("unmerged work\n")
    world.git("add", "feature.txt", cwd=clone)
    world.git("commit", "--quiet", "-m", "Work in progress", cwd=clone)
    return clone


def running_session(world, sid: str, pid: int, port: int) -> Path:
    """A session's running VM, proxy, clone and record, owned by the clave with `pid`."""
    vm, proxy = f"clave-{sid}", f"{PROJECT}-{sid}"
    clone = make_clone(world, sid)
    world.tart("clone", BASE_VM, vm)
    world.start_vm(vm)
    HerdManager().proxy(proxy, f"http://127.0.0.1:{port}")
    session_row(world, sid, pid, vm_name=vm, proxy_name=proxy, clone_path=str(clone),
                clone_branch=f"clave/s-{sid}")
    return clone


@pytest.fixture
def crashed(world):
    """A session whose clave was SIGKILLed mid-run: running VM, proxy, clone, record."""
    return running_session(world, DEAD, dead_pid(), 8123)


@pytest.fixture
def live(world):
    """A session whose clave is this very process."""
    return running_session(world, LIVE, os.getpid(), 8124)


def leftovers(world, provisioning: bool = False) -> list[Leftover]:
    return find_leftovers(world.store, TartManager(), HerdManager(), GitManager(), world.home,
                          BASE_VM, provisioning)


def named(found: list[Leftover]) -> set[tuple[str, str]]:
    return {(x.kind, x.name) for x in found}


def test_a_dead_sessions_vm_proxy_clone_and_record_are_found(world, crashed):
    assert named(leftovers(world)) == {("vm", f"clave-{DEAD}"), ("proxy", f"shop-{DEAD}"),
                                      ("clone", str(crashed)), ("record", DEAD)}


def test_finding_changes_nothing(world, crashed):
    before = (world.vms(), world.proxies(), world.store.sessions())
    leftovers(world)
    assert (world.vms(), world.proxies(), world.store.sessions()) == before


def test_removing_them_leaves_no_vm_proxy_or_record_and_keeps_the_work(world, crashed):
    assert remove_all(leftovers(world)) == []
    assert world.vms() == {BASE_VM: "stopped"} and world.proxies() == []
    assert world.store.sessions() == []
    assert (crashed / "feature.txt").read_text() == "unmerged work\n"
    assert world.git("show", f"clave/s-{DEAD}:feature.txt") == "unmerged work\n"


def test_a_live_sessions_things_are_never_leftovers(world, crashed, live):
    found = leftovers(world)
    assert not any(LIVE in x.name for x in found) and not any(LIVE in str(x) for x in found)
    remove_all(found)
    assert world.vms()[f"clave-{LIVE}"] == "running"
    assert [p.site for p in world.proxies()] == [f"shop-{LIVE}"]
    assert [r.session_id for r in world.store.sessions()] == [LIVE]
    assert world.git("branch", "--list", f"clave/s-{LIVE}") == ""   # its clone is untouched


def test_a_session_vm_with_no_record_at_all_is_an_orphan(world):
    world.tart("clone", BASE_VM, "clave-zz99yy88")
    assert named(leftovers(world)) == {("vm", "clave-zz99yy88")}


def test_the_base_and_vms_that_are_not_clave_sessions_are_left_alone(world):
    for name in ("my-ubuntu", "clave-notasession", "clave-ABCD1234"):
        world.tart("clone", BASE_VM, name)
    assert leftovers(world) == []


def test_a_build_vm_is_a_leftover_only_while_no_provisioning_runs(world):
    world.tart("clone", BASE_VM, f"{BASE_VM}-build")
    world.tart("clone", BASE_VM, f"{BASE_VM}-old-1733240000")
    assert named(leftovers(world)) == {("vm", f"{BASE_VM}-build"),
                                      ("vm", f"{BASE_VM}-old-1733240000")}
    assert leftovers(world, provisioning=True) == []


def test_a_base_lost_between_the_swap_renames_is_restored_from_the_newest_old_one(world):
    world.tart("rename", BASE_VM, f"{BASE_VM}-old-1733240000")
    world.tart("clone", f"{BASE_VM}-old-1733240000", f"{BASE_VM}-old-1733249999")
    found = leftovers(world)
    assert named(found) == {("base", f"{BASE_VM}-old-1733249999"),
                            ("vm", f"{BASE_VM}-old-1733240000")}
    remove_all(found)
    assert set(world.vms()) == {BASE_VM}


def test_a_dead_sessions_forwarder_is_stopped(world):
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                              "-m", "clave.support.tunnel"])
    try:
        session_row(world, DEAD, dead_pid(), tunnel_pid=decoy.pid, tunnel_port=8123)
        found = leftovers(world)
        assert ("tunnel", f"pid {decoy.pid}") in named(found)
        remove_all(found)
        assert decoy.wait(timeout=10) != 0
    finally:
        decoy.kill()
        decoy.wait()


def test_a_recorded_pid_that_is_not_a_forwarder_is_never_signalled(world):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        session_row(world, DEAD, dead_pid(), tunnel_pid=bystander.pid)
        assert named(leftovers(world)) == {("record", DEAD)}
        remove_all(leftovers(world))
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_an_empty_share_directory_of_a_dead_session_is_removed(world):
    share = world.project / ".clave" / "wt" / f"s-{DEAD}"
    share.mkdir(parents=True)
    session_row(world, DEAD, dead_pid(), clone_path=str(share))
    assert ("share", str(share)) in named(leftovers(world))
    assert remove_all(leftovers(world)) == []
    assert not share.exists()


def test_a_session_dir_with_logs_is_removed_with_its_record(world):
    session_row(world, DEAD, dead_pid())
    logs = world.home.session_dir(DEAD)
    logs.mkdir(parents=True)
    (logs / "tart-run.log").write_text("Stopping VM...\n")
    remove_all(leftovers(world))
    assert not logs.exists()


def test_one_failure_never_stops_the_others():
    removed: list[str] = []

    def fail() -> None:
        raise ClaveError("tart said no")

    first = Leftover("vm", "clave-abcd1234", "running", fail)
    second = Leftover("record", "abcd1234", "", lambda: removed.append("record"))
    failures = remove_all([first, second])
    assert [(x.name, str(err)) for x, err in failures] == [("clave-abcd1234", "tart said no")]
    assert removed == ["record"]


def test_a_session_whose_pid_another_process_now_holds_is_dead(world):
    # this process holds the recorded pid, but it is not the clave that started then
    session_row(world, DEAD, os.getpid(), clave_started="another-boot:12345")
    session_row(world, LIVE, os.getpid(), clave_started=process.started(os.getpid()))
    found = {x.name for x in leftovers(world) if x.kind == "record"}
    assert found == {DEAD}
