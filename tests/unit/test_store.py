"""clave.store: the sessions table, its journal, migrations and concurrent writers."""

from __future__ import annotations

import multiprocessing
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clave.context import ServicesMode
from clave.errors import ClaveError
from clave.home import Home
from clave.store import MIGRATIONS, SCHEMA_VERSION, SessionStatus, Store


@pytest.fixture
def home(tmp_path) -> Home:
    return Home(tmp_path / "clave-home")


@pytest.fixture
def store(home):
    with Store.open(home) as store:
        yield store


def a_session(session_id: str = "abcd1234", project_dir: str = "/code/shop", **fields) -> dict:
    return dict(session_id=session_id, project_name=Path(project_dir).name,
                project_dir=Path(project_dir), **fields)


# -- opening -------------------------------------------------------------------------------

def test_open_creates_a_private_home_and_database(home):
    Store.open(home).close()
    assert stat.S_IMODE(home.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(home.db.stat().st_mode) == 0o600


def test_open_uses_wal_and_the_current_schema_version(home):
    Store.open(home).close()
    with sqlite3.connect(home.db) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_open_defaults_to_clave_home_from_the_environment(clave_home):
    Store.open().close()
    assert (clave_home / "clave.db").is_file()


def test_a_file_that_is_not_a_database_is_refused_with_one_sentence(home):
    home.root.mkdir()
    home.db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ClaveError, match=r"clave\.db cannot be used \(file is not a database\)"):
        Store.open(home)


def test_a_home_that_cannot_be_created_is_refused_with_one_sentence(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ClaveError, match="cannot be used .*check CLAVE_HOME"):
        Store.open(Home(tmp_path / "a-file" / "clave"))


def test_close_twice_is_harmless(home):
    store = Store.open(home)
    store.close()
    store.close()


# -- CRUD ----------------------------------------------------------------------------------

def test_add_then_get_returns_every_column(store):
    store.add(**a_session(base_branch="main", clone_path=Path("/code/shop/.clave/wt/s-abcd1234"),
                        services_mode=ServicesMode.TUNNEL, tunnel_port=8081))
    got = store.get("abcd1234")
    assert got.project_name == "shop"
    assert got.project_dir == Path("/code/shop")
    assert got.base_branch == "main"
    assert got.clone_path == Path("/code/shop/.clave/wt/s-abcd1234")
    assert got.services_mode == "tunnel"
    assert got.tunnel_port == 8081
    assert got.status is SessionStatus.STARTING
    assert got.started_at.tzinfo is not None
    assert abs((datetime.now(UTC) - got.started_at).total_seconds()) < 60
    assert got.updated_at == got.started_at


def test_add_accepts_plain_strings_for_paths_and_status(store):
    added = store.add(session_id="abcd1234", project_name="shop", project_dir="/code/shop",
                      clone_path="/code/shop/.clave/wt/s-abcd1234", status="running")
    assert added == store.get("abcd1234")
    assert added.project_dir == Path("/code/shop")
    assert added.clone_path == Path("/code/shop/.clave/wt/s-abcd1234")
    assert added.status is SessionStatus.RUNNING


def test_add_without_the_identity_columns_is_a_programming_error(store):
    with pytest.raises(TypeError):
        store.add(session_id="abcd1234")
    assert store.sessions() == []


def test_add_keeps_a_given_start_time(store):
    started = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.add(**a_session(started_at=started))
    assert store.get("abcd1234").started_at == started


def test_adding_the_same_session_twice_is_refused(store):
    store.add(**a_session())
    with pytest.raises(ClaveError, match="abcd1234 is already in"):
        store.add(**a_session())


def test_get_of_an_unknown_session_is_none(store):
    assert store.get("nope") is None


def test_sessions_lists_oldest_first_and_filters_by_project(store):
    store.add(**a_session("second", "/code/shop", started_at=datetime(2025, 1, 2, tzinfo=UTC)))
    store.add(**a_session("first", "/code/blog", started_at=datetime(2025, 1, 1, tzinfo=UTC)))
    store.add(**a_session("third", "/code/shop", started_at=datetime(2025, 1, 3, tzinfo=UTC)))
    assert [r.session_id for r in store.sessions()] == ["first", "second", "third"]
    assert [r.session_id for r in store.sessions(Path("/code/shop"))] == ["second", "third"]


def test_remove_deletes_the_row_and_is_idempotent(store):
    store.add(**a_session())
    store.remove("abcd1234")
    store.remove("abcd1234")
    assert store.get("abcd1234") is None
    assert store.sessions() == []


def test_as_dict_gives_plain_json_values(store):
    store.add(**a_session(status=SessionStatus.RUNNING, app_url="https://shop-abcd1234.test"))
    data = store.get("abcd1234").as_dict()
    assert data["project_dir"] == "/code/shop"
    assert data["status"] == "running"
    assert data["app_url"] == "https://shop-abcd1234.test"
    assert datetime.fromisoformat(data["started_at"]).tzinfo is not None


# -- journal -------------------------------------------------------------------------------

