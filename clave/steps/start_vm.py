"""StartVm: boot as early as possible; the code is cloned into the share while it boots."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from clave.context import SessionContext
from clave.errors import ClaveError
from clave.home import Home
from clave.steps.base import Step
from clave.store import Store
from clave.support.tart import TartManager

SHARE_TAG = "project"
COMPOSER_CACHE_TAG = "composer-cache"
OWN_STOP_TIMEOUT = 10   # seconds for our own `tart run` to stop before `tart stop` kills it


def composer_cache_dir(home: Home) -> Path:
    """Shared by every session, so a second install of the same composer.lock is fast."""
    return home.root / "cache" / "composer"


@dataclass
class TartRun:
    """This clave's `tart run` process: BootVm's wait for the address watches it, so a
    refused start (a missing VM, one already running) is reported at once in tart's own
    words instead of as a timeout a minute and a half later."""

    name: str
    proc: subprocess.Popen
    log: Path

    def interrupt(self) -> None:
        """SIGINT, as `tart stop` sends it: the VM powers off (tart.md §2.5)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)

    def stop(self, timeout: float) -> bool:
        """interrupt(), then wait for the exit: no `tart stop` process and no polling.
        False if it still runs after `timeout`."""
        self.interrupt()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def check(self, grace: float = 0) -> None:
        """Raise once `tart run` has exited (waiting up to `grace` s for it to)."""
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            return
        said = self.log.read_text(errors="replace").strip().splitlines()
        raise ClaveError(f"`tart run {self.name}` exited (exit {self.proc.returncode}) before "
                         f"the VM booted: {said[-1] if said else 'no output'} "
                         f"(log: {self.log}).")


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
        ctx.tart_run = TartRun(ctx.vm_name, proc, log)   # no waiting: the host work goes on

    def undo(self, ctx: SessionContext) -> None:
        if ctx.tart_run is None or not ctx.tart_run.stop(OWN_STOP_TIMEOUT):
            self.tart.stop(ctx.vm_name or ctx.default_vm_name)   # not running or gone: done
        self.store.forget(ctx.session_id, "tart_pid")

    def done(self, ctx: SessionContext) -> bool:
        if ctx.tart_run is not None and ctx.tart_run.proc.poll() is None:
            return True    # this process's `tart run`: starting or running
        try:
            return bool(ctx.vm_name) and self.tart.is_running(ctx.vm_name)
        except ClaveError:
            return False
