"""GitManager: the session's own clone of the project, and getting its work back safely.

Why a clone and not a worktree: a worktree's `.git` file points at the host's
`.git/worktrees/…`, which the VM cannot see (reference/tart.md §7). `git clone --local`
hard-links the object files: they are immutable, so the clone keeps working even if the main
repository later prunes or repacks them, and there is no `objects/info/alternates` tying the
clone to the host path.

Never lose work (reference/user-pain-points.md #1): before a merge or a discard the clone's
pending changes are committed to the session branch and the branch is fetched into the main
repository; a discard first writes `refs/clave/backup/s-<id>`; a merge that cannot finish is
aborted and leaves the main working copy exactly as it was. Every refusal happens before
anything is deleted.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from clave.errors import ClaveError, ConfigError
from clave.support.command import Result, run

SESSION_PREFIX = "clave/"
BACKUP_PREFIX = "refs/clave/backup/"
CLAVE_DIR = ".clave"
DEFAULT_COPIED = (".env",)
FALLBACK_IDENTITY = {"user.name": "clave", "user.email": "clave@localhost"}
PENDING_MESSAGE = "clave: save uncommitted work from session {label}"
MERGE_MESSAGE = "Merge clave session {label}"
GIT_FIX = "install git (Xcode command line tools: `xcode-select --install`)."

# Variables that would point `git -C <path>` at some other repository (set inside git hooks).
_REPO_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                   "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_PREFIX")
_IN_PROGRESS = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "rebase-merge", "rebase-apply")
_SHOWN_PATHS = 5


def backup_ref(branch: str) -> str:
    """`clave/s-<id>` -> `refs/clave/backup/s-<id>`: where a discarded session's work stays."""
    return BACKUP_PREFIX + session_label(branch)


def session_label(branch: str) -> str:
    return branch.removeprefix(SESSION_PREFIX)


