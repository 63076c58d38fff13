"""Where clave keeps its state on the host (DESIGN.md, "State on the host")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Home:
        env = os.environ if environ is None else environ
        return cls(Path(env.get("CLAVE_HOME") or Path.home() / ".clave").expanduser())

    @property
    def db(self) -> Path:
        return self.root / "clave.db"

    @property
    def sessions(self) -> Path:
        return self.root / "sessions"

    def session_dir(self, session_id: str) -> Path:
        return self.sessions / session_id

    @property
    def provision_db(self) -> Path:
        return self.root / "provision.db"

    @property
    def provision_lock(self) -> Path:
        return self.root / "provision.lock"

    @property
    def base_lock(self) -> Path:
        """Held exclusively while provisioning swaps the base, shared while sessions clone it."""
        return self.root / "base.lock"

    @property
    def provision_log(self) -> Path:
        return self.root / "provision.log"

    def ensure(self) -> Home:
        """Create the root, private to the user: it holds logs and doit DBs."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self


def user_config_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "clave"
