"""RunClaudeCode: hand the terminal to Claude Code in the VM, as admin, in /srv/project."""

from __future__ import annotations

from clave.context import SessionContext
from clave.steps.base import Step
from clave.support import claude_config
from clave.support.ssh import SshExecutor

ENV_FILE = ".clave/env"   # relative to admin's home; removed as soon as the shell read it
CLAUDE = "claude --dangerously-skip-permissions"
SECTION = "--clave-section--"
CLAUDE_VERSION_FILE = "/etc/clave/claude-version"   # written by the claude-code fragment
READ_STATE = (
    "mkdir -p -m 700 ~/.claude ~/.clave || exit 1; "
    f'printf "%s\\n{SECTION}\\n" "$HOME"; '
    f"cat {CLAUDE_VERSION_FILE} 2>/dev/null || "
    "PATH=\"$HOME/.local/bin:$PATH\" claude --version 2>/dev/null | awk '{print $1; exit}'; "
    f"echo {SECTION}; cat ~/.claude.json 2>/dev/null; echo; echo {SECTION}; "
    "cat ~/.claude/settings.json 2>/dev/null; true"
)


def launch_command() -> str:
    """Competing auth variables are unset first; the env file then sets the one credential."""
    unset = " ".join(claude_config.COMPETING_AUTH)
    return (f"cd {claude_config.PROJECT_DIR} && unset {unset} && . ~/{ENV_FILE} && "
            f"rm -f ~/{ENV_FILE} && export PATH=\"$HOME/.local/bin:$PATH\" && exec {CLAUDE}")


class RunClaudeCode(Step):
    label = "Starting Claude Code"

    def __init__(self, ssh: SshExecutor):
        self.ssh = ssh

    def prepare(self, ctx: SessionContext) -> None:
        """Seed ~/.claude.json and settings.json, and the 0600 credential file."""
        credential = ctx.credential
        home, version, existing, settings = self._read_state()
        api_key = credential.secret if credential.env_name == "ANTHROPIC_API_KEY" else None
        self.ssh.put_files({
            f"{home}/.claude.json":
                (claude_config.merge_claude_json(existing, version, api_key).encode(), 0o600),
            f"{home}/.claude/settings.json":
                (claude_config.merge_settings_json(settings).encode(), 0o600),
            f"{home}/.claude/CLAUDE.md":
                (claude_config.session_notes(ctx.app_url, ctx.bootstrap_failure).encode(), 0o644),
            f"{home}/{ENV_FILE}":
                (claude_config.env_file(credential.env_name, credential.secret).encode(), 0o600),
        })

    def _read_state(self) -> list[str]:
        """$HOME, Claude's version and the two settings files, in one round trip."""
        out = self.ssh.run(READ_STATE, check=True).stdout
        parts = [part.strip() for part in out.split(f"{SECTION}\n")]
        return parts + [""] * (4 - len(parts))

    def run(self, ctx: SessionContext) -> None:
        self.prepare(ctx)
        ctx.exit_code = self.ssh.interactive(launch_command())

    def undo(self, ctx: SessionContext) -> None:
        """The credential file is read and removed at launch; the VM is deleted anyway."""
