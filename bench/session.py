"""A whole `clave` session, end to end, in Linux test VMs: where does the time go?

Each run is a fresh world (tests/e2e/session_world.py): a project, the fake tart and herd,
a stand-in claude that exits at once, `clave --on-exit keep` on a pseudo-terminal. Figures:
- total: from starting `clave` to its exit, teardown included;
- boot: the VM's boot as the fake tart reports it (`tart run` taking the VM until it
  publishes the address: the VM directory's .fake-run.json and .fake-ip);
- bootstrap: the bootstrap commands' own time (bootstrap.log, each command's seconds);
- overhead: total - boot - bootstrap, i.e. clave itself and the programs it calls;
- phases: start-up (interpreter, imports, first paint), preflight, the session graph,
  Claude and teardown, from when clave's output shows each.
Then the same with the fake tart's simulated latencies (clone 1 s, boot 8 s, ip 2 s), and how
close the total comes to the critical path: clone + boot + (ip beyond the boot) + SSH +
bootstrap, the part no implementation can overlap. Medians of --runs runs. Targets: overhead
under 1 s; total within 10% of the critical path. A benchmark prints figures; it asserts
nothing.

    sudo python bench/session.py [--runs N]      (root: the test VMs are Linux namespaces)
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LATENCY = {"clone": 1.0, "run": 8.0, "ip": 2.0}
TARGET_OVERHEAD = 1.0
TARGET_SLACK = 0.10
MARKS = {   # phase boundary -> what clave prints when it is reached
    "painted": r"Setting up project",
    "preflight": r"Starting session",
    "ready": r"Session [a-z0-9]{8}: ",
    "kept": r"kept the clone",
}
_BOOTSTRAP_LINE = re.compile(r"^\(exit -?\d+, ([0-9.]+) s\)$", re.MULTILINE)
_BOOTSTRAP_COMMAND = re.compile(r"^\$ (.+)$(?:.|\n)*?^\(exit -?\d+, ([0-9.]+) s\)$", re.MULTILINE)
_STEP_LINE = re.compile(r"✓ (.+?) \(([0-9.]+) s\)")


class Watcher(threading.Thread):
    """Samples what a session keeps only while it runs: the VM's run files, bootstrap.log."""

    def __init__(self, world):
        super().__init__(daemon=True)
        self.world, self.stop = world, threading.Event()
        self.run_started = self.ip_published = None
        self.bootstrap_log = ""

    def run(self) -> None:
        while not self.stop.is_set():
            for vm in (self.world.tart_home / "vms").glob("clave-*"):
                if vm.name == "clave-base":
                    continue
                self.run_started = self.run_started or _mtime(vm / ".fake-run.json")
                self.ip_published = self.ip_published or _mtime(vm / ".fake-ip")
            for log in self.world.clave_home.glob("sessions/*/bootstrap.log"):
                try:
                    text = log.read_text()
                except OSError:
                    continue
                if len(text) >= len(self.bootstrap_log):
                    self.bootstrap_log = text
            time.sleep(0.005)

    @property
    def boot(self) -> float | None:
        if self.run_started is None or self.ip_published is None:
            return None
        return self.ip_published - self.run_started

    @property
    def bootstrap(self) -> float:
        return sum(float(s) for s in _BOOTSTRAP_LINE.findall(self.bootstrap_log))

    @property
    def bootstrap_commands(self) -> dict[str, float]:
        return {hint: float(s) for hint, s in _BOOTSTRAP_COMMAND.findall(self.bootstrap_log)}


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def one_session(root: Path, services, latency: str | None) -> dict:
    from tests.e2e.session_world import World

    world = World.create(root, services, latency=latency)
    before = len(world.tart_calls())       # the world's own `tart create`
    watcher = Watcher(world)
    watcher.start()
    marks: dict[str, float] = {}
    wall_started = time.time()
    started = time.monotonic()
    session = world.start("--on-exit", "keep")

    def note_marks() -> None:
        for name, pattern in MARKS.items():
            try:
                session.expect(pattern, timeout=300)
            except AssertionError:
                return
            marks[name] = time.monotonic() - started

    marker = threading.Thread(target=note_marks, daemon=True)
    marker.start()
    ended: list[float] = []     # Popen.wait(timeout) polls up to 50 ms apart: block instead

    def reap() -> None:
        session.proc.wait()
        ended.append(time.monotonic())

    reaper = threading.Thread(target=reap, daemon=True)
    reaper.start()
    code = session.wait(300)
    reaper.join(5)
    total = (ended[0] if ended else time.monotonic()) - started
    marker.join(5)
    watcher.stop.set()
    watcher.join()
    world.close()
    if code != 0:
        raise SystemExit(f"the session failed (exit {code}):\n{session.text}")
    calls = [c["argv"][0] for c in world.tart_calls()[before:]]
    clone = _time_clone(world)
    steps = {label: float(s) for label, s in _STEP_LINE.findall(session.text)}
    return {
        "total": total, "boot": watcher.boot, "bootstrap": watcher.bootstrap,
        "run_after_start": (watcher.run_started - wall_started) if watcher.run_started else None,
        "marks": marks, "steps": steps, "tart_calls": calls, "clone": clone,
        "bootstrap_commands": watcher.bootstrap_commands,
    }


