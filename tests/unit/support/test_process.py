"""Whether the process that wrote a pid still runs: pid, zombie state and start stamp."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from clave.support import process


def test_this_process_is_alive_and_no_pid_is_not():
    assert process.alive(os.getpid())
    assert not process.alive(None) and not process.alive(0)


def test_a_reaped_process_is_dead():
    child = subprocess.Popen(["true"])
    child.wait()
    assert not process.alive(child.pid) and process.started(child.pid) is None


def test_a_zombie_is_dead():
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        stat = Path(f"/proc/{child.pid}/stat")
        while stat.read_text().split(") ")[-1][:1] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert not process.alive(child.pid)
    finally:
        child.wait()


def test_a_pid_is_alive_only_as_the_process_that_started_when_it_was_recorded():
    stamp = process.started(os.getpid())
    assert stamp and stamp == process.started(os.getpid())
    assert process.alive(os.getpid(), stamp)
    assert not process.alive(os.getpid(), "another-boot:12345")   # a reused pid


def test_two_processes_have_different_stamps():
    child = subprocess.Popen(["sleep", "5"])
    try:
        assert process.started(child.pid) not in (None, process.started(os.getpid()))
    finally:
        child.kill()
        child.wait()
