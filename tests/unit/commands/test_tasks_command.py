"""`clave tasks`: each graph in run order, with dependencies, and status from a real doit DB."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from clave import cli
from clave.commands import tasks as tasks_command
from clave.context import SessionContext
from clave.engine import Engine
from clave.home import Home
from clave.steps.base import Step
from clave.tasks import catalog
from clave.tasks.graph import build, node


class WriteFile(Step):
    label = "Writing the file"
    made: set[str] = set()

    def run(self, ctx):
        WriteFile.made.add(ctx.session_id)

    def done(self, ctx):
        return ctx.session_id in WriteFile.made


class ReadFile(Step):
    label = "Reading it back"

    def run(self, ctx):
        pass

    def done(self, ctx):
        return False          # a live check that never passes: always stale


class Publish(Step):
    label = "Publishing"

    def run(self, ctx):
        pass


# Declared out of order on purpose: the listing must follow the dependencies.
SETUP = (node(Publish, after=ReadFile), node(WriteFile), node(ReadFile, after=WriteFile))
SOLO = (node(Publish),)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    project = tmp_path / "shop"
    project.mkdir()
    monkeypatch.chdir(project)
    return project


@pytest.fixture
def graphs(monkeypatch):
    """Stand in for the real catalog: label -> (tasks, DB or None)."""
    given: dict = {}

    def fake_graphs(settings, home, project_dir=None):
        assert settings is not None
        return given

    monkeypatch.setattr(catalog, "graphs", fake_graphs)
    return given


def listing(project: Path, clave_home: Path) -> str:
    out = io.StringIO()
    assert tasks_command.run(project_dir=project, home=Home(clave_home), out=out) == 0
    return out.getvalue()


def table_rows(text: str, graph: str) -> list[list[str]]:
    """The rows (cells split on 2+ spaces) of the table under that graph's heading."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{graph} ("))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append([cell for cell in line.split("  ") if cell.strip()])
    return [[cell.strip() for cell in row] for row in rows]


def test_each_graph_gets_a_heading_and_its_tasks_in_run_order(project, clave_home, graphs):
    graphs["setup"] = (build(SETUP, {}), None)
    graphs["publish"] = (build(SOLO, {}), None)
    text = listing(project, clave_home)
    assert text.startswith("setup (3 tasks)\nTASK")
    assert "\npublish (1 task)\n" in text
    assert table_rows(text, "setup") == [
        ["write_file", "Writing the file", "-"],
        ["read_file", "Reading it back", "write_file"],
        ["publish", "Publishing", "read_file"],
    ]
    assert table_rows(text, "publish") == [["publish", "Publishing", "-"]]
    assert "STATUS" not in text


def test_a_graph_with_a_doit_db_shows_each_task_status(project, clave_home, graphs):
    db = clave_home / "setup.db"
    setup = build(SETUP, {})
    ctx = SessionContext(session_id="tasks", project_name="shop", project_dir=project)
    Engine(setup, ctx, db).run("read_file")             # a real doit run writes the DB
    graphs["setup"] = (setup, db)

    text = listing(project, clave_home)
    assert f"setup (3 tasks; status from {db})" in text
    assert text.splitlines()[1].split() == ["TASK", "LABEL", "AFTER", "STATUS"]
    rows = table_rows(text, "setup")
    assert [row[0] for row in rows] == ["write_file", "read_file", "publish"]
    assert rows[0][-1] == "up-to-date"
    assert rows[1][-1] == "stale: uptodate check false"
    assert rows[2][-1] == "stale: never ran"


def test_the_cli_lists_the_catalog_and_creates_nothing(project, clave_home, graphs, capsys):
    graphs["setup"] = (build(SETUP, {}), None)
    assert cli.main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("setup (3 tasks)")
    assert list(clave_home.iterdir()) == []


def test_an_invalid_project_config_is_refused_with_exit_2_before_listing(
        project, clave_home, graphs, capsys):
    graphs["setup"] = (build(SETUP, {}), None)
    (project / ".clave.json").write_text('{"vm": {"cpus": "four"}}')
    assert cli.main(["tasks"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("clave: ") and ".clave.json" in err and "vm.cpus" in err
    assert list(clave_home.iterdir()) == []


@pytest.mark.parametrize(("status", "reason", "text"), [
    ("up-to-date", "", "up-to-date"),
    ("stale", "config changed", "stale: config changed"),
])
def test_describe_says_what_the_next_run_would_do(status, reason, text):
    assert tasks_command.describe(status, reason) == text


# -- the real catalog, and plain doit over the same graphs ----------------------------------

ROOT = Path(__file__).resolve().parents[3]


def test_the_real_catalog_lists_preflight_and_session_steps_in_order(project, clave_home):
    text = listing(project, clave_home)
    preflight = [row[0] for row in table_rows(text, "preflight")]
    assert preflight[:2] == ["validate_project", "get_git_branch"]
    assert preflight[-1] == "save_session"
    session = [row[0] for row in table_rows(text, "session")]
    # the Herd proxy is configured while the VM boots, the tunnel once it is up
    assert session.index("start_vm") < session.index("configure_herd_proxy") < session.index(
        "boot_vm") < session.index("create_ssh_tunnel")
    assert table_rows(text, "provision")
    assert list(clave_home.iterdir()) == []


def test_doit_list_at_the_repo_root_lists_the_same_tasks_as_clave_tasks(
        project, clave_home, tmp_path):
    import os
    import subprocess
    import sys

    names = {row[0] for graph in ("preflight", "session", "provision")
             for row in table_rows(listing(project, clave_home), graph)}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLAVE_HOME": str(tmp_path / "dodo-home")}
    done = subprocess.run([sys.executable, "-m", "doit", "list", "--all"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert names <= listed
    assert {"preflight", "session"} <= listed     # one group task per runnable graph
