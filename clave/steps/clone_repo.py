"""CloneRepo: the session's own complete copy of the code, on its own branch."""

from __future__ import annotations

from clave.context import SessionContext
from clave.errors import ClaveError
from clave.steps.base import Step
from clave.store import Store
from clave.support.git import GitManager


class CloneRepo(Step):
    label = "Cloning the code"

    def __init__(self, git: GitManager, store: Store, settings):
        self.git, self.store, self.settings = git, store, settings

    def run(self, ctx: SessionContext) -> None:
        ctx.clone_path = ctx.clone_path or ctx.default_clone_path
        ctx.clone_branch = ctx.session_branch
        self.store.record(ctx.session_id, clone_path=str(ctx.clone_path),
                          clone_branch=ctx.clone_branch)
        self.git.ensure_ignored(ctx.project_dir, ".clave/")
        self.git.clone_local(ctx.project_dir, ctx.clone_path, ctx.clone_branch)
        copied = self.git.copy_ignored_files(ctx.project_dir, ctx.clone_path,
                                             self.settings.get("git.copy_files"))
        if copied:
            ctx.hint("copied " + ", ".join(p.name for p in copied))

    def undo(self, ctx: SessionContext) -> None:
        """Nothing: the clone holds the user's work; keep/merge/discard decides its fate."""

    def done(self, ctx: SessionContext) -> bool:
        try:
            return ctx.clone_path is not None and self.git.clone_exists(ctx.clone_path)
        except ClaveError:
            return False
