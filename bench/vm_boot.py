"""Time from `tart run` to SSH-ready and to the first command, through clave's own adapters.

Uses the fake tart with CLAVE_FAKEVM=1 (each `tart run` boots a Linux test VM: a network
namespace with real sshd, nginx and php-fpm). Needs root and the Debian packages that
.ci/run installs. Prints medians of N runs; asserts nothing.

    python bench/vm_boot.py [N]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clave.steps.boot_vm import IP_POLLERS  # noqa: E402
from clave.support.share import mount_share  # noqa: E402
from clave.support.ssh import SshExecutor  # noqa: E402
from clave.support.tart import TartManager  # noqa: E402
from tests.harness import fakevm  # noqa: E402

BASE_IMAGE = "ghcr.io/cirruslabs/ubuntu:latest"


def one_run(tart: TartManager, work: Path, i: int, pollers: int) -> dict[str, float]:
    name = f"clave-bench{i:03d}"
    share = work / f"share-{i}"
    (share / "public").mkdir(parents=True)
    (share / "public" / "index.php").write_text("<?php echo 'ok';\n")
    os.chown(share, 1000, 1000)
    tart.clone("clave-base", name)
    ssh = SshExecutor().use_password("admin")
    t0 = time.perf_counter()
    proc = tart.run_background(name, {"project": share}, work / f"{name}.log")
    try:
        ip = tart.ip(name, wait=90, pollers=pollers)
        t_ip = time.perf_counter()
        ssh.set_host(ip).wait_ready(90)
        t_ssh = time.perf_counter()
        ssh.run("true", check=True)
        t_cmd = time.perf_counter()
        mount_share(ssh, "project", "/srv/project", 30)
        t_mount = time.perf_counter()
    finally:
        ssh.close()
        tart.stop(name)
        proc.wait(timeout=30)
        tart.delete(name)
    return {"ip": t_ip - t0, "ssh ready": t_ssh - t0, "first command": t_cmd - t0,
            "share mounted": t_mount - t0}


def main() -> int:
    reason = fakevm.unavailable_reason()
    if reason:
        print(f"cannot run: {reason}")
        return 1
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ.update(PATH=f"{ROOT / 'tests' / 'fakes'}:{os.environ['PATH']}",
                          TART_HOME=str(work / "tart"), CLAVE_FAKEVM="1")
        tart = TartManager()
        tart.clone(BASE_IMAGE, "clave-base")
        for pollers in (1, IP_POLLERS):
            samples = [one_run(tart, work, i + 100 * pollers, pollers) for i in range(runs)]
            print(f"tart run → … (fake tart + Linux test VM), {pollers} `tart ip` "
                  f"poller(s), median of {runs} runs")
            for key in samples[0]:
                values = [s[key] for s in samples]
                print(f"  {key:<14} median {statistics.median(values) * 1000:7.0f} ms   "
                      f"min {min(values) * 1000:6.0f}   max {max(values) * 1000:6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
