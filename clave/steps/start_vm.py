"""StartVm: boot as early as possible; the code is cloned into the share while it boots."""

from __future__ import annotations

import time
from pathlib import Path

from clave.context import SessionContext
from clave.errors import ClaveError
from clave.home import Home
from clave.steps.base import Step
from clave.store import Store
from clave.support.tart import TartManager

SHARE_TAG = "project"
COMPOSER_CACHE_TAG = "composer-cache"
START_TIMEOUT = 30   # seconds for `tart run` to take the VM's lock (it does so before booting)


def composer_cache_dir(home: Home) -> Path:
    """Shared by every session, so a second install of the same composer.lock is fast."""
    return home.root / "cache" / "composer"


class StartVm(Step):
    label = "Starting the VM"

    def __init__(self, tart: TartManager, store: Store, home: Home):
        self.tart, self.store, self.home = tart, store, home

    def run(self, ctx: SessionContext) -> None:
        ctx.clone_path = ctx.clone_path or ctx.default_clone_path
        self.store.record(ctx.session_id, clone_path=ctx.clone_path)   # cleanup finds it
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
        self._wait_until_running(ctx.vm_name, proc, log)

    def _wait_until_running(self, name: str, proc, log: Path) -> None:
        """`tart run` takes the VM's lock at once; a tart that exits first says why in the log.

        Without this, a refused start (a missing VM, one already running) would only show
        as BootVm's IP timeout, a minute and a half later.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while not self.tart.is_running(name):
            if proc.poll() is not None:
                said = log.read_text(errors="replace").strip().splitlines()
                raise ClaveError(f"`tart run {name}` exited (exit {proc.returncode}) before "
                                 f"the VM started: {said[-1] if said else 'no output'} "
                                 f"(log: {log}).")
            if time.monotonic() > deadline:
                raise ClaveError(f"`tart run {name}` did not start the VM within "
                                 f"{START_TIMEOUT} s (log: {log}).")
            time.sleep(0.05)

    def undo(self, ctx: SessionContext) -> None:
        self.tart.stop(ctx.vm_name or ctx.default_vm_name)   # not running or gone: done
        self.store.forget(ctx.session_id, "tart_pid")

    def done(self, ctx: SessionContext) -> bool:
        try:
            return bool(ctx.vm_name) and self.tart.is_running(ctx.vm_name)
        except ClaveError:
            return False
