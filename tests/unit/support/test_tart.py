"""TartManager against the fake `tart` (tests/fakes/tart): exact argv, parsing, error paths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clave.errors import ClaveError, CommandFailed, ToolMissing
from clave.support.tart import TartManager, Vm, VmInfo
from tests.fakes.conftest import GB, MIB, FakeTart

GET = ["get", "vm", "--format", "json"]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTart]:
    fake = FakeTart.install(tmp_path, monkeypatch)
    yield fake
    fake.close()


@pytest.fixture
def tart(monkeypatch: pytest.MonkeyPatch) -> TartManager:
    monkeypatch.setattr(TartManager, "ssh_backoff_start", 0.01)
    return TartManager()


def boot(fake: FakeTart, tart: TartManager, tmp_path: Path, name: str = "vm"):
    """run_background, returning once the VM holds its lock."""
    proc = fake.track(tart.run_background(name, {}, tmp_path / "tart-run.log"))
    fake.wait_until(lambda: fake.lock_pid(name) == proc.pid, what=f"{name} to run")
    return proc


# --- a missing tart --------------------------------------------------------------------------


def test_a_missing_tart_fails_at_the_first_call_not_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    tart = TartManager()

    with pytest.raises(ToolMissing) as missing:
        tart.exists("vm")
    with pytest.raises(ToolMissing):
        tart.run_background("vm", {}, tmp_path / "log")

    assert missing.value.tool == "tart"
    assert str(missing.value) == (
        "`tart` was not found: install Tart with `brew install cirruslabs/cli/tart`."
    )


def test_a_missing_binary_path_is_reported_as_tart(tmp_path: Path) -> None:
    with pytest.raises(ToolMissing) as missing:
        TartManager(binary=str(tmp_path / "nowhere" / "tart")).list()
    assert missing.value.tool == "tart"


# --- clone, set, randomize_mac ---------------------------------------------------------------


def test_clone_checks_the_target_is_free_on_disk_then_clones(
    fake: FakeTart, tart: TartManager
) -> None:
    fake.create_vm("base")

    tart.clone("base", "vm")

    assert fake.calls() == [["clone", "base", "vm"]]
    assert tart.vm_dir("vm") == fake.vm_dir("vm")
    assert (fake.vm_dir("vm") / "disk.img").stat().st_size == 20 * GB


def test_clone_refuses_an_existing_target_that_tart_would_replace(
    fake: FakeTart, tart: TartManager
) -> None:
    fake.create_vm("base")
    fake.create_vm("vm", cpu=8)

    with pytest.raises(ClaveError, match="already exists"):
        tart.clone("base", "vm")

    assert fake.calls() == []
    assert fake.config("vm")["cpuCount"] == 8


def test_tart_home_defaults_to_dot_tart_in_the_users_home(tmp_path: Path) -> None:
    assert TartManager(environ={"HOME": str(tmp_path)}).vm_dir("vm") == tmp_path / ".tart/vms/vm"
    assert TartManager(environ={"HOME": "/x", "TART_HOME": str(tmp_path)}).vm_dir("vm") == \
        tmp_path / "vms" / "vm"


def test_clone_refuses_even_a_directory_tart_calls_incomplete(
    fake: FakeTart, tart: TartManager
) -> None:
    fake.create_vm("base")
    fake.vm_dir("vm").mkdir(parents=True)
    with pytest.raises(ClaveError, match="already exists"):
        tart.clone("base", "vm")


def test_clone_of_a_missing_source_carries_tarts_message(fake: FakeTart, tart: TartManager) -> None:
    with pytest.raises(CommandFailed) as failed:
        tart.clone("nope", "vm")

    assert failed.value.result.exited == 2
    assert str(failed.value) == (
        '`tart clone` failed (exit 2): the specified VM "nope" does not exist'
    )


def test_set_passes_cpu_memory_and_random_mac_in_one_call(
    fake: FakeTart, tart: TartManager
) -> None:
    fake.create_vm("vm", mac="02:00:00:00:00:01")

    tart.set("vm", cpus=2, memory=8192, random_mac=True)

    assert fake.calls() == [["set", "vm", "--cpu", "2", "--memory", "8192", "--random-mac"]]
    config = fake.config("vm")
    assert (config["cpuCount"], config["memorySize"]) == (2, 8192 * MIB)
    assert config["macAddress"] != "02:00:00:00:00:01"
    assert config["display"] == {"width": 1024, "height": 768}


def test_set_grows_a_smaller_disk(fake: FakeTart, tart: TartManager) -> None:
    fake.create_vm("vm", disk_gb=20)

    tart.set("vm", disk_size=50)

    assert fake.calls() == [GET, ["set", "vm", "--disk-size", "50"]]
    assert (fake.vm_dir("vm") / "disk.img").stat().st_size == 50 * GB


@pytest.mark.parametrize("size", [20, 10], ids=["same size", "smaller"])
def test_set_skips_a_disk_size_that_is_not_larger(
    fake: FakeTart, tart: TartManager, size: int
) -> None:
    fake.create_vm("vm", disk_gb=20)

    tart.set("vm", cpus=4, disk_size=size)

    assert fake.calls() == [GET, ["set", "vm", "--cpu", "4"]]
    assert (fake.vm_dir("vm") / "disk.img").stat().st_size == 20 * GB


def test_set_with_nothing_to_change_calls_nothing(fake: FakeTart, tart: TartManager) -> None:
    tart.set("vm")
    assert fake.calls() == []


def test_set_of_a_missing_vm_carries_tarts_message(fake: FakeTart, tart: TartManager) -> None:
    with pytest.raises(CommandFailed, match='the specified VM "vm" does not exist'):
        tart.set("vm", cpus=2)


def test_randomize_mac_sets_a_new_random_mac(fake: FakeTart, tart: TartManager) -> None:
    fake.create_vm("vm", mac="02:00:00:00:00:01")

    tart.randomize_mac("vm")

    assert fake.calls() == [["set", "vm", "--random-mac"]]
    assert fake.config("vm")["macAddress"] != "02:00:00:00:00:01"


# --- run_background --------------------------------------------------------------------------


def test_run_background_boots_headless_with_tagged_shares_in_its_own_session(
    fake: FakeTart, tart: TartManager, tmp_path: Path
) -> None:
    fake.create_vm("vm")
    project, extra = tmp_path / "project", tmp_path / "extra"
    log = tmp_path / "session" / "tart-run.log"

    proc = fake.track(tart.run_background("vm", {"project": project, "extra": extra}, log))
    fake.wait_until(lambda: fake.lock_pid("vm") == proc.pid, what="the VM to run")

    assert fake.calls() == [
        [
            "run",
            "vm",
            "--no-graphics",
            "--dir",
            f"{project}:tag=project",
            "--dir",
            f"{extra}:tag=extra",
        ]
    ]
    assert os.getsid(proc.pid) == proc.pid, "a session of its own"
    assert os.readlink(f"/proc/{proc.pid}/fd/0") == os.devnull
    assert tart.is_running("vm")


def test_run_background_appends_tart_output_to_the_log(
    fake: FakeTart, tart: TartManager, tmp_path: Path
) -> None:
    fake.create_vm("vm")
    log = tmp_path / "tart-run.log"
    log.write_text("earlier line\n")

    proc = fake.track(tart.run_background("vm", {}, log))
    fake.wait_until(lambda: fake.lock_pid("vm") == proc.pid, what="the VM to run")
    tart.stop("vm")

    assert proc.wait(timeout=10) == 0
    assert log.read_text() == "earlier line\nStopping VM...\n"


CALLER = """
import sys
from pathlib import Path
from clave.support.tart import TartManager
proc = TartManager().run_background("vm", {}, Path(sys.argv[1]))
print(proc.pid, flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGHUP], ids=["Ctrl-C", "closed terminal"]
)
def test_a_signal_to_the_callers_process_group_does_not_reach_the_vm(
    fake: FakeTart, tmp_path: Path, signum: int
) -> None:
    fake.create_vm("vm")
    root = Path(__file__).resolve().parents[3]
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER, str(tmp_path / "tart-run.log")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the caller's group stands in for the terminal's foreground
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    fake.track(caller)
    vm_pid = int(caller.stdout.readline())
    fake.wait_until(lambda: fake.lock_pid("vm") == vm_pid, what="the VM to run")

    os.killpg(caller.pid, signum)
    caller.wait(timeout=10)

    assert caller.returncode == -signum
    assert fake.lock_pid("vm") == vm_pid, "the VM outlives its caller"
    assert fake.tart("stop", "vm").returncode == 0


