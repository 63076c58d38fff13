"""The engine's mapping of Steps onto real doit: run, undo, done, order, DB, signals."""

from __future__ import annotations

import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from clave.context import SessionContext
from clave.engine import (
    CHECK_FALSE,
    CONFIG_CHANGED,
    NEVER_RAN,
    STALE,
    UNKNOWN,
    UP_TO_DATE,
    Engine,
    foreground_child,
    interrupts,
    signals_ignored,
)
from clave.errors import ClaveError, Interrupted, StepFailed
from clave.tasks.graph import Task
from tests.unit.engine_steps import FakeStep, MessageLog, ProgressLog, Recorder, chain, raising


class DiskFull(ClaveError):
    exit_code = 42


@pytest.fixture
def ctx(tmp_path) -> SessionContext:
    return SessionContext("abcd1234", "shop", tmp_path / "project", ui=MessageLog())


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "sessions" / "abcd1234" / "doit.db"


def doit_rows(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("select task_id from doit")}


# -- run ----------------------------------------------------------------------------------------

def test_run_executes_every_step_once_after_its_dependencies(ctx, db):
    rec = Recorder()
    Engine(chain(rec, ["a", "b", "c"]), ctx, db).run()
    assert rec.calls("run") == ["a", "b", "c"]
    assert rec.calls("undo") == []


def test_order_is_the_order_doit_actually_runs_a_diamond(ctx, db):
    rec = Recorder()
    step = lambda name: FakeStep(name, rec)  # noqa: E731
    tasks = [Task("top", step("top"), ("left", "right")), Task("left", step("left"), ("base",)),
             Task("right", step("right"), ("base",)), Task("base", step("base"))]
    engine = Engine(tasks, ctx, db)
    engine.run()
    assert rec.calls("run") == engine.order() == ["base", "left", "right", "top"]


def test_run_with_a_target_runs_only_it_and_its_dependencies(ctx, db):
    rec = Recorder()
    tasks = chain(rec, ["a", "b"]) + [Task("other", FakeStep("other", rec))]
    Engine(tasks, ctx, db).run("b")
    assert rec.calls("run") == ["a", "b"]


def test_an_unknown_target_is_refused_naming_the_known_tasks(ctx, db):
    with pytest.raises(ClaveError, match=r"'nope' is not a task .*a, b"):
        Engine(chain(Recorder(), ["a", "b"]), ctx, db).run("nope")


def test_a_failing_step_stops_the_run_and_surfaces_its_own_error(ctx, db):
    rec = Recorder()
    boom = DiskFull("the disk is full: free some space.")
    tasks = chain(rec, ["a", "b", "c"], b={"on_run": raising(boom)})
    with pytest.raises(DiskFull) as raised:
        Engine(tasks, ctx, db).run()
    assert raised.value is boom and raised.value.exit_code == 42
    assert str(raised.value) == "the disk is full: free some space."
    assert rec.calls("run") == ["a", "b"]


def test_clean_after_a_failure_undoes_every_step_dependants_first_exactly_once(ctx, db):
    rec = Recorder()
    tasks = chain(rec, ["a", "b", "c", "d"], c={"on_run": raising(ClaveError("no"))})
    engine = Engine(tasks, ctx, db)
    with pytest.raises(ClaveError):
        engine.run()
    assert engine.clean() == []
    assert rec.calls("undo") == ["d", "c", "b", "a"]
    ran = rec.calls("run")
    assert [n for n in rec.calls("undo") if n in ran] == list(reversed(ran)) == ["c", "b", "a"]


def test_an_unexpected_exception_becomes_step_failed_naming_the_step(ctx, db):
    tasks = chain(Recorder(), ["a"], a={"on_run": raising(OSError("no route to host")),
                                        "label": "Booting VM"})
    with pytest.raises(StepFailed, match="^Booting VM failed: OSError: no route to host$") as e:
        Engine(tasks, ctx, db).run()
    assert isinstance(e.value.__cause__, OSError) and e.value.exit_code == 1


def test_the_failed_step_is_forgotten_and_stale_while_the_ones_before_are_saved(ctx, db):
    tasks = chain(Recorder(), ["a", "b"], b={"on_run": raising(ClaveError("no"))})
    with pytest.raises(ClaveError):
        Engine(tasks, ctx, db).run()
    assert doit_rows(db) == {"a"}


# -- interrupts ---------------------------------------------------------------------------------

