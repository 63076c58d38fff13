"""pytest plugin: Linux test VMs, host MariaDB + Redis, and a leak check after every VM test.

Fixtures: `bridge` (session: the gateway network), `host_services` (session: MariaDB and
Redis on the gateway address and 127.0.0.1), `test_vm` (a booted VM, SSH and HTTP up, with a
copy of tests/fixtures/app owned by admin shared under the tag `project` but, as on Tart,
not mounted: call `vm.mount_share()`), `test_vms` (a factory booting several at once).
Tests using them are marked `vm`; every `vm` test fails if it leaves a namespace, veth,
mount, VM, process or port behind. Without root or the Debian packages they skip with the
reason, except under CLAVE_REQUIRE_VMS=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness import hostsvc, leaks
from tests.harness.fakevm import DEFAULT_ADMIN_UID, OWNER_ENV, FakeVm, unavailable_reason
from tests.harness.hostsvc import HostServices
from tests.harness.network import Network

APP = Path(__file__).resolve().parent.parent / "fixtures" / "app"
VM_FIXTURES = {"bridge", "host_services", "test_vm", "test_vms"}
BOOT_TIMEOUT = 60  # a bound, not a speed test: 2 cores shared by several test runs


def pytest_configure(config: pytest.Config) -> None:
    # tags every VM and process this run starts, so leak checks ignore other runs' VMs
    os.environ.setdefault(OWNER_ENV, f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    config.addinivalue_line("markers", "vm: needs Linux test VMs (root, Debian packages)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if VM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.vm)


def owner() -> str:
    return os.environ[OWNER_ENV]


def require(reason: str | None) -> None:
    """Skip with reason, or fail under CLAVE_REQUIRE_VMS=1 (where a skip would hide a gap)."""
    if reason is None:
        return
    if os.environ.get("CLAVE_REQUIRE_VMS") == "1":
        pytest.fail(f"CLAVE_REQUIRE_VMS=1, but {reason}", pytrace=False)
    pytest.skip(reason)


def copy_app(dest: Path, uid: int = DEFAULT_ADMIN_UID) -> Path:
    """A private copy of the fixture app owned by uid (the VM's admin gets the owner's uid,
    so admin can write it as on a Mac, where VirtioFS shows files as the viewer's)."""
    shutil.copytree(APP, dest)
    for root, dirs, files in os.walk(dest):
        for name in [root, *(os.path.join(root, f) for f in dirs + files)]:
            os.lchown(name, uid, uid)
    return dest


@pytest.fixture(autouse=True)
def vm_leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a `vm` test that leaves anything behind (what existed before it is ignored)."""
    if request.node.get_closest_marker("vm") is None:
        yield
        return
    require(unavailable_reason())
    before = set(leaks.check(owner()))
    yield
    left = leaks.wait_clean(owner(), before)
    if left:
        pytest.fail("the test left behind:\n  " + "\n  ".join(left), pytrace=False)


@pytest.fixture(scope="session")
def bridge() -> Iterator[Network]:
    """The bridge whose address is the VMs' gateway; removed at the end if no VM uses it."""
    require(unavailable_reason())
    net = Network.from_env()
    net.ensure_bridge()
    yield net
    net.remove_bridge()  # kept while another test run's VMs are attached


@pytest.fixture(scope="session")
def host_services(bridge: Network, tmp_path_factory) -> Iterator[HostServices]:
    """MariaDB + Redis on the gateway address and on 127.0.0.1, for the whole session."""
    require(hostsvc.unavailable_reason())
    services = HostServices.start(bridge.root / "hostsvc" / owner(), [bridge.gateway, "127.0.0.1"])
    yield services
    services.stop()


@pytest.fixture
def test_vms(bridge: Network, tmp_path: Path) -> Iterator[Callable[[int], list[FakeVm]]]:
    """`test_vms(n)` boots n VMs at once, each with its own app copy; all destroyed after."""
    booted: list[FakeVm] = []

    def boot_one(number: int) -> FakeVm:
        base = tmp_path / f"vm{number}"
        project = copy_app(base / "project")
        vm = FakeVm.boot(f"clave-test-{number}", {"project": str(project)}, base / "state")
        booted.append(vm)
        vm.wait_ssh(BOOT_TIMEOUT)
        vm.wait_port(80, BOOT_TIMEOUT)
        return vm

    def make(count: int) -> list[FakeVm]:
        first = len(booted) + 1
        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(boot_one, range(first, first + count)))

    try:
        yield make
    finally:
        for vm in booted:
            vm.destroy()


@pytest.fixture
def test_vm(test_vms: Callable[[int], list[FakeVm]]) -> FakeVm:
    """One booted VM (sshd and nginx up); its app copy is at Path(vm.shares['project'])."""
    return test_vms(1)[0]
