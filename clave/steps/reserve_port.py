"""ReservePort: the host port the app will answer on, known before the VM is up.

Reserving it early lets the Herd proxy be configured while the VM boots (on a Mac each
`herd proxy` restarts Herd's nginx: seconds). The reservation is a lock no other clave
process can take; CreateSshTunnel releases it once its forwarder listens on the port.
"""

from __future__ import annotations

import contextlib

from clave.context import SessionContext
from clave.steps.base import Step
from clave.store import Store
from clave.support.ports import allocate_port, port_in_use


class ReservePort(Step):
    label = "Reserving a port"

    def __init__(self, store: Store, settings):
        self.store, self.settings = store, settings

    def run(self, ctx: SessionContext) -> None:
        reservation = contextlib.ExitStack()
        lo, hi = self.settings.get("tunnel.port_min"), self.settings.get("tunnel.port_max")
        ctx.tunnel_port = reservation.enter_context(allocate_port(lo, hi))
        ctx.port_reservation = reservation
        ctx.app_url = f"http://127.0.0.1:{ctx.tunnel_port}"
        self.store.record(ctx.session_id, tunnel_port=ctx.tunnel_port, app_url=ctx.app_url)

    def undo(self, ctx: SessionContext) -> None:
        release(ctx)

    def done(self, ctx: SessionContext) -> bool:
        """A resumed session keeps its port while its tunnel still listens there."""
        return bool(ctx.tunnel_port) and port_in_use(ctx.tunnel_port)


def release(ctx: SessionContext) -> None:
    if ctx.port_reservation is not None:
        ctx.port_reservation.close()
        ctx.port_reservation = None
