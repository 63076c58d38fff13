"""Provisioning end to end: the real `clave` CLI, the fake tart booting Linux test VMs, real SSH.

`provision_world` gives a test its own tart (TART_HOME, FAKE_TART_LOG), CLAVE_HOME and project
directory, and points clave at a copy of the tiny fragment set in provision_fragments/
(CLAVE_PROVISION_DIR), so a test can edit a fragment. The fake tart boots test VMs through
provision_fragments/guest_etc.py, which keeps each build VM's /etc when it goes: that is how a
test reads what the steps and the finalize step wrote inside the image (the test VM's disk is
not real, so the base VM itself carries nothing).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes.conftest import FakeTart

ROOT = Path(__file__).resolve().parents[2]
FRAGMENTS = Path(__file__).resolve().parent / "provision_fragments"
GUEST_MODULE = FRAGMENTS / "guest_etc.py"
BASE, BUILD = "clave-base", "clave-base-build"
CLI_TIMEOUT = 120


@dataclass
class ProvisionWorld:
    fake: FakeTart
    home: Path
    project: Path
    fragments: Path
    guest_etc: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    # --- running clave -------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT), "CLAVE_PLAIN": "1"}

    def clave(self, *args: str) -> subprocess.CompletedProcess:
        """`clave ARGS` to completion, in the project directory."""
        return subprocess.run([sys.executable, "-m", "clave", *args], cwd=self.project,
                              env=self.env(), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=CLI_TIMEOUT)

    def start(self, *args: str, name: str = "clave") -> Running:
        """`clave ARGS` in the background; its output goes to a file the test can poll."""
        out = self.home.parent / f"{name}-{len(self.processes)}.out"
        with open(out, "w") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "clave", *args], cwd=self.project,
                                    env=self.env(), stdin=subprocess.DEVNULL, stdout=sink,
                                    stderr=subprocess.STDOUT)
        self.processes.append(proc)
        return Running(proc, out)

    def provision(self, *args: str) -> subprocess.CompletedProcess:
        done = self.clave("provision", *args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    # --- the fragment set ----------------------------------------------------------------

    def fragment(self, key: str) -> Path:
        return self.fragments / f"{key}.sh"

    def edit(self, key: str, old: str, new: str) -> None:
        path = self.fragment(key)
        text = path.read_text()
        assert old in text, f"{old!r} is not in {path.name}"
        path.write_text(text.replace(old, new))

    def charlie_mode(self, mode: str) -> None:
        """ok, fail (exit 3 with some output) or hold (wait for release_charlie())."""
        path = self.fragment("30-charlie")
        lines = [f"MODE={mode}" if line.startswith("MODE=") else line
                 for line in path.read_text().splitlines()]
        path.write_text("\n".join(lines) + "\n")

    # --- what the guest saw ----------------------------------------------------------------

    def boots(self) -> list[Path]:
        """One kept /etc per build VM that ran, oldest first."""
        return sorted(self.guest_etc.iterdir()) if self.guest_etc.is_dir() else []

    def ran_in(self, boot: Path) -> list[str]:
        """The test fragments that ran in that boot, in order."""
        ran = boot / "clave-test" / "ran"
        return ran.read_text().split() if ran.exists() else []

    def image_record(self, boot: Path) -> dict:
        return json.loads((boot / "clave" / "image.json").read_text())

    def shared_with_build_vm(self) -> Path:
        """The host directory clave shared with the running build VM (from tart's argv)."""
        record = json.loads((self.fake.vm_dir(BUILD) / ".fake-run.json").read_text())
        return Path(record["shares"][0]["path"])

    def wait_for_charlie_hold(self, running: Running) -> None:
        self.fake.wait_until(
            lambda: self._holding() or running.proc.poll() is not None,
            timeout=CLI_TIMEOUT, what="30-charlie to hold in the build VM")
        assert running.proc.poll() is None, running.output()

    def release_charlie(self) -> None:
        (self.shared_with_build_vm() / "charlie.release").touch()

    def _holding(self) -> bool:
        try:
            return (self.shared_with_build_vm() / "charlie.holding").exists()
        except (OSError, ValueError, KeyError, IndexError):
            return False

    # --- tart's view ---------------------------------------------------------------------

    def vms(self) -> list[str]:
        vms = self.fake.home / "vms"
        return sorted(p.name for p in vms.iterdir()) if vms.is_dir() else []

    def verbs(self) -> list[str]:
        return [argv[0] for argv in self.fake.calls()]

    def calls_for(self, verb: str) -> list[list[str]]:
        return [argv for argv in self.fake.calls() if argv[:1] == [verb]]

    # --- teardown ------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop what a failed test left running; returns what had to be stopped."""
        stray = []
        for proc in self.processes:
            if proc.poll() is None:
                stray.append(f"clave process {proc.pid}")
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for state in sorted((self.fake.home / "vms").glob("*/.fakevm")):
            from tests.harness.fakevm import FakeVm

            stray.append(f"test VM of {state.parent.name}")
            FakeVm.from_state(state).destroy()
        self.fake.close()
        return stray


@dataclass
class Running:
    proc: subprocess.Popen
    out: Path

    def output(self) -> str:
        return self.out.read_text()

    def wait_for_output(self, text: str, timeout: float = CLI_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output()}"
            time.sleep(0.05)

    def finish(self, timeout: float = CLI_TIMEOUT) -> int:
        return self.proc.wait(timeout)


@pytest.fixture
def provision_world(tmp_path: Path, clave_home: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[ProvisionWorld]:
    fake = FakeTart.install(tmp_path, monkeypatch)
    fragments = tmp_path / "fragments"
    fragments.mkdir()
    for source in sorted(FRAGMENTS.glob("*.sh")):
        (fragments / source.name).write_text(source.read_text())
    project = tmp_path / "project"
    project.mkdir()
    guest_etc = tmp_path / "guest-etc"
    monkeypatch.setenv("CLAVE_FAKEVM", "1")
    monkeypatch.setenv("FAKE_TART_VM_MODULE", str(GUEST_MODULE))
    monkeypatch.setenv("CLAVE_TEST_GUEST_ETC", str(guest_etc))
    monkeypatch.setenv("CLAVE_PROVISION_DIR", str(fragments))
    world = ProvisionWorld(fake, clave_home, project, fragments, guest_etc)
    yield world
    stray = world.close()
    if stray:
        pytest.fail("the test left running: " + ", ".join(stray), pytrace=False)


@pytest.fixture
def provision_built(provision_world: ProvisionWorld) -> ProvisionWorld:
    """A world whose base VM was built by a first `clave provision`; the tart log is empty."""
    provision_world.provision()
    provision_world.fake.clear_calls()
    return provision_world


@pytest.fixture
def provision_seeded(provision_world: ProvisionWorld) -> ProvisionWorld:
    """A stopped base VM and the host's record of its steps, as a finished build leaves them,
    made without booting anything (a real first build is `provision_built`)."""
    from clave import config
    from clave.home import Home
    from clave.tasks import catalog

    provision_world.fake.create_vm(BASE)
    build = catalog.image_build(config.load(provision_world.project), Home.from_env().ensure(),
                                provision_world.project)
    build.save_state()   # the same record finalize writes
    return provision_world


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = CLI_TIMEOUT) -> None:
    FakeTart.wait_until(predicate, timeout, what)
