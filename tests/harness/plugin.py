"""Test modules whose fixtures and leak check come from the harness plugin call
`require_plugin()` at module level: run without it (a file given to pytest from another
root, say), they skip with the way to load it, or fail under CLAVE_REQUIRE_VMS=1.

This module never imports the plugin itself: that would make the check always pass.
"""

from __future__ import annotations

import os
import sys

import pytest

PLUGIN = "tests.harness.fixtures"


def require_plugin() -> None:
    if PLUGIN in sys.modules:
        return
    reason = f"the Linux test VM fixtures are not loaded: run pytest with `-p {PLUGIN}`"
    if os.environ.get("CLAVE_REQUIRE_VMS") == "1":
        pytest.fail(reason + " (CLAVE_REQUIRE_VMS=1)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)
