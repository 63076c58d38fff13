"""The fake `tart` against the reference (../shared/reference/tart.md) and tart's source.

One row per documented behaviour: argv, exit code, exact output, and the state on disk after.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes.conftest import GB, MIB, FakeTart, hold_lock, load_fake_tart, wait_for_lock_release

fake_module = load_fake_tart()

SET_USAGE = (
    "Usage: tart set <name> [--cpu <cpu>] [--memory <memory>] [--display <display>]"
    " [--display-refit] [--random-mac] [--random-serial] [--disk <path>]"
    " [--disk-size <disk-size>]\n"
    "  See 'tart set --help' for more information."
)
RENAME_USAGE = (
    "Usage: tart rename <name> <new-name>\n  See 'tart rename --help' for more information."
)
CLONE_USAGE = (
    "Usage: tart clone <source-name> <new-name> [--insecure] [--concurrency <concurrency>]"
    " [--prune-limit <n>]\n  See 'tart clone --help' for more information."
)
RUN_USAGE = "Usage: tart run [<options>] <name>\n  See 'tart run --help' for more information."
LIST_USAGE = (
    "Usage: tart list [--source <source>] [--format <format>] [--quiet]\n"
    "  See 'tart list --help' for more information."
)
IP_USAGE = (
    "Usage: tart ip <name> [--wait <wait>] [--resolver <resolver>]\n"
    "  See 'tart ip --help' for more information."
)


def nothing(fake: FakeTart) -> None:
    pass


@dataclass(frozen=True)
class Behaviour:
    """Given VM `vm` (20 GB, 4 CPUs, 4096 MB) and `setup`, `tart ARGV` answers like this."""

    id: str
    argv: tuple[str, ...]
    code: int
    stderr: str | None = ""
    stdout: str | None = ""
    setup: Callable[[FakeTart], None] = nothing
    check: Callable[[FakeTart], None] = nothing
    env: dict[str, str] = field(default_factory=dict)


def drop_nvram(fake: FakeTart) -> None:
    (fake.vm_dir("vm") / "nvram.bin").unlink()


def assert_config(name: str, **expected) -> Callable[[FakeTart], None]:
    def check(fake: FakeTart) -> None:
        config = fake.config(name)
        assert {k: config.get(k) for k in expected} == expected

    return check


def assert_disk_bytes(size: int) -> Callable[[FakeTart], None]:
    def check(fake: FakeTart) -> None:
        disk = (fake.vm_dir("vm") / "disk.img").stat()
        assert disk.st_size == size
        assert disk.st_blocks * 512 < 1_000_000, "the disk stays sparse"

    return check


def assert_mac_changed(fake: FakeTart) -> None:
    mac = fake.config("vm")["macAddress"]
    assert mac != "02:00:00:00:00:01"
    first = int(mac.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01, "locally administered, unicast"


def same_mac(fake: FakeTart) -> None:
    config = fake.config("vm")
    config["macAddress"] = "02:00:00:00:00:01"
    fake.write_config("vm", config)


def mark_old(fake: FakeTart) -> None:
    fake.create_vm("old", cpu=8, disk_gb=30)
    (fake.vm_dir("old") / "extra-file").write_text("from the old VM")


def old_was_replaced(fake: FakeTart) -> None:
    assert fake.config("old")["cpuCount"] == 4
    assert (fake.vm_dir("old") / "disk.img").stat().st_size == 20 * GB
    assert not (fake.vm_dir("old") / "extra-file").exists()
    assert fake.config("old")["macAddress"] != fake.config("vm")["macAddress"]


def clone_exists(name: str) -> Callable[[FakeTart], None]:
    def check(fake: FakeTart) -> None:
        for file in ("config.json", "disk.img", "nvram.bin"):
            assert (fake.vm_dir(name) / file).exists()

    return check


def stale_tmp(fake: FakeTart) -> None:
    (fake.home / "tmp" / "STALE-CLONE").mkdir(parents=True)


def tmp_collected(fake: FakeTart) -> None:
    assert not (fake.home / "tmp" / "STALE-CLONE").exists()


def pulled(fake: FakeTart) -> None:
    fake.tart("pull", "ghcr.io/cirruslabs/ubuntu:latest")


BEHAVIOURS = [
    # §1.4 missing VMs: exit 2, the bare message
    *[
        Behaviour(f"{argv[0]} of a missing VM", argv, 2, 'the specified VM "nope" does not exist')
        for argv in (
            ("get", "nope"),
            ("set", "nope", "--cpu", "2"),
            ("ip", "nope"),
            ("stop", "nope"),
            ("delete", "nope"),
            ("clone", "nope", "new"),
        )
    ],
    # run's validate() opens the VM: swift-argument-parser reports it as `Error: ...`, exit 1
    Behaviour(
        "run of a missing VM", ("run", "nope"), 1, 'Error: the specified VM "nope" does not exist'
    ),
    Behaviour(
        "a VM directory missing a file",
        ("get", "vm"),
        1,
        "VM is missing some of its files (config.json, disk.img or nvram.bin)",
        setup=drop_nvram,
    ),
    Behaviour("list skips a VM missing a file", ("list", "--quiet"), 0, setup=drop_nvram),
    Behaviour("stop of a stopped VM", ("stop", "vm"), 2, 'VM "vm" is not running'),
    Behaviour("ip of a stopped VM", ("ip", "vm"), 1, "no IP address found, is your VM running?"),
    # §1.4 validation errors: exit 64, `Error:` + usage
    Behaviour(
        "rename of a missing VM",
        ("rename", "nope", "x"),
        64,
        f"Error: failed to rename a non-existent local VM: nope\n{RENAME_USAGE}",
    ),
    Behaviour(
        "rename onto an existing VM",
        ("rename", "vm", "old"),
        64,
        "Error: failed to rename VM vm, target VM old already exists, delete it first!\n"
        + RENAME_USAGE,
        setup=mark_old,
        check=assert_config("old", cpuCount=8),
    ),
    Behaviour(
        "rename to a remote-looking name",
        ("rename", "vm", "a/b"),
        64,
        f"Error: <new-name> should be a local name\n{RENAME_USAGE}",
    ),
    Behaviour(
        "clone to a remote-looking name",
        ("clone", "vm", "a/b"),
        64,
        f"Error: <new-name> should be a local name\n{CLONE_USAGE}",
    ),
    Behaviour(
        "clone with no network concurrency",
        ("clone", "vm", "x", "--concurrency", "0"),
        64,
        f"Error: network concurrency cannot be less than 1\n{CLONE_USAGE}",
    ),
    Behaviour(
        "set --cpus (plural) is an unknown option",
        ("set", "vm", "--cpus", "2"),
        64,
        f"Error: Unknown option '--cpus'. Did you mean '--cpu'?\n{SET_USAGE}",
        check=assert_config("vm", cpuCount=4),
    ),
    Behaviour(
        "set with a non-numeric cpu count",
        ("set", "vm", "--cpu", "four"),
        64,
        f"Error: The value 'four' is invalid for '--cpu <cpu>'\n{SET_USAGE}",
    ),
    Behaviour(
        "set without a name",
        ("set",),
        64,
        f"Error: Missing expected argument '<name>'\n{SET_USAGE}",
    ),
    Behaviour(
        "an unknown subcommand",
        ("frobnicate",),
        64,
        "Error: Unexpected argument 'frobnicate'\nUsage: tart <subcommand>\n"
        "  See 'tart --help' for more information.",
    ),
    Behaviour(
        "list from an unknown source",
        ("list", "--source", "cloud"),
        64,
        f"Error: 'cloud' is not a valid <source>\n{LIST_USAGE}",
    ),
    Behaviour(
        "ip with an unknown resolver",
        ("ip", "vm", "--resolver", "mdns"),
        64,
        "Error: The value 'mdns' is invalid for '--resolver <resolver>'."
        f" Please provide one of 'dhcp', 'arp' or 'agent'.\n{IP_USAGE}",
    ),
    Behaviour(
        "run mixing a named and an unnamed share under one tag",
        ("run", "vm", "--dir", "project:/tmp", "--dir", "/srv"),
        64,
        "Error: invalid --dir syntax: for multiple directory shares each one of them should be"
        f" named\n{RUN_USAGE}",
        check=lambda fake: fake.lock_pid("vm") == 0,
    ),
    Behaviour(
        "run with two network modes",
        ("run", "vm", "--net-bridged", "en0", "--net-host"),
        64,
        f"Error: --net-bridged, --net-softnet and --net-host are mutually exclusive\n{RUN_USAGE}",
    ),
    Behaviour(
        "run --suspendable on a Linux VM",
        ("run", "vm", "--suspendable"),
        64,
        f"Error: You can only suspend macOS VMs\n{RUN_USAGE}",
    ),
    # §2.2 set
    Behaviour(
        "set --display none is a silent no-op",
        ("set", "vm", "--display", "none"),
        0,
        check=assert_config("vm", display={"width": 1024, "height": 768}),
    ),
    Behaviour(
        "set --display takes WIDTHxHEIGHT with a unit",
        ("set", "vm", "--display", "1920x1080px"),
        0,
        check=assert_config("vm", display={"width": 1920, "height": 1080, "unit": "px"}),
    ),
    Behaviour(
        "set --memory takes megabytes and stores bytes",
        ("set", "vm", "--memory", "8192"),
        0,
        check=assert_config("vm", memorySize=8192 * MIB, cpuCount=4),
    ),
    Behaviour(
        "set --cpu (singular)",
        ("set", "vm", "--cpu", "2"),
        0,
        check=assert_config("vm", cpuCount=2, memorySize=4096 * MIB),
    ),
    Behaviour(
        "set --cpu 0 is below the minimum",
        ("set", "vm", "--cpu", "0"),
        1,
        "Error: LessThanMinimalResourcesError: VM should have 1 CPU cores at minimum (requested 0)",
        check=assert_config("vm", cpuCount=4),
    ),
    Behaviour(
        "set --disk-size grows the disk in GB of 10^9 bytes",
        ("set", "vm", "--disk-size", "50"),
        0,
        check=assert_disk_bytes(50 * GB),
    ),
    Behaviour(
        "set --disk-size never shrinks",
        ("set", "vm", "--disk-size", "10"),
        1,
        "new disk size of 10 GB should be larger than the current disk size of 20 GB",
        check=assert_disk_bytes(20 * GB),
    ),
    Behaviour(
        "set --random-mac",
        ("set", "vm", "--random-mac"),
        0,
        setup=same_mac,
        check=assert_mac_changed,
    ),
    Behaviour(
        "an injected failure changes nothing",
        ("set", "vm", "--cpu", "2"),
        3,
        'fake tart: injected failure of "tart set"',
        env={"FAKE_TART_FAIL": "ip,set:3"},
        check=assert_config("vm", cpuCount=4),
    ),
    # §2.1 clone
    Behaviour(
        "clone of a local VM prints nothing and gets a new MAC",
        ("clone", "vm", "copy"),
        0,
        check=lambda fake: (
            clone_exists("copy")(fake),
            fake.config("copy")["macAddress"] != fake.config("vm")["macAddress"] or pytest.fail(),
        ),
    ),
    Behaviour(
        "clone silently replaces an existing VM",
        ("clone", "vm", "old"),
        0,
        setup=mark_old,
        check=old_was_replaced,
    ),
    Behaviour(
        "clone of a remote image pulls it first",
        ("clone", "ghcr.io/cirruslabs/ubuntu:latest", "fresh"),
        0,
        stdout=None,
        check=clone_exists("fresh"),
    ),
    # §2.9 pull, §1.2 garbage collection, --version
    Behaviour(
        "pull of a local name",
        ("pull", "vm"),
        0,
        stdout='"vm" is a local image, nothing to pull here!',
    ),
    Behaviour(
        "every command but pull/clone removes unlocked temporary entries",
        ("get", "vm"),
        0,
        stdout=None,
        setup=stale_tmp,
        check=tmp_collected,
    ),
    Behaviour("tart --version", ("--version",), 0, stdout=fake_module.VERSION),
    # §2.6 delete of remote names
    Behaviour(
        "delete of a remote name removes the cache entry",
        ("delete", "ghcr.io/cirruslabs/ubuntu:latest"),
        0,
        setup=pulled,
        check=lambda fake: (
            fake.tart("list", "--source", "oci", "--quiet").stdout.splitlines()
            == [
                name
                for name in fake.tart("list", "--quiet").stdout.splitlines()
                if "@sha256:" in name
            ]
            or pytest.fail()
        ),
    ),
]


@pytest.mark.parametrize("behaviour", BEHAVIOURS, ids=[b.id for b in BEHAVIOURS])
def test_documented_behaviour(fake_tart: FakeTart, behaviour: Behaviour) -> None:
    fake_tart.create_vm("vm")
    behaviour.setup(fake_tart)
    done = fake_tart.tart(*behaviour.argv, env=behaviour.env)
    assert done.returncode == behaviour.code, done.stderr
    if behaviour.stderr is not None:
        assert done.stderr.rstrip("\n") == behaviour.stderr
    if behaviour.stdout is not None:
        assert done.stdout.rstrip("\n") == behaviour.stdout
    behaviour.check(fake_tart)


# --- JSON output (§2.7, §2.8) ----------------------------------------------------------------


def test_get_json_has_the_documented_keys_in_order(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("vm", cpu=2, memory_mb=8192, disk_gb=50)
    done = fake_tart.tart("get", "vm", "--format", "json")
    info = json.loads(done.stdout)
    assert list(info) == [
        "OS", "CPU", "Memory", "Disk", "DiskFormat", "Size", "Display", "Running", "State",
    ]  # fmt: skip
    assert info == info | {
        "OS": "linux",
        "CPU": 2,
        "Memory": 8192,
        "Disk": 50,
        "DiskFormat": "raw",
        "Display": "1024x768",
        "Running": False,
        "State": "stopped",
    }
    assert re.fullmatch(r"\d+\.\d{3}", info["Size"]), "Size is a string with 3 decimals"
    assert '"OS" : "linux"' in done.stdout, "Apple pretty-printing"


def test_list_json_is_local_sorted_then_oci_twice_with_capitalised_keys(
    fake_tart: FakeTart,
) -> None:
    fake_tart.create_vm("zeta")
    fake_tart.create_vm("alpha")
    assert fake_tart.tart("pull", "ghcr.io/cirruslabs/ubuntu:latest").returncode == 0

    done = fake_tart.tart("list", "--format", "json")

    rows = json.loads(done.stdout)
    assert [(r["Source"], r["Name"].split("@")[0]) for r in rows] == [
        ("local", "alpha"),
        ("local", "zeta"),
        ("OCI", "ghcr.io/cirruslabs/ubuntu:latest"),
        ("OCI", "ghcr.io/cirruslabs/ubuntu"),
    ]
    assert re.fullmatch(r"ghcr.io/cirruslabs/ubuntu@sha256:[0-9a-f]{64}", rows[3]["Name"])
    assert all(
        list(r) == ["Source", "Name", "Disk", "Size", "Accessed", "Running", "State"] for r in rows
    )
    assert rows[0] | {"Accessed": ""} == {
        "Source": "local",
        "Name": "alpha",
        "Disk": 20,
        "Size": 0,
        "Accessed": "",
        "Running": False,
        "State": "stopped",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[0]["Accessed"])
    assert '"Source" : "local"' in done.stdout
    assert "ghcr.io\\/cirruslabs" in done.stdout, "JSONEncoder escapes slashes"


def test_list_filters_by_source_and_prints_names_with_quiet(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("vm")
    fake_tart.tart("pull", "ghcr.io/cirruslabs/ubuntu:latest")

    local = json.loads(fake_tart.tart("list", "--source", "local", "--format", "json").stdout)
    oci = fake_tart.tart("list", "--source", "oci", "-q").stdout.splitlines()

    assert [r["Name"] for r in local] == ["vm"]
    assert oci[0] == "ghcr.io/cirruslabs/ubuntu:latest"
    assert len(oci) == 2 and oci[1].startswith("ghcr.io/cirruslabs/ubuntu@sha256:")


def test_list_of_no_vms_is_an_empty_array_or_an_empty_line(fake_tart: FakeTart) -> None:
    assert fake_tart.tart("list", "--format", "json").stdout == "[]\n"
    assert fake_tart.tart("list").stdout == "\n"


def test_a_second_clone_of_a_pulled_image_gets_a_new_mac(fake_tart: FakeTart) -> None:
    image = "ghcr.io/cirruslabs/ubuntu:latest"
    first = fake_tart.tart("clone", image, "one")
    fake_tart.tart("clone", image, "two")

    assert "pulling" in first.stdout
    assert fake_tart.config("one")["macAddress"] != fake_tart.config("two")["macAddress"]


# --- --dir parsing (§2.3) --------------------------------------------------------------------

HOME = os.path.expanduser("~")
AUTOMOUNT = "com.apple.virtio-fs.automount"


@pytest.mark.parametrize(
    ("spec", "name", "path", "read_only", "tag"),
    [
        ("project:/w", "project", "/w", False, AUTOMOUNT),  # the /srv/project/project trap
        ("/w", None, "/w", False, AUTOMOUNT),
        ("/w:tag=project", None, "/w", False, "project"),
        ("/w:ro,tag=extra", None, "/w", True, "extra"),
        ("~/x:ro", None, f"{HOME}/x", True, AUTOMOUNT),
        ("data:/w:ro", "data", "/w", True, AUTOMOUNT),
        ("/a:b/c", "/a", os.path.abspath("b/c"), False, AUTOMOUNT),  # ':' in a path breaks it
        ("/w:rw", "/w", os.path.abspath("rw"), False, AUTOMOUNT),  # not an option list
    ],
)
def test_dir_specs_parse_as_tart_does(spec, name, path, read_only, tag) -> None:
    share = fake_module.parse_dir_share(spec)
    assert (share.name, share.path, share.read_only, share.tag) == (name, path, read_only, tag)


@pytest.mark.parametrize(
    ("specs", "valid"),
    [
        (["/a"], True),
        (["a:/x", "b:/y"], True),  # one device, two subdirectories
        (["/x:tag=one", "/y:tag=two"], True),  # one device per tag
        (["/x", "/y"], False),
        (["a:/x", "/y"], False),
    ],
)
def test_shares_under_one_tag_must_all_be_named_unless_alone(specs, valid) -> None:
    shares = [fake_module.parse_dir_share(s) for s in specs]
    if valid:
        fake_module.group_shares(shares)
    else:
        with pytest.raises(fake_module.Validation, match="each one of them should be named"):
            fake_module.group_shares(shares)


def test_run_records_the_parsed_shares(fake_tart: FakeTart, tmp_path: Path) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start(
        "vm", "--no-graphics", "--dir", f"{tmp_path}:tag=project", "--dir", "~/.x:ro,tag=extra"
    )
    record = json.loads((fake_tart.vm_dir("vm") / ".fake-run.json").read_text())
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=10)

    assert record["pid"] == proc.pid
    assert record["shares"] == [
        {"name": None, "path": str(tmp_path), "read_only": False, "tag": "project"},
        {"name": None, "path": f"{HOME}/.x", "read_only": True, "tag": "extra"},
    ]


# --- running: the lock, signals, stop, delete (§1.3, §2.3, §2.5, §2.6) -----------------------


def test_run_holds_an_fcntl_lock_on_config_json_with_its_own_pid(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start("vm", "--no-graphics")

    info = json.loads(fake_tart.tart("get", "vm", "--format", "json").stdout)
    listed = json.loads(fake_tart.tart("list", "--format", "json").stdout)

    assert fake_tart.lock_pid("vm") == proc.pid
    assert (info["Running"], info["State"]) == (True, "running")
    assert (listed[0]["Running"], listed[0]["State"]) == (True, "running")


def test_a_second_run_of_a_running_vm_is_refused(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start("vm")

    again = fake_tart.tart("run", "vm")

    assert (again.returncode, again.stderr) == (2, 'VM "vm" is already running!\n')
    assert fake_tart.lock_pid("vm") == proc.pid


def test_delete_of_a_running_vm_is_refused(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("vm")
    fake_tart.start("vm")

    done = fake_tart.tart("delete", "vm")

    assert (done.returncode, done.stderr) == (1, 'VM "vm" is running\n')
    assert (fake_tart.vm_dir("vm") / "config.json").exists()


def test_set_on_a_running_vm_keeps_it_running(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start("vm")

    assert fake_tart.tart("set", "vm", "--cpu", "2").returncode == 0
    assert fake_tart.lock_pid("vm") == proc.pid
    assert fake_tart.config("vm")["cpuCount"] == 2


def test_any_lock_holder_counts_as_running_and_stop_sends_it_sigint(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("vm")
    holder = fake_tart.track(hold_lock(fake_tart.vm_dir("vm") / "config.json"))

    state = json.loads(fake_tart.tart("get", "vm", "--format", "json").stdout)["State"]
    stop = fake_tart.tart("stop", "vm")

    assert state == "running"
    assert (stop.returncode, stop.stdout, stop.stderr) == (0, "", "")
    assert holder.wait(timeout=10) == -signal.SIGINT


@pytest.mark.parametrize(
    ("signum", "stdout"),
    [
        (signal.SIGINT, "Stopping VM...\n"),
        (signal.SIGUSR2, "Requesting guest OS to stop...\nguest has stopped the virtual machine\n"),
    ],
    ids=["SIGINT is a hard stop", "SIGUSR2 asks the guest to shut down"],
)
def test_run_exits_0_on_sigint_and_sigusr2(fake_tart: FakeTart, signum, stdout) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start("vm", "--no-graphics")

    os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=10)

    assert (proc.returncode, out, err) == (0, stdout, "")
    assert fake_tart.lock_pid("vm") == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_run_dies_of_sigterm_and_sighup(fake_tart: FakeTart, signum) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start("vm")

    os.kill(proc.pid, signum)
    out, _ = proc.communicate(timeout=10)

    assert (proc.returncode, out) == (-signum, "")
    assert fake_tart.lock_pid("vm") == 0


def test_a_guest_that_powers_itself_off_ends_run_with_0(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start("vm")

    (fake_tart.vm_dir("vm") / ".fake-guest-poweroff").touch()
    out, _ = proc.communicate(timeout=10)

    assert (proc.returncode, out) == (0, "guest has stopped the virtual machine\n")


def test_stop_ends_run_silently(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start("vm")

    stop = fake_tart.tart("stop", "vm")
    out, _ = proc.communicate(timeout=10)

    assert (stop.returncode, stop.stdout, stop.stderr) == (0, "", "")
    assert (proc.returncode, out) == (0, "Stopping VM...\n")
    assert json.loads(fake_tart.tart("get", "vm", "--format", "json").stdout)["State"] == "stopped"


def test_stop_kills_a_vm_that_outlasts_the_timeout_and_delete_waits_for_the_lock(
    fake_tart: FakeTart,
) -> None:
    fake_tart.create_vm("vm")
    slow = {"FAKE_TART_LATENCY": "stop=20", "FAKE_TART_DELETE_LOCK_MS": "700"}
    proc = fake_tart.start("vm", env=slow)

    stop = fake_tart.tart("stop", "vm", "--timeout", "0", env=slow)
    first = fake_tart.tart("delete", "vm")
    proc.communicate(timeout=10)
    fake_tart.wait_until(lambda: fake_tart.tart("delete", "vm").returncode == 0, what="delete")

    assert stop.returncode == 0
    assert proc.returncode == -signal.SIGKILL
    assert (first.returncode, first.stderr) == (1, 'VM "vm" is running\n')
    assert not fake_tart.vm_dir("vm").exists()


def test_run_resets_a_mac_shared_with_a_running_vm(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("one", mac="02:11:22:33:44:55")
    fake_tart.create_vm("two", mac="02:11:22:33:44:55")
    fake_tart.start("one")

    second = fake_tart.start("two")
    os.kill(second.pid, signal.SIGINT)
    out, _ = second.communicate(timeout=10)

    assert out.splitlines()[:2] == [
        "There is already a running VM with the same MAC address!",
        "Resetting VM to assign a new MAC address...",
    ]
    assert fake_tart.config("two")["macAddress"] != "02:11:22:33:44:55"


# --- ip (§2.4) -------------------------------------------------------------------------------


def test_ip_waits_for_the_boot_and_answers_a_deterministic_address(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start("vm", env={"FAKE_TART_LATENCY": "run=2"})

    early = fake_tart.tart("ip", "vm", "--wait", "0")
    late = fake_tart.tart("ip", "vm", "--wait=10")

    assert (early.returncode, early.stderr) == (1, "no IP address found\n")
    expected = fake_module.address_for(fake_tart.config("vm")["macAddress"])
    assert (late.returncode, late.stdout) == (0, f"{expected}\n")
    assert re.fullmatch(r"192\.168\.64\.\d+", expected)
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=10)
    assert not (fake_tart.vm_dir("vm") / ".fake-ip").exists()


def test_ip_polls_until_its_wait_is_over(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("vm")

    started = time.monotonic()
    done = fake_tart.tart("ip", "vm", "--wait", "2")

    assert time.monotonic() - started >= 2
    assert (done.returncode, done.stderr) == (1, "no IP address found, is your VM running?\n")


# --- knobs -----------------------------------------------------------------------------------


def test_every_invocation_is_logged_with_its_argv(fake_tart: FakeTart) -> None:
    fake_tart.create_vm("vm")
    fake_tart.tart("get", "vm", "--format", "json")
    fake_tart.tart("set", "--cpus", "2")

    assert fake_tart.calls() == [["get", "vm", "--format", "json"], ["set", "--cpus", "2"]]


# --- the test VM hook (CLAVE_FAKEVM=1) -------------------------------------------------------

STAND_IN = textwrap.dedent(
    """
    import json, os, time
    from pathlib import Path

    EVENTS = Path(os.environ["STAND_IN_EVENTS"])

    def note(event, **details):
        with open(EVENTS, "a") as f:
            f.write(json.dumps({"event": event, **details}) + "\\n")

    class FakeVm:
        @classmethod
        def boot(cls, name, shares, state_dir, die_with_parent=False):
            state_dir.mkdir(parents=True, exist_ok=True)
            note("boot", name=name, shares=shares, state_dir=str(state_dir),
                 die_with_parent=die_with_parent)
            try:
                time.sleep(float(os.environ.get("STAND_IN_BOOT_SECONDS", "0")))
            except BaseException:
                note("boot-interrupted")
                raise
            return cls(state_dir)

        @classmethod
        def from_state(cls, state_dir):
            vm = cls(state_dir)
            vm.destroy = lambda: note("destroy-from-state")
            return vm

        def __init__(self, state_dir):
            self.ip = "10.66.0.7"
            self.halt = state_dir / "halt"

        def wait(self, timeout):
            deadline = time.monotonic() + (timeout or 0)
            while time.monotonic() < deadline:
                if self.halt.exists():
                    note("guest-halted")
                    return True
                time.sleep(0.02)
            return False

        def shutdown(self):
            note("shutdown")

        def destroy(self):
            note("destroy")
    """
)


@pytest.fixture
def stand_in(tmp_path: Path) -> dict[str, str]:
    module = tmp_path / "stand_in_vm.py"
    module.write_text(STAND_IN)
    return {
        "CLAVE_FAKEVM": "1",
        "FAKE_TART_VM_MODULE": str(module),
        "STAND_IN_EVENTS": str(tmp_path / "events.jsonl"),
    }


def events(env: dict[str, str]) -> list[dict]:
    path = Path(env["STAND_IN_EVENTS"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_hook_boots_a_test_vm_with_the_shares_and_publishes_its_address(
    fake_tart: FakeTart, stand_in: dict[str, str], tmp_path: Path
) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start("vm", "--dir", f"{tmp_path}:tag=project", env=stand_in)
    fake_tart.wait_until(lambda: events(stand_in), what="boot")

    address = fake_tart.tart("ip", "vm", "--wait", "5")
    os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=10)

    assert address.stdout == "10.66.0.7\n"
    assert events(stand_in) == [
        {
            "event": "boot",
            "name": "vm",
            "shares": {"project": str(tmp_path)},
            "state_dir": str(fake_tart.vm_dir("vm") / ".fakevm"),
            "die_with_parent": True,
        },
        {"event": "destroy"},
    ]
    assert (proc.returncode, out) == (0, "Stopping VM...\n")


def test_the_hook_passes_named_shares_of_one_tag_as_a_mapping(
    fake_tart: FakeTart, stand_in: dict[str, str], tmp_path: Path
) -> None:
    fake_tart.create_vm("vm")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    proc = fake_tart.start(
        "vm", "--dir", f"a:{tmp_path}/a", "--dir", f"b:{tmp_path}/b", env=stand_in
    )
    fake_tart.wait_until(lambda: events(stand_in), what="boot")

    shares = events(stand_in)[0]["shares"]
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=10)

    assert shares == {AUTOMOUNT: {"a": f"{tmp_path}/a", "b": f"{tmp_path}/b"}}


@pytest.mark.parametrize(
    ("act", "stdout", "expected_events"),
    [
        (
            lambda proc, vm: os.kill(proc.pid, signal.SIGUSR2),
            "Requesting guest OS to stop...\nguest has stopped the virtual machine\n",
            ["boot", "shutdown", "destroy"],
        ),
        (
            lambda proc, vm: (vm / ".fakevm" / "halt").touch(),
            "guest has stopped the virtual machine\n",
            ["boot", "guest-halted", "destroy"],
        ),
    ],
    ids=["SIGUSR2 shuts the guest down", "a guest shutdown ends run"],
)
def test_the_hook_stops_the_test_vm_gracefully(
    fake_tart: FakeTart, stand_in: dict[str, str], act, stdout, expected_events
) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start("vm", env=stand_in)
    fake_tart.wait_until(lambda: events(stand_in), what="boot")

    act(proc, fake_tart.vm_dir("vm"))
    out, _ = proc.communicate(timeout=10)

    assert (proc.returncode, out) == (0, stdout)
    assert [e["event"] for e in events(stand_in)] == expected_events


def test_sigterm_after_boot_destroys_the_test_vm_then_kills_run(
    fake_tart: FakeTart, stand_in: dict[str, str]
) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start("vm", env=stand_in)
    fake_tart.wait_until(lambda: events(stand_in), what="boot")
    fake_tart.wait_until(lambda: (fake_tart.vm_dir("vm") / ".fake-ip").exists(), what="address")

    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=10)

    assert proc.returncode == -signal.SIGTERM
    assert [e["event"] for e in events(stand_in)] == ["boot", "destroy"]


def test_sigterm_during_boot_interrupts_the_boot_then_kills_run(
    fake_tart: FakeTart, stand_in: dict[str, str]
) -> None:
    fake_tart.create_vm("vm")
    proc = fake_tart.start("vm", env={**stand_in, "STAND_IN_BOOT_SECONDS": "30"})
    fake_tart.wait_until(lambda: events(stand_in), what="boot to begin")

    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=10)

    assert proc.returncode == -signal.SIGTERM
    assert [e["event"] for e in events(stand_in)] == ["boot", "boot-interrupted"]
    wait_for_lock_release(fake_tart, "vm")


def test_stop_powers_off_the_test_vm_of_a_run_it_had_to_kill(
    fake_tart: FakeTart, stand_in: dict[str, str]
) -> None:
    fake_tart.create_vm("vm")
    slow = {**stand_in, "FAKE_TART_LATENCY": "stop=20"}
    proc = fake_tart.start("vm", env=slow)
    fake_tart.wait_until(lambda: events(stand_in), what="boot")

    stop = fake_tart.tart("stop", "vm", "--timeout", "0", env=slow)
    proc.communicate(timeout=10)

    assert (stop.returncode, stop.stderr) == (0, "")
    assert proc.returncode == -signal.SIGKILL
    assert "destroy-from-state" in [e["event"] for e in events(stand_in)]


def test_without_clave_fakevm_no_test_vm_module_is_loaded(
    fake_tart: FakeTart, stand_in: dict[str, str]
) -> None:
    fake_tart.create_vm("vm")
    env = {k: v for k, v in stand_in.items() if k != "CLAVE_FAKEVM"}
    proc = fake_tart.start("vm", env=env)

    address = fake_tart.tart("ip", "vm", "--wait", "5")
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=10)

    assert address.stdout.startswith("192.168.64.")
    assert events(stand_in) == []


def test_a_test_vm_that_fails_to_boot_ends_run_with_1(fake_tart: FakeTart, tmp_path: Path) -> None:
    fake_tart.create_vm("vm")
    broken = tmp_path / "broken_vm.py"
    broken.write_text(
        "class FakeVm:\n"
        "    @classmethod\n"
        "    def boot(cls, *a):\n"
        "        raise OSError('no netns')\n"
    )
    env = {"CLAVE_FAKEVM": "1", "FAKE_TART_VM_MODULE": str(broken)}

    done = fake_tart.tart("run", "vm", env=env)

    assert done.returncode == 1
    assert "no netns" in done.stderr
    assert fake_tart.lock_pid("vm") == 0


def test_the_fake_is_an_executable_on_path(fake_tart: FakeTart) -> None:
    found = subprocess.run(["sh", "-c", "command -v tart"], capture_output=True, text=True)
    assert found.stdout.strip() == str(Path(__file__).parent / "tart")


def test_the_fake_runs_through_a_symlink_in_another_directory(
    fake_tart: FakeTart, tmp_path: Path
) -> None:
    fake_tart.create_vm("vm")
    link = tmp_path / "bin" / "tart"
    link.parent.mkdir()
    link.symlink_to(Path(__file__).parent / "tart")

    done = subprocess.run([str(link), "get", "vm", "--format", "json"], capture_output=True,
                          text=True)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["State"] == "stopped"


ONLY_SOME_COMMANDS_NEED = {"dataclasses", "inspect", "shutil", "uuid", "hashlib", "random",
                           "datetime", "select", "signal"}


def imported_modules(*argv: str) -> set[str]:
    """Names `python -X importtime` reports for this command line."""
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True,
                          text=True)
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:")}


@pytest.mark.parametrize(
    "argv",
    [("get", "vm", "--format", "json"), ("ip", "vm"), ("set", "vm", "--cpu", "2"),
     ("list",)],
    ids=["get", "ip", "set", "list"],
)
def test_cheap_commands_import_no_module_only_other_commands_need(
    fake_tart: FakeTart, argv: tuple[str, ...]
) -> None:
    fake_tart.create_vm("vm")
    fake_tart.start("vm")  # `ip` answers at once while the VM runs
    fake_tart.wait_until(lambda: (fake_tart.vm_dir("vm") / ".fake-ip").exists())
    interpreter = imported_modules("-c", "pass")

    imported = imported_modules(str(Path(__file__).parent / "tart"), *argv) - interpreter

    allowed = {"datetime", "_datetime", "math"} if argv[0] == "list" else set()
    assert "fake_tart" in imported
    assert imported & ONLY_SOME_COMMANDS_NEED <= allowed


# --- the hook with real Linux test VMs (tests/harness) -----------------------------------------


@pytest.fixture
def test_vm_network(monkeypatch: pytest.MonkeyPatch):
    """The harness's bridge, and a leak check of everything this test's VMs owned."""
    from tests.harness import fixtures, leaks
    from tests.harness.fakevm import OWNER_ENV, unavailable_reason
    from tests.harness.network import Network

    fixtures.require(unavailable_reason())
    owner = f"fake-tart-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(OWNER_ENV, owner)
    net = Network.from_env()
    net.ensure_bridge()
    before = set(leaks.check(owner))
    yield net
    left = leaks.wait_clean(owner, before)
    net.remove_bridge()
    assert left == [], "the test left behind:\n  " + "\n  ".join(left)


def boot_real_vm(fake: FakeTart, tmp_path: Path, **env: str) -> tuple[subprocess.Popen, str]:
    fake.create_vm("vm")
    project = tmp_path / "project"
    project.mkdir()
    proc = fake.start(
        "vm", "--no-graphics", "--dir", f"{project}:tag=project", env={"CLAVE_FAKEVM": "1", **env}
    )
    address = fake.tart("ip", "vm", "--wait", "20")
    assert address.returncode == 0, address.stderr
    return proc, address.stdout.strip()


def accepts_ssh(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.vm
def test_run_boots_a_real_test_vm_whose_address_answers_ssh(
    fake_tart: FakeTart, test_vm_network, tmp_path: Path
) -> None:
    proc, address = boot_real_vm(fake_tart, tmp_path)
    fake_tart.wait_until(lambda: accepts_ssh(address), timeout=20, what="sshd in the VM")

    stop = fake_tart.tart("stop", "vm")
    out, _ = proc.communicate(timeout=20)

    assert address.startswith(f"{test_vm_network.prefix}.")
    assert (stop.returncode, proc.returncode, out) == (0, 0, "Stopping VM...\n")
    assert not (fake_tart.vm_dir("vm") / ".fakevm").exists()


@pytest.mark.vm
def test_a_run_that_stop_had_to_kill_leaves_no_test_vm_behind(
    fake_tart: FakeTart, test_vm_network, tmp_path: Path
) -> None:
    proc, _ = boot_real_vm(fake_tart, tmp_path, FAKE_TART_LATENCY="stop=20")

    stop = fake_tart.tart("stop", "vm", "--timeout", "0", env={"CLAVE_FAKEVM": "1"})
    proc.communicate(timeout=20)

    assert (stop.returncode, stop.stderr) == (0, "")
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.vm
def test_sigterm_to_run_destroys_the_real_test_vm(
    fake_tart: FakeTart, test_vm_network, tmp_path: Path
) -> None:
    proc, _ = boot_real_vm(fake_tart, tmp_path)

    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=20)

    assert proc.returncode == -signal.SIGTERM
