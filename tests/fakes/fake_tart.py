#!/usr/bin/env python3
"""A faithful stand-in for Cirrus Labs' `tart` on Linux, for clave's tests.

Behaviour follows ../shared/reference/tart.md and tart's own source (Sources/tart/Commands/*,
VMDirectory.swift, PIDLock.swift, VMStorageHelper.swift) and swift-argument-parser's messages:
- state: $TART_HOME/vms/NAME/{config.json, disk.img (sparse, Disk x 10^9 bytes), nvram.bin};
  a VM exists when all three exist; OCI images under $TART_HOME/cache/OCIs/HOST/NAMESPACE/.
- running = `tart run` holds an fcntl write lock on config.json (one fd, never reopened);
  other commands read the holder's pid with F_GETLK. There is no pid file.
- runtime errors: the bare message on stderr, exit 2 (missing / not running / already
  running) or 1; argument errors: `Error: ...`, the usage line and a `See ...` line, exit 64;
  other errors: `Error: ...`, exit 1.

Knobs (environment variables):
  TART_HOME                 state root (default ~/.tart), as in tart.
  FAKE_TART_LOG             append one JSON line per invocation: {"argv": [...], "pid": N}.
  FAKE_TART_LATENCY         e.g. "clone=1,run=8,ip=2" (seconds). `run` is the boot time before the
                            VM has an address; `stop` is the time a VM takes to power off after
                            SIGINT (a `tart stop --timeout` shorter than that ends in SIGKILL);
                            any other command waits that long before acting.
  FAKE_TART_FAIL            e.g. "clone" or "set:3,ip": that command fails (exit 1 or the given
                            code) with `fake tart: injected failure of "tart clone"` on stderr,
                            changing nothing.
  FAKE_TART_DELETE_LOCK_MS  after a `stop` that had to SIGKILL, config.json stays locked this long
                            (as while Virtualization.framework tears the VM down), so `delete`
                            answers `VM "x" is running` meanwhile.
  CLAVE_FAKEVM=1            `run` boots a Linux test VM through tests/harness/fakevm.py
                            (FakeVm.boot(name, {tag: path | {name: path}}, state_dir), .ip,
                            .wait(), .shutdown(), .destroy(); optional boot(die_with_parent=)
                            and FakeVm.from_state(dir), used to power off the VM of a
                            SIGKILLed `run` in `stop`, `delete` and the next `run`).
  FAKE_TART_VM_MODULE       module (dotted name or path to a .py file) to use instead of
                            tests.harness.fakevm (same interface; for testing the hook).

Fake-only files in a VM directory (the real tart never writes them):
  .fake-ip              the address, while the VM runs and once it has booted;
  .fake-run.json        pid, argv and parsed --dir shares of the latest `run`;
  .fake-guest-poweroff  create it to make a VM without a test VM power itself off;
  .fakevm/              the test VM's state (CLAVE_FAKEVM=1).

Known deviations: no DHCP lease file (`ip` answers only while the VM runs; the real dhcp
resolver can return a stopped VM's stale lease); text-mode tables are approximations; nothing
is downloaded (a "pulled" image is an empty 20 GB disk); `exec`, `push`, `login`, `logout`,
`import`, `export`, `prune`, `suspend` are not modelled; macOS-guest features are absent.

Start-up time is the fake's, not clave's (the real tart is a native binary), so: `tests/fakes/tart`
only launches this module (its bytecode is then cached); modules only some commands need (shutil,
uuid, random, hashlib, datetime, signal, inspect, select) are imported where they are used; and
the records are plain classes, as `dataclasses` would import `inspect` on every call.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import struct
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:  # for annotations only: `typing` itself would cost every call
    import datetime

VERSION = "2.32.1"
AUTOMOUNT_TAG = "com.apple.virtio-fs.automount"
GB = 1000**3
MIB = 1024 * 1024
MIN_MEMORY = 128 * MIB  # [unverified] VZVirtualMachineConfiguration.minimumAllowedMemorySize
PULLED_DISK_GB = 20
NVRAM_BYTES = 128 * 1024
VM_FILES = ("config.json", "disk.img", "nvram.bin")
IP_FILE = ".fake-ip"
RUN_FILE = ".fake-run.json"
POWEROFF_FILE = ".fake-guest-poweroff"
FAKEVM_DIR = ".fakevm"
EX_USAGE = 64


# --- errors: how tart reports a failure ------------------------------------------------------


class TartFailure(Exception):
    """Something to print on stderr and an exit code."""

    def __init__(self, text: str, code: int):
        super().__init__(text)
        self.text, self.code = text, code


def runtime_error(message: str, code: int = 1) -> TartFailure:
    """tart's RuntimeError: the bare message (Root.swift prints `"\\(error)"`)."""
    return TartFailure(message, code)


def vm_missing(name: str) -> TartFailure:
    return runtime_error(f'the specified VM "{name}" does not exist', 2)


def other_error(message: str) -> TartFailure:
    """Any error without an exit code of its own: swift-argument-parser prints `Error: `."""
    return TartFailure(f"Error: {message}", 1)


class Validation(Exception):
    """A swift-argument-parser ValidationError; main() adds the usage of the command."""


# --- environment knobs -----------------------------------------------------------------------


def knob_table(variable: str) -> dict[str, str]:
    entries = (e.strip() for e in os.environ.get(variable, "").split(","))
    table = {}
    for entry in filter(None, entries):
        key, _, value = entry.replace("=", ":", 1).partition(":")
        table[key.strip()] = value.strip()
    return table


def latency(command: str) -> float:
    value = knob_table("FAKE_TART_LATENCY").get(command, "")
    return float(value) if value else 0.0


def injected_failure(command: str) -> TartFailure | None:
    table = knob_table("FAKE_TART_FAIL")
    if command not in table:
        return None
    code = int(table[command]) if table[command] else 1
    return TartFailure(f'fake tart: injected failure of "tart {command}"', code)


def log_invocation(argv: list[str]) -> None:
    path = os.environ.get("FAKE_TART_LOG")
    if not path:
        return
    line = json.dumps({"argv": argv, "pid": os.getpid()}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())  # one write per line: concurrent fakes never interleave
    finally:
        os.close(fd)


# --- JSON the way Apple's JSONEncoder(.prettyPrinted) writes it ------------------------------


def apple_json(value: object) -> str:
    """2-space indent, `"key" : value`, and `/` escaped as `\\/` (JSONEncoder's default)."""
    return json.dumps(value, indent=2, separators=(",", " : ")).replace("/", "\\/")


