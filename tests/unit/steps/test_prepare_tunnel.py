"""PrepareTunnel: the app's port is known (and held) and its forwarder launched early."""

from __future__ import annotations

import socket

from clave.steps.prepare_tunnel import PrepareTunnel
from clave.support.ports import allocate_port
from clave.support.tunnel import forwarder_alive


def test_the_reserved_port_is_journalled_and_no_other_session_gets_it(world):
    ctx = world.saved_ctx()
    step = PrepareTunnel(world.store, world.home, world.settings)
    step.run(ctx)
    port = ctx.tunnel_port
    assert ctx.app_url == f"http://127.0.0.1:{port}"
    assert world.store.get(ctx.session_id).tunnel_port == port
    assert world.store.get(ctx.session_id).tunnel_pid == ctx.tunnel_pid
    assert forwarder_alive(ctx.tunnel_pid)       # launched, waiting for the VM
    with allocate_port(port, port + 5) as other:
        assert other != port
    step.undo(ctx)
    assert not forwarder_alive(ctx.tunnel_pid)
    with allocate_port(port, port) as again:
        assert again == port


def test_undo_before_run_and_twice_is_harmless(world):
    ctx = world.saved_ctx()
    step = PrepareTunnel(world.store, world.home, world.settings)
    step.undo(ctx)
    step.run(ctx)
    step.undo(ctx)
    step.undo(ctx)
    assert ctx.port_reservation is None


def test_a_resumed_session_keeps_its_port_while_its_tunnel_listens(world):
    ctx = world.saved_ctx()
    step = PrepareTunnel(world.store, world.home, world.settings)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        ctx.tunnel_port = listener.getsockname()[1]
        assert step.done(ctx)
    assert not step.done(ctx)
