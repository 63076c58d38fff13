"""What every stand-in shares: where calls are recorded and the fake package world's state.

The stand-ins replace, inside a Linux test VM only, programs that would reach the internet
(apt-get, add-apt-repository, curl) or that the image does not have yet (php 8.4). Each one
records its call as a JSON line and then does what the real program would do to the VM's
files, without downloading or installing anything real.
tests/integration/test_fragments_in_vm.py copies this directory to STANDIN_DIR in the VM.
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

STANDIN_DIR = Path("/usr/local/clave-standins")
LOG = Path("/var/log/clave-standins/calls.jsonl")     # 0666: admin's calls are recorded too
STATE = Path("/var/lib/clave-standins")               # lists.json, installed, fail/<host>
SOURCES = Path("/etc/apt/sources.list.d")
# an apt source is known by a string in its file; `apt-get update` makes its packages visible
ORIGINS = {"ondrej-php": "ppa.launchpadcontent.net/ondrej/php/ubuntu",
           "nodesource-22": "deb.nodesource.com/node_22.x"}


def record(prog: str, argv: list[str]) -> None:
    entry = {"prog": prog, "argv": argv, "user": pwd.getpwuid(os.geteuid()).pw_name,
             "home": os.environ.get("HOME", ""), "cwd": os.getcwd()}
    with LOG.open("a") as log:
        log.write(json.dumps(entry) + "\n")


def configured_origins() -> list[str]:
    """The known origins the VM's apt sources name right now."""
    texts = [p.read_text(errors="replace") for p in sorted(SOURCES.glob("*")) if p.is_file()]
    return sorted(name for name, needle in ORIGINS.items() if any(needle in t for t in texts))


def updated_origins() -> list[str]:
    """The origins apt knew at its last update (what `apt-get install` can draw from)."""
    try:
        return json.loads((STATE / "lists.json").read_text())
    except (OSError, ValueError):
        return []


def apt_update() -> None:
    (STATE / "lists.json").write_text(json.dumps(configured_origins()))


def take_failure(key: str) -> bool:
    """True (and one fewer left) when the test asked for `key` to fail: STATE/fail/<key>."""
    path = STATE / "fail" / key
    try:
        left = int(path.read_text() or "0")
    except (OSError, ValueError):
        return False
    if left <= 0:
        return False
    path.write_text(str(left - 1))
    return True
