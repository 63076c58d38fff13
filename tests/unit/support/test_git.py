"""GitManager against real git and real repositories: every flow, and no work ever lost."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from clave.errors import ClaveError, ConfigError, ToolMissing
from clave.support.git import GitManager, backup_ref
from tests.unit.support.git_repos import (
    BACKUP,
    BRANCH,
    commit,
    git,
    has_ref,
    make_repo,
    sha,
    show,
    working_copy,
    write,
)

UNICODE_NAME = "résumé ñ 日本.txt"
SPACED_NAME = "notes with spaces.md"


@pytest.fixture(autouse=True)
def git_identity(tmp_path_factory, monkeypatch) -> Path:
    """A private global git config with an identity; no system config, no identity env."""
    config = tmp_path_factory.mktemp("git-global") / "gitconfig"
    config.write_text("[user]\n\tname = Test User\n\temail = test@example.com\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                 "GIT_COMMITTER_EMAIL", "EMAIL", "GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(name, raising=False)
    return config


@pytest.fixture
def no_identity(git_identity) -> None:
    """No name or email anywhere, and git forbidden to guess one from the host."""
    git_identity.write_text("[user]\n\tuseConfigOnly = true\n")


@pytest.fixture
def gm() -> GitManager:
    return GitManager()


@pytest.fixture
def repo(tmp_path) -> Path:
    repo = make_repo(tmp_path / "app")
    (repo / ".env").write_text("APP_KEY=base64:secret\n")
    (repo / ".env").chmod(0o600)
    return repo


@pytest.fixture
def clone(gm, repo) -> Path:
    path = repo / ".clave" / "wt" / "s-abc123"
    gm.clone_local(repo, path, BRANCH)
    return path


# -- questions ----------------------------------------------------------------------------

def test_is_repo_is_true_inside_a_working_tree_and_false_elsewhere(gm, repo, tmp_path):
    assert gm.is_repo(repo)
    assert gm.is_repo(repo / "app" / "Models")
    assert not gm.is_repo(tmp_path)
    assert not gm.is_repo(tmp_path / "does-not-exist")
    assert not gm.is_repo(repo / ".git")


def test_root_is_the_top_level_from_a_subdirectory(gm, repo):
    assert gm.root(repo / "app" / "Models") == repo


def test_root_outside_a_repository_says_to_init_one(gm, tmp_path):
    with pytest.raises(ClaveError, match="not inside a git repository.*git init"):
        gm.root(tmp_path)


def test_current_branch_names_the_checked_out_branch(gm, repo):
    git(repo, "switch", "--quiet", "-c", "feature/login")
    assert gm.current_branch(repo) == "feature/login"


def test_current_branch_on_a_detached_head_says_to_check_out_a_branch(gm, repo):
    git(repo, "checkout", "--quiet", "--detach")
    with pytest.raises(ClaveError, match="detached HEAD.*git switch -c"):
        gm.current_branch(repo)


def test_current_branch_on_an_unborn_branch_says_to_commit_first(gm, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "--quiet", "--initial-branch=main")
    with pytest.raises(ClaveError, match="'main'.*no commits yet.*git commit"):
        gm.current_branch(empty)


def test_a_missing_git_binary_is_a_clear_tool_missing_error(tmp_path):
    with pytest.raises(ToolMissing, match="no-such-git"):
        GitManager("no-such-git").is_repo(tmp_path)


def test_clone_exists_only_for_a_directory_with_a_git_directory(gm, clone, tmp_path):
    assert gm.clone_exists(clone)
    assert not gm.clone_exists(tmp_path / "nothing")
    assert not gm.clone_exists(tmp_path)


# -- ensure_ignored -----------------------------------------------------------------------

def test_ensure_ignored_creates_a_missing_gitignore(gm, tmp_path):
    gm.ensure_ignored(tmp_path, ".clave/")
    assert (tmp_path / ".gitignore").read_bytes() == b".clave/\n"


def test_ensure_ignored_adds_a_newline_before_appending_to_an_unterminated_file(gm, tmp_path):
    (tmp_path / ".gitignore").write_bytes(b"/vendor\n.env")
    gm.ensure_ignored(tmp_path, ".clave/")
    assert (tmp_path / ".gitignore").read_bytes() == b"/vendor\n.env\n.clave/\n"


def test_ensure_ignored_keeps_existing_content_and_is_idempotent(gm, tmp_path):
    (tmp_path / ".gitignore").write_bytes(b"# deps\n/vendor\n\n")
    gm.ensure_ignored(tmp_path, ".clave/")
    gm.ensure_ignored(tmp_path, ".clave/")
    assert (tmp_path / ".gitignore").read_bytes() == b"# deps\n/vendor\n\n.clave/\n"


@pytest.mark.parametrize("line", [".clave/", ".clave", "/.clave", "/.clave/", ".clave/  "])
def test_ensure_ignored_counts_the_same_directory_with_or_without_slashes(gm, tmp_path, line):
    original = f"/vendor\n{line}\n.env".encode()
    (tmp_path / ".gitignore").write_bytes(original)
    gm.ensure_ignored(tmp_path, ".clave/")
    assert (tmp_path / ".gitignore").read_bytes() == original


def test_ensure_ignored_appends_a_crlf_line_to_a_crlf_file(gm, tmp_path):
    (tmp_path / ".gitignore").write_bytes(b"/vendor\r\n.env")
    gm.ensure_ignored(tmp_path, ".clave/")
    assert (tmp_path / ".gitignore").read_bytes() == b"/vendor\r\n.env\r\n.clave/\r\n"


def test_ensure_ignored_makes_git_ignore_the_clave_directory(gm, tmp_path):
    repo = make_repo(tmp_path / "app", {"README.md": "x\n"})
    gm.ensure_ignored(repo, ".clave/")
    assert git(repo, "check-ignore", ".clave/wt/s-1/file").strip() == ".clave/wt/s-1/file"


# -- clone_local --------------------------------------------------------------------------

def test_clone_is_a_standalone_repository_on_the_session_branch(gm, repo, clone):
    assert (clone / ".git").is_dir()
    assert not (clone / ".git" / "objects" / "info" / "alternates").exists()
    assert git(clone, "symbolic-ref", "HEAD").strip() == f"refs/heads/{BRANCH}"
    assert sha(clone, "HEAD") == sha(repo, "HEAD")
    assert git(clone, "remote", "get-url", "origin").strip() == str(repo)
    assert (clone / "app" / "Models" / "User.php").read_text() == "<?php\nclass User {}\n"
    assert git(clone, "status", "--porcelain") == ""
    git(clone, "fsck", "--full", "--strict")


def test_clone_keeps_working_when_the_main_repositorys_git_directory_is_gone(gm, repo, clone):
    commit(repo, {"later.txt": "x\n"})
    (repo / ".git").rename(repo.parent / "moved-git")
    git(clone, "fsck", "--full")
    assert "Initial commit" in git(clone, "log", "--oneline")
    commit(clone, {"in-vm.txt": "works\n"})


def test_clone_of_a_repository_that_borrows_objects_gets_its_own_copies(gm, tmp_path):
    upstream = make_repo(tmp_path / "upstream")
    main = tmp_path / "main"
    git(tmp_path, "clone", "--quiet", "--shared", str(upstream), str(main))
    assert (main / ".git" / "objects" / "info" / "alternates").exists()
    clone = tmp_path / "clone"
    gm.clone_local(main, clone, BRANCH)
    shutil.rmtree(upstream)
    assert not (clone / ".git" / "objects" / "info" / "alternates").exists()
    git(clone, "fsck", "--full")
    assert "Initial commit" in git(clone, "log", "--oneline")


def test_clone_branches_from_the_head_commit_not_the_dirty_working_copy(gm, repo):
    write(repo, {"README.md": "uncommitted\n"})
    clone = repo / ".clave" / "wt" / "s-abc123"
    gm.clone_local(repo, clone, BRANCH)
    assert (clone / "README.md").read_text() == "# app\n"


def test_clone_copies_the_users_effective_identity_so_commits_in_the_vm_work(
        gm, repo, clone, git_identity):
    assert git(clone, "config", "--local", "user.name").strip() == "Test User"
    assert git(clone, "config", "--local", "user.email").strip() == "test@example.com"
    git_identity.write_text("")  # the VM has no global config at all
    commit(clone, {"vm.txt": "x\n"})
    assert git(clone, "log", "-1", "--format=%an <%ae>").strip() == "Test User <test@example.com>"


def test_clone_without_any_identity_gets_clave_s_own_so_commits_still_work(
        gm, repo, no_identity, tmp_path):
    clone = tmp_path / "clone"
    gm.clone_local(repo, clone, BRANCH)
    commit(clone, {"vm.txt": "x\n"})
    assert git(clone, "log", "-1", "--format=%an <%ae>").strip() == "clave <clave@localhost>"


def test_clone_refuses_an_existing_path_and_leaves_it_alone(gm, repo, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("user's file\n")
    with pytest.raises(ClaveError, match="already exists"):
        gm.clone_local(repo, taken, BRANCH)
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]
    assert not has_ref(repo, f"refs/heads/{BRANCH}")


def test_clone_fills_an_existing_empty_directory_the_booting_vm_already_shares(
        gm, repo, tmp_path):
    shared = tmp_path / "wt" / "s-1"
    shared.mkdir(parents=True)
    gm.clone_local(repo, shared, BRANCH)
    assert (shared / ".git").is_dir()
    assert git(shared, "rev-parse", "--abbrev-ref", "HEAD").strip() == BRANCH


def test_a_failed_clone_into_an_empty_shared_directory_empties_it_but_keeps_it(
        gm, repo, tmp_path, monkeypatch):
    shared = tmp_path / "wt" / "s-1"
    shared.mkdir(parents=True)

    def broken(*args, **kwargs):
        raise ClaveError("checkout failed")

    monkeypatch.setattr(gm, "_copy_identity", broken)
    with pytest.raises(ClaveError, match="checkout failed"):
        gm.clone_local(repo, shared, BRANCH)
    assert shared.is_dir() and list(shared.iterdir()) == []


def test_clone_refuses_a_session_branch_that_already_exists(gm, repo, tmp_path):
    git(repo, "branch", BRANCH)
    with pytest.raises(ClaveError, match=f"Branch {BRANCH} already exists"):
        gm.clone_local(repo, tmp_path / "wt" / "s-1", BRANCH)
    assert not (tmp_path / "wt").exists()


def test_clone_refuses_an_invalid_branch_name_before_creating_anything(gm, repo, tmp_path):
    with pytest.raises(ClaveError, match="not a valid git branch name"):
        gm.clone_local(repo, tmp_path / "wt" / "s-1", "clave/bad..name")
    assert not (tmp_path / "wt").exists()


def test_clone_of_an_unborn_repository_says_to_commit_first(gm, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "--quiet")
    with pytest.raises(ClaveError, match="no commits yet"):
        gm.clone_local(empty, tmp_path / "wt" / "s-1", BRANCH)
    assert not (tmp_path / "wt").exists()


def test_a_clone_interrupted_halfway_leaves_no_directory_behind(gm, repo, tmp_path,
                                                                monkeypatch):
    def interrupted(*_args):
        raise KeyboardInterrupt
    monkeypatch.setattr(gm, "_copy_identity", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gm.clone_local(repo, tmp_path / "wt" / "s-1", BRANCH)
    assert not (tmp_path / "wt").exists()
    assert tmp_path.joinpath("app").is_dir()


# -- copy_ignored_files -------------------------------------------------------------------

def test_copy_brings_the_env_file_with_its_mode(gm, repo, clone):
    copied = gm.copy_ignored_files(repo, clone, [".env"])
    assert copied == [clone / ".env"]
    assert (clone / ".env").read_text() == "APP_KEY=base64:secret\n"
    assert stat.S_IMODE((clone / ".env").stat().st_mode) == 0o600
    assert not gm.has_changes(clone)


def test_copy_defaults_to_the_env_file(gm, repo, clone):
    assert gm.copy_ignored_files(repo, clone, None) == [clone / ".env"]


def test_copy_takes_a_single_name_as_one_name(gm, repo, clone):
    assert gm.copy_ignored_files(repo, clone, ".env") == [clone / ".env"]


def test_copy_skips_missing_names_and_expands_globs(gm, repo, clone):
    write(repo, {"storage/oauth-private.key": "priv\n", "storage/oauth-public.key": "pub\n",
                 "storage/logs/laravel.log": "log\n"})
    copied = gm.copy_ignored_files(repo, clone, [".env.testing", "storage/*.key"])
    assert copied == [clone / "storage/oauth-private.key", clone / "storage/oauth-public.key"]
    assert not (clone / "storage" / "logs").exists()


def test_copy_of_a_directory_copies_its_files(gm, repo, clone):
    write(repo, {"certs/a.pem": "a\n", "certs/sub/b.pem": "b\n"})
    copied = gm.copy_ignored_files(repo, clone, ["certs"])
    assert sorted(p.relative_to(clone).as_posix() for p in copied) == [
        "certs/a.pem", "certs/sub/b.pem"]
    assert not gm.has_changes(clone)


def test_copy_never_copies_the_clave_directory(gm, repo, clone):
    copied = gm.copy_ignored_files(repo, clone, ["*", ".clave/wt/s-abc123/README.md"])
    assert all(".clave" not in p.relative_to(clone).parts for p in copied)
    assert not (clone / ".clave").exists()


def test_copy_never_overwrites_a_file_the_clone_tracks(gm, repo, clone):
    write(repo, {"README.md": "main's uncommitted edit\n"})
    assert gm.copy_ignored_files(repo, clone, ["README.md"]) == []
    assert (clone / "README.md").read_text() == "# app\n"


def test_a_copied_file_the_project_forgot_to_ignore_is_never_committed(gm, tmp_path):
    repo = make_repo(tmp_path / "app", {"README.md": "x\n"})
    write(repo, {"secrets [prod]*.env": "TOKEN=1\n"})
    clone = tmp_path / "clone"
    gm.clone_local(repo, clone, BRANCH)
    assert gm.copy_ignored_files(repo, clone, ["secrets*"]) == [clone / "secrets [prod]*.env"]
    assert not gm.has_changes(clone)
    assert not gm.commit_pending(clone, "save")


@pytest.mark.parametrize("name", ["../outside", "/etc/passwd", "", "."])
def test_copy_refuses_names_outside_the_project(gm, repo, clone, name):
    with pytest.raises(ConfigError, match="must be a path inside the project"):
        gm.copy_ignored_files(repo, clone, [name])


# -- has_changes and commit_pending -------------------------------------------------------

def test_has_changes_sees_edits_and_untracked_files_but_not_ignored_ones(gm, clone):
    assert not gm.has_changes(clone)
    write(clone, {"vendor/autoload.php": "<?php\n"})
    assert not gm.has_changes(clone)
    write(clone, {"new.txt": "x\n"})
    assert gm.has_changes(clone)
    (clone / "new.txt").unlink()
    write(clone, {"README.md": "edited\n"})
    assert gm.has_changes(clone)


def test_commit_pending_without_changes_makes_no_commit(gm, clone):
    before = sha(clone, "HEAD")
    assert not gm.commit_pending(clone, "save")
    assert sha(clone, "HEAD") == before


def test_commit_pending_commits_edits_deletions_and_odd_names_on_the_session_branch(gm, clone):
    write(clone, {"README.md": "edited\n", SPACED_NAME: "spaces\n",
                  f"dir ü/{UNICODE_NAME}": "unicode\n"})
    (clone / "routes" / "web.php").unlink()
    assert gm.commit_pending(clone, "clave: save")
    assert not gm.has_changes(clone)
    assert git(clone, "log", "-1", "--format=%s").strip() == "clave: save"
    assert show(clone, BRANCH, SPACED_NAME) == "spaces\n"
    assert show(clone, BRANCH, f"dir ü/{UNICODE_NAME}") == "unicode\n"
    assert git(clone, "ls-files", "routes") == ""


def test_commit_pending_works_without_any_configured_identity(gm, clone, no_identity):
    git(clone, "config", "--local", "--unset", "user.name")
    git(clone, "config", "--local", "--unset", "user.email")
    write(clone, {"x.txt": "x\n"})
    assert gm.commit_pending(clone, "save")
    assert git(clone, "log", "-1", "--format=%an <%ae>").strip() == "clave <clave@localhost>"


def test_commit_pending_is_not_stopped_by_a_failing_hook(gm, clone):
    hook = clone / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho lint failed >&2\nexit 1\n")
    hook.chmod(0o755)
    write(clone, {"x.txt": "x\n"})
    assert gm.commit_pending(clone, "save")
    assert not gm.has_changes(clone)


# -- save_branch and keep -----------------------------------------------------------------

def test_save_branch_fetches_the_clone_branch_into_the_main_repository(gm, repo, clone):
    tip = commit(clone, {"feature.php": "<?php\n"})
    assert gm.save_branch(repo, clone, BRANCH) == tip
    assert sha(repo, BRANCH) == tip
    newer = commit(clone, {"feature.php": "<?php // more\n"})
    assert gm.save_branch(repo, clone, BRANCH) == newer
    assert sha(repo, BRANCH) == newer


def test_save_branch_refuses_to_overwrite_commits_made_in_the_main_repository(gm, repo, clone):
    commit(clone, {"feature.php": "<?php\n"})
    gm.save_branch(repo, clone, BRANCH)
    git(repo, "switch", "--quiet", BRANCH)
    theirs = commit(repo, {"main-only.txt": "x\n"})
    git(repo, "switch", "--quiet", "main")
    commit(clone, {"feature.php": "<?php // diverged\n"})
    with pytest.raises(ClaveError, match="not in the session clone.*will not overwrite"):
        gm.save_branch(repo, clone, BRANCH)
    assert sha(repo, BRANCH) == theirs


def test_keep_leaves_the_clone_as_it_is_and_shows_its_commits_in_the_main_repo(
        gm, repo, clone):
    tip = commit(clone, {"done.php": "<?php\n"})
    write(clone, {"README.md": "half-done edit\n", SPACED_NAME: "untracked\n"})
    before_clone, before_main = working_copy(clone), working_copy(repo)
    gm.keep(repo, clone, BRANCH)
    assert working_copy(clone) == before_clone
    assert working_copy(repo) == before_main
    assert sha(repo, BRANCH) == tip


def test_save_branch_refuses_while_the_branch_is_checked_out_in_the_main_copy(
        gm, repo, clone):
    gm.save_branch(repo, clone, BRANCH)
    git(repo, "switch", "--quiet", BRANCH)
    commit(clone, {"x.txt": "x\n"})
    with pytest.raises(ClaveError, match="is checked out in"):
        gm.save_branch(repo, clone, BRANCH)
    assert sha(repo, "HEAD") == sha(repo, "main")


def test_keep_without_a_clone_is_a_clear_error(gm, repo, tmp_path):
    with pytest.raises(ClaveError, match="no session clone"):
        gm.keep(repo, tmp_path / "gone", BRANCH)


# -- merge --------------------------------------------------------------------------------

def test_merge_brings_committed_and_uncommitted_work_into_the_target(gm, repo, clone):
    commit(clone, {"app/Feature.php": "<?php // feature\n"})
    write(clone, {f"new dir/{UNICODE_NAME}": "untracked work\n", "README.md": "edited\n"})
    gm.merge_and_clean_clone(repo, clone, BRANCH, "main")
    assert (repo / "new dir" / UNICODE_NAME).read_text() == "untracked work\n"
    assert (repo / "app" / "Feature.php").read_text() == "<?php // feature\n"
    assert (repo / "README.md").read_text() == "edited\n"
    assert git(repo, "log", "-1", "--format=%s").strip() == "Merge clave session s-abc123"
    assert len(git(repo, "log", "-1", "--format=%P").split()) == 2
    assert git(repo, "status", "--porcelain") == ""


def test_merge_removes_the_clone_and_the_merged_branch_and_keeps_no_backup(gm, repo, clone):
    commit(clone, {"x.txt": "x\n"})
    gm.merge_and_clean_clone(repo, clone, BRANCH, "main")
    assert not clone.exists()
    assert not has_ref(repo, f"refs/heads/{BRANCH}")
    assert not has_ref(repo, BACKUP)


def test_merge_of_a_session_that_changed_nothing_just_cleans_up(gm, repo, clone):
    head = sha(repo, "HEAD")
    gm.merge_and_clean_clone(repo, clone, BRANCH, "main")
    assert sha(repo, "HEAD") == head
    assert not clone.exists()
    assert not has_ref(repo, f"refs/heads/{BRANCH}")


def test_merge_onto_a_target_that_moved_on_keeps_both_sides(gm, repo, clone):
    commit(repo, {"routes/api.php": "<?php // main moved on\n"})
    commit(clone, {"app/Feature.php": "<?php\n"})
    gm.merge_and_clean_clone(repo, clone, BRANCH, "main")
    assert (repo / "routes" / "api.php").read_text() == "<?php // main moved on\n"
    assert (repo / "app" / "Feature.php").read_text() == "<?php\n"


def test_merge_allows_uncommitted_changes_in_files_the_session_did_not_touch(gm, repo, clone):
    commit(clone, {"app/Feature.php": "<?php\n"})
    write(repo, {"routes/web.php": "<?php // local edit\n", "scratch.txt": "mine\n"})
    gm.merge_and_clean_clone(repo, clone, BRANCH, "main")
    assert (repo / "routes" / "web.php").read_text() == "<?php // local edit\n"
    assert (repo / "scratch.txt").read_text() == "mine\n"
    assert (repo / "app" / "Feature.php").exists()


@pytest.mark.parametrize("local", [
    {"app/Models/User.php": "<?php // local edit\n"},
    {"app/Feature.php": "untracked here too\n"},
])
def test_merge_refuses_uncommitted_changes_in_files_the_session_changed(
        gm, repo, clone, local):
    write(clone, {"app/Models/User.php": "<?php // session\n", "app/Feature.php": "<?php\n"})
    write(repo, local)
    before = working_copy(repo)
    with pytest.raises(ClaveError, match="uncommitted changes in files the session changed"):
        gm.merge_and_clean_clone(repo, clone, BRANCH, "main")
    assert working_copy(repo) == before
    assert gm.clone_exists(clone)
    assert show(repo, BRANCH, "app/Feature.php") == "<?php\n"


def test_a_conflicting_merge_is_aborted_and_changes_nothing_in_the_main_copy(gm, repo, clone):
    commit(repo, {"app/Models/User.php": "<?php // main's version\n"})
    write(clone, {"app/Models/User.php": "<?php // session's version\n",
                  f"{UNICODE_NAME}": "untracked in the clone\n"})
    write(repo, {"routes/web.php": "<?php // unrelated local edit\n", "scratch.txt": "x\n"})
    before = working_copy(repo)
    with pytest.raises(ClaveError) as raised:
        gm.merge_and_clean_clone(repo, clone, BRANCH, "main")
    assert "conflicts in app/Models/User.php" in str(raised.value)
    assert f"git merge {BRANCH}" in str(raised.value)
    assert str(clone) in str(raised.value)
    assert working_copy(repo) == before
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    assert gm.clone_exists(clone)
    assert show(repo, BRANCH, UNICODE_NAME) == "untracked in the clone\n"


def test_merge_refuses_when_the_main_copy_is_not_on_the_target(gm, repo, clone):
    git(repo, "switch", "--quiet", "-c", "other")
    write(clone, {"x.txt": "x\n"})
    before = working_copy(clone)
    with pytest.raises(ClaveError, match="is on other, not on main.*git switch main"):
        gm.merge_and_clean_clone(repo, clone, BRANCH, "main")
    assert working_copy(clone) == before
    assert not has_ref(repo, f"refs/heads/{BRANCH}")


def test_merge_refuses_staged_changes_in_the_main_copy(gm, repo, clone):
    write(repo, {"routes/web.php": "<?php // staged\n"})
    git(repo, "add", "routes/web.php")
    before = working_copy(repo)
    with pytest.raises(ClaveError, match="staged changes"):
        gm.merge_and_clean_clone(repo, clone, BRANCH, "main")
    assert working_copy(repo) == before
    assert gm.clone_exists(clone)


def test_merge_refuses_while_the_main_copy_is_in_the_middle_of_its_own_merge(gm, repo, clone):
    git(repo, "switch", "--quiet", "-c", "side")
    commit(repo, {"README.md": "side\n"})
    git(repo, "switch", "--quiet", "main")
    commit(repo, {"README.md": "main\n"})
    git(repo, "merge", "side", check=False)
    before = working_copy(repo)
    with pytest.raises(ClaveError, match="middle of another git operation"):
        gm.merge_and_clean_clone(repo, clone, BRANCH, "main")
    assert working_copy(repo) == before
    assert (repo / ".git" / "MERGE_HEAD").exists()


# -- discard ------------------------------------------------------------------------------

def test_discard_removes_the_clone_and_branch_but_keeps_a_backup_ref(gm, repo, clone):
    tip = commit(clone, {"idea.php": "<?php\n"})
    before = working_copy(repo)
    assert gm.remove_clone(repo, clone, BRANCH) == BACKUP
    assert not clone.exists()
    assert not has_ref(repo, f"refs/heads/{BRANCH}")
    assert sha(repo, BACKUP) == tip
    assert working_copy(repo) == before


def test_discarded_work_is_recoverable_from_the_backup_ref_with_plain_git(gm, repo, clone):
    commit(clone, {"committed.php": "<?php\n"})
    write(clone, {SPACED_NAME: "uncommitted\n", f"ü/{UNICODE_NAME}": "untracked\n",
                  "README.md": "edited\n"})
    backup = gm.remove_clone(repo, clone, BRANCH)
    git(repo, "branch", "restored", backup)
    assert show(repo, "restored", "committed.php") == "<?php\n"
    assert show(repo, "restored", SPACED_NAME) == "uncommitted\n"
    assert show(repo, "restored", f"ü/{UNICODE_NAME}") == "untracked\n"
    assert show(repo, "restored", "README.md") == "edited\n"
    git(repo, "fsck", "--full")


def test_discard_twice_returns_the_same_backup(gm, repo, clone):
    commit(clone, {"x.txt": "x\n"})
    first = gm.remove_clone(repo, clone, BRANCH)
    assert gm.remove_clone(repo, clone, BRANCH) == first


def test_backup_ref_is_derived_from_the_session_branch():
    assert backup_ref("clave/s-abc123") == "refs/clave/backup/s-abc123"


def test_discard_refuses_when_the_clone_is_on_another_branch(gm, repo, clone):
    git(clone, "switch", "--quiet", "-c", "experiment")
    write(clone, {"x.txt": "x\n"})
    before = working_copy(clone)
    with pytest.raises(ClaveError, match="is on experiment, not on clave/s-abc123"):
        gm.remove_clone(repo, clone, BRANCH)
    assert working_copy(clone) == before
    assert not has_ref(repo, BACKUP)


def test_discard_refuses_when_the_clone_has_a_stash_or_unsaved_branch(gm, repo, clone):
    write(clone, {"README.md": "stashed\n"})
    git(clone, "stash", "--quiet")
    with pytest.raises(ClaveError, match="a stash"):
        gm.remove_clone(repo, clone, BRANCH)
    git(clone, "stash", "drop", "--quiet")
    git(clone, "branch", "experiment")
    git(clone, "switch", "--quiet", "experiment")
    commit(clone, {"exp.txt": "x\n"})
    git(clone, "switch", "--quiet", BRANCH)
    with pytest.raises(ClaveError, match=r"branch experiment \(1 commits\)"):
        gm.remove_clone(repo, clone, BRANCH)
    assert gm.clone_exists(clone)


def test_discard_refuses_a_path_that_is_not_a_session_clone(gm, repo):
    with pytest.raises(ClaveError, match="not a session clone"):
        gm.remove_clone(repo, repo, "main-copy")
    assert (repo / "README.md").exists()
    with pytest.raises(ClaveError, match="not a session clone"):
        gm.remove_clone(repo, repo / "app", "main-copy")
    assert (repo / "app" / "Models" / "User.php").exists()


def test_discard_removes_files_the_vm_made_read_only(gm, repo, clone):
    write(clone, {"locked/file.txt": "x\n"})
    gm.commit_pending(clone, "save")
    (clone / "locked").chmod(0o555)
    gm.remove_clone(repo, clone, BRANCH)
    assert not clone.exists()


# -- a project path with spaces and quotes ------------------------------------------------

def test_every_flow_works_in_a_project_path_with_spaces_and_quotes(gm, tmp_path):
    repo = make_repo(tmp_path / "my app's \"x\"")
    (repo / ".env").write_text("APP_ENV=local\n")
    gm.ensure_ignored(repo, ".clave/")
    for n, on_exit in enumerate(("keep", "merge", "discard")):
        branch = f"clave/s-{n}"
        clone = repo / ".clave" / "wt" / f"s-{n}"
        gm.clone_local(repo, clone, branch)
        assert gm.copy_ignored_files(repo, clone, [".env"]) == [clone / ".env"]
        write(clone, {f"{on_exit} {UNICODE_NAME}": on_exit})
        if on_exit == "keep":
            gm.commit_pending(clone, "save")
            gm.keep(repo, clone, branch)
            assert show(repo, branch, f"keep {UNICODE_NAME}") == "keep"
        elif on_exit == "merge":
            gm.merge_and_clean_clone(repo, clone, branch, "main")
            assert (repo / f"merge {UNICODE_NAME}").read_text() == "merge"
        else:
            backup = gm.remove_clone(repo, clone, branch)
            assert show(repo, backup, f"discard {UNICODE_NAME}") == "discard"
    assert os.path.isdir(repo / ".clave" / "wt" / "s-0")
