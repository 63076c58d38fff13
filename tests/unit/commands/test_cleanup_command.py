"""`clave cleanup [--dry-run]` after a crash: the fake tart holds an orphan VM, herd a proxy."""

from __future__ import annotations

import fcntl
import io
import os
import subprocess

import pytest

from clave import cli
from clave.commands import cleanup
from clave.home import Home
from clave.support.git import GitManager
from clave.support.herd import HerdManager
from clave.ui import Ui
from tests.unit.steps.world import BASE_VM, PROJECT, base_template, world_fixture  # noqa: F401

DEAD, LIVE = "abcd1234", "live5678"


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def crashed_session(world, sid: str, pid: int) -> None:
    """What a SIGKILLed clave leaves: a running VM, a proxy, a clone with work, a record."""
    clone = world.project / ".clave" / "wt" / f"s-{sid}"
    GitManager().clone_local(world.project, clone, f"clave/s-{sid}")
    (clone / "feature.txt").write_text("work\n")
    world.git("add", "feature.txt", cwd=clone)
    world.git("commit", "--quiet", "-m", "Work", cwd=clone)
    (clone / "draft.txt").write_text("not committed\n")
    world.tart("clone", BASE_VM, f"clave-{sid}")
    world.start_vm(f"clave-{sid}")
    HerdManager().proxy(f"{PROJECT}-{sid}", "http://127.0.0.1:8123")
    world.store.add(session_id=sid, project_name=PROJECT, project_dir=str(world.project),
                    base_branch="main", status="running", clave_pid=pid,
                    vm_name=f"clave-{sid}", proxy_name=f"{PROJECT}-{sid}",
                    clone_path=str(clone), clone_branch=f"clave/s-{sid}")


@pytest.fixture
def sessions(world):
    crashed_session(world, DEAD, dead_pid())
    crashed_session(world, LIVE, os.getpid())      # "crashed" in shape, but its clave runs
    return world


def screen() -> Ui:
    return Ui.create(out=io.StringIO(), err=io.StringIO(), stdin=io.StringIO(), environ={})


def cleanup_run(world, *, dry_run: bool, ui: Ui, home: Home | None = None) -> int:
    return cleanup.run(dry_run=dry_run, settings=world.settings, home=home or world.home, ui=ui)


def state(world):
    return world.vms(), world.proxies(), world.store.sessions(), world.git("branch", "--list")


def test_dry_run_lists_the_dead_sessions_leftovers_and_changes_nothing(sessions):
    world, ui = sessions, screen()
    before = state(world)
    assert cleanup_run(world, dry_run=True, ui=ui) == 0
    out = ui.out.getvalue()
    for kind, name in (("vm", f"clave-{DEAD}"), ("proxy", f"shop-{DEAD}"), ("record", DEAD),
                       ("clone", f"s-{DEAD}")):
        assert any(kind in line and name in line for line in out.splitlines()), (kind, out)
    assert LIVE not in out
    assert "without --dry-run" in out
    assert state(world) == before


def test_a_real_run_removes_vm_proxy_and_record_and_keeps_the_clone(sessions):
    world, ui = sessions, screen()
    assert cleanup_run(world, dry_run=False, ui=ui) == 0
    assert f"clave-{DEAD}" not in world.vms() and world.vms()[f"clave-{LIVE}"] == "running"
    assert [p.site for p in world.proxies()] == [f"shop-{LIVE}"]
    assert [r.session_id for r in world.store.sessions()] == [LIVE]
    clone = world.project / ".clave" / "wt" / f"s-{DEAD}"
    assert (clone / "draft.txt").read_text() == "not committed\n"        # kept as it was
    assert world.git("show", f"clave/s-{DEAD}:feature.txt") == "work\n"   # branch saved
    assert world.git("branch", "--list", f"clave/s-{LIVE}") == ""
    assert "Cleaned up 4 of 4." in ui.out.getvalue()


def test_a_second_run_finds_only_the_kept_clone(sessions):
    world = sessions
    cleanup_run(world, dry_run=False, ui=screen())
    ui = screen()
    assert cleanup_run(world, dry_run=True, ui=ui) == 0
    assert "Nothing to clean up." in ui.out.getvalue()


def test_a_removal_that_fails_is_named_the_rest_is_done_and_the_exit_is_1(
        sessions, monkeypatch):
    world, ui = sessions, screen()
    monkeypatch.setenv("FAKE_TART_FAIL", "delete")
    assert cleanup_run(world, dry_run=False, ui=ui) == 1
    assert f"could not remove vm clave-{DEAD}" in ui.err.getvalue()
    assert "injected failure" in ui.err.getvalue()
    assert [p.site for p in world.proxies()] == [f"shop-{LIVE}"]
    assert [r.session_id for r in world.store.sessions()] == [LIVE]
    monkeypatch.delenv("FAKE_TART_FAIL")
    assert cleanup_run(world, dry_run=False, ui=screen()) == 0      # the VM can still be found
    assert f"clave-{DEAD}" not in world.vms()


def test_without_a_database_only_vms_are_looked_at_and_none_is_created(world):
    world.tart("clone", BASE_VM, f"clave-{DEAD}")
    fresh = Home(world.root / "fresh-home")
    ui = screen()
    assert cleanup_run(world, dry_run=False, ui=ui, home=fresh) == 0
    assert world.vms() == {BASE_VM: "stopped"}
    assert not fresh.db.exists()


def test_a_build_vm_is_left_alone_while_provisioning_holds_its_lock(world):
    world.tart("clone", BASE_VM, f"{BASE_VM}-build")
    with world.home.provision_lock.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ui = screen()
        assert cleanup_run(world, dry_run=False, ui=ui) == 0
        assert "Nothing to clean up." in ui.out.getvalue()
    assert cleanup_run(world, dry_run=False, ui=screen()) == 0
    assert world.vms() == {BASE_VM: "stopped"}


def test_the_cli_runs_it_from_the_project(sessions, monkeypatch, capsys):
    monkeypatch.chdir(sessions.project)
    assert cli.main(["cleanup", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"clave-{DEAD}" in out and LIVE not in out
    assert f"clave-{DEAD}" in sessions.vms()
