"""`clave doctor` through `clave.cli.main`: one row per check, each with its fix, and the exit code.

The world (tests/unit/steps/world.py) puts the fake tart and herd on PATH and makes the base
VM; `healthy` adds what a ready Mac has on top: the host's record of how the base was built
(as `clave provision` leaves it), a token in the environment and MySQL and Redis listening.
Each test then takes one thing away. stdout is not a terminal here, so the UI is plain.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clave import cli, config
from clave.provision.pipeline import BUILTIN_DIR
from clave.tasks import catalog
from tests.unit.steps.world import BASE_VM, base_template, world_fixture  # noqa: F401

TOKEN = "sk-ant-oat01-" + "Q" * 60 + "wxyz"
CHECKS = ("tart", "base image", "herd", "claude auth", "git", "host services")


@dataclass
class Report:
    code: int
    out: str
    err: str

    def row(self, check: str) -> tuple[str, str]:
        """(status, detail) of one check's line in the table."""
        for line in self.out.splitlines():
            if line.startswith(check + "  "):
                status, _, detail = line[len(check):].strip().partition("  ")
                return status, detail.strip()
        raise AssertionError(f"no {check!r} row in:\n{self.out}")


def doctor(capsys) -> Report:
    code = cli.main(["doctor"])
    out, err = capsys.readouterr()
    return Report(code, out, err)


def listening() -> socket.socket:
    """A listener on 127.0.0.1 at a free port, as Herd's MySQL or Redis would be."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def unused_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def listeners() -> Iterator[dict[str, socket.socket]]:
    socks = {"mysql": listening(), "redis": listening()}
    yield socks
    for sock in socks.values():
        sock.close()


@pytest.fixture
def fragments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the built-in provisioning steps a test may edit (CLAVE_PROVISION_DIR)."""
    copy = tmp_path / "fragments"
    copy.mkdir()
    for source in BUILTIN_DIR.glob("*.sh"):
        shutil.copy(source, copy / source.name)
    monkeypatch.setenv("CLAVE_PROVISION_DIR", str(copy))
    return copy


@pytest.fixture
def healthy(world, fragments, listeners, monkeypatch):
    monkeypatch.chdir(world.project)
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", TOKEN)
    monkeypatch.setenv("CLAVE_MYSQL_PORT", str(listeners["mysql"].getsockname()[1]))
    monkeypatch.setenv("CLAVE_REDIS_PORT", str(listeners["redis"].getsockname()[1]))
    catalog.image_build(config.load(world.project), world.home, world.project).save_state()
    return world


def path_without(world, tool: str, monkeypatch) -> None:
    """PATH with the world's fakes except `tool` (and the system's directories)."""
    kept = world.root / f"bin-without-{tool}"
    kept.mkdir()
    for fake in world.bin.iterdir():
        if fake.name != tool:
            (kept / fake.name).symlink_to(fake.resolve())
    rest = [p for p in os.environ["PATH"].split(os.pathsep) if p != str(world.bin)]
    monkeypatch.setenv("PATH", os.pathsep.join([str(kept), *rest]))


# -- all well --------------------------------------------------------------------------------

def test_a_ready_machine_passes_every_check_and_exits_zero(healthy, capsys):
    report = doctor(capsys)
    assert report.code == 0, report.out
    assert report.out.splitlines()[0].split() == ["CHECK", "STATUS", "DETAIL"]
    assert [report.row(check)[0] for check in CHECKS] == ["ok"] * len(CHECKS)
    assert report.row("base image")[1] == f"{BASE_VM!r} up to date"
    assert report.row("git")[1] == "on branch main"
    assert report.err == ""


def test_the_plain_table_has_no_escape_codes(healthy, capsys):
    assert "\x1b" not in doctor(capsys).out


# -- tart --------------------------------------------------------------------------------

def test_tart_missing_fails_with_the_install_command_and_exit_1(healthy, capsys, monkeypatch):
    path_without(healthy, "tart", monkeypatch)
    report = doctor(capsys)
    assert report.code == 1
    assert report.row("tart") == ("FAIL", "not installed: `brew install cirruslabs/cli/tart`")


def test_without_tart_the_base_image_is_not_reported_missing(healthy, capsys, monkeypatch):
    path_without(healthy, "tart", monkeypatch)
    status, detail = doctor(capsys).row("base image")
    assert status == "FAIL"
    assert "clave provision" not in detail
    assert "tart" in detail


# -- base image ----------------------------------------------------------------------------

def test_a_missing_base_fails_and_says_to_run_clave_provision(healthy, capsys):
    healthy.tart("delete", BASE_VM)
    report = doctor(capsys)
    assert report.code == 1
    status, detail = report.row("base image")
    assert status == "FAIL"
    assert detail.endswith("run `clave provision`")
    assert BASE_VM in detail


def test_a_changed_provisioning_step_warns_to_run_provision_update(healthy, fragments, capsys):
    php = fragments / "20-php.sh"
    php.write_text(php.read_text() + "\n# one more line\n")
    report = doctor(capsys)
    assert report.code == 0
    assert report.row("base image") == ("warn", "1 step changed: run `clave provision --update`")


# -- herd ------------------------------------------------------------------------------------

