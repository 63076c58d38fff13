"""`clave cleanup [--dry-run]`: remove what crashed sessions left behind."""

from __future__ import annotations

from clave.home import Home


def run(*, dry_run: bool, settings, home: Home, ui) -> int:
    import fcntl

    from clave.store import Store
    from clave.tasks import catalog

    world = catalog.adapters(settings, home)
    store = Store.open(home) if home.db.exists() else None   # no DB: nothing journalled
    try:
        return _clean(store, world, home, settings, dry_run=dry_run, ui=ui,
                      provisioning=_provisioning(home, fcntl))
    finally:
        if store is not None:
            store.close()


def _clean(store, world, home: Home, settings, *, dry_run: bool, ui, provisioning: bool) -> int:
    from clave.reconcile import find_leftovers, remove_all

    leftovers = find_leftovers(store, world["tart"], world["herd"], world["git"], home,
                               settings.get("base_vm"), provisioning)
    if not leftovers:
        ui.info("Nothing to clean up.")
        return 0
    ui.table(["KIND", "NAME", "DETAIL"], [[x.kind, x.name, x.detail] for x in leftovers])
    if dry_run:
        ui.info(f"{len(leftovers)} leftovers; run `clave cleanup` without --dry-run to remove "
                "them (clones are kept).")
        return 0
    failures = remove_all(leftovers)
    for leftover, err in failures:
        ui.warn(f"could not remove {leftover.kind} {leftover.name}: {err}")
    ui.info(f"Cleaned up {len(leftovers) - len(failures)} of {len(leftovers)}.")
    return 1 if failures else 0


def _provisioning(home: Home, fcntl) -> bool:
    """True while another process holds the provisioning lock (its build VM is not a leftover)."""
    if not home.provision_lock.exists():
        return False
    with home.provision_lock.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False
