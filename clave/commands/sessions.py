"""`clave sessions [--json]`: every session clave knows about, from the store.

Reading never creates anything: with no database yet there are simply no sessions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TextIO

from clave.home import Home
from clave.store import SessionRecord, Store
from clave.support import process

HEADERS = ("ID", "PROJECT", "BRANCH", "VM", "URL/PORT", "STATUS", "STARTED")
NONE = "-"
DETACHED = "detached"


def run(*, home: Home, as_json: bool, out: TextIO, now: datetime | None = None) -> int:
    records = _records(home)
    if as_json:
        listed = [{**record.as_dict(), "attached": attached(record)} for record in records]
        out.write(json.dumps(listed, indent=2) + "\n")
        return 0
    if not records:
        out.write("No sessions.\n")
        return 0
    from clave.ui import Ui

    now = now or datetime.now(UTC)
    rows = [row(record, now) for record in records]
    Ui.create(out=out).table(HEADERS, rows)
    if any(r[HEADERS.index("STATUS")] == DETACHED for r in rows):
        out.write(f"{DETACHED}: its clave stopped; `clave --resume ID` re-attaches, "
                  "`clave cleanup` removes what it left.\n")
    return 0


def attached(record: SessionRecord) -> bool | None:
    """Whether the clave that owns the session still runs (None: no owner recorded)."""
    if not record.clave_pid:
        return None
    return process.alive(record.clave_pid, record.clave_started)


def row(record: SessionRecord, now: datetime) -> tuple[str, ...]:
    return (
        record.session_id,
        record.project_name,
        record.clone_branch or NONE,
        record.vm_name or NONE,
        _address(record),
        DETACHED if attached(record) is False else record.status.value,
        ago(record.started_at, now) if record.started_at else NONE,
    )


def ago(then: datetime, now: datetime) -> str:
    """"just now", "3 min ago", "2 hours ago", "5 days ago"."""
    minutes = max(0, int((now - then).total_seconds())) // 60
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} min ago"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} hour{'s' if hours > 1 else ''} ago"
    days = hours // 24
    return f"{days} day{'s' if days > 1 else ''} ago"


def _address(record: SessionRecord) -> str:
    if record.app_url:
        return record.app_url
    if record.tunnel_port:
        return f"127.0.0.1:{record.tunnel_port}"
    return NONE


def _records(home: Home) -> list[SessionRecord]:
    if not home.db.exists():
        return []
    with Store.open(home) as store:
        return store.sessions()
