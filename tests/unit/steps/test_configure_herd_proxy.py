"""ConfigureHerdProxy: https://<project>-<id>.test in front of the tunnel, or a plain notice."""

from __future__ import annotations

from clave.config import Settings
from clave.steps.configure_herd_proxy import ConfigureHerdProxy
from clave.support.herd import HerdManager, Proxy

PORT = 8123
LOCAL = f"http://127.0.0.1:{PORT}"


def proxy_step(world, herd=None, settings=None):
    return ConfigureHerdProxy(herd or HerdManager(), world.store, settings or world.settings)


def without_herd(world) -> HerdManager:
    """A Mac without Herd: no `herd` on PATH and nothing in Herd's support directory."""
    return HerdManager(environ={"PATH": "/usr/bin:/bin", "HOME": str(world.herd_home)})


def test_the_proxy_is_secure_and_points_at_the_tunnel_port(world):
    ctx = world.saved_ctx(tunnel_port=PORT)
    proxy_step(world).run(ctx)
    assert world.proxies() == [Proxy("shop-abcd1234", True, "https://shop-abcd1234.test", LOCAL)]
    assert ["proxy", "shop-abcd1234", LOCAL, "--secure"] in world.herd_calls()
    assert "secure" not in [call[0] for call in world.herd_calls()]   # it would drop the proxy
    assert ctx.app_url == "https://shop-abcd1234.test"
    assert world.store.get(ctx.session_id).proxy_name == "shop-abcd1234"


def test_the_url_follows_the_tld_herd_is_configured_with(world):
    valet = world.herd_home / "Library" / "Application Support" / "Herd" / "config" / "valet"
    valet.mkdir(parents=True)
    (valet / "config.json").write_text('{"tld": "localhost"}')
    ctx = world.saved_ctx(tunnel_port=PORT)
    proxy_step(world).run(ctx)
    assert ctx.app_url == "https://shop-abcd1234.localhost"


def test_without_herd_the_step_is_skipped_with_a_notice_and_the_local_url(world):
    ctx = world.saved_ctx(tunnel_port=PORT)
    step = proxy_step(world, herd=without_herd(world))
    step.run(ctx)
    assert ctx.app_url == LOCAL and ctx.proxy_name is None
    assert any("Herd was not found" in line and LOCAL in line for line in world.said.of("info"))
    assert world.herd_calls() == [] and world.store.get(ctx.session_id).proxy_name is None
    step.undo(ctx)                                      # nothing to remove, and no error
    assert world.leftovers() == []


def test_herd_disabled_in_settings_skips_it_even_where_herd_is_installed(world):
    ctx = world.saved_ctx(tunnel_port=PORT)
    proxy_step(world, settings=Settings.from_dict({"herd": {"enabled": False}})).run(ctx)
    assert ctx.app_url == LOCAL
    assert any("herd.enabled" in line for line in world.said.of("info"))
    assert world.herd_calls() == []


def test_undo_removes_the_proxy_and_its_journal_entry(world):
    ctx = world.saved_ctx(tunnel_port=PORT)
    step = proxy_step(world)
    step.run(ctx)
    step.undo(ctx)
    assert world.proxies() == [] and not step.done(ctx)
    assert world.store.get(ctx.session_id).proxy_name is None


def test_a_second_undo_does_not_call_herd_unproxy_again(world):
    ctx = world.saved_ctx(tunnel_port=PORT)
    step = proxy_step(world)
    step.run(ctx)
    step.undo(ctx)
    step.undo(ctx)
    assert [call[0] for call in world.herd_calls()].count("unproxy") == 1


def test_undo_after_the_session_row_is_gone_still_removes_the_proxy(world):
    ctx = world.saved_ctx(tunnel_port=PORT)
    step = proxy_step(world)
    step.run(ctx)
    world.store.remove(ctx.session_id)
    world.own_rows.discard(ctx.session_id)
    step.undo(ctx)
    assert world.proxies() == []


def test_undo_leaves_other_sessions_proxies_alone(world):
    mine, theirs = world.saved_ctx(tunnel_port=PORT), world.saved_ctx("efgh5678", tunnel_port=8124)
    step = proxy_step(world)
    step.run(mine)
    step.run(theirs)
    step.undo(mine)
    assert [p.site for p in world.proxies()] == ["shop-efgh5678"]
