"""CloneVm: clave-<id>, cloned from the base, resized, with a MAC of its own."""

from __future__ import annotations

import json

import pytest

from clave.errors import ClaveError
from clave.steps.clone_vm import CloneVm
from clave.support.tart import TartManager
from tests.unit.steps.world import BASE_VM, CPUS, MEMORY

VM = "clave-abcd1234"


@pytest.fixture
def tart_log(world, monkeypatch):
    log = world.root / "tart-argv.log"
    monkeypatch.setenv("FAKE_TART_LOG", str(log))

    def calls() -> list[list[str]]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [json.loads(line)["argv"] for line in lines]

    return calls


def clone_vm(world, tart=None):
    return CloneVm(tart or TartManager(), world.store, world.settings)


def test_the_vm_is_cloned_from_the_base_then_set_with_cpus_memory_and_a_random_mac(
        world, tart_log):
    ctx = world.saved_ctx()
    clone_vm(world).run(ctx)
    changing = [argv for argv in tart_log() if argv[0] in ("clone", "set")]
    assert changing == [["clone", BASE_VM, VM],
                        ["set", VM, "--cpu", str(CPUS), "--memory", str(MEMORY), "--random-mac"]]
    assert ctx.vm_name == VM and world.vms() == {BASE_VM: "stopped", VM: "stopped"}


def test_the_clone_really_has_its_own_resources_and_mac(world):
    clone_vm(world).run(world.saved_ctx())
    base, mine = world.vm_config(BASE_VM), world.vm_config(VM)
    assert (mine["cpuCount"], mine["memorySize"]) == (CPUS, MEMORY * 1024 * 1024)
    assert mine["macAddress"] != base["macAddress"]


def test_the_journal_names_the_vm_before_tart_is_asked_to_clone_it(world, monkeypatch):
    monkeypatch.setenv("FAKE_TART_FAIL", "clone")
    ctx = world.saved_ctx()
    with pytest.raises(ClaveError, match="injected failure"):
        clone_vm(world).run(ctx)
    assert world.store.get(ctx.session_id).vm_name == VM     # `clave cleanup` can find it
    assert VM not in world.vms()


def test_a_failed_set_leaves_a_journalled_vm_that_undo_removes(world, monkeypatch):
    monkeypatch.setenv("FAKE_TART_FAIL", "set")
    ctx = world.saved_ctx()
    step = clone_vm(world)
    with pytest.raises(ClaveError):
        step.run(ctx)
    assert VM in world.vms() and world.store.get(ctx.session_id).vm_name == VM
    monkeypatch.delenv("FAKE_TART_FAIL")
    step.undo(ctx)
    assert world.leftovers() == []


def test_a_vm_of_the_same_name_is_never_silently_replaced(world):
    world.tart("clone", BASE_VM, VM)
    world.tart("set", VM, "--cpu", "7")
    with pytest.raises(ClaveError, match="already exists"):
        clone_vm(world).run(world.saved_ctx())
    assert world.vm_config(VM)["cpuCount"] == 7


def test_undo_deletes_the_vm_and_clears_the_journal(world):
    ctx = world.saved_ctx()
    step = clone_vm(world)
    step.run(ctx)
    step.undo(ctx)
    assert world.vms() == {BASE_VM: "stopped"}
    record = world.store.get(ctx.session_id)
    assert (record.vm_name, record.vm_ip) == (None, None)
    assert not step.done(ctx)


def test_undo_stops_a_running_vm_before_deleting_it(world):
    ctx = world.saved_ctx()
    step = clone_vm(world)
    step.run(ctx)
    world.start_vm(VM)
    step.undo(ctx)
    assert world.vms() == {BASE_VM: "stopped"}


def test_undo_after_a_crash_finds_the_vm_by_its_session_name(world):
    ctx = world.saved_ctx()
    clone_vm(world).run(ctx)
    fresh = world.ctx()                     # a new process: nothing in memory
    clone_vm(world).undo(fresh)
    assert VM not in world.vms()


def test_undo_leaves_the_base_and_other_sessions_vms_alone(world):
    world.tart("clone", BASE_VM, "clave-efgh5678")
    ctx = world.saved_ctx()
    step = clone_vm(world)
    step.run(ctx)
    step.undo(ctx)
    assert set(world.vms()) == {BASE_VM, "clave-efgh5678"}
