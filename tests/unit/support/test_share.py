"""mount_share: retries, and the diagnostics it reports when the share never appears.

The VM side is a scripted fake that answers only the commands a test prepared (the real
mount is exercised against a test VM in tests/integration/test_ssh_vm.py).
"""

from __future__ import annotations

import shlex
import subprocess

import pytest

from clave.errors import ClaveError
from clave.support.command import Result
from clave.support.share import DIAGNOSE, mount_command, mount_share, mount_shares

MOUNT = mount_command({"project": "/srv/project"})
MOUNT_FAILED = Result(("ssh", "admin@vm", MOUNT), 32, "", (
    "mount: /srv/project: wrong fs type, bad option, bad superblock on project, "
    "missing codepage or helper program, or other error.\n"
))
DIAGNOSIS = (
    "--- dmesg (last 15 lines)\n[   4.2] virtio-fs: tag <project> not found\n"
    "--- /etc/fstab line for /srv/project\nproject /srv/project virtiofs rw,nofail 0 0\n"
    "--- virtio-fs tags the VM sees\ncom.apple.virtio-fs.automount\n"
    "--- virtiofs mounts\n(none)\n"
)


class ScriptedVm:
    """Answers each expected command with the next prepared Result; anything else fails."""

    host = "192.168.64.5"

    def __init__(self, answers: dict[str, list[Result]]):
        self.answers = answers
        self.calls: list[str] = []

    def run(self, command: str, timeout: float = 60, *, check: bool = False) -> Result:
        self.calls.append(command)
        key = "diagnose" if command.startswith('echo "--- dmesg') else command
        if key not in self.answers or not self.answers[key]:
            raise AssertionError(f"unprepared command: {command!r}")
        return self.answers[key].pop(0)


def ok(command: str) -> Result:
    return Result(("ssh", "admin@vm", command), 0, "", "")


def test_a_share_that_mounts_at_once_is_mounted_once():
    vm = ScriptedVm({MOUNT: [ok(MOUNT)]})
    mount_share(vm)
    assert vm.calls == [MOUNT]


def test_the_mount_is_skipped_when_something_is_mounted_already_and_quotes_its_words():
    command = mount_command({"my tag": "/srv/it's here"})
    where = "'/srv/it'\"'\"'s here'"
    inner = (f"{{ mountpoint -q {where} || {{ mkdir -p {where} && "
             f"mount -t virtiofs 'my tag' {where}; }}; }}")
    assert command == (f"{{ mountpoint -q {where}; }} || {{ mkdir -p {where} 2>/dev/null; "
                       f"sudo -n sh -c {shlex.quote(inner)}; }}")
    assert subprocess.run(["sh", "-n", "-c", command]).returncode == 0


def test_a_late_share_is_retried_until_it_mounts():
    hints: list[str] = []
    vm = ScriptedVm({MOUNT: [MOUNT_FAILED, MOUNT_FAILED, ok(MOUNT)]})
    mount_share(vm, timeout=10, hint=hints.append)
    assert vm.calls == [MOUNT] * 3
    assert len(hints) == 2 and hints[0].startswith("waiting for the project share… (mount:")


def test_a_share_that_never_mounts_reports_the_diagnostics():
    vm = ScriptedVm({MOUNT: [MOUNT_FAILED] * 50,
                     "diagnose": [Result(("ssh",), 0, DIAGNOSIS, "")]})
    with pytest.raises(ClaveError) as caught:
        mount_share(vm, timeout=0.3)
    message = str(caught.value)
    assert message.startswith(
        "could not mount the `project` share at /srv/project in the VM (192.168.64.5) within "
        "0.3 s: mount: /srv/project: wrong fs type"
    )
    assert "--- mount output (exit 32)\nmount: /srv/project: wrong fs type" in message
    assert "virtio-fs: tag <project> not found" in message
    assert "project /srv/project virtiofs rw,nofail 0 0" in message
    assert "com.apple.virtio-fs.automount" in message
    assert vm.calls[-1].startswith('echo "--- dmesg')


def test_diagnostics_that_fail_themselves_do_not_hide_the_mount_error():
    class Unreachable(ScriptedVm):
        def run(self, command, timeout=60, *, check=False):
            if command.startswith('echo "--- dmesg'):
                raise ClaveError("the SSH connection to 192.168.64.5 dropped")
            return super().run(command, timeout, check=check)

    vm = Unreachable({MOUNT: [MOUNT_FAILED] * 50})
    with pytest.raises(ClaveError) as caught:
        mount_share(vm, timeout=0.1)
    assert "wrong fs type" in str(caught.value)
    assert "(no diagnostics: the SSH connection to 192.168.64.5 dropped)" in str(caught.value)


def test_the_diagnostics_script_is_valid_sh_and_tolerates_a_vm_without_virtiofs():
    script = DIAGNOSE.format(lines=3, target="/srv/project")
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10)
    assert "--- virtio-fs tags the VM sees\n" in result.stdout
    assert "--- virtiofs mounts\n" in result.stdout


CACHE = mount_command({"cache": "/home/admin/.cache/x"})
BOTH = mount_command({"project": "/srv/project", "cache": "/home/admin/.cache/x"})


def test_several_shares_are_mounted_in_one_round_trip():
    vm = ScriptedVm({BOTH: [ok(BOTH)]})
    mount_shares(vm, {"project": "/srv/project", "cache": "/home/admin/.cache/x"})
    assert vm.calls == [BOTH]


def test_of_several_shares_the_one_that_never_mounts_is_named():
    cache_failed = Result(("ssh",), 32, "", "mount: /home/admin/.cache/x: unknown tag\n")
    vm = ScriptedVm({BOTH: [cache_failed] * 50, MOUNT: [ok(MOUNT)], CACHE: [cache_failed],
                     "diagnose": [Result(("ssh",), 0, DIAGNOSIS, "")]})
    with pytest.raises(ClaveError) as caught:
        mount_shares(vm, {"project": "/srv/project", "cache": "/home/admin/.cache/x"},
                     timeout=0.1)
    assert str(caught.value).startswith(
        "could not mount the `cache` share at /home/admin/.cache/x in the VM (192.168.64.5) "
        "within 0.1 s: mount: /home/admin/.cache/x: unknown tag")
    assert vm.calls[-3:-1] == [MOUNT, CACHE]


def test_a_command_can_ride_along_once_everything_is_mounted_and_its_output_is_returned():
    both = f"{BOTH} && {{ ip route; true; }}"
    vm = ScriptedVm({both: [MOUNT_FAILED, Result(("ssh",), 0, "192.168.64.1\n", "")]})
    said = mount_shares(vm, {"project": "/srv/project", "cache": "/home/admin/.cache/x"},
                        timeout=10, then="ip route")
    assert said == "192.168.64.1\n" and vm.calls == [both, both]
