"""SaveSession: the session's row exists before any step journals a resource into it."""

from __future__ import annotations

import os

from clave.context import ServicesMode
from clave.steps.save_session import SaveSession
from clave.store import SessionStatus


def test_the_row_holds_the_project_its_branch_and_the_services_mode(world):
    ctx = world.ctx(base_branch="main", services_mode=ServicesMode.GATEWAY)
    SaveSession(world.store).run(ctx)
    record = world.store.get(ctx.session_id)
    assert (record.project_name, record.project_dir, record.base_branch) == (
        "shop", world.project, "main")
    assert (record.services_mode, record.status) == ("gateway", SessionStatus.STARTING)
    assert record.clave_pid == os.getpid()        # while this process lives, cleanup keeps out


def test_running_it_again_keeps_the_one_row(world):
    ctx = world.ctx(base_branch="main")
    save = SaveSession(world.store)
    save.run(ctx)
    world.store.record(ctx.session_id, vm_name="clave-abcd1234")
    save.run(ctx)
    assert [r.session_id for r in world.store.sessions()] == [ctx.session_id]
    assert world.store.get(ctx.session_id).vm_name == "clave-abcd1234"


def test_undo_removes_the_row_and_only_that_row(world):
    other = world.saved_ctx("other123")
    ctx = world.ctx(base_branch="main")
    save = SaveSession(world.store)
    save.run(ctx)
    save.undo(ctx)
    assert world.store.get(ctx.session_id) is None
    assert world.store.get(other.session_id) is not None
    assert not save.done(ctx)
