"""`clave sessions`: the table, --json, and never creating the store just to read it."""

from __future__ import annotations

import io
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from clave.commands import sessions
from clave.home import Home
from clave.store import Store
from clave.support import process

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def home(clave_home) -> Home:
    return Home(clave_home / "state")


def seed(home: Home, session_id: str, minutes_ago: int, **fields) -> None:
    with Store.open(home) as store:
        store.add(session_id=session_id, project_name="shop", project_dir="/code/shop",
                  started_at=NOW - timedelta(minutes=minutes_ago), **fields)


def run(home: Home, *, as_json: bool = False) -> str:
    out = io.StringIO()
    assert sessions.run(home=home, as_json=as_json, out=out, now=NOW) == 0
    return out.getvalue()


def test_an_empty_home_says_no_sessions_and_creates_nothing(home):
    assert run(home) == "No sessions.\n"
    assert not home.root.exists()


def test_an_empty_home_gives_an_empty_json_array_and_creates_nothing(home):
    assert json.loads(run(home, as_json=True)) == []
    assert not home.root.exists()


def test_an_existing_but_empty_store_says_no_sessions(home):
    Store.open(home).close()
    assert run(home) == "No sessions.\n"


def test_the_table_shows_every_column_of_every_session(home):
    seed(home, "aaaa1111", 3, clone_branch="clave/s-aaaa1111", vm_name="clave-aaaa1111",
         app_url="https://shop-aaaa1111.test", status="running")
    seed(home, "bbbb2222", 0, tunnel_port=8082)
    printed = run(home)
    header = next(line for line in printed.splitlines() if "ID" in line)
    for title in sessions.HEADERS:
        assert title in header
    first = next(line for line in printed.splitlines() if "aaaa1111" in line)
    for cell in ("shop", "clave/s-aaaa1111", "clave-aaaa1111", "https://shop-aaaa1111.test",
                 "running", "3 min ago"):
        assert cell in first
    second = next(line for line in printed.splitlines() if "bbbb2222" in line)
    for cell in ("127.0.0.1:8082", "starting", "just now"):
        assert cell in second
    assert "No sessions." not in printed
    assert "\x1b" not in printed             # not a terminal: plain text


def test_json_lists_every_record_with_all_columns(home):
    seed(home, "aaaa1111", 3, vm_name="clave-aaaa1111", tunnel_port=8081)
    records = json.loads(run(home, as_json=True))
    assert [r["session_id"] for r in records] == ["aaaa1111"]
    record = records[0]
    assert record["vm_name"] == "clave-aaaa1111"
    assert record["tunnel_port"] == 8081
    assert record["project_dir"] == "/code/shop"
    assert record["status"] == "starting"
    assert datetime.fromisoformat(record["started_at"]) == NOW - timedelta(minutes=3)
    assert {"clone_path", "tart_pid", "proxy_name", "updated_at"} <= record.keys()


def test_a_session_whose_clave_died_shows_as_detached_with_what_to_do(home):
    gone = subprocess.Popen(["true"])
    gone.wait()
    seed(home, "aaaa1111", 3, status="running", clave_pid=gone.pid)
    seed(home, "bbbb2222", 1, status="running", clave_pid=os.getpid(),
         clave_started=process.started(os.getpid()))
    printed = run(home)
    assert "detached" in next(line for line in printed.splitlines() if "aaaa1111" in line)
    assert "running" in next(line for line in printed.splitlines() if "bbbb2222" in line)
    assert "`clave --resume ID` re-attaches, `clave cleanup` removes what it left" in printed
    listed = {r["session_id"]: r["attached"] for r in json.loads(run(home, as_json=True))}
    assert listed == {"aaaa1111": False, "bbbb2222": True}


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(seconds=10), "just now"),
    (timedelta(minutes=1), "1 min ago"),
    (timedelta(minutes=59), "59 min ago"),
    (timedelta(hours=1), "1 hour ago"),
    (timedelta(hours=5, minutes=30), "5 hours ago"),
    (timedelta(days=1), "1 day ago"),
    (timedelta(days=12), "12 days ago"),
    (timedelta(minutes=-5), "just now"),      # a clock step back never says "in 5 min"
])
def test_ago_reads_like_a_person_would_say_it(delta, text):
    assert sessions.ago(NOW - delta, NOW) == text