def text_table(rows: list[dict], columns: list[str]) -> str:
    """swift TextTable, Style.plain: padded columns, trimmed; nothing at all for no rows."""
    if not rows:
        return ""
    cells = [columns] + [[str(row[c]) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [" ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(line.rstrip() for line in lines).strip()


# --- storage ---------------------------------------------------------------------------------


def tart_home() -> Path:
    custom = os.environ.get("TART_HOME")
    home = Path(custom) if custom else Path.home() / ".tart"
    try:
        for sub in ("cache", "tmp"):
            (home / sub).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise runtime_error(
            f"TART_HOME is invalid: {home} does not exist, yet we can't create it: {err.strerror}"
        ) from err
    return home


def random_mac() -> str:
    """VZMACAddress.randomLocallyAdministered(): locally administered, unicast."""
    import random

    octets = [random.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] | 0x02) & 0xFE
    return ":".join(f"{b:02x}" for b in octets)


def linux_config(mac: str, disk_format: str = "raw") -> dict:
    """config.json of `tart create --linux` (VMConfig.swift encode order)."""
    return {
        "version": 1,
        "os": "linux",
        "arch": "arm64",
        "cpuCountMin": 4,
        "cpuCount": 4,
        "memorySizeMin": 4096 * MIB,
        "memorySize": 4096 * MIB,
        "macAddress": mac,
        "display": {"width": 1024, "height": 768},
        "diskFormat": disk_format,
    }


def flock_struct(lock_type: int) -> bytes:
    if sys.platform == "darwin":
        return struct.pack("qqihh", 0, 0, 0, lock_type, os.SEEK_SET)
    return struct.pack("hhqqi4x", lock_type, os.SEEK_SET, 0, 0, 0)


def lock_holder(fd: int) -> int:
    """PIDLock.pid(): F_GETLK with F_RDLCK; the pid of a process holding a write lock, or 0."""
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, flock_struct(fcntl.F_RDLCK))
    if sys.platform == "darwin":
        _, _, pid, lock_type, _ = struct.unpack("qqihh", answer)
    else:
        lock_type, _, _, _, pid = struct.unpack("hhqqi4x", answer)
    return 0 if lock_type == fcntl.F_UNLCK else pid


class VmDir:
    """One VM directory (local or OCI), as VMDirectory.swift sees it."""

    def __init__(self, path: Path):
        self.path = path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def disk_path(self) -> Path:
        return self.path / "disk.img"

    @property
    def nvram_path(self) -> Path:
        return self.path / "nvram.bin"

    @property
    def state_path(self) -> Path:
        return self.path / "state.vzvmsave"

    @property
    def initialized(self) -> bool:
        return all((self.path / f).exists() for f in VM_FILES)

    def validate(self, name: str) -> None:
        if not self.path.exists():
            raise vm_missing(name)
        if not self.initialized:
            raise runtime_error(
                "VM is missing some of its files (config.json, disk.img or nvram.bin)"
            )

    def touch_access(self) -> None:
        """VMStorageLocal.open() updates the directory's access date (`Accessed` in `list`)."""
        with suppress(OSError):
            os.utime(self.path, (time.time(), self.path.stat().st_mtime))

    def load(self) -> dict:
        return json.loads(self.config_path.read_text())

    def save(self, config: dict) -> None:
        """Rewrite config.json in place: a `run` holding its lock keeps it (same inode)."""
        data = (apple_json(config) + "\n").encode()
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, data)
        finally:
            os.close(fd)

    def lock_pid(self) -> int:
        try:
            fd = os.open(self.config_path, os.O_RDWR)
        except OSError:
            return 0  # as VMDirectory.running(): a racing delete means "not running"
        try:
            return lock_holder(fd)
        finally:
            os.close(fd)

    def running(self) -> bool:
        return self.lock_pid() != 0

    def state(self) -> str:
        if self.running():
            return "running"
        return "suspended" if self.state_path.exists() else "stopped"

    def files(self) -> list[Path]:
        return [self.path / f for f in VM_FILES]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def allocated_bytes(self) -> int:
        return sum(p.stat().st_blocks * 512 for p in self.files())

    def accessed(self) -> datetime.datetime:
        import datetime

        return datetime.datetime.fromtimestamp(self.path.stat().st_atime, datetime.UTC)

    def mac(self) -> str:
        return self.load()["macAddress"]

    def regenerate_mac(self) -> None:
        config = self.load()
        config["macAddress"] = random_mac()
        self.state_path.unlink(missing_ok=True)
        self.save(config)


class Storage:
    """$TART_HOME: local VMs, the OCI cache and the temporary directory."""

    def __init__(self) -> None:
        self.home = tart_home()
        self.vms = self.home / "vms"
        self.ocis = self.home / "cache" / "OCIs"
        self.tmp = self.home / "tmp"

    def local(self, name: str) -> VmDir:
        return VmDir(self.vms / name)

    def open_local(self, name: str) -> VmDir:
        vm = self.local(name)
        vm.validate(name)
        vm.touch_access()
        return vm

    def exists(self, name: str) -> bool:
        return self.local(name).initialized

    def local_vms(self) -> list[VmDir]:
        if not self.vms.is_dir():
            return []
        return [vm for vm in map(VmDir, self.vms.iterdir()) if vm.initialized]

    def oci_vms(self) -> list[tuple[str, VmDir]]:
        """VMStorageOCI.list(): a tag is a symlink (NAME:TAG), a digest a directory (NAME@SHA)."""
        found = []
        for root, dirs, _ in os.walk(self.ocis):
            for entry in dirs:
                path = Path(root) / entry
                vm = VmDir(path)
                if vm.initialized:
                    joiner = ":" if path.is_symlink() else "@"
                    found.append((f"{path.parent.relative_to(self.ocis)}{joiner}{entry}", vm))
        return found

    def open_any(self, name: str) -> VmDir:
        """VMStorageHelper.open(): remote names come from the OCI cache, others are local."""
        remote = RemoteName.parse(name)
        if remote is None:
            return self.open_local(name)
        vm = VmDir(self.oci_path(remote))
        if not vm.initialized:
            raise vm_missing(name)
        return vm

    def oci_path(self, remote: RemoteName) -> Path:
        return self.ocis / remote.host / remote.namespace / remote.reference

    def temporary(self) -> Path:
        import uuid

        path = self.tmp / str(uuid.uuid4()).upper()
        path.mkdir()
        return path

    def collect_garbage(self) -> None:
        """Config.gc(): every command but pull/clone removes unlocked entries of tmp/."""
        try:
            for entry in self.tmp.iterdir():
                with flocked(entry, blocking=False) as locked:
                    if locked and entry.is_dir():
                        import shutil

                        shutil.rmtree(entry, ignore_errors=True)
                    elif locked:
                        entry.unlink(missing_ok=True)
        except OSError as err:
            print(f"Failed to perform garbage collection: {err}", file=sys.stderr)

    def move_into_place(self, name: str, source: Path) -> None:
        """FileManager.replaceItemAt: an existing VM of that name is silently replaced."""
        self.vms.mkdir(parents=True, exist_ok=True)
        target = self.vms / name
        if target.exists() or target.is_symlink():
            import shutil

            shutil.rmtree(target)
        os.rename(source, target)