def test_record_sets_columns_and_bumps_updated_at(store):
    store.add(**a_session(started_at=datetime(2025, 1, 1, tzinfo=UTC),
                        updated_at=datetime(2025, 1, 1, tzinfo=UTC)))
    store.record("abcd1234", vm_name="clave-abcd1234", tart_pid=4242, status="running")
    got = store.get("abcd1234")
    assert (got.vm_name, got.tart_pid, got.status) == ("clave-abcd1234", 4242,
                                                       SessionStatus.RUNNING)
    assert got.updated_at > got.started_at


def test_forget_clears_only_the_named_columns(store):
    store.add(**a_session(vm_name="clave-abcd1234", proxy_name="shop-abcd1234", tunnel_pid=77))
    store.forget("abcd1234", "vm_name", "tunnel_pid")
    got = store.get("abcd1234")
    assert (got.vm_name, got.tunnel_pid, got.proxy_name) == (None, None, "shop-abcd1234")


def test_record_refuses_unknown_columns(store):
    store.add(**a_session())
    with pytest.raises(ValueError, match="not journal columns: vm"):
        store.record("abcd1234", vm="clave-x")


def test_record_refuses_an_unknown_status(store):
    store.add(**a_session())
    with pytest.raises(ValueError):
        store.record("abcd1234", status="exploded")
    assert store.get("abcd1234").status is SessionStatus.STARTING


@pytest.mark.parametrize("column", ["session_id", "project_dir", "status", "started_at"])
def test_forget_refuses_identity_and_required_columns(store, column):
    store.add(**a_session())
    with pytest.raises(ValueError, match="cannot forget"):
        store.forget("abcd1234", column)


def test_forgetting_on_a_removed_session_is_a_no_op_so_undo_stays_idempotent(store):
    store.forget("ghost", "vm_name")
    assert store.get("ghost") is None


def test_recording_on_an_unknown_session_is_an_error_not_a_silent_loss(store):
    with pytest.raises(ClaveError, match="No session ghost"):
        store.record("ghost", vm_name="clave-ghost")


# -- migrations ----------------------------------------------------------------------------

def _database_at_version(path: Path, version: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        for steps in MIGRATIONS[:version]:
            for sql in steps:
                db.execute(sql)
        db.execute(f"PRAGMA user_version = {version}")


def test_there_is_more_than_one_migration_to_test():
    assert SCHEMA_VERSION >= 2


def test_an_empty_version_0_database_is_migrated_to_the_current_schema(home):
    _database_at_version(home.db, 0)
    with Store.open(home) as store:
        store.add(**a_session())
        assert store.get("abcd1234") is not None
    with sqlite3.connect(home.db) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_version_1_database_keeps_its_rows_and_gains_the_later_steps(home):
    _database_at_version(home.db, 1)
    with sqlite3.connect(home.db) as db:
        db.execute("INSERT INTO sessions (session_id, project_name, project_dir, started_at,"
                    " updated_at) VALUES ('old12345', 'shop', '/code/shop',"
                    " '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00')")
    with Store.open(home) as store:
        assert [r.session_id for r in store.sessions(Path("/code/shop"))] == ["old12345"]
    with sqlite3.connect(home.db) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[1] for row in db.execute("PRAGMA index_list(sessions)")}
    assert "sessions_by_project" in indexes


def test_a_database_from_a_newer_clave_is_refused_and_left_untouched(home):
    _database_at_version(home.db, SCHEMA_VERSION)
    with sqlite3.connect(home.db) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ClaveError, match="newer clave") as raised:
        Store.open(home)
    assert raised.value.exit_code == 1
    assert "upgrade clave" in raised.value.message
    with sqlite3.connect(home.db) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_reopening_a_current_database_changes_nothing(home):
    with Store.open(home) as store:
        store.add(**a_session())
    with Store.open(home) as store:
        assert [r.session_id for r in store.sessions()] == ["abcd1234"]


# -- several processes at once -------------------------------------------------------------

WRITERS = 8
WRITES_EACH = 50


def _writer(home_root: str, writer: int, start: multiprocessing.synchronize.Event) -> None:
    """One clave process: opens (and maybe creates) the DB, then adds and journals rows."""
    start.wait()
    with Store.open(Home(Path(home_root))) as store:
        for i in range(WRITES_EACH // 2):
            sid = f"w{writer}-{i}"
            store.add(**a_session(sid, f"/code/project{writer}"))
            store.record(sid, tunnel_port=10_000 + writer * 100 + i, vm_name=f"clave-{sid}")


def test_concurrent_writers_in_separate_processes_lose_nothing(home):
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [context.Process(target=_writer, args=(str(home.root), w, start))
               for w in range(WRITERS)]
    for worker in workers:
        worker.start()
    start.set()                      # all first-open the same missing DB together
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * WRITERS

    with Store.open(home) as store:
        rows = {r.session_id: r for r in store.sessions()}
    assert len(rows) == WRITERS * WRITES_EACH // 2
    for w in range(WRITERS):
        for i in range(WRITES_EACH // 2):
            row = rows[f"w{w}-{i}"]
            assert row.tunnel_port == 10_000 + w * 100 + i
            assert row.vm_name == f"clave-w{w}-{i}"
            assert row.project_dir == Path(f"/code/project{w}")
