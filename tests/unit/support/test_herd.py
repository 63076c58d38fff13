"""HerdManager against the fake `herd` (tests/fakes/herd), never a real Herd."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from clave.errors import ClaveError, CommandFailed, ToolMissing, UsageError
from clave.support.herd import HerdManager, Proxy, parse_proxies

FAKE_HERD = Path(__file__).resolve().parents[2] / "fakes" / "herd"
HERD_DIR = Path("Library") / "Application Support" / "Herd"


class World:
    """A fake Mac home with Herd's layout, a bin directory, and the argv log."""

    def __init__(self, root: Path):
        self.home = root / "home"
        self.bin = root / "bin"
        self.log = root / "herd-argv.log"
        self.herd = self.home / HERD_DIR
        self.home.mkdir()
        self.bin.mkdir()

    def install_on_path(self) -> None:
        shutil.copy(FAKE_HERD, self.bin / "herd")

    def install_bundled(self) -> Path:
        target = self.herd / "bin" / "herd"
        target.parent.mkdir(parents=True)
        shutil.copy(FAKE_HERD, target)
        return target

    def environ(self, **extra: str) -> dict[str, str]:
        path = os.pathsep.join([str(self.bin), str(Path(sys.executable).parent), "/usr/bin:/bin"])
        return {"PATH": path, "HOME": str(self.home), "FAKE_HERD_LOG": str(self.log), **extra}

    def manager(self, **extra: str) -> HerdManager:
        return HerdManager(environ=self.environ(**extra))

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def set_tld(self, tld: str) -> None:
        config = self.herd / "config" / "valet" / "config.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"tld": tld}))

    def site(self, name: str) -> Path:
        return self.herd / "config" / "valet" / "Nginx" / name


@pytest.fixture
def world(tmp_path: Path) -> World:
    made = World(tmp_path)
    made.install_on_path()
    return made


def test_proxy_is_one_secure_proxy_call_and_never_a_herd_secure(world):
    world.manager().proxy("my-app-a1b2", "http://192.168.64.5:80")
    assert world.calls() == [["proxy", "my-app-a1b2", "http://192.168.64.5:80", "--secure"]]
    assert "proxy_pass http://192.168.64.5:80;" in world.site("my-app-a1b2.test").read_text()


def test_proxy_without_secure_leaves_out_the_flag(world):
    world.manager().proxy("my-app-a1b2", "http://127.0.0.1:8081", secure=False)
    assert world.calls() == [["proxy", "my-app-a1b2", "http://127.0.0.1:8081"]]


def test_proxies_lists_what_proxy_created(world):
    herd = world.manager()
    herd.proxy("my-app-a1b2", "http://192.168.64.5:80")
    herd.proxy("plain", "http://127.0.0.1:9000", secure=False)
    assert herd.proxies() == [
        Proxy("my-app-a1b2", True, "https://my-app-a1b2.test", "http://192.168.64.5:80"),
        Proxy("plain", False, "http://plain.test", "http://127.0.0.1:9000"),
    ]


def test_proxies_is_empty_when_herd_has_none(world):
    assert world.manager().proxies() == []


def test_a_target_herd_rejects_raises_with_herds_own_message(world):
    with pytest.raises(CommandFailed, match='"192.168.64.5" is not a valid URL'):
        world.manager().proxy("my-app-a1b2", "192.168.64.5")


@pytest.mark.parametrize("domain", ["a,b", "", "my app", "-x", "x/y"])
def test_a_domain_herd_would_misread_is_refused_before_calling_herd(world, domain):
    with pytest.raises(UsageError, match="not a usable Herd site name"):
        world.manager().proxy(domain, "http://127.0.0.1:8081")
    assert world.calls() == []


def test_the_tld_comes_from_herds_config(world):
    world.set_tld("localhost")
    herd = world.manager()
    assert herd.tld() == "localhost"
    assert herd.url("my-app-a1b2") == "https://my-app-a1b2.localhost"
    herd.proxy("my-app-a1b2", "http://127.0.0.1:8081")
    assert herd.proxies()[0].url == "https://my-app-a1b2.localhost"


def test_the_tld_defaults_to_test_without_a_config(world):
    assert world.manager().url("my-app-a1b2") == "https://my-app-a1b2.test"


def test_a_corrupt_config_falls_back_to_test(world):
    world.set_tld("x")
    (world.herd / "config" / "valet" / "config.json").write_text("{not json")
    assert world.manager().tld() == "test"


def test_url_does_not_repeat_a_tld_already_given(world):
    assert world.manager().url("my-app.test") == "https://my-app.test"


