"""AuthManager: the priority chain, the stored token's file, and the setup-token flow."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from clave.errors import ClaveError, ToolMissing, UsageError
from clave.support.auth import AuthManager, Credential, default_auth_file

CLAUDE_HOST = Path(__file__).resolve().parents[2] / "fakes" / "claude_host"
TOKEN = "sk-ant-oat01-" + "a" * 60 + "_-Z9a1b2"
OTHER_TOKEN = "sk-ant-oat01-" + "b" * 80 + "c3d4"
API_KEY = "sk-ant-api03-" + "k" * 80 + "e5f6"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "clave" / "auth.json"


@pytest.fixture
def host(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has the stand-in `claude`, logging to claude-argv.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(CLAUDE_HOST, bin_dir / "claude")
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), "/usr/bin:/bin"])
    return {"PATH": path, "FAKE_CLAUDE_LOG": str(tmp_path / "claude-argv.log")}


def printed_token(capfd) -> str:
    """What the user would copy from their terminal after `claude setup-token`."""
    lines = capfd.readouterr().out.splitlines()
    return next(line for line in lines if line.startswith("sk-ant-oat01-"))


# -- priority chain ---------------------------------------------------------------------


def test_api_key_wins_over_everything(auth_file):
    AuthManager(auth_file, environ={}).store_token(TOKEN)
    env = {"ANTHROPIC_API_KEY": API_KEY, "CLAUDE_CODE_OAUTH_TOKEN": OTHER_TOKEN}
    credential = AuthManager(auth_file, environ=env).resolve()
    assert (credential.method, credential.source) == ("api_key", "env ANTHROPIC_API_KEY")
    assert credential.secret == API_KEY
    assert credential.env_name == "ANTHROPIC_API_KEY"


def test_oauth_token_env_wins_over_the_stored_token(auth_file):
    AuthManager(auth_file, environ={}).store_token(TOKEN)
    credential = AuthManager(auth_file, environ={"CLAUDE_CODE_OAUTH_TOKEN": OTHER_TOKEN}).resolve()
    assert (credential.method, credential.source) == ("oauth_token", "env CLAUDE_CODE_OAUTH_TOKEN")
    assert credential.secret == OTHER_TOKEN
    assert credential.env_name == "CLAUDE_CODE_OAUTH_TOKEN"


def test_the_stored_token_is_used_when_no_variable_is_set(auth_file):
    auth = AuthManager(auth_file, environ={})
    auth.store_token(TOKEN)
    assert auth.resolve() == Credential("oauth_token", str(auth_file), TOKEN)
    assert auth.has_auth()


def test_empty_variables_are_ignored(auth_file):
    env = {"ANTHROPIC_API_KEY": "", "CLAUDE_CODE_OAUTH_TOKEN": "  "}
    auth = AuthManager(auth_file, environ=env)
    assert auth.resolve() is None
    assert not auth.has_auth()


def test_an_environment_credential_does_not_read_a_broken_file(auth_file):
    auth_file.parent.mkdir(parents=True)
    auth_file.write_text("{broken")
    credential = AuthManager(auth_file, environ={"ANTHROPIC_API_KEY": API_KEY}).resolve()
    assert credential.method == "api_key"


def test_the_process_environment_is_read_by_default(auth_file, monkeypatch):
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", TOKEN)
    assert AuthManager(auth_file).resolve().source == "env CLAUDE_CODE_OAUTH_TOKEN"


def test_the_default_auth_file_is_in_the_user_config_dir(tmp_path):
    assert default_auth_file({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "clave" / "auth.json"


# -- the stored token ---------------------------------------------------------------------


def test_the_token_file_is_0600_in_a_0700_directory(auth_file):
    AuthManager(auth_file, environ={}).store_token(TOKEN)
    assert mode(auth_file) == 0o600
    assert mode(auth_file.parent) == 0o700


def test_an_existing_open_directory_is_closed_to_others(auth_file):
    auth_file.parent.mkdir(parents=True, mode=0o755)
    os.chmod(auth_file.parent, 0o755)
    AuthManager(auth_file, environ={}).store_token(TOKEN)
    assert mode(auth_file.parent) == 0o700


def test_the_stored_format_has_the_token_and_an_iso_timestamp(auth_file):
    AuthManager(auth_file, environ={}).store_token(f"  {TOKEN}\n")
    stored = json.loads(auth_file.read_text())
    assert set(stored) == {"oauth_token", "created_at"}
    assert stored["oauth_token"] == TOKEN
    assert stored["created_at"][:4].isdigit() and "T" in stored["created_at"]


def test_storing_again_replaces_the_token_and_leaves_no_temporary_file(auth_file):
    auth = AuthManager(auth_file, environ={})
    auth.store_token(TOKEN)
    auth.store_token(OTHER_TOKEN)
    assert auth.resolve().secret == OTHER_TOKEN
    assert [p.name for p in auth_file.parent.iterdir()] == ["auth.json"]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sk-ant-api03-" + "a" * 80,  # an API key, not a setup-token token
        "sk-ant-oat01-short",
        "sk-ant-oat01-" + "a" * 40 + " " + "b" * 40,  # two halves of a wrapped paste
        "sk-ant-oat01-" + "a" * 40 + "\n" + "b" * 40,
        "sk-ant-oat01-" + "a" * 500,
        "Your OAuth token (valid for 1 year):",
    ],
)
def test_a_token_of_the_wrong_shape_is_refused_and_nothing_is_written(auth_file, bad):
    with pytest.raises(UsageError) as caught:
        AuthManager(auth_file, environ={}).store_token(bad)
    assert "sk-ant-oat01-" in caught.value.message
    if len(bad) > 20:
        assert bad not in caught.value.message
    assert not auth_file.exists()


def test_clear_removes_the_stored_token(auth_file):
    auth = AuthManager(auth_file, environ={})
    auth.store_token(TOKEN)
    assert auth.clear_token() is True
    assert not auth_file.exists()
    assert auth.resolve() is None


def test_clear_without_a_stored_token_reports_false(auth_file):
    assert AuthManager(auth_file, environ={}).clear_token() is False


def test_a_world_readable_token_file_is_refused_with_the_fix(auth_file):
    auth = AuthManager(auth_file, environ={})
    auth.store_token(TOKEN)
    os.chmod(auth_file, 0o644)
    with pytest.raises(ClaveError) as caught:
        auth.resolve()
    assert f"chmod 600 {auth_file}" in caught.value.message
    assert "clave auth --clear" in caught.value.message
    assert TOKEN not in caught.value.message


def test_a_group_readable_token_file_is_refused_too(auth_file):
    auth = AuthManager(auth_file, environ={})
    auth.store_token(TOKEN)
    os.chmod(auth_file, 0o640)
    with pytest.raises(ClaveError, match="others can read it"):
        auth.has_auth()


@pytest.mark.parametrize(
    "content", ["{not json", "[]", '{"token": "x"}', '{"oauth_token": 42}', '{"oauth_token": ""}']
)
def test_a_corrupt_token_file_is_refused_with_the_fix(auth_file, content):
    auth_file.parent.mkdir(parents=True)
    auth_file.write_text(content)
    os.chmod(auth_file, 0o600)
    with pytest.raises(ClaveError, match=r"run `clave auth --clear`, then `clave auth`"):
        AuthManager(auth_file, environ={}).resolve()


# -- status and masking -------------------------------------------------------------------


def test_status_shows_method_source_and_a_masked_suffix_only(auth_file):
    auth = AuthManager(auth_file, environ={})
    auth.store_token(TOKEN)
    info = auth.status_info()
    assert info == {"method": "oauth_token", "source": str(auth_file), "masked": "…a1b2"}
    assert not any(TOKEN[:20] in str(value) for value in info.values())


def test_status_for_an_api_key_names_the_variable(auth_file):
    info = AuthManager(auth_file, environ={"ANTHROPIC_API_KEY": API_KEY}).status_info()
    assert info == {"method": "api_key", "source": "env ANTHROPIC_API_KEY", "masked": "…e5f6"}


def test_status_without_a_credential_is_all_none(auth_file):
    assert AuthManager(auth_file, environ={}).status_info() == {
        "method": None,
        "source": None,
        "masked": None,
    }


def test_a_credentials_repr_never_shows_the_secret():
    credential = Credential("oauth_token", "env CLAUDE_CODE_OAUTH_TOKEN", TOKEN)
    assert TOKEN not in repr(credential)
    assert TOKEN[-8:] not in repr(credential)


def test_a_short_secret_is_masked_entirely():
    assert Credential("api_key", "env ANTHROPIC_API_KEY", "sk-short").masked() == "…"


# -- claude setup-token -------------------------------------------------------------------


def test_setup_token_runs_claude_then_stores_the_pasted_token(auth_file, host, tmp_path, capfd):
    prompts: list[str] = []

    def paste(prompt: str) -> str:
        prompts.append(prompt)
        return printed_token(capfd) + "\n"

    credential = AuthManager(auth_file, environ=host).setup_token(paste)

    logged = [json.loads(line) for line in Path(host["FAKE_CLAUDE_LOG"]).read_text().splitlines()]
    assert [entry["argv"] for entry in logged] == [["setup-token"]]
    assert len(prompts) == 1 and "hidden" in prompts[0]
    assert credential.method == "oauth_token" and credential.source == str(auth_file)
    stored = json.loads(auth_file.read_text())["oauth_token"]
    assert stored == credential.secret and stored.startswith("sk-ant-oat01-")
    assert mode(auth_file) == 0o600


def test_setup_token_asks_again_after_a_bad_paste(auth_file, host, capfd):
    prompts: list[str] = []
    answers = iter(["sk-ant-oat01-trunc", TOKEN])

    def paste(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    AuthManager(auth_file, environ=host).setup_token(paste)
    assert len(prompts) == 2 and "again" in prompts[1]
    assert json.loads(auth_file.read_text())["oauth_token"] == TOKEN


def test_setup_token_gives_up_after_three_bad_pastes(auth_file, host, capfd):
    prompts: list[str] = []

    def paste(prompt: str) -> str:
        prompts.append(prompt)
        return "not a token"

    with pytest.raises(UsageError, match="paste the whole token"):
        AuthManager(auth_file, environ=host).setup_token(paste)
    assert len(prompts) == 3
    assert not auth_file.exists()


def test_setup_token_stops_cleanly_when_input_ends(auth_file, host, capfd):
    def paste(prompt: str) -> str:
        raise EOFError

    with pytest.raises(UsageError, match="no token was entered"):
        AuthManager(auth_file, environ=host).setup_token(paste)
    assert not auth_file.exists()


def test_a_failed_setup_token_stores_nothing_and_asks_nothing(auth_file, host, capfd):
    def paste(prompt: str) -> str:
        raise AssertionError("must not ask for a token after claude failed")

    with pytest.raises(ClaveError, match=r"`claude setup-token` failed \(exit 3\)"):
        AuthManager(auth_file, environ={**host, "FAKE_CLAUDE_EXIT": "3"}).setup_token(paste)
    assert not auth_file.exists()


def test_setup_token_without_claude_is_tool_missing(auth_file, tmp_path):
    environ = {"PATH": str(tmp_path / "empty")}
    with pytest.raises(ToolMissing) as caught:
        AuthManager(auth_file, environ=environ).setup_token(lambda prompt: TOKEN)
    assert caught.value.message == (
        "`claude` was not found: install Claude Code on this Mac: "
        "https://code.claude.com/docs/en/setup"
    )
    assert not auth_file.exists()


def test_the_token_never_reaches_claudes_argv(auth_file, host, capfd):
    AuthManager(auth_file, environ=host).setup_token(lambda prompt: TOKEN)
    assert TOKEN not in Path(host["FAKE_CLAUDE_LOG"]).read_text()
