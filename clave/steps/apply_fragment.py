"""ApplyFragment: one provisioning fragment, up to date when the base has its digest."""

from __future__ import annotations

from clave.context import SessionContext
from clave.provision.build import ImageBuild
from clave.provision.pipeline import Fragment
from clave.steps.base import Step


class ApplyFragment(Step):
    def __init__(self, build: ImageBuild, fragment: Fragment):
        self.build, self.fragment = build, fragment
        self.label = f"{fragment.key}: {fragment.description}"

    def run(self, ctx: SessionContext) -> None:
        self.build.apply(self.fragment)

    def done(self, ctx: SessionContext) -> bool:
        return self.build.why_stale(self.fragment) is None

    def why(self) -> str | None:
        return self.build.why_stale(self.fragment)
