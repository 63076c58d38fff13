"""What Claude Code in the VM needs on disk to start without dialogs (claude-code.md §3)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

PROJECT_DIR = "/srv/project"
COMPETING_AUTH = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN",
                  "ANTHROPIC_BASE_URL", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX",
                  "CLAUDE_CODE_USE_FOUNDRY")
FORWARDED = re.compile(r"^(TERM|COLORTERM|FORCE_COLOR|NO_COLOR|LANG|LC_[A-Z]+|TZ|VISUAL|"
                       r"TERM_PROGRAM(_VERSION)?|GIT_(AUTHOR|COMMITTER)_(NAME|EMAIL))$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def merge_claude_json(existing: str, version: str, api_key: str | None) -> str:
    """Keep the installer's keys; add onboarding, trust and bypass acceptance."""
    try:
        data = json.loads(existing) if existing.strip() else {}
    except json.JSONDecodeError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    data.update(hasCompletedOnboarding=True, bypassPermissionsModeAccepted=True)
    data.setdefault("theme", "dark")
    if version:
        data["lastOnboardingVersion"] = version
    if api_key:
        responses = data.setdefault("customApiKeyResponses", {"approved": [], "rejected": []})
        approved = responses.setdefault("approved", [])
        if api_key[-20:] not in approved:
            approved.append(api_key[-20:])
    project = data.setdefault("projects", {}).setdefault(PROJECT_DIR, {})
    project.update(hasTrustDialogAccepted=True, hasCompletedProjectOnboarding=True)
    project.setdefault("allowedTools", [])
    return json.dumps(data, indent=2) + "\n"


def merge_settings_json(existing: str) -> str:
    try:
        data = json.loads(existing) if existing.strip() else {}
    except json.JSONDecodeError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    data.pop("apiKeyHelper", None)   # it would outrank the credential clave hands over
    data["skipDangerousModePermissionPrompt"] = True
    data.setdefault("permissions", {})["defaultMode"] = "bypassPermissions"
    return json.dumps(data, indent=2) + "\n"


def env_file(credential_name: str, secret: str, environ: Mapping[str, str] | None = None) -> str:
    """A 0600 file the remote shell sources: the one credential plus presentation variables."""
    env = os.environ if environ is None else environ
    values = {k: v for k, v in env.items() if FORWARDED.match(k)}
    values[credential_name] = secret
    return "".join(f"export {k}={_sh(v)}\n" for k, v in sorted(values.items())
                   if _ENV_NAME.match(k))


def session_notes(app_url: str | None, bootstrap_failure: str | None) -> str:
    """User memory for the agent: where its app runs and what did not work."""
    lines = ["# clave session", "",
             f"You are in a disposable clave VM; the project is at {PROJECT_DIR}."]
    if app_url:
        lines.append(f"The app is served at {app_url} (nginx + php-fpm in this VM serve "
                     "http://127.0.0.1/).")
    if bootstrap_failure:
        lines += ["", "The automatic bootstrap failed; please fix it first:", "",
                  "```", bootstrap_failure, "```"]
    return "\n".join(lines) + "\n"


def _sh(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"
