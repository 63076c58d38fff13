"""Real OpenSSH servers on 127.0.0.1 for the SSH and tunnel tests."""

from __future__ import annotations

import pytest

from tests.unit.support.sshd import running_sshd


@pytest.fixture(scope="module")
def sshd():
    """One server shared by a module's tests."""
    with running_sshd() as server:
        yield server


@pytest.fixture
def own_sshd():
    """A server this test may kill or restart."""
    with running_sshd() as server:
        yield server