def test_ctrl_c_mid_step_propagates_and_clean_undoes_each_step_once(ctx, db):
    rec = Recorder()
    tasks = chain(rec, ["a", "b", "c"], b={"on_run": raising(KeyboardInterrupt())})
    engine = Engine(tasks, ctx, db)
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    assert rec.calls("run") == ["a", "b"]
    assert engine.clean() == []
    assert rec.calls("undo") == ["c", "b", "a"]       # b half-ran: its undo runs too


def test_sigterm_mid_step_raises_interrupted_and_clean_undoes_each_step_once(ctx, db):
    rec = Recorder()

    def killed(ctx):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the SIGTERM handler should have raised before this line")

    before = signal.getsignal(signal.SIGTERM)
    engine = Engine(chain(rec, ["a", "b", "c"], b={"on_run": killed}), ctx, db)
    with pytest.raises(Interrupted) as raised, interrupts():
        engine.run()
    assert raised.value.signum == signal.SIGTERM and raised.value.exit_code == 130
    assert signal.getsignal(signal.SIGTERM) is before
    with signals_ignored():
        assert engine.clean() == []
    assert rec.calls("run") == ["a", "b"]
    assert rec.calls("undo") == ["c", "b", "a"]


def test_sighup_inside_interrupts_is_an_interrupt_too():
    with pytest.raises(Interrupted) as raised, interrupts():
        os.kill(os.getpid(), signal.SIGHUP)
    assert raised.value.signum == signal.SIGHUP
    assert isinstance(raised.value, KeyboardInterrupt)


def test_the_progress_display_is_told_about_an_interrupted_step_and_ended(ctx, db):
    progress = ProgressLog()
    tasks = chain(Recorder(), ["a", "b"], b={"on_run": raising(KeyboardInterrupt())})
    with pytest.raises(KeyboardInterrupt):
        Engine(tasks, ctx, db, reporter=progress).run()
    assert progress.of("step_finished")[-1] == ("Doing b", "interrupted")
    assert progress.calls[-1] == ("end",)


def test_signals_ignored_survives_sigterm_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with signals_ignored():
        os.kill(os.getpid(), signal.SIGTERM)       # would end the test run if not ignored
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is before


def _child_sigint_disposition() -> str:
    code = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_foreground_child_lets_the_child_own_ctrl_c_while_clave_survives_it():
    with foreground_child():
        os.kill(os.getpid(), signal.SIGINT)         # no KeyboardInterrupt here
        assert _child_sigint_disposition() == "False"   # the child gets Ctrl-C
    with signals_ignored():
        assert _child_sigint_disposition() == "True"    # unlike SIG_IGN, which is inherited
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- done / up-to-date --------------------------------------------------------------------------

def test_a_step_whose_done_is_true_is_skipped_and_reported_up_to_date(ctx, db):
    rec, progress = Recorder(), ProgressLog()
    tasks = chain(rec, ["a", "b"], a={"done": True, "label": "Cloning VM"})
    Engine(tasks, ctx, db, reporter=progress, label="Session").run()
    assert rec.calls("run") == ["b"] and rec.calls("done") == ["a", "b"]
    assert progress.calls == [("begin", "Session", 2),
                              ("step_finished", "Cloning VM", "up-to-date"),
                              ("step_started", 2, "Doing b"),
                              ("step_finished", "Doing b", "ok"),
                              ("end",)]


def test_always_runs_steps_that_are_done_without_asking_their_health_checks(ctx, db):
    rec = Recorder()
    Engine(chain(rec, ["a", "b"], a={"done": True}), ctx, db).run(always=True)
    assert rec.calls("run") == ["a", "b"]
    assert rec.calls("done") == []     # a fresh session pays for no tart/herd/SSH probes


def test_done_raising_counts_as_not_done_and_the_run_goes_on(ctx, db):
    rec = Recorder()

    def broken() -> bool:
        raise RuntimeError("tart is not installed")

    Engine(chain(rec, ["a", "b"], a={"done": broken}), ctx, db).run()
    assert rec.calls("run") == ["a", "b"]


def test_a_digest_skips_an_unchanged_step_and_reruns_a_changed_one(ctx, db):
    rec = Recorder()
    first = chain(rec, ["php"], php={"done": True, "digest": "sha-1"})
    Engine(first, ctx, db).run()
    Engine(chain(rec, ["php"], php={"done": True, "digest": "sha-1"}), ctx, db).run()
    assert rec.calls("run") == ["php"]
    changed = Engine(chain(rec, ["php"], php={"done": True, "digest": "sha-2"}), ctx, db)
    assert changed.status()[0].reason == CONFIG_CHANGED
    changed.run()
    assert rec.calls("run") == ["php", "php"]


# -- status -------------------------------------------------------------------------------------

