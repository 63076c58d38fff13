"""The summary said before keep / merge / discard, against real git repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clave.support.git import GitManager
from clave.support.git_summary import CloneSummary, summarise

BRANCH = "clave/s-abcd1234"


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True,
                          text=True).stdout


def commit(path: Path, name: str, text: str, message: str) -> None:
    (path / name).write_text(text)
    git(path, "add", name)
    git(path, "commit", "--quiet", "-m", message)


@pytest.fixture
def repos(tmp_path: Path) -> tuple[Path, Path]:
    project = tmp_path / "app"
    project.mkdir()
    git(project, "init", "--quiet", "--initial-branch", "main")
    git(project, "config", "user.name", "Tester")
    git(project, "config", "user.email", "tester@example.com")
    commit(project, "routes.php", "one\ntwo\nthree\n", "Initial")
    clone = project / ".clave" / "wt" / "s-abcd1234"
    GitManager().clone_local(project, clone, BRANCH)
    return project, clone


def test_a_clone_without_work_says_so(repos):
    project, clone = repos
    summary = summarise(project, clone, "main")
    assert summary == CloneSummary(0, "", 0, [])
    assert summary.lines(BRANCH, "main") == [f"{BRANCH} has no changes."]


def test_commits_their_diffstat_and_uncommitted_paths_are_counted(repos):
    project, clone = repos
    commit(clone, "a.php", "a\n", "Add a")
    commit(clone, "b.php", "b\nb\n", "Add b")
    (clone / "draft.txt").write_text("not yet\n")
    summary = summarise(project, clone, "main")
    assert (summary.commits, summary.uncommitted, summary.conflicts) == (2, 1, [])
    assert summary.lines(BRANCH, "main") == [
        f"{BRANCH}: 2 commits, 2 files changed, 3 insertions(+), 1 uncommitted path.",
        "Merging into main would not conflict.",
    ]


def test_a_base_that_moved_on_the_same_lines_is_a_conflict_named_by_file(repos):
    project, clone = repos
    commit(clone, "routes.php", "one\nTWO from the session\nthree\n", "Session edit")
    commit(project, "routes.php", "one\nTWO on main\nthree\n", "Main edit")
    before = git(project, "status", "--porcelain"), git(project, "show-ref")
    summary = summarise(project, clone, "main")
    assert summary.conflicts == ["routes.php"]
    assert summary.lines(BRANCH, "main")[1] == "Merging into main would conflict in: routes.php."
    assert (git(project, "status", "--porcelain"), git(project, "show-ref")) == before


def test_a_base_that_moved_elsewhere_merges_cleanly_and_its_commits_are_not_counted(repos):
    project, clone = repos
    commit(clone, "a.php", "a\n", "Add a")
    commit(project, "other.php", "o\n", "Main moves on")
    summary = summarise(project, clone, "main")
    assert (summary.commits, summary.conflicts) == (1, [])


def test_a_base_branch_gone_from_the_project_leaves_the_merge_line_out(repos):
    project, clone = repos
    commit(clone, "a.php", "a\n", "Add a")
    summary = summarise(project, clone, "gone")
    assert (summary.commits, summary.shortstat, summary.conflicts) == (1, "", None)
    assert summary.lines(BRANCH, "gone") == [f"{BRANCH}: 1 commit."]
