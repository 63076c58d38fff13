""".env patching: clave's keys change, every other byte stays, Laravel reads what we meant.

`laravel_reads` re-implements, in a few lines, how vlucas/phpdotenv (Laravel's .env parser)
groups lines and decodes values (src/Parser/Lines.php, EntryParser.php), so the tests check
the values Laravel would see, not just the text we wrote.
"""

from __future__ import annotations

import os
import re
import stat

import pytest

from clave.support import dotenv
from clave.support.dotenv import format_value, patch_file, patch_text

OURS = {"APP_URL": "https://shop-ab12.test", "DB_HOST": "127.0.0.1", "DB_PORT": "13306",
        "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "16379"}

LARAVEL_ENV = """\
APP_NAME="My Shop"
APP_ENV=local
APP_KEY=base64:Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=
APP_DEBUG=true
APP_URL=http://localhost

# Database: the host's MySQL (Herd)
DB_CONNECTION=mysql
DB_HOST=127.0.0.1 # Herd's MySQL
DB_PORT=3306
DB_DATABASE=shop
DB_USERNAME=root
DB_PASSWORD='p@ss w#rd "x"'

export MAIL_MAILER = log
  REDIS_CLIENT=phpredis
REDIS_HOST = 127.0.0.1
REDIS_PASSWORD=null
REDIS_PORT=6379
VITE_APP_NAME="${APP_NAME}"
"""


# -- a reader with Laravel's rules ----------------------------------------------------------

def laravel_reads(text: str) -> dict[str, str]:
    """Name -> value as phpdotenv loads them (last assignment wins; `$` kept literally here,
    with unescaped ones marked `<$>` because phpdotenv would try to interpolate them)."""
    values: dict[str, str] = {}
    for entry in _php_entries(re.split(r"\r\n|\n|\r", text)):
        stripped = entry.strip()
        if not stripped or stripped.startswith("#") or "=" not in entry:
            continue
        name, raw = (part.strip() for part in entry.split("=", 1))
        name = re.sub(r"^export\s+", "", name)
        values[name] = _php_value(raw)
    return values


def _php_entries(lines: list[str]):
    def quotes(line: str) -> int:
        return len(re.findall(r'(?=[^\\]")', line.replace("\\\\", "")))

    def stops(line: str, started: bool) -> bool:
        return line == '"' or (quotes(line) > 1 if started else quotes(line) >= 1)

    buffer: list[str] = []
    multiline = False
    for line in lines:
        started = '="' in line and not stops(line, True)
        multiline = multiline or started
        if multiline:
            buffer.append(line)
            if stops(line, started):
                multiline = False
                yield "\n".join(buffer)
                buffer = []
        else:
            yield line


def _php_value(raw: str) -> str:
    out, state = [], "initial"
    for char in raw:
        if state in ("initial", "unquoted"):
            if state == "initial" and char in "'\"":
                state = "single" if char == "'" else "double"
            elif char == "#":
                break
            elif state == "unquoted" and char.isspace():
                state = "after"
            else:
                out.append("<$>" if char == "$" else char)
                state = "unquoted"
        elif state == "single":
            if char == "'":
                state = "after"
            else:
                out.append(char)
        elif state == "double":
            if char == '"':
                state = "after"
            elif char == "\\":
                state = "escape"
            else:
                out.append("<$>" if char == "$" else char)
        elif state == "escape":
            escapes = {'"': '"', "\\": "\\", "$": "$", "n": "\n", "r": "\r", "t": "\t",
                       "f": "\f", "v": "\v"}
            if char not in escapes:
                raise ValueError(f"phpdotenv: an unexpected escape sequence in {raw!r}")
            out.append(escapes[char])
            state = "double"
        elif state == "after":
            if char == "#":
                break
            if not char.isspace():
                raise ValueError(f"phpdotenv: unexpected whitespace in {raw!r}")
    if state in ("single", "double", "escape"):
        raise ValueError(f"phpdotenv: a missing closing quote in {raw!r}")
    return "".join(out)


def test_the_reference_reader_reads_the_fixture_like_laravel():
    read = laravel_reads(LARAVEL_ENV)
    assert read["APP_NAME"] == "My Shop"
    assert read["DB_HOST"] == "127.0.0.1"
    assert read["DB_PASSWORD"] == 'p@ss w#rd "x"'
    assert read["MAIL_MAILER"] == "log"
    assert read["VITE_APP_NAME"] == "<$>{APP_NAME}"


# -- patch_text ----------------------------------------------------------------------------

def changed_lines(before: str, after: str) -> list[int]:
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old) == len(new), "lines were added or removed"
    return [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]


