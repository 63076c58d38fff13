"""Linux test VMs: Linux namespaces that look like a booted Tart guest, inside and out.

Tart needs macOS, so on Linux each "VM" is a network namespace (eth0 on a bridge whose host
address plays Tart's NAT gateway) plus private mount, PID and UTS namespaces whose PID 1
(vm_init.sh) runs a real sshd, nginx and php-fpm. The guest follows Tart's share rules: the
virtio-fs shares are not mounted until `sudo mount -t virtiofs TAG DIR` runs inside.
See /work/shared/reference/linux-test-vms.md for the technique and its measurements.

Everything a VM owns is recorded, before it is created, in STATE_DIR/vm.json and in the
host-wide slot registry (network.py), so `FakeVm.from_state(dir).destroy()` works from any
process and `python -m tests.harness.fakevm reap` clears what a crashed run left behind.
Needs root; `unavailable_reason()` says what is missing.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

from tests.harness import procs
from tests.harness.network import NETNS_DIR, Network, write_json
from tests.harness.procs import HarnessError

VM_INIT = Path(__file__).with_name("vm_init.sh")
STATE_FILE = "vm.json"
OWNER_ENV = "CLAVE_FAKEVM_OWNER"  # tags VMs with the test run that made them (leak checks)
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_ADMIN_UID = 1000  # the cirruslabs images' admin; used when the project is root-owned
# the VM hides these host trees (tmpfs) or overlays them: state and shares cannot live there
HIDDEN_FOR_SHARES = ("/run",)
HIDDEN_FOR_STATE = ("/run", "/etc", "/var", "/usr")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

TOOLS = {  # program -> Debian package
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "setpriv": "util-linux",
    "mountpoint": "util-linux",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "nginx": "nginx-light",
    "php-fpm8.2": "php8.2-fpm",
    "sudo": "sudo",
    "useradd": "passwd",
}


@cache
def unavailable_reason() -> str | None:
    """Why test VMs cannot run here (None when they can): root and Debian packages needed."""
    if sys.platform != "linux":
        return "Linux test VMs need Linux network, mount and PID namespaces."
    if os.geteuid() != 0:
        return (
            "Linux test VMs need root (they create network, mount and PID namespaces): "
            "run the tests as root, as .ci/run does."
        )
    missing = sorted(
        {pkg for tool, pkg in TOOLS.items() if not shutil.which(tool, path=GUEST_PATH)}
    )
    if missing:
        return (
            f"Linux test VMs need the Debian packages {', '.join(missing)}: "
            f"apt-get install {' '.join(missing)} (or run .ci/run)."
        )
    if "overlay" not in Path("/proc/filesystems").read_text():
        procs.run(["modprobe", "overlay"], check=False)
        if "overlay" not in Path("/proc/filesystems").read_text():
            return "Linux test VMs need overlayfs: load it with `modprobe overlay`."
    return None


class FakeVm:
    """One running (or stopped) test VM; its record is the JSON in STATE_DIR/vm.json."""

    def __init__(self, record: dict, process: subprocess.Popen | None = None):
        self.record = record
        self._process = process  # set only in the process that booted the VM (it reaps it)

    name = property(lambda self: self.record["name"])
    ip = property(lambda self: self.record["ip"])
    gateway = property(lambda self: self.record["gateway"])
    index = property(lambda self: self.record["index"])
    netns = property(lambda self: self.record["netns"])
    veth = property(lambda self: self.record["veth"])
    state_dir = property(lambda self: Path(self.record["state_dir"]))
    shares = property(lambda self: dict(self.record["shares"]))  # tag -> path | {name: path}
    init_pid = property(lambda self: self.record.get("init_pid"))

    def __repr__(self) -> str:
        return f"FakeVm({self.name!r}, ip={self.ip}, index={self.index})"

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def boot(
        cls,
        name: str,
        shares: dict[str, str | dict[str, str]],
        state_dir: Path,
        *,
        die_with_parent: bool = False,
    ) -> FakeVm:
        """Create and start a VM; returns once it has its IP (sshd may still be starting,
        as with real DHCP). shares: virtio-fs tag -> host directory (Tart's single share:
        the mount shows that directory) or tag -> {name: host directory} (Tart's multiple
        share: the mount shows NAME/ subdirectories). die_with_parent: the VM powers off
        when the calling thread dies (like a SIGKILLed `tart run`)."""
        reason = unavailable_reason()
        if reason:
            raise HarnessError(reason)
        state_dir = Path(state_dir).resolve()
        shares = _checked(name, shares, state_dir)
        net = Network.from_env()
        state_dir.mkdir(parents=True, exist_ok=True)
        if (state_dir / STATE_FILE).exists():
            raise HarnessError(f"{state_dir} already holds a VM: destroy it or use another dir.")
        record = {
            "name": name,
            "state_dir": str(state_dir),
            "shares": shares,
            "owner": os.environ.get(OWNER_ENV, ""),
            "gateway": net.gateway,
        }
        index = net.claim(record)  # intent first: the slot names everything we create next
        record.update(index=index, ip=net.ip(index), netns=net.netns(index), veth=net.veth(index))
        vm = cls(record)
        vm._save(net)
        try:
            net.attach(index)
            vm._start(die_with_parent)
        except BaseException:
            vm.destroy()
            raise
        return vm

    @classmethod
    def from_state(cls, state_dir: Path) -> FakeVm:
        """Reattach to a VM booted by another process (to wait for it or destroy it)."""
        path = Path(state_dir) / STATE_FILE
        try:
            return cls(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            raise HarnessError(f"no test VM recorded in {state_dir} ({err}).") from err

    def _start(self, die_with_parent: bool) -> None:
        # name "." (the tag's root) for an unnamed share: bash's read collapses empty fields
        rows = _flat(self.shares)
        lines = "".join(f"{tag}\t{name or '.'}\t{path}\n" for tag, name, path in rows)
        (self.state_dir / "shares.tsv").write_text(lines)
        argv = [
            "ip", "netns", "exec", self.netns,  # exec, no fork: Popen's pid is unshare's
            "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child=SIGTERM",
            "--mount-proc", "--propagation", "private",
            "/bin/bash", str(VM_INIT), str(self.state_dir), self.name, self.ip,
            str(_admin_uid(self.shares)),
        ]  # fmt: skip
        env = {"PATH": GUEST_PATH, "LANG": "C.UTF-8", "HOME": "/root", "TERM": "linux"}
        env[OWNER_ENV] = self.record["owner"]
        with open(self.state_dir / "console.log", "ab") as console:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C in the caller's terminal is not a power cut
                preexec_fn=_die_with_parent if die_with_parent else None,
            )
        pid = self._process.pid
        self.record.update(unshare_pid=pid, unshare_start=procs.start_time(pid))
        self._save()
        init = self._find_init(pid)
        self.record.update(init_pid=init, init_start=procs.start_time(init))
        self._save()

    def _find_init(self, unshare_pid: int) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = procs.children(unshare_pid)
            if kids:
                return kids[0]
            if self._process is not None and self._process.poll() is not None:
                break
            time.sleep(0.005)
        raise HarnessError(f"VM {self.name} did not start its PID 1.\n{self.console_tail()}")

    def running(self) -> bool:
        return procs.alive(self.init_pid, self.record.get("init_start"))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the guest has shut down (its PID 1 exited); False on timeout."""
        if self._process is not None:
            try:
                self._process.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        pid, started = self.record.get("unshare_pid"), self.record.get("unshare_start")
        return procs.wait_gone([(pid, started)], math.inf if timeout is None else timeout)

    def wait_port(self, port: int, timeout: float = 10) -> None:
        """Until the VM accepts TCP connections on port (e.g. 22 once sshd listens)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.ip, port), timeout=0.5):
                    return
            except OSError:
                pass
            if not self.running():
                raise HarnessError(f"VM {self.name} stopped while booting.\n{self.console_tail()}")
            if time.monotonic() >= deadline:
                raise HarnessError(
                    f"VM {self.name} ({self.ip}) did not accept connections on port {port} "
                    f"within {timeout:g} s.\n{self.console_tail()}"
                )
            time.sleep(0.02)

    def wait_ssh(self, timeout: float = 10) -> None:
        self.wait_port(22, timeout)

    def shutdown(self, timeout: float = 10) -> bool:
        """Graceful guest shutdown (SIGTERM to PID 1, as `poweroff` does); True once down."""
        procs.signal_pid(self.init_pid, signal.SIGTERM, self.record.get("init_start"))
        return self.wait(timeout)

    def destroy(self) -> None:
        """Power off hard and remove every trace: processes, namespace, veth, state, slot.
        Idempotent, and safe from any process (it works from the recorded state)."""
        rec = self.record
        init = (rec.get("init_pid"), rec.get("init_start"))
        unshare = (rec.get("unshare_pid"), rec.get("unshare_start"))
        # SIGKILL of PID 1 makes the kernel kill the whole PID namespace
        for pid, started in (init, unshare):
            procs.signal_pid(pid, signal.SIGKILL, started)
        if self._process is not None:
            self._process.wait(10)
        procs.wait_gone([init, unshare], 10)
        if (NETNS_DIR / self.netns).exists():
            # whatever still holds the namespace, e.g. an `exec` that entered it
            held = procs.run(["ip", "netns", "pids", self.netns], check=False).stdout.split()
            procs.kill_all(int(p) for p in held)
            procs.wait_gone([(int(p), None) for p in held], 5)
            procs.run(["ip", "netns", "del", self.netns])
        # the kernel destroys a namespace (and the veth peer in it) asynchronously
        deadline = time.monotonic() + 3
        while Path(f"/sys/class/net/{self.veth}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        procs.run(["ip", "link", "del", self.veth], check=False)
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        Network.from_env().release(self.index, self.state_dir)

    # ---------------------------------------------------------------- inside the guest
    def exec(
        self,
        argv: list[str],
        user: str = "root",
        *,
        input: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess:
        """Run argv inside the VM (all its namespaces) as user, for test assertions."""
        if not self.running():
            raise HarnessError(f"VM {self.name} is not running.")
        cmd = ["nsenter", "-t", str(self.init_pid), "-n", "-m", "-p", "-u", "--"]
        if user != "root":  # setpriv execs (runuser would linger, and sleep 2 s on SIGTERM)
            cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        home = "/root" if user == "root" else f"/home/{user}"
        env = {"PATH": GUEST_PATH, "LANG": "C.UTF-8", "HOME": home, "USER": user, "LOGNAME": user}
        return subprocess.run(
            cmd + list(argv),
            capture_output=True,
            text=True,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            timeout=timeout,
            env=env,
        )

    def mount_share(self, tag: str = "project", target: str = "/srv/project") -> None:
        """What clave's BootVm does over SSH: `sudo mount -t virtiofs TAG TARGET` as admin."""
        done = self.exec(["sudo", "mount", "-t", "virtiofs", tag, target], user="admin")
        if done.returncode != 0:
            raise HarnessError(f"mounting {tag!r} in {self.name} failed: {done.stderr.strip()}")

    def console_tail(self, lines: int = 30) -> str:
        try:
            text = (self.state_dir / "console.log").read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "--- console.log (tail)\n" + "\n".join(text.splitlines()[-lines:])

    def _save(self, net: Network | None = None) -> None:
        write_json(self.state_dir / STATE_FILE, self.record)
        net = net or Network.from_env()
        if net.slot(self.index) is not None:  # the registry holds the same record, for reap
            write_json(net.slots_dir / f"{self.index}.json", self.record)


