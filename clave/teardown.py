"""SessionTeardown: once, on every exit path — resources first, then the code's fate.

Order: the session graph's clean (unproxy, stop the tunnel, stop and delete the VM; each
guarded, failures reported), then keep / merge / discard, then the preflight clean (which
removes the session record). Signals are ignored meanwhile: a second Ctrl-C must not cut
a teardown in half.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable

from clave.context import OnExit, SessionContext
from clave.errors import ClaveError
from clave.home import Home
from clave.store import Store
from clave.support.git import GitManager

QUESTION = "What should happen to this session's code?"


class SessionTeardown:
    def __init__(self, ctx: SessionContext, session, preflight, git: GitManager,
                 store: Store, home: Home, ui):
        self.ctx, self.session, self.preflight = ctx, session, preflight
        self.git, self.store, self.home, self.ui = git, store, home, ui
        self.completed = False

    def run(self) -> list[ClaveError]:
        from clave.engine import signals_ignored

        if self.completed:
            return []
        self.completed = True
        with signals_ignored():
            self._status("tearing_down")
            self._hasten()
            # Engine.clean() has already reported each failure through ctx.warn
            failures = _unless_terminal_gone(self.session.clean) if self.session else []
            _unless_terminal_gone(self.handle_clone)
            failures += _unless_terminal_gone(self.preflight.clean)
            if not failures:
                shutil.rmtree(self.home.session_dir(self.ctx.session_id), ignore_errors=True)
            else:
                _unless_terminal_gone(lambda: self.ui.warn(
                    f"logs kept in {self.home.session_dir(self.ctx.session_id)}; "
                    "`clave cleanup` removes what is left."))
        return failures

    def _hasten(self) -> None:
        """The slow stops all start at once: the VM powers off and the forwarder ends
        while the undos ahead of theirs run; StartVm's and CreateSshTunnel's undos then
        wait for them in their turn."""
        from clave.support.tunnel import hasten_forwarder

        if self.ctx.tart_run is not None:
            self.ctx.tart_run.interrupt()
        if self.ctx.tunnel_pid:
            hasten_forwarder(self.ctx.tunnel_pid)

    def choose(self) -> OnExit:
        if self.ctx.on_exit is not None:
            return self.ctx.on_exit
        self._summarise()
        try:
            answer = self.ui.select(QUESTION, OnExit.options(), OnExit.KEEP.value)
        except (OSError, ClaveError):   # the terminal is gone (SIGHUP): the safe answer
            answer = None
        return OnExit.coerce(answer) or OnExit.KEEP

    def _summarise(self) -> None:
        """What is at stake, said before the question (a summary that fails says nothing)."""
        from clave.support.git_summary import summarise

        ctx = self.ctx
        if not ctx.base_branch:
            return
        try:
            summary = summarise(ctx.project_dir, ctx.clone_path, ctx.base_branch)
            for line in summary.lines(ctx.session_branch, ctx.base_branch):
                self.ui.info(line)
        except (ClaveError, OSError):
            return

    def handle_clone(self) -> None:
        ctx = self.ctx
        if ctx.clone_path is None:
            return
        if not self.git.clone_exists(ctx.clone_path):
            # StartVm shares the directory before CloneRepo fills it: an empty one is ours
            with contextlib.suppress(OSError):
                ctx.clone_path.rmdir()
            return
        action = self.choose()
        try:
            if action is OnExit.MERGE:
                self.git.merge_and_clean_clone(ctx.project_dir, ctx.clone_path,
                                               ctx.session_branch, ctx.base_branch)
                self.ui.info(f"merged {ctx.session_branch} into {ctx.base_branch}.")
            elif action is OnExit.DISCARD:
                backup = self.git.remove_clone(ctx.project_dir, ctx.clone_path,
                                               ctx.session_branch)
                self.ui.info(f"discarded the session; undo with `git branch "
                             f"{ctx.session_branch} {backup}`.")
            else:
                self._keep()
        except ClaveError as err:
            self.ui.warn(f"{action.value} did not happen: {err}")
            if action is not OnExit.KEEP and self.git.clone_exists(ctx.clone_path):
                # the record goes next: the branch in the project is what shows the work
                with contextlib.suppress(ClaveError):
                    self._keep()

    def _keep(self) -> None:
        ctx = self.ctx
        self.git.keep(ctx.project_dir, ctx.clone_path, ctx.session_branch)
        self.ui.info(f"kept the clone at {ctx.clone_path} on branch {ctx.session_branch} "
                     f"(also in your repository: `git merge {ctx.session_branch}` when ready).")

    def _status(self, status: str) -> None:
        with contextlib.suppress(ClaveError):
            self.store.record(self.ctx.session_id, status=status)


def _unless_terminal_gone(part: Callable[[], list[ClaveError] | None]) -> list[ClaveError]:
    """One part of the teardown. After SIGHUP (the terminal closed) every message fails with
    EIO: that must not stop the next part, or the session record would outlive the session."""
    try:
        return part() or []
    except OSError:
        return []
