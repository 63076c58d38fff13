"""`clave config`: the merged settings and where each came from; get/set/unset edit the user file.

Thin on purpose: `clave.config` reads, validates and writes; this module only formats.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from clave import config

MASK = "*****"
HEADER = ("KEY", "VALUE", "SOURCE")


def show(*, project_dir: Path | None, out: TextIO) -> int:
    """Every setting, its value (secrets masked) and the layer that set it."""
    settings = config.load(project_dir)
    from clave.ui import Ui

    rows = [(path, _shown(path, value), source) for path, value, source in settings.items()]
    Ui.create(out=out).table(HEADER, rows)
    return 0


def get(key: str, *, project_dir: Path | None, out: TextIO) -> int:
    """The merged value of one setting or section: text as is, anything else as JSON."""
    config.require_key(key)
    out.write(f"{format_value(config.load(project_dir).get(key))}\n")
    return 0


def set_value(key: str, value: str, *, out: TextIO) -> int:
    """Store one setting in the user file; an invalid value leaves the file untouched."""
    config.require_key(key, leaf=True)
    parsed = config.parse_value(key, value)
    config.check_value(key, parsed)
    data = config.read_user_file()
    section, _, name = key.rpartition(".")
    (data.setdefault(section, {}) if section else data)[name] = parsed
    path = config.write_user_file(data)
    out.write(f"Set {key} = {_shown(key, parsed)} in {config.display_path(path)}.\n")
    return 0


def unset(key: str, *, out: TextIO) -> int:
    """Remove one setting from the user file, so the next layer down applies again."""
    config.require_key(key, leaf=True)
    data = config.read_user_file()
    section, _, name = key.rpartition(".")
    holder = data.get(section, {}) if section else data
    where = config.display_path(config.user_config_file())
    if name not in holder:
        out.write(f"{key} is not set in {where}; nothing to do.\n")
        return 0
    del holder[name]
    if section and not holder:
        del data[section]
    config.write_user_file(data)
    out.write(f"Removed {key} from {where}.\n")
    return 0


def format_value(value: Any) -> str:
    """Text as typed; numbers, booleans, null, lists and sections as JSON."""
    return value if isinstance(value, str) and value else json.dumps(value)


def _shown(key: str, value: Any) -> str:
    return MASK if key in config.SECRETS else format_value(value)

