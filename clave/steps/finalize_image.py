"""FinalizeImage: shut the build VM down cleanly and swap it in as the base."""

from __future__ import annotations

from clave.context import SessionContext
from clave.provision.build import ImageBuild
from clave.steps.base import Step


class FinalizeImage(Step):
    label = "Finalizing the image"

    def __init__(self, build: ImageBuild):
        self.build = build

    def run(self, ctx: SessionContext) -> None:
        self.build.finalize(ctx.hint)

    def done(self, ctx: SessionContext) -> bool:
        return self.build.proc is None and not self.build.stale()

    def why(self) -> str | None:
        """For `clave tasks`: which steps make this one run."""
        return self.build.why_build()
