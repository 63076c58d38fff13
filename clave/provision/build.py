"""One base-image build: a temporary VM, the stale fragments applied to it, then a swap.

The current base is never modified: the build works on a clone named `<base>-build` and
only a finished, cleanly shut down build is renamed to `<base>`. The digests the base was
built with are kept on the host (`provision-state.json`) so `--update` can tell what is
stale without booting anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from clave.errors import ClaveError
from clave.home import Home
from clave.locks import file_lock
from clave.provision.pipeline import Fragment, ProvisioningPipeline
from clave.support.share import mount_share
from clave.support.ssh import SshExecutor, quote
from clave.support.tart import TartManager

SCRIPTS_TAG = "clave-provision"
SCRIPTS_DIR = "/mnt/clave-provision"
SHUTDOWN_TIMEOUT = 120


def base_lock(home: Home) -> Path:
    """Held exclusively while the base is swapped, shared while a session clones it."""
    return home.root / "base.lock"


class ImageBuild:
    def __init__(self, pipeline: ProvisioningPipeline, tart: TartManager, ssh: SshExecutor,
                 settings, home: Home, *, image: str | None = None, force: bool = False):
        self.pipeline, self.tart, self.ssh = pipeline, tart, ssh
        self.settings, self.home, self.force = settings, home, force
        self.base = settings.get("base_vm")
        self.image = image or settings.get("base_image")
        self.vm = f"{self.base}-build"
        self.proc: subprocess.Popen | None = None
        self.ran: list[str] = []
        self._base_exists: bool | None = None   # asked once per build: tart is slow to ask

    # -- what is stale ------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.home.root / "provision-state.json"

    def state(self) -> dict:
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) and data.get("base_vm") == self.base else {}

    def base_exists(self) -> bool:
        if self._base_exists is None:
            try:
                self._base_exists = self.tart.exists(self.base)
            except ClaveError:
                return False
        return self._base_exists

    def why_stale(self, fragment: Fragment) -> str | None:
        """None when the base already has this fragment's exact text."""
        if self.force:
            return "--force"
        if not self.base_exists():
            return f"the base VM {self.base!r} does not exist"
        recorded = self.state().get("steps", {}).get(fragment.key)
        if recorded is None:
            return "new step"
        return None if recorded == fragment.digest else "changed since the base was built"

    def stale(self) -> list[Fragment]:
        return [f for f in self.pipeline.fragments if self.why_stale(f)]

    # -- the build VM ---------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.home.provision_log

    @property
    def scripts_dir(self) -> Path:
        return self.home.root / "provision-scripts"

    def start(self, hint) -> None:
        fresh = self.force or not self.base_exists()
        if self.tart.exists(self.vm):    # a leftover of a crashed build
            self.remove_vm()
        source = self.image if fresh else self.base
        hint(f"cloning {source}")
        self.tart.clone(source, self.vm)
        self.tart.set(self.vm, cpus=self.settings.get("vm.cpus"),
                      memory=self.settings.get("vm.memory"),
                      disk_size=self.settings.get("vm.disk_size"), random_mac=True)
        self.write_scripts()
        self.log_path.write_text("")
        hint("booting")
        self.proc = self.tart.run_background(self.vm, {SCRIPTS_TAG: self.scripts_dir},
                                             self.log_path)
        ip = self.tart.ip(self.vm, wait=90)
        self.ssh.set_host(ip)
        hint(f"waiting for SSH on {ip}")
        self.ssh.wait_ready(90)
        self.ssh.run(f"sudo mkdir -p {SCRIPTS_DIR}", check=True)
        mount_share(self.ssh, SCRIPTS_TAG, SCRIPTS_DIR, 30, hint=hint)

    def write_scripts(self) -> None:
        self.scripts_dir.mkdir(parents=True, exist_ok=True)
        for old in self.scripts_dir.glob("*.sh"):
            old.unlink()
        for fragment in self.pipeline.fragments:
            (self.scripts_dir / f"{fragment.key}.sh").write_text(fragment.script())
        (self.scripts_dir / "provision.sh").write_text(self.pipeline.to_script())

    def apply(self, fragment: Fragment) -> None:
        result = self.ssh.run(f"sudo bash {SCRIPTS_DIR}/{fragment.key}.sh", timeout=3600)
        with self.log_path.open("a") as log:
            log.write(f"==> {fragment.key}\n{result.stdout}{result.stderr}"
                      f"(exit {result.exited})\n")
        if not result.ok:
            raise ClaveError(f"provisioning step {fragment.key} ({fragment.description}) "
                             f"failed (exit {result.exited}):\n{result.tail()}\n"
                             f"full log: {self.log_path}\nthe current base is unchanged.")
        self.ran.append(fragment.key)

    def finalize(self, hint) -> None:
        hint("recording the image digests")
        self.ssh.run(f"sudo bash -c {quote(self.pipeline.record_command())}", check=True)
        hint("shutting the guest down")
        self.ssh.run("sudo sync && (sudo shutdown -h now || sudo poweroff)", timeout=30)
        self.ssh.close()
        self.wait_for_exit()
        hint(f"swapping the new image in as {self.base}")
        self.swap()
        self.save_state()

    def wait_for_exit(self) -> None:
        """tart stop is a hard power-off: a fresh image must shut itself down instead."""
        try:
            self.proc.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ClaveError(f"the build VM did not shut down within {SHUTDOWN_TIMEOUT} s; "
                             f"the current base is unchanged (log: {self.log_path}).") from None

    def swap(self) -> None:
        with file_lock(base_lock(self.home)):
            old = f"{self.base}-old-{int(time.time())}"
            had_base = self.tart.exists(self.base)
            if had_base:
                self.tart.rename(self.base, old)
            try:
                self.tart.rename(self.vm, self.base)
            except ClaveError:
                if had_base:
                    self.tart.rename(old, self.base)
                raise
            if had_base:
                self.tart.delete(old)
            self._base_exists = True

    def save_state(self) -> None:
        data = {"base_vm": self.base, "image": self.image, "checksum": self.pipeline.checksum,
                "steps": self.pipeline.digests(),
                "built_at": datetime.now(UTC).isoformat(timespec="seconds")}
        fd, tmp = tempfile.mkstemp(dir=self.home.root, prefix=".provision-state.")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
        os.replace(tmp, self.state_path)

    def remove_vm(self) -> None:
        """Undo: the build VM goes; the base was never touched."""
        self.ssh.close()
        if self.proc is not None and self.proc.poll() is None:
            self.tart.stop(self.vm)
        if self.tart.exists(self.vm):
            self.tart.stop(self.vm)
            self.tart.delete(self.vm)