def test_a_share_path_with_a_colon_is_refused_before_tart_runs(
    fake: FakeTart, tart: TartManager, tmp_path: Path
) -> None:
    log = tmp_path / "tart-run.log"

    with pytest.raises(ClaveError, match="cannot parse paths that contain ':'"):
        tart.run_background("vm", {"project": tmp_path / "a:b"}, log)

    assert fake.calls() == []
    assert not log.exists()


# --- ip, stop, delete ------------------------------------------------------------------------


def test_ip_waits_and_returns_the_address(
    fake: FakeTart, tart: TartManager, tmp_path: Path
) -> None:
    fake.create_vm("vm")
    boot(fake, tart, tmp_path)
    fake.clear_calls()

    address = tart.ip("vm", wait=5)

    assert fake.calls() == [["ip", "vm", "--wait", "5"]]
    assert address.startswith("192.168.64.") and address == address.strip()


def test_ip_of_a_stopped_vm_carries_tarts_message(fake: FakeTart, tart: TartManager) -> None:
    fake.create_vm("vm")

    with pytest.raises(CommandFailed) as failed:
        tart.ip("vm")

    assert fake.calls() == [["ip", "vm", "--wait", "0"]]
    assert (
        str(failed.value) == "`tart ip` failed (exit 1): no IP address found, is your VM running?"
    )


