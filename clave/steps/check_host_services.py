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
        services = ctx.services
        missing = []
        for name, host, port in (("MySQL", services.mysql_host, services.mysql_port),
                                 ("Redis", services.redis_host, services.redis_port)):
            ctx.hint(f"{name} at {host}:{port}")
            probe = PROBE.format(quote(f"exec 3<>/dev/tcp/{host}/{port}"))
            if not self.ssh.run(probe, timeout=15).ok:
                missing.append((name, host, port))
        return missing

    def run(self, ctx: SessionContext) -> None:
        for name, host, port in self.unreachable(ctx):
            fix = FIXES[ctx.services_mode].format(name=name, host=host, port=port)
            ctx.warn(f"{name} is not reachable from the VM at {host}:{port}: {fix}")

    def done(self, ctx: SessionContext) -> bool:
        return False
