"""Mount the session's code share inside the VM (virtio-fs), with retries and diagnostics.

Right after boot the virtio-fs device can lag behind SSH, so the mount is retried; when it
still fails, the error carries what a person would look at next: the mount's own output, the
end of the kernel log, the fstab line, and the virtio-fs tags the guest can see.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Protocol

from clave.errors import ClaveError
from clave.support.command import Result
from clave.support.ssh import quote

DEFAULT_TAG, DEFAULT_TARGET = "project", "/srv/project"
RETRY_START, RETRY_MAX = 0.25, 2.0
DMESG_LINES = 15

# Tags live in /sys/fs/virtiofs/*/tag on Linux >= 6.10; older kernels only show the devices
# (virtio device id 0x001a) on the bus, so count those instead.
DIAGNOSE = """\
echo "--- dmesg (last {lines} lines)"
sudo -n dmesg 2>&1 | tail -n {lines}
echo "--- /etc/fstab line for {target}"
grep -F -- {target} /etc/fstab 2>&1 || echo "(none)"
echo "--- virtio-fs tags the VM sees"
found=
for tag in /sys/fs/virtiofs/*/tag; do [ -r "$tag" ] && found=1 && cat "$tag"; done
if [ -z "$found" ]; then
  n=$(grep -lx 0x001a /sys/bus/virtio/devices/*/device 2>/dev/null | wc -l)
  echo "(tags not exposed by this kernel; $n virtio-fs device(s) present)"
fi
echo "--- virtiofs mounts"
grep -w virtiofs /proc/mounts || echo "(none)"
"""


class Runs(Protocol):
    """What mount_share needs from an SshExecutor."""

    host: str | None

    def run(self, command: str, timeout: float = 60, *, check: bool = False) -> Result: ...


def mount_command(shares: Mapping[str, str]) -> str:
    """Mount each tag at its target unless something is mounted there, with one sudo.

    `sudo -n`: a sudo that wants a password fails at once instead of hanging. The targets
    are made by the user first where they can be (a mount point under their home stays
    theirs); sudo makes the rest.
    """
    targets = " ".join(quote(target) for target in shares.values())
    mounted = " && ".join(f"mountpoint -q {quote(target)}" for target in shares.values())
    mounts = " && ".join(
        f"{{ mountpoint -q {quote(target)} || {{ mkdir -p {quote(target)} && "
        f"mount -t virtiofs {quote(tag)} {quote(target)}; }}; }}"
        for tag, target in shares.items())
    make = f"mkdir -p {targets} 2>/dev/null"
    return f"{{ {mounted}; }} || {{ {make}; sudo -n sh -c {quote(mounts)}; }}"


def mount_share(
    ssh: Runs,
    tag: str = DEFAULT_TAG,
    target: str = DEFAULT_TARGET,
    timeout: float = 30,
    hint: Callable[[str], None] | None = None,
) -> None:
    """Mount virtio-fs `tag` at `target` unless something is mounted there already."""
    mount_shares(ssh, {tag: target}, timeout, hint)


def mount_shares(
    ssh: Runs,
    shares: Mapping[str, str],
    timeout: float = 30,
    hint: Callable[[str], None] | None = None,
    then: str | None = None,
) -> str:
    """Mount each virtio-fs tag at its target, in one round trip while all goes well.

    `then`: a command to run in the same round trip once all are mounted; its output is
    returned (its failure is not the mounts', so the caller judges it).
    Retries (0.25 s doubling to 2 s) until `timeout`; then raises a ClaveError naming the
    first share that does not mount, with the diagnostics.
    """
    command = mount_command(shares)
    if then:
        command += f" && {{ {then}; true; }}"
    deadline = time.monotonic() + timeout
    delay = RETRY_START
    while True:
        result = ssh.run(command, timeout=max(5.0, min(timeout, 30.0)), check=False)
        if result.ok:
            return result.stdout
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if hint is not None:
            what = next(iter(shares)) if len(shares) == 1 else "shared folders"
            hint(f"waiting for the {what} share… ({result.last_line() or 'mount failed'})")
        time.sleep(min(delay, left))
        delay = min(delay * 2, RETRY_MAX)
    for tag, target in shares.items():   # which one? (the error path can afford a look each)
        if len(shares) > 1 or then:
            result = ssh.run(mount_command({tag: target}), timeout=30, check=False)
        if not result.ok:
            report = diagnose(ssh, target)
            raise ClaveError(
                f"could not mount the `{tag}` share at {target} in the VM ({ssh.host}) within "
                f"{timeout:g} s: {result.last_line() or f'exit {result.exited}'}\n"
                f"--- mount output (exit {result.exited})\n{result.tail(10) or '(none)'}\n"
                f"{report}"
            )
    return ssh.run(then, timeout=30, check=False).stdout if then else ""   # mounted at last


def diagnose(ssh: Runs, target: str) -> str:
    """The kernel log tail, fstab line, visible tags and current mounts (never raises)."""
    try:
        result = ssh.run(DIAGNOSE.format(lines=DMESG_LINES, target=quote(target)),
                         timeout=15, check=False)
    except ClaveError as err:
        return f"(no diagnostics: {err})"
    return result.stdout.rstrip() or f"(no diagnostics: {result.last_line()})"
