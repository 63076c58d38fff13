"""CheckHostServices: warn early, with the fix, when the VM cannot reach MySQL or Redis."""

from __future__ import annotations

from clave.context import ServicesMode, SessionContext
from clave.steps.base import Step
from clave.support.ssh import SshExecutor, quote

PROBE = "timeout 3 bash -c {} </dev/null"

FIXES = {
    ServicesMode.TUNNEL: "start {name} in Herd (Services tab) so it listens on "
                         "127.0.0.1:{port} on this Mac; the SSH tunnel forwards it into the VM.",
    ServicesMode.GATEWAY: "make Herd's {name} listen beyond 127.0.0.1 (bind 0.0.0.0 or {host}) "
                          "and allow users from 192.168.64.%, or use services.mode \"tunnel\".",
    ServicesMode.VM: "the in-VM {name} is not running: rebuild the base image with "
                     "`clave provision --update` (services.mode \"vm\" adds it).",
}


class CheckHostServices(Step):
    label = "Checking MySQL and Redis"

    def __init__(self, ssh: SshExecutor):
        self.ssh = ssh

    def unreachable(self, ctx: SessionContext) -> list[tuple[str, str, int]]:
        """Both probes in one round trip: each prints its name when it cannot connect."""
        services = ctx.services
        targets = (("MySQL", services.mysql_host, services.mysql_port),
                   ("Redis", services.redis_host, services.redis_port))
        ctx.hint(", ".join(f"{name} at {host}:{port}" for name, host, port in targets))
        probes = "; ".join(
            f"{PROBE.format(quote(f'exec 3<>/dev/tcp/{host}/{port}'))} || echo {name}"
            for name, host, port in targets)
        failed = self.ssh.run(probes, timeout=15).stdout.split()
        return [target for target in targets if target[0] in failed]

    def run(self, ctx: SessionContext) -> None:
        for name, host, port in self.unreachable(ctx):
            fix = FIXES[ctx.services_mode].format(name=name, host=host, port=port)
            ctx.warn(f"{name} is not reachable from the VM at {host}:{port}: {fix}")

    def done(self, ctx: SessionContext) -> bool:
        return False
