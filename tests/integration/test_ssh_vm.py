"""The SSH layer against Linux test VMs: real sshd, nginx, php-fpm, host MariaDB and Redis.

Run with `python -m pytest -p tests.harness.fixtures tests/integration/test_ssh_vm.py`.
"""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from clave.errors import ClaveError, HostKeyChanged
from clave.support.share import mount_share
from clave.support.ssh import SshExecutor
from clave.support.tunnel import forwarder_alive, start_forwarder, stop_forwarder
from tests.harness.plugin import require_plugin
from tests.unit.support.sshd import PtyChild, free_port, wait_until

ADMIN = "admin"

require_plugin()


@dataclass
class VmLogin:
    host: str
    port: int = 22
    user: str = ADMIN
    password: str = ADMIN


def ssh_to(vm, **kwargs) -> SshExecutor:
    return SshExecutor(**kwargs).set_host(vm.ip).use_password(ADMIN)


@pytest.fixture
def ssh(test_vm):
    with ssh_to(test_vm) as ex:
        ex.wait_ready(timeout=30)
        yield ex


@pytest.fixture
def forwarders(tmp_path):
    pids: list[int] = []

    def start(vm, **kwargs) -> int:
        kwargs.setdefault("local", [])
        kwargs.setdefault("remote", [])
        kwargs.setdefault("host_key", None)
        pid = start_forwarder(host=vm.ip, user=ADMIN, password=ADMIN,
                              log_path=tmp_path / f"tunnel-{len(pids)}.log", **kwargs)
        pids.append(pid)
        return pid

    yield start
    for pid in pids:
        stop_forwarder(pid)


