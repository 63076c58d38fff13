"""Claude Code's pre-seeded state in the VM (claude-code.md §2-§3) and the credential file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from clave.support import claude_config
from clave.support.claude_config import (
    COMPETING_AUTH,
    PROJECT_DIR,
    env_file,
    merge_claude_json,
    merge_settings_json,
    session_notes,
)

API_KEY = "sk-ant-api03-" + "k" * 70 + "LAST20CHARSofTHEkey1"
TOKEN = "sk-ant-oat01-" + "t" * 90

# what the native installer and a first run leave in ~/.claude.json (shape from claude-code.md)
INSTALLED = {
    "numStartups": 1,
    "installMethod": "native",
    "autoUpdates": False,
    "userID": "4f2c0e9d6f0b4b8fa0d3c1e2b7a6f5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c",
    "firstStartTime": "2025-06-01T10:00:00.000Z",
    "theme": "light",
    "projects": {"/home/admin": {"allowedTools": [], "hasTrustDialogAccepted": False}},
}


def merged(existing: dict | str, version: str = "2.1.3", api_key: str | None = None) -> dict:
    text = existing if isinstance(existing, str) else json.dumps(existing)
    out = merge_claude_json(text, version, api_key)
    assert out.endswith("\n")
    return json.loads(out)


# -- ~/.claude.json --------------------------------------------------------------------------

def test_installer_keys_survive_the_merge():
    data = merged(INSTALLED)
    for key in ("numStartups", "installMethod", "autoUpdates", "userID", "firstStartTime"):
        assert data[key] == INSTALLED[key]
    assert data["projects"]["/home/admin"] == INSTALLED["projects"]["/home/admin"]


def test_onboarding_and_the_bypass_disclaimer_are_marked_done():
    data = merged(INSTALLED, version="2.1.3")
    assert data["hasCompletedOnboarding"] is True
    assert data["bypassPermissionsModeAccepted"] is True
    assert data["lastOnboardingVersion"] == "2.1.3"
    assert data["theme"] == "light"                    # the user's choice is not overridden
    assert merged({})["theme"] == "dark"


def test_an_unknown_version_leaves_the_recorded_one():
    assert merged({"lastOnboardingVersion": "2.0.0"}, version="")["lastOnboardingVersion"] == \
        "2.0.0"
    assert "lastOnboardingVersion" not in merged({}, version="")


def test_the_project_directory_is_trusted_and_its_onboarding_done():
    project = merged(INSTALLED)["projects"][PROJECT_DIR]
    assert PROJECT_DIR == "/srv/project"
    assert project == {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True,
                       "allowedTools": []}


def test_existing_project_settings_are_kept_when_trust_is_added():
    existing = {"projects": {PROJECT_DIR: {"allowedTools": ["Bash(npm test)"],
                                           "hasTrustDialogAccepted": False,
                                           "mcpServers": {"db": {"command": "x"}}}}}
    project = merged(existing)["projects"][PROJECT_DIR]
    assert project["hasTrustDialogAccepted"] is True
    assert project["allowedTools"] == ["Bash(npm test)"]
    assert project["mcpServers"] == {"db": {"command": "x"}}


def test_an_api_key_is_approved_by_its_last_20_characters_only():
    data = merged(INSTALLED, api_key=API_KEY)
    assert data["customApiKeyResponses"] == {"approved": ["LAST20CHARSofTHEkey1"],
                                             "rejected": []}
    assert API_KEY not in json.dumps(data)             # the whole key is never written


def test_without_an_api_key_no_approval_is_written_or_changed():
    assert "customApiKeyResponses" not in merged(INSTALLED, api_key=None)
    earlier = {"customApiKeyResponses": {"approved": ["aaaaaaaaaaaaaaaaaaaa"], "rejected": []}}
    assert merged(earlier, api_key=None)["customApiKeyResponses"] == \
        earlier["customApiKeyResponses"]


def test_merging_again_does_not_duplicate_the_approval():
    once = merge_claude_json(json.dumps(INSTALLED), "2.1.3", API_KEY)
    twice = json.loads(merge_claude_json(once, "2.1.3", API_KEY))
    assert twice["customApiKeyResponses"]["approved"] == ["LAST20CHARSofTHEkey1"]
    assert twice == json.loads(once)


def test_other_approvals_are_kept_and_an_earlier_rejection_of_this_key_is_withdrawn():
    rejected = ["LAST20CHARSofTHEkey1", "badbadbadbadbadbadba"]
    existing = {"customApiKeyResponses": {"approved": ["otherkeyotherkeyothe"],
                                          "rejected": rejected}}
    responses = merged(existing, api_key=API_KEY)["customApiKeyResponses"]
    assert responses["approved"] == ["otherkeyotherkeyothe", "LAST20CHARSofTHEkey1"]
    assert responses["rejected"] == ["badbadbadbadbadbadba"]


@pytest.mark.parametrize("existing", ["", "   \n", "{not json", "[]", "null", '"text"'])
def test_an_empty_or_unreadable_file_is_replaced_by_a_complete_one(existing):
    data = merged(existing, api_key=API_KEY)
    assert data["hasCompletedOnboarding"] is True
    assert data["projects"][PROJECT_DIR]["hasTrustDialogAccepted"] is True
    assert data["customApiKeyResponses"]["approved"] == ["LAST20CHARSofTHEkey1"]


def test_malformed_nested_values_are_repaired_instead_of_crashing():
    existing = {"projects": None, "customApiKeyResponses": {"approved": None, "rejected": "x"}}
    data = merged(existing, api_key=API_KEY)
    assert data["projects"][PROJECT_DIR]["hasTrustDialogAccepted"] is True
    assert data["customApiKeyResponses"] == {"approved": ["LAST20CHARSofTHEkey1"], "rejected": []}
    data = merged({"projects": {PROJECT_DIR: "trusted"}, "customApiKeyResponses": []},
                  api_key=API_KEY)
    assert data["projects"][PROJECT_DIR]["hasTrustDialogAccepted"] is True


# -- ~/.claude/settings.json -----------------------------------------------------------------

def test_settings_remove_the_api_key_helper_and_turn_on_bypass_mode():
    existing = {"apiKeyHelper": "~/bin/get-key.sh", "model": "opus",
                "permissions": {"allow": ["Bash(ls)"], "defaultMode": "default"},
                "hooks": {"Stop": []}}
    data = json.loads(merge_settings_json(json.dumps(existing)))
    assert "apiKeyHelper" not in data
    assert data["skipDangerousModePermissionPrompt"] is True
    assert data["permissions"] == {"allow": ["Bash(ls)"], "defaultMode": "bypassPermissions"}
    assert data["model"] == "opus" and data["hooks"] == {"Stop": []}


def test_settings_env_loses_every_competing_credential_but_keeps_the_rest():
    env = {name: "stray" for name in COMPETING_AUTH} | {"DEBUG": "1"}
    data = json.loads(merge_settings_json(json.dumps({"env": env})))
    assert data["env"] == {"DEBUG": "1"}


@pytest.mark.parametrize("existing", ["", "{broken", "[1]", '{"permissions": "all"}'])
def test_settings_from_nothing_or_garbage_are_complete(existing):
    data = json.loads(merge_settings_json(existing))
    assert data["skipDangerousModePermissionPrompt"] is True
    assert data["permissions"]["defaultMode"] == "bypassPermissions"


# -- the credential file the remote shell sources --------------------------------------------

def sourced(tmp_path: Path, text: str) -> dict[str, str]:
    """Every variable the file exports, as bash sees it after `. file` in an empty env."""
    path = tmp_path / "env"
    path.write_text(text)
    done = subprocess.run(["env", "-i", "bash", "--norc", "--noprofile", "-c",
                           '. "$1" && env -0', "_", str(path)],
                          capture_output=True, cwd=tmp_path, timeout=10)
    assert done.returncode == 0, done.stderr
    pairs = (item.split("=", 1) for item in done.stdout.decode().split("\0") if item)
    return {k: v for k, v in pairs if k not in ("PWD", "SHLVL", "_")}


NASTY = [
    "it's a 'quoted' \"string\"",
    "$(touch pwned) `touch pwned2` ${HOME}",
    "spaces  and\ttabs; echo injected && exit 3 | cat",
    "multi\nline\nsecret\\n",
    "'",
    "",
]


@pytest.mark.parametrize("secret", NASTY)
def test_the_credential_reads_back_exactly_and_runs_nothing(tmp_path, secret):
    env = sourced(tmp_path, env_file("CLAUDE_CODE_OAUTH_TOKEN", secret, environ={}))
    assert env == {"CLAUDE_CODE_OAUTH_TOKEN": secret}
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_presentation_variables_are_forwarded_with_their_exact_values(tmp_path):
    environ = {"TERM": "xterm-256color", "COLORTERM": "truecolor", "LANG": "en_US.UTF-8",
               "LC_ALL": "C.UTF-8", "TZ": "Europe/Amsterdam", "TERM_PROGRAM": "iTerm.app",
               "TERM_PROGRAM_VERSION": "3.5.0", "GIT_AUTHOR_NAME": "Zoë O'Brien $(id)",
               "GIT_COMMITTER_EMAIL": "zoe@example.com", "NO_COLOR": "1", "VISUAL": "vim"}
    env = sourced(tmp_path, env_file("ANTHROPIC_API_KEY", API_KEY, environ=environ))
    assert env == environ | {"ANTHROPIC_API_KEY": API_KEY}


def test_no_other_secret_or_host_variable_is_forwarded(tmp_path):
    environ = {"TERM": "xterm", "ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_AUTH_TOKEN": "gw",
               "ANTHROPIC_BASE_URL": "https://proxy", "CLAUDE_CODE_USE_BEDROCK": "1",
               "AWS_SECRET_ACCESS_KEY": "aws", "GITHUB_TOKEN": "ghp_x", "OPENAI_API_KEY": "o",
               "SSH_AUTH_SOCK": "/tmp/agent", "PATH": "/opt/homebrew/bin", "HOME": "/Users/me",
               "DB_PASSWORD": "db", "TERMINFO": "/x", "LC_lower": "x", "GIT_ASKPASS": "/x",
               "LESS_TERMCAP_md": "x", "TERM_PROGRAMX": "x"}
    text = env_file("CLAUDE_CODE_OAUTH_TOKEN", TOKEN, environ=environ)
    assert sourced(tmp_path, text) == {"TERM": "xterm", "CLAUDE_CODE_OAUTH_TOKEN": TOKEN}
    for secret in ("aws", "ghp_x", API_KEY, "https://proxy", "/Users/me"):
        assert secret not in text


def test_the_process_environment_is_the_default_source(tmp_path, monkeypatch):
    monkeypatch.setenv("TERM", "screen-256color")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-forward")
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    env = sourced(tmp_path, env_file("CLAUDE_CODE_OAUTH_TOKEN", TOKEN))
    assert env["TERM"] == "screen-256color" and env["CLAUDE_CODE_OAUTH_TOKEN"] == TOKEN
    assert "AWS_SECRET_ACCESS_KEY" not in env and "ANTHROPIC_API_KEY" not in env


@pytest.mark.parametrize("name", ["ANTHROPIC_AUTH_TOKEN", "PATH", "BAD NAME", "X=1", ""])
def test_only_a_claude_credential_name_is_accepted(name):
    with pytest.raises(ValueError, match="credential"):
        env_file(name, "secret", environ={})


def test_the_competing_auth_list_names_every_variable_that_outranks_or_conflicts():
    assert {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN",
            "ANTHROPIC_BASE_URL", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX",
            "CLAUDE_CODE_USE_FOUNDRY"} <= set(claude_config.COMPETING_AUTH)


# -- CLAUDE.md for the agent ------------------------------------------------------------------

def test_session_notes_tell_the_agent_where_the_app_runs():
    notes = session_notes("https://shop-ab12.test", None)
    assert "/srv/project" in notes and "https://shop-ab12.test" in notes
    assert "failed" not in notes
    assert notes.endswith("\n")


def test_session_notes_quote_a_bootstrap_failure_for_the_agent_to_fix():
    failure = "bootstrap failed at `php artisan migrate`:\nSQLSTATE[HY000] [2002] refused"
    notes = session_notes(None, failure)
    assert "```\n" + failure + "\n```" in notes
    assert "served at" not in notes
