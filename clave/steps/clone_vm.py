"""CloneVm: the session's own VM, a clone of the provisioned base."""

from __future__ import annotations

from clave.context import SessionContext
from clave.errors import ClaveError
from clave.home import Home
from clave.locks import file_lock
from clave.steps.base import Step
from clave.store import Store
from clave.support.tart import TartManager


class CloneVm(Step):
    label = "Cloning the VM"

    def __init__(self, tart: TartManager, store: Store, settings, home: Home | None = None):
        self.tart, self.store, self.settings = tart, store, settings
        self.home = home or Home.from_env()

    def run(self, ctx: SessionContext) -> None:
        ctx.vm_name = ctx.default_vm_name
        self.store.record(ctx.session_id, vm_name=ctx.vm_name)     # intent first
        # shared: many sessions clone at once; `clave provision` swaps the base exclusively
        with file_lock(self.home.base_lock, shared=True,
                       on_wait=lambda: ctx.hint("waiting for `clave provision` to swap the base")):
            self.tart.clone(self.settings.get("base_vm"), ctx.vm_name)
        self.tart.set(
            ctx.vm_name,
            cpus=self.settings.get("vm.cpus"),
            memory=self.settings.get("vm.memory"),
            disk_size=self.settings.get("vm.disk_size"),
            random_mac=True,   # identical MACs make `tart ip` answer with another VM's lease
        )

    def undo(self, ctx: SessionContext) -> None:
        name = ctx.vm_name or ctx.default_vm_name
        self.tart.destroy(name)     # StartVm.undo stopped it, unless that failed
        self.store.forget(ctx.session_id, "vm_name", "vm_ip")

    def done(self, ctx: SessionContext) -> bool:
        try:
            return self.tart.exists(ctx.vm_name or ctx.default_vm_name)
        except ClaveError:
            return False
