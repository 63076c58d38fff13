"""RunClaudeCode: the credential reaches Claude Code through a 0600 file, never an argv."""

from __future__ import annotations

import json

import pytest

from clave.steps.run_claude_code import (
    ENV_FILE,
    READ_STATE,
    SECTION,
    RunClaudeCode,
    launch_command,
)
from clave.support import claude_config
from clave.support.auth import Credential
from tests.unit.steps.scripted_ssh import ScriptedSsh

TOKEN = "sk-ant-oat01-" + "S" * 60
API_KEY = "sk-ant-api03-" + "A" * 60
HOME = "/home/admin"


def test_the_launch_command_holds_no_secret_and_no_credential_assignment():
    command = launch_command()
    assert "sk-ant" not in command
    for name in claude_config.COMPETING_AUTH:
        assert f"{name}=" not in command


def test_every_competing_auth_variable_is_unset_before_the_credential_file_is_read():
    command = launch_command()
    unset = command.index("unset ")
    source = command.index(f". ~/{ENV_FILE}")
    assert unset < source
    unset_names = command[unset:source].split("&&")[0].split()[1:]
    assert set(unset_names) == set(claude_config.COMPETING_AUTH)
    assert {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN",
            "ANTHROPIC_BASE_URL"} <= set(unset_names)


def test_the_credential_file_is_removed_before_claude_starts_in_the_project():
    command = launch_command()
    assert command.startswith("cd /srv/project && ")
    assert command.index(f"rm -f ~/{ENV_FILE}") < command.index("exec claude")
    assert command.endswith("exec claude --dangerously-skip-permissions")


@pytest.fixture
def vm() -> ScriptedSsh:
    ssh = ScriptedSsh()
    sections = [HOME, "2.1.0", '{"installMethod": "native"}\n', '{"apiKeyHelper": "/bin/helper"}']
    ssh.answer(READ_STATE, "".join(f"{part}\n{SECTION}\n" for part in sections[:-1])
               + sections[-1])
    return ssh


def test_the_credential_goes_into_a_0600_file_and_no_remote_command(world, vm):
    ctx = world.saved_ctx(credential=Credential("oauth_token", "env", TOKEN),
                          app_url="https://shop-abcd1234.test")
    RunClaudeCode(vm).prepare(ctx)
    content, mode = vm.files[f"{HOME}/{ENV_FILE}"]
    assert mode == 0o600 and f"export CLAUDE_CODE_OAUTH_TOKEN='{TOKEN}'" in content.decode()
    assert not any(TOKEN in command for command in vm.commands)
    others = [body for path, (body, _mode) in vm.files.items() if path != f"{HOME}/{ENV_FILE}"]
    assert not any(TOKEN.encode() in body for body in others)


def test_claude_json_is_merged_so_no_dialog_stops_the_agent(world, vm):
    ctx = world.saved_ctx(credential=Credential("api_key", "env", API_KEY))
    RunClaudeCode(vm).prepare(ctx)
    content, mode = vm.files[f"{HOME}/.claude.json"]
    data = json.loads(content)
    assert mode == 0o600 and data["installMethod"] == "native"
    assert data["hasCompletedOnboarding"] and data["bypassPermissionsModeAccepted"]
    assert data["projects"]["/srv/project"]["hasTrustDialogAccepted"]
    assert data["customApiKeyResponses"]["approved"] == [API_KEY[-20:]]
    assert API_KEY not in content.decode()
    settings = json.loads(vm.files[f"{HOME}/.claude/settings.json"][0])
    assert "apiKeyHelper" not in settings
    assert settings["permissions"]["defaultMode"] == "bypassPermissions"


def test_the_agent_is_told_the_app_url_and_a_bootstrap_failure(world, vm):
    ctx = world.saved_ctx(credential=Credential("oauth_token", "env", TOKEN),
                          app_url="https://shop-abcd1234.test",
                          bootstrap_failure="bootstrap failed at `composer install`")
    RunClaudeCode(vm).prepare(ctx)
    notes, mode = vm.files[f"{HOME}/.claude/CLAUDE.md"]
    assert mode == 0o644
    assert b"https://shop-abcd1234.test" in notes and b"composer install" in notes


def test_claude_codes_exit_status_becomes_the_sessions(world, vm):
    vm.interactive_exit = 7
    ctx = world.saved_ctx(credential=Credential("oauth_token", "env", TOKEN))
    RunClaudeCode(vm).run(ctx)
    assert ctx.exit_code == 7 and vm.interactive_commands == [launch_command()]
