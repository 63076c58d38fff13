"""clave's terminal UI in both modes: plain lines off a TTY, blessed on a pseudo-terminal."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import textwrap

import pytest

from clave.ui import Ui, display_width, format_seconds, format_table
from tests.unit.ui_pty import ROOT, PtyProgram, Screen, set_size

OPTIONS = [("keep", "Keep"), ("merge", "Merge"), ("discard", "Discard")]


def plain_ui() -> tuple[Ui, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Ui.create(out=out, err=err, stdin=io.StringIO(), environ={}), out, err


class PtyOut:
    """An in-process pseudo-terminal used as the UI's stdout; reads back what reached it."""

    def __init__(self) -> None:
        self.master, slave = pty.openpty()
        set_size(slave)
        self.out = os.fdopen(slave, "w", encoding="utf-8")
        self.received = ""

    def ui(self, environ: dict[str, str] | None = None) -> Ui:
        return Ui.create(out=self.out, err=self.out, stdin=io.StringIO(),
                         environ={"TERM": "xterm-256color", **(environ or {})})

    def read(self) -> str:
        """Everything written so far: a marker written last tells when it has all arrived."""
        marker = "<<drained>>"
        self.out.write(marker)
        self.out.flush()
        data = b""
        while marker.encode() not in data:
            ready, _, _ = select.select([self.master], [], [], 10)
            assert ready, f"the pty went quiet before the marker: {data!r}"
            data += os.read(self.master, 4096)
        text = data.decode().replace(marker, "")
        self.received += text
        return text

    def screen(self) -> list[str]:
        self.read()
        return Screen().feed(self.received).visible()

    def close(self) -> None:
        self.out.close()
        os.close(self.master)


@pytest.fixture
def terminal():
    pty_out = PtyOut()
    yield pty_out
    pty_out.close()


def run_on_pty(body: str, env: dict[str, str] | None = None) -> PtyProgram:
    code = "from clave.ui import Ui\nui = Ui.create()\n" + textwrap.dedent(body)
    return PtyProgram(code, env)


# -- plain mode -----------------------------------------------------------------------------------

def test_off_a_tty_every_call_writes_plain_lines_without_a_single_escape_code():
    ui, out, err = plain_ui()
    assert ui.plain
    ui.info("Starting session abcd1234")
    ui.begin("Session", 2)
    ui.step_started(1, "Cloning VM")
    ui.hint("copying .env")
    ui.warn("Herd is not running")
    ui.step_finished("Cloning VM", 1.23, "ok")
    ui.step_finished("Booting VM", 0.0, "up-to-date")
    ui.end()
    ui.error("the merge failed")
    ui.table(["ID", "PROJECT"], [["abcd1234", "shop"]])
    ui.select("On exit?", OPTIONS, default="keep")
    ui.confirm("Merge now?", default=False)
    ui.release()
    assert "\x1b" not in out.getvalue() + err.getvalue()
    assert out.getvalue().splitlines()[:6] == [
        "Starting session abcd1234",
        "Session (2 steps)",
        "[1/2] Cloning VM...",
        "      copying .env",
        "[1/2] Cloning VM: ok (1.2 s)",
        "[2/2] Booting VM: up to date",
    ]


def test_warnings_and_errors_go_to_stderr_and_information_to_stdout():
    ui, out, err = plain_ui()
    ui.info("hello")
    ui.warn("careful")
    ui.error("broken")
    assert out.getvalue() == "hello\n"
    assert err.getvalue() == "warning: careful\nerror: broken\n"


def test_a_failed_or_interrupted_step_says_so_with_its_time():
    ui, out, _err = plain_ui()
    ui.begin("", 2)
    ui.step_started(1, "Booting VM")
    ui.step_finished("Booting VM", 75.2, "failed")
    ui.step_started(2, "Waiting")
    ui.step_finished("Waiting", 0.04, "interrupted")
    assert out.getvalue().splitlines() == ["[1/2] Booting VM...",
                                           "[1/2] Booting VM: FAILED (1 min 15 s)",
                                           "[2/2] Waiting...",
                                           "[2/2] Waiting: interrupted (0.0 s)"]


def test_a_ui_off_a_tty_is_not_interactive_and_one_on_a_terminal_is(terminal):
    ui, _out, _err = plain_ui()
    assert not ui.interactive
    with open(os.ttyname(terminal.out.fileno())) as tty_in:
        ui = Ui.create(out=terminal.out, stdin=tty_in, environ={"NO_COLOR": "1"})
        assert ui.plain and ui.interactive


def test_select_off_a_tty_takes_the_default_without_asking_and_says_so():
    ui, out, _err = plain_ui()
    assert ui.select("On exit?", OPTIONS, default="merge") == "merge"
    assert out.getvalue() == "On exit? Merge (no terminal to ask, so the default)\n"


def test_select_off_a_tty_without_a_default_cancels():
    ui, out, _err = plain_ui()
    assert ui.select("On exit?", OPTIONS) is None
    assert "cancelled" in out.getvalue()


