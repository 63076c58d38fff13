"""What a session's clone holds, said before the keep / merge / discard question.

Peers' users lost work at exactly this prompt, answering without seeing what was at stake:
so the question comes with the session's commits, its diffstat, what is not committed yet,
and whether merging into the base branch as it is now would conflict (`git merge-tree`,
git >= 2.38; with an older git that line is left out). Read-only: the project's branches
and working copy are never touched; only the clone's FETCH_HEAD moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clave.support.command import run


@dataclass(frozen=True)
class CloneSummary:
    commits: int
    shortstat: str            # git's own "3 files changed, 10 insertions(+)" (or "")
    uncommitted: int          # paths with changes not committed yet
    conflicts: list[str] | None   # None: not known (old git, no base)

    def lines(self, branch: str, base_branch: str) -> list[str]:
        if not (self.commits or self.uncommitted):
            return [f"{branch} has no changes."]
        work = [f"{self.commits} commit{'s' * (self.commits != 1)}"]
        if self.shortstat:
            work.append(self.shortstat)
        if self.uncommitted:
            work.append(f"{self.uncommitted} uncommitted path{'s' * (self.uncommitted != 1)}")
        said = [f"{branch}: " + ", ".join(work) + "."]
        if self.conflicts:
            said.append(f"Merging into {base_branch} would conflict in: "
                        f"{', '.join(self.conflicts)}.")
        elif self.conflicts is not None and self.commits:
            said.append(f"Merging into {base_branch} would not conflict.")
        return said


def summarise(project_dir: Path, clone_path: Path, base_branch: str) -> CloneSummary:
    """The clone's work since it left `base_branch`, and a trial merge with that branch now."""
    def git(*args: str):
        return run(["git", "-C", str(clone_path), *args], check=False)

    fetched = git("fetch", "--quiet", "--no-tags", str(project_dir),
                  f"refs/heads/{base_branch}").ok
    base = "FETCH_HEAD" if fetched else f"origin/{base_branch}"
    has_base = git("rev-parse", "--quiet", "--verify", f"{base}^{{commit}}").ok
    # the session's own commits: on HEAD, not in the project when cloned, nor in its base now
    exclude = [base] if has_base else []
    count = git("rev-list", "--count", "HEAD", "--not", "--remotes", *exclude)
    commits = int(count.stdout.strip()) if count.ok and count.stdout.strip().isdigit() else 0
    stat = git("diff", "--shortstat", f"{base}...HEAD") if has_base else None
    status = git("status", "--porcelain", "--untracked-files=all")
    uncommitted = len(status.stdout.splitlines()) if status.ok else 0
    return CloneSummary(commits, stat.stdout.strip() if stat and stat.ok else "", uncommitted,
                        _conflicts(git) if fetched else None)


def _conflicts(git) -> list[str] | None:
    """Files a merge of HEAD into FETCH_HEAD would leave conflicted ([] = a clean merge)."""
    trial = git("merge-tree", "--write-tree", "--name-only", "--no-messages",
                "FETCH_HEAD", "HEAD")
    if trial.exited == 0:
        return []
    if trial.exited == 1:   # the first line is the tree git wrote anyway
        return sorted(set(trial.stdout.split("\n")[1:]) - {""})
    return None             # a git without `merge-tree --write-tree`
