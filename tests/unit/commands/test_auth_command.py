"""`clave auth`, `clave auth --status`, `clave auth --clear` through commands.auth.run."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import pytest

from clave.commands import auth as command
from clave.errors import ToolMissing, UsageError
from clave.support.auth import AuthManager

CLAUDE_HOST = Path(__file__).resolve().parents[2] / "fakes" / "claude_host"
TOKEN = "sk-ant-oat01-" + "t" * 70 + "9z8y"


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    return tmp_path / "clave" / "auth.json"


@pytest.fixture
def claude_log(tmp_path: Path, monkeypatch) -> Path:
    """The stand-in `claude` first on PATH; returns its argv log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(CLAUDE_HOST, bin_dir / "claude")
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), "/usr/bin:/bin"])
    monkeypatch.setenv("PATH", path)
    log = tmp_path / "claude-argv.log"
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(log))
    return log


def run(auth_file: Path, *, status: bool = False, clear: bool = False, **kw) -> tuple[int, str]:
    out = io.StringIO()
    code = command.run(status=status, clear=clear, auth_file=auth_file, out=out, **kw)
    return code, out.getvalue()


def test_auth_runs_setup_token_and_stores_the_pasted_token(auth_file, claude_log, capfd, caplog):
    caplog.set_level(logging.DEBUG)

    def paste(prompt: str) -> str:
        out = capfd.readouterr().out
        return next(line for line in out.splitlines() if line.startswith("sk-ant-oat01-"))

    code, out = run(auth_file, read_secret=paste)
    secret = json.loads(auth_file.read_text())["oauth_token"]
    assert code == 0
    assert [json.loads(line)["argv"] for line in claude_log.read_text().splitlines()] == [
        ["setup-token"]
    ]
    assert f"ending …{secret[-4:]}" in out and str(auth_file) in out
    assert secret not in out
    assert secret not in caplog.text


def test_auth_warns_when_an_exported_variable_outranks_the_stored_token(
    auth_file, claude_log, monkeypatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-" + "k" * 80)
    code, out = run(auth_file, read_secret=lambda prompt: TOKEN)
    assert code == 0
    assert "ANTHROPIC_API_KEY is set in your environment" in out


def test_auth_without_claude_is_tool_missing(auth_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = io.StringIO()
    with pytest.raises(ToolMissing, match="install Claude Code on this Mac"):
        command.run(status=False, clear=False, auth_file=auth_file, out=out)
    assert out.getvalue() == ""
    assert not auth_file.exists()


def test_status_shows_the_method_source_and_masked_suffix(auth_file):
    AuthManager(auth_file).store_token(TOKEN)
    code, out = run(auth_file, status=True)
    assert code == 0
    assert out == f"method: OAuth token\nsource: {auth_file}\nsecret: …9z8y\n"
    assert TOKEN[:-4] not in out


def test_status_names_an_environment_variable_as_the_source(auth_file, monkeypatch):
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", TOKEN)
    code, out = run(auth_file, status=True)
    assert code == 0
    assert "source: env CLAUDE_CODE_OAUTH_TOKEN" in out
    assert TOKEN not in out


def test_status_without_a_credential_says_how_to_set_one_and_fails(auth_file):
    code, out = run(auth_file, status=True)
    assert code == 1
    assert "Run `clave auth`" in out
    assert "CLAUDE_CODE_OAUTH_TOKEN" in out and "ANTHROPIC_API_KEY" in out


def test_clear_removes_the_stored_token_and_says_so(auth_file):
    AuthManager(auth_file).store_token(TOKEN)
    code, out = run(auth_file, clear=True)
    assert code == 0
    assert not auth_file.exists()
    assert out.startswith("Removed the stored token")


def test_clear_without_a_token_says_there_was_nothing(auth_file):
    code, out = run(auth_file, clear=True)
    assert code == 0
    assert "nothing to remove" in out


def test_clear_fixes_a_corrupt_token_file(auth_file):
    auth_file.parent.mkdir(parents=True)
    auth_file.write_text("{oops")
    code, _ = run(auth_file, clear=True)
    assert code == 0 and not auth_file.exists()


def test_status_and_clear_together_are_a_usage_error(auth_file):
    with pytest.raises(UsageError, match="either --status or --clear"):
        run(auth_file, status=True, clear=True)