def test_status_before_any_run_is_unknown_and_creates_no_db(ctx, db):
    rec = Recorder()
    statuses = Engine(chain(rec, ["a", "b"]), ctx, db).status()
    assert [(s.name, s.status, s.reason, s.deps) for s in statuses] == [
        ("a", UNKNOWN, NEVER_RAN, ()), ("b", UNKNOWN, NEVER_RAN, ("a",))]
    assert statuses[0].label == "Doing a"
    assert not db.exists() and rec.events == []


def test_status_after_a_run_reflects_done_and_executes_no_step(ctx, db):
    rec = Recorder()
    engine = Engine(chain(rec, ["a", "b"], a={"done": True}), ctx, db)
    engine.run()
    rec.events.clear()
    assert [(s.name, s.status, s.reason) for s in engine.status()] == [
        ("a", UP_TO_DATE, ""), ("b", STALE, CHECK_FALSE)]
    assert rec.calls("run") == [] and rec.calls("undo") == []


def test_status_says_never_ran_for_a_step_the_db_has_no_record_of(ctx, db):
    tasks = chain(Recorder(), ["a", "b"], b={"on_run": raising(ClaveError("no"))})
    engine = Engine(tasks, ctx, db)
    with pytest.raises(ClaveError):
        engine.run()
    assert [s.reason for s in engine.status()] == [CHECK_FALSE, NEVER_RAN]


def test_clean_makes_doit_forget_the_steps_it_undid(ctx, db):
    engine = Engine(chain(Recorder(), ["a", "b"]), ctx, db)
    engine.run()
    engine.clean()
    assert doit_rows(db) == set()
    assert [s.reason for s in engine.status()] == [NEVER_RAN, NEVER_RAN]


# -- clean --------------------------------------------------------------------------------------

def test_a_failing_undo_never_stops_the_others_and_is_returned_and_reported(ctx, db):
    rec = Recorder()
    tasks = chain(rec, ["a", "b", "c"], b={"on_undo": raising(OSError("vm busy")),
                                           "label": "Cloning VM"})
    failures = Engine(tasks, ctx, db).clean()
    assert rec.calls("undo") == ["c", "b", "a"]
    assert [str(f) for f in failures] == ["Undoing 'Cloning VM' failed: OSError: vm busy"]
    assert ("warn", "Undoing 'Cloning VM' failed: OSError: vm busy") in ctx.ui.lines


def test_a_ctrl_c_inside_one_undo_skips_only_that_undo(ctx, db):
    rec = Recorder()
    tasks = chain(rec, ["a", "b", "c"], b={"on_undo": raising(KeyboardInterrupt())})
    failures = Engine(tasks, ctx, db).clean()
    assert rec.calls("undo") == ["c", "b", "a"]
    assert [str(f) for f in failures] == ["Undoing 'Doing b' was interrupted."]


def test_clean_output_never_reaches_the_terminal(ctx, db, capfd):
    def noisy(ctx):
        print("removing things")

    engine = Engine(chain(Recorder(), ["a", "b"], a={"on_undo": noisy}), ctx, db)
    engine.run()
    engine.clean()
    assert capfd.readouterr() == ("", "")


def test_clean_runs_every_undo_even_when_the_doit_db_is_unreadable(ctx, db):
    rec = Recorder()
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database" * 100)
    assert Engine(chain(rec, ["a", "b"]), ctx, db).clean() == []
    assert rec.calls("undo") == ["b", "a"]


def test_doit_refusing_to_start_becomes_one_clave_error_with_its_message(ctx, db):
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database" * 100)
    rec = Recorder()
    with pytest.raises(ClaveError, match="doit could not run the task graph: .*corrupted") as e:
        Engine(chain(rec, ["a"]), ctx, db).run()
    assert type(e.value) is ClaveError and "\n" not in str(e.value)
    assert rec.calls("run") == []


# -- where doit reads and writes ----------------------------------------------------------------

def test_the_users_doit_cfg_pyproject_and_dodo_in_cwd_are_never_read(ctx, db, tmp_path,
                                                                      monkeypatch):
    project = tmp_path / "laravel-app"
    project.mkdir()
    (project / "doit.cfg").write_text("[run]\noutfile = poisoned-cfg.txt\nsingle = True\n")
    (project / "pyproject.toml").write_text(
        '[tool.doit]\ndep_file = "poisoned.db"\n[tool.doit.commands.run]\nsingle = true\n')
    (project / "dodo.py").write_text("open('dodo-was-imported', 'w').close()\n")
    before = sorted(os.listdir(project))
    monkeypatch.chdir(project)
    rec = Recorder()
    Engine(chain(rec, ["a", "b"]), ctx, db).run("b")     # `single` would skip a
    assert rec.calls("run") == ["a", "b"]
    assert sorted(os.listdir(project)) == before


