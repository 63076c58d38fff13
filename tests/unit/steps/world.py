"""The `world` a host-side step runs in: real git, real SQLite, the fake tart and herd.

- a Laravel-ish project (an `artisan` file, a `.env`, one commit on `main`) in a tmp dir;
- `tart` and `herd` on PATH are the faithful fakes in tests/fakes, with TART_HOME and HOME
  (where Herd keeps its state) in tmp dirs, and the base VM `clave-base` made by the fake;
- a Store in the test's own CLAVE_HOME (tests/conftest.py) and Settings from `from_dict`.

`world.leftovers()` lists everything a session could leave behind: VMs other than the base,
running VMs, Herd proxies, journal entries naming a resource, and session rows the world did
not add itself. The step contract ends with it being empty.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clave.config import Settings
from clave.context import SessionContext
from clave.home import Home
from clave.store import Store
from tests.messages import Said

FAKES = Path(__file__).resolve().parents[2] / "fakes"
BASE_VM = "clave-base"
PROJECT = "shop"
SESSION_ID = "abcd1234"
CPUS, MEMORY = 3, 3072          # not the defaults, so argv assertions prove they were passed
RESOURCE_COLUMNS = ("vm_name", "vm_ip", "tart_pid", "tunnel_port", "tunnel_pid", "proxy_name")
IDENTITY = {"user.name": "World Tester", "user.email": "world@example.com"}


@dataclass
class Confirm:
    """The `confirm(question, default)` steps are handed: scripted answers, questions kept."""

    answer: bool | None = True
    questions: list[str] = field(default_factory=list)

    def __call__(self, question: str, default: bool) -> bool | None:
        self.questions.append(question)
        return self.answer


@dataclass
class World:
    root: Path
    project: Path
    home: Home
    store: Store
    settings: Settings
    tart_home: Path
    herd_home: Path
    bin: Path
    base_template: Path
    said: Said = field(default_factory=Said)
    confirm: Confirm = field(default_factory=Confirm)
    provisioned: list[str] = field(default_factory=list)
    own_rows: set[str] = field(default_factory=set)
    started: list[subprocess.Popen] = field(default_factory=list)

    # -- contexts and adapters ------------------------------------------------------------

    def ctx(self, session_id: str = SESSION_ID, **values: Any) -> SessionContext:
        ctx = SessionContext(session_id=session_id, project_name=PROJECT,
                             project_dir=self.project, settings=self.settings, ui=self.said)
        for name, value in values.items():
            setattr(ctx, name, value)
        return ctx

    def saved_ctx(self, session_id: str = SESSION_ID, **values: Any) -> SessionContext:
        """A context whose session row exists, as SaveSession leaves it for later steps."""
        ctx = self.ctx(session_id, base_branch="main", **values)
        self.store.add(session_id=session_id, project_name=PROJECT,
                       project_dir=str(self.project), base_branch="main",
                       services_mode=ctx.services_mode.value, status="running")
        self.own_rows.add(session_id)
        return ctx

    def provision(self) -> None:
        """What EnsureVmExists calls when the base is missing: here, the fake makes it."""
        self.provisioned.append(BASE_VM)
        self.make_base()

    def adapters(self, **overrides: Any) -> dict[str, Any]:
        """What catalog.adapters hands steps, minus SSH (no VM here), wired to the world."""
        from clave.support.auth import AuthManager
        from clave.support.git import GitManager
        from clave.support.herd import HerdManager

        world = {
            "settings": self.settings, "home": self.home, "store": self.store,
            "tart": self.tart_manager(), "herd": HerdManager(), "git": GitManager(),
            "auth": AuthManager(Path(self.settings.get("auth_file")).expanduser()),
            "confirm": self.confirm, "interactive": False, "provision": self.provision,
        }
        world.update(overrides)
        return world

    def tart_manager(self):
        from clave.support.tart import TartManager

        return TartManager()

    # -- the fake tart ----------------------------------------------------------------------

    def tart(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        done = subprocess.run(["tart", *args], capture_output=True, text=True, check=False,
                              env={**os.environ, **env}, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"tart {' '.join(args)} failed ({done.returncode}): "
                                 f"{done.stderr}")
        return done

    def vms(self) -> dict[str, str]:
        """Local VMs as `tart list` reports them: name -> state."""
        listed = json.loads(self.tart("list", "--format", "json").stdout)
        return {vm["Name"]: vm["State"] for vm in listed if vm["Source"] == "local"}

    def vm_config(self, name: str) -> dict[str, Any]:
        return json.loads((self.tart_home / "vms" / name / "config.json").read_text())

    def make_base(self) -> None:
        """The base VM, as `tart create clave-base --linux` made it (once per test run)."""
        target = self.tart_home / "vms" / BASE_VM
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-R", "--sparse=always", str(self.base_template), str(target)],
                       check=True)

    def start_vm(self, name: str) -> subprocess.Popen:
        """`tart run` in its own session, as TartManager starts it; returns once it runs."""
        proc = subprocess.Popen(["tart", "run", name, "--no-graphics"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self.started.append(proc)
        self.wait_for_state(name, "running")
        return proc

    def wait_for_state(self, name: str, state: str, timeout: float = 10.0) -> None:
        """Poll `tart list` (a VM starts asynchronously); fail with what it says at the end."""
        deadline = time.monotonic() + timeout
        while (found := self.vms().get(name)) != state:
            if time.monotonic() > deadline:
                raise AssertionError(f"VM {name} is {found!r}, not {state!r}, after {timeout} s")
            time.sleep(0.05)

    def stop_everything(self) -> None:
        """Whatever a test left running is stopped: `tart stop` first, as a user would; then
        any fake still running from this world's bin/ (a `tart run` that had not yet taken
        its VM's lock when the test ended) is killed."""
        if any(self.tart_home.glob("vms/*/.fake-run.json")):        # something was run
            with contextlib.suppress(AssertionError, OSError, ValueError):
                for name, state in self.vms().items():
                    if state == "running":
                        self.tart("stop", name, check=False)
        for pid in self.own_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.started:
            proc.wait(timeout=10)

    def own_processes(self) -> list[int]:
        """Live processes whose command line runs a fake from this world's bin/."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z" and any(a.startswith(bytes(self.bin)) for a in args):
                found.append(int(entry.name))
        return found

    # -- the fake herd ----------------------------------------------------------------------

    def proxies(self) -> list:
        from clave.support.herd import HerdManager

        return HerdManager().proxies()

    def herd_calls(self) -> list[list[str]]:
        log = self.herd_home / "herd-argv.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    # -- git --------------------------------------------------------------------------------

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(["git", "-C", str(cwd or self.project), *args],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    # -- what is left -----------------------------------------------------------------------

    def leftovers(self) -> list[str]:
        found = []
        for name, state in self.vms().items():
            if name != BASE_VM:
                found.append(f"vm {name}")
            if state == "running":
                found.append(f"running {name}")
        found += [f"proxy {p.site}" for p in self.proxies()]
        for record in self.store.sessions():
            if record.session_id not in self.own_rows:
                found.append(f"row {record.session_id}")
            found += [f"journal {record.session_id}.{column}" for column in RESOURCE_COLUMNS
                      if getattr(record, column) is not None]
        return found


def make_project(path: Path) -> Path:
    """A Laravel-ish repository: `artisan`, a committed `.env.example`, an ignored `.env`."""
    path.mkdir(parents=True)
    files = {
        "artisan": "#!/usr/bin/env php\n<?php\n",
        "composer.json": "{}\n",
        ".env.example": "APP_NAME=Shop\nAPP_URL=http://localhost\n",
        ".gitignore": "/vendor\n.env\n",
    }
    for name, text in files.items():
        (path / name).write_text(text)
    run_git(path, "init", "--quiet", "--initial-branch=main")
    for key, value in IDENTITY.items():
        run_git(path, "config", key, value)
    run_git(path, "add", "--all")
    run_git(path, "commit", "--quiet", "-m", "Initial commit")
    (path / ".env").write_text("APP_NAME=Shop\nAPP_KEY=base64:secret\n")
    return path


def run_git(path: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)


def install_fakes(bin_dir: Path, *names: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        (bin_dir / name).symlink_to(FAKES / name)
    return bin_dir


@pytest.fixture(scope="session")
def base_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tart create` through the fake, once: copying its files is much cheaper per test."""
    tart_home = tmp_path_factory.mktemp("tart-template")
    subprocess.run([str(FAKES / "tart"), "create", BASE_VM, "--linux"], check=True,
                   env={**os.environ, "TART_HOME": str(tart_home)}, capture_output=True)
    return tart_home / "vms" / BASE_VM


@pytest.fixture(name="world")
def world_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  base_template: Path) -> Iterator[World]:
    tart_home, herd_home = tmp_path / "tart-home", tmp_path / "user-home"
    herd_home.mkdir()
    bin_dir = install_fakes(tmp_path / "bin", "tart", "herd")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TART_HOME", str(tart_home))
    monkeypatch.setenv("HOME", str(herd_home))
    monkeypatch.setenv("FAKE_HERD_LOG", str(herd_home / "herd-argv.log"))
    home = Home.from_env().ensure()
    store = Store.open(home)
    found = World(
        root=tmp_path, project=make_project(tmp_path / PROJECT), home=home, store=store,
        settings=Settings.from_dict({"vm": {"cpus": CPUS, "memory": MEMORY}}),
        tart_home=tart_home, herd_home=herd_home, bin=bin_dir, base_template=base_template)
    found.make_base()
    try:
        yield found
    finally:
        found.stop_everything()
        store.close()
