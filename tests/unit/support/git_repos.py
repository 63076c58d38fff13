"""Real git repositories for the GitManager tests: build them, change them, photograph them."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

BRANCH = "clave/s-abc123"
BACKUP = "refs/clave/backup/s-abc123"

PROJECT_FILES = {
    "README.md": "# app\n",
    "artisan": "#!/usr/bin/env php\n<?php\n",
    "app/Models/User.php": "<?php\nclass User {}\n",
    "routes/web.php": "<?php\n// routes\n",
    ".gitignore": "/vendor\n.env\n.clave/\n",
}


def git(path: Path, *args: str, check: bool = True) -> str:
    """Run git in path the plain way (the tests' own hands, independent of GitManager)."""
    done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                          check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A repository on branch main with one commit of files (a small Laravel-ish tree)."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    write(path, PROJECT_FILES if files is None else files)
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "-m", "Initial commit")
    return path


def commit(path: Path, files: dict[str, str], message: str = "change") -> str:
    write(path, files)
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "-m", message)
    return sha(path, "HEAD")


def sha(path: Path, rev: str) -> str:
    return git(path, "rev-parse", "--verify", f"{rev}^{{commit}}").strip()


def has_ref(path: Path, ref: str) -> bool:
    return bool(git(path, "rev-parse", "--quiet", "--verify", ref, check=False).strip())


def show(path: Path, rev: str, name: str) -> str:
    return git(path, "show", f"{rev}:{name}")


@dataclass(frozen=True)
class WorkingCopy:
    """Everything a user could see in a working copy, byte for byte (not the refs)."""

    files: dict[str, object]
    status: str
    index: str
    head: str
    on: str


def working_copy(repo: Path) -> WorkingCopy:
    files: dict[str, object] = {}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo)
        if rel.parts[0] in (".git", ".clave"):
            continue
        if path.is_symlink():
            files[rel.as_posix()] = ("link", os.readlink(path))
        elif path.is_file():
            files[rel.as_posix()] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
        else:
            files[rel.as_posix()] = "dir"
    return WorkingCopy(
        files=files,
        status=git(repo, "status", "--porcelain", "-z", "--untracked-files=all"),
        index=git(repo, "ls-files", "--stage", "-z"),
        head=sha(repo, "HEAD"),
        on=git(repo, "symbolic-ref", "--quiet", "HEAD", check=False).strip(),
    )
