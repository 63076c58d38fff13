"""Remembers settings that already passed their schema, so they are not checked again.

Importing jsonschema costs about 60 ms, and every clave start reads the same config file
and variables. An entry is a digest of the data and of the schema text it passed: a changed
file, variable or schema is checked afresh. Only successes are kept, so every error is
still found and explained by jsonschema.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

LIMIT = 64   # entries kept: enough for a few projects' files and variables


class ValidCache:
    def __init__(self, path: Path):
        self.path = path

    @staticmethod
    def key(*parts: Any) -> str:
        text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def __contains__(self, key: str) -> bool:
        return key in self._entries()

    def add(self, key: str) -> None:
        """Best effort: a home that cannot be written only means checking again next time.
        A home that does not exist yet is not made for a cache: a command that then fails
        must leave nothing behind."""
        entries = [e for e in self._entries() if e != key][-(LIMIT - 1):] + [key]
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}")
            temporary.write_text("".join(f"{e}\n" for e in entries))
            os.replace(temporary, self.path)

    def _entries(self) -> list[str]:
        try:
            return self.path.read_text().split()
        except OSError:
            return []