class GitManager:
    """Typed calls to the host's git; every call is `git -C <path> …` as an argv list."""

    def __init__(self, binary: str = "git"):
        self.binary = binary

    # -- questions -----------------------------------------------------------------------

    def is_repo(self, path: Path) -> bool:
        result = self._git(path, "rev-parse", "--is-inside-work-tree", check=False)
        return result.ok and result.stdout.strip() == "true"

    def root(self, path: Path) -> Path:
        """The top level of the working tree that contains path."""
        result = self._git(path, "rev-parse", "--show-toplevel", check=False)
        if not result.ok:
            raise ClaveError(f"{path} is not inside a git repository: run clave in your "
                             "project, or `git init` and commit it first.")
        return Path(result.stdout.strip())

    def current_branch(self, path: Path) -> str:
        self.root(path)
        ref = self._head_ref(path)
        if ref is None:
            short = self._git(path, "rev-parse", "--short", "HEAD").stdout.strip()
            raise ClaveError(f"{path} has a detached HEAD (at {short}): check out a branch "
                             "first, e.g. `git switch -c my-work`.")
        name = ref.removeprefix("refs/heads/")
        if self._commit(path, "HEAD") is None:
            raise ClaveError(f"Branch {name!r} in {path} has no commits yet: commit the "
                             "project first, e.g. `git add -A && git commit -m 'Initial commit'`.")
        return name

    def clone_exists(self, clone_path: Path) -> bool:
        return (Path(clone_path) / ".git").is_dir()

    def has_changes(self, clone_path: Path) -> bool:
        """Uncommitted or untracked changes (ignored files do not count)."""
        return bool(self._status(clone_path))

    # -- setting up a session ------------------------------------------------------------

    def ensure_ignored(self, repo: Path, pattern: str) -> None:
        """Append pattern to repo/.gitignore unless a line already says the same.

        `.clave`, `/.clave`, `.clave/` and `/.clave/` count as the same line: each ignores
        the directory at the root. Existing bytes are kept; a missing final newline is added
        before the new line, and a CRLF file gets a CRLF line.
        """
        gitignore = Path(repo) / ".gitignore"
        data = gitignore.read_bytes() if gitignore.exists() else b""
        text = data.decode("utf-8", "surrogateescape")
        if any(_ignore_key(line) == _ignore_key(pattern) for line in text.splitlines()):
            return
        newline = "\r\n" if "\r\n" in text else "\n"
        prefix = newline if text and not text.endswith("\n") else ""
        with gitignore.open("ab") as handle:
            handle.write((prefix + pattern + newline).encode("utf-8", "surrogateescape"))

    def clone_local(self, repo: Path, clone_path: Path, branch: str) -> None:
        """A complete, standalone clone at clone_path on a new branch from repo's HEAD commit.

        All or nothing: on any failure (Ctrl-C included) the clone and the directories made
        for it are removed again.
        """
        repo, clone_path = self.root(repo), _absolute(clone_path)
        # An empty directory is welcome: the VM may already share it while it boots.
        empty_dir = (clone_path.is_dir() and not clone_path.is_symlink()
                     and not any(clone_path.iterdir()))
        if (clone_path.exists() or clone_path.is_symlink()) and not empty_dir:
            raise ClaveError(f"{clone_path} already exists: clave will not clone over it. "
                             "Remove it (or run `clave cleanup`) and try again.")
        if not self._git(repo, "check-ref-format", "--branch", branch, check=False).ok:
            raise ClaveError(f"{branch!r} is not a valid git branch name.")
        if self._commit(repo, f"refs/heads/{branch}") is not None:
            raise ClaveError(f"Branch {branch} already exists in {repo}: merge or delete it "
                             f"(`git branch -d {branch}`) before starting a session with it.")
        head = self._commit(repo, "HEAD")
        if head is None:
            raise ClaveError(f"{repo} has no commits yet: commit the project first, e.g. "
                             "`git add -A && git commit -m 'Initial commit'`.")
        made = _first_missing(clone_path)
        try:
            self._git(repo, "clone", "--local", "--no-checkout", "--quiet", "--", repo,
                      clone_path)
            self._make_standalone(clone_path)
            self._git(clone_path, "checkout", "--quiet", "-b", branch, head)
            self._copy_identity(repo, clone_path)
        except BaseException:
            if empty_dir:
                for child in clone_path.iterdir():
                    _remove(child)
            else:
                shutil.rmtree(made, ignore_errors=True)
            raise

    def copy_ignored_files(self, repo: Path, clone_path: Path,
                           names: Sequence[str] | None = None) -> list[Path]:
        """Copy files git does not carry (`.env`, keys) into the clone; returns the copies.

        names are paths or glob patterns relative to repo; a directory is copied file by
        file. Missing ones are skipped, anything under `.clave/` or `.git/` is never copied,
        and a file the clone already has (tracked ones included) is never overwritten. Each
        copy is listed in the clone's `.git/info/exclude`, so even a file the project forgot
        to ignore (a `.env` with secrets) is never committed from the clone.
        """
        repo, clone_path = _absolute(repo), _absolute(clone_path)
        if isinstance(names, str):
            names = [names]
        prefix = self._git(repo, "rev-parse", "--show-prefix").stdout.strip()
        tracked = set(self._git(clone_path, "ls-files", "-z").stdout.split("\0"))
        copied: list[Path] = []
        excluded: list[str] = []
        for rel in _expand(repo, DEFAULT_COPIED if names is None else names):
            in_clone = prefix + rel.as_posix()
            target = clone_path / in_clone
            if in_clone in tracked or target.exists() or target.is_symlink():
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(repo / rel, target, follow_symlinks=False)
            except OSError as err:
                raise ClaveError(f"Could not copy {rel} into {clone_path}: {err}.") from err
            copied.append(target)
            excluded.append(in_clone)
        _exclude(clone_path, excluded)
        return copied

    # -- saving work ---------------------------------------------------------------------

    def commit_pending(self, clone_path: Path, message: str) -> bool:
        """Commit everything (untracked files included) on the clone's current branch.

        Hooks and signing are skipped: this commit exists only so no work is lost, and a
        failing lint hook must not stand in the way. True if a commit was made.
        """
        if not self.has_changes(clone_path):
            return False
        self._git(clone_path, "add", "--all")
        if self._git(clone_path, "diff", "--cached", "--quiet", check=False).ok:
            return False  # only changes git cannot commit here (e.g. inside a submodule)
        self._git(clone_path, *self._identity(clone_path), "-c", "commit.gpgSign=false",
                  "commit", "--quiet", "--no-verify", "-m", message)
        return True

    def save_branch(self, repo: Path, clone_path: Path, branch: str) -> str:
        """Fetch the clone's branch into repo as refs/heads/<branch>; returns its commit.

        Only a fast-forward: if repo's branch has commits the clone lacks, refuse.
        """
        repo, clone_path = _absolute(repo), _absolute(clone_path)
        ref = f"refs/heads/{branch}"
        sha = self._commit(clone_path, ref)
        if sha is None:
            raise ClaveError(f"The session clone at {clone_path} has no branch {branch}.")
        old = self._commit(repo, ref)
        if old == sha:
            return sha
        if self._head_ref(repo) == ref:
            raise ClaveError(f"Branch {branch} is checked out in {repo}, so clave cannot "
                             f"update it: switch to another branch there and try again.")
        if old is not None and not self._is_ancestor(clone_path, old, sha):
            raise ClaveError(
                f"Branch {branch} in {repo} has commits that are not in the session clone at "
                f"{clone_path}; clave will not overwrite them. Rename it "
                f"(`git branch -m {branch} {branch}-old`) and try again.")
        self._git(repo, "fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--",
                  clone_path, f"{ref}:{ref}")
        if self._commit(repo, ref) != sha:
            raise ClaveError(f"Fetching {branch} from {clone_path} into {repo} did not "
                             f"update it to {sha[:12]}; the clone is untouched.")
        return sha

    # -- ending a session ----------------------------------------------------------------

    def keep(self, repo: Path, clone_path: Path, branch: str) -> None:
        """Leave the clone exactly as it is, and make its commits visible in repo."""
        if not self.clone_exists(clone_path):
            raise ClaveError(f"There is no session clone at {clone_path} to keep.")
        self.save_branch(repo, clone_path, branch)

    def merge_and_clean_clone(self, repo: Path, clone_path: Path, branch: str,
                              target: str) -> None:
        """Merge the session into target (checked out in repo), then remove clone and branch.

        Refuses, with the main working copy untouched, when repo is not on target, is in the
        middle of another operation, has staged changes, or has uncommitted changes in files
        the session changed. A merge that fails is aborted; the clone and branch stay.
        """
        repo, clone_path = self.root(repo), _absolute(clone_path)
        self._check_ready_to_merge(repo, branch, target)
        if clone_path.exists():
            self._save_session(repo, clone_path, branch, "merge")
        elif self._commit(repo, f"refs/heads/{branch}") is None:
            raise ClaveError(f"Nothing to merge: neither {clone_path} nor branch {branch} "
                             f"in {repo} exists.")
        self._check_dirty_overlap(repo, clone_path, branch, target)
        self._merge(repo, clone_path, branch, target)
        if self.clone_exists(clone_path):
            _remove_tree(clone_path)
        self._git(repo, "branch", "--quiet", "-d", branch)

    def remove_clone(self, repo: Path, clone_path: Path, branch: str) -> str:
        """Discard the session; returns the backup ref that still holds all of its work.

        Undo with plain git: `git branch restored refs/clave/backup/s-<id>`.
        """
        repo, clone_path = self.root(repo), _absolute(clone_path)
        backup, ref = backup_ref(branch), f"refs/heads/{branch}"
        if self._head_ref(repo) == ref:
            raise ClaveError(f"Branch {branch} is checked out in {repo}: switch to another "
                             "branch there before discarding the session.")
        if clone_path.exists():
            self._save_session(repo, clone_path, branch, "discard")
        sha = self._commit(repo, ref)
        if sha is None:
            if self._commit(repo, backup) is not None:
                return backup  # discarded already
            raise ClaveError(f"Nothing to discard: neither {clone_path} nor branch {branch} "
                             f"in {repo} exists.")
        self._write_backup(repo, backup, sha)
        if self.clone_exists(clone_path):
            _remove_tree(clone_path)
        self._git(repo, "branch", "--quiet", "-D", branch)
        return backup

    # -- the steps behind merge and discard ----------------------------------------------

    def _save_session(self, repo: Path, clone_path: Path, branch: str, verb: str) -> None:
        """Commit the clone's pending work and fetch its branch into repo, or refuse."""
        self._check_is_clone(repo, clone_path)
        where = self._head_ref(clone_path)
        if where != f"refs/heads/{branch}":
            shown = where.removeprefix("refs/heads/") if where else "a detached HEAD"
            raise ClaveError(
                f"The session clone at {clone_path} is on {shown}, not on {branch}: switch "
                f"back (`git -C {_q(clone_path)} switch {branch}`), bring that work onto "
                f"{branch}, then {verb} again. Nothing was changed.")
        self.commit_pending(clone_path, PENDING_MESSAGE.format(label=session_label(branch)))
        stranded = self._stranded_work(clone_path, branch)
        if stranded:
            raise ClaveError(
                f"The session clone at {clone_path} has work outside {branch}: "
                f"{', '.join(stranded)}. Bring it onto {branch} (or delete it) inside the "
                f"clone, then {verb} again. Nothing was removed.")
        self.save_branch(repo, clone_path, branch)

    def _stranded_work(self, clone_path: Path, branch: str) -> list[str]:
        """Stashes and other local branches whose commits would vanish with the clone."""
        found = []
        if self._commit(clone_path, "refs/stash") is not None:
            found.append("a stash (`git stash list`)")
        refs = self._git(clone_path, "for-each-ref", "--format=%(refname)", "refs/heads")
        for ref in refs.stdout.split():
            if ref == f"refs/heads/{branch}":
                continue
            count = self._git(clone_path, "rev-list", "--count", ref, "--not",
                              f"refs/heads/{branch}", "--remotes=origin").stdout.strip()
            if count != "0":
                found.append(f"branch {ref.removeprefix('refs/heads/')} ({count} commits)")
        return found

    def _check_ready_to_merge(self, repo: Path, branch: str, target: str) -> None:
        busy = [name for name in _IN_PROGRESS if self._git_path(repo, name).exists()]
        if busy:
            raise ClaveError(f"{repo} is in the middle of another git operation ({busy[0]}): "
                             f"finish or abort it, then merge {branch} again.")
        on = self._head_ref(repo)
        if on != f"refs/heads/{target}":
            shown = on.removeprefix("refs/heads/") if on else "a detached HEAD"
            raise ClaveError(f"{repo} is on {shown}, not on {target}: switch to it "
                             f"(`git switch {target}`) and merge {branch} again.")
        if not self._git(repo, "diff", "--cached", "--quiet", check=False).ok:
            raise ClaveError(f"{repo} has staged changes, which git cannot merge into: commit "
                             f"or unstage them, then merge {branch} again.")

    def _check_dirty_overlap(self, repo: Path, clone_path: Path, branch: str,
                             target: str) -> None:
        changed = self._git(repo, "diff", "--name-only", "--no-renames", "-z",
                            f"refs/heads/{target}...refs/heads/{branch}", "--")
        overlap = sorted(set(changed.stdout.split("\0")) & self._status(repo) - {""})
        if overlap:
            raise ClaveError(
                f"{repo} has uncommitted changes in files the session changed "
                f"({_show(overlap)}): commit or stash them, then merge {branch} again. "
                f"The session's work is saved on branch {branch} and the clone at "
                f"{clone_path} is kept.")

    def _merge(self, repo: Path, clone_path: Path, branch: str, target: str) -> None:
        message = MERGE_MESSAGE.format(label=session_label(branch))
        try:
            result = self._git(repo, *self._identity(repo), "merge", "--no-ff", "--no-edit",
                               "--no-autostash", "-m", message, f"refs/heads/{branch}",
                               check=False)
        except BaseException:
            self._abort_merge(repo)
            raise
        if result.ok:
            return
        conflicts = self._abort_merge(repo)
        how = (f"To resolve it, run `git merge {branch}` in {_q(repo)} and fix the conflicts "
               f"by hand, or keep the session and carry on in the clone at {clone_path}.")
        if conflicts:
            raise ClaveError(f"Merging {branch} into {target} conflicts in {_show(conflicts)}; "
                             f"the merge was aborted and {repo} is as it was. {how}")
        raise ClaveError(f"Merging {branch} into {target} failed ({result.last_line()}); "
                         f"{repo} is as it was and the clone is kept. {how}")

    def _abort_merge(self, repo: Path) -> list[str]:
        """Abort a merge clave started; returns the paths that conflicted."""
        if not self._git_path(repo, "MERGE_HEAD").exists():
            return []
        unmerged = self._git(repo, "diff", "--name-only", "--diff-filter=U", "-z", check=False)
        self._git(repo, "merge", "--abort")
        return sorted(p for p in unmerged.stdout.split("\0") if p)

    def _write_backup(self, repo: Path, backup: str, sha: str) -> None:
        old = self._commit(repo, backup)
        if old is not None and old != sha and not self._is_ancestor(repo, old, sha):
            raise ClaveError(f"{backup} in {repo} already holds other work: rename it "
                             f"(`git update-ref {backup}-old {backup}`) and discard again.")
        self._git(repo, "update-ref", "-m", "clave: discard", backup, sha, old or "")
        if self._commit(repo, backup) != sha:
            raise ClaveError(f"Could not write {backup} in {repo}; nothing was removed.")

    def _check_is_clone(self, repo: Path, clone_path: Path) -> None:
        """Guard every deletion: clone_path must be its own repository, not the project."""
        top = self._git(clone_path, "rev-parse", "--show-toplevel", check=False)
        if (not self.clone_exists(clone_path) or not top.ok
                or Path(top.stdout.strip()).resolve() != clone_path.resolve()
                or repo.resolve().is_relative_to(clone_path.resolve())):
            raise ClaveError(f"{clone_path} is not a session clone of {repo}; clave will not "
                             "touch it.")

    # -- setting up the clone ------------------------------------------------------------

    def _make_standalone(self, clone_path: Path) -> None:
        """Copy in objects borrowed through alternates (a main repo cloned with --shared)."""
        alternates = clone_path / ".git" / "objects" / "info" / "alternates"
        if alternates.exists():
            self._git(clone_path, "repack", "-a", "-d", "-q")
            alternates.unlink()

    def _copy_identity(self, repo: Path, clone_path: Path) -> None:
        """The VM has no global git config: give the clone the user's effective identity."""
        for key, fallback in FALLBACK_IDENTITY.items():
            value = self._config(repo, key) or fallback
            self._git(clone_path, "config", key, value)

    def _identity(self, path: Path) -> list[str]:
        """`-c user.name=clave …` only for the parts of the identity nobody configured."""
        args = []
        for key, fallback in FALLBACK_IDENTITY.items():
            if not self._config(path, key):
                args += ["-c", f"{key}={fallback}"]
        return args

    # -- plumbing ------------------------------------------------------------------------

    def _git(self, path: Path, *args: str | os.PathLike[str], check: bool = True) -> Result:
        return run([self.binary, "-C", path, *args], check=check, env=_environment(),
                   missing_fix=GIT_FIX)

    def _commit(self, path: Path, rev: str) -> str | None:
        result = self._git(path, "rev-parse", "--quiet", "--verify", f"{rev}^{{commit}}",
                           check=False)
        return result.stdout.strip() if result.ok else None

    def _head_ref(self, path: Path) -> str | None:
        """`refs/heads/<name>` (even for an unborn branch); None when HEAD is detached."""
        result = self._git(path, "symbolic-ref", "--quiet", "HEAD", check=False)
        return result.stdout.strip() if result.ok else None

    def _is_ancestor(self, path: Path, older: str, newer: str) -> bool:
        return self._git(path, "merge-base", "--is-ancestor", older, newer, check=False).ok

    def _config(self, path: Path, key: str) -> str:
        return self._git(path, "config", "--get", key, check=False).stdout.strip()

    def _git_path(self, path: Path, name: str) -> Path:
        found = Path(self._git(path, "rev-parse", "--git-path", name).stdout.strip())
        return found if found.is_absolute() else Path(path) / found

    def _status(self, path: Path) -> set[str]:
        """Every path with uncommitted changes, untracked ones included (both names of a
        rename)."""
        out = self._git(path, "--no-optional-locks", "status", "--porcelain", "-z",
                        "--untracked-files=all").stdout
        paths, fields = set(), iter(out.split("\0"))
        for entry in fields:
            if entry:
                paths.add(entry[3:])
                if entry[0] in "RC":
                    paths.add(next(fields, ""))
        return paths - {""}


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPO_VARIABLES}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _ignore_key(line: str) -> str:
    return line.rstrip("\r\n ").strip("/")


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _first_missing(path: Path) -> Path:
    """The outermost directory a clone at path would create (removed again on failure)."""
    while not path.parent.exists():
        path = path.parent
    return path


