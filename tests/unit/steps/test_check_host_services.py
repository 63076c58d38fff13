"""CheckHostServices: real probes from a real shell over SSH (a local sshd plays the VM)."""

from __future__ import annotations

import socket

import pytest

from clave.context import ServiceConfig, ServicesMode, SessionContext
from clave.steps.check_host_services import CheckHostServices
from clave.support.ssh import SshExecutor
from tests.messages import Said
from tests.unit.support.sshd import free_port, running_sshd


@pytest.fixture(scope="module")
def vm():
    with running_sshd() as server, SshExecutor(server.user, server.port) as ssh:
        yield ssh.set_host(server.host).use_password(server.password)


@pytest.fixture
def listening():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def context(mode: ServicesMode, mysql: int, redis: int) -> SessionContext:
    return SessionContext("abcd1234", "shop", None, services_mode=mode, ui=Said(),
                          services=ServiceConfig("127.0.0.1", mysql, "127.0.0.1", redis))


def test_reachable_services_raise_no_warning(vm, listening):
    ctx = context(ServicesMode.TUNNEL, listening, listening)
    CheckHostServices(vm).run(ctx)
    assert ctx.ui.of("warn") == []


def test_an_unreachable_service_is_named_with_the_fix_for_tunnel_mode(vm, listening):
    closed = free_port()
    ctx = context(ServicesMode.TUNNEL, listening, closed)
    CheckHostServices(vm).run(ctx)
    [warning] = ctx.ui.of("warn")
    assert warning.startswith(f"Redis is not reachable from the VM at 127.0.0.1:{closed}")
    assert "start Redis in Herd" in warning


def test_gateway_mode_says_how_to_make_herds_services_listen_beyond_loopback(vm):
    ctx = context(ServicesMode.GATEWAY, free_port(), free_port())
    CheckHostServices(vm).run(ctx)
    warnings = ctx.ui.of("warn")
    assert [w.split()[0] for w in warnings] == ["MySQL", "Redis"]
    assert all("listen beyond 127.0.0.1" in w for w in warnings)
