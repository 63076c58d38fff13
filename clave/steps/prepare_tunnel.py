"""PrepareTunnel: the app's host port and its forwarder process, ready before the VM is.

Reserving the port early lets the Herd proxy be configured while the VM boots (on a Mac
each `herd proxy` restarts Herd's nginx: seconds), and the forwarder process imports its
SSH library meanwhile. The reservation is a lock no other clave process can take;
CreateSshTunnel releases it once the forwarder listens on the port.
"""

from __future__ import annotations

import contextlib

from clave.context import ServicesMode, SessionContext
from clave.home import Home
from clave.steps.base import Step
from clave.store import Store
from clave.support.ports import allocate_port, port_in_use
from clave.support.tunnel import ForwarderLaunch, forwarder_alive

VM_HTTP_PORT = 80


def tunnel_log(home: Home, ctx: SessionContext):
    return home.session_dir(ctx.session_id) / "tunnel.log"


def tunnel_orders(ctx: SessionContext, settings, host_key: str | None) -> dict:
    """The forwarder's orders: the app's host port to the VM's web server and, in tunnel
    mode, the host's MySQL and Redis on the same ports inside the VM."""
    remote = []
    if ctx.services_mode is ServicesMode.TUNNEL:
        for key in ("services.mysql_port", "services.redis_port"):
            port = settings.get(key)
            remote.append((port, "127.0.0.1", port))
    return {
        "host": ctx.vm_ip, "user": settings.get("ssh.user"),
        "password": settings.get("ssh.password"), "port": settings.get("ssh.port"),
        "host_key": host_key, "local": [(ctx.tunnel_port, "127.0.0.1", VM_HTTP_PORT)],
        "remote": remote,
    }


class PrepareTunnel(Step):
    label = "Preparing the tunnel"

    def __init__(self, store: Store, home: Home, settings):
        self.store, self.home, self.settings = store, home, settings

    def run(self, ctx: SessionContext) -> None:
        reservation = contextlib.ExitStack()
        lo, hi = self.settings.get("tunnel.port_min"), self.settings.get("tunnel.port_max")
        ctx.tunnel_port = reservation.enter_context(allocate_port(lo, hi))
        ctx.port_reservation = reservation
        ctx.app_url = f"http://127.0.0.1:{ctx.tunnel_port}"
        self.store.record(ctx.session_id, tunnel_port=ctx.tunnel_port, app_url=ctx.app_url)
        ctx.forwarder_launch = ForwarderLaunch(tunnel_log(self.home, ctx))
        ctx.tunnel_pid = ctx.forwarder_launch.pid
        self.store.record(ctx.session_id, tunnel_pid=ctx.tunnel_pid)   # cleanup finds it

    def undo(self, ctx: SessionContext) -> None:
        if ctx.forwarder_launch is not None:
            ctx.forwarder_launch.cancel()
            ctx.forwarder_launch = None
        release(ctx)

    def done(self, ctx: SessionContext) -> bool:
        """A resumed session keeps its port while its tunnel still listens there: the port
        is bound and the forwarder the journal names is alive (if it died, whoever holds
        the port now is not us)."""
        if not (ctx.tunnel_port and port_in_use(ctx.tunnel_port)):
            return False
        return ctx.tunnel_pid is None or forwarder_alive(ctx.tunnel_pid)


def release(ctx: SessionContext) -> None:
    """Give the port reservation up (the forwarder listens there now, or never will)."""
    if ctx.port_reservation is not None:
        ctx.port_reservation.close()
        ctx.port_reservation = None