def _expand(repo: Path, names: Sequence[str]) -> Iterator[Path]:
    """The files (relative to repo) that names match, each once, never in .clave/ or .git/."""
    seen: set[Path] = set()
    for name in names:
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts:
            raise ConfigError(f"git.copy_files: {name!r} must be a path inside the project, "
                              "e.g. '.env' or 'storage/*.key'.")
        for match in sorted(repo.glob(name)):
            files = _walk(match) if match.is_dir() and not match.is_symlink() else [match]
            for path in files:
                rel = path.relative_to(repo)
                if rel in seen or {CLAVE_DIR, ".git"} & set(rel.parts) or "\n" in str(rel):
                    continue
                seen.add(rel)
                yield rel


def _walk(directory: Path) -> Iterator[Path]:
    for top, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in (CLAVE_DIR, ".git"))
        for name in sorted(files):
            yield Path(top) / name
        for name in dirs:
            if (Path(top) / name).is_symlink():
                yield Path(top) / name


def _exclude(clone_path: Path, paths: Sequence[str]) -> None:
    """List paths in the clone's info/exclude, escaped so each matches only itself."""
    if not paths:
        return
    exclude = clone_path / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for path in paths:
        escaped = re.sub(r"([\\*?\[])", r"\\\1", path)
        stripped = escaped.rstrip(" ")
        lines.append("/" + stripped + "\\ " * (len(escaped) - len(stripped)) + "\n")
    existing = exclude.read_text() if exclude.exists() else ""
    glue = "\n" if existing and not existing.endswith("\n") else ""
    with exclude.open("a") as handle:
        handle.write(glue + "".join(lines))


def _remove_tree(path: Path) -> None:
    """rmtree that also clears directories someone made read-only (chmod -w in the VM)."""
    def retry(function, failed, _info):
        parent = os.path.dirname(failed)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, os.stat(failed).st_mode | stat.S_IRWXU)
        function(failed)
    try:
        shutil.rmtree(path, onerror=retry)
    except OSError as err:
        raise ClaveError(f"Could not remove {path}: {err}. Its work is saved in the main "
                         "repository; remove the directory by hand.") from err


def _show(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:_SHOWN_PATHS])
    more = len(paths) - _SHOWN_PATHS
    return shown + (f" and {more} more" if more > 0 else "")


def _q(path: Path) -> str:
    return shlex.quote(str(path))