def _time_clone(world) -> float:
    """`tart clone` of the base as this world's fake tart does it (its latency included)."""
    started = time.monotonic()
    world.tart("clone", "clave-base", "clave-bench-clone")
    seconds = time.monotonic() - started
    world.tart("delete", "clave-bench-clone")
    return seconds


def summarise(label: str, runs: list[dict], latency: str | None, ssh: float) -> None:
    def median(values) -> float:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else float("nan")

    total = median(r["total"] for r in runs)
    boot = median(r["boot"] for r in runs)
    bootstrap = median(r["bootstrap"] for r in runs)
    # with simulated latencies, the clone's is the tool's time too, not clave's
    overhead = median(r["total"] - (r["boot"] or 0) - r["bootstrap"]
                      - (r["clone"] if latency else 0.0) for r in runs)
    print(f"\n== {label}: median of {len(runs)} run(s)")
    print(f"  total                 {total:6.2f} s   (runs: "
          + ", ".join(f"{r['total']:.2f}" for r in runs) + ")")
    print(f"  VM boot (fake tart)   {boot:6.2f} s")
    print(f"  bootstrap commands    {bootstrap:6.2f} s   ("
          + ", ".join(f"{hint} {median(r['bootstrap_commands'].get(hint) for r in runs):.2f}"
                      for hint in runs[0]["bootstrap_commands"]) + ")")
    verdict = "meets" if overhead < TARGET_OVERHEAD else "misses"
    what = "total - boot - bootstrap" + (" - clone" if latency else "")
    print(f"  clave's overhead      {overhead:6.2f} s   = {what} "
          f"({verdict} the {TARGET_OVERHEAD:g} s target)")

    phases = [("start-up to first paint", None, "painted"),
              ("preflight", "painted", "preflight"),
              ("session graph", "preflight", "ready"),
              ("Claude + teardown", "ready", None)]
    print("  phases (from clave's output):")
    for name, start, end in phases:
        value = median((r["marks"].get(end, r["total"]) if end else r["total"])
                       - (r["marks"].get(start, 0.0) if start else 0.0) for r in runs)
        print(f"    {name:<24}{value:6.2f} s")
    print("  steps (clave's own timings, 0.1 s resolution):")
    labels = list(runs[0]["steps"])
    for name in labels:
        print(f"    {name:<38}{median(r['steps'].get(name) for r in runs):5.1f} s")
    counts = {}
    for call in runs[0]["tart_calls"]:
        counts[call] = counts.get(call, 0) + 1
    print(f"  tart invocations by clave: {sum(counts.values())} ("
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")")

    if latency:
        clone = median(r["clone"] for r in runs)
        ip_beyond = max(0.0, LATENCY["ip"] - boot)
        critical = clone + boot + ip_beyond + ssh + bootstrap
        ready = median(r["marks"].get("ready") for r in runs)
        print(f"  critical path         {critical:6.2f} s   = clone {clone:.2f} + boot {boot:.2f}"
              f" + ip beyond boot {ip_beyond:.2f} + SSH {ssh:.2f} + bootstrap {bootstrap:.2f}")
        for name, value in (("Claude starts after", ready), ("total (with teardown)", total)):
            gap = (value - critical) / critical
            verdict = "within" if gap <= TARGET_SLACK else "outside"
            print(f"  {name:<22}{value:6.2f} s   {gap:+.1%} of the critical path "
                  f"({verdict} the {TARGET_SLACK:.0%} target)")


