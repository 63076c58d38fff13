"""CheckClaudeAuthentication: a credential for the VM, or a sentence saying how to get one."""

from __future__ import annotations

import pytest

from clave.errors import ClaveError
from clave.steps.check_claude_authentication import CheckClaudeAuthentication
from clave.support.auth import AuthManager

TOKEN = "sk-ant-oat01-" + "T" * 60
API_KEY = "sk-ant-api03-" + "K" * 60


def step(world, environ, *, interactive=False, auth_file=None):
    auth = AuthManager(auth_file or world.root / "auth.json", environ=environ)
    return CheckClaudeAuthentication(auth, world.confirm, interactive)


def test_a_token_in_the_environment_is_used_and_named_without_showing_it(world):
    ctx = world.ctx()
    check = step(world, {"CLAUDE_CODE_OAUTH_TOKEN": TOKEN})
    check.run(ctx)
    assert (ctx.credential.method, ctx.credential.secret) == ("oauth_token", TOKEN)
    assert check.done(ctx)
    assert any("CLAUDE_CODE_OAUTH_TOKEN" in hint for hint in world.said.of("hint"))
    assert not any(TOKEN in text for _kind, text in world.said.lines)
    assert TOKEN not in repr(ctx)


def test_an_api_key_outranks_an_oauth_token_as_claude_code_itself_does(world):
    ctx = world.ctx()
    step(world, {"CLAUDE_CODE_OAUTH_TOKEN": TOKEN, "ANTHROPIC_API_KEY": API_KEY}).run(ctx)
    assert (ctx.credential.method, ctx.credential.env_name) == ("api_key", "ANTHROPIC_API_KEY")


def test_the_token_clave_auth_stored_is_used_when_the_environment_has_none(world):
    auth_file = world.root / "config" / "auth.json"
    AuthManager(auth_file, environ={}).store_token(TOKEN)
    ctx = world.ctx()
    step(world, {}, auth_file=auth_file).run(ctx)
    assert ctx.credential.secret == TOKEN and ctx.credential.source == str(auth_file)


def test_no_credential_without_a_terminal_names_clave_auth_and_both_variables(world):
    ctx = world.ctx()
    check = step(world, {}, interactive=False)
    with pytest.raises(ClaveError) as raised:
        check.run(ctx)
    message = str(raised.value)
    for needed in ("`clave auth`", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY"):
        assert needed in message
    assert world.confirm.questions == []          # nobody to ask
    assert ctx.credential is None and not check.done(ctx)


def test_no_credential_and_declining_the_offer_gives_the_same_sentence(world):
    world.confirm.answer = False
    with pytest.raises(ClaveError, match="clave auth"):
        step(world, {}, interactive=True).run(world.ctx())
    assert len(world.confirm.questions) == 1 and "clave auth" in world.confirm.questions[0]


def test_cancelling_the_offer_is_declining_it(world):
    world.confirm.answer = None
    with pytest.raises(ClaveError, match="ANTHROPIC_API_KEY"):
        step(world, {}, interactive=True).run(world.ctx())


def test_accepting_the_offer_runs_claude_setup_token_and_stores_the_pasted_token(
        world, monkeypatch):
    from tests.unit.steps.world import FAKES

    (world.bin / "claude").symlink_to(FAKES / "claude_host")
    pasted = "sk-ant-oat01-" + "P" * 60
    monkeypatch.setattr("getpass.getpass", lambda prompt: pasted)
    auth_file = world.root / "config" / "auth.json"
    ctx = world.ctx()
    check = CheckClaudeAuthentication(AuthManager(auth_file), world.confirm, True)
    check.run(ctx)
    assert ctx.credential.secret == pasted and check.done(ctx)
    assert pasted in auth_file.read_text() and auth_file.stat().st_mode & 0o077 == 0
