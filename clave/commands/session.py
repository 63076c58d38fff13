"""`clave`: preflight, then the session graph, then Claude Code, then teardown (always).

`clave --resume [ID]` re-attaches to a session whose clave process died (the VM runs in its
own process session and survives it): the same graphs run with their live health checks,
so only what is missing is recreated.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from clave.context import OnExit, ServicesMode, SessionContext, new_session_id
from clave.errors import EXIT_INTERRUPTED, ClaveError, UsageError
from clave.home import Home


def project_slug(name: str) -> str:
    """A Herd domain label: lowercase letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:40].rstrip("-") or "app"


def run(*, project_dir: Path, on_exit: OnExit | None, settings, home: Home, ui) -> int:
    from clave.store import Store

    ctx = SessionContext(
        session_id=new_session_id(), project_name=project_slug(project_dir.name),
        project_dir=project_dir.resolve(),
        on_exit=on_exit or OnExit.coerce(settings.get("on_exit")),
        services_mode=ServicesMode(settings.get("services.mode")), settings=settings, ui=ui)
    home.ensure()
    with Store.open(home) as store:
        return _drive(ctx, settings, home, ui, store, fresh=True)


def resume(*, session_id: str | None, project_dir: Path, on_exit: OnExit | None, settings,
           home: Home, ui) -> int:
    from clave.reconcile import owner_alive
    from clave.store import SessionStatus, Store
    from clave.support import process

    if not home.db.exists():
        raise UsageError("there is no session to resume: `clave sessions` lists them.")
    with Store.open(home) as store:
        record = _pick(store, session_id, project_dir.resolve(), owner_alive)
        if owner_alive(record) and record.clave_pid != os.getpid():
            raise UsageError(f"session {record.session_id} is still attached in another "
                             f"terminal (clave pid {record.clave_pid}).")
        if record.status == SessionStatus.TEARING_DOWN:   # its code may be merged already
            raise UsageError(f"session {record.session_id} was being torn down when its clave "
                             "stopped: `clave cleanup` finishes that.")
        store.record(record.session_id, clave_pid=os.getpid(),
                     clave_started=process.started(os.getpid()))
        ctx = SessionContext(
            session_id=record.session_id, project_name=record.project_name,
            project_dir=Path(record.project_dir),
            on_exit=on_exit or OnExit.coerce(settings.get("on_exit")),
            services_mode=ServicesMode(record.services_mode or settings.get("services.mode")),
            settings=settings, ui=ui, base_branch=record.base_branch,
            clone_path=Path(record.clone_path) if record.clone_path else None,
            clone_branch=record.clone_branch, vm_name=record.vm_name, vm_ip=record.vm_ip,
            tart_pid=record.tart_pid, tunnel_port=record.tunnel_port,
            tunnel_pid=record.tunnel_pid, proxy_name=record.proxy_name, app_url=record.app_url)
        ui.info(f"Resuming session {ctx.session_id}.")
        return _drive(ctx, settings, home, ui, store, fresh=False, host_key=record.host_key)


def _pick(store, session_id: str | None, project_dir: Path, owner_alive):
    if session_id:
        record = store.get(session_id)
        if record is None:
            raise UsageError(f"no session {session_id!r}: `clave sessions` lists them.")
        return record
    orphans = [r for r in store.sessions(project_dir) if not owner_alive(r)]
    if not orphans:
        raise UsageError("there is no detached session of this project to resume: "
                         "`clave sessions` lists them.")
    if len(orphans) > 1:
        found = ", ".join(r.session_id for r in orphans)
        raise UsageError(f"several sessions of this project are detached ({found}): "
                         "name one with `clave --resume ID`.")
    return orphans[0]


def _drive(ctx: SessionContext, settings, home: Home, ui, store, *, fresh: bool,
           host_key: str | None = None) -> int:
    from clave.engine import Engine, foreground_child, interrupts
    from clave.steps.run_claude_code import RunClaudeCode
    from clave.support.ssh import preload
    from clave.tasks import catalog, preflight, session
    from clave.tasks.graph import build
    from clave.teardown import SessionTeardown

    preload()
    session_dir = home.session_dir(ctx.session_id)
    world = catalog.adapters(
        settings, home, store=store, confirm=ui.confirm, interactive=ui.interactive,
        provision=lambda: _provision(settings, home, ctx.project_dir, ui))
    if host_key:
        world["ssh"].pin_host_key(host_key)
    pre = Engine(build(preflight.PREFLIGHT, world), ctx, session_dir / "preflight.db",
                 reporter=ui, label=preflight.LABEL)
    up = Engine(build(session.SESSION, world), ctx, session_dir / "session.db",
                reporter=ui, label=session.LABEL)
    # the session graph is cleaned only once it started: preflight creates no resources
    teardown = SessionTeardown(ctx, None if fresh else up, pre, world["git"], store, home, ui)
    code = 0
    with interrupts():
        try:
            pre.run(always=fresh)
            store.record(ctx.session_id, status="running")
            teardown.session = up
            up.run(session.UP_TO, always=fresh)
            ui.release()
            ui.info(f"Session {ctx.session_id}: {ctx.app_url} on branch {ctx.session_branch}")
            with foreground_child():
                RunClaudeCode(world["ssh"]).run(ctx)
            code = ctx.exit_code or 0
        except KeyboardInterrupt:
            ui.release()
            ui.warn("interrupted: tearing the session down.")
            code = EXIT_INTERRUPTED
        except ClaveError as err:
            ui.release()
            ui.error(str(err))
            code = err.exit_code
        finally:
            teardown.run()
    return code


def _provision(settings, home: Home, project_dir: Path, ui) -> None:
    from clave.commands import provision

    provision.build_image(settings=settings, home=home, project_dir=project_dir, ui=ui,
                          force=False, image=None)