def test_only_the_lines_of_our_keys_change_and_every_other_byte_stays():
    patched = patch_text(LARAVEL_ENV, OURS)
    lines = LARAVEL_ENV.splitlines()
    ours = [i for i, line in enumerate(lines)
            if re.match(r"\s*(export\s+)?(APP_URL|DB_HOST|DB_PORT|REDIS_HOST|REDIS_PORT)\b", line)]
    changed = changed_lines(LARAVEL_ENV, patched)
    assert set(changed) <= set(ours) and len(changed) >= 3
    assert patched.splitlines()[8] == "DB_HOST=127.0.0.1 # Herd's MySQL"   # same value, same bytes
    read = laravel_reads(patched)
    assert {k: read[k] for k in OURS} == OURS
    before = laravel_reads(LARAVEL_ENV)
    assert {k: v for k, v in read.items() if k not in OURS} == \
        {k: v for k, v in before.items() if k not in OURS}


def test_a_patched_line_keeps_its_export_prefix_spacing_and_trailing_comment():
    text = "export APP_URL=http://old\n  REDIS_HOST = old # where redis is\nDB_PORT=3306\n"
    assert patch_text(text, {"APP_URL": "https://a.test", "REDIS_HOST": "10.0.0.2",
                             "DB_PORT": "1"}) == \
        "export APP_URL=https://a.test\n  REDIS_HOST = 10.0.0.2 # where redis is\nDB_PORT=1\n"


@pytest.mark.parametrize("old", ['"http://old"', "'http://old'", "http://old", "",
                                 '"http://old # not a comment"', "http://old#frag"])
def test_the_whole_old_value_is_replaced_whatever_its_quoting(old):
    patched = patch_text(f"APP_URL={old}\nAPP_ENV=local\n", {"APP_URL": "https://new.test"})
    assert patched == "APP_URL=https://new.test\nAPP_ENV=local\n"


def test_crlf_line_endings_are_kept_and_used_for_appended_keys():
    text = "APP_ENV=local\r\n# comment\r\nDB_HOST=old\r\n\r\nDB_PORT=3306"
    patched = patch_text(text, {"DB_HOST": "127.0.0.1", "DB_PORT": "13306", "REDIS_PORT": "1"})
    assert patched == ("APP_ENV=local\r\n# comment\r\nDB_HOST=127.0.0.1\r\n\r\n"
                       "DB_PORT=13306\r\nREDIS_PORT=1\r\n")


def test_keys_missing_from_the_file_are_appended_in_the_order_given():
    assert patch_text("APP_ENV=local\n", {"DB_HOST": "h", "APP_URL": "u"}) == \
        "APP_ENV=local\nDB_HOST=h\nAPP_URL=u\n"


def test_a_final_newline_is_added_before_appending_when_the_file_lacked_one():
    assert patch_text("APP_ENV=local", {"DB_HOST": "h"}) == "APP_ENV=local\nDB_HOST=h\n"
    assert patch_text("", {"DB_HOST": "h"}) == "DB_HOST=h\n"


def test_nothing_is_appended_and_nothing_changes_when_no_key_is_missing_or_new():
    text = "# only\nDB_HOST=h"
    assert patch_text(text, {"DB_HOST": "h"}) == text
    assert patch_text(LARAVEL_ENV, {}) == LARAVEL_ENV


def test_patching_twice_gives_the_same_bytes():
    once = patch_text(LARAVEL_ENV, OURS)
    assert patch_text(once, OURS) == once


def test_every_assignment_of_a_key_is_patched_because_laravel_takes_the_last():
    text = "DB_HOST=first\nAPP_ENV=local\nDB_HOST=second\n"
    patched = patch_text(text, {"DB_HOST": "127.0.0.1"})
    assert patched == "DB_HOST=127.0.0.1\nAPP_ENV=local\nDB_HOST=127.0.0.1\n"
    assert laravel_reads(patched)["DB_HOST"] == "127.0.0.1"


def test_commented_out_and_lookalike_keys_are_left_alone():
    text = "# DB_HOST=commented\nDB_HOST_READ=replica\nXDB_HOST=x\n#DB_PORT=1\n"
    assert patch_text(text, {"DB_HOST": "h", "DB_PORT": "2"}) == text + "DB_HOST=h\nDB_PORT=2\n"


def test_a_line_inside_a_multiline_quoted_value_is_not_taken_for_a_key():
    text = 'CERT="-----BEGIN\nDB_HOST=inside-the-cert\n-----END"\nDB_HOST=old\n'
    patched = patch_text(text, {"DB_HOST": "127.0.0.1"})
    assert patched == 'CERT="-----BEGIN\nDB_HOST=inside-the-cert\n-----END"\nDB_HOST=127.0.0.1\n'
    assert laravel_reads(patched)["CERT"] == "-----BEGIN\nDB_HOST=inside-the-cert\n-----END"


