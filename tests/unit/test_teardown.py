"""SessionTeardown: once, every undo attempted, then keep/merge/discard, then no record.

Real git (a real clone made by GitManager), real SQLite, real doit through the Engine; the
session graph here is two small steps whose undo can be made to fail.
"""

from __future__ import annotations

import io
import os
import signal
from dataclasses import dataclass, field

import pytest

from clave.context import OnExit
from clave.engine import Engine, interrupts
from clave.errors import ClaveError
from clave.steps.base import Step
from clave.steps.save_session import SaveSession
from clave.support.git import GitManager
from clave.tasks.graph import Task, build, node
from clave.teardown import QUESTION, SessionTeardown
from clave.ui import Ui
from tests.messages import Said
from tests.unit.steps.world import base_template, world_fixture  # noqa: F401

BRANCH = "clave/s-abcd1234"
BACKUP = "refs/clave/backup/s-abcd1234"


@dataclass
class Screen(Said):
    """The ui teardown talks to: messages kept; select answers as the test says."""

    answer: object = OnExit.KEEP.value
    asked: list[str] = field(default_factory=list)

    def select(self, question, options, default=None):
        self.asked.append(question)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    def said(self, kind: str) -> list[str]:
        return self.of(kind)


class Resource(Step):
    """A step owning one resource; its undo is counted and can fail."""

    def __init__(self, label: str, undone: list[str], fails: bool = False):
        self.label, self.undone, self.fails = label, undone, fails

    def run(self, ctx) -> None:
        pass

    def undo(self, ctx) -> None:
        self.undone.append(self.label)
        if self.fails:
            raise ClaveError(f"could not remove the {self.label}")


@pytest.fixture
def screen() -> Screen:
    return Screen()


def saved(world, screen):
    """A session as preflight leaves it: SaveSession ran through the engine."""
    ctx = world.ctx(base_branch="main")
    ctx.ui = screen
    preflight(world, ctx).run(always=True)
    ctx.clone_path = ctx.default_clone_path
    return ctx


def preflight(world, ctx) -> Engine:
    return Engine(build((node(SaveSession),), world.adapters()), ctx,
                  world.home.session_dir(ctx.session_id) / "preflight.db")


@pytest.fixture
def session(world, screen):
    """A saved session with a real clone holding one commit of the agent's."""
    ctx = saved(world, screen)
    GitManager().clone_local(world.project, ctx.clone_path, BRANCH)
    (ctx.clone_path / "feature.txt").write_text("the agent's work\n")
    world.git("add", "feature.txt", cwd=ctx.clone_path)
    world.git("commit", "--quiet", "-m", "Add a feature", cwd=ctx.clone_path)
    return ctx


def teardown(world, ctx, screen, tasks=()):
    engine = Engine(list(tasks), ctx, world.home.session_dir(ctx.session_id) / "session.db")
    return SessionTeardown(ctx, engine, preflight(world, ctx), GitManager(), world.store,
                           world.home, screen)


def test_it_runs_once_even_when_called_twice(world, session, screen):
    undone: list[str] = []
    down = teardown(world, session, screen, [Task("vm", Resource("VM", undone))])
    assert down.run() == []
    assert down.run() == []
    assert undone == ["VM"] and len(screen.asked) == 1


def test_a_failing_undo_is_reported_once_and_the_others_still_run(world, session, screen):
    undone: list[str] = []
    tasks = [Task("vm", Resource("VM", undone)),
             Task("tunnel", Resource("tunnel", undone), ("vm",)),
             Task("proxy", Resource("proxy", undone, fails=True), ("tunnel",))]
    failures = teardown(world, session, screen, tasks).run()
    assert undone == ["proxy", "tunnel", "VM"]                 # dependants first
    assert [str(f) for f in failures] == ["Undoing 'proxy' failed: could not remove the proxy"]
    reported = [line for line in screen.said("warn") if "could not remove the proxy" in line]
    assert len(reported) == 1
    assert any("`clave cleanup`" in line for line in screen.said("warn"))
    assert world.home.session_dir(session.session_id).is_dir()   # logs kept to look at
    assert world.store.get(session.session_id) is None


def test_merge_lands_the_sessions_commit_in_the_base_branch(world, session, screen):
    session.on_exit = OnExit.MERGE
    assert teardown(world, session, screen).run() == []
    assert (world.project / "feature.txt").read_text() == "the agent's work\n"
    assert "Add a feature" in world.git("log", "--format=%s", "main")
    assert not session.clone_path.exists()
    assert world.git("branch", "--list", BRANCH) == ""
    assert screen.asked == [] and any("merged" in line for line in screen.said("info"))


def test_merge_commits_uncommitted_work_first_so_nothing_is_lost(world, session, screen):
    (session.clone_path / "draft.txt").write_text("not committed yet\n")
    session.on_exit = OnExit.MERGE
    teardown(world, session, screen).run()
    assert (world.project / "draft.txt").read_text() == "not committed yet\n"


def test_discard_removes_the_clone_and_keeps_a_backup_ref_with_the_work(world, session, screen):
    (session.clone_path / "draft.txt").write_text("not committed yet\n")
    session.on_exit = OnExit.DISCARD
    teardown(world, session, screen).run()
    assert not session.clone_path.exists()
    assert world.git("show", f"{BACKUP}:feature.txt") == "the agent's work\n"
    assert world.git("show", f"{BACKUP}:draft.txt") == "not committed yet\n"
    assert not (world.project / "feature.txt").exists()
    assert any(f"git branch {BRANCH} {BACKUP}" in line for line in screen.said("info"))


