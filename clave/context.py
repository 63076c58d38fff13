"""The values a session carries through its steps (the plan's DTOs)."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, Protocol

from clave.errors import ClaveError, UsageError

SESSION_ID_ALPHABET = string.ascii_lowercase + string.digits
SESSION_ID_LENGTH = 8


def new_session_id() -> str:
    """Eight lowercase characters: safe in VM names, branch names and Herd domains."""
    return "".join(secrets.choice(SESSION_ID_ALPHABET) for _ in range(SESSION_ID_LENGTH))


class OnExit(StrEnum):
    """What happens to the session's code when the session ends."""

    KEEP = "keep"
    MERGE = "merge"
    DISCARD = "discard"

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]

    @classmethod
    def coerce(cls, value: str | OnExit | None) -> OnExit | None:
        """None stays None (ask later); anything else must be a known value."""
        if value is None or isinstance(value, OnExit):
            return value
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise UsageError(
                f"--on-exit: {value!r} is not one of {', '.join(cls.values())}."
            ) from None

    @property
    def description(self) -> str:
        return _ON_EXIT_DESCRIPTIONS[self]

    @classmethod
    def options(cls) -> list[tuple[str, str]]:
        """(value, label) pairs for a select prompt, Keep first (the safe default)."""
        return [(member.value, f"{member.value.capitalize()} — {member.description}")
                for member in cls]


_ON_EXIT_DESCRIPTIONS = {
    OnExit.KEEP: "leave the clone and its branch for review",
    OnExit.MERGE: "merge the session branch into the base branch, then remove the clone",
    OnExit.DISCARD: "remove the clone (a backup ref keeps the work recoverable)",
}


class ServicesMode(StrEnum):
    """How the app in the VM reaches MySQL and Redis (DESIGN.md, corrections)."""

    TUNNEL = "tunnel"    # SSH reverse forwards; DB_HOST=127.0.0.1 in the VM
    GATEWAY = "gateway"  # the host's services through the NAT gateway address
    VM = "vm"            # services provisioned inside the VM


DEFAULT_MYSQL_PORT = 3306
DEFAULT_REDIS_PORT = 6379


@dataclass(frozen=True)
class ServiceConfig:
    """Where the app inside the VM finds MySQL and Redis."""

    mysql_host: str
    mysql_port: int
    redis_host: str
    redis_port: int

    @classmethod
    def host_services(cls, gateway_ip: str, mysql_port: int = DEFAULT_MYSQL_PORT,
                      redis_port: int = DEFAULT_REDIS_PORT) -> ServiceConfig:
        """The host's services, reached through the VM's NAT gateway."""
        return cls(gateway_ip, mysql_port, gateway_ip, redis_port)

    @classmethod
    def tunnel_services(cls, mysql_port: int = DEFAULT_MYSQL_PORT,
                        redis_port: int = DEFAULT_REDIS_PORT) -> ServiceConfig:
        """The host's services, reverse-forwarded onto the VM's own loopback."""
        return cls("127.0.0.1", mysql_port, "127.0.0.1", redis_port)

    @classmethod
    def local_services(cls) -> ServiceConfig:
        """Services provisioned inside the VM itself."""
        return cls("127.0.0.1", DEFAULT_MYSQL_PORT, "127.0.0.1", DEFAULT_REDIS_PORT)

    @classmethod
    def for_mode(cls, mode: ServicesMode, gateway_ip: str | None,
                 mysql_port: int = DEFAULT_MYSQL_PORT,
                 redis_port: int = DEFAULT_REDIS_PORT) -> ServiceConfig:
        if mode is ServicesMode.GATEWAY:
            if not gateway_ip:
                raise ClaveError("gateway mode needs the VM's gateway address, and none was found.")
            return cls.host_services(gateway_ip, mysql_port, redis_port)
        if mode is ServicesMode.TUNNEL:
            return cls.tunnel_services(mysql_port, redis_port)
        return cls.local_services()


class Messages(Protocol):
    """What a step may say: routed to the UI (progress display or plain lines)."""

    def info(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def error(self, message: str) -> None: ...
    def hint(self, message: str) -> None: ...


class PlainMessages:
    """Fallback when no UI is attached (tests, dodo.py): plain lines on stderr."""

    def info(self, message: str) -> None:
        _say(message)

    def warn(self, message: str) -> None:
        _say(f"warning: {message}")

    def error(self, message: str) -> None:
        _say(f"error: {message}")

    def hint(self, message: str) -> None:
        pass


def _say(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


@dataclass
class SessionContext:
    """Accumulates a session's state as its steps run; every resource is named here."""

    # determined at creation
    session_id: str
    project_name: str
    project_dir: Path
    on_exit: OnExit | None = None
    services_mode: ServicesMode = ServicesMode.TUNNEL
    settings: Any = None            # clave.config.Settings
    ui: Messages = field(default_factory=PlainMessages, repr=False)
    # populated by the steps
    base_branch: str | None = None
    clone_path: Path | None = None
    clone_branch: str | None = None
    vm_name: str | None = None
    vm_ip: str | None = None
    tart_pid: int | None = None
    tart_run: Any = field(default=None, repr=False)   # steps.start_vm.TartRun (this process's)
    gateway_ip: str | None = None
    tunnel_port: int | None = None
    tunnel_pid: int | None = None
    port_reservation: Any = field(default=None, repr=False)   # held until the tunnel listens
    forwarder_launch: Any = field(default=None, repr=False)   # support.tunnel.ForwarderLaunch
    proxy_name: str | None = None
    app_url: str | None = None
    services: ServiceConfig | None = None
    bootstrap_failure: str | None = None
    credential: Any = field(default=None, repr=False)   # clave.support.auth.Credential
    exit_code: int | None = None                        # Claude Code's own exit status

    def info(self, message: str) -> None:
        self.ui.info(message)

    def warn(self, message: str) -> None:
        self.ui.warn(message)

    def error(self, message: str) -> None:
        self.ui.error(message)

    def hint(self, message: str) -> None:
        self.ui.hint(message)

    def abort(self, message: str) -> NoReturn:
        raise ClaveError(message)

    @property
    def session_branch(self) -> str:
        return f"clave/s-{self.session_id}"

    @property
    def default_clone_path(self) -> Path:
        return self.project_dir / ".clave" / "wt" / f"s-{self.session_id}"

    @property
    def default_vm_name(self) -> str:
        return f"clave-{self.session_id}"

    @property
    def default_proxy_name(self) -> str:
        return f"{self.project_name}-{self.session_id}"
