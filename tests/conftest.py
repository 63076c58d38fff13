"""Shared fixtures: every test gets its own CLAVE_HOME and user config directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAKES = ROOT / "tests" / "fakes"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Linux test VMs, host MariaDB/Redis and the leak check (skip, or fail under CLAVE_REQUIRE_VMS=1)
pytest_plugins = ["tests.harness.fixtures"]


@pytest.fixture(autouse=True)
def clave_home(tmp_path_factory, monkeypatch) -> Path:
    """A private CLAVE_HOME and XDG_CONFIG_HOME so no test touches the real ones."""
    home = tmp_path_factory.mktemp("clave-home")
    monkeypatch.setenv("CLAVE_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    for name in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return home