def test_the_doit_db_lands_exactly_at_db_path_and_nowhere_else(ctx, db, tmp_path, monkeypatch,
                                                               clave_home):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    home_before = sorted(p for p in clave_home.rglob("*"))
    Engine(chain(Recorder(), ["a", "b"]), ctx, db).run()
    assert list(cwd.iterdir()) == []
    assert sorted(p for p in clave_home.rglob("*")) == home_before
    assert sorted(p.name for p in db.parent.iterdir()) == ["doit.db"]
    assert doit_rows(db) == {"a", "b"}


def test_two_engines_one_after_another_keep_to_their_own_dbs(ctx, tmp_path):
    rec = Recorder()
    first = Engine(chain(rec, ["a1", "a2"]), ctx, tmp_path / "one" / "doit.db")
    second = Engine(chain(rec, ["b1"], b1={"done": True}), ctx, tmp_path / "two" / "doit.db")
    first.run()
    second.run(always=True)
    first.run()
    assert rec.calls("run") == ["a1", "a2", "b1", "a1", "a2"]
    assert doit_rows(tmp_path / "one" / "doit.db") == {"a1", "a2"}
    assert doit_rows(tmp_path / "two" / "doit.db") == {"b1"}
    assert [s.status for s in second.status()] == [UP_TO_DATE]


# -- progress and hints -------------------------------------------------------------------------

def test_progress_counts_steps_and_times_each_finished_one(ctx, db):
    progress = ProgressLog()
    tasks = chain(Recorder(), ["a", "b"], b={"on_run": raising(ClaveError("no"))})
    with pytest.raises(ClaveError):
        Engine(tasks, ctx, db, reporter=progress, label="Preflight").run()
    assert progress.calls == [("begin", "Preflight", 2),
                              ("step_started", 1, "Doing a"), ("step_finished", "Doing a", "ok"),
                              ("step_started", 2, "Doing b"),
                              ("step_finished", "Doing b", "failed"),
                              ("end",)]


def test_hints_reach_the_progress_display_during_a_run_only(ctx, db):
    progress, messages = ProgressLog(), ctx.ui

    def hinting(ctx):
        ctx.hint("waiting for SSH")
        ctx.info("booted")

    Engine(chain(Recorder(), ["a"], a={"on_run": hinting}), ctx, db, reporter=progress).run()
    assert progress.of("hint") == [("waiting for SSH",)]
    assert messages.lines == [("info", "booted")]
    assert ctx.ui is messages


def test_ctx_ui_is_the_progress_display_when_no_reporter_is_given(ctx, db):
    progress = ProgressLog()
    ctx.ui = progress
    Engine(chain(Recorder(), ["a"], a={"on_run": lambda c: c.hint("cloning")}), ctx, db).run()
    assert progress.of("step_started") == [(1, "Doing a")] and progress.of("hint") == [
        ("cloning",)]


def test_a_graph_with_a_cycle_or_an_unknown_dependency_is_refused(ctx, db):
    rec = Recorder()
    with pytest.raises(ValueError, match="unknown ghost"):
        Engine([Task("a", FakeStep("a", rec), ("ghost",))], ctx, db)
    cyclic = [Task("a", FakeStep("a", rec), ("b",)), Task("b", FakeStep("b", rec), ("a",))]
    with pytest.raises(ValueError, match="cycle"):
        Engine(cyclic, ctx, db).order()


def test_a_real_plain_ui_shows_the_run_line_by_line(tmp_path, db):
    from clave.ui import Ui

    out = io.StringIO()
    ui = Ui.create(out=out, err=io.StringIO(), stdin=io.StringIO(), environ={})
    ctx = SessionContext("abcd1234", "shop", tmp_path, ui=ui)
    tasks = chain(Recorder(), ["a", "b"], a={"done": True, "label": "Checking the base VM"},
                  b={"on_run": lambda c: c.hint("waiting for SSH"), "label": "Booting VM"})
    Engine(tasks, ctx, db, label="Session").run()
    lines = out.getvalue().splitlines()
    assert lines[:4] == ["Session (2 steps)", "[1/2] Checking the base VM: up to date",
                         "[2/2] Booting VM...", "      waiting for SSH"]
    assert re.fullmatch(r"\[2/2\] Booting VM: ok \(\d+\.\d s\)", lines[4]) and len(lines) == 5
