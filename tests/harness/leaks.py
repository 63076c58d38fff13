"""What test VMs and their tests left behind on the host, one sentence per leftover.

Looks for `clave-vm*` network namespaces, `clv*h` veths, registered VMs not destroyed (and
their state dirs), overlay mounts or mounts under the harness root on the host, processes in
another network namespace, ports those processes listen on, and processes (with their
listening ports) that a test run started and did not stop. The bridge and the session's
host services are not leaks.

Several test runs share a machine, so `check(owner)` leaves out what is attributable to
another run: VMs record the CLAVE_FAKEVM_OWNER of the process that booted them, and
processes inherit it in their environment. `check()` without an owner reports everything.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from pathlib import Path

from tests.harness import procs
from tests.harness.fakevm import OWNER_ENV
from tests.harness.network import NETNS_DIR, Network

NETNS_RE = re.compile(r"clave-vm(\d+)")
VETH_RE = re.compile(r"clv(\d+)h")
TCP_LISTEN = "0A"


def check(owner: str | None = None) -> list[str]:
    """Every leftover, as a sentence; [] when clean. owner: only this test run's."""
    net = Network.from_env()
    slots = net.slots()

    def theirs(index: int) -> bool:  # belongs to another test run
        record_owner = slots.get(index, {}).get("owner")
        return owner is not None and bool(record_owner) and record_owner != owner

    found = []
    if NETNS_DIR.is_dir():
        for name in sorted(os.listdir(NETNS_DIR)):
            if (m := NETNS_RE.fullmatch(name)) and not theirs(int(m[1])):
                found.append(f"network namespace {name} still exists")
    for name in sorted(os.listdir("/sys/class/net")):
        if (m := VETH_RE.fullmatch(name)) and not theirs(int(m[1])):
            found.append(f"veth {name} still exists")
    for index, record in sorted(slots.items()):
        if not theirs(index):
            found.append(
                f"test VM {record.get('name')} (slot {index}) was not destroyed; "
                f"state dir {record.get('state_dir')}"
            )
    found += _host_mounts(net, [Path(r["state_dir"]) for r in slots.values() if "state_dir" in r])
    found += _processes(owner, _netns_slots(), theirs)
    return found


def wait_clean(owner: str | None, baseline: set[str], timeout: float = 3.0) -> list[str]:
    """Leftovers not in baseline, polling briefly: killed processes take a moment to go."""
    deadline = time.monotonic() + timeout
    while True:
        new = [finding for finding in check(owner) if finding not in baseline]
        if not new or time.monotonic() >= deadline:
            return new
        time.sleep(0.1)


def _host_mounts(net: Network, state_dirs: list[Path]) -> list[str]:
    roots = [net.root, *state_dirs]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        target = Path(fields[4].encode().decode("unicode_escape"))
        fstype = fields[fields.index("-") + 1]
        if fstype == "overlay":
            found.append(f"overlay mount on the host at {target}")
        elif any(target == root or root in target.parents for root in roots):
            found.append(f"mount on the host at {target}")
    return found


def _netns_slots() -> dict[str, int]:
    """Namespace id ('net:[inode]') -> slot, for every clave-vm namespace that exists."""
    mapping = {}
    if NETNS_DIR.is_dir():
        for name in os.listdir(NETNS_DIR):
            if m := NETNS_RE.fullmatch(name):
                with contextlib.suppress(OSError):  # deleted while we looked
                    mapping[f"net:[{os.stat(NETNS_DIR / name).st_ino}]"] = int(m[1])
    return mapping


def _processes(owner: str | None, ns_slots: dict[str, int], theirs) -> list[str]:
    here = procs.net_ns("self")
    mine = _own_lineage()
    found, foreign_ns = [], {}
    for pid in procs.all_pids():
        if pid in mine or not procs.alive(pid):
            continue
        ns = procs.net_ns(pid)
        if ns is None:
            continue
        if ns != here:
            index = ns_slots.get(ns)
            if index is not None and theirs(index):
                continue
            if index is None and owner is not None and _tag(pid) != owner:
                continue  # some other namespace on this host, not from this test run
            where = f"clave-vm{index}" if index is not None else ns
            found.append(f"process {pid} ({procs.comm(pid)}) still runs in {where}")
            foreign_ns.setdefault(ns, []).append(pid)
        elif (tag := _tag(pid)) and (owner is None or tag == owner):
            found.append(f"process {pid} ({procs.comm(pid)}) started by the tests still runs")
            found += _listening([pid], "the host's network namespace")
    for ns, pids in foreign_ns.items():
        found += _listening(pids, f"clave-vm{ns_slots[ns]}" if ns in ns_slots else ns)
    return found


def _own_lineage() -> set[int]:
    """This process and its ancestors: they carry the owner tag and are not leftovers."""
    lineage, pid = set(), os.getpid()
    while pid and pid not in lineage:
        lineage.add(pid)
        pid = procs.parent(pid) or 0
    return lineage


def _tag(pid: int) -> str | None:
    """The owner tag of pid or of its nearest tagged ancestor (sshd's children have none)."""
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        if tag := procs.environ(pid).get(OWNER_ENV):
            return tag
        pid = procs.parent(pid) or 0
    return None


def _listening(pids: list[int], where: str) -> list[str]:
    """TCP ports pids listen on (read through the first pid's view of its namespace)."""
    holders = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                holders[link[8:-1]] = pid
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            rows = Path(f"/proc/{pids[0]}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == TCP_LISTEN and cols[9] in holders:
                pid = holders[cols[9]]
                found.append(
                    f"port {_address(cols[1], family)} is listening (process {pid}, "
                    f"{procs.comm(pid)}, in {where})"
                )
    return found


def _address(hex_address: str, family: int) -> str:
    """'0100007F:0050' -> '127.0.0.1:80' (the kernel prints 32-bit words in host order)."""
    host, port = hex_address.split(":")
    raw = b"".join(int(host[i : i + 8], 16).to_bytes(4, "little") for i in range(0, len(host), 8))
    return f"{socket.inet_ntop(family, raw)}:{int(port, 16)}"