def test_a_multiline_value_of_our_key_is_replaced_whole():
    text = 'APP_URL="http://one\ntwo" # note\r\nAPP_ENV=local\r\n'
    assert patch_text(text, {"APP_URL": "https://a.test"}) == \
        "APP_URL=https://a.test # note\r\nAPP_ENV=local\r\n"


def test_form_feeds_and_unicode_line_separators_do_not_split_lines():
    text = "NOTE=\"a\x0cDB_HOST=b\u2028c\"\nDB_HOST=old\n"
    assert patch_text(text, {"DB_HOST": "new"}) == "NOTE=\"a\x0cDB_HOST=b\u2028c\"\nDB_HOST=new\n"


@pytest.mark.parametrize("value", [
    "two words", "has#hash", "trailing #comment", 'say "hi"', "it's", "back\\slash",
    "${APP_NAME}", "$HOME/x", "tab\there", "line\nbreak", "crlf\r\nend", "", "=eq=", "'",
    "ünïcode spaces",
])
def test_values_laravel_would_misread_are_quoted_and_read_back_exactly(value):
    patched = patch_text("APP_ENV=local\nAPP_URL=x\n", {"APP_URL": value})
    assert laravel_reads(patched) == {"APP_ENV": "local", "APP_URL": value}
    assert len(patched.splitlines()) == 2          # still one line per key


@pytest.mark.parametrize("value", ["https://shop-ab12.test", "127.0.0.1", "3306",
                                   "http://127.0.0.1:8081/path", "user@host", "a,b+c%20"])
def test_plain_values_are_written_bare(value):
    assert format_value(value) == value


def test_a_value_ending_in_a_newline_is_not_written_bare():
    assert format_value("127.0.0.1\n") == '"127.0.0.1\\n"'


# -- patch_file ----------------------------------------------------------------------------

def test_the_file_is_patched_in_place_keeping_its_mode(tmp_path):
    env = tmp_path / ".env"
    env.write_bytes(LARAVEL_ENV.encode())
    env.chmod(0o640)
    created = patch_file(env, OURS, example=tmp_path / ".env.example")
    assert created is False
    assert env.read_bytes() == patch_text(LARAVEL_ENV, OURS).encode()
    assert stat.S_IMODE(env.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


def test_crlf_and_non_utf8_bytes_in_the_file_survive(tmp_path):
    env = tmp_path / ".env"
    original = b"# caf\xe9 (latin-1)\r\nAPP_URL=http://localhost\r\nMAIL_FROM=\xff\xfe\r\n"
    env.write_bytes(original)
    patch_file(env, {"APP_URL": "https://a.test"})
    assert env.read_bytes() == original.replace(b"http://localhost", b"https://a.test")


def test_a_missing_env_is_created_from_the_example_which_is_left_untouched(tmp_path):
    example = tmp_path / ".env.example"
    example.write_text(LARAVEL_ENV)
    example.chmod(0o644)
    env = tmp_path / ".env"
    assert patch_file(env, OURS, example=example) is True
    assert env.read_text() == patch_text(LARAVEL_ENV, OURS)
    assert example.read_text() == LARAVEL_ENV
    assert stat.S_IMODE(env.stat().st_mode) == 0o600      # a new .env may hold secrets


def test_without_an_example_the_new_env_holds_just_our_keys(tmp_path):
    env = tmp_path / ".env"
    assert patch_file(env, {"DB_HOST": "h"}, example=tmp_path / ".env.example") is True
    assert env.read_text() == "DB_HOST=h\n"


def test_a_symlinked_env_is_replaced_by_a_patched_file_and_its_target_left_alone(tmp_path):
    shared = tmp_path / "shared.env"
    shared.write_text("DB_HOST=main-repo\n")
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".env").symlink_to(shared)
    patch_file(clone / ".env", {"DB_HOST": "127.0.0.1"})
    assert shared.read_text() == "DB_HOST=main-repo\n"
    assert not (clone / ".env").is_symlink()
    assert (clone / ".env").read_text() == "DB_HOST=127.0.0.1\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text(LARAVEL_ENV)

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dotenv.os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        patch_file(env, OURS)
    assert env.read_text() == LARAVEL_ENV
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


def test_an_interrupt_mid_patch_leaves_no_temporary_file(tmp_path, monkeypatch):
    env = tmp_path / ".env"

    def interrupted(text, values):
        raise KeyboardInterrupt

    monkeypatch.setattr(dotenv, "patch_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        patch_file(env, OURS)
    assert list(tmp_path.iterdir()) == []


def test_a_value_that_is_not_text_fails_before_the_file_changes(tmp_path):
    env = tmp_path / ".env"
    env.write_text(LARAVEL_ENV)
    with pytest.raises(TypeError):
        patch_file(env, {"DB_PORT": 3306})  # type: ignore[dict-item]
    assert env.read_text() == LARAVEL_ENV
    assert sorted(os.listdir(tmp_path)) == [".env"]