def ip_pollers_running(name: str) -> list[int]:
    """Processes of `tart ip NAME` still alive (the fake is a Python script)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"ip" in argv and name.encode() in argv and b"--wait" in argv:
                found.append(int(entry.name))
    return found


def test_staggered_pollers_return_the_address_and_leave_no_poller_behind(
    fake: FakeTart, tart: TartManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.create_vm("vm-s")
    monkeypatch.setenv("FAKE_TART_LATENCY", "run=1.2")
    boot(fake, tart, tmp_path, "vm-s")
    fake.clear_calls()

    address = tart.ip("vm-s", wait=20, pollers=3)

    assert address.startswith("192.168.64.")
    assert 1 <= len(fake.calls()) <= 3
    assert set(map(tuple, fake.calls())) == {("ip", "vm-s", "--wait", "20")}
    assert ip_pollers_running("vm-s") == []


def test_staggered_pollers_of_a_stopped_vm_fail_with_tarts_message(
    fake: FakeTart, tart: TartManager
) -> None:
    fake.create_vm("vm-t")

    with pytest.raises(CommandFailed, match="no IP address found, is your VM running"):
        tart.ip("vm-t", wait=1, pollers=2)

    assert ip_pollers_running("vm-t") == []


def test_an_interrupt_while_waiting_for_the_address_stops_every_poller(
    fake: FakeTart, tart: TartManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.create_vm("vm-u")
    monkeypatch.setenv("FAKE_TART_LATENCY", "run=60")
    boot(fake, tart, tmp_path, "vm-u")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            tart.ip("vm-u", wait=60, pollers=2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert ip_pollers_running("vm-u") == []


def test_stop_stops_a_running_vm(fake: FakeTart, tart: TartManager, tmp_path: Path) -> None:
    fake.create_vm("vm")
    proc = boot(fake, tart, tmp_path)
    fake.clear_calls()

    tart.stop("vm", timeout=5)

    assert fake.calls() == [["stop", "vm", "--timeout", "5"]]
    assert proc.wait(timeout=10) == 0
    assert not tart.is_running("vm")


def test_stop_of_a_vm_that_is_not_running_is_done(fake: FakeTart, tart: TartManager) -> None:
    fake.create_vm("vm")

    tart.stop("vm")

    assert fake.calls() == [["stop", "vm"]]


def test_stop_of_a_missing_vm_is_done_so_teardown_needs_no_existence_check(
        fake: FakeTart, tart: TartManager) -> None:
    tart.stop("vm")

    assert fake.calls() == [["stop", "vm"]]


def test_delete_removes_the_vm_and_a_missing_vm_is_done(fake: FakeTart, tart: TartManager) -> None:
    fake.create_vm("vm")

    tart.delete("vm")
    tart.delete("vm")

    assert not fake.vm_dir("vm").exists()
    assert fake.calls() == [["delete", "vm"], ["delete", "vm"]]


def test_delete_retries_while_a_killed_vm_still_holds_its_lock(
    fake: FakeTart, tart: TartManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.create_vm("vm")
    monkeypatch.setenv("FAKE_TART_DELETE_LOCK_MS", "600")
    proc = fake.start("vm", env={"FAKE_TART_LATENCY": "stop=20"})

    tart.stop("vm", timeout=0)  # SIGINT, then SIGKILL at once: the lock lingers 600 ms
    tart.delete("vm")

    deletes = [c for c in fake.calls() if c[0] == "delete"]
    assert len(deletes) >= 2
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert not fake.vm_dir("vm").exists()


def test_delete_gives_up_on_a_vm_that_keeps_running(
    fake: FakeTart, tart: TartManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.create_vm("vm")
    fake.start("vm")
    monkeypatch.setattr(TartManager, "delete_retry_limit", 0.5)

    with pytest.raises(CommandFailed) as failed:
        tart.delete("vm")

    assert str(failed.value) == '`tart delete` failed (exit 1): VM "vm" is running'
    assert len(fake.calls()) >= 3
    assert fake.vm_dir("vm").exists()


def test_destroy_of_a_stopped_vm_is_one_delete(fake: FakeTart, tart: TartManager) -> None:
    fake.create_vm("vm")

    tart.destroy("vm")
    tart.destroy("vm")

    assert fake.calls() == [["delete", "vm"], ["delete", "vm"]]
    assert not fake.vm_dir("vm").exists()


def test_destroy_stops_a_running_vm_first(fake: FakeTart, tart: TartManager) -> None:
    fake.create_vm("vm")
    proc = fake.start("vm")

    tart.destroy("vm")

    assert [c[0] for c in fake.calls()][1:4] == ["delete", "stop", "delete"]
    assert proc.wait(timeout=10) == 0 and not fake.vm_dir("vm").exists()


# --- questions -------------------------------------------------------------------------------


def test_exists_asks_get_and_reads_exit_2_as_no(fake: FakeTart, tart: TartManager) -> None:
    fake.create_vm("vm")

    assert tart.exists("vm") is True
    assert tart.exists("other") is False
    assert fake.calls() == [GET, ["get", "other", "--format", "json"]]


def test_exists_of_a_broken_vm_directory_is_an_error(fake: FakeTart, tart: TartManager) -> None:
    fake.create_vm("vm")
    (fake.vm_dir("vm") / "nvram.bin").unlink()

    with pytest.raises(CommandFailed, match="VM is missing some of its files"):
        tart.exists("vm")


def test_is_running_follows_the_lock(fake: FakeTart, tart: TartManager, tmp_path: Path) -> None:
    fake.create_vm("vm")

    before = tart.is_running("vm")
    boot(fake, tart, tmp_path)

    assert (before, tart.is_running("vm"), tart.is_running("missing")) == (False, True, False)


def test_get_parses_the_capitalised_json(fake: FakeTart, tart: TartManager) -> None:
    fake.create_vm("vm", cpu=2, memory_mb=8192, disk_gb=50)

    assert tart.get("vm") == VmInfo(
        os="linux",
        cpu=2,
        memory=8192,
        disk=50,
        display="1024x768",
        running=False,
        state="stopped",
    )
    assert fake.calls() == [GET]


def test_list_returns_local_vms_sorted_by_name(fake: FakeTart, tart: TartManager) -> None:
    fake.create_vm("zeta")
    fake.create_vm("alpha", disk_gb=50)
    fake.tart("pull", "ghcr.io/cirruslabs/ubuntu:latest")
    fake.clear_calls()

    vms = tart.list()

    assert fake.calls() == [["list", "--source", "local", "--format", "json"]]
    assert [(v.name, v.source, v.disk, v.size, v.running, v.state) for v in vms] == [
        ("alpha", "local", 50, 0, False, "stopped"),
        ("zeta", "local", 20, 0, False, "stopped"),
    ]
    assert all(v.accessed.endswith("Z") for v in vms)


def stub_tart(tmp_path: Path, stdout: str) -> str:
    """A `tart` that prints STDOUT whatever it is asked: for output the fake never gives."""
    stub = tmp_path / "stub-tart"
    stub.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write({stdout!r})\n")
    stub.chmod(0o755)
    return str(stub)


def test_list_skips_oci_entries_even_when_tart_lists_them(tmp_path: Path) -> None:
    rows = [
        {"Source": "OCI", "Name": "ghcr.io/cirruslabs/ubuntu:latest", "Disk": 20, "Size": 9,
         "Accessed": "2026-05-12T21:45:18Z", "Running": False, "State": "stopped"},
        {"Source": "local", "Name": "clave-base", "Disk": 20, "Size": 9,
         "Accessed": "2026-05-12T21:45:18Z", "Running": True, "State": "running"},
    ]  # fmt: skip
    output = json.dumps(rows, indent=2, separators=(",", " : ")).replace("/", "\\/")

    vms = TartManager(binary=stub_tart(tmp_path, output)).list()

    assert vms == [Vm("clave-base", "local", 20, 9, "2026-05-12T21:45:18Z", True, "running")]


def test_output_that_is_not_json_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed, match="did not print JSON"):
        TartManager(binary=stub_tart(tmp_path, "Source Name\n")).get("vm")


def test_rename_renames_and_carries_tarts_usage_error(fake: FakeTart, tart: TartManager) -> None:
    fake.create_vm("a")
    fake.create_vm("b")

    with pytest.raises(CommandFailed) as failed:
        tart.rename("a", "b")
    tart.rename("a", "c")

    assert failed.value.result.exited == 64
    assert str(failed.value) == (
        "`tart rename` failed (exit 64): failed to rename VM a, target VM b already exists,"
        " delete it first!"
    )
    assert fake.calls() == [["rename", "a", "b"], ["rename", "a", "c"]]
    assert fake.vm_dir("c").exists() and not fake.vm_dir("a").exists()


def test_any_failure_carries_tarts_exit_code_and_message(
    fake: FakeTart, tart: TartManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.create_vm("vm")
    monkeypatch.setenv("FAKE_TART_FAIL", "get:9")

    with pytest.raises(CommandFailed) as failed:
        tart.get("vm")

    assert failed.value.result.exited == 9
    assert 'injected failure of "tart get"' in str(failed.value)


# --- wait_for_ready --------------------------------------------------------------------------


class Ssh:
    """An SSH probe that answers `answers` in turn, then keeps the last answer."""

    def __init__(self, *answers: bool):
        self.answers = list(answers)
        self.host: str | None = None
        self.tests = 0

    def set_host(self, host: str) -> None:
        self.host = host

    def test(self) -> bool:
        self.tests += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def last_error(self) -> str | None:
        return "Connection refused"


def test_wait_for_ready_waits_for_the_address_then_for_ssh(
    fake: FakeTart, tart: TartManager, tmp_path: Path
) -> None:
    fake.create_vm("vm")
    boot(fake, tart, tmp_path)
    fake.clear_calls()
    ssh = Ssh(False, False, True)

    address = tart.wait_for_ready("vm", ssh, timeout=30)

    assert fake.calls() == [["ip", "vm", "--wait", "30"]]
    assert ssh.host == address and address.startswith("192.168.64.")
    assert ssh.tests == 3


def test_wait_for_ready_gives_up_with_the_ssh_error(
    fake: FakeTart, tart: TartManager, tmp_path: Path
) -> None:
    fake.create_vm("vm")
    boot(fake, tart, tmp_path)

    with pytest.raises(ClaveError, match="did not accept SSH within 0.5 s .Connection refused."):
        tart.wait_for_ready("vm", Ssh(False), timeout=0.5)


def test_wait_for_ready_of_a_vm_without_an_address_is_an_error(
    fake: FakeTart, tart: TartManager
) -> None:
    fake.create_vm("vm")

    with pytest.raises(CommandFailed, match="no IP address found"):
        tart.wait_for_ready("vm", Ssh(True), timeout=0.5)
