"""CheckClaudeAuthentication: Claude Code in the VM needs a credential from the host."""

from __future__ import annotations

import contextlib
import getpass
from collections.abc import Callable

from clave.context import SessionContext
from clave.steps.base import Step
from clave.support.auth import AuthManager

NO_CREDENTIAL = (
    "no Claude Code credential found: run `clave auth` (stores a `claude setup-token` token), "
    "or export CLAUDE_CODE_OAUTH_TOKEN or ANTHROPIC_API_KEY."
)


class CheckClaudeAuthentication(Step):
    label = "Checking Claude Code authentication"

    def __init__(self, auth: AuthManager, confirm: Callable[[str, bool], bool | None],
                 interactive: bool):
        self.auth, self.confirm, self.interactive = auth, confirm, interactive

    def run(self, ctx: SessionContext) -> None:
        credential = self.auth.resolve()
        if credential is None:
            if not self.interactive or not self.confirm(
                    "No Claude Code credential found. Set one up now with `clave auth`?", True):
                ctx.abort(NO_CREDENTIAL)
            # `claude setup-token` owns the terminal meanwhile: hide the progress display
            paused = getattr(ctx.ui, "paused", contextlib.nullcontext)
            with paused():
                credential = self.auth.setup_token(getpass.getpass)
        ctx.credential = credential
        ctx.hint(f"using {credential.method.replace('_', ' ')} from {credential.source}")

    def done(self, ctx: SessionContext) -> bool:
        return ctx.credential is not None