def measure_ssh_floor() -> float:
    """Seconds for paramiko to log in to a booted test VM and run one command (median of 5)."""
    import paramiko

    from tests.harness.fakevm import FakeVm

    with tempfile.TemporaryDirectory(prefix="clave-bench-ssh-", dir="/tmp") as tmp:
        share = Path(tmp) / "project"
        share.mkdir()
        vm = FakeVm.boot("clave-bench-ssh", {"project": str(share)}, Path(tmp) / "state")
        try:
            vm.wait_ssh(60)
            timings = []
            for _ in range(5):
                started = time.monotonic()
                sock = socket.create_connection((vm.ip, 22), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # no Nagle waits
                client = paramiko.SSHClient()
                client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
                client.connect(vm.ip, username="admin", password="admin", timeout=10,
                               allow_agent=False, look_for_keys=False, sock=sock)
                _, out, _ = client.exec_command("true")
                out.channel.recv_exit_status()
                client.close()
                timings.append(time.monotonic() - started)
            return statistics.median(timings)
        finally:
            vm.destroy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration (default 3)")
    runs = parser.parse_args().runs

    from tests.harness import fakevm, hostsvc, leaks
    from tests.harness.hostsvc import HostServices
    from tests.harness.network import Network

    reason = fakevm.unavailable_reason() or hostsvc.unavailable_reason()
    if reason:
        print(f"bench/session.py cannot run here: {reason}", file=sys.stderr)
        return 1
    # as installed: bytecode compiled (pip does so), for clave and for the fake tart and herd
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    for package in ("clave", "tests"):
        compileall.compile_dir(ROOT / package, quiet=1)
    owner = f"bench-session-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    os.environ[fakevm.OWNER_ENV] = owner
    net = Network.from_env()
    net.ensure_bridge()
    services = HostServices.start(net.root / "hostsvc" / owner, [net.gateway, "127.0.0.1"])
    scratch = Path(tempfile.mkdtemp(prefix="clave-bench-session-", dir="/tmp"))
    try:
        ssh = measure_ssh_floor()
        one_session(scratch / "warm-up", services, None)   # disk caches, compiled bytecode
        plain = [one_session(scratch / f"plain-{n}", services, None) for n in range(runs)]
        spec = ",".join(f"{k}={v:g}" for k, v in LATENCY.items())
        slow = [one_session(scratch / f"slow-{n}", services, spec) for n in range(runs)]
    finally:
        services.stop()
        net.remove_bridge()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"SSH login + one command to a booted VM (paramiko, outside clave): {ssh:.2f} s")
    summarise("fake tart without latency", plain, None, ssh)
    summarise(f"fake tart with FAKE_TART_LATENCY={spec}", slow, spec, ssh)
    left = leaks.check(owner)
    if left:
        print("\nleft behind:\n  " + "\n  ".join(left))
    return 0


if __name__ == "__main__":
    sys.exit(main())
