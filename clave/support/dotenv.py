"""Patch a Laravel .env in place: change the keys clave owns, keep every other byte."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

_ASSIGNMENT = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)(\s*=)(.*)$")
_SAFE = re.compile(r"^[A-Za-z0-9_./:@%+,-]*$")


def format_value(value: str) -> str:
    """Quote only when needed, the way Laravel's own .env files look."""
    if _SAFE.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def patch_text(text: str, values: Mapping[str, str]) -> str:
    """Replace the first assignment of each key; append missing keys at the end."""
    pending = dict(values)
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        match = _ASSIGNMENT.match(line.rstrip("\r\n"))
        if not match or match.group(2) not in pending:
            continue
        key = match.group(2)
        ending = line[len(line.rstrip("\r\n")):]
        lines[i] = f"{match.group(1)}{key}{match.group(3)}{format_value(pending.pop(key))}{ending}"
    if pending:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.extend(f"{key}={format_value(value)}\n" for key, value in pending.items())
    return "".join(lines)


def patch_file(path: Path, values: Mapping[str, str], example: Path | None = None) -> bool:
    """Patch `path` atomically, creating it from `example` when missing. True if created."""
    created = not path.exists()
    if created and example is not None and example.exists():
        text = example.read_text()
    elif created:
        text = ""
    else:
        text = path.read_text()
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".env.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(patch_text(text, values))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return created
