"""A `ctx.ui` for tests: every message a step or the engine says, in order."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Said:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def info(self, message: str) -> None:
        self.lines.append(("info", message))

    def warn(self, message: str) -> None:
        self.lines.append(("warn", message))

    def error(self, message: str) -> None:
        self.lines.append(("error", message))

    def hint(self, message: str) -> None:
        self.lines.append(("hint", message))

    def of(self, kind: str) -> list[str]:
        return [text for k, text in self.lines if k == kind]
