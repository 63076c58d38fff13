"""`clave tasks`: every graph's steps in run order, like `doit list`, with status where known.

A graph's status comes from its doit DB (provisioning's; a session's graphs have none until
a session runs). Listing runs no step: only up-to-date checks, which never raise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

from clave.home import Home

HEADERS = ("TASK", "LABEL", "AFTER")
STATUS_HEADER = "STATUS"
NONE = "-"


def run(*, project_dir: Path, home: Home, out: TextIO) -> int:
    from clave import config
    from clave.context import SessionContext
    from clave.engine import Engine
    from clave.tasks import catalog
    from clave.ui import Ui

    settings = config.load(project_dir)   # an invalid config stops here: exit 2
    ctx = SessionContext(session_id="tasks", project_name=project_dir.name,
                         project_dir=project_dir, settings=settings)
    ui = Ui.create(out=out)
    for index, (label, (tasks, db)) in enumerate(catalog.graphs(settings, home,
                                                                 project_dir).items()):
        engine = Engine(tasks, ctx, db or Path(os.devnull))   # order() never opens the DB
        by_name = {task.name: task for task in tasks}
        rows = [[name, by_name[name].label, ", ".join(by_name[name].deps) or NONE]
                for name in engine.order()]
        headers = list(HEADERS)
        if db is not None:
            headers.append(STATUS_HEADER)
            for row, status in zip(rows, engine.status(), strict=True):
                row.append(describe(status.status, status.reason))
        out.write(("\n" if index else "") + heading(label, len(tasks), db) + "\n")
        ui.table(headers, rows)
    return 0


def heading(label: str, count: int, db: Path | None) -> str:
    source = f"; status from {db}" if db is not None else ""
    return f"{label} ({count} task{'s' if count != 1 else ''}{source})"


def describe(status: str, reason: str) -> str:
    """"up-to-date", or "stale: config changed" — what the next run would do, and why."""
    return f"{status}: {reason}" if reason else status
