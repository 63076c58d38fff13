"""The base image as ordered shell fragments, and the script that applies them.

Each fragment is `NN-name.sh` with a two-line header (`# name:`, `# description:`).
A fragment's digest covers its text, so editing one fragment makes exactly that step stale.
The whole script's digest is the image checksum, recorded in the image and on the host.

`CLAVE_PROVISION_DIR` names another directory of fragments to use instead of the built-in
ones (the e2e tests drive the provisioning machinery with a tiny set this way).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from clave.errors import ConfigError

BUILTIN_DIR = Path(__file__).resolve().parent
OPTIONAL_DIR = BUILTIN_DIR / "optional"
DIR_ENV = "CLAVE_PROVISION_DIR"
IMAGE_RECORD = "/etc/clave/image.json"
PRELUDE = "#!/usr/bin/env bash\nset -euo pipefail\nexport DEBIAN_FRONTEND=noninteractive\n"
_FILE_NAME = re.compile(r"^(\d{2})-([a-z0-9][a-z0-9-]*)\.sh$")
_STEP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")   # it becomes a file and task name in the VM
_HEADER = re.compile(r"^#\s*(name|description):\s*(.+?)\s*$")


@dataclass(frozen=True)
class Fragment:
    order: str
    name: str
    description: str
    body: str
    path: Path

    @property
    def key(self) -> str:
        """`20-php`: the fragment's stable identity in digests and task names."""
        return f"{self.order}-{self.name}"

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()

    def script(self) -> str:
        """The fragment alone, runnable with `bash` (what one provisioning task executes)."""
        return f"{PRELUDE}# {self.key}: {self.description}\n{self.body}"


def read_fragment(path: Path, order: str | None = None) -> Fragment:
    """Parse one fragment; `order` is given for extra steps, whose file names are free."""
    match = _FILE_NAME.match(path.name)
    if match is None and order is None:
        raise ConfigError(f"{path}: a provisioning fragment must be named NN-name.sh "
                          "(two digits, a dash, lowercase letters, digits or dashes).")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read this provisioning fragment ({err}).") from None
    header = {}
    for line in text.splitlines()[:2]:
        field = _HEADER.match(line)
        if field:
            header[field.group(1)] = field.group(2)
    if set(header) != {"name", "description"}:
        raise ConfigError(f"{path}: the first two lines must be `# name: …` and "
                          "`# description: …`.")
    name = header["name"]
    if not _STEP_NAME.match(name):
        raise ConfigError(f"{path}: step name {name!r} must be lowercase letters, digits "
                          "and dashes (it names a file and a task in the VM).")
    if order is None and name != match.group(2):
        raise ConfigError(f"{path}: the header says `name: {name}` but the file is named "
                          f"{match.group(2)!r}; make them the same.")
    return Fragment(order or match.group(1), name, header["description"], text, path)


def builtin_fragments(directory: Path = BUILTIN_DIR) -> list[Fragment]:
    """Every `*.sh` in the directory: a badly named one is refused, never silently skipped."""
    return [read_fragment(p) for p in sorted(directory.glob("*.sh"))]


def fragments_dir(environ: dict[str, str] | None = None) -> Path:
    """The built-in fragments, or the directory `CLAVE_PROVISION_DIR` names."""
    custom = (os.environ if environ is None else environ).get(DIR_ENV)
    if not custom:
        return BUILTIN_DIR
    path = Path(custom).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{DIR_ENV}={custom}: no such directory of provisioning fragments; "
                          "unset it to use the built-in ones.")
    return path


def resolve_extra(names: Iterable[str], project_dir: Path | None) -> list[Fragment]:
    """`services-vm` names an optional built-in; anything else is a project file path."""
    extra = []
    for name in names:
        optional = OPTIONAL_DIR / f"{name}.sh"
        if optional.is_file():
            extra.append(read_fragment(optional, order="80"))
            continue
        path = (project_dir or Path.cwd()) / name
        if not path.is_file():
            known = ", ".join(p.stem for p in sorted(OPTIONAL_DIR.glob("*.sh")))
            raise ConfigError(f"provision.extra_steps: {name!r} is neither a built-in "
                              f"optional step ({known}) nor a file in the project.")
        extra.append(read_fragment(path, order="85"))
    return extra


class ProvisioningPipeline:
    def __init__(self, fragments: Sequence[Fragment]):
        keys = [f.key for f in fragments]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ConfigError(f"provisioning steps named twice: {', '.join(duplicates)}.")
        self.fragments = sorted(fragments, key=lambda f: (f.order, f.name))

    @classmethod
    def load(cls, extra: Iterable[str] = (), project_dir: Path | None = None,
             services_vm: bool = False) -> ProvisioningPipeline:
        names = list(extra)
        if services_vm and "services-vm" not in names:
            names.append("services-vm")
        return cls(builtin_fragments(fragments_dir()) + resolve_extra(names, project_dir))

    def digests(self) -> dict[str, str]:
        return {f.key: f.digest for f in self.fragments}

    @property
    def checksum(self) -> str:
        """The image checksum: changes when any step, or the set of steps, changes."""
        return hashlib.sha256(json.dumps(self.digests(), sort_keys=True).encode()).hexdigest()

    def record_command(self) -> str:
        """Shell that writes the digests into the image (read back by `clave doctor`)."""
        record = json.dumps({"checksum": self.checksum, "steps": self.digests()}, indent=2)
        target = PurePosixPath(IMAGE_RECORD)
        return (f"install -d {shlex.quote(str(target.parent))} && "
                f"cat > {shlex.quote(str(target))} <<'CLAVE_IMAGE'\n{record}\nCLAVE_IMAGE\n")

    def to_script(self) -> str:
        """One self-contained script: every step in order, each in its own subshell."""
        parts = [PRELUDE, f"# clave base image {self.checksum}\n"]
        for f in self.fragments:
            banner = shlex.quote(f"==> {f.key}: {f.description}")
            parts.append(f"\necho {banner}\n(\n{f.body.rstrip()}\n)\n")
        parts.append("\n" + self.record_command())
        return "".join(parts)
