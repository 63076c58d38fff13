"""Compare the journal with the world after a crash: what is left, and how to remove it.

A session is live while the clave process that owns it runs. Everything a dead session
left (its VM, tunnel, Herd proxy, record, logs) is a leftover — except its code: a
leftover clone is kept and its branch saved into the project, never deleted.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clave.context import SESSION_ID_LENGTH
from clave.errors import ClaveError
from clave.home import Home
from clave.support import process

SESSION_VM = re.compile(rf"^clave-[a-z0-9]{{{SESSION_ID_LENGTH}}}$")   # CloneVm's names


@dataclass(frozen=True)
class Leftover:
    kind: str
    name: str
    detail: str
    remove: Callable[[], None] = field(repr=False, compare=False)


def owner_alive(record) -> bool:
    """The clave process that owns a session still runs (not merely its pid)."""
    return process.alive(record.clave_pid, record.clave_started)


def find_leftovers(store, tart, herd, git, home: Home, base_vm: str,
                   provisioning: bool) -> list[Leftover]:
    from clave.support.tunnel import stop_forwarder

    records = store.sessions() if store else []
    dead = [r for r in records if not owner_alive(r)]
    live_vms = {r.vm_name for r in records if r not in dead}
    found: list[Leftover] = []
    for record in dead:
        sid = record.session_id
        if _tunnel_left(record):
            found.append(Leftover("tunnel", f"pid {record.tunnel_pid}", f"session {sid}",
                                  lambda pid=record.tunnel_pid: stop_forwarder(pid)))
        if _proxy_left(record, herd):
            found.append(Leftover("proxy", record.proxy_name, f"session {sid}",
                                  lambda name=record.proxy_name: herd.unproxy(name)))
        clone = Path(record.clone_path) if record.clone_path else None
        if clone is not None and git.clone_exists(clone):
            found.append(Leftover(
                "clone", str(clone), f"kept; branch {record.clone_branch} saved in the project",
                lambda r=record, c=clone: git.keep(Path(r.project_dir), c, r.clone_branch)))
        elif clone is not None and clone.is_dir() and not any(clone.iterdir()):
            # StartVm shares the directory before CloneRepo fills it: empty, it holds no work
            found.append(Leftover("share", str(clone), "empty directory",
                                  lambda c=clone: _remove_empty(c)))
        found.append(Leftover("record", sid, f"{record.project_name}, started "
                              f"{record.started_at}",
                              lambda r=record: _forget(store, home, r, herd)))
    vms = tart.list()
    names = {vm.name for vm in vms}
    olds = sorted((vm.name for vm in vms if vm.name.startswith(f"{base_vm}-old-")), reverse=True)
    restore = None if provisioning or base_vm in names or not olds else olds[0]
    if restore:   # a provisioning killed between its two renames: the old base comes back
        found.append(Leftover("base", restore, f"restored as {base_vm}",
                              lambda n=restore: tart.rename(n, base_vm)))
    for vm in vms:
        orphan = SESSION_VM.match(vm.name) and vm.name not in live_vms
        stale_build = not provisioning and vm.name != restore and (
            vm.name == f"{base_vm}-build" or vm.name.startswith(f"{base_vm}-old-"))
        if orphan or stale_build:
            found.append(Leftover("vm", vm.name, vm.state, lambda n=vm.name: _drop_vm(tart, n)))
    return found


def remove_all(leftovers: list[Leftover]) -> list[tuple[Leftover, ClaveError]]:
    """Remove each; one failure never stops the others."""
    failures = []
    for leftover in leftovers:
        try:
            leftover.remove()
        except ClaveError as err:
            failures.append((leftover, err))
    return failures


def _drop_vm(tart, name: str) -> None:
    tart.stop(name)
    tart.delete(name)


def _remove_empty(directory: Path) -> None:
    try:
        directory.rmdir()             # refuses a directory that has gained files meanwhile
    except FileNotFoundError:
        pass
    except OSError as err:
        raise ClaveError(f"could not remove {directory}: {err.strerror}") from err


def _tunnel_left(record) -> bool:
    from clave.support.tunnel import forwarder_alive

    return bool(record.tunnel_pid) and forwarder_alive(record.tunnel_pid)


def _proxy_left(record, herd) -> bool:
    return bool(record.proxy_name) and herd.available() and any(
        p.site == record.proxy_name for p in herd.proxies())


def _forget(store, home: Home, record, herd) -> None:
    """The record goes last, and only once its tunnel and proxy are gone: it is the only
    trace of them a later `clave cleanup` could find. (A VM is found by its name.)"""
    left = [what for what, there in (("tunnel", _tunnel_left(record)),
                                     ("Herd proxy", _proxy_left(record, herd))) if there]
    if left:
        raise ClaveError(f"its {' and '.join(left)} is still there; the record stays so "
                         "that the next `clave cleanup` finds it.")
    store.remove(record.session_id)
    shutil.rmtree(home.session_dir(record.session_id), ignore_errors=True)
