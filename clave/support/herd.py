"""Laravel Herd on the host: one secure proxy per session URL (reference/herd.md).

Every `herd proxy` and `herd unproxy` restarts Herd's nginx, blipping every Herd site on
the Mac, so they run one at a time host-wide under an flock in CLAVE_HOME. A proxy is
made secure in the same call (`--secure`): a later `herd secure` would replace the
`proxy_pass` site with a PHP one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from clave.errors import ClaveError, ToolMissing, UsageError
from clave.home import Home
from clave.support.command import Result, run

HERD_FIX = "install Laravel Herd Pro, or set herd.enabled to false."
HERD_SUPPORT = Path("Library") / "Application Support" / "Herd"
DEFAULT_TLD = "test"
TIMEOUT = 120.0
LOCK_NAME = "herd.lock"
NGINX_SITES = Path("config") / "valet" / "Nginx"

_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_BORDER = re.compile(r"^[\s+\-=|┌┐└┘├┤┬┴┼─│═╞╡╪]*$")
_COLUMNS = ("site", "ssl", "url", "host")
_PROXY_PASS = re.compile(r"proxy_pass\s+(https?://.*)\s*;")


@dataclass(frozen=True)
class Proxy:
    site: str
    secure: bool
    url: str
    host: str


class HerdManager:
    """Typed calls to the `herd` CLI; constructing one is cheap and never raises."""

    def __init__(
        self,
        binary: str | None = None,
        home: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ):
        self._environ = os.environ if environ is None else environ
        self._binary = binary
        user_home = self._environ.get("HOME")
        self.home = Path(home) if home is not None else Path(user_home or Path.home())

    @property
    def support_dir(self) -> Path:
        return self.home / HERD_SUPPORT

    def find(self) -> str:
        """Herd's CLI: PATH first, then the bundled copy (shells from IDEs skip ~/.zshrc)."""
        if self._binary:
            found = shutil.which(self._binary, path=self._environ.get("PATH"))
            if found:
                return found
            raise ToolMissing(self._binary, HERD_FIX)
        found = shutil.which("herd", path=self._environ.get("PATH"))
        if found:
            return found
        bundled = self.support_dir / "bin" / "herd"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
        raise ToolMissing("herd", HERD_FIX)

    def available(self) -> bool:
        try:
            self.find()
        except ClaveError:
            return False
        return True

    def tld(self) -> str:
        """The TLD Herd serves sites under, from its Valet config (users can change it)."""
        config = self.support_dir / "config" / "valet" / "config.json"
        try:
            tld = json.loads(config.read_text()).get("tld")
        except (OSError, ValueError, AttributeError):
            return DEFAULT_TLD
        if isinstance(tld, str) and tld.strip(". "):
            return tld.strip(". ")
        return DEFAULT_TLD

    def url(self, domain: str) -> str:
        return f"https://{self._with_tld(domain, self.tld())}"

    def proxy(self, domain: str, target: str, secure: bool = True) -> None:
        """Serve https://<domain>.<tld> from `target`, certificate included, in one call."""
        _check_domain(domain)
        argv = [self.find(), "proxy", domain, target]
        if secure:
            argv.append("--secure")
        with self._serialised():
            self._run(argv)

    def unproxy(self, domain: str) -> None:
        """Remove the proxy (a no-op when absent), then confirm Herd no longer has it."""
        _check_domain(domain)
        seen_on_disk = self._site_proxies(domain)
        with self._serialised():
            self._run([self.find(), "unproxy", domain])
        if seen_on_disk:   # its site file was where herd.md says: whether it is gone will do
            left = self._site_proxies(domain)
        else:
            site = self._without_tld(domain, self.tld())
            left = any(proxy.site == site for proxy in self.proxies())
        if left:
            raise ClaveError(
                f"`herd unproxy {domain}` exited 0 but Herd still lists the proxy: "
                f"run `herd unproxy {domain}` by hand, then `clave cleanup`."
            )

    def has_proxy(self, domain: str) -> bool:
        """Its nginx site file answers at no cost; without one, `herd proxies` is asked."""
        if self._site_proxies(domain):
            return True
        site = self._without_tld(domain, self.tld())
        return any(proxy.site == site for proxy in self.proxies())

    def _site_proxies(self, domain: str) -> bool:
        """Herd's nginx site file for DOMAIN exists and proxies (herd.md §1.3, §2)."""
        path = self.support_dir / NGINX_SITES / self._with_tld(domain, self.tld())
        try:
            return _PROXY_PASS.search(path.read_text(errors="replace")) is not None
        except OSError:
            return False

    def proxies(self) -> list[Proxy]:
        return parse_proxies(self._run([self.find(), "proxies"]).stdout, self.tld())

    def _run(self, argv: list[str]) -> Result:
        env = dict(self._environ)
        env["HOME"] = str(self.home)
        return run(argv, timeout=TIMEOUT, env=env, missing_fix=HERD_FIX)

    @contextmanager
    def _serialised(self) -> Iterator[None]:
        """One nginx restart at a time across every clave process on this Mac."""
        root = Home.from_env().ensure().root
        fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _with_tld(domain: str, tld: str) -> str:
        return domain if domain.endswith(f".{tld}") else f"{domain}.{tld}"

    @staticmethod
    def _without_tld(domain: str, tld: str) -> str:
        return domain.removesuffix(f".{tld}")


def parse_proxies(text: str, tld: str = DEFAULT_TLD) -> list[Proxy]:
    """Rows of Herd's `Site | SSL | URL | Host` table; anything unrecognised is skipped.

    The table has no machine-readable mode and Herd's styling is not Valet's for sure,
    so cells are found by header name and both ASCII and box-drawing borders are accepted.
    """
    columns: dict[str, int] | None = None
    found: list[Proxy] = []
    for line in text.splitlines():
        if _BORDER.match(line) or ("|" not in line and "│" not in line):
            continue
        cells = [cell.strip() for cell in re.split(r"[|│]", line.strip().strip("|│"))]
        names = [cell.lower() for cell in cells]
        if columns is None:
            if all(name in names for name in _COLUMNS):
                columns = {name: names.index(name) for name in _COLUMNS}
            continue
        if len(cells) <= max(columns.values()):
            continue
        site, ssl, url, host = (cells[columns[name]] for name in _COLUMNS)
        if not site or not host:
            continue
        found.append(
            Proxy(
                site=site.removesuffix(f".{tld}"),
                secure=bool(ssl) or url.startswith("https://"),
                url=url,
                host=host,
            )
        )
    return found


def _check_domain(domain: str) -> None:
    """One plain name: Herd reads commas as several domains and clave owns exactly one."""
    if not _DOMAIN.match(domain or ""):
        raise UsageError(
            f"{domain!r} is not a usable Herd site name: use letters, digits, dots and dashes "
            "only (for example my-app-a1b2)."
        )
