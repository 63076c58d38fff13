"""The test VMs' network: one bridge playing Tart's NAT gateway, and numbered VM slots.

VM n owns the network namespace `clave-vm<n>`, the host-side veth `clv<n>h` and the address
<net>.(10+n). Slots are claimed under a file lock shared by every process on the host (several
pytest runs, fake `tart run`s), so concurrent boots never pick the same n; a slot stays taken
while its registry file, namespace or veth exists, and is freed by FakeVm.destroy.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.procs import HarnessError, run

MAX_SLOT = 239  # VM 239 gets .249; the rest of the /24 stays free for the gateway's neighbours
NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True)
class Network:
    """Where test VMs live. Environment: CLAVE_FAKEVM_NET (first three octets of the /24,
    default 192.168.64), CLAVE_FAKEVM_BRIDGE (default clvbr0), CLAVE_FAKEVM_ROOT (host-side
    registry and locks, default /run/clave-fakevm)."""

    prefix: str
    bridge: str
    root: Path

    @classmethod
    def from_env(cls) -> Network:
        prefix = os.environ.get("CLAVE_FAKEVM_NET", "192.168.64")
        octets = prefix.split(".")
        if len(octets) != 3 or not all(o.isdigit() and int(o) < 256 for o in octets):
            raise HarnessError(
                f"CLAVE_FAKEVM_NET={prefix!r} is not the first three octets of a /24: "
                "use a value like 192.168.64."
            )
        return cls(
            prefix=prefix,
            bridge=os.environ.get("CLAVE_FAKEVM_BRIDGE", "clvbr0"),
            root=Path(os.environ.get("CLAVE_FAKEVM_ROOT", "/run/clave-fakevm")),
        )

    @property
    def gateway(self) -> str:
        return f"{self.prefix}.1"

    def ip(self, index: int) -> str:
        return f"{self.prefix}.{10 + index}"

    @staticmethod
    def netns(index: int) -> str:
        return f"clave-vm{index}"

    @staticmethod
    def veth(index: int) -> str:
        return f"clv{index}h"

    @property
    def slots_dir(self) -> Path:
        return self.root / "slots"

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive host-wide lock (flock on <root>/<name>.lock)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{name}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    # ---------------------------------------------------------------- bridge
    def bridge_exists(self) -> bool:
        return Path(f"/sys/class/net/{self.bridge}").exists()

    def ensure_bridge(self) -> None:
        """Create the bridge with the gateway address (once; concurrent callers wait)."""
        with self.lock("bridge"):
            self._ensure_bridge_locked()

    def _ensure_bridge_locked(self) -> None:
        if not self.bridge_exists():
            run(["ip", "link", "add", self.bridge, "type", "bridge"])
        addrs = run(["ip", "-o", "-4", "addr", "show", "dev", self.bridge]).stdout
        if f" {self.gateway}/24 " not in addrs:
            run(["ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])

    def remove_bridge(self) -> bool:
        """Delete the bridge unless a VM or a server (of any test run: several share this
        machine) still uses it; True if it is gone."""
        with self.lock("bridge"):
            if not self.bridge_exists():
                return True
            if any(Path(f"/sys/class/net/{self.bridge}/brif").iterdir()) or self._served():
                return False
            run(["ip", "link", "del", self.bridge])
            return True

    def _served(self) -> bool:
        """Something listens on the gateway address (another run's MariaDB or Redis)."""
        gateway = "".join(f"{int(octet):02X}" for octet in reversed(self.gateway.split(".")))
        rows = [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        return any(cols[1].startswith(gateway + ":") and cols[3] == "0A" for cols in rows)

    def attach(self, index: int) -> None:
        """Create VM index's namespace and veth pair, eth0 addressed, default via the gateway."""
        ns, veth = self.netns(index), self.veth(index)
        # under the bridge lock so remove_bridge never deletes the bridge under a new veth
        with self.lock("bridge"):
            self._ensure_bridge_locked()
            run(["ip", "netns", "add", ns])
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run(["ip", "link", "set", veth, "master", self.bridge, "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{self.ip(index)}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "route", "add", "default", "via", self.gateway])

    # ---------------------------------------------------------------- slots
    def claim(self, record: dict) -> int:
        """Take the lowest free slot for a VM described by record (stored as its registry)."""
        self.slots_dir.mkdir(parents=True, exist_ok=True)
        with self.lock("slots"):
            for index in range(1, MAX_SLOT + 1):
                if not self.slot_taken(index):
                    write_json(self.slots_dir / f"{index}.json", {**record, "index": index})
                    return index
        raise HarnessError(
            f"all {MAX_SLOT} test VM slots are taken: destroy leftover VMs "
            f"(python -m tests.harness.fakevm reap)."
        )

    def slot_taken(self, index: int) -> bool:
        return (
            (self.slots_dir / f"{index}.json").exists()
            or (NETNS_DIR / self.netns(index)).exists()
            or Path(f"/sys/class/net/{self.veth(index)}").exists()
        )

    def release(self, index: int, state_dir: Path) -> None:
        """Free slot index if it still belongs to the VM whose state is in state_dir."""
        path = self.slots_dir / f"{index}.json"
        with self.lock("slots"):
            record = self.slot(index)
            if record is not None and record.get("state_dir") == str(state_dir):
                path.unlink(missing_ok=True)

    def slot(self, index: int) -> dict | None:
        try:
            return json.loads((self.slots_dir / f"{index}.json").read_text())
        except (OSError, ValueError):
            return None

    def slots(self) -> dict[int, dict]:
        """Every registered VM: slot index -> its record (state_dir, name, owner, ...)."""
        if not self.slots_dir.is_dir():
            return {}
        found = {}
        for path in self.slots_dir.glob("*.json"):
            if path.stem.isdigit() and (record := self.slot(int(path.stem))) is not None:
                found[int(path.stem)] = record
        return found


def write_json(path: Path, data: dict) -> None:
    """Write atomically: readers in other processes never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
