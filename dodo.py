"""clave's graphs for plain doit: `doit list`, `doit info TASK` at the repository root.

The same tasks as `clave tasks`, from the same catalog and built by the same engine code,
so the two never disagree. Each graph becomes one `task_<graph>` creator yielding its steps
as top-level tasks, plus a group task named after the graph.

The dependency DB is provisioning's (`$CLAVE_HOME/provision.db`), so `doit list --status`
agrees with `clave tasks`. A session's graphs keep their status in per-session DBs that
plain doit never sees.

For the CI image-rebuild job: `doit provision [--force] [--image IMAGE]` is
`clave provision --update` (or `--force`), under the same provisioning lock, and
`doit push_image` uploads the base VM to the registry reference in $CLAVE_IMAGE_REGISTRY
(e.g. `ghcr.io/acme/clave-base:latest`) with `tart push`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from clave import config
from clave.context import SessionContext
from clave.engine import Engine
from clave.home import Home
from clave.tasks import catalog

REGISTRY_ENV = "CLAVE_IMAGE_REGISTRY"
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
    """Build the base VM, or apply its stale steps (`clave provision --update`)."""
    yield from _graph("provision", group=False)
    yield {
        "basename": "provision",
        "doc": "build the base VM or apply its stale steps (--force: rebuild from the image)",
        "actions": [_provision],
        "params": [
            {"name": "force", "long": "force", "type": bool, "default": False,
             "help": "rebuild every step from the OCI image"},
            {"name": "image", "long": "image", "type": str, "default": "",
             "help": "the OCI image to build from (implies --force)"},
        ],
        "uptodate": [False],      # clave decides what is stale, from the image's own record
        "verbosity": 2,
    }


def task_push_image():
    """Push the base VM to the OCI registry named by $CLAVE_IMAGE_REGISTRY (`tart push`)."""
    return {"actions": [_push_image], "uptodate": [False], "verbosity": 2}


def _provision(force: bool, image: str) -> bool:
    from clave.commands import provision
    from clave.errors import ClaveError
    from clave.ui import Ui

    try:
        provision.build_image(settings=SETTINGS, home=HOME, project_dir=PROJECT_DIR,
                              ui=Ui.create(), force=force or bool(image), image=image or None)
    except ClaveError as err:
        print(f"doit provision: {err.message}", file=sys.stderr)
        return False
    return True


def _push_image() -> bool:
    from clave.errors import ClaveError
    from clave.locks import file_lock
    from clave.support.tart import TartManager

    remote = os.environ.get(REGISTRY_ENV, "").strip()
    base = SETTINGS.get("base_vm")
    if "/" not in remote:
        print(f"doit push_image: set {REGISTRY_ENV} to the image reference to push "
              f"{base!r} to, e.g. {REGISTRY_ENV}=ghcr.io/acme/clave-base:latest"
              + (f" (got {remote!r})." if remote else "."), file=sys.stderr)
        return False
    tart = TartManager()
    try:
        with file_lock(HOME.base_lock, shared=True):   # never while a build swaps it
            if not tart.exists(base):
                print(f"doit push_image: there is no base VM {base!r} to push; "
                      "run `doit provision` first.", file=sys.stderr)
                return False
            tart.push(base, remote)
    except ClaveError as err:
        print(f"doit push_image: {err.message}", file=sys.stderr)
        return False
    print(f"pushed {base} to {remote}")
    return True


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
