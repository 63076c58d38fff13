"""ValidateProject: clave runs from a Laravel project's root."""

from __future__ import annotations

from clave.context import SessionContext
from clave.steps.base import Step


class ValidateProject(Step):
    label = "Checking the project"

    def run(self, ctx: SessionContext) -> None:
        if not (ctx.project_dir / "artisan").is_file():
            ctx.abort(
                f"{ctx.project_dir} is not a Laravel project (no artisan file): "
                "run clave from the project's root directory."
            )

    def done(self, ctx: SessionContext) -> bool:
        return (ctx.project_dir / "artisan").is_file()
