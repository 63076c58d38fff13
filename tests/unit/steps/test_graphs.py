"""The graphs read aloud as declared, and `build()` wires each step to its adapters."""

from __future__ import annotations

import pytest

from clave.engine import Engine
from clave.errors import ClaveError
from clave.steps.clone_vm import CloneVm
from clave.tasks import catalog
from clave.tasks.graph import build, node
from clave.tasks.preflight import PREFLIGHT
from clave.tasks.session import INTERACTIVE, SESSION, UP_TO


def deps(tasks) -> dict[str, tuple[str, ...]]:
    return {task.name: task.deps for task in tasks}


def test_preflight_runs_in_order_each_check_after_the_one_before(world):
    tasks = build(PREFLIGHT, world.adapters())
    order = ["validate_project", "get_git_branch", "ensure_vm_exists",
             "check_claude_authentication", "save_session"]
    assert Engine(tasks, world.ctx(), world.root / "p.db").order() == order
    assert deps(tasks) == {name: (order[i - 1],) if i else () for i, name in enumerate(order)}


def test_the_session_graph_has_the_dependencies_it_declares(world):
    tasks = build(SESSION, catalog.adapters(world.settings, world.home, store=world.store))
    assert deps(tasks) == {
        "clone_vm": (),
        "start_vm": ("clone_vm",),
        "clone_repo": ("start_vm",),
        "prepare_tunnel": ("start_vm",),
        "configure_herd_proxy": ("prepare_tunnel",),
        "boot_vm": ("start_vm", "clone_repo", "configure_herd_proxy"),
        "discover_gateway": ("boot_vm",),
        "create_ssh_tunnel": ("discover_gateway", "prepare_tunnel"),
        "bootstrap_laravel": ("create_ssh_tunnel", "configure_herd_proxy"),
        "check_host_services": ("bootstrap_laravel",),
        "run_claude_code": ("check_host_services",),
    }


def test_the_herd_proxy_is_configured_while_the_vm_boots(world):
    tasks = build(SESSION, catalog.adapters(world.settings, world.home, store=world.store))
    order = Engine(tasks, world.ctx(), world.root / "s.db").order()
    assert order.index("start_vm") < order.index("configure_herd_proxy") < order.index("boot_vm")


def test_the_vm_starts_before_the_code_is_cloned_so_the_two_overlap(world):
    tasks = build(SESSION, catalog.adapters(world.settings, world.home, store=world.store))
    order = Engine(tasks, world.ctx(), world.root / "s.db").order()
    assert order.index("start_vm") < order.index("clone_repo") < order.index("boot_vm")


def test_the_engine_stops_before_the_interactive_step(world):
    tasks = build(SESSION, catalog.adapters(world.settings, world.home, store=world.store))
    assert INTERACTIVE.task_name() not in Engine(tasks, world.ctx(), world.root / "s.db").order(
        UP_TO)


def test_steps_get_the_very_adapters_they_name(world):
    adapters = world.adapters()
    [task] = build((node(CloneVm),), adapters)
    assert task.step.tart is adapters["tart"] and task.step.store is adapters["store"]
    assert task.step.settings is adapters["settings"]


def test_build_names_the_step_and_the_adapter_it_is_missing(world):
    adapters = world.adapters()
    del adapters["tart"]
    with pytest.raises(TypeError, match=r"CloneVm needs adapters \['tart'\]"):
        build((node(CloneVm),), adapters)


def test_preflight_in_a_repository_that_is_not_laravel_stops_at_the_first_check(world):
    (world.project / "artisan").unlink()
    world.git("commit", "--quiet", "-am", "no artisan")
    ctx = world.ctx()
    before = sorted(p.name for p in world.project.iterdir())
    engine = Engine(build(PREFLIGHT, world.adapters()), ctx,
                    world.home.session_dir(ctx.session_id) / "preflight.db")
    with pytest.raises(ClaveError) as raised:
        engine.run(always=True)
    assert "is not a Laravel project (no artisan file)" in str(raised.value)
    assert str(world.project) in str(raised.value)
    assert raised.value.exit_code == 1
    assert sorted(p.name for p in world.project.iterdir()) == before
    assert ctx.base_branch is None                       # nothing after the check ran
    assert world.store.sessions() == [] and world.confirm.questions == []
