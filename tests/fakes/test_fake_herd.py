"""The fake `herd` against reference/herd.md: each documented behaviour, asserted."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

FAKE_HERD = Path(__file__).resolve().parent / "herd"
HERD_DIR = Path("Library") / "Application Support" / "Herd"


class FakeHerd:
    """Runs the fake with HOME pointing at a temporary Herd home."""

    def __init__(self, home: Path):
        self.home = home
        self.herd = home / HERD_DIR
        self.valet = self.herd / "config" / "valet"
        self.log = home / "herd-argv.log"

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {**os.environ, "HOME": str(self.home), "FAKE_HERD_LOG": str(self.log), **env}
        return subprocess.run(
            [str(FAKE_HERD), *args], capture_output=True, text=True, env=environ, check=False
        )

    def site(self, name: str) -> Path:
        return self.valet / "Nginx" / name

    def cert(self, name: str) -> Path:
        return self.valet / "Certificates" / name

    def restarts(self) -> int:
        counter = self.herd / "fake-nginx-restarts"
        return int(counter.read_text()) if counter.exists() else 0

    def set_tld(self, tld: str) -> None:
        self.valet.mkdir(parents=True, exist_ok=True)
        (self.valet / "config.json").write_text(json.dumps({"tld": tld}))


@pytest.fixture
def herd(tmp_path: Path) -> FakeHerd:
    return FakeHerd(tmp_path)


def test_proxy_writes_a_site_file_with_proxy_pass_under_the_default_tld(herd):
    done = herd("proxy", "my-app", "http://192.168.64.5:80")
    assert done.returncode == 0, done.stderr
    assert "proxy_pass http://192.168.64.5:80;" in herd.site("my-app.test").read_text()
    assert json.loads((herd.valet / "config.json").read_text())["tld"] == "test"


def test_proxy_with_secure_writes_a_certificate_and_key(herd):
    herd("proxy", "my-app", "http://127.0.0.1:8081", "--secure")
    assert herd.cert("my-app.test.crt").is_file()
    assert herd.cert("my-app.test.key").is_file()
    assert "listen 127.0.0.1:443 ssl;" in herd.site("my-app.test").read_text()


def test_proxy_without_secure_writes_no_certificate(herd):
    herd("proxy", "my-app", "http://127.0.0.1:8081")
    assert not herd.cert("my-app.test.crt").exists()


def test_proxy_rejects_a_target_that_is_not_an_http_url(herd):
    done = herd("proxy", "my-app", "192.168.64.5:80", "--secure")
    assert done.returncode != 0
    assert '"192.168.64.5:80" is not a valid URL' in done.stderr
    assert not herd.site("my-app.test").exists()
    assert herd.restarts() == 0


def test_proxy_accepts_comma_separated_domains(herd):
    herd("proxy", "one,two", "http://127.0.0.1:9000")
    assert herd.site("one.test").is_file()
    assert herd.site("two.test").is_file()


def test_proxy_treats_a_domain_with_and_without_the_tld_alike(herd):
    herd("proxy", "my-app.test", "http://127.0.0.1:9000")
    herd("proxy", "my-app", "http://127.0.0.1:9001")
    assert sorted(p.name for p in (herd.valet / "Nginx").iterdir()) == ["my-app.test"]


def test_proxy_uses_the_tld_from_herd_config(herd):
    herd.set_tld("localhost")
    herd("proxy", "my-app", "http://127.0.0.1:9000", "--secure")
    assert herd.site("my-app.localhost").is_file()
    assert herd.cert("my-app.localhost.crt").is_file()


def test_proxy_silently_overwrites_an_existing_proxy(herd):
    herd("proxy", "my-app", "http://127.0.0.1:9000", "--secure")
    done = herd("proxy", "my-app", "http://127.0.0.1:9001", "--secure")
    assert done.returncode == 0 and done.stderr == ""
    text = herd.site("my-app.test").read_text()
    assert "proxy_pass http://127.0.0.1:9001;" in text
    assert "9000" not in text


def test_proxy_prints_the_will_now_proxy_line(herd):
    done = herd("proxy", "my-app", "http://127.0.0.1:9000", "--secure")
    assert "will now proxy [https://my-app.test] traffic to [http://127.0.0.1:9000]." in done.stdout


def test_each_proxy_and_unproxy_call_restarts_nginx_once(herd):
    herd("proxy", "one,two", "http://127.0.0.1:9000")
    assert herd.restarts() == 1
    herd("unproxy", "one")
    assert herd.restarts() == 2


def test_a_restart_that_begins_during_another_is_recorded_as_an_overlap(herd):
    herd.herd.mkdir(parents=True)
    busy = herd.herd / "fake-nginx-restart.busy"
    busy.touch()  # another herd's restart is under way
    herd("proxy", "my-app", "http://127.0.0.1:9000")
    assert (herd.herd / "fake-overlaps").read_text().strip() != ""
    assert busy.exists(), "the restart in progress still owns its marker"


def test_sequential_restarts_never_count_as_overlaps(herd):
    herd("proxy", "one", "http://127.0.0.1:9000")
    herd("proxy", "two", "http://127.0.0.1:9000")
    assert not (herd.herd / "fake-overlaps").exists()


def test_unproxy_removes_the_site_file_and_certificate(herd):
    herd("proxy", "my-app", "http://127.0.0.1:9000", "--secure")
    done = herd("unproxy", "my-app")
    assert done.returncode == 0
    assert "will no longer proxy [https://my-app.test]." in done.stdout
    assert not herd.site("my-app.test").exists()
    assert not herd.cert("my-app.test.crt").exists()
    assert not herd.cert("my-app.test.key").exists()


def test_unproxy_of_an_absent_proxy_exits_zero(herd):
    assert herd("unproxy", "never-made").returncode == 0


def test_proxies_prints_the_four_column_table(herd):
    herd("proxy", "secure-app", "http://192.168.64.5:80", "--secure")
    herd("proxy", "plain-app", "http://127.0.0.1:9000")
    lines = herd("proxies").stdout.splitlines()
    assert lines[0].startswith("+-") and lines[2].startswith("+-")
    assert [c.strip() for c in lines[1].strip("|").split("|")] == ["Site", "SSL", "URL", "Host"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[3:-1]]
    assert rows == [
        ["plain-app", "", "http://plain-app.test", "http://127.0.0.1:9000"],
        ["secure-app", "X", "https://secure-app.test", "http://192.168.64.5:80"],
    ]


def test_proxies_lists_only_site_files_with_proxy_pass(herd):
    herd("proxy", "my-app", "http://127.0.0.1:9000")
    herd.site("php-site.test").write_text("server { fastcgi_pass unix:/tmp/herd.sock; }\n")
    herd.site("my-app.other").write_text("server { proxy_pass http://127.0.0.1:1; }\n")
    out = herd("proxies").stdout
    assert "my-app" in out
    assert "php-site" not in out
    assert "my-app.other" not in out


def test_proxies_prints_only_the_header_when_there_are_none(herd):
    lines = herd("proxies").stdout.splitlines()
    assert len(lines) == 3 and "Site" in lines[1]


def test_secure_on_a_proxied_domain_replaces_the_proxy_with_a_php_site(herd):
    herd("proxy", "my-app", "http://127.0.0.1:9000", "--secure")
    done = herd("secure", "my-app")
    assert done.returncode == 0
    text = herd.site("my-app.test").read_text()
    assert "proxy_pass" not in text and "fastcgi_pass" in text
    assert "my-app" not in herd("proxies").stdout


def test_every_invocation_is_logged_when_fake_herd_log_is_set(herd):
    herd("proxy", "my-app", "http://127.0.0.1:9000", "--secure")
    herd("proxies")
    logged = [json.loads(line) for line in herd.log.read_text().splitlines()]
    assert logged == [["proxy", "my-app", "http://127.0.0.1:9000", "--secure"], ["proxies"]]


def test_missing_arguments_fail_like_symfony_console(herd):
    done = herd("proxy", "my-app")
    assert done.returncode == 1
    assert 'Not enough arguments (missing: "host").' in done.stderr


def test_an_unknown_option_is_refused(herd):
    done = herd("proxy", "my-app", "http://127.0.0.1:9000", "--secured")
    assert done.returncode == 1
    assert 'The "--secured" option does not exist.' in done.stderr
    assert not herd.site("my-app.test").exists()


def test_an_unknown_command_is_refused(herd):
    done = herd("tunnel")
    assert done.returncode == 1
    assert 'Command "tunnel" is not defined.' in done.stderr
