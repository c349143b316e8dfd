"""Commands that commit by themselves: their record goes on a run-merge, as in DataLad ≥ 1.6.

DataLad puts such a record on a merge commit: first parent the HEAD before
the command, second parent the command's last commit — or, when the command
also left changes uncommitted, a commit of those titled
``Remaining changes after command execution`` on top of it — and the tree of
that second parent. The merge is made with ``git commit-tree -m`` and the
branch set to it without a reflog message, as DataLad does, so the same run
gives the same commit id under either tool.

A rerun of a run-merge record builds the new merge on the current HEAD, as
``datalad rerun --since`` does in a range. (DataLad's rerun of a single
run-merge record rebuilds it on the record's own first parent and moves the
branch there, dropping later commits; rerund never moves a branch backwards.)
"""

from __future__ import annotations

from rerund.core.gitrepo import GitRepo
from rerund.errors import StepFailedError

REMAINING_MESSAGE = "Remaining changes after command execution"


def current_branch(repo: GitRepo) -> str | None:
    """The branch HEAD points to, or ``None`` when detached."""
    name = repo.run("symbolic-ref", "-q", "HEAD", check=False).decode().strip()
    return name or None


def check_commits(repo: GitRepo, commit: str, head: str, branch: str | None, log_path: str) -> None:
    """Refuse what DataLad refuses: a command that switched branches or left ``head``'s line."""
    now = current_branch(repo)
    if now != branch:
        raise StepFailedError(
            commit,
            f"step {commit[:8]} switched the branch from {branch or 'a detached HEAD'} to"
            f" {now or 'a detached HEAD'}; a run-merge cannot join two branches",
            log_path,
        )
    if not repo.succeeds("merge-base", "--is-ancestor", head, "HEAD"):
        raise StepFailedError(
            commit,
            f"step {commit[:8]} moved HEAD off {head[:8]}'s history; no run-merge can be made",
            log_path,
        )


def merge_record(repo: GitRepo, head: str, message: str) -> str:
    """Make the run-merge of ``head`` and the current HEAD, move the branch to it, return it."""
    tip = repo.text("rev-parse", "HEAD")
    tree = repo.text("rev-parse", f"{tip}^{{tree}}")
    merge = repo.text("commit-tree", tree, "-p", head, "-p", tip, "-m", message)
    repo.run("update-ref", current_branch(repo) or "HEAD", merge)
    return merge