@contextmanager
def flocked(path: Path, blocking: bool = True):
    """FileLock.swift: flock(2) on a file or directory; yields whether it was taken."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def copy_sparse(source: Path, target: Path) -> None:
    """Copy only the data regions: a 50 GB disk with a few bytes written stays small."""
    size = source.stat().st_size
    with open(source, "rb") as src, open(target, "wb") as dst:
        dst.truncate(size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
                end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            except OSError as err:
                if err.errno == errno.ENXIO:  # no data after offset
                    break
                if err.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # no SEEK_DATA here
                    import shutil

                    shutil.copyfile(source, target)
                    return
                raise
            src.seek(start)
            dst.seek(start)
            dst.write(src.read(end - start))
            offset = end


def copy_vm(source: VmDir, target: Path) -> None:
    import shutil

    shutil.copyfile(source.config_path, target / "config.json")
    copy_sparse(source.nvram_path, target / "nvram.bin")
    copy_sparse(source.disk_path, target / "disk.img")
    if source.state_path.exists():
        shutil.copyfile(source.state_path, target / "state.vzvmsave")


def create_vm_files(path: Path, config: dict, disk_gb: int) -> None:
    VmDir(path).save(config)
    with open(path / "disk.img", "wb") as disk:
        disk.truncate(disk_gb * GB)
    with open(path / "nvram.bin", "wb") as nvram:
        nvram.truncate(NVRAM_BYTES)


class RemoteName:
    """`host/namespace:tag` or `host/namespace@sha256:digest`."""

    def __init__(self, host: str, namespace: str, reference: str):
        self.host, self.namespace = host, namespace
        self.reference = reference  # a tag, or "sha256:..." for a digest

    @property
    def is_digest(self) -> bool:
        return self.reference.startswith("sha256:")

    def __str__(self) -> str:
        joiner = "@" if self.is_digest else ":"
        return f"{self.host}/{self.namespace}{joiner}{self.reference}"

    @classmethod
    def parse(cls, name: str) -> RemoteName | None:
        """`host/namespace[:tag|@sha256:digest]`; anything without a `/` is a local name."""
        if "/" not in name:
            return None
        host, _, rest = name.partition("/")
        if "@" in rest:
            namespace, _, reference = rest.partition("@")
        elif ":" in rest.rsplit("/", 1)[-1]:
            namespace, _, reference = rest.rpartition(":")
        else:
            namespace, reference = rest, "latest"
        if not host or not namespace or not reference:
            return None
        return cls(host, namespace, reference)


def pull_image(storage: Storage, remote: RemoteName) -> VmDir:
    """Fill the OCI cache: a digest directory plus, for a tag, a symlink to it."""
    import hashlib
    import random
    import shutil

    print("pulling manifest...", flush=True)
    if remote.is_digest:
        digest = remote.reference
    else:
        digest = "sha256:" + hashlib.sha256(str(remote).encode()).hexdigest()
    digest_dir = storage.ocis / remote.host / remote.namespace / digest
    digest_name = f"{remote.host}/{remote.namespace}@{digest}"
    if VmDir(digest_dir).initialized:
        print(f"{digest_name} image is already cached! creating a symlink...", flush=True)
    else:
        print(f"pulling disk ({PULLED_DISK_GB / 4:.1f} GB compressed)...", flush=True)
        print("pulling NVRAM...", flush=True)
        tmp = storage.temporary()
        seeded = random.Random(digest)  # the same image always carries the same MAC
        octets = [seeded.randrange(256) for _ in range(6)]
        octets[0] = (octets[0] | 0x02) & 0xFE
        create_vm_files(tmp, linux_config(":".join(f"{b:02x}" for b in octets)), PULLED_DISK_GB)
        digest_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(digest_dir, ignore_errors=True)
        os.rename(tmp, digest_dir)
    if not remote.is_digest:
        link = storage.oci_path(remote)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(digest)
    return VmDir(storage.oci_path(remote))


# --- argument parsing the way swift-argument-parser does it ----------------------------------


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


def unsigned(bits: int):
    def convert(text: str) -> int:
        if not re.fullmatch(r"\+?[0-9]+", text) or int(text) >= 2**bits:
            raise ValueError(text)
        return int(text)

    return convert


def choice(*values: str):
    def convert(text: str) -> str:
        if text not in values:
            raise ValueError(text)
        return text

    convert.values = values
    return convert


class Arg:
    """One @Argument, @Option or @Flag. `value` is None for flags, "" for positionals."""

    def __init__(
        self,
        long: str,
        value: str | None = None,
        convert: object = str,
        short: str = "",
        repeat: bool = False,
        hidden: bool = False,
        default: object = None,
        positional: bool = False,
        optional: bool = True,
    ):
        self.long, self.value, self.convert, self.short = long, value, convert, short
        self.repeat, self.hidden, self.default = repeat, hidden, default
        self.positional, self.optional = positional, optional

    @property
    def key(self) -> str:
        return self.long.replace("-", "_")

    @property
    def synopsis(self) -> str:
        if self.positional:
            text = f"<{self.long}>"
        elif self.value is None:
            text = f"--{self.long}"
        else:
            text = f"--{self.long} <{self.value}>"
        if self.repeat:
            text += " ..."
        return f"[{text}]" if self.optional and not self.positional else text


def positional(name: str, repeat: bool = False, optional: bool = False) -> Arg:
    return Arg(name, "", str, repeat=repeat, positional=True, optional=optional)


def option(long: str, value: str | None = None, convert=str, **kw) -> Arg:
    return Arg(long, value if value is not None else long, convert, **kw)


def flag(long: str, **kw) -> Arg:
    return Arg(long, None, bool, default=False, **kw)


class Command:
    def __init__(self, name: str, args: list[Arg], run: object = None, validate: object = None):
        self.name, self.args, self.run, self.validate = name, args, run, validate

    def usage(self) -> str:
        shown = [a for a in self.args if not a.hidden]
        if len(shown) > 12:  # UsageGenerator: keep positional and required arguments only
            kept = " ".join(a.synopsis for a in shown if a.positional or not a.optional)
            return f"tart {self.name} [<options>] {kept}"
        return " ".join([f"tart {self.name}"] + [a.synopsis for a in shown])

    def usage_error(self, message: str) -> TartFailure:
        text = (
            f"Error: {message}\nUsage: {self.usage()}\n"
            f"  See 'tart {self.name} --help' for more information."
        )
        return TartFailure(text, EX_USAGE)


class Parsed:
    def __init__(self, values: dict):
        self.values = values

    def __getattr__(self, key: str):
        try:
            return self.values[key]
        except KeyError as err:
            raise AttributeError(key) from err


def unknown_option_message(name: str, by_long: dict[str, Arg]) -> str:
    """ErrorMessageGenerator.unknownOptionMessage: suggest a long name within edit distance 3."""
    if name.startswith("--"):
        close = [f"--{long}" for long in by_long if edit_distance(f"--{long}", name) < 4]
        if close:
            best = min(close, key=lambda candidate: edit_distance(candidate, name))
            return f"Unknown option '{name}'. Did you mean '{best}'?"
    return f"Unknown option '{name}'"


def looks_like_option(token: str) -> bool:
    return token.startswith("-") and token != "-"


def parse(command: Command, argv: list[str]) -> Parsed:
    """Lenient parse, decode (missing/invalid values), validate(), then leftovers, in that order."""
    by_long = {a.long: a for a in command.args if not a.positional}
    by_short = {a.short: a for a in command.args if a.short}
    if "no-display-refit" in by_long:
        by_long["no-display-refit"] = by_long["display-refit"]
    values: dict = {}
    for a in command.args:
        values[a.key] = [] if a.repeat else a.default
    loose: list[str] = []
    unknown: list[str] = []
    tokens = list(argv)
    i = 0
    terminated = False

    def convert(arg: Arg, text: str, shown: str) -> object:
        try:
            return arg.convert(text)
        except ValueError:
            listed = ""
            allowed = getattr(arg.convert, "values", ())
            if allowed:
                quoted = [f"'{v}'" for v in allowed]
                listed = (
                    " and ".join(quoted)
                    if len(quoted) <= 2
                    else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"
                )
                listed = f". Please provide one of {listed}."
            raise command.usage_error(
                f"The value '{text}' is invalid for '{shown}'{listed}"
            ) from None

    def store(arg: Arg, value: object) -> None:
        if arg.repeat:
            values[arg.key].append(value)
        else:
            values[arg.key] = value

    while i < len(tokens):
        token = tokens[i]
        i += 1
        if terminated or not looks_like_option(token):
            loose.append(token)
            continue
        if token == "--":
            terminated = True
            continue
        if token in ("-h", "--help"):
            print(f"USAGE: {command.usage()}")
            raise SystemExit(0)
        if token.startswith("--"):
            name, has_value, inline = token[2:].partition("=")
            arg = by_long.get(name)
            shown = f"--{name}"
        else:
            name, has_value, inline = token[1:2], bool(token[2:]), token[2:]
            arg = by_short.get(name)
            shown = f"-{name}"
        if arg is None:
            unknown.append(shown)
            continue
        if arg.value is None:  # a flag
            if has_value:
                raise command.usage_error(
                    f"The option '{shown}' does not take any value, but '{inline}' was specified."
                )
            store(arg, name != f"no-{arg.long}")  # `--no-display-refit` sets display-refit off
            continue
        if has_value:
            text = inline
        elif i < len(tokens) and not looks_like_option(tokens[i]):
            text = tokens[i]
            i += 1
        else:
            raise command.usage_error(f"Missing value for '{shown} <{arg.value}>'")
        store(arg, convert(arg, text, f"{shown} <{arg.value}>"))

    for arg in (a for a in command.args if a.positional):
        if arg.repeat:
            values[arg.key], loose = loose, []
        elif loose:
            values[arg.key] = loose.pop(0)
        if values[arg.key] in (None, []) and not arg.optional:
            raise command.usage_error(f"Missing expected argument '{arg.synopsis}'")
    parsed = Parsed(values)
    if command.validate:
        try:
            command.validate(parsed)
        except Validation as err:
            raise command.usage_error(str(err)) from None
        except TartFailure as err:
            # errors thrown by validate() reach swift-argument-parser, which prefixes `Error: `
            raise TartFailure(f"Error: {err.text}", 1) from None
    if unknown:
        raise command.usage_error(unknown_option_message(unknown[0], by_long))
    if loose:
        if len(loose) == 1:
            raise command.usage_error(f"Unexpected argument '{loose[0]}'")
        listed = "', '".join(loose)
        raise command.usage_error(f"{len(loose)} unexpected arguments: '{listed}'")
    return parsed


# --- commands --------------------------------------------------------------------------------


def local_name_check(parsed: Parsed) -> None:
    if "/" in parsed.new_name:
        raise Validation("<new-name> should be a local name")


def validate_clone(parsed: Parsed) -> None:
    local_name_check(parsed)
    if parsed.concurrency < 1:
        raise Validation("network concurrency cannot be less than 1")


def cmd_clone(parsed: Parsed) -> None:
    storage = Storage()
    remote = RemoteName.parse(parsed.source_name)
    if remote is not None and not VmDir(storage.oci_path(remote)).initialized:
        pull_image(storage, remote)
    source = storage.open_any(parsed.source_name)
    tmp = storage.temporary()
    # A half-made clone lives in tmp/ only (gc leaves it while locked); then the global lock.
    with flocked(tmp), flocked(storage.home):
        clash = any(vm.mac() == source.mac() for vm in storage.local_vms())
        copy_vm(source, tmp)
        if clash and source.state() != "suspended":
            VmDir(tmp).regenerate_mac()
        time.sleep(latency("clone"))
        storage.move_into_place(parsed.new_name, tmp)


def validate_create(parsed: Parsed) -> None:
    if parsed.from_ipsw is None and not parsed.linux:
        raise Validation("Please specify either a --from-ipsw or --linux option!")
    if parsed.disk_format != "raw":
        raise Validation(f"Disk format '{parsed.disk_format}' is not supported on this system.")


def cmd_create(parsed: Parsed) -> None:
    if parsed.from_ipsw is not None:
        raise other_error("fake tart: macOS VMs (--from-ipsw) are not modelled")
    storage = Storage()
    tmp = storage.temporary()
    with flocked(tmp):
        create_vm_files(tmp, linux_config(random_mac(), parsed.disk_format), parsed.disk_size)
        storage.move_into_place(parsed.name, tmp)


def parse_display(text: str) -> tuple[int, int, str | None]:
    """VMDisplayConfig(argument:): WxH with an optional pt/px unit; anything else reads as 0."""
    unit = None
    for suffix in ("px", "pt"):
        if text.endswith(suffix):
            text, unit = text[: -len(suffix)], suffix
            break
    parts = [int(p) if re.fullmatch(r"[+-]?[0-9]+", p) else 0 for p in text.split("x")]
    parts += [0, 0]
    return parts[0], parts[1], unit


def human_bytes(count: int) -> str:
    """ByteCountFormatter (file style, powers of 1000), e.g. `20 GB`, `10.5 GB`."""
    for unit, size, digits in (
        ("TB", 1000**4, 2),
        ("GB", GB, 2),
        ("MB", 1000**2, 1),
        ("KB", 1000, 0),
    ):
        if count >= size:
            text = f"{count / size:.{digits}f}"
            if "." in text:
                text = text.rstrip("0").rstrip(".")
            return f"{text} {unit}"
    return f"{count} bytes"


def cmd_set(parsed: Parsed) -> None:
    vm = Storage().open_local(parsed.name)
    config = vm.load()
    if parsed.cpu is not None:
        if parsed.cpu < 1:
            raise other_error(
                "LessThanMinimalResourcesError: VM should have 1 CPU cores at minimum"
                f" (requested {parsed.cpu})"
            )
        config["cpuCount"] = parsed.cpu
    if parsed.memory is not None:
        wanted = parsed.memory * MIB
        if wanted < MIN_MEMORY:
            raise other_error(
                f"LessThanMinimalResourcesError: VM should have {MIN_MEMORY} bytes of memory at"
                f" minimum (requested {wanted})"
            )
        config["memorySize"] = wanted
    if parsed.display is not None:  # `--display none` parses as 0x0: ignored, unit cleared
        width, height, unit = parse_display(parsed.display)
        display = config.setdefault("display", {"width": 1024, "height": 768})
        if width > 0:
            display["width"] = width
        if height > 0:
            display["height"] = height
        display.pop("unit", None)
        if unit:
            display["unit"] = unit
    config.pop("displayRefit", None)  # every `set` rewrites it: to the flag's value or nil
    if parsed.display_refit is not None:
        config = insert_before(config, "diskFormat", "displayRefit", parsed.display_refit)
    if parsed.random_mac:
        config["macAddress"] = random_mac()
    vm.save(config)
    if parsed.disk is not None:
        import shutil

        try:
            shutil.copyfile(Path(parsed.disk).expanduser(), vm.disk_path)
        except OSError as err:
            raise other_error(
                f"The file “{parsed.disk}” couldn’t be opened: {err.strerror}"
            ) from err
    if parsed.disk_size is not None:
        current = vm.disk_path.stat().st_size
        wanted = parsed.disk_size * GB
        if wanted < current:
            raise runtime_error(
                f"new disk size of {human_bytes(wanted)} should be larger than the current disk"
                f" size of {human_bytes(current)}"
            )
        if wanted > current:
            os.truncate(vm.disk_path, wanted)


def insert_before(config: dict, before: str, key: str, value: object) -> dict:
    result = {}
    for existing, item in config.items():
        if existing == before:
            result[key] = value
        result[existing] = item
    result.setdefault(key, value)
    return result


def cmd_get(parsed: Parsed) -> None:
    vm = Storage().open_local(parsed.name)
    config = vm.load()
    display = config.get("display", {})
    state = vm.state()
    info = {
        "OS": config["os"],
        "CPU": config["cpuCount"],
        "Memory": config["memorySize"] // MIB,
        "Disk": vm.size_bytes() // GB,
        "DiskFormat": config.get("diskFormat", "raw"),
        "Size": f"{vm.allocated_bytes() / GB:.3f}",
        "Display": "{}x{}{}".format(
            display.get("width", 1024), display.get("height", 768), display.get("unit", "")
        ),
        "Running": state == "running",
        "State": state,
    }
    if parsed.format == "json":
        print(apple_json(info))
    else:
        print(text_table([info], [k for k in info if k != "Running"]))


def validate_list(parsed: Parsed) -> None:
    if parsed.source is not None and parsed.source not in ("local", "oci"):
        raise Validation(f"'{parsed.source}' is not a valid <source>")


def relative(moment: datetime.datetime) -> str:
    import datetime

    seconds = int((datetime.datetime.now(datetime.UTC) - moment).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if abs(seconds) >= size or unit == "second":
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "now"


def cmd_list(parsed: Parsed) -> None:
    storage = Storage()

    def row(source: str, name: str, vm: VmDir) -> dict:
        accessed = vm.accessed()
        state = vm.state()
        return {
            "Source": source,
            "Name": name,
            "Disk": vm.size_bytes() // GB,
            "Size": vm.allocated_bytes() // GB,
            "Accessed": (
                accessed.strftime("%Y-%m-%dT%H:%M:%SZ")
                if parsed.format == "json"
                else relative(accessed)
            ),
            "Running": state == "running",
            "State": state,
        }

    rows = []
    if parsed.source in (None, "local"):
        local = [row("local", vm.name, vm) for vm in storage.local_vms()]
        rows += sorted(local, key=lambda r: r["Name"])
    if parsed.source in (None, "oci"):
        oci = [row("OCI", name, vm) for name, vm in storage.oci_vms()]
        rows += sorted(oci, key=lambda r: r["Name"])
    if parsed.quiet:
        for r in rows:
            print(r["Name"])
    elif parsed.format == "json":
        print(apple_json(rows))
    else:
        print(text_table(rows, ["Source", "Name", "Disk", "Size", "Accessed", "State"]))


def address_for(mac: str) -> str:
    """A deterministic 192.168.64.N (2..254) per MAC, like a DHCP lease."""
    import hashlib

    digest = hashlib.sha256(mac.lower().encode()).digest()
    return f"192.168.64.{2 + digest[0] % 253}"


def cmd_ip(parsed: Parsed) -> None:
    vm = Storage().open_local(parsed.name)
    config = vm.load()
    wait_until = time.monotonic() + parsed.wait
    while True:  # IP.resolveIP: try, sleep a second, repeat while now < deadline
        if vm.running():
            with suppress(OSError):
                address = (vm.path / IP_FILE).read_text().strip()
                if address:
                    print(address)
                    return
        time.sleep(1)
        if time.monotonic() >= wait_until:
            break
    message = "no IP address found"
    if not vm.running():
        message += ", is your VM running?"
    if parsed.resolver == "agent":
        message += " (also make sure that Guest agent for Tart is running inside of a VM)"
    elif parsed.resolver == "arp" and config.get("os") == "linux":
        message += " (not all Linux distributions are compatible with the ARP resolver)"
    raise runtime_error(message)


def cmd_stop(parsed: Parsed) -> None:
    import signal

    vm = Storage().open_local(parsed.name)
    state = vm.state()
    if state == "suspended":
        vm.state_path.unlink(missing_ok=True)
        return
    pid = vm.lock_pid()
    if state == "stopped" or pid == 0:
        raise runtime_error(f'VM "{parsed.name}" is not running', 2)
    with suppress(OSError):  # like Stop.swift: a VM already shutting down is fine
        os.kill(pid, signal.SIGINT)
    for _ in range(parsed.timeout * 10):
        pid = vm.lock_pid()
        if pid == 0:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as err:
        raise runtime_error(
            f'failed to forcefully terminate the VM "{parsed.name}": {os.strerror(err.errno)}'
        ) from err
    destroy_orphan_vm(vm)
    linger_lock(vm)


def linger_lock(vm: VmDir) -> None:
    """FAKE_TART_DELETE_LOCK_MS: a child takes over the lock once the killed `run` lets go."""
    milliseconds = int(os.environ.get("FAKE_TART_DELETE_LOCK_MS") or 0)
    if milliseconds <= 0:
        return
    import select
    import signal

    ready_r, ready_w = os.pipe()
    if os.fork() == 0:
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)  # never hold the caller's pipes open
            signal.alarm(10)
            fd = os.open(vm.config_path, os.O_RDWR)
            fcntl.lockf(fd, fcntl.LOCK_EX)  # waits for the killed process to release it
            os.write(ready_w, b"1")
            time.sleep(milliseconds / 1000)
        finally:
            os._exit(0)
    os.close(ready_w)
    select.select([ready_r], [], [], 5)


def cmd_delete(parsed: Parsed) -> None:
    import shutil

    storage = Storage()
    for name in parsed.name:
        remote = RemoteName.parse(name)
        if remote is not None:
            path = storage.oci_path(remote)
            if not (path.exists() or path.is_symlink()):
                raise vm_missing(name)
            if path.is_symlink():
                path.unlink()
            else:
                shutil.rmtree(path)
            continue
        vm = storage.local(name)
        try:
            fd = os.open(vm.config_path, os.O_RDWR)  # PIDLock: no config.json = no VM
        except FileNotFoundError:
            raise vm_missing(name) from None
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise runtime_error(f'VM "{name}" is running') from None
            destroy_orphan_vm(vm)
            shutil.rmtree(vm.path)
        finally:
            os.close(fd)


def cmd_rename(parsed: Parsed) -> None:
    storage = Storage()
    if not storage.exists(parsed.name):
        raise Validation(f"failed to rename a non-existent local VM: {parsed.name}")
    if storage.exists(parsed.new_name):
        raise Validation(
            f"failed to rename VM {parsed.name}, target VM {parsed.new_name} already exists,"
            " delete it first!"
        )
    target = storage.vms / parsed.new_name
    if target.exists():
        import shutil

        shutil.rmtree(target)
    os.rename(storage.vms / parsed.name, target)


def cmd_pull(parsed: Parsed) -> None:
    storage = Storage()
    if storage.exists(parsed.remote_name):
        print(f'"{parsed.remote_name}" is a local image, nothing to pull here!')
        return
    remote = RemoteName.parse(parsed.remote_name)
    if remote is None:
        raise runtime_error(f"failed to parse remote name: {parsed.remote_name} has no host")
    print(f"pulling {remote}...", flush=True)
    pull_image(storage, remote)


def cmd_exec(parsed: Parsed) -> None:
    vm = Storage().open_local(parsed.name)
    if not vm.running():
        raise runtime_error(f'VM "{parsed.name}" is not running', 2)
    raise runtime_error(
        "Failed to connect to the VM using its control socket: no tart-guest-agent in the fake,"
        " is the Tart Guest Agent running?"
    )


# --- run: the blocking VM process ------------------------------------------------------------


class DirectoryShare:
    """One --dir: its name (None: unnamed), host path, read-only flag and virtio-fs tag."""

    def __init__(self, name: str | None, path: str, read_only: bool, tag: str):
        self.name, self.path, self.read_only, self.tag = name, path, read_only, tag


def swift_split(text: str, separator: str, max_splits: int | None = None) -> list[str]:
    """String.split(separator:maxSplits:): empty pieces are dropped and not counted."""
    if max_splits is None:
        return [p for p in text.split(separator) if p]
    stripped = text.lstrip(separator)
    return [p for p in stripped.split(separator, max_splits) if p] if stripped else []


def parse_dir_share(spec: str) -> DirectoryShare:
    """DirectoryShare(parseFrom:) in Run.swift: [name:]path[:options]."""
    read_only, tag = False, AUTOMOUNT_TAG
    arguments = swift_split(spec, ":")
    options = arguments[-1].split(",") if arguments else []
    found = False
    for item in options:
        if item == "ro":
            read_only, found = True, True
        elif item.startswith("tag="):
            tag, found = item[4:], True
    if found:
        arguments.pop()
    rest = ":".join(arguments)
    if rest.startswith(("http:", "https:")):
        return DirectoryShare(None, rest, read_only, tag)
    parts = swift_split(rest, ":", 1)
    if len(parts) == 2:
        return DirectoryShare(parts[0], local_path(parts[1]), read_only, tag)
    return DirectoryShare(None, local_path(parts[0] if parts else ""), read_only, tag)


def local_path(text: str) -> str:
    return os.path.abspath(os.path.expanduser(text))


def group_shares(shares: list[DirectoryShare]) -> dict[str, list[DirectoryShare]]:
    """One virtio-fs device per tag: a single unnamed share, or named shares only."""
    by_tag: dict[str, list[DirectoryShare]] = {}
    for share in shares:
        by_tag.setdefault(share.tag, []).append(share)
    for group in by_tag.values():
        single = len(group) == 1 and group[0].name is None
        if not single and any(s.name is None for s in group):
            raise Validation(
                "invalid --dir syntax:"
                " for multiple directory shares each one of them should be named"
            )
    return by_tag


def validate_run(parsed: Parsed) -> None:
    if parsed.vnc and parsed.vnc_experimental:
        raise Validation("--vnc and --vnc-experimental are mutually exclusive")
    softnet = parsed.net_softnet or any(
        v is not None
        for v in (parsed.net_softnet_allow, parsed.net_softnet_block, parsed.net_softnet_expose)
    )
    if sum([bool(parsed.net_bridged), softnet, parsed.net_host]) > 1:
        raise Validation("--net-bridged, --net-softnet and --net-host are mutually exclusive")
    if parsed.graphics and parsed.no_graphics:
        raise Validation("--graphics and --no-graphics are mutually exclusive")
    if (
        parsed.no_graphics or parsed.vnc or parsed.vnc_experimental
    ) and parsed.captures_system_keys:
        raise Validation("--captures-system-keys can only be used with the default VM view")
    if parsed.nested:
        raise Validation("Nested virtualization is available for Mac with the M3 chip, and later.")
    vm = Storage().open_local(parsed.name)
    if parsed.suspendable or vm.state() == "suspended":
        raise Validation("You can only suspend macOS VMs")
    if parsed.no_trackpad:
        raise Validation("--no-trackpad can only be used with macOS VMs")
    for disk in parsed.disk:
        if disk.endswith("-amd64.iso"):
            raise Validation(
                "Seems you have a disk targeting x86 architecture (hence amd64 in the name)."
                " Please use an 'arm64' version of the disk."
            )


class Signalled(BaseException):
    """Raised out of a test VM's boot() when a signal must interrupt it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class SignalBox:
    """Installed before anything boots: records signals; raises while the guest boots."""

    def __init__(self) -> None:
        import signal

        self.received: list[int] = []
        self.booting = False
        for signum in (signal.SIGINT, signal.SIGUSR2, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame) -> None:
        import signal

        self.received.append(signum)
        if self.booting and signum != signal.SIGUSR2:
            self.booting = False
            raise Signalled(signum)

    @contextmanager
    def interruptible(self):
        import signal

        pending = [s for s in self.received if s != signal.SIGUSR2]
        if pending:
            raise Signalled(pending[0])
        self.booting = True
        try:
            yield
        finally:
            self.booting = False

    def next(self) -> int | None:
        import signal

        fatal = [s for s in self.received if s in (signal.SIGTERM, signal.SIGHUP)]
        if fatal:
            return fatal[0]
        return self.received.pop(0) if self.received else None