def _checked(name: str, shares: dict, state_dir: Path) -> dict:
    """Refuse what the VM could not honour, before anything is created."""
    if not NAME_RE.fullmatch(name):
        raise HarnessError(f"VM name {name!r} is not a host name: use letters, digits, . _ -")
    if _under(state_dir, HIDDEN_FOR_STATE):
        raise HarnessError(
            f"VM state directory {state_dir} is inside {', '.join(HIDDEN_FOR_STATE)}, which the "
            "VM hides or overlays: use a directory elsewhere (e.g. under /tmp)."
        )
    resolved: dict = {}
    for tag, name_, path in _flat(shares):
        for word, what in ((tag, "virtio-fs tag"), (name_ or "x", "share name")):
            if word in (".", "..") or any(c.isspace() or c == "/" for c in word):
                raise HarnessError(f"{what} {word!r} cannot hold whitespace or '/'.")
        real = Path(path).expanduser().resolve()
        if not real.is_dir():
            raise HarnessError(f"shared directory {path} (tag {tag}) does not exist.")
        if _under(real, HIDDEN_FOR_SHARES) or "\n" in str(real) or "\t" in str(real):
            raise HarnessError(
                f"shared directory {real} cannot be shared: it is under /run "
                "or its name holds a tab or newline."
            )
        if name_:
            resolved.setdefault(tag, {})[name_] = str(real)
        else:
            resolved[tag] = str(real)
    return resolved


