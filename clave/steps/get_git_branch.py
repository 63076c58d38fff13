"""GetGitBranch: the session branches off the branch the user is on."""

from __future__ import annotations

from clave.context import SessionContext
from clave.steps.base import Step
from clave.support.git import GitManager


class GetGitBranch(Step):
    label = "Reading the git branch"

    def __init__(self, git: GitManager):
        self.git = git

    def run(self, ctx: SessionContext) -> None:
        if not self.git.is_repo(ctx.project_dir):
            ctx.abort(f"{ctx.project_dir} is not a git repository: run `git init` and commit "
                      "the project first, so the session can work on its own branch.")
        root = self.git.root(ctx.project_dir)
        if root.resolve() != ctx.project_dir.resolve():
            ctx.abort(f"run clave from the repository's root ({root}), not from a subdirectory.")
        ctx.base_branch = self.git.current_branch(ctx.project_dir)

    def done(self, ctx: SessionContext) -> bool:
        """The base branch is fixed when the session starts (a resume keeps it)."""
        return ctx.base_branch is not None
