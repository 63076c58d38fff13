"""Which Claude Code credential sessions hand to their VM, and where it came from.

Order (reference/claude-code.md §2.1): ANTHROPIC_API_KEY, then CLAUDE_CODE_OAUTH_TOKEN, then
the token `clave auth` stored. `claude setup-token` prints a one-year token and saves it
nowhere, so `clave auth` runs it on the user's terminal and asks them to paste the result.
The secret never reaches argv, logs, messages or a file anyone else can read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from clave.errors import ClaveError, ToolMissing, UsageError
from clave.home import user_config_dir

API_KEY = "ANTHROPIC_API_KEY"
OAUTH_TOKEN = "CLAUDE_CODE_OAUTH_TOKEN"
TOKEN_PREFIX = "sk-ant-oat01-"
CLAUDE_FIX = "install Claude Code on this Mac: https://code.claude.com/docs/en/setup"
PASTE_PROMPT = "Paste the token `claude setup-token` printed (input is hidden): "
RETRY_PROMPT = "That is not a whole sk-ant-oat01- token; paste it again (input is hidden): "
PASTE_ATTEMPTS = 3

_TOKEN = re.compile(rf"^{re.escape(TOKEN_PREFIX)}[A-Za-z0-9_-]{{40,400}}$")
_METHOD_ENV = {"api_key": API_KEY, "oauth_token": OAUTH_TOKEN}


@dataclass(frozen=True)
class Credential:
    method: str  # "api_key" | "oauth_token"
    source: str  # "env ANTHROPIC_API_KEY" | "env CLAUDE_CODE_OAUTH_TOKEN" | the auth file
    secret: str = field(repr=False)

    @property
    def env_name(self) -> str:
        """The variable Claude Code reads this credential from inside the VM."""
        return _METHOD_ENV[self.method]

    def masked(self) -> str:
        """Enough to tell two credentials apart, never enough to use one."""
        return f"…{self.secret[-4:]}" if len(self.secret) >= 20 else "…"


def default_auth_file(environ: Mapping[str, str] | None = None) -> Path:
    return user_config_dir(dict(environ) if environ is not None else None) / "auth.json"


def valid_token(token: str) -> bool:
    return bool(_TOKEN.match(token))


class AuthManager:
    def __init__(
        self,
        auth_file: Path,
        environ: Mapping[str, str] | None = None,
        claude_binary: str = "claude",
    ):
        self.auth_file = Path(auth_file)
        self._environ = os.environ if environ is None else environ
        self._claude = claude_binary

    def resolve(self) -> Credential | None:
        """The credential Claude Code itself would pick first, or None."""
        for method, name in (("api_key", API_KEY), ("oauth_token", OAUTH_TOKEN)):
            value = (self._environ.get(name) or "").strip()
            if value:
                return Credential(method, f"env {name}", value)
        token = self._read_stored()
        return Credential("oauth_token", str(self.auth_file), token) if token else None

    def has_auth(self) -> bool:
        return self.resolve() is not None

    def store_token(self, token: str) -> None:
        """Validate, then write atomically: a 0600 file in a 0700 directory, or nothing."""
        token = token.strip()
        if not valid_token(token):
            raise UsageError(
                f"that is not a token from `claude setup-token`: it starts with {TOKEN_PREFIX} "
                "and is one line of letters, digits, - and _; run `clave auth` again and paste "
                "the whole token."
            )
        directory = self.auth_file.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        payload = {"oauth_token": token, "created_at": datetime.now(UTC).isoformat()}
        fd, temporary = tempfile.mkstemp(prefix=".auth-", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(payload, handle)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.auth_file)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def clear_token(self) -> bool:
        """Remove the stored token; False when there was none."""
        try:
            self.auth_file.unlink()
        except FileNotFoundError:
            return False
        return True

    def status_info(self) -> dict[str, str | None]:
        credential = self.resolve()
        if credential is None:
            return {"method": None, "source": None, "masked": None}
        return {
            "method": credential.method,
            "source": credential.source,
            "masked": credential.masked(),
        }

    def find_claude(self) -> str:
        """The host's `claude`, needed only to mint a token with `claude setup-token`."""
        claude = shutil.which(self._claude, path=self._environ.get("PATH"))
        if claude is None:
            raise ToolMissing(self._claude, CLAUDE_FIX)
        return claude

    def setup_token(self, read_secret: Callable[[str], str]) -> Credential:
        """Run `claude setup-token` on the user's terminal, then store the token they paste."""
        claude = self.find_claude()
        # Not support.command.run: the sign-in needs the user's terminal (stdin, a browser
        # prompt, the printed token), so the child inherits stdio and nothing is captured.
        exited = subprocess.run([claude, "setup-token"], env=dict(self._environ), check=False)
        if exited.returncode != 0:
            raise ClaveError(
                f"`claude setup-token` failed (exit {exited.returncode}); nothing was stored: "
                "run `clave auth` again (it needs a Claude Pro, Max, Team or Enterprise plan)."
            )
        for attempt in range(PASTE_ATTEMPTS):
            try:
                token = read_secret(RETRY_PROMPT if attempt else PASTE_PROMPT).strip()
            except EOFError:
                raise UsageError("no token was entered, so nothing was stored.") from None
            if valid_token(token):
                break
        self.store_token(token)  # after the last bad paste: the clear UsageError
        return Credential("oauth_token", str(self.auth_file), token)

    def _read_stored(self) -> str | None:
        """The stored token; refuses a file others can read or one clave cannot parse."""
        try:
            mode = self.auth_file.stat().st_mode
            text = self.auth_file.read_text()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise ClaveError(
                f"cannot read {self.auth_file} ({err.strerror}): fix its permissions "
                f"(`chmod 600 {self.auth_file}`) or run `clave auth --clear`."
            ) from err
        if stat.S_IMODE(mode) & 0o077:
            raise ClaveError(
                f"{self.auth_file} holds a secret but others can read it "
                f"(mode {stat.S_IMODE(mode):04o}): run `chmod 600 {self.auth_file}`, "
                "or `clave auth --clear` and then `clave auth`."
            )
        try:
            token = json.loads(text)["oauth_token"]
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not valid_token(token.strip()):
            raise ClaveError(
                f"{self.auth_file} is not a token file clave can read: run `clave auth --clear`, "
                "then `clave auth`."
            )
        return token.strip()
