"""`clave`: preflight, then the session graph, then Claude Code, then teardown (always)."""

from __future__ import annotations

import re
from pathlib import Path

from clave.context import OnExit, ServicesMode, SessionContext, new_session_id
from clave.errors import EXIT_INTERRUPTED, ClaveError
from clave.home import Home


def project_slug(name: str) -> str:
    """A Herd domain label: lowercase letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:40].rstrip("-") or "app"


def run(*, project_dir: Path, on_exit: OnExit | None, settings, home: Home, ui) -> int:
    from clave.engine import Engine, foreground_child, interrupts
    from clave.steps.run_claude_code import RunClaudeCode
    from clave.store import Store
    from clave.tasks import catalog, preflight, session
    from clave.tasks.graph import build
    from clave.teardown import SessionTeardown

    ctx = SessionContext(
        session_id=new_session_id(), project_name=project_slug(project_dir.name),
        project_dir=project_dir.resolve(),
        on_exit=on_exit or OnExit.coerce(settings.get("on_exit")),
        services_mode=ServicesMode(settings.get("services.mode")), settings=settings, ui=ui)
    home.ensure()
    store = Store.open(home)
    session_dir = home.session_dir(ctx.session_id)
    world = catalog.adapters(
        settings, home, store=store, confirm=ui.confirm, interactive=ui.interactive,
        provision=lambda: _provision(settings, home, ctx.project_dir, ui))
    pre = Engine(build(preflight.PREFLIGHT, world), ctx, session_dir / "preflight.db",
                 reporter=ui, label=preflight.LABEL)
    up = Engine(build(session.SESSION, world), ctx, session_dir / "session.db",
                reporter=ui, label=session.LABEL)
    # the session graph is only cleaned once it started: preflight creates no resources
    teardown = SessionTeardown(ctx, None, pre, world["git"], store, home, ui)
    code = 0
    with interrupts():
        try:
            pre.run(always=True)
            store.record(ctx.session_id, status="running")
            teardown.session = up
            up.run(session.UP_TO, always=True)
            ui.release()
            ui.info(f"Session {ctx.session_id}: {ctx.app_url} — branch {ctx.session_branch}")
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
            store.close()
    return code


def _provision(settings, home: Home, project_dir: Path, ui) -> None:
    from clave.commands import provision

    provision.build_image(settings=settings, home=home, project_dir=project_dir, ui=ui,
                          force=False, image=None)
