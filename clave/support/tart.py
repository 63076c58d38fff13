"""TartManager: every call clave makes to Cirrus Labs' `tart`, as typed methods.

Facts this module relies on (../shared/reference/tart.md): `tart clone` silently replaces an
existing VM; `tart run` blocks for the VM's life and dies with its terminal unless it has a
session of its own; `tart stop` exits 2 for a VM that is not running; `tart delete` exits 1
while the lock of a just-killed `tart run` lingers; `tart list`/`tart get` JSON keys are
capitalised; `tart ip` answers before sshd listens.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from clave.errors import ClaveError, CommandFailed, ToolMissing
from clave.support.command import Result, run

TART = "tart"
TART_FIX = "install Tart with `brew install cirruslabs/cli/tart`."
EXIT_MISSING_OR_NOT_RUNNING = 2
EXIT_FAILURE = 1
NOT_RUNNING = "is not running"
STILL_RUNNING = "is running"
STOP_TIMEOUT_DEFAULT = 30  # tart's own --timeout default
COMMAND_MARGIN = 30.0  # seconds a tart command may take beyond its own wait
IP_POLL_INTERVAL = 0.02   # how often clave looks at its `tart ip` pollers
USAGE_ERROR_PREFIX = "Error: "


@dataclass(frozen=True)
class Vm:
    """One row of `tart list --format json`."""

    name: str
    source: str
    disk: int
    size: int
    accessed: str
    running: bool
    state: str


@dataclass(frozen=True)
class VmInfo:
    """`tart get NAME --format json`: memory in MB, disk in GB (10^9 bytes)."""

    os: str
    cpu: int
    memory: int
    disk: int
    display: str
    running: bool
    state: str


class SshProbe(Protocol):
    """What wait_for_ready needs from an SSH client."""

    def set_host(self, host: str) -> None: ...

    def test(self) -> bool: ...

    def last_error(self) -> str | None: ...


class TartManager:
    """Cheap to build; a missing `tart` surfaces as ToolMissing at the first call."""

    delete_retry_interval = 0.2
    delete_retry_limit = 5.0
    ssh_backoff_start = 0.25
    ssh_backoff_max = 2.0

    def __init__(self, binary: str = TART, environ: Mapping[str, str] | None = None):
        self.binary = binary
        self.environ = dict(environ) if environ is not None else None

    # --- lifecycle ---------------------------------------------------------------------------

    def clone(self, source: str, name: str) -> None:
        """Clone SOURCE (local or remote) to NAME; refuses an existing NAME (tart replaces it).

        NAME's directory is looked for on disk (tart.md §1.2): a `tart get` would cost a
        process, and a directory tart itself calls incomplete is still not ours to replace.
        """
        if self.vm_dir(name).exists():
            raise ClaveError(
                f"A Tart VM named {name!r} already exists; delete it with `tart delete {name}`"
                " or choose another name."
            )
        self._tart("clone", source, name)

    def set(
        self,
        name: str,
        *,
        cpus: int | None = None,
        memory: int | None = None,
        disk_size: int | None = None,
        random_mac: bool = False,
    ) -> None:
        """Resources for the next boot: memory in MB, disk in GB (grown only, never shrunk)."""
        flags: list[str] = []
        if cpus is not None:
            flags += ["--cpu", str(cpus)]
        if memory is not None:
            flags += ["--memory", str(memory)]
        if random_mac:
            flags.append("--random-mac")
        if disk_size is not None and disk_size > self.get(name).disk:
            flags += ["--disk-size", str(disk_size)]
        if flags:
            self._tart("set", name, *flags)

    def randomize_mac(self, name: str) -> None:
        """A fresh MAC, so `tart ip` never returns another clone's DHCP lease."""
        self._tart("set", name, "--random-mac")

    def run_background(
        self, name: str, shares: Mapping[str, Path], log_path: Path
    ) -> subprocess.Popen:
        """Boot NAME headless with one virtio-fs share per tag; returns the `tart run` process.

        Its own session keeps a Ctrl-C or a closed terminal away from the VM; its output goes
        to log_path. The caller records `proc.pid` at once.
        """
        argv = [self.binary, "run", name, "--no-graphics"]
        for tag, path in shares.items():
            argv += ["--dir", share_argument(tag, path)]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            try:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=self.environ,
                )
            except FileNotFoundError as err:
                raise ToolMissing(TART, TART_FIX) from err

    def ip(self, name: str, wait: int = 0, *, pollers: int = 1,
           check: Callable[[], None] | None = None) -> str:
        """The VM's IPv4 address, waiting up to `wait` seconds for its DHCP lease.

        tart reads the leases once a second, so a lease taken just after a read waits a
        second. `pollers` > 1 runs that many `tart ip --wait` 1/pollers s apart: the first
        answer wins and the others are stopped. `check` is called while waiting and may
        raise (the VM's `tart run` died, say) to stop the wait.
        """
        argv = (self.binary, "ip", name, "--wait", str(wait))
        check = check or (lambda: None)
        began, procs = time.monotonic(), []
        try:
            while True:
                if len(procs) < max(pollers, 1) and \
                        time.monotonic() >= began + len(procs) / pollers:
                    procs.append(self._spawn(argv))
                for proc in procs:
                    if proc.poll() is not None:
                        out, err = proc.communicate()
                        check()   # a dead `tart run` explains a failed or foreign answer
                        result = Result(argv, proc.returncode, out, err)
                        if not result.ok:
                            raise _failed(result)
                        return out.strip()
                check()
                if time.monotonic() > began + wait + COMMAND_MARGIN:
                    raise CommandFailed(Result(argv, -1, "", ""),
                                        f"timed out after {wait + COMMAND_MARGIN:g} s")
                time.sleep(IP_POLL_INTERVAL)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def _spawn(self, argv: tuple[str, ...]) -> subprocess.Popen:
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=self.environ)
        except FileNotFoundError as err:
            raise ToolMissing(TART, TART_FIX) from err

    def stop(self, name: str, timeout: int | None = None) -> None:
        """Hard power-off (SIGINT, then SIGKILL after `timeout` s); stopped or gone is fine."""
        flags = ["--timeout", str(timeout)] if timeout is not None else []
        limit = (timeout if timeout is not None else STOP_TIMEOUT_DEFAULT) + COMMAND_MARGIN
        result = self._tart("stop", name, *flags, check=False, timeout=limit)
        if result.ok or result.exited == EXIT_MISSING_OR_NOT_RUNNING:
            return
        raise _failed(result)

    def delete(self, name: str) -> None:
        """Delete NAME; retries while a just-stopped VM still holds its lock; gone is fine."""
        deadline = time.monotonic() + self.delete_retry_limit
        while True:
            result = self._tart("delete", name, check=False)
            if result.ok or result.exited == EXIT_MISSING_OR_NOT_RUNNING:
                return
            if not _says(result, EXIT_FAILURE, STILL_RUNNING) or time.monotonic() >= deadline:
                raise _failed(result)
            time.sleep(self.delete_retry_interval)

    def destroy(self, name: str) -> None:
        """Delete NAME, stopping it first only if it still runs (one call when stopped)."""
        result = self._tart("delete", name, check=False)
        if result.ok or result.exited == EXIT_MISSING_OR_NOT_RUNNING:
            return
        if not _says(result, EXIT_FAILURE, STILL_RUNNING):
            raise _failed(result)
        self.stop(name)
        self.delete(name)

    def rename(self, old: str, new: str) -> None:
        """Rename a stopped local VM (tart refuses a missing OLD or an existing NEW)."""
        self._tart("rename", old, new)

    def push(self, name: str, remote: str) -> Result:
        """Upload a local VM to an OCI registry as `remote` (host/namespace:tag).

        No time limit: a 20 GB disk takes a while. Credentials are tart's own
        (`tart login`, or TART_REGISTRY_USERNAME / TART_REGISTRY_PASSWORD).
        """
        return self._tart("push", name, remote)

    # --- questions ---------------------------------------------------------------------------

    def vm_dir(self, name: str) -> Path:
        """Where tart keeps local VM NAME: $TART_HOME/vms/NAME (default ~/.tart)."""
        env = self.environ if self.environ is not None else os.environ
        home = env.get("TART_HOME") or os.path.join(env.get("HOME") or Path.home(), ".tart")
        return Path(home).expanduser() / "vms" / name

    def exists(self, name: str) -> bool:
        result = self._tart("get", name, "--format", "json", check=False)
        if result.exited == EXIT_MISSING_OR_NOT_RUNNING:
            return False
        if not result.ok:
            raise _failed(result)
        return True

    def is_running(self, name: str) -> bool:
        """False for a missing VM as well as a stopped one."""
        result = self._tart("get", name, "--format", "json", check=False)
        if result.exited == EXIT_MISSING_OR_NOT_RUNNING:
            return False
        if not result.ok:
            raise _failed(result)
        return _vm_info(result).running

    def get(self, name: str) -> VmInfo:
        return _vm_info(self._tart("get", name, "--format", "json"))

    def list(self) -> list[Vm]:
        """Local VMs only (OCI cache entries are skipped even if tart lists them)."""
        result = self._tart("list", "--source", "local", "--format", "json")
        rows = _json(result)
        try:
            return [
                Vm(
                    name=row["Name"],
                    source=row["Source"],
                    disk=int(row["Disk"]),
                    size=int(row["Size"]),
                    accessed=str(row["Accessed"]),
                    running=bool(row["Running"]),
                    state=row["State"],
                )
                for row in rows
                if row.get("Source") != "OCI"
            ]
        except (KeyError, TypeError, ValueError) as err:
            raise CommandFailed(result, f"unexpected `tart list` output ({err!r})") from err

    # --- readiness ---------------------------------------------------------------------------

    def wait_for_ready(self, name: str, ssh: SshProbe, timeout: float = 90) -> str:
        """Wait for an address, then for SSH to answer; returns the address.

        `tart ip` answers as soon as the guest has a DHCP lease, before sshd listens.
        """
        deadline = time.monotonic() + timeout
        address = self.ip(name, wait=max(1, int(timeout)))
        ssh.set_host(address)
        pause = self.ssh_backoff_start
        while True:
            if ssh.test():
                return address
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = ssh.last_error() or "no answer"
                raise ClaveError(
                    f"The VM {name!r} at {address} did not accept SSH within {timeout:g} s"
                    f" ({reason}). Its boot log is in the session's tart log."
                )
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, self.ssh_backoff_max)

    # --- plumbing ----------------------------------------------------------------------------

    def _tart(self, *args: str, check: bool = True, timeout: float | None = None) -> Result:
        try:
            result = run(
                [self.binary, *args],
                check=False,
                timeout=timeout,
                env=self.environ,
                missing_fix=TART_FIX,
            )
        except ToolMissing as err:
            raise ToolMissing(TART, TART_FIX) from err
        if check and not result.ok:
            raise _failed(result)
        return result


