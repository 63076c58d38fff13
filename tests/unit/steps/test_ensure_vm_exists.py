"""EnsureVmExists: the base VM every session clones is there, or gets built first."""

from __future__ import annotations

import pytest

from clave.errors import ClaveError
from clave.steps.ensure_vm_exists import EnsureVmExists
from clave.support.tart import TartManager
from tests.unit.steps.world import BASE_VM


def ensure(world):
    return EnsureVmExists(TartManager(), world.settings, world.provision, world.confirm)


def test_a_present_base_asks_nothing_and_builds_nothing(world):
    step = ensure(world)
    step.run(world.ctx())
    assert world.confirm.questions == [] and world.provisioned == []
    assert step.done(world.ctx())


def test_a_missing_base_is_built_once_after_a_yes(world):
    world.tart("delete", BASE_VM)
    step = ensure(world)
    assert not step.done(world.ctx())
    step.run(world.ctx())
    assert world.provisioned == [BASE_VM]
    assert len(world.confirm.questions) == 1 and repr(BASE_VM) in world.confirm.questions[0]
    assert step.done(world.ctx())


@pytest.mark.parametrize("answer", [False, None], ids=["no", "cancelled"])
def test_declining_the_build_stops_with_the_command_that_builds_it(world, answer):
    world.tart("delete", BASE_VM)
    world.confirm.answer = answer
    with pytest.raises(ClaveError) as raised:
        ensure(world).run(world.ctx())
    assert "`clave provision`" in str(raised.value) and repr(BASE_VM) in str(raised.value)
    assert world.provisioned == [] and world.vms() == {}


def test_the_base_vm_name_comes_from_settings(world):
    from clave.config import Settings

    world.tart("clone", BASE_VM, "team-base")
    world.tart("delete", BASE_VM)
    step = EnsureVmExists(TartManager(), Settings.from_dict({"base_vm": "team-base"}),
                          world.provision, world.confirm)
    step.run(world.ctx())
    assert world.provisioned == [] and step.done(world.ctx())


def test_done_never_raises_when_tart_is_missing(world):
    step = EnsureVmExists(TartManager(binary="no-such-tart"), world.settings, world.provision,
                          world.confirm)
    assert step.done(world.ctx()) is False
