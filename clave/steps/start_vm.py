"""StartVm: boot as early as possible; the code is cloned into the share while it boots."""

from __future__ import annotations

from pathlib import Path

from clave.context import SessionContext
from clave.errors import ClaveError
from clave.home import Home
from clave.steps.base import Step
from clave.store import Store
from clave.support.tart import TartManager

SHARE_TAG = "project"
COMPOSER_CACHE_TAG = "composer-cache"


def composer_cache_dir(home: Home) -> Path:
    """Shared by every session, so a second install of the same composer.lock is fast."""
    return home.root / "cache" / "composer"


class StartVm(Step):
    label = "Starting the VM"

    def __init__(self, tart: TartManager, store: Store, home: Home):
        self.tart, self.store, self.home = tart, store, home

    def run(self, ctx: SessionContext) -> None:
        ctx.clone_path = ctx.clone_path or ctx.default_clone_path
        # Tart resolves shares when it starts: the directory must exist (empty is fine).
        ctx.clone_path.mkdir(parents=True, exist_ok=True)
        cache = composer_cache_dir(self.home)
        cache.mkdir(parents=True, exist_ok=True)
        log = self.home.session_dir(ctx.session_id) / "tart-run.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = self.tart.run_background(
            ctx.vm_name, {SHARE_TAG: ctx.clone_path, COMPOSER_CACHE_TAG: cache}, log)
        ctx.tart_pid = proc.pid
        self.store.record(ctx.session_id, tart_pid=proc.pid)

    def undo(self, ctx: SessionContext) -> None:
        name = ctx.vm_name or ctx.default_vm_name
        if self.tart.exists(name) and self.tart.is_running(name):
            self.tart.stop(name)
        self.store.forget(ctx.session_id, "tart_pid")

    def done(self, ctx: SessionContext) -> bool:
        try:
            return bool(ctx.vm_name) and self.tart.is_running(ctx.vm_name)
        except ClaveError:
            return False
