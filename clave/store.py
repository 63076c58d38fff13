"""SQLite at `$CLAVE_HOME/clave.db`: one row per session, doubling as its resource journal.

A step writes a resource's name here *before* creating it (`record`) and clears it after
removing it (`forget`), so `clave cleanup` can find what a crash or SIGKILL left behind.
Several clave processes write at once: WAL mode, short `BEGIN IMMEDIATE` transactions,
a busy timeout, and a retry when SQLite still answers "database is locked".
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, TypeVar

from clave.errors import ClaveError
from clave.home import Home

BUSY_TIMEOUT_SECONDS = 10.0
_RETRY_PAUSE_SECONDS = 0.05

T = TypeVar("T")


class SessionStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    TEARING_DOWN = "tearing_down"
    ENDED = "ended"
    FAILED = "failed"


# Forward migrations: entry N (0-based) takes the schema from version N to N + 1.
# Append only; never edit a step that has shipped.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE sessions (
            session_id    TEXT PRIMARY KEY,
            project_name  TEXT NOT NULL,
            project_dir   TEXT NOT NULL,
            base_branch   TEXT,
            clone_path    TEXT,
            clone_branch  TEXT,
            vm_name       TEXT,
            vm_ip         TEXT,
            tunnel_port   INTEGER,
            tunnel_pid    INTEGER,
            tart_pid      INTEGER,
            proxy_name    TEXT,
            app_url       TEXT,
            services_mode TEXT,
            status        TEXT NOT NULL DEFAULT 'starting' CHECK (status IN
                          ('starting', 'running', 'tearing_down', 'ended', 'failed')),
            started_at    TEXT NOT NULL,
            updated_at    TEXT NOT NULL
        )
        """,
    ),
    (
        "CREATE INDEX sessions_by_project ON sessions (project_dir, started_at)",
    ),
    (
        # the clave process that owns the session: dead owner = crashed session (cleanup)
        "ALTER TABLE sessions ADD COLUMN clave_pid INTEGER",
        # the VM's SSH host key, pinned by the session for `clave ssh` / `exec` / --resume
        "ALTER TABLE sessions ADD COLUMN host_key TEXT",
    ),
    (
        # when that clave process started: a reused pid is not the owner (support/process.py)
        "ALTER TABLE sessions ADD COLUMN clave_started TEXT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class SessionRecord:
    """One row of the sessions table; timestamps are UTC."""

    session_id: str
    project_name: str
    project_dir: Path
    base_branch: str | None = None
    clone_path: Path | None = None
    clone_branch: str | None = None
    vm_name: str | None = None
    vm_ip: str | None = None
    tunnel_port: int | None = None
    tunnel_pid: int | None = None
    tart_pid: int | None = None
    proxy_name: str | None = None
    app_url: str | None = None
    services_mode: str | None = None
    clave_pid: int | None = None
    clave_started: str | None = None
    host_key: str | None = None
    status: SessionStatus = SessionStatus.STARTING
    started_at: datetime | None = None    # set by Store.add when None
    updated_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (paths and times as strings)."""
        return {name: _to_sql(getattr(self, name)) for name in COLUMNS}


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SessionRecord))
_REQUIRED = frozenset({"session_id", "project_name", "project_dir", "status", "started_at",
                       "updated_at"})
_JOURNAL = frozenset(COLUMNS) - {"session_id", "started_at", "updated_at"}
_PATHS = frozenset({"project_dir", "clone_path"})
_TIMES = frozenset({"started_at", "updated_at"})


class Store:
    """The sessions table. Open it only once flags and config are valid: opening creates it."""

    def __init__(self, connection: sqlite3.Connection, path: Path):
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, home: Home | None = None) -> Store:
        """Create `$CLAVE_HOME` (0700) and the DB (0600) if needed, and migrate it."""
        home = home or Home.from_env()
        path = home.db
        try:
            home.ensure()
            if not path.exists():
                # SQLite creates its -wal/-shm files with the database file's mode.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            store = cls(_connect(path), path)
        except (OSError, sqlite3.Error) as err:
            raise _unusable(path, err) from err
        try:
            store._migrate()
            store._retrying(store._use_wal)
        except sqlite3.Error as err:
            store.close()
            raise _unusable(path, err) from err
        except BaseException:
            store.close()
            raise
        return store

    def add(self, **values: Any) -> SessionRecord:
        """Insert a session (session_id, project_name, project_dir, any other column)."""
        now = _now()
        values["started_at"] = values.get("started_at") or now
        values["updated_at"] = values.get("updated_at") or now
        record = SessionRecord(**_coerce(values))
        names = ", ".join(COLUMNS)
        marks = ", ".join("?" for _ in COLUMNS)
        row = [_to_sql(getattr(record, name)) for name in COLUMNS]
        try:
            self._write(lambda db: db.execute(
                f"INSERT INTO sessions ({names}) VALUES ({marks})", row))
        except sqlite3.IntegrityError:
            raise ClaveError(f"Session {record.session_id} is already in {self.path}.") from None
        return record

    def record(self, session_id: str, **values: Any) -> None:
        """Journal: set these columns (before the resource they name is created)."""
        unknown = sorted(set(values) - _JOURNAL)
        if unknown:
            raise ValueError(f"not journal columns: {', '.join(unknown)}")
        for name in _REQUIRED & set(values):
            if values[name] is None:
                raise ValueError(f"{name} cannot be cleared")
        values = _coerce(values)
        self._update(session_id, {name: _to_sql(value) for name, value in values.items()})

    def forget(self, session_id: str, *names: str) -> None:
        """Journal: clear these columns (after the resource they name is gone).

        A missing session has nothing left to forget: undo() may run after the row is gone.
        """
        bad = sorted(set(names) - (_JOURNAL - _REQUIRED))
        if bad:
            raise ValueError(f"cannot forget columns: {', '.join(bad)}")
        self._update(session_id, dict.fromkeys(names), missing_ok=True)

    def get(self, session_id: str) -> SessionRecord | None:
        rows = self._read("SELECT * FROM sessions WHERE session_id = ?", (session_id,))
        return _from_row(rows[0]) if rows else None

    def sessions(self, project_dir: Path | None = None) -> list[SessionRecord]:
        """Every session, oldest first; only `project_dir`'s when given."""
        if project_dir is None:
            rows = self._read("SELECT * FROM sessions ORDER BY started_at, rowid", ())
        else:
            rows = self._read(
                "SELECT * FROM sessions WHERE project_dir = ? ORDER BY started_at, rowid",
                (str(project_dir),))
        return [_from_row(row) for row in rows]

    def remove(self, session_id: str) -> None:
        self._write(lambda db: db.execute(
            "DELETE FROM sessions WHERE session_id = ?", (session_id,)))

    def close(self) -> None:
        """Idempotent."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _update(self, session_id: str, values: dict[str, Any], missing_ok: bool = False) -> None:
        if not values:
            return
        values["updated_at"] = _to_sql(_now())
        assignments = ", ".join(f"{name} = ?" for name in values)
        params = [*values.values(), session_id]

        def update(db: sqlite3.Connection) -> int:
            return db.execute(
                f"UPDATE sessions SET {assignments} WHERE session_id = ?", params).rowcount

        if self._write(update) == 0 and not missing_ok:
            raise ClaveError(f"No session {session_id} in {self.path}.")

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        return self._retrying(lambda: self._db.execute(sql, params).fetchall())

    def _write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        """One short write transaction, taking the write lock up front (no upgrade deadlock)."""

        def attempt() -> T:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = change(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return result

        return self._retrying(attempt)

    def _retrying(self, operation: Callable[[], T]) -> T:
        """The busy timeout covers most waits; SQLite skips it in a few WAL cases, so retry."""
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        while True:
            try:
                return operation()
            except sqlite3.OperationalError as err:
                if not _is_busy(err):
                    raise
                if time.monotonic() >= deadline:
                    raise ClaveError(
                        f"{self.path} stayed locked for {BUSY_TIMEOUT_SECONDS:.0f} s: another "
                        "clave process is holding it; try again."
                    ) from None
                time.sleep(_RETRY_PAUSE_SECONDS)

    def _use_wal(self) -> None:
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, much faster

    def _migrate(self) -> None:
        version = self._retrying(self._version)
        if version > SCHEMA_VERSION:
            raise ClaveError(
                f"{self.path} was written by a newer clave (schema {version}; this clave knows "
                f"up to {SCHEMA_VERSION}): upgrade clave, or move the file away."
            )
        if version == SCHEMA_VERSION:
            return

        def migrate(db: sqlite3.Connection) -> None:
            current = self._version()   # another process may have migrated meanwhile
            for steps in MIGRATIONS[current:]:
                for sql in steps:
                    db.execute(sql)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        self._write(migrate)

    def _version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; _write() opens its own.
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    db.row_factory = sqlite3.Row
    return db


def _unusable(path: Path, err: Exception) -> ClaveError:
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return ClaveError(f"{path} cannot be used ({reason}): check CLAVE_HOME, or move the "
                      "file away to start with no sessions.")


def _is_busy(err: sqlite3.OperationalError) -> bool:
    text = str(err)
    return "database is locked" in text or "database is busy" in text


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    """Accept the plain values callers have at hand (status strings, path strings)."""
    values = dict(values)
    if values.get("status") is not None:
        values["status"] = SessionStatus(values["status"])
    for name in _PATHS & values.keys():
        if values[name] is not None:
            values[name] = Path(values[name])
    return values


def _to_sql(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def _from_row(row: sqlite3.Row) -> SessionRecord:
    values: dict[str, Any] = {}
    for name in COLUMNS:
        value = row[name]
        if value is not None and name in _PATHS:
            value = Path(value)
        elif value is not None and name in _TIMES:
            value = datetime.fromisoformat(value)
        elif name == "status":
            value = SessionStatus(value)
        values[name] = value
    return SessionRecord(**values)
