"""BootVm: wait for the VM's address, then SSH, then mount the code at /srv/project.

Once the address is known, the session's forwarder (PrepareTunnel) gets its orders, so its
login overlaps clave's own and the mounts, and CreateSshTunnel rarely waits.
"""

from __future__ import annotations

from clave.context import SessionContext
from clave.errors import ClaveError, CommandFailed
from clave.steps.base import Step
from clave.steps.discover_gateway import GATEWAY_COMMAND
from clave.steps.prepare_tunnel import tunnel_orders
from clave.steps.start_vm import COMPOSER_CACHE_TAG, SHARE_TAG
from clave.store import Store
from clave.support.share import mount_shares
from clave.support.ssh import SshExecutor
from clave.support.tart import TartManager

IP_TIMEOUT = 90
IP_POLLERS = 8      # tart reads DHCP leases once a second: 8 staggered readers, 0.125 s
RUN_EXIT_GRACE = 2.0   # seconds a refused `tart run` may take to exit after `tart ip` failed
SSH_TIMEOUT = 90
MOUNT_TIMEOUT = 30
PROJECT_DIR = "/srv/project"
COMPOSER_CACHE_DIR = "/home/admin/.cache/composer"
SHARES = {SHARE_TAG: PROJECT_DIR, COMPOSER_CACHE_TAG: COMPOSER_CACHE_DIR}


class BootVm(Step):
    label = "Booting the VM"

    def __init__(self, tart: TartManager, ssh: SshExecutor, store: Store, settings):
        self.tart, self.ssh, self.store, self.settings = tart, ssh, store, settings

    def run(self, ctx: SessionContext) -> None:
        ctx.hint("waiting for an IP address")
        run = ctx.tart_run     # this process's `tart run`, if it started one
        try:
            ctx.vm_ip = self.tart.ip(ctx.vm_name, wait=IP_TIMEOUT, pollers=IP_POLLERS,
                                     check=run.check if run else None)
        except CommandFailed:
            if run is not None:
                run.check(grace=RUN_EXIT_GRACE)   # its own words explain `tart ip`'s failure
            raise
        self.store.record(ctx.session_id, vm_ip=ctx.vm_ip)
        launch = ctx.forwarder_launch
        if launch is not None and not launch.ordered:
            # it logs in alongside us (CreateSshTunnel then compares the host keys both saw),
            # so the tunnel is up by the time it is needed
            launch.order(**tunnel_orders(ctx, self.settings, self.ssh.host_key_fingerprint),
                         wait=SSH_TIMEOUT)
        ctx.hint(f"waiting for SSH on {ctx.vm_ip}")
        self.ssh.set_host(ctx.vm_ip)
        self.ssh.wait_ready(SSH_TIMEOUT)
        self.store.record(ctx.session_id, host_key=self.ssh.host_key_fingerprint)
        ctx.hint(f"mounting the code at {PROJECT_DIR}")
        # DiscoverGateway's question rides along: one round trip fewer
        said = mount_shares(self.ssh, SHARES, MOUNT_TIMEOUT, hint=ctx.hint,
                            then=GATEWAY_COMMAND)
        ctx.gateway_ip = said.strip() or None

    def undo(self, ctx: SessionContext) -> None:
        self.ssh.close()

    def done(self, ctx: SessionContext) -> bool:
        if not ctx.vm_ip:
            return False
        try:
            self.ssh.set_host(ctx.vm_ip)
            return self.ssh.run(f"mountpoint -q {PROJECT_DIR}", timeout=10).ok
        except ClaveError:
            return False
