"""allocate_port: free, distinct across concurrent clave processes, released on exit."""

from __future__ import annotations

import multiprocessing
import socket
from pathlib import Path

import pytest

from clave.errors import ClaveError
from clave.support.ports import allocate_port, port_in_use

PROCESSES = 20


def _free_ports(count: int, start: int = 21000) -> int:
    """The first of `count` consecutive ports nothing is bound to (outside the ephemeral range)."""
    for first in range(start, 30000):
        if not any(port_in_use(p) for p in range(first, first + count)):
            return first
    raise AssertionError("no free consecutive ports on this machine")


def _bound(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def _hold_a_port(lock_dir: Path, barrier, results) -> None:
    with allocate_port(lock_dir=lock_dir) as port:
        results.put(port)
        barrier.wait(timeout=60)  # keep holding until every process has its port


def test_twenty_concurrent_processes_get_twenty_distinct_ports(tmp_path):
    methods = multiprocessing.get_all_start_methods()
    mp = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    barrier, results = mp.Barrier(PROCESSES), mp.Queue()
    workers = [
        mp.Process(target=_hold_a_port, args=(tmp_path, barrier, results)) for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    ports: list[int] = []
    try:
        for _ in workers:
            ports.append(results.get(timeout=60))
    finally:
        if len(ports) < PROCESSES:
            barrier.abort()  # let the others go instead of waiting out their timeout
        for worker in workers:
            worker.join(timeout=60)
    assert len(set(ports)) == PROCESSES
    assert all(8081 <= port <= 8199 for port in ports)
    assert all(worker.exitcode == 0 for worker in workers)


def test_the_port_is_free_for_the_caller_to_bind(tmp_path):
    with allocate_port(lock_dir=tmp_path) as port:
        _bound(port).close()


def test_a_port_bound_by_another_program_is_skipped(tmp_path):
    first = _free_ports(2)
    with _bound(first), allocate_port(first, first + 1, lock_dir=tmp_path) as port:
        assert port == first + 1


def test_a_port_held_by_another_clave_is_skipped(tmp_path):
    first = _free_ports(2)
    with (
        allocate_port(first, first + 1, lock_dir=tmp_path) as held,
        allocate_port(first, first + 1, lock_dir=tmp_path) as port,
    ):
        assert (held, port) == (first, first + 1)


def test_the_port_is_released_when_the_block_exits(tmp_path):
    first = _free_ports(1)
    with allocate_port(first, first, lock_dir=tmp_path):
        pass
    with allocate_port(first, first, lock_dir=tmp_path) as again:
        assert again == first


def test_the_port_is_released_when_the_block_raises(tmp_path):
    first = _free_ports(1)
    with pytest.raises(RuntimeError), allocate_port(first, first, lock_dir=tmp_path):
        raise RuntimeError("tunnel failed")
    with allocate_port(first, first, lock_dir=tmp_path) as again:
        assert again == first


def test_an_exhausted_range_is_a_clear_error(tmp_path):
    first = _free_ports(2)
    with (
        _bound(first),
        allocate_port(first + 1, first + 1, lock_dir=tmp_path),
        pytest.raises(ClaveError) as caught,
        allocate_port(first, first + 1, lock_dir=tmp_path),
    ):
        pass
    message = caught.value.message
    assert message.startswith(f"no free port in {first}–{first + 1}: ")
    assert "1 in use by other programs, 1 held by other clave sessions" in message


def test_locks_live_under_clave_home_by_default(clave_home):
    with allocate_port() as port:
        assert (clave_home / "ports" / f"{port}.lock").exists()


def test_port_in_use_sees_a_listening_socket():
    first = _free_ports(1)
    assert port_in_use(first) is False
    with _bound(first):
        assert port_in_use(first) is True
