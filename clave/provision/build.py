"""One base-image build: a temporary VM, the stale fragments applied to it, then a swap.

The current base is never modified: the build works on a clone named `<base>-build` and
only a finished, cleanly shut down build is renamed to `<base>`. The digests the base was
built with are kept on the host (`provision-state.json`) so `--update` can tell what is
stale without booting anything; a base built elsewhere has no such record, so its own
(/etc/clave/image.json) is read once it boots.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from clave.errors import ClaveError
from clave.home import Home
from clave.locks import file_lock
from clave.provision.pipeline import IMAGE_RECORD, Fragment, ProvisioningPipeline
from clave.support.share import mount_share
from clave.support.ssh import SshExecutor, quote
from clave.support.tart import TartManager

SCRIPTS_TAG = "clave-provision"
SCRIPTS_DIR = "/run/clave-provision"   # tmpfs: the mount point never lands in the image
SHUTDOWN_TIMEOUT = 120


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
        self.swapped = False                    # the new image is the base now
        self.adopted: dict | None = None        # digests read from a base built elsewhere
        self._base_exists: bool | None = None   # asked once per build: tart is slow to ask

    # -- what is stale ------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.home.root / "provision-state.json"

    def state(self) -> dict:
        """What this Mac recorded of the base's build, else what the base itself says."""
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("base_vm") == self.base:
            return data
        return self.adopted or {}

    def adopt(self) -> None:
        """A base this Mac did not build (`tart clone <ref> clave-base`) carries its steps'
        digests in IMAGE_RECORD: with them, only the steps that differ run."""
        said = self.ssh.run(f"cat {IMAGE_RECORD}", timeout=30)
        try:
            steps = json.loads(said.stdout).get("steps") if said.ok else None
        except (ValueError, AttributeError):
            return
        if isinstance(steps, dict):
            self.adopted = {"base_vm": self.base, "image": self.image, "steps": steps}

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
        if self.image_changed():
            return f"the base was built from {self.state()['image']}, not {self.image}"
        recorded = self.state().get("steps", {}).get(fragment.key)
        if recorded is None:
            return "new step"
        return None if recorded == fragment.digest else "changed since the base was built"

    def image_changed(self) -> bool:
        """The `base_image` setting names another image than the base was built from."""
        built_from = self.state().get("image")
        return built_from is not None and built_from != self.image

    def stale(self) -> list[Fragment]:
        return [f for f in self.pipeline.fragments if self.why_stale(f)]

    def why_build(self) -> str | None:
        """None when nothing is stale; else which steps a build would apply."""
        stale = self.stale()
        return f"steps to apply: {', '.join(f.key for f in stale)}" if stale else None

    # -- the build VM ---------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.home.provision_log

    @property
    def scripts_dir(self) -> Path:
        return self.home.root / "provision-scripts"

    def start(self, hint) -> None:
        fresh = self.force or not self.base_exists() or self.image_changed()
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
        if not fresh and not self.state():
            hint("reading the base's record of its steps")
            self.adopt()

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
        if self.adopted is not None and not self.ran:
            hint("the base has every step already: recording its digests on this Mac")
            self.remove_vm()     # unchanged: nothing to swap in
            self.save_state()
            return
        hint("recording the image digests")
        self.ssh.run(f"sudo bash -c {quote(self.pipeline.record_command())}", check=True)
        hint("shutting the guest down")
        self.shut_down()
        self.wait_for_exit()
        hint(f"swapping the new image in as {self.base}")
        with _signals_deferred():   # never stop between the renames, or with a stale state
            old = self.swap()
            self.save_state()
        if old is not None:
            self.retire(old)

    def shut_down(self) -> None:
        """Ask the guest to power off. sshd may go down before the answer does: `tart run`
        exiting (wait_for_exit) is what proves the shutdown, not this command's result."""
        try:
            self.ssh.run("sudo sync && (sudo shutdown -h now || sudo poweroff)", timeout=30)
        except ClaveError:
            pass
        finally:
            self.ssh.close()

    def wait_for_exit(self) -> None:
        """tart stop is a hard power-off: a fresh image must shut itself down instead."""
        try:
            self.proc.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ClaveError(f"the build VM did not shut down within {SHUTDOWN_TIMEOUT} s; "
                             f"the current base is unchanged (log: {self.log_path}).") from None
        if self.proc.returncode != 0:   # tart itself failed: the disk may not be complete
            raise ClaveError(f"`tart run {self.vm}` exited {self.proc.returncode} instead of "
                             f"shutting down cleanly; the current base is unchanged "
                             f"(log: {self.log_path}).")

    def swap(self) -> str | None:
        """Rename the build VM to the base; returns the previous base's new name, if any."""
        with file_lock(self.home.base_lock):
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
            self.swapped = self._base_exists = True
            return old if had_base else None

    def retire(self, old: str) -> None:
        """Delete the previous base; the new one is already in place whatever happens here."""
        try:
            self.tart.delete(old)
        except ClaveError as err:
            raise ClaveError(f"the new base {self.base!r} is in place, but the previous one "
                             f"could not be deleted ({err}); delete it with "
                             f"`tart delete {old}`.") from None

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


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done, then deliver the first one.

    Handlers rather than a signal mask: a mask is per thread, and Python would still raise
    in the main thread a signal that some other thread took.
    """
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
                for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])