def _flat(shares: dict) -> list[tuple[str, str, str]]:
    """(tag, name, path) rows; name is '' for a tag's single unnamed share."""
    rows = []
    for tag, value in shares.items():
        named = value.items() if isinstance(value, dict) else [("", value)]
        rows += [(tag, name, path) for name, path in named]
    return rows


def _under(path: Path, roots: tuple[str, ...]) -> bool:
    return any(path == Path(r) or Path(r) in path.parents for r in roots)


def _admin_uid(shares: dict) -> int:
    """admin owns the code like on a Mac: it gets the uid of the first share's owner."""
    if override := os.environ.get("CLAVE_FAKEVM_ADMIN_UID"):
        return int(override)
    for _tag, _name, path in _flat(shares):
        uid = os.stat(path).st_uid
        return uid if uid != 0 else DEFAULT_ADMIN_UID
    return DEFAULT_ADMIN_UID


def _die_with_parent() -> None:  # runs in the child between fork and exec
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def reap(owner: str | None = None) -> list[str]:
    """Destroy every registered VM (of one owner, or all); returns their names."""
    net = Network.from_env()
    gone = []
    for record in net.slots().values():
        if owner is None or record.get("owner") == owner:
            FakeVm(record).destroy()
            gone.append(record["name"])
    return gone


def main(argv: list[str]) -> int:
    """`python -m tests.harness.fakevm boot NAME STATE_DIR [TAG=PATH ...] | destroy STATE_DIR
    | list | reap [OWNER]` -- manual use and cleanup after a crashed test run."""
    if argv[:1] == ["boot"] and len(argv) >= 3:
        shares: dict = dict(item.split("=", 1) for item in argv[3:])
        vm = FakeVm.boot(argv[1], shares, Path(argv[2]))
        vm.wait_ssh(60)
        print(json.dumps({"name": vm.name, "ip": vm.ip, "index": vm.index}))
        return 0
    if argv[:1] == ["destroy"] and len(argv) == 2:
        FakeVm.from_state(Path(argv[1])).destroy()
        return 0
    if argv[:1] == ["list"]:
        for index, record in sorted(Network.from_env().slots().items()):
            print(index, record.get("ip"), record["name"], record["state_dir"], record.get("owner"))
        return 0
    if argv[:1] == ["reap"] and len(argv) <= 2:
        print("\n".join(reap(argv[1] if len(argv) == 2 else None)))
        return 0
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
