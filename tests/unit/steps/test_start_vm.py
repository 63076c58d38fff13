"""StartVm: `tart run` in its own session, sharing the (not yet filled) clone directory."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from clave.errors import ClaveError
from clave.steps.boot_vm import BootVm
from clave.steps.start_vm import COMPOSER_CACHE_TAG, SHARE_TAG, StartVm, composer_cache_dir
from clave.support.ssh import SshExecutor
from clave.support.tart import TartManager
from tests.unit.steps.world import BASE_VM

VM = "clave-abcd1234"


class SharesSeen(TartManager):
    """The real adapter, noting whether each shared directory existed when `run` started."""

    seen: dict[str, bool]

    def run_background(self, name, shares, log_path):
        self.seen = {tag: Path(path).is_dir() for tag, path in shares.items()}
        return super().run_background(name, shares, log_path)


@pytest.fixture
def ctx(world):
    world.tart("clone", BASE_VM, VM)
    ctx = world.saved_ctx(vm_name=VM)
    world.store.record(ctx.session_id, vm_name=VM)     # as CloneVm left it
    return ctx


def run_file(world) -> dict:
    return json.loads((world.tart_home / "vms" / VM / ".fake-run.json").read_text())


def wait_running(world) -> None:
    deadline = time.monotonic() + 30
    while world.vms().get(VM) != "running" and time.monotonic() < deadline:
        time.sleep(0.02)


def started(step: StartVm, ctx, world) -> None:
    """StartVm.run, then wait for the VM to run (the step itself does not wait)."""
    step.run(ctx)
    wait_running(world)


def test_the_vm_runs_headless_and_its_pid_is_journalled(world, ctx):
    started(StartVm(TartManager(), world.store, world.home), ctx, world)
    run = run_file(world)
    assert run["pid"] == ctx.tart_pid == world.store.get(ctx.session_id).tart_pid
    assert run["argv"][:3] == ["run", VM, "--no-graphics"]


def test_tart_run_has_a_session_of_its_own_so_ctrl_c_never_reaches_the_vm(world, ctx):
    StartVm(TartManager(), world.store, world.home).run(ctx)
    assert os.getsid(ctx.tart_pid) == ctx.tart_pid != os.getsid(0)


def test_the_clone_directory_exists_and_is_shared_before_tart_starts(world, ctx):
    tart = SharesSeen()
    started(StartVm(tart, world.store, world.home), ctx, world)
    assert tart.seen == {SHARE_TAG: True, COMPOSER_CACHE_TAG: True}
    shares = {s["tag"]: s for s in run_file(world)["shares"]}
    assert shares[SHARE_TAG]["path"] == str(ctx.default_clone_path) == str(ctx.clone_path)
    assert shares[SHARE_TAG]["name"] is None                # mounted at /srv/project itself
    assert shares[COMPOSER_CACHE_TAG]["path"] == str(composer_cache_dir(world.home))
    assert list(ctx.clone_path.iterdir()) == []             # CloneRepo fills it later
    assert world.store.get(ctx.session_id).clone_path == ctx.clone_path   # cleanup finds it


def test_tart_output_goes_to_the_sessions_log(world, ctx):
    step = StartVm(TartManager(), world.store, world.home)
    started(step, ctx, world)
    step.undo(ctx)
    log = world.home.session_dir(ctx.session_id) / "tart-run.log"
    assert "Stopping VM..." in log.read_text()


def test_undo_stops_the_vm_keeps_it_for_clone_vm_and_clears_the_pid(world, ctx):
    step = StartVm(TartManager(), world.store, world.home)
    started(step, ctx, world)
    step.undo(ctx)
    assert ctx.tart_run.proc.returncode == 0        # its own tart run, stopped by SIGINT
    assert world.vms()[VM] == "stopped" and not step.done(ctx)
    assert world.store.get(ctx.session_id).tart_pid is None


def test_undo_of_a_vm_that_never_started_or_is_gone_is_a_no_op(world, ctx):
    step = StartVm(TartManager(), world.store, world.home)
    step.undo(ctx)
    world.tart("delete", VM)
    step.undo(ctx)
    assert world.vms() == {BASE_VM: "stopped"}


def test_run_does_not_wait_for_the_vm_and_its_tart_run_is_watched(world, ctx):
    step = StartVm(TartManager(), world.store, world.home)
    step.run(ctx)
    assert ctx.tart_run.proc.pid == ctx.tart_pid
    ctx.tart_run.check()                                    # running: nothing to say
    wait_running(world)
    assert step.done(ctx)


def test_a_vm_tart_refuses_to_run_is_reported_by_the_watch_with_tarts_own_words(world, ctx):
    world.tart("delete", VM)
    StartVm(TartManager(), world.store, world.home).run(ctx)
    assert world.store.get(ctx.session_id).tart_pid == ctx.tart_pid     # journalled anyway
    ctx.tart_run.proc.wait(timeout=30)
    with pytest.raises(ClaveError) as raised:
        ctx.tart_run.check()
    assert f'the specified VM "{VM}" does not exist' in str(raised.value)
    assert "tart-run.log" in str(raised.value)


def test_the_boot_stops_at_once_with_tart_runs_words_when_it_dies(world, ctx):
    world.tart("delete", VM)
    StartVm(TartManager(), world.store, world.home).run(ctx)
    with pytest.raises(ClaveError) as raised:
        BootVm(TartManager(), SshExecutor(), world.store, ctx.settings).run(ctx)
    assert f"`tart run {VM}` exited (exit " in str(raised.value)
    assert f'the specified VM "{VM}" does not exist' in str(raised.value)
