"""CreateSshTunnel: the VM's web server on a host port; the host's MySQL/Redis in the VM."""

from __future__ import annotations

from clave.context import ServicesMode, SessionContext
from clave.home import Home
from clave.steps.base import Step
from clave.steps.prepare_tunnel import release, tunnel_log
from clave.store import Store
from clave.support.ports import port_in_use
from clave.support.ssh import SshExecutor
from clave.support.tunnel import ForwarderLaunch, forwarder_alive, stop_forwarder

VM_HTTP_PORT = 80


class CreateSshTunnel(Step):
    label = "Opening the SSH tunnel"

    def __init__(self, ssh: SshExecutor, store: Store, home: Home, settings):
        self.ssh, self.store, self.home, self.settings = ssh, store, home, settings

    def run(self, ctx: SessionContext) -> None:
        remote = []
        if ctx.services_mode is ServicesMode.TUNNEL:
            for key in ("services.mysql_port", "services.redis_port"):
                port = self.settings.get(key)
                remote.append((port, "127.0.0.1", port))
        # launched while the VM booted (a resumed session launches it now)
        launch = ctx.forwarder_launch or ForwarderLaunch(tunnel_log(self.home, ctx))
        ctx.forwarder_launch = None
        try:
            ctx.tunnel_pid = launch.start(
                host=ctx.vm_ip, user=self.settings.get("ssh.user"),
                password=self.settings.get("ssh.password"),
                port=self.settings.get("ssh.port"),
                host_key=self.ssh.host_key_fingerprint,
                local=[(ctx.tunnel_port, "127.0.0.1", VM_HTTP_PORT)], remote=remote,
            )
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
