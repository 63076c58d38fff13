"""Recording fake steps and a recording progress sink for the engine tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clave.context import SessionContext
from clave.steps.base import Step
from clave.tasks.graph import Task
from tests.messages import Said


@dataclass
class Recorder:
    """Every run/undo/done call, in order, as (kind, task name)."""

    events: list[tuple[str, str]] = field(default_factory=list)

    def calls(self, kind: str) -> list[str]:
        return [name for k, name in self.events if k == kind]


class FakeStep(Step):
    """Records each call; `on_run` / `on_undo` add behaviour (raise, hint, signal)."""

    def __init__(self, name: str, recorder: Recorder, *,
                 on_run: Callable[[SessionContext], Any] | None = None,
                 on_undo: Callable[[SessionContext], Any] | None = None,
                 done: bool | Callable[[], bool] = False,
                 digest: str | None = None, label: str | None = None):
        self.name, self.recorder = name, recorder
        self.on_run, self.on_undo, self._done = on_run, on_undo, done
        self.label = label or f"Doing {name}"
        if digest is not None:
            self.digest = digest

    def run(self, ctx: SessionContext) -> None:
        self.recorder.events.append(("run", self.name))
        if self.on_run:
            self.on_run(ctx)

    def undo(self, ctx: SessionContext) -> None:
        self.recorder.events.append(("undo", self.name))
        if self.on_undo:
            self.on_undo(ctx)

    def done(self, ctx: SessionContext) -> bool:
        self.recorder.events.append(("done", self.name))
        return self._done() if callable(self._done) else self._done


def chain(recorder: Recorder, names: list[str], **behaviour: dict[str, Any]) -> list[Task]:
    """a <- b <- c ...: each task depends on the one before it."""
    tasks, previous = [], ()
    for name in names:
        tasks.append(Task(name, FakeStep(name, recorder, **behaviour.get(name, {})), previous))
        previous = (name,)
    return tasks


def raising(error: BaseException) -> Callable[[SessionContext], None]:
    def run(ctx: SessionContext) -> None:
        raise error
    return run


@dataclass
class ProgressLog:
    """A progress sink (what ui.Ui offers the engine), recording each call."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def begin(self, label: str, total: int) -> None:
        self.calls.append(("begin", label, total))

    def step_started(self, index: int, label: str) -> None:
        self.calls.append(("step_started", index, label))

    def step_finished(self, label: str, seconds: float, status: str) -> None:
        assert seconds >= 0
        self.calls.append(("step_finished", label, status))

    def hint(self, message: str) -> None:
        self.calls.append(("hint", message))

    def end(self) -> None:
        self.calls.append(("end",))

    def of(self, event: str) -> list[tuple[Any, ...]]:
        return [call[1:] for call in self.calls if call[0] == event]


MessageLog = Said   # ctx.ui for engine tests
