"""CreateSshTunnel: waits for the forwarder BootVm ordered, and trusts it only if it saw the
same SSH host key as clave's own connection (the real forwarder: tests/unit/support/test_tunnel.py
and the end-to-end suites)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from clave.errors import HostKeyChanged
from clave.steps.create_ssh_tunnel import CreateSshTunnel

OURS = "SHA256:clave-saw-this"
NO_SUCH_PID = 4_194_303          # above any pid_max: stop_forwarder finds nothing to stop


@dataclass
class Ssh:
    host_key_fingerprint: str | None = OURS


@dataclass
class OrderedLaunch:
    """A forwarder BootVm has given its orders; ready() reports the key it saw."""

    saw: str
    pid: int = NO_SUCH_PID
    ordered: bool = True
    host_key: str | None = None

    def ready(self, timeout: float = 15) -> int:
        self.host_key = self.saw
        return self.pid


def tunnel(world, launch: OrderedLaunch):
    ctx = world.saved_ctx(vm_ip="192.168.64.9", tunnel_port=8123)
    ctx.forwarder_launch = launch
    return CreateSshTunnel(Ssh(), world.store, world.home, ctx.settings), ctx


def test_a_forwarder_that_saw_clave_s_host_key_is_the_sessions_tunnel(world):
    step, ctx = tunnel(world, OrderedLaunch(saw=OURS))
    step.run(ctx)
    assert ctx.tunnel_pid == NO_SUCH_PID == world.store.get(ctx.session_id).tunnel_pid
    assert ctx.forwarder_launch is None


def test_a_forwarder_that_saw_another_host_key_is_refused(world):
    step, ctx = tunnel(world, OrderedLaunch(saw="SHA256:someone-else"))
    with pytest.raises(HostKeyChanged) as refused:
        step.run(ctx)
    assert "SHA256:someone-else" in str(refused.value) and OURS in str(refused.value)
    assert world.store.get(ctx.session_id).tunnel_pid is None
