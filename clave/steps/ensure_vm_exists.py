"""EnsureVmExists: a session clones the provisioned base VM, so it must exist first."""

from __future__ import annotations

from collections.abc import Callable

from clave.context import SessionContext
from clave.errors import ClaveError
from clave.steps.base import Step
from clave.support.tart import TartManager

Confirm = Callable[[str, bool], "bool | None"]


class EnsureVmExists(Step):
    label = "Checking the base VM"

    def __init__(self, tart: TartManager, settings, provision: Callable[[], None],
                 confirm: Confirm):
        self.tart, self.settings = tart, settings
        self.provision, self.confirm = provision, confirm

    def run(self, ctx: SessionContext) -> None:
        base = self.settings.get("base_vm")
        if self.tart.exists(base):
            return
        question = (f"The base VM {base!r} does not exist yet. Build it now? "
                    "(about 10 minutes, once)")
        if not self.confirm(question, True):
            ctx.abort(f"the base VM {base!r} is missing: run `clave provision` to build it.")
        self.provision()

    def done(self, ctx: SessionContext) -> bool:
        try:
            return self.tart.exists(self.settings.get("base_vm"))
        except ClaveError:
            return False
