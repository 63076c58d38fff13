"""PrepareBuildVm: a temporary VM to provision, booted only when some step is stale."""

from __future__ import annotations

from clave.context import SessionContext
from clave.provision.build import ImageBuild
from clave.steps.base import Step


class PrepareBuildVm(Step):
    label = "Preparing the build VM"

    def __init__(self, build: ImageBuild):
        self.build = build

    def run(self, ctx: SessionContext) -> None:
        self.build.start(ctx.hint)

    def undo(self, ctx: SessionContext) -> None:
        self.build.remove_vm()

    def done(self, ctx: SessionContext) -> bool:
        return not self.build.stale()

    def why(self) -> str | None:
        """For `clave tasks`: which steps make this one run."""
        return self.build.why_build()
