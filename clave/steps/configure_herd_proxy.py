"""ConfigureHerdProxy: a secure https://<project>-<id>.test URL in front of the tunnel."""

from __future__ import annotations

from clave.context import SessionContext
from clave.errors import ClaveError
from clave.steps.base import Step
from clave.store import Store
from clave.support.herd import HerdManager


class ConfigureHerdProxy(Step):
    label = "Configuring the Herd proxy"

    def __init__(self, herd: HerdManager, store: Store, settings):
        self.herd, self.store, self.settings = herd, store, settings

    def run(self, ctx: SessionContext) -> None:
        local = f"http://127.0.0.1:{ctx.tunnel_port}"
        ctx.app_url = local          # the URL until (unless) Herd serves a .test one
        if not self.settings.get("herd.enabled"):
            ctx.info(f"Herd is disabled (herd.enabled); the app is at {local}")
            return
        if not self.herd.available():
            ctx.info(f"Herd was not found, so no .test URL; the app is at {local}")
            return
        ctx.proxy_name = ctx.default_proxy_name
        self.store.record(ctx.session_id, proxy_name=ctx.proxy_name)   # intent first
        self.herd.proxy(ctx.proxy_name, local, secure=True)
        ctx.app_url = self.herd.url(ctx.proxy_name)
        self.store.record(ctx.session_id, app_url=ctx.app_url)

    def undo(self, ctx: SessionContext) -> None:
        name = ctx.proxy_name or ctx.default_proxy_name
        if self.herd.available() and self.herd.has_proxy(name):
            self.herd.unproxy(name)
        self.store.forget(ctx.session_id, "proxy_name")

    def done(self, ctx: SessionContext) -> bool:
        """The URL is the one run() would give, and Herd proxies it to the tunnel's port
        (a resumed session whose tunnel had to be reopened may have another port)."""
        local = f"http://127.0.0.1:{ctx.tunnel_port}"
        if not (self.settings.get("herd.enabled") and self.herd.available()):
            return ctx.app_url == local
        name = ctx.default_proxy_name
        try:
            return ctx.app_url == self.herd.url(name) and any(
                p.site == name and p.host == local for p in self.herd.proxies())
        except ClaveError:
            return False
