"""`clave doctor`: what a session needs, checked on this machine, each with its fix."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from clave.context import ServicesMode
from clave.errors import ClaveError
from clave.home import Home

OK, WARN, FAIL = "ok", "warn", "FAIL"


def _tcp(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def checks(settings, home: Home, project_dir: Path) -> list[tuple[str, Callable]]:
    from clave.tasks import catalog

    world = catalog.adapters(settings, home)
    _tart, herd, auth, git = world["tart"], world["herd"], world["auth"], world["git"]

    def tart_check():
        if not shutil.which("tart"):
            return FAIL, "not installed: `brew install cirruslabs/cli/tart`"
        return OK, "installed"

    def base_check():
        if not shutil.which("tart"):    # tart answers "does the base exist"; don't guess
            return FAIL, "cannot be checked without tart: install tart first"
        build = catalog.image_build(settings, home, project_dir)
        if not build.base_exists():
            return FAIL, f"{build.base!r} missing: run `clave provision`"
        stale = build.stale()
        if stale:
            steps = "1 step" if len(stale) == 1 else f"{len(stale)} steps"
            return WARN, f"{steps} changed: run `clave provision --update`"
        return OK, f"{build.base!r} up to date"

    def herd_check():
        if not settings.get("herd.enabled"):
            return OK, "disabled (herd.enabled): sessions get http://127.0.0.1:<port>"
        if not herd.available():
            return WARN, ("not found: sessions get http://127.0.0.1:<port> instead of .test "
                          "URLs; install Herd Pro, or set herd.enabled to false")
        return OK, f"found, TLD .{herd.tld()}"

    def auth_check():
        credential = auth.resolve()
        if credential is None:
            return FAIL, "none: run `clave auth` or export CLAUDE_CODE_OAUTH_TOKEN"
        return OK, f"{credential.method} from {credential.source} ({credential.masked()})"

    def git_check():
        if not git.is_repo(project_dir):
            return WARN, (f"{project_dir} is not a git repository: run clave in your "
                          "project, or `git init` and commit it first")
        return OK, f"on branch {git.current_branch(project_dir)}"

    def services_check():
        if settings.get("services.mode") == ServicesMode.VM.value:
            return OK, "services.mode is vm: each VM runs its own MySQL and Redis"
        missing = [f"{name} on 127.0.0.1:{settings.get(key)}"
                   for name, key in (("MySQL", "services.mysql_port"),
                                     ("Redis", "services.redis_port"))
                   if not _tcp("127.0.0.1", settings.get(key))]
        if missing:
            return WARN, "not listening: " + ", ".join(missing) + " (start them in Herd)"
        return OK, "MySQL and Redis listening on this Mac"

    return [("tart", tart_check), ("base image", base_check), ("herd", herd_check),
            ("claude auth", auth_check), ("git", git_check), ("host services", services_check)]


def run(*, settings, home: Home, project_dir: Path, ui) -> int:
    rows, worst = [], OK
    for name, check in checks(settings, home, project_dir):
        try:
            status, detail = check()
        except ClaveError as err:
            status, detail = FAIL, str(err)
        rows.append([name, status, detail])
        worst = FAIL if FAIL in (worst, status) else (WARN if WARN in (worst, status) else OK)
    ui.table(["CHECK", "STATUS", "DETAIL"], rows)
    return 1 if worst == FAIL else 0
