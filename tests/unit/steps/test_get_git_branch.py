"""GetGitBranch: the session branches off the branch checked out at the project's root."""

from __future__ import annotations

import pytest

from clave.errors import ClaveError
from clave.steps.get_git_branch import GetGitBranch
from clave.support.git import GitManager
from tests.unit.steps.world import make_project


def test_the_base_branch_is_the_branch_the_user_is_on(world):
    world.git("switch", "--quiet", "-c", "feature/cart")
    ctx = world.ctx()
    step = GetGitBranch(GitManager())
    step.run(ctx)
    assert ctx.base_branch == "feature/cart"
    assert step.done(ctx)


def test_it_is_done_once_the_base_branch_is_known_and_not_before(world):
    ctx = world.ctx()
    step = GetGitBranch(GitManager())
    assert not step.done(ctx)
    step.run(ctx)
    assert step.done(ctx)


def test_a_directory_that_is_not_a_repository_is_refused_with_git_init_as_the_fix(world):
    plain = world.root / "plain"
    plain.mkdir()
    (plain / "artisan").write_text("")
    with pytest.raises(ClaveError) as raised:
        GetGitBranch(GitManager()).run(world.ctx(project_dir=plain))
    assert str(plain) in str(raised.value) and "git init" in str(raised.value)
    assert not (plain / ".git").exists()


def test_a_detached_head_is_refused_with_how_to_check_out_a_branch(world):
    world.git("switch", "--quiet", "--detach", "HEAD")
    ctx = world.ctx()
    with pytest.raises(ClaveError, match="detached HEAD") as raised:
        GetGitBranch(GitManager()).run(ctx)
    assert "git switch" in str(raised.value)
    assert ctx.base_branch is None


def test_a_project_in_a_subdirectory_of_a_repository_is_sent_to_the_root(world):
    outer = make_project(world.root / "monorepo")
    app = outer / "app"
    app.mkdir()
    (app / "artisan").write_text("")
    with pytest.raises(ClaveError, match="repository's root") as raised:
        GetGitBranch(GitManager()).run(world.ctx(project_dir=app))
    assert str(outer) in str(raised.value)


def test_done_never_raises_outside_a_repository(world):
    plain = world.root / "plain"
    plain.mkdir()
    assert GetGitBranch(GitManager()).done(world.ctx(project_dir=plain)) is False


def test_a_repository_without_commits_is_refused_with_how_to_commit(world):
    fresh = world.root / "fresh"
    fresh.mkdir()
    world.git("init", "--quiet", "--initial-branch=main", cwd=fresh)
    with pytest.raises(ClaveError, match="no commits yet") as raised:
        GetGitBranch(GitManager()).run(world.ctx(project_dir=fresh))
    assert "git commit" in str(raised.value)
