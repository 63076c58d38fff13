"""The Linux test VM, keeping what its guest wrote under /etc when it goes (e2e tests).

A test VM has no real disk: its /etc is an overlay whose upper directory is removed with the
VM. Provisioning tests must read what a build wrote (/etc/clave/image.json, the test
fragments' markers) after the build VM has shut down, so this FakeVm copies that upper
directory to `$CLAVE_TEST_GUEST_ETC/NN-<vm name>/` (NN counts boots) before destroying it.
The fake tart loads it in place of tests.harness.fakevm through FAKE_TART_VM_MODULE.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.harness.fakevm import FakeVm as HarnessVm

ARCHIVE_ENV = "CLAVE_TEST_GUEST_ETC"
RECORD_ENV = "CLAVE_TEST_BASE_RECORD"   # a base built elsewhere: its /etc/clave/image.json
IMAGE_RECORD = "/etc/clave/image.json"


class FakeVm(HarnessVm):
    @classmethod
    def boot(cls, name, shares, state_dir, **options):
        """A test VM has no disk to carry the base's files: a pulled base's image record is
        written into its /etc here, before tart publishes the address."""
        vm = super().boot(name, shares, state_dir, **options)
        record = os.environ.get(RECORD_ENV)
        if record:
            vm.wait_ssh(60)
            vm.exec(["sh", "-c", f"mkdir -p /etc/clave && cat > {IMAGE_RECORD}"],
                    input=Path(record).read_text())
        return vm

    def destroy(self) -> None:
        archive = os.environ.get(ARCHIVE_ENV)
        upper = self.state_dir / "etc.upper"
        if archive and upper.is_dir():
            keep(upper, Path(archive), self.name)
        super().destroy()


def keep(upper: Path, archive: Path, name: str) -> None:
    """Regular files only: overlayfs whiteouts (character devices) mean nothing here."""
    archive.mkdir(parents=True, exist_ok=True)
    target = archive / f"{len(list(archive.iterdir())) + 1:02d}-{name}"
    for root, _dirs, files in os.walk(upper):
        for file in files:
            source = Path(root, file)
            if source.is_file() and not source.is_symlink():
                copy = target / source.relative_to(upper)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, copy)
    target.mkdir(parents=True, exist_ok=True)   # a boot that wrote nothing still counts
