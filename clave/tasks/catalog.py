"""Every graph clave runs, wired to real adapters: for `clave tasks`, dodo.py and commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clave.home import Home
from clave.tasks.graph import Task, build


def adapters(settings, home: Home, *, store=None, confirm: Callable | None = None,
             interactive: bool = False, provision: Callable[[], None] | None = None
             ) -> dict[str, Any]:
    """The adapters steps ask for by name. Constructing them is cheap and touches nothing."""
    from clave.support.auth import AuthManager
    from clave.support.git import GitManager
    from clave.support.herd import HerdManager
    from clave.support.tart import TartManager

    return {
        "settings": settings, "home": home, "store": store,
        "tart": TartManager(), "herd": HerdManager(), "git": GitManager(),
        "ssh": ssh_executor(settings),
        "auth": AuthManager(Path(settings.get("auth_file")).expanduser()),
        "confirm": confirm or (lambda question, default: default),
        "interactive": interactive,
        "provision": provision or _no_provision,
    }


def ssh_executor(settings):
    """An SshExecutor for a VM as the settings describe its login (host set later)."""
    from clave.support.ssh import SshExecutor

    ssh = SshExecutor(user=settings.get("ssh.user"), port=settings.get("ssh.port"),
                      connect_timeout=settings.get("ssh.connect_timeout"))
    return ssh.use_password(settings.get("ssh.password"))


def image_build(settings, home: Home, project_dir: Path | None, *, ssh=None, tart=None,
                image: str | None = None, force: bool = False):
    from clave.context import ServicesMode
    from clave.provision.build import ImageBuild
    from clave.provision.pipeline import ProvisioningPipeline

    pipeline = ProvisioningPipeline.load(
        settings.get("provision.extra_steps"), project_dir,
        services_vm=settings.get("services.mode") == ServicesMode.VM.value)
    world = adapters(settings, home)
    return ImageBuild(pipeline, tart or world["tart"], ssh or world["ssh"], settings, home,
                      image=image, force=force)


def graphs(settings, home: Home, project_dir: Path | None = None
           ) -> dict[str, tuple[list[Task], Path | None]]:
    """Label -> (tasks in order, the doit DB whose status to show, if any)."""
    from clave.tasks.preflight import PREFLIGHT
    from clave.tasks.provision import provision_tasks
    from clave.tasks.session import SESSION

    world = adapters(settings, home)
    provision_db = home.provision_db if home.provision_db.exists() else None
    return {
        "preflight": (build(PREFLIGHT, world), None),
        "session": (build(SESSION, world), None),
        "provision": (provision_tasks(image_build(settings, home, project_dir)), provision_db),
    }


def _no_provision() -> None:
    from clave.errors import ClaveError

    raise ClaveError("the base VM is missing: run `clave provision` first.")
