"""The world an end-to-end session runs in, and `clave` driven through a pseudo-terminal.

A `World` is one user's machine as clave sees it on a Mac: a Laravel project (a git repo
copied from tests/fixtures/app, `.env` holding the host database's credentials), the fake
`tart` and `herd` on PATH, a TART_HOME with the provisioned base VM `clave-base` (made
through the fake), a CLAVE_HOME, a HOME for Herd's state and a Claude Code token. MySQL and
Redis are the harness's host services. `World.start()` runs `python -m clave` on a pty.

The Linux test VMs stand in for the base image, so this module also plays the parts of the
image that a session relies on and the harness does not model (FAKE_TART_VM_MODULE points
the fake tart's `run` here, see `FakeVm`):
- the stand-in `claude` (tests/fakes/claude_vm) at /home/admin/.local/bin/claude;
- Tart's rule that shared files "appear owned by whoever looks" (tart.md §6.2): clave runs
  as root here, so the session's clone is root's; a default ACL on `.clave/wt` lets the VM's
  admin write it, and git in the VM trusts the share (`safe.directory`), as it would on a Mac;
- a channel to the test: the world's `vm/` directory is shared into every VM at
  /run/clave-test (the stand-in's script, its records, pause/resume files). clave never sees
  this share: it is added below the fake tart, so `tart run`'s argv is clave's own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import shlex
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes"
APP = ROOT / "tests" / "fixtures" / "app"
CLAUDE_VM = FAKES / "claude_vm"

TOKEN = "sk-ant-oat01-" + "E2eSessionToken_" * 4 + "9f8e7d6c5b4a-AA"
BASE_VM = "clave-base"
TEST_DIR_ENV = "CLAVE_E2E_DIR"       # the host side of the test channel, for FakeVm.boot
TEST_TAG = "clave-test"
GUEST_TEST_DIR = "/run/clave-test"
GUEST_CLAUDE = "/home/admin/.local/bin/claude"
VM_ENVIRONMENT = "vm-environment"
INSTALLER_STATE = {"installMethod": "native", "autoUpdates": False,
                   "userID": "0f3c7b2e9d8a4c1b5e6f7a8b9c0d1e2f", "firstStartTime": "2026-01-01"}
BOOT_ERRORS = "boot-errors.log"
BOOT_TIMEOUT = 60                     # seconds for sshd in a VM booting on a busy machine
ADMIN_UID = 1000                      # the VM's admin when the shared clone is root's
ENV_COMMENT = "# the fixture's settings; clave patches only the keys it owns"
SCREEN = (40, 132)                    # rows, columns of the pty
CURSOR_REPORT_QUERY, CURSOR_REPORT = b"\x1b[6n", b"\x1b[1;1R"
AUTH_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL",
                  "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX",
                  "CLAUDE_CODE_USE_FOUNDRY")
# CSI, OSC, DCS (blessed's XTGETTCAP queries), charset and keypad escapes
_ANSI = re.compile(r"\x1b(\[[0-9;?>=]*[ -/]*[@-~]|\][^\x07]*\x07|P[^\x1b]*\x1b\\"
                   r"|[()][0-9A-Za-z]|[=>78])")


# -- the VM module hook (FAKE_TART_VM_MODULE=tests.e2e.session_world) ----------------------

class FakeVm:
    """`tart run`'s guest: a harness test VM, plus what the base image would have had."""

    @classmethod
    def boot(cls, name: str, shares: dict, state_dir: Path):
        from tests.harness.fakevm import FakeVm as HarnessVm

        test_dir = os.environ.get(TEST_DIR_ENV)
        if test_dir:
            shares = {**shares, TEST_TAG: test_dir}
        try:
            vm = HarnessVm.boot(name, shares, state_dir)
            try:
                vm.wait_ssh(BOOT_TIMEOUT)     # vm_init.sh has created admin once sshd listens
                done = vm.exec(["sh", "-ec", _image_script(bool(test_dir))])
                if done.returncode != 0:
                    raise RuntimeError(f"preparing {name} failed: {done.stderr.strip()}")
            except BaseException:
                vm.destroy()
                raise
        except Exception as err:          # tart's log goes with the session: tell the test
            if test_dir:
                with open(Path(test_dir) / BOOT_ERRORS, "a") as log:
                    log.write(f"{name}: {err}\n")
            raise
        return vm


