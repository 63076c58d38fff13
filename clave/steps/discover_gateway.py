"""DiscoverGateway: the VM's NAT gateway is the host as the VM sees it."""

from __future__ import annotations

import ipaddress

from clave.context import ServiceConfig, SessionContext
from clave.steps.base import Step
from clave.support.ssh import SshExecutor

GATEWAY_COMMAND = "ip route show default | awk '{print $3; exit}'"


class DiscoverGateway(Step):
    label = "Finding the host's address"

    def __init__(self, ssh: SshExecutor, settings):
        self.ssh, self.settings = ssh, settings

    def run(self, ctx: SessionContext) -> None:
        """BootVm usually asked already, along with its mounts."""
        gateway = ctx.gateway_ip or self.ssh.run(GATEWAY_COMMAND, timeout=15,
                                                 check=True).stdout.strip()
        try:
            ipaddress.IPv4Address(gateway)
        except ValueError:
            ctx.abort(f"the VM has no default route (`ip route` said {gateway!r}); "
                      f"check its network with `clave ssh {ctx.session_id}`.")
        ctx.gateway_ip = gateway
        ctx.services = ServiceConfig.for_mode(
            ctx.services_mode, gateway,
            self.settings.get("services.mysql_port"), self.settings.get("services.redis_port"))

    def done(self, ctx: SessionContext) -> bool:
        return ctx.gateway_ip is not None and ctx.services is not None
