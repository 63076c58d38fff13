"""clave.cli: every command declared, plain values handed to commands, one error path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clave import __version__, cli
from clave.errors import ClaveError

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("provision", "auth", "sessions", "cleanup", "config", "ssh", "exec", "tasks",
            "doctor")
HEAVY = ("doit", "paramiko", "blessed", "jsonschema", "yaml")


def clave(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_nothing_created(home: Path) -> None:
    assert list(home.iterdir()) == []


# -- help and version ----------------------------------------------------------------------

def test_help_lists_every_command_and_the_session_options(capsys):
    code, out, _ = clave(capsys, "--help")
    assert code == 0
    for name in COMMANDS:
        assert f"\n    {name} " in out
    for option in ("--on-exit", "--resume", "--version"):
        assert option in out


@pytest.mark.parametrize(("command", "options"), [
    ("provision", ("--force", "--update", "--image IMAGE")),
    ("auth", ("--status", "--clear")),
    ("sessions", ("--json",)),
    ("cleanup", ("--dry-run",)),
    ("config", ("get", "set", "unset")),
    ("ssh", ("ID",)),
    ("exec", ("ID", "-- CMD...")),
    ("tasks", ()),
    ("doctor", ()),
])
def test_each_command_has_help_naming_its_options(capsys, command, options):
    code, out, _ = clave(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: clave {command}")
    for option in options:
        assert option in out


@pytest.mark.parametrize("action", ["get", "set", "unset"])
def test_config_actions_have_help(capsys, action):
    code, out, _ = clave(capsys, "config", action, "--help")
    assert code == 0
    assert "KEY" in out


def test_version_prints_the_package_version(capsys):
    code, out, _ = clave(capsys, "--version")
    assert (code, out) == (0, f"clave {__version__}\n")


# -- bad input: one sentence, exit 2, nothing created --------------------------------------

def test_an_unknown_on_exit_value_is_refused_before_anything_is_created(capsys, clave_home):
    code, out, err = clave(capsys, "--on-exit", "explode")
    assert code == 2
    assert out == ""
    assert err == "clave: --on-exit: 'explode' is not one of keep, merge, discard.\n"
    assert_nothing_created(clave_home)


@pytest.mark.parametrize("argv", [
    ["--bogus"],
    ["sessions", "--bogus"],
    ["frobnicate"],
    ["provision", "--force", "--update"],
    ["auth", "--status", "--clear"],
    ["ssh"],
    ["config", "set", "vm.cpus"],
])
def test_argument_errors_are_one_line_on_stderr_with_exit_2(capsys, clave_home, argv):
    code, out, err = clave(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("clave: ") and err.count("\n") == 1
    assert "--help" in err
    assert_nothing_created(clave_home)


@pytest.mark.parametrize("argv", [["--on-exit", "merge", "sessions"],
                                  ["--resume", "abcd1234", "tasks"]])
def test_session_flags_next_to_a_subcommand_are_refused(capsys, clave_home, argv):
    code, _, err = clave(capsys, *argv)
    assert code == 2
    assert "applies to a session (plain `clave`)" in err
    assert_nothing_created(clave_home)


def test_exec_without_a_command_says_how_to_give_one(capsys):
    code, _, err = clave(capsys, "exec", "abcd1234")
    assert code == 2
    assert "clave exec ID -- CMD..." in err


# -- wired commands refuse bad input with one sentence and create nothing -----------------

def test_a_session_outside_a_laravel_project_names_the_directory(
        capsys, clave_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = clave(capsys, "--on-exit", "keep")
    assert code == 1
    assert f"{tmp_path} is not a Laravel project (no artisan file)" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["ssh", "abcd1234"],
                                  ["exec", "abcd1234", "--", "php", "artisan", "test"],
                                  ["--resume", "abcd1234"]])
def test_an_unknown_session_is_refused_without_creating_the_store(capsys, clave_home, argv):
    code, _, err = clave(capsys, *argv)
    assert code == 2
    assert "clave sessions" in err
    assert_nothing_created(clave_home)


def test_exec_strips_the_double_dash_before_the_command(calls):
    seen = calls("remote", "execute")
    assert cli.main(["exec", "abcd1234", "--", "php", "artisan", "test"]) == 0
    [(_, _, kwargs)] = seen
    assert kwargs["command"] == ["php", "artisan", "test"]
    assert kwargs["session_id"] == "abcd1234"


# -- dispatch: plain values in, exit code out ----------------------------------------------

@pytest.fixture
def calls(monkeypatch):
    """Replace command functions with recorders of the keyword values they receive."""
    seen: list[tuple[str, tuple, dict]] = []

    def recorder(module: str, name: str):
        def record(*args, **kwargs):
            seen.append((name, args, kwargs))
            return 0
        monkeypatch.setattr(sys.modules[f"clave.commands.{module}"], name, record,
                            raising=False)

    def install(module: str, *names: str) -> list:
        import importlib
        import types

        try:
            importlib.import_module(f"clave.commands.{module}")
        except ImportError:   # written concurrently: stand in until it lands
            monkeypatch.setitem(sys.modules, f"clave.commands.{module}",
                                types.ModuleType(f"clave.commands.{module}"))
            import clave.commands
            monkeypatch.setattr(clave.commands, module, sys.modules[f"clave.commands.{module}"],
                                raising=False)
        for name in names:
            recorder(module, name)
        return seen

    return install


def test_config_without_action_shows_the_settings_of_the_current_directory(
        capsys, calls, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    seen = calls("config", "show", "get", "set_value", "unset")
    assert clave(capsys, "config")[0] == 0
    assert seen == [("show", (), {"project_dir": tmp_path, "out": sys.stdout})]


@pytest.mark.parametrize(("argv", "call"), [
    (["config", "get", "vm.cpus"], ("get", ("vm.cpus",), {"project_dir": "CWD"})),
    (["config", "set", "vm.cpus", "4"], ("set_value", ("vm.cpus", "4"), {})),
    (["config", "unset", "vm.cpus"], ("unset", ("vm.cpus",), {})),
])
def test_config_actions_reach_their_functions(capsys, calls, monkeypatch, tmp_path, argv, call):
    monkeypatch.chdir(tmp_path)
    seen = calls("config", "show", "get", "set_value", "unset")
    assert clave(capsys, *argv)[0] == 0
    name, args, kwargs = call
    kwargs = {k: (tmp_path if v == "CWD" else v) for k, v in kwargs.items()}
    assert seen == [(name, args, {**kwargs, "out": sys.stdout})]


@pytest.mark.parametrize(("argv", "status", "clear"), [
    (["auth"], False, False), (["auth", "--status"], True, False),
    (["auth", "--clear"], False, True),
])
def test_auth_gets_its_flags_and_the_user_auth_file(capsys, calls, argv, status, clear):
    seen = calls("auth", "run")
    assert clave(capsys, *argv)[0] == 0
    auth_file = Path(os.environ["XDG_CONFIG_HOME"]) / "clave" / "auth.json"
    assert seen == [("run", (), {"status": status, "clear": clear, "auth_file": auth_file,
                                 "out": sys.stdout})]


def test_a_clave_error_from_a_command_is_printed_once_with_its_exit_code(capsys, monkeypatch):
    class Refused(ClaveError):
        exit_code = 7

    def refuse(**_):
        raise Refused("the VM ran away.")

    monkeypatch.setattr("clave.commands.sessions.run", refuse)
    assert clave(capsys, "sessions") == (7, "", "clave: the VM ran away.\n")


def test_ctrl_c_exits_130(capsys, monkeypatch):
    def interrupted(**_):
        raise KeyboardInterrupt

    monkeypatch.setattr("clave.commands.sessions.run", interrupted)
    code, _, err = clave(capsys, "sessions")
    assert code == 130
    assert "interrupted" in err


def test_sessions_on_an_empty_home_prints_no_sessions_without_creating_the_store(
        capsys, clave_home):
    assert clave(capsys, "sessions") == (0, "No sessions.\n", "")
    assert clave(capsys, "sessions", "--json") == (0, "[]\n", "")
    assert_nothing_created(clave_home)


def test_sessions_json_lists_a_seeded_session(capsys):
    import json

    from clave.store import Store

    with Store.open() as store:
        store.add(session_id="abcd1234", project_name="shop", project_dir="/code/shop")
    code, out, _ = clave(capsys, "sessions", "--json")
    assert code == 0
    assert [r["session_id"] for r in json.loads(out)] == ["abcd1234"]


# -- a real process ------------------------------------------------------------------------

def _python(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLAVE_HOME": str(home)}
    return subprocess.run([sys.executable, *args], env=env, cwd=home, capture_output=True,
                          text=True, timeout=60)


def test_python_m_clave_help_runs_in_a_real_process(clave_home):
    done = _python("-m", "clave", "--help", home=clave_home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: clave")
    assert all(name in done.stdout for name in COMMANDS)


def test_python_m_clave_exits_with_the_error_code_in_a_real_process(clave_home):
    done = _python("-m", "clave", "--on-exit", "nope", home=clave_home)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("clave: --on-exit: 'nope'")
    assert_nothing_created(clave_home)


@pytest.mark.parametrize("argv", [["--help"], ["sessions"], ["sessions", "--json"]])
def test_cheap_commands_import_no_heavy_library(clave_home, argv):
    probe = ("import sys, contextlib, io\n"
             "from clave import cli\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             f"    cli.main({argv!r})\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    done = _python("-c", probe, home=clave_home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
