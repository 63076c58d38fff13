"""clave's graphs for plain doit: `doit list`, `doit info TASK` at the repository root.

The same tasks as `clave tasks`, from the same catalog and built by the same engine code,
so the two never disagree. Each graph becomes one `task_<graph>` creator yielding its steps
as top-level tasks, plus a group task named after the graph.

The dependency DB is provisioning's (`$CLAVE_HOME/provision.db`), so `doit list --status`
agrees with `clave tasks`. A session's graphs keep their status in per-session DBs that
plain doit never sees.
"""

from __future__ import annotations

from pathlib import Path

from clave import config
from clave.context import SessionContext
from clave.engine import Engine
from clave.home import Home
from clave.tasks import catalog

PROJECT_DIR = Path.cwd()         # doit has already changed into this file's directory
HOME = Home.from_env().ensure()  # doit opens its DB on every command, `list` included

DOIT_CONFIG = {
    "backend": "sqlite3",
    "dep_file": str(HOME.provision_db),
    "verbosity": 2,
    "default_tasks": [],         # plain `doit` runs nothing: name a task
}

SETTINGS = config.load(PROJECT_DIR)
GRAPHS = catalog.graphs(SETTINGS, HOME, PROJECT_DIR)
CONTEXT = SessionContext(session_id="dodo", project_name=PROJECT_DIR.name,
                         project_dir=PROJECT_DIR, settings=SETTINGS)


def task_preflight():
    """Preflight: is this a project clave can run in?"""
    yield from _graph("preflight")


def task_session():
    """Session: clone the VM and the code, boot, tunnel, proxy, bootstrap."""
    yield from _graph("session")


def task_provision():
    """Provisioning steps (listed only: `doit provision` and `doit push_image` come later)."""
    # Issue 5 adds the runnable `provision` and `push_image` tasks here, under the
    # provisioning lock (clave.locks), for the CI image-rebuild job.
    yield from _graph("provision", group=False)


def _graph(label: str, *, group: bool = True):
    tasks, _db = GRAPHS[label]
    engine = Engine(tasks, CONTEXT, HOME.provision_db)
    # the engine's own dicts (not a copy), chained in its run order as `clave` runs them
    for task in engine._task_dicts(failures=[], sequence=engine.order()):
        name = task.pop("name")
        yield {"basename": name, **task}
    if group:
        yield {"basename": label, "actions": None, "doc": f"every {label} step, in order",
               "task_dep": engine.order()}