def _image_script(with_test_dir: bool) -> str:
    lines = ["git config --system safe.directory '*'"]
    if with_test_dir:
        lines += [f"mkdir -p {GUEST_TEST_DIR}",
                  f"mount -t virtiofs {TEST_TAG} {GUEST_TEST_DIR}",
                  f"install -o admin -g admin -m 755 {GUEST_TEST_DIR}/claude {GUEST_CLAUDE}",
                  # what the claude-code fragment records at provisioning
                  f"mkdir -p /etc/clave && {GUEST_CLAUDE} --version | awk '{{print $1}}'"
                  " >/etc/clave/claude-version",
                  # what Claude Code's installer leaves in the image
                  f"echo {shlex.quote(json.dumps(INSTALLER_STATE))} >/home/admin/.claude.json",
                  "chown admin:admin /home/admin/.claude.json",
                  # variables every login in the VM gets (pam_env), e.g. a stray API key
                  f"[ ! -f {GUEST_TEST_DIR}/{VM_ENVIRONMENT} ] || "
                  f"cat {GUEST_TEST_DIR}/{VM_ENVIRONMENT} >>/etc/environment"]
    return "\n".join(lines)


# -- the world ------------------------------------------------------------------------------

@dataclass
class World:
    root: Path
    project: Path
    home: Path
    clave_home: Path
    tart_home: Path
    test_dir: Path
    env: dict[str, str]
    env_text: str                        # the project's .env as the user wrote it
    sessions: list[Session] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path, services, *, mode: str = "tunnel",
               latency: str | None = None) -> World:
        """services: the harness's HostServices (ports, database, user, password)."""
        root.mkdir(parents=True, exist_ok=True)
        project = root / "app"
        shutil.copytree(APP, project)
        with (project / ".gitignore").open("a") as fh:
            fh.write(".clave/\n")
        env_text = _dotenv(project / ".env.example", services)
        (project / ".env").write_text(env_text)
        (project / ".env").chmod(0o644)
        home, xdg = root / "home", root / "xdg"
        home.mkdir()
        xdg.mkdir()
        (home / ".gitconfig").write_text("[user]\n\tname = Mac User\n\temail = user@example.test\n"
                                         "[init]\n\tdefaultBranch = main\n")
        clave_home = root / "clave-home"
        (clave_home / "cache" / "composer").mkdir(parents=True)
        clave_home.chmod(0o700)
        grant_default_acl(clave_home / "cache" / "composer", ADMIN_UID)
        (project / ".clave" / "wt").mkdir(parents=True)
        grant_default_acl(project / ".clave" / "wt", ADMIN_UID)
        test_dir = root / "vm"
        (test_dir / "records").mkdir(parents=True)
        shutil.copy(CLAUDE_VM, test_dir / "claude")
        for path in (test_dir, test_dir / "records"):
            path.chmod(0o777)          # the stand-in writes here as admin
        tart_home = root / "tart-home"
        env = _environment(root, project, home, xdg, clave_home, tart_home, test_dir,
                           services, mode, latency)
        world = cls(root, project, home, clave_home, tart_home, test_dir, env, env_text)
        world.git("init", "-q", "-b", "main")
        world.git("add", "-A")
        world.git("commit", "-q", "-m", "Initial commit")
        world.tart("create", "--linux", BASE_VM)
        return world

    # -- running clave ------------------------------------------------------------------

    def start(self, *args: str, env: dict[str, str] | None = None) -> Session:
        session = Session.spawn([sys.executable, "-m", "clave", *args], cwd=self.project,
                                env={**self.env, **(env or {})})
        self.sessions.append(session)
        return session

    def close(self) -> None:
        """Stop every clave still running (a failed test), letting it tear down first."""
        for session in self.sessions:
            session.close()

    # -- the stand-in claude ------------------------------------------------------------

    def script(self, text: str) -> None:
        """What the stand-in claude does in /srv/project (bash -e; `pause` waits for us)."""
        (self.test_dir / "script.sh").write_text(text)

    def wait_paused(self, count: int = 1, timeout: float = 90,
                    sessions: list[Session] | None = None) -> list[str]:
        """The VM names whose stand-in claude is paused, once `count` are."""
        def paused() -> list[str]:
            return sorted(p.name.removeprefix("paused-") for p in self.test_dir.glob("paused-*"))

        wait_for(lambda: len(paused()) >= count, timeout, f"{count} paused stand-in claude",
                 sessions or self.sessions, explain=self.boot_errors)
        return paused()

    def boot_errors(self) -> str:
        path = self.test_dir / BOOT_ERRORS
        return f"VMs that did not boot:\n{path.read_text()}" if path.exists() else ""

    def resume(self, vm: str) -> None:
        (self.test_dir / f"resume-{vm}").touch()

    def vm_environment(self, variables: dict[str, str]) -> None:
        """Variables every login in the session's VM will have (its /etc/environment)."""
        (self.test_dir / VM_ENVIRONMENT).write_text(
            "".join(f"{k}={v}\n" for k, v in variables.items()))

    def guest(self, vm: str):
        """The running test VM behind a session's Tart VM (to look inside it)."""
        from tests.harness.fakevm import FakeVm as HarnessVm

        return HarnessVm.from_state(self.tart_home / "vms" / vm / ".fakevm")

    def record(self, vm: str) -> dict:
        return json.loads((self.test_dir / "records" / f"{vm}.json").read_text())

    # -- looking at the host ------------------------------------------------------------

    def git(self, *args: str, cwd: Path | None = None, check: bool = True) -> str:
        done = subprocess.run(["git", *args], cwd=cwd or self.project, env=self.env,
                              capture_output=True, text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def tart(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(["tart", *args], env=self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"tart {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def tart_calls(self) -> list[dict]:
        path = Path(self.env["FAKE_TART_LOG"])
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def vms(self) -> list[str]:
        """Local VMs in TART_HOME other than the base."""
        vms = self.tart_home / "vms"
        return sorted(p.name for p in vms.iterdir() if p.name != BASE_VM) if vms.is_dir() else []

    def herd_proxies(self) -> dict[str, dict]:
        """site -> {"target": proxy_pass URL, "secure": served over TLS}, from Herd's nginx
        files (the fake writes them where Herd does)."""
        nginx = self.home / "Library" / "Application Support" / "Herd" / "config" / "valet"
        found = {}
        for conf in sorted((nginx / "Nginx").glob("*")):
            text = conf.read_text()
            match = re.search(r"proxy_pass\s+(\S+);", text)
            if match:
                found[conf.name] = {"target": match.group(1), "secure": " ssl;" in text}
        return found

    def herd_calls(self) -> list[list[str]]:
        path = Path(self.env["FAKE_HERD_LOG"])
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def session_rows(self) -> list[dict]:
        db = self.clave_home / "clave.db"
        if not db.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute("SELECT * FROM sessions")]

    def clones(self) -> list[Path]:
        wt = self.project / ".clave" / "wt"
        return sorted(wt.iterdir()) if wt.is_dir() else []

    def leftovers(self) -> list[str]:
        """What a finished session must not leave: VMs, proxies, session rows."""
        found = [f"VM {name} in TART_HOME" for name in self.vms()]
        found += [f"Herd proxy {site}" for site in self.herd_proxies()]
        found += [f"session row {row['session_id']} ({row['status']})"
                  for row in self.session_rows()]
        return found


def _dotenv(example: Path, services) -> str:
    """The user's .env: the example with their database credentials and a comment."""
    text = example.read_text()
    for key, value in (("DB_DATABASE", services.database), ("DB_USERNAME", services.user),
                       ("DB_PASSWORD", services.password)):
        text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.MULTILINE)
    return f"{ENV_COMMENT}\n{text}"


def _environment(root: Path, project: Path, home: Path, xdg: Path, clave_home: Path,
                 tart_home: Path, test_dir: Path, services, mode: str,
                 latency: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLAVE_", "FAKE_TART_", "FAKE_HERD_", "GIT_"))
           and k not in AUTH_VARIABLES and k not in ("NO_COLOR", "TART_HOME", "PYTHONPATH")}
    owner = os.environ.get("CLAVE_FAKEVM_OWNER")
    env.update({
        "PATH": f"{FAKES}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "HOME": str(home), "XDG_CONFIG_HOME": str(xdg), "CLAVE_HOME": str(clave_home),
        "TERM": "xterm-256color", "LANG": "C.UTF-8",
        "TART_HOME": str(tart_home), "FAKE_TART_LOG": str(root / "tart-calls.jsonl"),
        "CLAVE_FAKEVM": "1", "FAKE_TART_VM_MODULE": "tests.e2e.session_world",
        TEST_DIR_ENV: str(test_dir),
        "FAKE_HERD_LOG": str(root / "herd-calls.jsonl"),
        "CLAUDE_CODE_OAUTH_TOKEN": TOKEN,
        "CLAVE_SERVICES_MODE": mode,
        "CLAVE_MYSQL_PORT": str(services.mysql_port),
        "CLAVE_REDIS_PORT": str(services.redis_port),
        "CLAVE_VM_CPUS": "2", "CLAVE_VM_MEMORY": "2048",
    })
    if owner:
        env["CLAVE_FAKEVM_OWNER"] = owner
    if latency:
        env["FAKE_TART_LATENCY"] = latency
    return env


def grant_default_acl(directory: Path, uid: int) -> None:
    """Whatever is created below `directory` is writable by uid (a POSIX default ACL).

    The xattr's layout is the kernel's (linux/posix_acl_xattr.h): version 2, then sorted
    (tag, permissions, id) entries; no setfacl needed.
    """
    undefined = 0xFFFFFFFF
    entries = [(0x01, 7, undefined), (0x02, 7, uid), (0x04, 5, undefined),
               (0x10, 7, undefined), (0x20, 5, undefined)]
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    os.setxattr(directory, "system.posix_acl_default", blob)


# -- clave on a pseudo-terminal -------------------------------------------------------------

class Session:
    """One `clave` process whose stdin, stdout and stderr are a pty's slave side."""

    def __init__(self, proc: subprocess.Popen, master: int):
        self.proc, self.master = proc, master
        self._raw = bytearray()
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def spawn(cls, argv: list[str], *, cwd: Path, env: dict[str, str]) -> Session:
        master, slave = os.openpty()
        rows, cols = SCREEN
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave,
                                    stderr=slave, start_new_session=True,
                                    preexec_fn=_take_terminal)
        finally:
            os.close(slave)
        return cls(proc, master)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def text(self) -> str:
        """Everything clave wrote so far, escape sequences removed."""
        with self._changed:
            raw = bytes(self._raw)
        return _ANSI.sub("", raw.decode("utf-8", "replace")).replace("\r", "")

    def expect(self, pattern: str, timeout: float = 90) -> re.Match:
        """Wait until the output matches pattern (a regex); fail with the output if not."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                match = regex.search(self.text)
                if match:
                    return match
                if time.monotonic() >= deadline or (self.proc.poll() is not None
                                                     and not self._reader.is_alive()):
                    raise AssertionError(f"clave never printed {pattern!r}; it printed:\n"
                                         f"{self.text}")
                self._changed.wait(0.1)

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def ctrl_c(self) -> None:
        """A real Ctrl-C: the terminal turns it into SIGINT for clave's process group."""
        self.send("\x03")

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def wait(self, timeout: float = 120) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"clave did not exit within {timeout} s; it printed:\n"
                                 f"{self.text}") from None
        self._reader.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)          # clave tears its session down on SIGTERM
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        self._closing.set()
        self._reader.join(5)
        self._close_master()

    def _close_master(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def hang_up(self) -> None:
        """Close the terminal (its window), as a user closing it: clave gets SIGHUP."""
        self._closing.set()
        self._reader.join(5)      # a read in progress would keep the pty open
        self._close_master()

    def _read(self) -> None:
        while not self._closing.is_set():
            try:
                if not select.select([self.master], [], [], 0.1)[0]:
                    continue
                chunk = os.read(self.master, 65536)
            except OSError:          # EIO: every slave fd is closed (clave and its children)
                chunk = b""
            with self._changed:
                if chunk:
                    self._raw += chunk
                self._changed.notify_all()
            # like any terminal, answer cursor position reports: blessed ends each of its
            # capability probes with one and would otherwise wait 5 s for each
            for _ in range(chunk.count(CURSOR_REPORT_QUERY)):
                with contextlib.suppress(OSError):
                    os.write(self.master, CURSOR_REPORT)
            if not chunk:
                return


def _take_terminal() -> None:
    """In the child, after setsid: the pty becomes its controlling terminal (Ctrl-C works)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def wait_for(predicate, timeout: float, what: str, sessions: list[Session] = (),
             explain=lambda: "") -> None:
    """Poll predicate; fail naming `what`, with clave's output, if it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        exited = [s for s in sessions if s.proc.poll() is not None]
        if time.monotonic() >= deadline or exited:
            output = "\n---\n".join(s.text for s in sessions)
            state = "clave exited" if exited else f"timed out after {timeout} s"
            raise AssertionError(f"waiting for {what}: {state}; {explain()}\n"
                                 f"clave printed:\n{output}")
        time.sleep(0.05)


def secret_in_argv(secret: str) -> list[str]:
    """Every process on this host (the VMs' too: their PID namespaces nest in ours) whose
    command line holds secret."""
    found = []
    needle = secret.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            if needle in cmdline:
                shown = cmdline.replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {shown}")
    return found
