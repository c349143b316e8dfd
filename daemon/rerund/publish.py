"""Push a plan's commits back: content first, then one fast-forward of the branch (SPEC §4).

rerund never force-pushes. A rejected push means the branch moved while the
plan ran; the caller re-plans from the new tip. Annexed content reaches the
remote before any ref that points to it.
"""

from __future__ import annotations

from rerund.errors import GitError, PublishError
from rerund.gitrepo import GitRepo
from rerund.retry import transient_git
from rerund.verified import NOTES_REF

_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "stale info", "! [remote rejected]")


class BranchMovedError(PublishError):
    """The remote branch is no longer the tip the plan started from."""


def publish(repo: GitRepo, branch: str, base: str, head: str, *, annex: bool) -> str:
    """Fast-forward the remote ``branch`` from ``base`` to ``head``; returns the new tip.

    rerund's notes of identical reproductions (``refs/notes/rerund``) go in the
    same atomic push, so the branch and what is known about it never part.
    """
    refspecs = [] if head == base else [f"{head}:refs/heads/{branch}"]
    if repo.resolve(NOTES_REF) is not None:
        refspecs.append(f"{NOTES_REF}:{NOTES_REF}")
    if not refspecs:
        return base
    if annex and head != base:
        push_annex_content(repo, base, head)
    try:
        transient_git(lambda: repo.run("push", "--quiet", "--atomic", "origin", *refspecs))()
    except GitError as exc:
        if any(marker in exc.stderr for marker in _REJECTED):
            raise BranchMovedError(f"{branch} moved on the remote while the plan ran") from exc
        raise PublishError(f"pushing to {branch} failed: {exc}") from exc
    return head


def push_side_ref(repo: GitRepo, ref: str, base: str, head: str, *, annex: bool) -> str | None:
    """Keep a failed plan's finished commits (``base..head``) on ``ref``, never on the branch."""
    if head == base:
        return None
    if annex:
        push_annex_content(repo, base, head)
    transient_git(lambda: repo.run("push", "--quiet", "origin", f"{head}:{ref}"))()
    return ref


def push_annex_content(repo: GitRepo, base: str, head: str) -> None:
    """Copy the annexed files of ``base..head`` to the remote and share the location log."""
    paths = repo.run(
        "diff", "--name-only", "-z", "--no-renames", "--diff-filter=d", base, head
    ).split(b"\0")
    names = [path.decode("utf-8") for path in paths if path]
    annexed = repo.annex("find", "--in=here", "--", *names).split() if names else []
    if not annexed:  # nothing the commits point to lives in the annex
        return
    try:
        transient_git(
            lambda: repo.annex("copy", "--quiet", "--fast", "--to", "origin", "--", *names)
        )()
        transient_git(
            lambda: repo.annex("sync", "--quiet", "--only-annex", "--no-content", "origin")
        )()
    except GitError as exc:
        raise PublishError(f"could not copy annexed content to the remote: {exc}") from exc
