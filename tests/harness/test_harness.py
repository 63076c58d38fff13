"""The Linux test VM harness itself: network, SSH, shares, web stack, host services, teardown."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.harness import fixtures, leaks
from tests.harness.fakevm import FakeVm
from tests.harness.hostsvc import HostServices
from tests.harness.network import Network
from tests.harness.procs import HarnessError

ROOT = Path(__file__).resolve().parents[2]
UNKNOWN_TAG_ERROR = (
    "mount: /srv/project: wrong fs type, bad option, bad superblock on nope, "
    "missing codepage or helper program, or other error."
)


def http_get(ip: str, path: str = "/") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{ip}{path}", timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def ssh(vm: FakeVm):
    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(vm.ip, username="admin", password="admin", timeout=10,
                   allow_agent=False, look_for_keys=False)  # fmt: skip
    return client


def ssh_run(client, command: str, environment: dict | None = None) -> tuple[int, str]:
    _, stdout, _ = client.exec_command(command, timeout=30, environment=environment)
    return stdout.channel.recv_exit_status(), stdout.read().decode().strip()


def write_marker(vm: FakeVm) -> str:
    marker = uuid.uuid4().hex
    (Path(vm.shares["project"]) / "marker.txt").write_text(marker + "\n")
    return marker


def write_env(vm: FakeVm, values: dict[str, str]) -> None:
    env = Path(vm.shares["project"]) / ".env"
    env.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


# ---------------------------------------------------------------- network and login
def test_the_vm_routes_through_the_gateway_and_is_named_after_itself(test_vm, bridge):
    route = test_vm.exec(["ip", "route"]).stdout
    assert f"default via {bridge.gateway} dev eth0" in route
    assert test_vm.ip == bridge.ip(test_vm.index) and test_vm.gateway == bridge.gateway
    assert test_vm.exec(["hostname"]).stdout.strip() == test_vm.name


def test_admin_logs_in_over_ssh_with_a_password_and_has_passwordless_sudo(test_vm, bridge):
    client = ssh(test_vm)
    try:
        assert ssh_run(client, "id -un") == (0, "admin")
        assert ssh_run(client, "sudo -n id -u") == (0, "0")
        assert ssh_run(client, "ip route | awk '/default/ {print $3}'") == (0, bridge.gateway)
        assert ssh_run(client, "stat -c %U ~/.local/bin") == (0, "admin")
        # AcceptEnv as Debian/Ubuntu ship it: LANG and LC_* pass, anything else does not
        passed = ssh_run(client, 'echo "$LC_CLAVE-$OTHER_VAR"', {"LC_CLAVE": "x", "OTHER_VAR": "y"})
        assert passed == (0, "x-")
    finally:
        client.close()


def test_ssh_refuses_a_wrong_password(test_vm):
    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(test_vm.ip, username="admin", password="wrong", timeout=10,
                       allow_agent=False, look_for_keys=False)  # fmt: skip
    client.close()


# ---------------------------------------------------------------- shares and web stack
def test_nginx_serves_the_project_only_after_the_share_is_mounted(test_vm):
    marker = write_marker(test_vm)
    assert test_vm.exec(["mountpoint", "-q", "/srv/project"]).returncode != 0
    assert test_vm.exec(["ls", "-A", "/srv/project"]).stdout == ""
    assert http_get(test_vm.ip)[0] == 404

    test_vm.mount_share("project", "/srv/project")

    assert test_vm.exec(["mountpoint", "-q", "/srv/project"]).returncode == 0
    status, body = http_get(test_vm.ip, "/any/laravel/route")
    page = json.loads(body)
    assert status == 200
    assert (page["marker"], page["hostname"], page["sapi"]) == (marker, test_vm.name, "fpm-fcgi")
    assert page["path"] == "/any/laravel/route"


def test_admin_can_write_the_shared_project(test_vm):
    test_vm.mount_share()
    done = test_vm.exec(["sh", "-c", "echo from-vm > /srv/project/written.txt"], user="admin")
    assert done.returncode == 0, done.stderr
    assert (Path(test_vm.shares["project"]) / "written.txt").read_text() == "from-vm\n"


def test_an_unknown_share_tag_fails_like_the_real_virtiofs_mount(test_vm):
    done = test_vm.exec(["sudo", "mount", "-t", "virtiofs", "nope", "/srv/project"], user="admin")
    assert done.returncode == 32
    assert done.stderr.splitlines()[0] == UNKNOWN_TAG_ERROR
    assert "virtio-fs: tag <nope> not found" in test_vm.exec(["dmesg"]).stdout
    assert test_vm.exec(["mountpoint", "-q", "/srv/project"]).returncode != 0


@pytest.mark.vm
def test_named_shares_appear_as_subdirectories_of_their_tag_like_on_tart(bridge, tmp_path):
    app, extra = fixtures.copy_app(tmp_path / "app"), tmp_path / "extra"
    extra.mkdir()
    (extra / "note.txt").write_text("extra\n")
    automount = "com.apple.virtio-fs.automount"
    shares = {automount: {"project": str(app)}, "x": {"a": str(app), "b": str(extra)}}
    vm = FakeVm.boot("clave-named", shares, tmp_path / "state")
    try:
        vm.wait_ssh(fixtures.BOOT_TIMEOUT)
        vm.mount_share(automount, "/srv/project")  # the trap: code lands one level down
        listing = vm.exec(["ls", "/srv/project", "/srv/project/project"]).stdout
        assert listing.splitlines()[:2] == ["/srv/project:", "project"]
        assert "artisan" in listing
        vm.exec(["mkdir", "/mnt/x"])
        vm.mount_share("x", "/mnt/x")
        assert vm.exec(["cat", "/mnt/x/b/note.txt"]).stdout == "extra\n"
        assert vm.exec(["test", "-f", "/mnt/x/a/artisan"]).returncode == 0
    finally:
        vm.destroy()


def test_mounting_an_already_mounted_share_again_fails(test_vm):
    test_vm.mount_share()
    with pytest.raises(HarnessError, match="already mounted"):
        test_vm.mount_share()


def test_nginx_and_php_fpm_restart_with_service_inside_the_vm(test_vm):
    test_vm.mount_share()
    for command in ("sudo service nginx restart", "sudo service nginx reload",
                    "sudo service php8.2-fpm restart"):  # fmt: skip
        done = test_vm.exec(["sh", "-c", command], user="admin")
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    test_vm.wait_port(80)
    assert json.loads(http_get(test_vm.ip)[1])["hostname"] == test_vm.name


# ---------------------------------------------------------------- host services
def test_php_in_the_vm_reaches_host_mariadb_and_redis_on_the_gateway(test_vm, host_services):
    host_services.reset_database()
    write_env(test_vm, host_services.env(test_vm.gateway))
    test_vm.mount_share()

    page = json.loads(http_get(test_vm.ip)[1])
    assert page["db"]["ok"] is True, page["db"]
    assert page["redis"]["ok"] is True, page["redis"]

    migrate = test_vm.exec(["sh", "-c", "cd /srv/project && php artisan migrate --force"], "admin")
    assert migrate.returncode == 0, migrate.stderr
    assert "create_clave_fixture_items_table" in migrate.stdout
    ran = host_services.sql("SELECT migration FROM clave.clave_migrations_ran;")
    assert "2024_01_01_000000_create_clave_fixture_items_table" in ran


def test_artisan_migrate_fails_with_a_message_when_the_database_is_unreachable(test_vm, bridge):
    write_env(test_vm, {"DB_HOST": bridge.gateway, "DB_PORT": "1", "DB_PASSWORD": "secret"})
    test_vm.mount_share()
    migrate = test_vm.exec(["sh", "-c", "cd /srv/project && php artisan migrate --force"], "admin")
    assert migrate.returncode != 0
    assert "Connection refused" in migrate.stderr


def test_host_services_move_to_other_ports_when_theirs_are_taken(host_services, bridge):
    second = HostServices.start(
        bridge.root / "hostsvc" / f"{fixtures.owner()}-second",
        ["127.0.0.1"],
        mysql_port=host_services.mysql_port,
        redis_port=host_services.redis_port,
    )
    try:
        assert second.mysql_port != host_services.mysql_port
        assert second.redis_port != host_services.redis_port
        assert second.sql("SELECT 1;").strip() == "1"
    finally:
        second.stop()
    assert not second.state_dir.exists()


# ---------------------------------------------------------------- shutdown and teardown
@pytest.mark.parametrize("command", ["sudo poweroff", "sudo shutdown -h now", "sudo kill -TERM 1"])
def test_a_guest_shutdown_is_seen_by_wait(test_vm, command):
    assert test_vm.wait(timeout=0) is False
    test_vm.exec(["sh", "-c", command], user="admin")
    assert test_vm.wait(timeout=30) is True
    assert not test_vm.running()


@pytest.mark.vm
def test_destroy_removes_processes_left_in_the_vm_and_everything_else(bridge, tmp_path):
    before = set(leaks.check(fixtures.owner()))
    project = fixtures.copy_app(tmp_path / "project")
    vm = FakeVm.boot("clave-leaky", {"project": str(project)}, tmp_path / "state")
    try:
        vm.wait_ssh(fixtures.BOOT_TIMEOUT)
        quiet = ">/dev/null 2>&1"
        vm.exec(["sh", "-c", f"nohup sleep 600 {quiet} & setsid -f sleep 600 {quiet}"])
        found = leaks.check(fixtures.owner())
        assert any(f"network namespace {vm.netns}" in line for line in found)
        assert any("port " + vm.ip + ":22 is listening" in line for line in found)
    finally:
        FakeVm.from_state(tmp_path / "state").destroy()  # as another process would
    vm.destroy()  # idempotent
    assert not (tmp_path / "state").exists()
    assert vm.index not in Network.from_env().slots()
    assert leaks.wait_clean(fixtures.owner(), before) == []


@pytest.mark.vm
def test_bad_boot_requests_are_refused_before_anything_is_created(bridge, tmp_path):
    slots = Network.from_env().slots()
    with pytest.raises(HarnessError, match="inside /run, /etc, /var, /usr"):
        FakeVm.boot("clave-bad", {}, Path("/var/tmp/clave-state"))
    with pytest.raises(HarnessError, match="does not exist"):
        FakeVm.boot("clave-bad", {"project": str(tmp_path / "missing")}, tmp_path / "state")
    with pytest.raises(HarnessError, match="not a host name"):
        FakeVm.boot("bad name", {}, tmp_path / "state")
    assert Network.from_env().slots() == slots


# ---------------------------------------------------------------- several VMs
@pytest.mark.parametrize("count", [2, 5])
def test_several_vms_run_at_once_with_their_own_address_code_and_host_key(test_vms, bridge, count):
    vms = test_vms(count)
    assert len({vm.ip for vm in vms}) == count
    assert bridge.remove_bridge() is False  # never pulled from under running VMs
    markers = {}
    for vm in vms:
        markers[vm.name] = write_marker(vm)
        vm.mount_share()
    for vm in vms:
        assert json.loads(http_get(vm.ip)[1])["marker"] == markers[vm.name]
    keys = {vm.exec(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).stdout.split()[1] for vm in vms}
    assert len(keys) == count


@pytest.mark.vm
def test_boots_from_several_processes_get_distinct_slots(bridge, tmp_path):
    states = [tmp_path / f"state{n}" for n in range(3)]
    argv = [sys.executable, "-m", "tests.harness.fakevm", "boot"]
    children = [
        subprocess.Popen([*argv, f"clave-proc-{n}", str(state)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n, state in enumerate(states)
    ]  # fmt: skip
    try:
        outputs = [child.communicate(timeout=120) for child in children]
        assert all(child.returncode == 0 for child in children), outputs
        booted = [json.loads(out) for out, _ in outputs]
        assert len({vm["index"] for vm in booted}) == 3
        assert len({vm["ip"] for vm in booted}) == 3
    finally:
        for state in states:
            if (state / "vm.json").exists():
                FakeVm.from_state(state).destroy()


# ---------------------------------------------------------------- skipping
def test_missing_prerequisites_skip_but_fail_under_clave_require_vms(monkeypatch):
    monkeypatch.delenv("CLAVE_REQUIRE_VMS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="need root"):
        fixtures.require("Linux test VMs need root")
    monkeypatch.setenv("CLAVE_REQUIRE_VMS", "1")
    with pytest.raises(pytest.fail.Exception, match="CLAVE_REQUIRE_VMS=1, but Linux test VMs"):
        fixtures.require("Linux test VMs need root")
    fixtures.require(None)  # available: neither