def test_unproxy_removes_the_proxy(world):
    herd = world.manager()
    herd.proxy("my-app-a1b2", "http://192.168.64.5:80")
    herd.unproxy("my-app-a1b2")
    assert herd.proxies() == []
    assert not world.site("my-app-a1b2.test").exists()


def test_a_proxy_herd_keeps_a_site_file_for_is_removed_with_one_herd_call(world):
    herd = world.manager()
    herd.proxy("my-app-a1b2", "http://127.0.0.1:8081")
    before = len(world.calls())
    assert herd.has_proxy("my-app-a1b2")
    herd.unproxy("my-app-a1b2")
    assert world.calls()[before:] == [["unproxy", "my-app-a1b2"]]
    assert not herd.has_proxy("my-app-a1b2")


def test_a_proxy_without_the_expected_site_file_is_asked_of_herd(world):
    herd = world.manager()
    herd.proxy("my-app-a1b2", "http://127.0.0.1:8081")
    site = world.site("my-app-a1b2.test")
    moved = site.with_name("elsewhere")
    site.rename(moved)          # a Herd that keeps its files somewhere else
    assert not herd.has_proxy("my-app-a1b2") and ["proxies"] in world.calls()
    moved.rename(site)
    site.write_text("server { root /srv/php-site; }")   # a PHP site of that name: no proxy
    assert not herd.has_proxy("my-app-a1b2")


def test_unproxy_of_an_absent_proxy_succeeds(world):
    world.manager().unproxy("never-made")
    assert ["unproxy", "never-made"] in world.calls()


def test_unproxy_fails_when_herd_still_lists_the_proxy(world, tmp_path):
    herd = world.manager()
    herd.proxy("my-app-a1b2", "http://192.168.64.5:80")
    stubborn = world.bin / "herd"
    stubborn.write_text(f'#!/bin/sh\n[ "$1" = unproxy ] && exit 0\nexec "{FAKE_HERD}" "$@"\n')
    with pytest.raises(ClaveError, match="still lists the proxy"):
        herd.unproxy("my-app-a1b2")


def test_herd_is_found_at_its_bundled_path_when_not_on_path(tmp_path):
    world = World(tmp_path)
    bundled = world.install_bundled()
    herd = world.manager()
    assert herd.find() == str(bundled)
    herd.proxy("my-app-a1b2", "http://192.168.64.5:80")
    assert herd.proxies()[0].site == "my-app-a1b2"


def test_missing_herd_is_a_tool_missing_error_with_the_fix(tmp_path):
    herd = World(tmp_path).manager()
    assert herd.available() is False
    with pytest.raises(ToolMissing) as caught:
        herd.proxy("my-app-a1b2", "http://192.168.64.5:80")
    assert caught.value.message == (
        "`herd` was not found: install Laravel Herd Pro, or set herd.enabled to false."
    )


def test_an_explicit_binary_that_does_not_exist_is_tool_missing(world):
    herd = HerdManager(binary="/nowhere/herd", environ=world.environ())
    assert herd.available() is False


def test_constructing_a_manager_never_touches_herd(tmp_path):
    HerdManager(home=tmp_path / "absent", environ={})
    assert not (tmp_path / "absent").exists()


def test_concurrent_proxy_calls_never_overlap_an_nginx_restart(world, clave_home):
    herd = world.manager(FAKE_HERD_DELAY="0.2")
    names = [f"app-{n}" for n in range(4)]
    threads = [
        threading.Thread(target=herd.proxy, args=(name, "http://127.0.0.1:9000")) for name in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not (world.herd / "fake-overlaps").exists()
    assert int((world.herd / "fake-nginx-restarts").read_text()) == len(names)
    assert (clave_home / "herd.lock").exists()


def test_parse_proxies_reads_a_box_drawn_table_too():
    text = (
        "┌─────────┬─────┬──────────────────┬───────────────────────┐\n"
        "│ Site    │ SSL │ URL              │ Host                  │\n"
        "├─────────┼─────┼──────────────────┼───────────────────────┤\n"
        "│ my-app  │ ✓   │ https://my-app.test │ http://192.168.64.5:80 │\n"
        "└─────────┴─────┴──────────────────┴───────────────────────┘\n"
    )
    assert parse_proxies(text) == [
        Proxy("my-app", True, "https://my-app.test", "http://192.168.64.5:80")
    ]


def test_parse_proxies_ignores_text_without_the_header():
    assert parse_proxies("| my-app | X | https://my-app.test | http://x |\nwarning\n") == []