def test_keep_leaves_the_clone_and_saves_its_branch_in_the_project(world, session, screen):
    session.on_exit = OnExit.KEEP
    teardown(world, session, screen).run()
    assert (session.clone_path / "feature.txt").is_file()
    assert world.git("show", f"{BRANCH}:feature.txt") == "the agent's work\n"
    assert world.git("symbolic-ref", "--short", "HEAD").strip() == "main"


def test_without_on_exit_the_user_is_asked_and_their_answer_is_done(world, session, screen):
    screen.answer = OnExit.DISCARD.value
    teardown(world, session, screen).run()
    assert screen.asked == [QUESTION]
    assert not session.clone_path.exists()


def test_the_question_comes_after_what_is_at_stake(world, session, screen):
    screen.select = lambda *args, **kwargs: screen.lines.append(("asked", QUESTION))
    teardown(world, session, screen).run()
    assert screen.lines[:3] == [
        ("info", f"{BRANCH}: 1 commit, 1 file changed, 1 insertion(+)."),
        ("info", "Merging into main would not conflict."),
        ("asked", QUESTION),
    ]


def test_a_decision_given_up_front_skips_the_summary(world, session, screen):
    session.on_exit = OnExit.KEEP
    teardown(world, session, screen).run()
    assert not any("would not conflict" in line for line in screen.said("info"))


@pytest.mark.parametrize("answer", [None, OSError("terminal gone"), ClaveError("no tty")],
                         ids=["cancelled", "terminal-gone", "ui-error"])
def test_no_usable_answer_means_keep(world, session, screen, answer):
    screen.answer = answer
    teardown(world, session, screen).run()
    assert (session.clone_path / "feature.txt").is_file()
    assert world.git("show", f"{BRANCH}:feature.txt") == "the agent's work\n"


def test_without_a_terminal_the_real_ui_keeps(world, session):
    ui = Ui.create(out=io.StringIO(), err=io.StringIO(), stdin=io.StringIO(), environ={})
    session.ui = ui
    teardown(world, session, ui).run()
    assert (session.clone_path / "feature.txt").is_file()
    assert "no terminal to ask" in ui.out.getvalue()


def test_a_merge_that_cannot_happen_is_reported_and_the_clone_is_kept(world, session, screen):
    world.git("switch", "--quiet", "-c", "elsewhere")
    session.on_exit = OnExit.MERGE
    teardown(world, session, screen).run()
    assert (session.clone_path / "feature.txt").is_file()
    assert any(line.startswith("merge did not happen") for line in screen.said("warn"))
    assert world.git("show", f"{BRANCH}:feature.txt") == "the agent's work\n"   # kept instead
    assert any("kept the clone" in line and f"`git merge {BRANCH}` when ready" in line
               for line in screen.said("info"))


def test_the_session_record_and_its_logs_are_gone_at_the_end(world, session, screen):
    assert world.store.get(session.session_id) is not None
    teardown(world, session, screen).run()
    assert world.store.get(session.session_id) is None
    assert not world.home.session_dir(session.session_id).exists()


def test_a_session_that_ended_before_its_code_was_cloned_leaves_no_empty_share(
        world, screen):
    ctx = saved(world, screen)
    ctx.clone_path.mkdir(parents=True)                  # what StartVm shares with the VM
    teardown(world, ctx, screen).run()
    assert not ctx.clone_path.exists() and screen.asked == []
    assert world.store.get(ctx.session_id) is None


def test_a_clone_dir_holding_files_but_no_repository_is_never_deleted(world, screen):
    ctx = saved(world, screen)
    ctx.clone_path.mkdir(parents=True)
    (ctx.clone_path / "stray.txt").write_text("someone's file\n")
    teardown(world, ctx, screen).run()
    assert (ctx.clone_path / "stray.txt").read_text() == "someone's file\n"


class Interrupting(Step):
    """An undo during which the user presses Ctrl-C again (or the terminal sends SIGHUP)."""

    label = "tunnel"

    def __init__(self, signum: int, seen: list[str]):
        self.signum, self.seen = signum, seen

    def run(self, ctx) -> None:
        pass

    def undo(self, ctx) -> None:
        os.kill(os.getpid(), self.signum)
        self.seen.append("tunnel")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_during_teardown_cuts_nothing_short(world, session, screen, signum):
    undone: list[str] = []
    tasks = [Task("vm", Resource("VM", undone)),
             Task("tunnel", Interrupting(signum, undone), ("vm",))]
    session.on_exit = OnExit.MERGE
    with interrupts():                         # as `clave` runs: TERM/HUP raise, like Ctrl-C
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM,
                                                     signal.SIGHUP)}
        assert teardown(world, session, screen, tasks).run() == []
        assert {s: signal.getsignal(s) for s in handlers} == handlers   # and they are back
    assert undone == ["tunnel", "VM"]
    assert (world.project / "feature.txt").is_file()                  # the merge still ran
    assert world.store.get(session.session_id) is None


def test_the_record_says_tearing_down_while_resources_go(world, session, screen):
    seen: list[str] = []

    class Peek(Resource):
        def undo(self, ctx) -> None:
            seen.append(world.store.get(ctx.session_id).status.value)

    teardown(world, session, screen, [Task("vm", Peek("VM", []))]).run()
    assert seen == ["tearing_down"]
