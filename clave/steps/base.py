"""The Step contract (the plan's Step / ProgressAware / AcceptsProgress).

`engine.py` turns a Step into a doit task: `run` is the action, `undo` the clean action,
`done` the up-to-date check. Steps never import doit, blessed or each other; they are
handed their adapters in `__init__` and speak through `ctx.hint()` / `ctx.info()`.
"""

from __future__ import annotations

import re

from clave.context import SessionContext


class Step:
    label: str = ""

    def run(self, ctx: SessionContext) -> None:
        """Do it. Record every resource in ctx and the journal BEFORE creating it."""
        raise NotImplementedError

    def undo(self, ctx: SessionContext) -> None:
        """Idempotent; safe when run() never happened or half happened. Ask the world."""

    def done(self, ctx: SessionContext) -> bool:
        """A live health check (for --resume and provision --update). Never raises."""
        return False

    @classmethod
    def task_name(cls) -> str:
        """CloneVm -> clone_vm: the doit task name and the file name of the step."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