def test_confirm_off_a_tty_takes_the_default_without_asking_and_says_so():
    ui, out, _err = plain_ui()
    assert ui.confirm("Build the base VM now?", default=True) is True
    assert out.getvalue() == ("Build the base VM now? [Y/n] yes "
                              "(no terminal to ask, so the default)\n")


@pytest.mark.parametrize("environ", [{"NO_COLOR": "1"}, {"CLAVE_PLAIN": "1"}, {"TERM": "dumb"}])
def test_no_color_clave_plain_or_a_dumb_term_force_plain_even_on_a_terminal(terminal, environ):
    ui = terminal.ui(environ)
    assert ui.plain and ui.term is None
    ui.begin("Session", 1)
    ui.step_started(1, "Cloning VM")
    ui.hint("copying .env")
    ui.step_finished("Cloning VM", 0.5, "ok")
    ui.warn("careful")
    ui.table(["A"], [["b"]])
    text = terminal.read()
    assert "Cloning VM" in text and "\x1b" not in text


def test_clave_plain_set_to_zero_keeps_the_terminal_ui(terminal):
    assert not terminal.ui({"CLAVE_PLAIN": "0"}).plain


def test_importing_ui_and_engine_loads_neither_blessed_nor_doit():
    code = ("import sys, clave.ui, clave.engine; "
            "print(sorted(m for m in ('blessed', 'doit') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


# -- table and small formats ----------------------------------------------------------------------

def test_a_table_pads_each_column_to_its_widest_cell_two_spaces_apart():
    lines = format_table(["ID", "PROJECT", "URL"],
                         [["abcd1234", "shop", "https://shop-abcd1234.test"],
                          ["x", None, ""]])
    assert lines == ["ID        PROJECT  URL",
                     "abcd1234  shop     https://shop-abcd1234.test",
                     "x"]


def test_a_table_counts_wide_characters_as_two_columns_and_pads_short_rows():
    assert display_width("日本") == 4 and display_width("é") == 1
    assert format_table(["NAME", "N"], [["日本", 1], ["ab"]]) == ["NAME  N", "日本  1", "ab"]


def test_ui_table_writes_the_formatted_lines():
    ui, out, _err = plain_ui()
    ui.table(["A", "B"], [["1", "22"]])
    assert out.getvalue() == "A  B\n1  22\n"


def test_seconds_read_naturally():
    assert format_seconds(1.234) == "1.2 s"
    assert format_seconds(0) == "0.0 s"
    assert format_seconds(125.4) == "2 min 5 s"


# -- progress on a terminal -----------------------------------------------------------------------

def test_progress_shows_step_n_of_m_and_the_hint_then_leaves_only_finished_lines(terminal):
    ui = terminal.ui()
    assert not ui.plain
    ui.begin("Session", 3)
    ui.step_finished("Checking the base VM", 0.0, "up-to-date")
    ui.step_started(2, "Cloning VM")
    ui.hint("copying .env")
    assert terminal.screen() == ["Session",
                                 "= Checking the base VM (up to date)",
                                 "step 2 of 3 · Cloning VM",
                                 "    copying .env"]
    ui.warn("Herd is not running")                    # above the live area, which stays
    ui.hint("cloning 120 MB")
    assert terminal.screen()[-3:] == ["warning: Herd is not running",
                                      "step 2 of 3 · Cloning VM",
                                      "    cloning 120 MB"]
    ui.step_finished("Cloning VM", 1.23, "ok")
    ui.step_started(3, "Booting VM")
    ui.step_finished("Booting VM", 2.0, "failed")
    ui.end()
    assert terminal.screen() == ["Session",
                                 "= Checking the base VM (up to date)",
                                 "warning: Herd is not running",
                                 "✓ Cloning VM (1.2 s)",
                                 "✗ Booting VM (2.0 s)"]
    assert "\x1b[1m" in terminal.received                # styled, since this is a terminal


def test_release_clears_the_progress_area_before_a_child_takes_the_terminal(terminal):
    ui = terminal.ui()
    ui.begin("", 2)
    ui.step_started(1, "Running Claude Code")
    ui.hint("connecting")
    ui.release()
    ui.end()                                           # the engine's end after release: harmless
    assert terminal.screen() == []


def test_paused_hides_the_live_area_while_something_else_writes_then_redraws_it(terminal):
    ui = terminal.ui()
    ui.begin("", 1)
    ui.step_started(1, "Checking authentication")
    with ui.paused():
        terminal.out.write("Paste the token: \n")
    assert terminal.screen() == ["Paste the token:", "step 1 of 1 · Checking authentication"]


def test_a_nested_pipeline_draws_under_its_parent_step_and_hands_back(terminal):
    ui = terminal.ui()
    ui.begin("Preflight", 2)
    ui.step_started(1, "Checking the base VM")
    ui.begin("Provisioning", 5)
    ui.step_started(2, "20-php")
    assert terminal.screen() == ["Preflight", "Provisioning",
                                 "step 1 of 2 · Checking the base VM",
                                 "  step 2 of 5 · 20-php"]
    ui.step_finished("20-php", 3.0, "ok")
    ui.end()
    assert terminal.screen()[-2:] == ["  ✓ 20-php (3.0 s)", "step 1 of 2 · Checking the base VM"]


def test_a_live_line_longer_than_the_terminal_is_cut_to_one_row(terminal):
    ui = terminal.ui()
    ui.begin("", 1)
    ui.step_started(1, "Bootstrapping " + "x" * 200)
    ui.hint("y" * 300)
    screen = terminal.screen()
    assert len(screen) == 2 and all(len(line) < 80 for line in screen)
    ui.end()
    assert terminal.screen() == []


# -- prompts on a real terminal -------------------------------------------------------------------

def test_select_moves_with_the_arrow_keys_and_enter_chooses():
    program = run_on_pty("""
        print("RESULT=%r" % (ui.select("On exit?", [("keep", "Keep"), ("merge", "Merge"),
                                                     ("discard", "Discard")], "keep"),))
    """)
    try:
        program.expect("esc to cancel")
        assert "❯ Keep" in Screen().feed(program.text()).visible()[-4]
        program.send(b"\x1b[B")                        # down: Merge
        program.expect("esc to cancel")
        program.send(b"\x1b[B")                        # down: Discard
        program.expect("esc to cancel")
        program.send(b"\x1b[A")                        # up: Merge
        program.expect("esc to cancel")
        program.send(b"\r")
        assert program.expect("RESULT=(.*)\r").group(1) == "'merge'"
        assert program.wait() == 0
        assert Screen().feed(program.text()).visible() == ["? On exit? Merge", "RESULT='merge'"]
    finally:
        program.kill()


def test_select_takes_the_highlighted_default_on_a_plain_enter_and_j_k_move_too():
    program = run_on_pty("""
        options = [("keep", "Keep"), ("merge", "Merge"), ("discard", "Discard")]
        print("FIRST=%r" % (ui.select("On exit?", options, "discard"),))
        print("SECOND=%r" % (ui.select("Again?", options, "keep"),))
    """)
    try:
        program.expect("esc to cancel")
        program.send(b"\r")
        assert program.expect("FIRST=(.*)\r").group(1) == "'discard'"
        program.expect("esc to cancel")
        program.send(b"j")
        program.expect("esc to cancel")
        program.send(b"j")
        program.expect("esc to cancel")
        program.send(b"k")
        program.expect("esc to cancel")
        program.send(b"\r")
        assert program.expect("SECOND=(.*)\r").group(1) == "'merge'"
        assert program.wait() == 0
    finally:
        program.kill()


@pytest.mark.parametrize("key", [b"\x03", b"\x1b"], ids=["ctrl-c", "esc"])
def test_ctrl_c_or_esc_cancels_select_and_the_program_carries_on(key):
    program = run_on_pty("""
        value = ui.select("On exit?", [("keep", "Keep"), ("merge", "Merge")], "keep")
        print("RESULT=%r" % (value,))
    """)
    try:
        program.expect("esc to cancel")
        program.send(key)
        assert program.expect("RESULT=(.*)\r").group(1) == "None"
        assert program.wait() == 0                     # a cancel, not a crash
        assert "? On exit? cancelled" in Screen().feed(program.text()).visible()
    finally:
        program.kill()


def test_confirm_takes_y_n_and_the_default_on_enter_and_ctrl_c_cancels():
    program = run_on_pty("""
        for default in (False, False, True, True):
            print("ANSWER=%r" % (ui.confirm("Merge now?", default),))
    """)
    try:
        for key, expected in ((b"y", "True"), (b"\r", "False"), (b"n", "False"),
                              (b"\x03", "None")):
            program.expect(r"Merge now\?")
            program.send(key)
            assert program.expect("ANSWER=(.*)\r").group(1) == expected
        assert program.wait() == 0
        screen = Screen().feed(program.text()).visible()
        assert screen[:2] == ["? Merge now? [y/N] yes", "ANSWER=True"]
    finally:
        program.kill()


def test_plain_mode_on_a_terminal_asks_with_numbers_and_no_escape_codes():
    program = run_on_pty("""
        options = [("keep", "Keep"), ("merge", "Merge"), ("discard", "Discard")]
        print("FIRST=%r" % (ui.select("On exit?", options, "keep"),))
        print("SECOND=%r" % (ui.select("On exit?", options, "merge"),))
        print("THIRD=%r" % (ui.confirm("Sure?", True),))
    """, env={"NO_COLOR": "1"})
    try:
        program.expect(r"Choose 1-3 \[1\]: ")
        program.send(b"3\r")
        assert program.expect("FIRST=(.*)\r").group(1) == "'discard'"
        program.expect(r"Choose 1-3 \[2\]: ")
        program.send(b"\r")
        assert program.expect("SECOND=(.*)\r").group(1) == "'merge'"
        program.expect(r"Sure\? \[Y/n\] ")
        program.send(b"n\r")
        assert program.expect("THIRD=(.*)\r").group(1) == "False"
        assert program.wait() == 0
        assert "\x1b" not in program.text()
        assert "  3) Discard" in program.text()
    finally:
        program.kill()
