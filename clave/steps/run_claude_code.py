"""RunClaudeCode: hand the terminal to Claude Code in the VM, as admin, in /srv/project."""

from __future__ import annotations

from clave.context import SessionContext
from clave.steps.base import Step
from clave.support import claude_config
from clave.support.ssh import SshExecutor

ENV_FILE = ".clave/env"   # relative to admin's home; removed as soon as the shell read it
CLAUDE = "claude --dangerously-skip-permissions"


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
        home = self.ssh.run("printf %s \"$HOME\"", check=True).stdout.strip()
        version = self.ssh.run("PATH=\"$HOME/.local/bin:$PATH\" claude --version 2>/dev/null "
                               "| awk '{print $1; exit}'").stdout.strip()
        existing = self.ssh.run("cat ~/.claude.json 2>/dev/null").stdout
        api_key = credential.secret if credential.env_name == "ANTHROPIC_API_KEY" else None
        settings = self.ssh.run("cat ~/.claude/settings.json 2>/dev/null").stdout
        self.ssh.run("mkdir -p -m 700 ~/.claude ~/.clave", check=True)
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

    def run(self, ctx: SessionContext) -> None:
        self.prepare(ctx)
        ctx.exit_code = self.ssh.interactive(launch_command())

    def undo(self, ctx: SessionContext) -> None:
        """The credential file is read and removed at launch; the VM is deleted anyway."""
