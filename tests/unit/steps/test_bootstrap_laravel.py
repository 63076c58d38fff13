"""BootstrapLaravel: which commands run, in which order, and what a failure leads to.

The commands themselves run against real nginx/php-fpm/MariaDB in the end-to-end tests;
here the SSH side is a script, so only clave's own decisions are under test.
"""

from __future__ import annotations

import pytest

from clave.config import Settings
from clave.context import ServiceConfig, ServicesMode
from clave.errors import ClaveError
from clave.steps import bootstrap_laravel
from clave.steps.bootstrap_laravel import VENDOR_DIR, VM_DATABASE, BootstrapLaravel
from tests.conftest import ROOT
from tests.unit.steps.scripted_ssh import ScriptedSsh

URL = "https://shop-abcd1234.test"


def hints(composer: bool, migrate: bool) -> list[str]:
    return [hint for hint, _command in bootstrap_laravel.commands(composer, migrate)]


def test_everything_enabled_checks_nginx_first_and_restarts_last():
    assert hints(True, True) == ["checking nginx", "linking vendor/ to the VM's disk",
                                 "composer install", "php artisan migrate",
                                 "reloading php-fpm"]


def test_composer_and_migrate_can_each_be_turned_off():
    assert hints(False, False) == ["checking nginx", "reloading php-fpm"]
    assert "composer install" not in hints(False, True)
    assert "php artisan migrate" not in hints(True, False)


def test_nginx_must_serve_the_shared_projects_public_directory():
    check = dict(bootstrap_laravel.commands(False, False))["checking nginx"]
    assert "root /srv/project/public" in check and "exit 1" in check


def test_vendor_lives_on_the_vms_own_disk_bound_into_the_project():
    link = dict(bootstrap_laravel.commands(True, False))["linking vendor/ to the VM's disk"]
    assert not VENDOR_DIR.startswith("/srv/project")
    assert f"mount --bind {VENDOR_DIR} vendor" in link
    assert "mountpoint -q vendor" in link                 # a second run does not stack mounts


def test_migrations_run_without_a_prompt():
    migrate = dict(bootstrap_laravel.commands(False, True))["php artisan migrate"]
    assert "--force" in migrate and "--no-interaction" in migrate


@pytest.fixture
def session(world):
    clone = world.project / ".clave" / "wt" / "s-abcd1234"
    clone.mkdir(parents=True)
    (clone / ".env").write_text("# mine\nAPP_NAME=Shop\nAPP_URL=http://localhost\n"
                                "DB_HOST=mysql.internal\nDB_DATABASE=shop\n")
    (clone / ".env.example").write_text("APP_NAME=Example\n")
    return world.saved_ctx(clone_path=clone, app_url=URL,
                           services=ServiceConfig.tunnel_services(3307, 6380))


def all_ok() -> ScriptedSsh:
    ssh = ScriptedSsh()
    ssh.answer("cd /srv/project && ")
    return ssh


def test_every_command_runs_in_the_project_and_the_env_file_is_patched_in_place(world, session):
    ssh = all_ok()
    BootstrapLaravel(ssh, world.home, world.settings).run(session)
    assert len(ssh.commands) == 5
    assert all(c.startswith("cd /srv/project && ") for c in ssh.commands)
    assert (session.clone_path / ".env").read_text() == (
        "# mine\nAPP_NAME=Shop\nAPP_URL=https://shop-abcd1234.test\nDB_HOST=127.0.0.1\n"
        "DB_DATABASE=shop\nDB_PORT=3307\nREDIS_HOST=127.0.0.1\nREDIS_PORT=6380\n")
    assert session.bootstrap_failure is None


def test_in_vm_services_mode_the_env_names_the_database_provisioned_in_the_vm(world, session):
    session.services_mode = ServicesMode.VM
    session.services = ServiceConfig.local_services()
    BootstrapLaravel(all_ok(), world.home, world.settings).run(session)
    text = (session.clone_path / ".env").read_text()
    assert "DB_HOST=127.0.0.1\n" in text and "DB_PORT=3306\n" in text
    assert "DB_DATABASE=laravel\n" in text and "DB_DATABASE=shop" not in text
    assert "DB_USERNAME=laravel\n" in text and "DB_PASSWORD=laravel\n" in text
    provisioned = (ROOT / "clave/provision/optional/services-vm.sh").read_text()
    for value in VM_DATABASE.values():
        assert value in provisioned


def test_a_missing_env_is_made_from_env_example_and_said_so(world, session):
    (session.clone_path / ".env").unlink()
    BootstrapLaravel(all_ok(), world.home, world.settings).run(session)
    text = (session.clone_path / ".env").read_text()
    assert text.startswith("APP_NAME=Example\n") and "APP_URL=https://shop-abcd1234.test" in text
    assert any(".env.example" in line for line in world.said.of("info"))


def test_a_failing_command_is_stated_with_its_output_and_log_and_the_session_goes_on(
        world, session):
    ssh = ScriptedSsh()
    ssh.answer("composer install", exited=1, stderr="Your lock file is out of date\n")
    ssh.answer("cd /srv/project && ")
    BootstrapLaravel(ssh, world.home, world.settings).run(session)
    log = world.home.session_dir(session.session_id) / "bootstrap.log"
    assert "Your lock file is out of date" in session.bootstrap_failure
    assert str(log) in session.bootstrap_failure and "composer install" in session.bootstrap_failure
    assert "Your lock file is out of date" in log.read_text()
    assert any("Claude Code will start anyway" in line for line in world.said.of("warn"))
    assert not any("artisan migrate" in c for c in ssh.commands)


def test_a_failure_stops_the_session_when_bootstrap_is_required(world, session):
    ssh = ScriptedSsh()
    ssh.answer("artisan migrate", exited=1, stderr="SQLSTATE[HY000] [2002] Connection refused")
    ssh.answer("cd /srv/project && ")
    required = Settings.from_dict({"bootstrap": {"required": True}})
    with pytest.raises(ClaveError, match="bootstrap.required") as raised:
        BootstrapLaravel(ssh, world.home, required).run(session)
    assert "Connection refused" in str(raised.value)
