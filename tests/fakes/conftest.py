"""Fixtures for tests that drive the fake `tart` (tests/fakes/tart, a launcher of
tests/fakes/fake_tart.py) as a program on PATH.

`fake_tart` puts tests/fakes first on PATH, gives tart a private TART_HOME and records every
invocation in FAKE_TART_LOG; `base_vm` creates a stopped VM named `clave-base`. Tests outside
this directory build the same world with `FakeTart.install(tmp_path, monkeypatch)`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

FAKES = Path(__file__).resolve().parent
FAKE_TART = FAKES / "tart"
KNOBS = (
    "FAKE_TART_LATENCY",
    "FAKE_TART_FAIL",
    "FAKE_TART_DELETE_LOCK_MS",
    "FAKE_TART_VM_MODULE",
    "CLAVE_FAKEVM",
)
GB = 1000**3
MIB = 1024 * 1024


def load_fake_tart() -> ModuleType:
    """The fake as a module, for its pure helpers (share parsing, the lock probe, addresses)."""
    from tests.fakes import fake_tart

    return fake_tart


def apple_json(value: object) -> str:
    return json.dumps(value, indent=2, separators=(",", " : "))


def random_mac() -> str:
    octets = [random.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] | 0x02) & 0xFE
    return ":".join(f"{b:02x}" for b in octets)


@dataclass
class FakeTart:
    """One private tart world: TART_HOME, the invocation log, and the `run`s a test started."""

    home: Path
    log: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @classmethod
    def install(cls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTart:
        home, log = tmp_path / "tart-home", tmp_path / "tart-calls.jsonl"
        monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ.get('PATH', '')}")
        monkeypatch.setenv("TART_HOME", str(home))
        monkeypatch.setenv("FAKE_TART_LOG", str(log))
        for knob in KNOBS:
            monkeypatch.delenv(knob, raising=False)
        return cls(home, log)

    # --- state on disk ---------------------------------------------------------------------

    def vm_dir(self, name: str) -> Path:
        return self.home / "vms" / name

    def config(self, name: str) -> dict:
        return json.loads((self.vm_dir(name) / "config.json").read_text())

    def write_config(self, name: str, config: dict) -> None:
        (self.vm_dir(name) / "config.json").write_text(apple_json(config) + "\n")

    def create_vm(
        self,
        name: str = "clave-base",
        *,
        disk_gb: int = 20,
        cpu: int = 4,
        memory_mb: int = 4096,
        mac: str | None = None,
    ) -> str:
        """A stopped Linux VM as `tart create --linux` leaves it (written directly: fast)."""
        path = self.vm_dir(name)
        path.mkdir(parents=True)
        self.write_config(
            name,
            {
                "version": 1,
                "os": "linux",
                "arch": "arm64",
                "cpuCountMin": 4,
                "cpuCount": cpu,
                "memorySizeMin": 4096 * MIB,
                "memorySize": memory_mb * MIB,
                "macAddress": mac or random_mac(),
                "display": {"width": 1024, "height": 768},
                "diskFormat": "raw",
            },
        )
        with open(path / "disk.img", "wb") as disk:
            disk.truncate(disk_gb * GB)
        with open(path / "nvram.bin", "wb") as nvram:
            nvram.truncate(128 * 1024)
        return name

    def lock_pid(self, name: str) -> int:
        """Who holds the `tart run` lock on config.json (0: nobody), read with F_GETLK."""
        fd = os.open(self.vm_dir(name) / "config.json", os.O_RDWR)
        try:
            return load_fake_tart().lock_holder(fd)
        finally:
            os.close(fd)

    # --- the invocation log ----------------------------------------------------------------

    def calls(self) -> list[list[str]]:
        """Every argv tart was given (without the program name), oldest first."""
        if not self.log.exists():
            return []
        return [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]

    def clear_calls(self) -> None:
        self.log.unlink(missing_ok=True)

    # --- running the fake ------------------------------------------------------------------

    def tart(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tart", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
        )

    def start(
        self, name: str, *args: str, env: Mapping[str, str] | None = None, wait: bool = True
    ) -> subprocess.Popen:
        """`tart run NAME ARGS` in its own session; by default returns once the VM is locked."""
        proc = subprocess.Popen(
            ["tart", "run", name, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.track(proc)
        if wait:
            self.wait_until(lambda: self.lock_pid(name) == proc.pid or proc.poll() is not None)
            assert proc.poll() is None, proc.communicate()
        return proc

    def track(self, proc: subprocess.Popen) -> subprocess.Popen:
        """Kill this process (by its pid) at teardown if the test left it running."""
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired, ValueError):
                proc.communicate(timeout=10)

    @staticmethod
    def wait_until(predicate: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}")
            time.sleep(0.02)


def hold_lock(path: Path) -> subprocess.Popen:
    """A process that is not tart holding the fcntl lock on a config.json, like `tart run`."""
    code = (
        "import fcntl, os, signal, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "signal.pause()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def fake_tart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTart]:
    fake = FakeTart.install(tmp_path, monkeypatch)
    yield fake
    fake.close()


@pytest.fixture
def base_vm(fake_tart: FakeTart) -> str:
    """A stopped VM named `clave-base` (20 GB disk, 4 CPUs, 4096 MB)."""
    return fake_tart.create_vm("clave-base")


def wait_for_lock_release(fake: FakeTart, name: str) -> None:
    fake.wait_until(lambda: fake.lock_pid(name) == 0, what=f"{name} to stop")