def share_argument(tag: str, path: Path) -> str:
    """`PATH:tag=TAG`: an unnamed share, so the guest mounts the folder itself at its root.

    tart splits `--dir` at ':' and ',' (tart.md §2.3), so such paths and tags cannot pass.
    """
    text = os.path.abspath(os.fspath(path))
    if ":" in text:
        raise ClaveError(
            f"The folder {text!r} cannot be shared with the VM: Tart's --dir option cannot"
            " parse paths that contain ':'. Rename or move the folder."
        )
    if not tag or any(c in tag for c in ":,"):
        raise ClaveError(f"The share tag {tag!r} is not usable with Tart: use letters and digits.")
    return f"{text}:tag={tag}"


def _failed(result: Result) -> CommandFailed:
    """CommandFailed with tart's own sentence: on a usage error (exit 64) the last line is
    only `See 'tart x --help'`, so take the `Error: ...` line instead."""
    for line in result.stderr.splitlines():
        if line.startswith(USAGE_ERROR_PREFIX):
            return CommandFailed(result, line.removeprefix(USAGE_ERROR_PREFIX).strip())
    return CommandFailed(result)


def _says(result: Result, code: int, phrase: str) -> bool:
    return result.exited == code and phrase in result.stderr


def _json(result: Result):
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as err:
        raise CommandFailed(result, f"`{TART} {result.argv[1]}` did not print JSON") from err


def _vm_info(result: Result) -> VmInfo:
    row = _json(result)
    try:
        return VmInfo(
            os=row["OS"],
            cpu=int(row["CPU"]),
            memory=int(row["Memory"]),
            disk=int(row["Disk"]),
            display=str(row["Display"]),
            running=bool(row["Running"]),
            state=row["State"],
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CommandFailed(result, f"unexpected `tart get` output ({err!r})") from err
