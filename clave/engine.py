"""The one module that imports doit: Steps become doit tasks, doit's events become UI calls.

The traps this module exists to avoid (../shared/reference/doit.md, §13):
- `config_filenames=()` and a dict loader: the user's `pyproject.toml`, `doit.cfg` or
  `dodo.py` in the project (our cwd) are never read;
- `backend='sqlite3'` and an explicit `dep_file`: one DB per run scope, never the default
  `.doit.db` in the user's project;
- sequential runner only, `verbosity 0` (task output never garbles the progress display);
- teardown is our own `clean()`, run from the caller's `finally`, never doit's `teardown`;
- up-to-date callables catch every exception (one escaping would abort the run with rc 3).

doit keeps process-global state: run one Engine call at a time (nesting a run inside a step,
as EnsureVmExists does with provisioning, is fine; two threads at once are not).
doit imports cost ~100 ms, so they stay inside functions: `clave --help` never pays them.
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clave.context import Messages, SessionContext
from clave.errors import ClaveError, Interrupted, StepFailed
from clave.tasks.graph import Task

BIN_NAME = "clave"

UP_TO_DATE = "up-to-date"
STALE = "stale"
UNKNOWN = "unknown"

NEVER_RAN = "never ran"
CONFIG_CHANGED = "config changed"
CHECK_FALSE = "uptodate check false"

_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_TEARDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class TaskStatus:
    """One line of `clave tasks`: what would happen to this task on the next run, and why."""

    name: str
    label: str
    deps: tuple[str, ...]
    status: str   # UP_TO_DATE, STALE or UNKNOWN (no DB yet)
    reason: str   # "" when up to date; else NEVER_RAN, CONFIG_CHANGED, CHECK_FALSE, ...


class Engine:
    """Runs one graph of Steps through doit, with its own dependency DB at `db_path`."""

    def __init__(self, tasks: list[Task], ctx: SessionContext, db_path: Path,
                 reporter: Any = None, label: str = ""):
        self.tasks = list(tasks)
        self.ctx = ctx
        self.db_path = Path(db_path)
        self.label = label
        # the progress sink: anything with begin/step_started/step_finished/end (clave's Ui)
        self.progress = reporter if reporter is not None else ctx.ui
        self._by_name = _index(self.tasks)

    # -- public API -------------------------------------------------------------------------

    def order(self, target: str | None = None) -> list[str]:
        """The order run() executes: each task after its deps, otherwise as the graph lists them.

        run() feeds doit this exact sequence; clean() undoes it back to front.
        """
        names = [target] if target else [t.name for t in self.tasks]
        ordered: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in ordered:
                return
            if name in visiting:
                raise ValueError(f"task graph has a cycle through {name!r}")
            visiting.add(name)
            for dep in self._by_name[name].deps:
                visit(dep)
            visiting.discard(name)
            ordered.append(name)

        for name in names:
            self._require(name)
            visit(name)
        return ordered

    def run(self, target: str | None = None, *, always: bool = False) -> None:
        """Run the graph (or `target` and its dependencies); stop at the first failing step.

        Raises the failing step's own ClaveError (message and exit code intact), a StepFailed
        for any other exception, or a ClaveError carrying doit's message when doit refuses
        to start (its rc 3). KeyboardInterrupt and Interrupted propagate after doit has saved
        what finished; the caller then calls `clean()`.
        """
        if target is not None:
            self._require(target)
        failures: list[ClaveError] = []
        reporter = _Reporter(self.progress, self.label)
        argv = ["run", target] if target else ["run"]
        sequence = self.order(target)
        with self._hints_to_progress():
            rc, output = self._doit(
                argv, lambda: self._task_dicts(failures=failures, sequence=sequence,
                                               always=always),
                reporter=reporter, always=always)
        if not rc:
            return
        if failures:
            raise failures[0]
        if rc == 3 or not reporter.failures:
            raise ClaveError(f"doit could not run {self._what(target)}: {_doit_message(output)}")
        raise StepFailed(reporter.failure_sentence())

    def clean(self) -> list[ClaveError]:
        """Undo every step, dependants first; one failure never stops the others.

        Each undo runs exactly once (whether or not its step ever ran: undo is idempotent and
        asks the world). A Ctrl-C inside one undo skips that undo only, and teardown goes on;
        wrap the call in `signals_ignored()` to avoid even that. Returns the failures, already
        reported through `ctx.warn`.
        """
        failures: list[ClaveError] = []
        undone: set[str] = set()
        names = list(reversed(self.order()))
        # a signal between two undos, or a DB doit cannot open: the loop below finishes the job
        with contextlib.suppress(Exception, KeyboardInterrupt):
            self._doit(["clean", *names],
                       lambda: self._task_dicts(failures=failures, undone=undone))
        for name in names:
            if name not in undone:
                _undo_action(self._by_name[name], self.ctx, failures, undone, forget=False)()
        for failure in failures:
            self.ctx.warn(str(failure))
        return failures

    def status(self) -> list[TaskStatus]:
        """Each task's status from the DB and its up-to-date rules; runs no step's action."""
        names = self.order()
        if not self.db_path.is_file():
            return [self._status(name, UNKNOWN, NEVER_RAN) for name in names]
        from doit.dependency import DatabaseException, Dependency, SqliteDB
        from doit.task import dict_to_task

        tasks = {d["name"]: dict_to_task(d) for d in self._task_dicts(failures=[])}
        try:
            dep = Dependency(SqliteDB, str(self.db_path))
        except DatabaseException:
            return [self._status(name, UNKNOWN, f"cannot read {self.db_path}") for name in names]
        try:
            return [self._status(name, *_task_status(dep, tasks[name], tasks)) for name in names]
        finally:
            dep.close()

    def task_dicts(self) -> list[dict[str, Any]]:
        """The doit task dicts in run order, for plain `doit` (dodo.py)."""
        return self._task_dicts(failures=[], sequence=self.order())

    # -- building doit tasks ----------------------------------------------------------------

    def _task_dicts(self, *, failures: list[ClaveError], undone: set[str] | None = None,
                    sequence: list[str] | None = None,
                    always: bool = False) -> list[dict[str, Any]]:
        """Fresh dicts on every load: doit mutates them, and config_changed keeps state.

        `sequence` (a run's order) chains each task after the one before it: doit picks
        among ready siblings in set order, which varies between runs; a chain does not.
        `always`: every step runs, so no health check is asked (doit would still ask them).
        """
        undone = set() if undone is None else undone
        after = dict(zip(sequence[1:], sequence, strict=False)) if sequence else {}
        return [self._task_dict(task, failures, undone, after.get(task.name), always)
                for task in self.tasks]

    def _task_dict(self, task: Task, failures: list[ClaveError], undone: set[str],
                   after: str | None = None, always: bool = False) -> dict[str, Any]:
        from doit.tools import config_changed

        uptodate: list[Any] = [False] if always else [_done_check(task.step, self.ctx)]
        digest = getattr(task.step, "digest", None)
        if digest is not None:
            uptodate.append(config_changed(digest))
        return {
            "name": task.name,
            "doc": task.label,
            "meta": {"label": task.label},
            "actions": [_run_action(task, self.ctx, failures)],
            "clean": [_undo_action(task, self.ctx, failures, undone, forget=True)],
            "uptodate": uptodate,
            "task_dep": list(task.deps) + ([after] if after and after not in task.deps else []),
            "verbosity": 0,
        }

    def _doit(self, argv: list[str], make_dicts: Callable[[], list[dict[str, Any]]], *,
              reporter: Any = None, always: bool = False) -> tuple[int | None, str]:
        """One doit command with our config only; returns its rc and whatever it printed."""
        from doit.cmd_base import TaskLoader2
        from doit.doit_cmd import DoitMain
        from doit.task import dict_to_task

        config = {
            "dep_file": str(self.db_path),
            "backend": "sqlite3",
            "check_file_uptodate": "md5",
            "verbosity": 0,
            "failure_verbosity": 0,
            "continue": False,
            "always": always,
            "num_process": 0,
            "default_tasks": None,
            "action_string_formatting": "old",
        }
        if reporter is not None:
            config["reporter"] = reporter

        class Loader(TaskLoader2):
            """Plain task dicts: no dodo.py, no task_* discovery, no chdir."""

            def setup(self, opt_values: Any) -> None:
                pass

            def load_doit_config(self) -> dict[str, Any]:
                return dict(config)

            def load_tasks(self, cmd: Any, pos_args: Any) -> list[Any]:
                return [dict_to_task(d) for d in make_dicts()]

        class Main(DoitMain):
            BIN_NAME = BIN_NAME

        _only_builtin_plugins()
        self.db_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        main = Main(Loader(), config_filenames=())
        printed = io.StringIO()
        # doit prints rc-3 errors and clean's "<task> - executing" lines; keep them off the UI
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            rc = main.run(argv)
        return rc, printed.getvalue()

    # -- small helpers ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _hints_to_progress(self) -> Iterator[None]:
        """While running, ctx.hint() feeds the progress display's current step."""
        ui = self.ctx.ui
        if self.progress is ui or not callable(getattr(self.progress, "hint", None)):
            yield
            return
        self.ctx.ui = _HintsTo(ui, self.progress)
        try:
            yield
        finally:
            self.ctx.ui = ui

    def _require(self, name: str) -> None:
        if name not in self._by_name:
            known = ", ".join(self._by_name) or "none"
            raise ClaveError(f"{name!r} is not a task of this graph (tasks: {known}).")

    def _what(self, target: str | None) -> str:
        return f"task {target!r}" if target else f"the {self.label or 'task'} graph"

    def _status(self, name: str, status: str, reason: str) -> TaskStatus:
        task = self._by_name[name]
        if status == STALE:   # a step that can say why (provisioning's) knows better than doit
            reason = _step_why(task.step) or reason
        return TaskStatus(name, task.label, tuple(task.deps), status, reason)


# -- actions and checks handed to doit ------------------------------------------------------

def _run_action(task: Task, ctx: SessionContext, failures: list[ClaveError]) -> Callable[[], Any]:
    def run() -> bool | None:
        try:
            task.step.run(ctx)
        except ClaveError as err:
            failures.append(err)   # the exception itself: its message and exit code survive
            return False           # doit records a failure and runs no dependant
        except Exception as exc:
            failure = StepFailed(f"{task.label} failed: {_describe(exc)}")
            failure.__cause__ = exc
            failures.append(failure)
            return False
        return None

    run.__name__ = run.__qualname__ = f"run:{task.name}"
    return run


def _undo_action(task: Task, ctx: SessionContext, failures: list[ClaveError],
                 undone: set[str], *, forget: bool) -> Callable[[], None]:
    def undo() -> None:
        if task.name in undone:
            return
        undone.add(task.name)      # before calling: an undo is attempted once, never twice
        try:
            task.step.undo(ctx)
        except KeyboardInterrupt:  # a signal during teardown skips this undo, not the rest
            failures.append(StepFailed(f"Undoing {task.label!r} was interrupted."))
        except Exception as exc:
            failure = StepFailed(f"Undoing {task.label!r} failed: {_describe(exc)}")
            failure.__cause__ = exc
            failures.append(failure)
        else:
            if forget:             # only a successful undo makes doit forget the task
                from doit import Globals

                Globals.dep_manager.remove(task.name)

    undo.__name__ = undo.__qualname__ = f"undo:{task.name}"
    return undo


def _done_check(step: Any, ctx: SessionContext) -> Callable[[Any, Any], bool]:
    """doit passes (task, values) by parameter name; an escaping exception would be rc 3."""
    def done(task: Any, values: Any) -> bool:
        try:
            return bool(step.done(ctx))
        except Exception:
            return False

    return done


def _step_why(step: Any) -> str | None:
    """The step's own `why()`, if it has one; like done(), it must never break a listing."""
    why = getattr(step, "why", None)
    try:
        return why() if callable(why) else None
    except Exception:
        return None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, ClaveError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _task_status(dep: Any, task: Any, tasks: dict[str, Any]) -> tuple[str, str]:
    from doit.tools import config_changed

    result = dep.get_status(task, tasks, get_log=True)
    if result.status == "up-to-date":
        return UP_TO_DATE, ""
    if result.status == "error":
        return STALE, result.get_error_message() or "error"
    if dep._get(task.name, "checker:") is None:   # written on every successful run
        return STALE, NEVER_RAN
    failed = [utd for utd, _args, _kwargs in result.reasons.get("uptodate_false", ())]
    if any(isinstance(utd, config_changed) for utd in failed):
        return STALE, CONFIG_CHANGED
    if failed:
        return STALE, CHECK_FALSE
    reasons = [key.replace("_", " ") for key, value in result.reasons.items() if value]
    return STALE, reasons[0] if reasons else "stale"


def _index(tasks: list[Task]) -> dict[str, Task]:
    by_name: dict[str, Task] = {}
    for task in tasks:
        if task.name in by_name:
            raise ValueError(f"task graph names {task.name!r} twice")
        by_name[task.name] = task
    for task in tasks:
        unknown = [dep for dep in task.deps if dep not in by_name]
        if unknown:
            raise ValueError(f"task {task.name!r} depends on unknown {', '.join(unknown)}")
    return by_name


# the exception line ending a traceback, and the rest of its (possibly multi-line) message
_EXCEPTION_LINE = re.compile(r"^[\w.]*(?:Error|Exception): .*", re.MULTILINE | re.DOTALL)


def _only_builtin_plugins() -> None:
    """doit also loads the plugins other installed packages register as entry points: a
    stray one must not change how clave runs its graphs, and finding them reads every
    installed package's metadata, once per plugin category and command."""
    import doit.plugin

    doit.plugin.entry_points_impl = lambda: (lambda group: ())


def _doit_message(output: str) -> str:
    """doit's own sentence from what it printed: its `ERROR:` line, or a traceback's last."""
    for line in output.splitlines():
        if line.startswith("ERROR: "):
            return line[len("ERROR: "):].strip()
    tail = output.split("Traceback (most recent call last):")[-1]
    match = _EXCEPTION_LINE.search(tail)
    text = match.group(0) if match else output
    return " ".join(text.split()) or "no message"


# -- doit events -> clave's progress display ------------------------------------------------

class _Reporter:
    """doit's reporter API translated into clave's progress calls (ui.py never sees doit).

    progress: begin(label, total), step_started(index, label),
    step_finished(label, seconds, status) with status ok / up-to-date / failed / interrupted,
    end(). Methods the sink lacks are skipped, so a plain Messages object works too.
    """

    def __init__(self, progress: Any, label: str):
        self.progress, self.label = progress, label
        self.index = 0
        self.current: tuple[Any, float] | None = None
        self.failures: list[tuple[Any, Any]] = []
        self.errors: list[str] = []

    def initialize(self, tasks: dict[str, Any], selected_tasks: list[str]) -> None:
        from doit.cmd_base import tasks_and_deps_iter

        total = sum(1 for t in tasks_and_deps_iter(tasks, selected_tasks) if t.actions)
        self._tell("begin", self.label, total)

    def get_status(self, task: Any) -> None:
        pass

    def execute_task(self, task: Any) -> None:
        if task.actions:
            self.index += 1
            self.current = (task, time.monotonic())
            self._tell("step_started", self.index, _label(task))

    def add_success(self, task: Any) -> None:
        self._finish(task, "ok")

    def add_failure(self, task: Any, fail: Any) -> None:
        self.failures.append((task, fail))
        self._finish(task, "failed")

    def skip_uptodate(self, task: Any) -> None:
        if task.actions:
            self.index += 1
            self._tell("step_finished", _label(task), 0.0, "up-to-date")

    def skip_ignore(self, task: Any) -> None:
        if task.actions:
            self.index += 1

    def runtime_error(self, msg: str) -> None:
        self.errors.append(msg)

    def teardown_task(self, task: Any) -> None:
        pass

    def cleanup_error(self, exception: Any) -> None:
        self.errors.append(str(exception))

    def complete_run(self) -> None:
        if self.current is not None:   # only a KeyboardInterrupt leaves a step unfinished
            task, _started = self.current
            self._finish(task, "interrupted")
        self._tell("end")

    def failure_sentence(self) -> str:
        if self.failures:
            task, fail = self.failures[0]
            detail = " ".join(str(getattr(fail, "message", "") or fail.get_name()).split())
            return f"{_label(task)} failed: {detail}"
        return "; ".join(self.errors) or "a step failed"

    def _finish(self, task: Any, status: str) -> None:
        seconds = 0.0
        if self.current is not None and self.current[0] is task:
            seconds = time.monotonic() - self.current[1]
            self.current = None
        if task.actions:
            self._tell("step_finished", _label(task), seconds, status)

    def _tell(self, event: str, *args: Any) -> None:
        method = getattr(self.progress, event, None)
        if callable(method):
            method(*args)


def _label(task: Any) -> str:
    return (task.meta or {}).get("label") or task.name


class _HintsTo:
    """ctx.ui during a run when the progress display is not ctx.ui itself."""

    def __init__(self, messages: Messages, progress: Any):
        self.messages, self.progress = messages, progress

    def info(self, message: str) -> None:
        self.messages.info(message)

    def warn(self, message: str) -> None:
        self.messages.warn(message)

    def error(self, message: str) -> None:
        self.messages.error(message)

    def hint(self, message: str) -> None:
        self.progress.hint(message)

    def __getattr__(self, name: str) -> Any:   # select/confirm/... of the real UI
        return getattr(self.messages, name)


# -- signals (doit.md §10) --------------------------------------------------------------------

def interrupts() -> contextlib.AbstractContextManager[None]:
    """SIGTERM and SIGHUP raise Interrupted, which doit treats exactly like Ctrl-C.

    SIGINT keeps Python's KeyboardInterrupt. The previous handlers come back on exit.
    """
    def _raise(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    return _handling(_HANDLED_SIGNALS, _raise)


def signals_ignored() -> contextlib.AbstractContextManager[None]:
    """Teardown must finish: a second Ctrl-C (or a TERM/HUP) is ignored meanwhile.

    Children started inside inherit SIG_IGN, which suits `tart stop` and `herd unproxy`.
    """
    return _handling(_TEARDOWN_SIGNALS, signal.SIG_IGN)


def foreground_child() -> contextlib.AbstractContextManager[None]:
    """While an interactive child owns Ctrl-C, clave survives it.

    A Python no-op handler, not SIG_IGN: exec resets a handler to the default in the
    child, so the child still gets Ctrl-C, while SIG_IGN would be inherited.
    """
    return _handling((signal.SIGINT,), _ignore_signal)


@contextlib.contextmanager
def _handling(signals: tuple[int, ...], handler: Any) -> Iterator[None]:
    saved = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


def _ignore_signal(signum: int, frame: Any) -> None:
    pass
