"""Patch a Laravel .env in place: change the keys clave owns, keep every other byte.

Lines are grouped into entries the way Laravel's parser (vlucas/phpdotenv) groups them, so a
multi-line double-quoted value is one entry: a line inside it that looks like `DB_HOST=…`
is part of that value and never patched. Every assignment of a key is patched (phpdotenv
lets the last one win), keeping its `export ` prefix, spacing, trailing comment and line
ending. The file is read and written as bytes: CRLF endings and non-UTF-8 comments survive.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

_ASSIGNMENT = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)(\s*=[ \t]*)")
_SAFE = re.compile(r"[A-Za-z0-9_./:@%+,-]*")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\r": "\\r"}
_CLOSING_QUOTE = re.compile(r'(?=[^\\]")')
_ENCODING = ("utf-8", "surrogateescape")   # any byte round-trips unchanged


def format_value(value: str) -> str:
    """Bare when safe, else double-quoted with phpdotenv's escapes (`$` would interpolate)."""
    if _SAFE.fullmatch(value):
        return value
    return '"' + "".join(_ESCAPES.get(c, c) for c in value) + '"'


def patch_text(text: str, values: Mapping[str, str]) -> str:
    """Replace every assignment of each key; append the missing keys at the end."""
    newline = "\r\n" if "\n" in text and text.split("\n", 1)[0].endswith("\r") else "\n"
    out, seen = [], set()
    for entry in _entries(_lines(text)):
        match = _ASSIGNMENT.match(entry[0])
        if not match or match.group(2) not in values:
            out.extend(entry)
            continue
        key = match.group(2)
        seen.add(key)
        joined = "\n".join(_content(line) for line in entry)
        rest = joined[match.end():]
        tail = rest[_value_length(rest):]
        out.append(f"{match.group(0)}{format_value(values[key])}{tail}{_ending(entry[-1])}")
    missing = [key for key in values if key not in seen]
    if missing:
        if out and not out[-1].endswith("\n"):
            out[-1] += newline
        out.extend(f"{key}={format_value(values[key])}{newline}" for key in missing)
    return "".join(out)


def patch_file(path: Path, values: Mapping[str, str], example: Path | None = None) -> bool:
    """Patch `path` atomically, creating it from `example` when missing. True if created."""
    created = not path.exists()
    if created and example is not None and example.exists():
        text = example.read_bytes().decode(*_ENCODING)
    elif created:
        text = ""
    else:
        text = path.read_bytes().decode(*_ENCODING)
    mode = 0o600 if created else path.stat().st_mode & 0o777   # a new .env holds secrets
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".env.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(patch_text(text, values).encode(*_ENCODING))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return created


def _lines(text: str) -> list[str]:
    """Split after each "\\n" only (str.splitlines would also split at \\f, \\x1c, \\u2028…)."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _content(line: str) -> str:
    line = line[:-1] if line.endswith("\n") else line
    return line[:-1] if line.endswith("\r") else line


def _ending(line: str) -> str:
    return line[len(_content(line)):]


def _entries(lines: list[str]) -> Iterator[list[str]]:
    """Group lines as phpdotenv's Lines::process does: `="` opens a value until its quote."""
    buffer: list[str] = []
    for line in lines:
        content = _content(line)
        started = '="' in content and not _closes(content, True)
        if started or buffer:
            buffer.append(line)
            if _closes(content, started):
                yield buffer
                buffer = []
        else:
            yield [line]
    if buffer:                       # an unclosed quote runs to the end of the file
        yield buffer


def _closes(content: str, started: bool) -> bool:
    if content == '"':
        return True
    quotes = len(_CLOSING_QUOTE.findall(content.replace("\\\\", "")))
    return quotes > 1 if started else quotes >= 1


def _value_length(rest: str) -> int:
    """Length of the value at the start of `rest`; what follows (a comment) is kept."""
    if rest.startswith("'"):
        end = rest.find("'", 1)
        return len(rest) if end < 0 else end + 1
    if rest.startswith('"'):
        i = 1
        while i < len(rest):
            if rest[i] == "\\":
                i += 2
            elif rest[i] == '"':
                return i + 1
            else:
                i += 1
        return len(rest)
    # unquoted: up to the first blank; `v#x` is one mistyped value, `v # x` a kept comment
    return re.match(r"\S*", rest).end()
