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
CREDENTIALS = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def merge_claude_json(existing: str, version: str, api_key: str | None) -> str:
    """Keep the installer's keys; add onboarding, trust and bypass acceptance."""
    data = _object(existing)
    data.update(hasCompletedOnboarding=True, bypassPermissionsModeAccepted=True)
    data.setdefault("theme", "dark")
    if version:
        data["lastOnboardingVersion"] = version
    if api_key:   # Claude asks "use this API key?" once; the answer is keyed by its last 20
        suffix = api_key[-20:]
        responses = _child(data, "customApiKeyResponses")
        approved = [k for k in _list(responses, "approved") if k != suffix]
        responses["approved"] = [*approved, suffix]
        responses["rejected"] = [k for k in _list(responses, "rejected") if k != suffix]
    project = _child(_child(data, "projects"), PROJECT_DIR)
    project.update(hasTrustDialogAccepted=True, hasCompletedProjectOnboarding=True)
    project.setdefault("allowedTools", [])
    return json.dumps(data, indent=2) + "\n"


def merge_settings_json(existing: str) -> str:
    """Bypass mode without prompts, and nothing that outranks the credential clave hands over."""
    data = _object(existing)
    data.pop("apiKeyHelper", None)
    env = data.get("env")
    if isinstance(env, dict):        # settings' env block is applied to every session
        for name in COMPETING_AUTH:
            env.pop(name, None)
    data["skipDangerousModePermissionPrompt"] = True
    _child(data, "permissions")["defaultMode"] = "bypassPermissions"
    return json.dumps(data, indent=2) + "\n"


def env_file(credential_name: str, secret: str, environ: Mapping[str, str] | None = None) -> str:
    """A 0600 file the remote shell sources: the one credential plus presentation variables."""
    if credential_name not in CREDENTIALS:
        raise ValueError(f"{credential_name!r} is not a Claude Code credential variable "
                         f"({' or '.join(CREDENTIALS)}).")
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


def _object(text: str) -> dict:
    """The JSON object in text; an empty, unreadable or non-object file counts as {}."""
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _child(parent: dict, key: str) -> dict:
    """parent[key] as an object, replacing whatever non-object was there."""
    if not isinstance(parent.get(key), dict):
        parent[key] = {}
    return parent[key]


def _list(parent: dict, key: str) -> list:
    value = parent.get(key)
    return value if isinstance(value, list) else []


def _sh(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"
