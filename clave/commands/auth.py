"""`clave auth`: store a Claude Code token for the VMs, show which one is used, or clear it."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from clave.errors import UsageError
from clave.support.auth import API_KEY, OAUTH_TOKEN, AuthManager

METHODS = {"api_key": "API key", "oauth_token": "OAuth token"}
HOW_TO_SET = (
    "No Claude Code credential found. Run `clave auth` to store a token from "
    f"`claude setup-token`, or export {OAUTH_TOKEN} or {API_KEY}.\n"
)


def run(
    *,
    status: bool,
    clear: bool,
    auth_file: Path,
    out: TextIO,
    read_secret: Callable[[str], str] = getpass.getpass,
) -> int:
    if status and clear:
        raise UsageError("use either --status or --clear, not both.")
    auth = AuthManager(auth_file)
    if status:
        return _status(auth, out)
    if clear:
        return _clear(auth, out)
    return _setup(auth, out, read_secret)


def _status(auth: AuthManager, out: TextIO) -> int:
    info = auth.status_info()
    if info["method"] is None:
        out.write(HOW_TO_SET)
        return 1
    out.write(f"method: {METHODS[info['method']]}\n")
    out.write(f"source: {info['source']}\n")
    out.write(f"secret: {info['masked']}\n")
    return 0


def _clear(auth: AuthManager, out: TextIO) -> int:
    if auth.clear_token():
        out.write(f"Removed the stored token ({auth.auth_file}).\n")
    else:
        out.write(f"No stored token at {auth.auth_file}; nothing to remove.\n")
    _note_environment(auth, out)
    return 0


def _setup(auth: AuthManager, out: TextIO, read_secret: Callable[[str], str]) -> int:
    auth.find_claude()  # a missing `claude` is the whole answer: say it before anything else
    out.write(
        "Running `claude setup-token`: sign in when your browser opens, then copy the token "
        "it prints.\n"
    )
    out.flush()
    credential = auth.setup_token(read_secret)
    out.write(f"Stored the token ending {credential.masked()} in {auth.auth_file} (mode 0600).\n")
    _note_environment(auth, out)
    return 0


def _note_environment(auth: AuthManager, out: TextIO) -> None:
    """An exported variable outranks the stored token; say so rather than surprise later."""
    credential = auth.resolve()
    if credential is not None and credential.source.startswith("env "):
        out.write(
            f"Note: {credential.env_name} is set in your environment; sessions use it "
            "instead of the stored token.\n"
        )
