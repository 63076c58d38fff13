"""CreateSshTunnel: the VM's web server on a host port; the host's MySQL/Redis in the VM."""

from __future__ import annotations

from clave.context import SessionContext
from clave.errors import HostKeyChanged
from clave.home import Home
from clave.steps.base import Step
from clave.steps.prepare_tunnel import release, tunnel_log, tunnel_orders
from clave.store import Store
from clave.support.ports import port_in_use
from clave.support.ssh import SshExecutor
from clave.support.tunnel import ForwarderLaunch, forwarder_alive, stop_forwarder


class CreateSshTunnel(Step):
    label = "Opening the SSH tunnel"

    def __init__(self, ssh: SshExecutor, store: Store, home: Home, settings):
        self.ssh, self.store, self.home, self.settings = ssh, store, home, settings

    def run(self, ctx: SessionContext) -> None:
        # launched while the VM booted, and usually ordered by BootVm already
        launch = ctx.forwarder_launch or ForwarderLaunch(tunnel_log(self.home, ctx))
        ctx.forwarder_launch = None
        ours = self.ssh.host_key_fingerprint
        try:
            if not launch.ordered:
                launch.order(**tunnel_orders(ctx, self.settings, ours))
            ctx.tunnel_pid = launch.ready()
            if ours and launch.host_key != ours:
                stop_forwarder(launch.pid)
                raise HostKeyChanged(
                    f"the VM at {ctx.vm_ip} showed the tunnel another SSH host key "
                    f"({launch.host_key}) than clave's own connection ({ours}); refusing it.")
        finally:
            release(ctx)   # the forwarder listens on the port now (or never will)
        self.store.record(ctx.session_id, tunnel_pid=ctx.tunnel_pid)

    def undo(self, ctx: SessionContext) -> None:
        record = self.store.get(ctx.session_id)
        pid = ctx.tunnel_pid or (record.tunnel_pid if record else None)
        if pid:
            stop_forwarder(pid)
        self.store.forget(ctx.session_id, "tunnel_pid")

    def done(self, ctx: SessionContext) -> bool:
        """The forwarder runs and serves the port; a launched one still waiting for its
        orders (PrepareTunnel ran again on --resume) is not a tunnel yet."""
        return (ctx.forwarder_launch is None and bool(ctx.tunnel_pid)
                and forwarder_alive(ctx.tunnel_pid) and port_in_use(ctx.tunnel_port))
