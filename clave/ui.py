"""Every byte clave puts on the terminal: messages, progress, prompts, tables.

Two modes. On a terminal (blessed): a live progress area redrawn in place, arrow-key
menus, colour. Otherwise, or with NO_COLOR / CLAVE_PLAIN set: plain lines, no escape
codes at all, and prompts that take the default when nobody can answer them.

ui.py never imports doit: engine.py translates doit's events into begin / step_started /
step_finished / end. blessed is imported only when a terminal is there to drive, and its
Terminal is created once, early, because it queries the terminal when constructed.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

V = TypeVar("V")

OK, UP_TO_DATE, FAILED, INTERRUPTED = "ok", "up-to-date", "failed", "interrupted"

_TTY_MARKS = {OK: ("✓", "green"), UP_TO_DATE: ("=", "bright_black"),
              FAILED: ("✗", "red"), INTERRUPTED: ("✗", "yellow")}
_PLAIN_WORDS = {OK: "ok", UP_TO_DATE: "up to date", FAILED: "FAILED", INTERRUPTED: "interrupted"}
_FALSE_WORDS = ("", "0", "false", "no", "off")


@dataclass
class _Pipeline:
    """One running graph: nested when a step runs another graph (provisioning)."""

    label: str
    total: int
    index: int = 0
    step: str | None = None
    hint: str | None = None


class Ui:
    """clave's terminal: Messages (info/warn/error/hint), progress, select, confirm, table."""

    def __init__(self, out: TextIO, err: TextIO, stdin: TextIO | None = None, term: Any = None):
        self.out, self.err, self.stdin = out, err, stdin
        self.term = term                       # a blessed Terminal, or None in plain mode
        self._pipelines: list[_Pipeline] = []
        self._live = 0                         # lines of the live area now on screen
        self._styled_err = term is not None and _isatty(err)

    @classmethod
    def create(cls, out: TextIO | None = None, err: TextIO | None = None,
               stdin: TextIO | None = None, environ: Mapping[str, str] | None = None) -> Ui:
        """The UI for this process: a terminal one only when stdout is a TTY and allowed."""
        out = sys.stdout if out is None else out
        err = sys.stderr if err is None else err
        stdin = sys.stdin if stdin is None else stdin
        env = os.environ if environ is None else environ
        if not _isatty(out) or plain_requested(env):
            return cls(out, err, stdin)
        from blessed import Terminal

        return cls(out, err, stdin, Terminal(stream=out, force_styling=True))

    @property
    def plain(self) -> bool:
        return self.term is None

    @property
    def interactive(self) -> bool:
        """Someone can answer a prompt: stdin and stdout are both terminals."""
        return self._can_read_lines()

    # -- Messages ---------------------------------------------------------------------------

    def info(self, message: str) -> None:
        self._line(self.out, message)

    def warn(self, message: str) -> None:
        self._line(self.err, self._err_style("yellow", "warning:") + " " + message)

    def error(self, message: str) -> None:
        self._line(self.err, self._err_style("red", "error:") + " " + message)

    def hint(self, message: str) -> None:
        """A sub-step note: the current step's second line, or a plain indented line."""
        pipeline = self._pipelines[-1] if self._pipelines else None
        if pipeline is None or pipeline.step is None:
            self._line(self.out, self._style("bright_black", message))
            return
        if message == pipeline.hint:
            return
        pipeline.hint = message
        if self.plain:
            self._write(self.out, f"      {message}\n")
        else:
            self._redraw()

    # -- progress ---------------------------------------------------------------------------

    def begin(self, label: str, total: int) -> None:
        if label:
            total_text = f" ({total} step{'s' if total != 1 else ''})" if self.plain else ""
            self._line(self.out, self._style("bold", label) + total_text)
        self._pipelines.append(_Pipeline(label, total))

    def step_started(self, index: int, label: str) -> None:
        if not self._pipelines:
            self._pipelines.append(_Pipeline("", index))
        pipeline = self._pipelines[-1]
        pipeline.index, pipeline.step, pipeline.hint = index, label, None
        if self.plain:
            self._write(self.out, f"{self._counter(pipeline)} {label}...\n")
        else:
            self._redraw()

    def step_finished(self, label: str, seconds: float, status: str) -> None:
        pipeline = self._pipelines[-1] if self._pipelines else _Pipeline("", 0)
        if pipeline.step != label:             # finished without starting: skipped
            pipeline.index += 1
        pipeline.step = pipeline.hint = None
        timing = "up to date" if status == UP_TO_DATE else format_seconds(seconds)
        if self.plain:
            word = _PLAIN_WORDS.get(status, status)
            timing = "" if status == UP_TO_DATE else f" ({timing})"
            self._write(self.out, f"{self._counter(pipeline)} {label}: {word}{timing}\n")
            return
        mark, colour = _TTY_MARKS.get(status, ("·", "normal"))
        indent = "  " * (len(self._pipelines) - 1)
        self._line(self.out, f"{indent}{self._style(colour, mark)} {label} "
                             f"{self._style('bright_black', f'({timing})')}")

    def end(self) -> None:
        if self._pipelines:
            self._pipelines.pop()
        self._redraw()

    def release(self) -> None:
        """Clear the progress area and let go of the terminal (an interactive child is next)."""
        self._pipelines.clear()
        self._erase()
        for stream in (self.out, self.err):
            stream.flush()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hide the live area while something else writes to the terminal, then redraw."""
        self._erase()
        try:
            yield
        finally:
            self._redraw()

    # -- prompts ----------------------------------------------------------------------------

    def select(self, question: str, options: Sequence[tuple[V, str]],
               default: V | None = None) -> V | None:
        """The chosen value, or None when cancelled (Esc, Ctrl-C, end of input)."""
        if not options:
            raise ValueError("select() needs at least one option")
        values = [value for value, _label in options]
        index = values.index(default) if default in values else 0
        if self._can_read_keys():
            chosen = self._menu(question, [label for _v, label in options], index)
        elif self._can_read_lines():
            chosen = self._numbered(question, [label for _v, label in options], index)
        elif default in values:
            chosen = index
            self._line(self.out, f"{question} {options[index][1]} "
                                 "(no terminal to ask, so the default)")
        else:
            chosen = None
            self._line(self.out, f"{question} cancelled (no terminal to ask, and no default)")
        self._redraw()
        return None if chosen is None else values[chosen]

    def confirm(self, question: str, default: bool = False) -> bool | None:
        """True or False, or None when cancelled (Esc, Ctrl-C, end of input)."""
        choices = "[Y/n]" if default else "[y/N]"
        if self._can_read_keys():
            return self._confirm_keys(question, choices, default)
        if self._can_read_lines():
            answer = self._confirm_line(question, choices, default)
            self._redraw()
            return answer
        self._line(self.out, f"{question} {choices} {_yes_no(default)} "
                             "(no terminal to ask, so the default)")
        return default

    # -- table ------------------------------------------------------------------------------

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        for line in format_table(headers, rows, header_style=lambda s: self._style("bold", s)):
            self._line(self.out, line)

    # -- TTY menus --------------------------------------------------------------------------

    def _menu(self, question: str, labels: list[str], index: int) -> int | None:
        term, drawn, chosen = self.term, 0, None
        self._erase()
        try:
            # raw, not cbreak: Ctrl-C arrives as a key, never as a signal halfway through a redraw
            with term.raw():
                while True:
                    drawn = self._draw_menu(question, labels, index, drawn)
                    key = term.inkey()
                    name = key.name or ""
                    if name in ("KEY_UP", "KEY_BTAB") or key in ("k", "K"):
                        index = (index - 1) % len(labels)
                    elif name in ("KEY_DOWN", "KEY_TAB") or key in ("j", "J"):
                        index = (index + 1) % len(labels)
                    elif name == "KEY_HOME":
                        index = 0
                    elif name == "KEY_END":
                        index = len(labels) - 1
                    elif key.isdigit() and 1 <= int(key) <= len(labels):
                        index = int(key) - 1
                    elif name == "KEY_ENTER" or key in ("\r", "\n"):
                        chosen = index
                        break
                    elif name == "KEY_ESCAPE" or key in ("\x03", "\x04", "q"):
                        break
        except KeyboardInterrupt:   # a SIGINT from outside the terminal
            chosen = None
        self._erase_lines(drawn)
        answer = labels[chosen] if chosen is not None else self._style("yellow", "cancelled")
        self._line(self.out, f"{self._style('bold', '?')} {question} "
                             f"{self._style('cyan', answer) if chosen is not None else answer}")
        return chosen

    def _draw_menu(self, question: str, labels: list[str], index: int, drawn: int) -> int:
        term = self.term
        lines = [term.bold("?") + self._fit(f" {question}")]
        for i, label in enumerate(labels):
            row = self._fit(f"  ❯ {label}" if i == index else f"    {label}")
            lines.append(term.reverse(row) if i == index else row)
        lines.append(term.bright_black(self._fit(
            "  ↑/↓ or j/k to move, enter to choose, esc to cancel")))
        self._erase_lines(drawn)
        self._write(self.out, "\r\n".join(lines))     # raw mode: no newline translation
        return len(lines)

    def _confirm_keys(self, question: str, choices: str, default: bool) -> bool | None:
        term, answer = self.term, None
        self._erase()
        prompt = f"{term.bold('?')} {question} {term.bright_black(choices)} "
        try:
            with term.raw():
                self._write(self.out, prompt)        # shown once keys are read raw, not before
                while True:
                    key = term.inkey()
                    name = key.name or ""
                    if key in ("y", "Y"):
                        answer = True
                    elif key in ("n", "N"):
                        answer = False
                    elif name == "KEY_ENTER" or key in ("\r", "\n"):
                        answer = default
                    elif name == "KEY_ESCAPE" or key in ("\x03", "\x04", "q"):
                        break
                    else:
                        continue
                    break
        except KeyboardInterrupt:
            answer = None
        shown = term.cyan(_yes_no(answer)) if answer is not None else term.yellow("cancelled")
        self._write(self.out, f"{shown}\n")    # after the prompt: right even when it wrapped
        self._redraw()
        return answer

    # -- line prompts (plain mode on a terminal) ----------------------------------------------

    def _numbered(self, question: str, labels: list[str], index: int) -> int | None:
        self._erase()
        self._write(self.out, question + "\n" + "".join(
            f"  {i}) {label}\n" for i, label in enumerate(labels, 1)))
        while True:
            reply = self._ask(f"Choose 1-{len(labels)} [{index + 1}]: ")
            if reply is None:
                return None
            if not reply:
                return index
            if reply.isdigit() and 1 <= int(reply) <= len(labels):
                return int(reply) - 1
            self._write(self.out, f"Please type a number from 1 to {len(labels)}.\n")

    def _confirm_line(self, question: str, choices: str, default: bool) -> bool | None:
        self._erase()
        while True:
            reply = self._ask(f"{question} {choices} ")
            if reply is None:
                return None
            if not reply:
                return default
            if reply.lower() in ("y", "yes"):
                return True
            if reply.lower() in ("n", "no"):
                return False
            self._write(self.out, "Please answer y or n.\n")

    def _ask(self, prompt: str) -> str | None:
        """One line from stdin; None on end of input or Ctrl-C (cancel)."""
        self._write(self.out, prompt)
        try:
            line = self.stdin.readline()
        except KeyboardInterrupt:
            self._write(self.out, "\n")
            return None
        return line.strip() if line else None

    # -- drawing ----------------------------------------------------------------------------

    def _line(self, stream: TextIO, text: str) -> None:
        """A permanent line, written above the live progress area."""
        self._erase()
        if stream is not self.out:
            self.out.flush()
        self._write(stream, text + "\n")
        self._redraw()

    def _redraw(self) -> None:
        if self.plain:
            return
        self._erase()
        lines = []
        for depth, pipeline in enumerate(self._pipelines):
            if pipeline.step is None:
                continue
            indent = "  " * depth
            lines.append(self._fit(f"{indent}{self._counter(pipeline)} · {pipeline.step}",
                                   style="bold"))
            if pipeline.hint:
                lines.append(self._fit(f"{indent}    {pipeline.hint}", style="bright_black"))
        if lines:
            self._write(self.out, "\n".join(lines))
        self._live = len(lines)

    def _erase(self) -> None:
        self._erase_lines(self._live)
        self._live = 0

    def _erase_lines(self, count: int) -> None:
        if self.plain or count <= 0:
            return
        up = self.term.move_up(count - 1) if count > 1 else ""
        self._write(self.out, f"\r{up}{self.term.clear_eos}")

    def _counter(self, pipeline: _Pipeline) -> str:
        if self.plain:
            return f"[{pipeline.index}/{pipeline.total}]"
        return f"step {pipeline.index} of {pipeline.total}"

    def _fit(self, text: str, style: str | None = None) -> str:
        """One screen row: a wrapped live line would break the cursor arithmetic."""
        width = self.term.width if self.term.width > 0 else 80
        text = self.term.truncate(text, max(width - 1, 10))
        return getattr(self.term, style)(text) if style else text

    def _style(self, name: str, text: str) -> str:
        return text if self.plain else getattr(self.term, name)(text)

    def _err_style(self, name: str, text: str) -> str:
        return getattr(self.term, name)(text) if self._styled_err else text

    def _can_read_keys(self) -> bool:
        # blessed reads keys from sys.__stdin__, and only when our stream is the real stdout
        return (self.term is not None and _isatty(self.stdin)
                and getattr(self.term, "_keyboard_fd", None) is not None)

    def _can_read_lines(self) -> bool:
        return _isatty(self.stdin) and _isatty(self.out)

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        stream.write(text)
        stream.flush()


def plain_requested(environ: Mapping[str, str]) -> bool:
    """NO_COLOR (any non-empty value), CLAVE_PLAIN (unless 0/false/no/off), or TERM=dumb."""
    return (bool(environ.get("NO_COLOR"))
            or environ.get("CLAVE_PLAIN", "").strip().lower() not in _FALSE_WORDS
            or environ.get("TERM") == "dumb")


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                 header_style: Any = None) -> list[str]:
    """Columns padded to their widest cell (wide characters count twice), two spaces apart."""
    cells = [[_cell(v) for v in row] for row in rows]
    columns = len(headers)
    widths = [max([display_width(headers[i])]
                  + [display_width(row[i]) for row in cells if i < len(row)])
              for i in range(columns)]

    def render(row: Sequence[str]) -> str:
        padded = [value + " " * (widths[i] - display_width(value))
                  for i, value in enumerate(row[:columns])]
        return "  ".join(padded).rstrip()

    head = render(list(headers))
    lines = [header_style(head) if header_style else head]
    lines.extend(render(row + [""] * (columns - len(row))) for row in cells)
    return lines


def display_width(text: str) -> int:
    """Terminal columns: East Asian wide/full-width count 2, combining marks 0."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _cell(value: Any) -> str:
    return "" if value is None else " ".join(str(value).split("\n"))


def _yes_no(answer: bool) -> str:
    return "yes" if answer else "no"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False
