"""Push a plan's commits back: content first, then one fast-forward of the branch (SPEC §4).

rerund never force-pushes. A push refused as not a fast-forward means the
branch moved while the plan ran: the caller re-plans from the new tip. A push
the remote itself refused (a pre-receive hook, a protected branch) is a
failure with the remote's own words, never taken for a moved branch. Annexed
content reaches the remote before any ref that points to it.

Pushes go through GitPython, which parses git's per-ref ``--porcelain`` report
into flags; the daemon imports it once, so its import cost never reaches a step.
"""

from __future__ import annotations

import re

import git as gitpython

from rerund.core.gitrepo import GitRepo
from rerund.core.verified import NOTES_BRANCH, NOTES_REF
from rerund.errors import GitError, PublishError
from rerund.service.retry import transient_git

_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class BranchMovedError(PublishError):
    """The remote branch is no longer the tip the plan started from."""


class RemoteRejectedError(PublishError):
    """The remote refused the push on its own terms (a hook, a protected branch)."""


def push_refs(repo: GitRepo, refspecs: list[str], *, atomic: bool) -> None:
    """``git push origin REFSPECS``, its outcome classified per ref.

    Raises :class:`BranchMovedError` for a non-fast-forward, :class:`RemoteRejectedError`
    with the remote's message for a refusal, :class:`GitError` (transient or not) when
    the remote could not be reached at all.
    """
    refspecs = [_named_source(repo, spec, number) for number, spec in enumerate(refspecs)]
    remote = gitpython.Repo(repo.path).remote("origin")
    progress = gitpython.RemoteProgress()
    options = {"atomic": True} if atomic else {}
    with remote.repo.git.custom_environment(**repo.env):
        try:
            infos = remote.push(refspecs, progress=progress, **options)
        except gitpython.GitCommandError as exc:  # no per-ref report: never reached the remote
            raise GitError(["git", "push", "origin"], _status(exc), str(exc.stderr)) from exc
    remote_words = "; ".join(
        line.removeprefix("remote:").strip()
        for line in [*progress.other_lines, *progress.error_lines]
        if line.startswith("remote:") and line.removeprefix("remote:").strip()
    )
    refused = [info for info in infos if info.flags & gitpython.PushInfo.REMOTE_REJECTED]
    if refused:
        summary = refused[0].summary.strip()
        raise RemoteRejectedError(
            f"the remote refused the push of {refused[0].remote_ref_string}: {summary}"
            + (f" ({remote_words})" if remote_words else "")
        )
    moved = [info for info in infos if info.flags & gitpython.PushInfo.REJECTED]
    if moved:
        raise BranchMovedError(f"{moved[0].remote_ref_string} moved on the remote")
    failed = [info for info in infos if info.flags & gitpython.PushInfo.ERROR]
    if failed or infos.error is not None:
        detail = failed[0].summary.strip() if failed else str(infos.error)
        raise PublishError(f"pushing to origin failed: {detail}")


def _named_source(repo: GitRepo, refspec: str, number: int) -> str:
    """``<sha>:<dst>`` as ``refs/rerund/outgoing/<n>:<dst>``.

    GitPython reads the per-ref report only for sources that are refs: with a bare
    commit id every line is dropped, and a refusal looks like an unreachable remote.
    """
    source, _, destination = refspec.partition(":")
    if not _OBJECT_ID.fullmatch(source):
        return refspec
    local = f"refs/rerund/outgoing/{number}"
    repo.run("update-ref", local, source)
    return f"{local}:{destination}"


def _status(exc: gitpython.GitCommandError) -> int:
    return exc.status if isinstance(exc.status, int) else 1


def publish(repo: GitRepo, branch: str, base: str, head: str, *, annex: bool) -> str:
    """Fast-forward the remote ``branch`` from ``base`` to ``head``; returns the new tip.

    rerund's notes of identical reproductions (``refs/notes/rerund``) go in the
    same atomic push, so the branch and what is known about it never part; and
    also as the branch every clone fetches (see :mod:`rerund.core.verified`).
    """
    refspecs = [] if head == base else [f"{head}:refs/heads/{branch}"]
    if repo.resolve(NOTES_REF) is not None:
        refspecs.extend([f"{NOTES_REF}:{NOTES_REF}", f"{NOTES_REF}:{NOTES_BRANCH}"])
    if not refspecs:
        return base
    if annex and head != base:
        push_annex_content(repo, base, head)
    try:
        transient_git(lambda: push_refs(repo, refspecs, atomic=True))()
    except BranchMovedError as exc:
        raise BranchMovedError(f"{branch} moved on the remote while the plan ran") from exc
    except GitError as exc:
        raise PublishError(f"pushing to {branch} failed: {exc}") from exc
    return head


def push_side_ref(repo: GitRepo, ref: str, base: str, head: str, *, annex: bool) -> str | None:
    """Keep a failed plan's finished commits (``base..head``) on ``ref``, never on the branch."""
    if head == base:
        return None
    if annex:
        push_annex_content(repo, base, head)
    transient_git(lambda: push_refs(repo, [f"{head}:{ref}"], atomic=False))()
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