def page(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return json.loads(response.read())


def write_env(ssh: SshExecutor, values: dict[str, str]) -> None:
    text = "".join(f"{key}={value}\n" for key, value in values.items())
    ssh.put_file("/srv/project/.env", text.encode(), mode=0o644)  # php-fpm runs as www-data


def test_run_returns_exit_codes_and_output_from_the_vm(ssh, test_vm):
    result = ssh.run("hostname; id -un; ip route | grep default | awk '{print $3}'; exit 5")
    assert result.exited == 5
    assert result.stdout.split() == [test_vm.name, ADMIN, test_vm.gateway]


def test_a_timeout_in_the_vm_is_bounded_and_stops_the_command(ssh, test_vm):
    started = time.monotonic()
    with pytest.raises(ClaveError, match=f"`sleep 30` on {test_vm.ip} did not finish within 1 s"):
        ssh.run("sleep 30", timeout=1)
    assert time.monotonic() - started < 5
    no_sleep = ["pgrep", "-u", ADMIN, "-x", "sleep"]  # vm_init's own `sleep` runs as root
    assert wait_until(lambda: test_vm.exec(no_sleep).returncode == 1, 5)


def test_interactive_through_a_pseudo_terminal_returns_the_exit_code(test_vm):
    child = PtyChild(VmLogin(test_vm.ip), "tty; stty size; exit 3", size=(30, 90))
    assert child.finish() == 3
    text = child.output.decode()
    assert "/dev/pts/" in text and "30 90" in text and "[restored=True code=3" in text


def test_a_wrong_password_is_a_clear_error_within_its_bound(test_vm):
    ex = SshExecutor().set_host(test_vm.ip).use_password("not-admin")
    started = time.monotonic()
    assert ex.test() is False
    assert time.monotonic() - started < 10
    assert ex.last_error() == f"SSH login as admin@{test_vm.ip} failed: wrong password"


def test_an_unreachable_address_is_a_clear_error_within_the_connect_timeout(bridge):
    nobody = f"{bridge.prefix}.250"  # on the VM network, no VM behind it
    ex = SshExecutor(connect_timeout=1).set_host(nobody).use_password(ADMIN)
    started = time.monotonic()
    assert ex.test() is False
    assert time.monotonic() - started < 4
    assert ex.last_error() in (f"cannot reach admin@{nobody}:22: no answer within 1 s",
                               f"cannot reach admin@{nobody}:22: no route to host")


def test_mount_share_mounts_the_project_once_and_is_then_a_no_op(ssh, test_vm):
    mount_share(ssh)
    marker = Path(test_vm.shares["project"], "marker.txt").read_text()
    assert ssh.run("cat /srv/project/marker.txt", check=True).stdout == marker
    mount_share(ssh)  # mounted already: `mountpoint -q` answers, no second mount
    mounts = ssh.run("grep -c ' /srv/project ' /proc/mounts").stdout.strip()
    assert mounts == "1"


def test_mount_share_with_an_unknown_tag_reports_the_diagnostics(ssh):
    with pytest.raises(ClaveError) as caught:
        mount_share(ssh, tag="nope", timeout=0.5)
    message = str(caught.value)
    assert message.startswith("could not mount the `nope` share at /srv/project in the VM")
    assert "virtio-fs: tag <nope> not found" in message  # dmesg tail
    assert "--- /etc/fstab line for /srv/project" in message
    assert "--- virtio-fs tags the VM sees" in message


def test_a_local_tunnel_serves_the_php_page_from_nginx_in_the_vm(ssh, test_vm, forwarders):
    mount_share(ssh)
    port = free_port()
    forwarders(test_vm, local=[(port, "127.0.0.1", 80)], host_key=ssh.host_key_fingerprint)
    report = page(port)
    assert (report["app"], report["hostname"], report["sapi"]) == (
        "clave-fixture", test_vm.name, "fpm-fcgi")


def test_reverse_forwards_let_php_in_the_vm_reach_host_mariadb_and_redis(
    ssh, test_vm, host_services, forwarders
):
    mount_share(ssh)
    web = free_port()
    forwarders(test_vm, local=[(web, "127.0.0.1", 80)],
               remote=[(3306, "127.0.0.1", host_services.mysql_port),
                       (6379, "127.0.0.1", host_services.redis_port)])
    write_env(ssh, host_services.env("127.0.0.1", mysql_port=3306, redis_port=6379))
    report = page(web)
    assert report["db"]["ok"] is True, report["db"]
    assert report["redis"]["ok"] is True, report["redis"]
    cli = ssh.run("cd /srv/project && php public/index.php", check=True).stdout
    assert '"ok": true' in cli.split('"redis"')[0] and '"ok": true' in cli.split('"redis"')[1]


def test_gateway_mode_php_reaches_host_services_on_the_gateway_address(
    ssh, test_vm, host_services, forwarders
):
    mount_share(ssh)
    web = free_port()
    forwarders(test_vm, local=[(web, "127.0.0.1", 80)])
    write_env(ssh, host_services.env(test_vm.gateway))
    report = page(web)
    assert report["db"]["ok"] is True and report["db"]["host"] == test_vm.gateway, report["db"]
    assert report["redis"]["ok"] is True, report["redis"]


def test_the_forwarder_dies_with_the_vm(ssh, test_vm, forwarders):
    pid = forwarders(test_vm, local=[(free_port(), "127.0.0.1", 80)],
                     keepalive_interval=0.5, dead_after=2)
    test_vm.destroy()  # hard power-off: no FIN ever reaches the forwarder
    assert wait_until(lambda: not forwarder_alive(pid), timeout=15)


def test_another_vm_with_its_own_host_key_is_refused_by_a_pinned_executor(test_vms):
    first, second = test_vms(2)
    ex = ssh_to(first)
    ex.wait_ready(timeout=30)
    ex.set_host(second.ip)
    with pytest.raises(HostKeyChanged, match=f"the SSH host key of {second.ip} changed"):
        ex.run("true")
    ex.close()


def test_two_then_five_vms_answer_at_once(test_vms):
    def hostname(vm) -> str:
        with ssh_to(vm) as ex:
            ex.wait_ready(timeout=30)
            return ex.run("hostname", check=True).stdout.strip()

    booted = test_vms(2)
    with ThreadPoolExecutor(max_workers=5) as pool:
        assert list(pool.map(hostname, booted)) == [vm.name for vm in booted]
        booted += test_vms(3)
        names = list(pool.map(hostname, booted))
    assert names == [vm.name for vm in booted] and len(set(names)) == 5
