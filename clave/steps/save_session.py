"""SaveSession: the session's row is the journal every later step writes to first."""

from __future__ import annotations

import os

from clave.context import SessionContext
from clave.steps.base import Step
from clave.store import Store
from clave.support import process


class SaveSession(Step):
    label = "Saving the session"

    def __init__(self, store: Store):
        self.store = store

    def run(self, ctx: SessionContext) -> None:
        if self.store.get(ctx.session_id) is None:
            self.store.add(
                session_id=ctx.session_id,
                project_name=ctx.project_name,
                project_dir=str(ctx.project_dir),
                base_branch=ctx.base_branch,
                services_mode=ctx.services_mode.value,
                status="starting",
                clave_pid=os.getpid(),
                clave_started=process.started(os.getpid()),
            )

    def undo(self, ctx: SessionContext) -> None:
        self.store.remove(ctx.session_id)

    def done(self, ctx: SessionContext) -> bool:
        return self.store.get(ctx.session_id) is not None
