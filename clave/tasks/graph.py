"""Graphs as data: which steps, in which order, after which others.

A graph file (`preflight.py`, `session.py`, `provision.py`) is a tuple of `node(...)`
you can read aloud; `build()` hands each step the adapters its `__init__` asks for by name
and gives the engine a list of `Task`s.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from clave.steps.base import Step


@dataclass(frozen=True)
class Node:
    step: type[Step]
    after: tuple[type[Step], ...] = ()


def node(step: type[Step], after: type[Step] | tuple[type[Step], ...] = ()) -> Node:
    return Node(step, after if isinstance(after, tuple) else (after,))


@dataclass(frozen=True)
class Task:
    """One step instance as the engine sees it: a name, a label and its dependencies."""

    name: str
    step: Step
    deps: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.step.label or self.name


def build(nodes: Iterable[Node], adapters: Mapping[str, Any]) -> list[Task]:
    """Instantiate every step with the adapters named by its __init__ parameters."""
    return [
        Task(n.step.task_name(), _instantiate(n.step, adapters),
             tuple(dep.task_name() for dep in n.after))
        for n in nodes
    ]


def _instantiate(cls: type[Step], adapters: Mapping[str, Any]) -> Step:
    params = [
        p for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    missing = [p.name for p in params if p.name not in adapters and p.default is p.empty]
    if missing:
        raise TypeError(f"{cls.__name__} needs adapters {missing}")
    return cls(**{p.name: adapters[p.name] for p in params if p.name in adapters})