class NullGuest:
    """No test VM: an address from the MAC, and a power-off when .fake-guest-poweroff appears."""

    def __init__(self, vm_path: Path, mac: str):
        self.ip = address_for(mac)
        self.poweroff = vm_path / POWEROFF_FILE

    def wait(self, timeout: float | None) -> bool:
        deadline = time.monotonic() + (timeout or 0)
        while True:
            if self.poweroff.exists():
                self.poweroff.unlink(missing_ok=True)
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def shutdown(self) -> None:
        pass

    def destroy(self) -> None:
        pass


def load_vm_module():
    """tests/harness/fakevm.py (or FAKE_TART_VM_MODULE), with the repo root on sys.path."""
    root = Path(__file__).resolve().parents[2]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import importlib
    import importlib.util

    name = os.environ.get("FAKE_TART_VM_MODULE") or "tests.harness.fakevm"
    if name.endswith(".py") or os.sep in name:
        spec = importlib.util.spec_from_file_location("fake_tart_vm_module", name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(name)


def harness_shares(by_tag: dict[str, list[DirectoryShare]]) -> dict[str, str | dict[str, str]]:
    """tag -> host path (a single unnamed share: the mount shows that directory), or
    tag -> {name: host path} (named shares: the mount shows NAME/ subdirectories)."""
    shares: dict[str, str | dict[str, str]] = {}
    for tag, group in by_tag.items():
        if len(group) == 1 and group[0].name is None:
            shares[tag] = group[0].path
        else:  # the last --dir with a given name wins
            shares[tag] = {share.name: share.path for share in group}
    return shares


def destroy_orphan_vm(vm: VmDir) -> None:
    """Power off a test VM whose `tart run` died without cleaning up (SIGKILL), as the end of
    a VZ process would; harmless when there is none."""
    state = vm.path / FAKEVM_DIR
    if os.environ.get("CLAVE_FAKEVM") != "1" or not state.exists():
        return
    reattach = getattr(load_vm_module().FakeVm, "from_state", None)
    if reattach is None:
        return
    # Nothing recorded there (the run cleaned up as it died): nothing to do, and nothing to
    # say either: the output of `stop` and `delete` stays tart's own.
    with suppress(Exception):
        reattach(state).destroy()


def die_by(signum: int) -> None:
    """Default action of SIGTERM/SIGHUP, as real tart (which does not handle them)."""
    import signal

    sys.stdout.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    time.sleep(1)
    os._exit(128 + signum)


def say(text: str) -> None:
    print(text, flush=True)


def cmd_run(parsed: Parsed, signals: SignalBox) -> int:
    storage = Storage()
    vm = storage.open_local(parsed.name)
    shares = [parse_dir_share(spec) for spec in parsed.dir]
    by_tag = group_shares(shares)
    if any(s.path.startswith(("http:", "https:")) for s in shares):
        raise runtime_error("fake tart: remote --dir archives are not modelled")
    with flocked(storage.home):  # Run.swift holds the global lock while it checks
        mac = vm.mac()
        clash = any(
            other.name != vm.name and other.running() and other.mac() == mac
            for other in storage.local_vms()
        )
        if clash:
            say("There is already a running VM with the same MAC address!")
            say("Resetting VM to assign a new MAC address...")
            vm.regenerate_mac()
            mac = vm.mac()
        # config.json is read above and never opened again: any close would drop the lock
        lock_fd = os.open(vm.config_path, os.O_RDWR)
        try:
            fcntl.lockf(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise runtime_error(f'VM "{parsed.name}" is already running!', 2) from None
    for leftover in (IP_FILE, POWEROFF_FILE):
        (vm.path / leftover).unlink(missing_ok=True)
    record = {
        "pid": os.getpid(),
        "argv": sys.argv[1:],
        "shares": [s.__dict__ for s in shares],
    }
    (vm.path / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return supervise(parsed.name, vm, mac, by_tag, signals)


def supervise(name: str, vm: VmDir, mac: str, by_tag, signals: SignalBox) -> int:
    started = time.monotonic()
    guest = None
    try:
        with signals.interruptible():
            guest = boot(name, vm, mac, by_tag)
        outcome = watch(guest, vm, started, signals)
    except Signalled as interrupt:
        outcome = interrupt.signum
    except Exception as err:  # the VM did not start: tart prints the error and exits 1
        (vm.path / IP_FILE).unlink(missing_ok=True)
        raise runtime_error(f"fake tart: the test VM did not start: {err}") from err
    try:
        return finish(outcome, guest, signals)
    finally:
        (vm.path / IP_FILE).unlink(missing_ok=True)


def boot(name: str, vm: VmDir, mac: str, by_tag: dict[str, list[DirectoryShare]]):
    if os.environ.get("CLAVE_FAKEVM") != "1":
        return NullGuest(vm.path, mac)
    destroy_orphan_vm(vm)  # left by a SIGKILLed run; we hold the lock, so it is no one's
    import inspect

    fake_vm = load_vm_module().FakeVm
    options = {}
    if "die_with_parent" in inspect.signature(fake_vm.boot).parameters:
        options["die_with_parent"] = True  # a SIGKILLed `tart run` takes its VM with it
    return fake_vm.boot(name, harness_shares(by_tag), vm.path / FAKEVM_DIR, **options)


def watch(guest, vm: VmDir, started: float, signals: SignalBox) -> int | str:
    """Until a signal or the guest's own power-off; publishes the address once booted."""
    boot_time = latency("run")
    published = False
    while True:
        received = signals.next()
        if received is not None:
            return received
        if not published and time.monotonic() - started >= boot_time:
            tmp = vm.path / f"{IP_FILE}.tmp"
            tmp.write_text(guest.ip + "\n")
            os.replace(tmp, vm.path / IP_FILE)
            published = True
        try:
            with signals.interruptible():   # tart reacts to a signal at once, not at a tick
                if guest.wait(0.1):
                    return "guest"
        except Signalled as interrupt:
            return interrupt.signum


def finish(outcome: int | str, guest, signals: SignalBox) -> int:
    import signal

    if outcome in (signal.SIGTERM, signal.SIGHUP):
        if guest is not None:
            guest.destroy()
        die_by(outcome)
    if outcome == signal.SIGINT:  # hard power-off
        say("Stopping VM...")
        time.sleep(latency("stop"))  # a SIGKILL meanwhile leaves the VM to `stop` to clean
        if guest is not None:
            guest.destroy()
    elif outcome == signal.SIGUSR2:  # ACPI power button: the guest shuts itself down
        say("Requesting guest OS to stop...")
        if guest is not None:
            guest.shutdown()
            guest.destroy()
        say("guest has stopped the virtual machine")
    else:
        if guest is not None:
            guest.destroy()
        say("guest has stopped the virtual machine")
    late = signals.next()
    if late in (signal.SIGTERM, signal.SIGHUP):
        die_by(late)
    return 0


# --- the command table -----------------------------------------------------------------------

FORMAT = choice("text", "json")

COMMANDS: dict[str, Command] = {
    "clone": Command(
        "clone",
        [
            positional("source-name"),
            positional("new-name"),
            flag("insecure"),
            option("concurrency", convert=unsigned(64), default=4),
            flag("deduplicate", hidden=True),
            option("prune-limit", "n", unsigned(64), default=100),
        ],
        cmd_clone,
        validate_clone,
    ),
    "create": Command(
        "create",
        [
            positional("name"),
            option("from-ipsw", "path"),
            flag("linux"),
            option("disk-size", convert=unsigned(16), default=50),
            option("disk-format", convert=choice("raw", "asif"), default="raw"),
        ],
        cmd_create,
        validate_create,
    ),
    "run": Command(
        "run",
        [
            positional("name"),
            flag("no-graphics"),
            flag("serial"),
            option("serial-path"),
            flag("graphics", hidden=True),
            flag("no-audio"),
            flag("no-clipboard"),
            flag("recovery"),
            flag("vnc"),
            flag("vnc-experimental"),
            option("disk", repeat=True),
            option("rosetta", "tag"),
            option("dir", repeat=True),
            flag("nested"),
            option("net-bridged", "interface name", repeat=True),
            flag("net-softnet"),
            option("net-softnet-allow", "comma-separated CIDRs"),
            option("net-softnet-block", "comma-separated CIDRs"),
            option("net-softnet-expose", "comma-separated port specifications"),
            flag("net-host"),
            option("root-disk-opts", "options", default=""),
            flag("suspendable"),
            flag("captures-system-keys"),
            flag("no-trackpad"),
            flag("no-pointer"),
            flag("no-keyboard"),
        ],
        None,  # dispatched by main(): it needs the signal box
        validate_run,
    ),
    "set": Command(
        "set",
        [
            positional("name"),
            option("cpu", convert=unsigned(16)),
            option("memory", convert=unsigned(64)),
            option("display"),
            Arg("display-refit", None, bool, default=None),
            flag("random-mac"),
            flag("random-serial"),
            option("disk", "path"),
            option("disk-size", convert=unsigned(16)),
        ],
        cmd_set,
    ),
    "get": Command(
        "get", [positional("name"), option("format", convert=FORMAT, default="text")], cmd_get
    ),
    "list": Command(
        "list",
        [
            option("source"),
            option("format", convert=FORMAT, default="text"),
            flag("quiet", short="q"),
        ],
        cmd_list,
        validate_list,
    ),
    "ip": Command(
        "ip",
        [
            positional("name"),
            option("wait", convert=unsigned(16), default=0),
            option("resolver", convert=choice("dhcp", "arp", "agent"), default="dhcp"),
        ],
        cmd_ip,
    ),
    "stop": Command(
        "stop",
        [positional("name"), option("timeout", convert=unsigned(63), short="t", default=30)],
        cmd_stop,
    ),
    "delete": Command("delete", [positional("name", repeat=True)], cmd_delete),
    "rename": Command(
        "rename", [positional("name"), positional("new-name")], cmd_rename, local_name_check
    ),
    "pull": Command(
        "pull",
        [
            positional("remote-name"),
            flag("insecure"),
            option("concurrency", convert=unsigned(64), default=4),
            flag("deduplicate", hidden=True),
        ],
        cmd_pull,
    ),
    "exec": Command(
        "exec",
        [
            flag("interactive", short="i"),
            flag("tty", short="t"),
            positional("name"),
            positional("command", repeat=True),
        ],
        cmd_exec,
    ),
}
NOT_MODELLED = ("login", "logout", "push", "import", "export", "prune", "suspend", "fqn")


def root_usage_error(message: str) -> TartFailure:
    text = f"Error: {message}\nUsage: tart <subcommand>\n  See 'tart --help' for more information."
    return TartFailure(text, EX_USAGE)


def root_help() -> str:
    names = ", ".join(list(COMMANDS) + list(NOT_MODELLED))
    return (
        f"OVERVIEW: fake tart {VERSION} for clave's tests\n\n"
        f"USAGE: tart <subcommand>\n\nSUBCOMMANDS: {names}"
    )


def dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(root_help())
        return 0
    if argv[0] == "--version":
        print(VERSION)
        return 0
    verb, rest = argv[0], argv[1:]
    if verb in NOT_MODELLED:
        raise runtime_error(f'fake tart: "tart {verb}" is not modelled')
    command = COMMANDS.get(verb)
    if command is None:
        raise root_usage_error(f"Unexpected argument '{verb}'")
    signals = SignalBox() if verb == "run" else None
    if verb == "exec":
        rest = exec_argv(rest)
    parsed = parse(command, rest)
    failure = injected_failure(verb)
    if failure is not None:
        raise failure
    if verb not in ("pull", "clone"):
        Storage().collect_garbage()
    if verb not in ("run", "stop", "clone"):   # these three spend their latency themselves
        time.sleep(latency(verb))
    try:
        if verb == "run":
            return cmd_run(parsed, signals)
        command.run(parsed)
    except Validation as err:  # a ValidationError thrown from run()
        raise command.usage_error(str(err)) from None
    return 0


def exec_argv(rest: list[str]) -> list[str]:
    """`tart exec [-i] [-t] NAME CMD...`: everything after NAME belongs to the command."""
    head = []
    for index, token in enumerate(rest):
        if looks_like_option(token):
            head.append(token)
            continue
        return head + [token, "--"] + rest[index + 1 :]
    return head


def main(argv: list[str]) -> int:
    log_invocation(argv[1:])
    try:
        return dispatch(argv[1:])
    except TartFailure as failure:
        sys.stdout.flush()
        print(failure.text, file=sys.stderr, flush=True)
        return failure.code
    except Validation as err:
        print(f"Error: {err}", file=sys.stderr, flush=True)
        return EX_USAGE


if __name__ == "__main__":
    sys.exit(main(sys.argv))
