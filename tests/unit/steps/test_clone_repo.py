"""CloneRepo: the session's own clone at .clave/wt/s-<id>, on clave/s-<id>, with its .env."""

from __future__ import annotations

import pytest

from clave.config import Settings
from clave.errors import ClaveError
from clave.steps.clone_repo import CloneRepo
from clave.support.git import GitManager


def clone_repo(world, settings=None):
    return CloneRepo(GitManager(), world.store, settings or world.settings)


def test_the_clone_is_at_the_session_path_on_the_session_branch_from_head(world):
    ctx = world.saved_ctx()
    clone_repo(world).run(ctx)
    clone = world.project / ".clave" / "wt" / "s-abcd1234"
    assert ctx.clone_path == clone and ctx.clone_branch == "clave/s-abcd1234"
    assert world.git("symbolic-ref", "HEAD", cwd=clone).strip() == "refs/heads/clave/s-abcd1234"
    assert (world.git("rev-parse", "HEAD", cwd=clone)
            == world.git("rev-parse", "HEAD"))
    assert (clone / "artisan").is_file()


def test_the_clone_is_a_repository_of_its_own_so_git_works_inside_the_vm(world):
    ctx = world.saved_ctx()
    clone_repo(world).run(ctx)
    assert (ctx.clone_path / ".git").is_dir()
    assert not (ctx.clone_path / ".git" / "objects" / "info" / "alternates").exists()


def test_dot_clave_is_ignored_in_the_project_so_the_clone_never_shows_as_untracked(world):
    ctx = world.saved_ctx()
    clone_repo(world).run(ctx)
    assert ".clave/" in (world.project / ".gitignore").read_text().splitlines()
    assert world.git("status", "--porcelain", "--untracked-files=all") == " M .gitignore\n"


def test_the_ignored_env_file_is_copied_and_never_committed_from_the_clone(world):
    ctx = world.saved_ctx()
    clone_repo(world).run(ctx)
    copied = ctx.clone_path / ".env"
    assert copied.read_text() == (world.project / ".env").read_text()
    assert world.git("status", "--porcelain", "--untracked-files=all", cwd=ctx.clone_path) == ""
    assert any(".env" in hint for hint in world.said.of("hint"))


def test_the_files_to_copy_come_from_the_git_copy_files_setting(world):
    (world.project / "storage").mkdir()
    (world.project / "storage" / "oauth-private.key").write_text("key\n")
    settings = Settings.from_dict({"git": {"copy_files": ["storage/*.key"]}})
    ctx = world.saved_ctx()
    clone_repo(world, settings).run(ctx)
    assert (ctx.clone_path / "storage" / "oauth-private.key").read_text() == "key\n"
    assert not (ctx.clone_path / ".env").exists()


def test_the_journal_names_the_clone_and_its_branch(world):
    ctx = world.saved_ctx()
    clone_repo(world).run(ctx)
    record = world.store.get(ctx.session_id)
    assert (record.clone_path, record.clone_branch) == (ctx.clone_path, "clave/s-abcd1234")


def test_the_empty_share_directory_start_vm_made_is_filled_not_refused(world):
    ctx = world.saved_ctx()
    ctx.default_clone_path.mkdir(parents=True)       # StartVm runs first in the graph
    clone_repo(world).run(ctx)
    assert (ctx.clone_path / "artisan").is_file()


def test_a_branch_left_by_an_earlier_session_is_refused_and_the_journal_still_names_it(world):
    world.git("branch", "clave/s-abcd1234")
    ctx = world.saved_ctx()
    with pytest.raises(ClaveError, match="already exists"):
        clone_repo(world).run(ctx)
    assert world.store.get(ctx.session_id).clone_branch == "clave/s-abcd1234"


def test_undo_keeps_the_clone_and_the_work_in_it(world):
    ctx = world.saved_ctx()
    step = clone_repo(world)
    step.run(ctx)
    (ctx.clone_path / "notes.txt").write_text("uncommitted work\n")
    step.undo(ctx)
    step.undo(ctx)
    assert (ctx.clone_path / "notes.txt").read_text() == "uncommitted work\n"
    assert step.done(ctx)
