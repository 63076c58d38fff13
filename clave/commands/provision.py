"""`clave provision`: build the base image, or bring it up to date step by step."""

from __future__ import annotations

from pathlib import Path

from clave.home import Home


def run(*, force: bool, update: bool, image: str | None, settings, home: Home,
        project_dir: Path | None, ui) -> int:
    from clave.tasks import catalog

    build = catalog.image_build(settings, home, project_dir, image=image, force=force)
    if not (force or update or image) and build.base_exists():
        ui.info(f"The base VM {build.base!r} is already built. `clave provision --update` "
                "applies changed steps; `--force` rebuilds it from the image.")
        return 0
    build_image(settings=settings, home=home, project_dir=project_dir, ui=ui,
                force=force or bool(image), image=image)
    return 0


def build_image(*, settings, home: Home, project_dir: Path | None, ui, force: bool,
                image: str | None) -> None:
    """Under the provisioning lock: apply what is stale; a failure leaves the base as it was."""
    from clave.context import SessionContext
    from clave.engine import Engine, interrupts
    from clave.locks import file_lock
    from clave.tasks import catalog
    from clave.tasks.provision import LABEL, TARGET, provision_tasks

    home.ensure()
    waiting = lambda: ui.info("Another `clave provision` is running; waiting for it…")  # noqa: E731
    with file_lock(home.provision_lock, on_wait=waiting):
        build = catalog.image_build(settings, home, project_dir, image=image, force=force)
        stale = build.stale()
        if not stale:
            ui.info(f"The base VM {build.base!r} is up to date: "
                    f"all {len(build.pipeline.fragments)} steps match. Nothing to do.")
            return
        ctx = SessionContext(session_id="provision", project_name="provision",
                             project_dir=project_dir or Path.cwd(), settings=settings, ui=ui)
        engine = Engine(provision_tasks(build), ctx, home.provision_db, reporter=ui, label=LABEL)
        with interrupts():
            try:
                engine.run(TARGET, always=force)
            except KeyboardInterrupt:
                if not build.swapped:
                    ui.warn(f"Interrupted: the base VM {build.base!r} is unchanged and the "
                            f"build VM is being removed (log: {build.log_path}).")
                raise
            finally:
                engine.clean()   # removes the build VM; reports its own failures
        if build.adopted is not None and not build.ran:
            ui.info(f"The base VM {build.base!r} already has all "
                    f"{len(build.pipeline.fragments)} steps (its own record says so); "
                    "this Mac now knows it too.")
            return
        fresh = [f.key for f in build.pipeline.fragments if f.key not in build.ran]
        ui.info(f"Built {build.base!r}: ran {', '.join(build.ran) or 'nothing'}"
                + (f"; up to date: {', '.join(fresh)}." if fresh else "."))