def test_herd_absent_warns_that_sessions_get_a_local_port_url(healthy, capsys, monkeypatch):
    path_without(healthy, "herd", monkeypatch)
    report = doctor(capsys)
    assert report.code == 0
    status, detail = report.row("herd")
    assert status == "warn"
    assert "http://127.0.0.1:<port>" in detail
    assert "herd.enabled" in detail                    # the fix: install it, or turn it off


def test_herd_disabled_by_the_environment_is_ok_even_when_absent(healthy, capsys, monkeypatch):
    path_without(healthy, "herd", monkeypatch)
    monkeypatch.setenv("CLAVE_HERD_ENABLED", "false")
    status, detail = doctor(capsys).row("herd")
    assert status == "ok"
    assert detail.startswith("disabled")


# -- claude auth ---------------------------------------------------------------------------

def test_no_credential_fails_and_names_clave_auth(healthy, capsys, monkeypatch):
    monkeypatch.delenv("CLAUDE_CODE_OAUTH_TOKEN")
    report = doctor(capsys)
    assert report.code == 1
    status, detail = report.row("claude auth")
    assert status == "FAIL"
    assert "`clave auth`" in detail


def test_a_token_in_the_environment_is_ok_shown_masked_and_never_printed(healthy, capsys):
    report = doctor(capsys)
    status, detail = report.row("claude auth")
    assert status == "ok"
    assert "env CLAUDE_CODE_OAUTH_TOKEN" in detail
    assert detail.endswith("(…wxyz)")
    assert TOKEN not in report.out + report.err
    assert TOKEN[:20] not in report.out + report.err


def test_a_stored_token_others_can_read_fails_with_the_chmod_fix(healthy, capsys, monkeypatch):
    from clave.support.auth import AuthManager

    monkeypatch.delenv("CLAUDE_CODE_OAUTH_TOKEN")
    auth_file = Path(config.load(healthy.project).get("auth_file")).expanduser()
    AuthManager(auth_file).store_token(TOKEN)
    auth_file.chmod(0o644)
    report = doctor(capsys)
    status, detail = report.row("claude auth")
    assert (report.code, status) == (1, "FAIL")
    assert f"chmod 600 {auth_file}" in detail
    assert TOKEN not in report.out + report.err


# -- git -------------------------------------------------------------------------------------

def test_outside_a_git_repository_git_warns_with_the_fix(healthy, capsys, monkeypatch,
                                                          tmp_path):
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    report = doctor(capsys)
    assert report.code == 0
    status, detail = report.row("git")
    assert status == "warn"
    assert str(elsewhere) in detail and "git init" in detail


# -- host services ---------------------------------------------------------------------------

def test_no_listener_on_the_service_ports_warns_naming_each(healthy, capsys, monkeypatch):
    mysql, redis = unused_port(), unused_port()
    monkeypatch.setenv("CLAVE_MYSQL_PORT", str(mysql))
    monkeypatch.setenv("CLAVE_REDIS_PORT", str(redis))
    report = doctor(capsys)
    assert report.code == 0
    status, detail = report.row("host services")
    assert status == "warn"
    assert f"MySQL on 127.0.0.1:{mysql}" in detail and f"Redis on 127.0.0.1:{redis}" in detail
    assert "Herd" in detail


def test_only_the_service_that_is_down_is_named(healthy, capsys, monkeypatch):
    redis = unused_port()
    monkeypatch.setenv("CLAVE_REDIS_PORT", str(redis))
    status, detail = doctor(capsys).row("host services")
    assert status == "warn"
    assert f"Redis on 127.0.0.1:{redis}" in detail and "MySQL" not in detail


def test_listeners_on_the_configured_ports_are_ok(healthy, capsys):
    assert doctor(capsys).row("host services")[0] == "ok"


def test_in_vm_services_mode_the_hosts_ports_do_not_matter(healthy, capsys, monkeypatch):
    monkeypatch.setenv("CLAVE_MYSQL_PORT", str(unused_port()))
    monkeypatch.setenv("CLAVE_SERVICES_MODE", "vm")
    status, detail = doctor(capsys).row("host services")
    assert status == "ok"
    assert "services.mode is vm" in detail


# -- overall ---------------------------------------------------------------------------------

def test_warnings_alone_exit_zero_and_any_failure_exits_one(healthy, capsys, monkeypatch):
    path_without(healthy, "herd", monkeypatch)
    monkeypatch.setenv("CLAVE_MYSQL_PORT", str(unused_port()))
    warned = doctor(capsys)
    assert [warned.row(c)[0] for c in ("herd", "host services")] == ["warn", "warn"]
    assert warned.code == 0
    monkeypatch.delenv("CLAUDE_CODE_OAUTH_TOKEN")
    assert doctor(capsys).code == 1


def test_every_check_runs_even_after_one_fails(healthy, capsys, monkeypatch):
    path_without(healthy, "tart", monkeypatch)
    monkeypatch.delenv("CLAUDE_CODE_OAUTH_TOKEN")
    report = doctor(capsys)
    assert [report.row(check)[0] for check in CHECKS] == \
        ["FAIL", "FAIL", "ok", "FAIL", "ok", "ok"]
