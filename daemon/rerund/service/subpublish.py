"""Outputs written into a served subdataset reach it before the superdataset (issue 7).

A rerun whose outputs lie in subdataset ``inputs/raw`` commits there, and the
superdataset's commit moves the gitlink to that new commit. When ``inputs/raw``
is itself a served repository, its new commit (annexed content first) goes to a
side ref there, ``refs/rerund/pending/<job>-<commit>``, before the superdataset is
pushed; only once that push succeeded is the subdataset's branch fast-forwarded
and the side ref dropped. A failed superdataset push so leaves the served
subdataset's branch as it was, and the superdataset's gitlink never names a
commit its server lacks. DataLad's ``push -r`` pushes the subdataset's branch
first and carries on when the superdataset fails (reference §7).

Blocking: run these in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from rerund.core.gitrepo import GitRepo
from rerund.errors import GitError, PublishError
from rerund.service.propagate import uses
from rerund.service.publish import BranchMovedError, push_refs, push_side_ref
from rerund.service.retry import transient_git
from rerund.service.sources import Served, served_datasets, submodules_at
from rerund.settings import Settings


@dataclass(frozen=True)
class Staged:
    """A served subdataset's new commit, waiting on a side ref for the superdataset."""

    path: str
    sub: GitRepo
    served: Served
    commit: str
    ref: str


def stage(repo: GitRepo, base: str, head: str, settings: Settings, job_id: int) -> list[Staged]:
    """Push the new commits of served subdatasets in ``base..head`` to side refs."""
    out = repo.run("diff-tree", "-r", "-z", "--no-renames", base, head).split(b"\0")
    moved: dict[str, str] = {}
    for meta, name in zip(out[::2], out[1::2], strict=False):
        fields = meta.decode().lstrip(":").split(" ")
        if len(fields) >= 4 and fields[1] == "160000":
            moved[name.decode("utf-8", "replace")] = fields[3]
    if not moved:
        return []
    served = served_datasets(settings)
    entries = submodules_at(repo, head)
    staged: list[Staged] = []
    for path, commit in sorted(moved.items()):
        entry = entries.get(path)
        target = next((s for s in served if entry is not None and uses(entry, s)), None)
        if target is None or GitRepo(target.path).resolve(commit) is not None:
            continue  # not served here, or the server has the commit already
        sub = GitRepo(repo.path / path, env=repo.env)
        old = repo.run("rev-parse", "--verify", "--quiet", f"{base}:{path}", check=False)
        if sub.resolve(commit) is None or not old.strip():
            raise PublishError(f"{path} at {commit[:8]} is not in the work tree to publish")
        sub.run("remote", "set-url", "origin", str(target.path))
        annex = sub.resolve("refs/heads/git-annex") is not None
        ref = f"refs/rerund/pending/{job_id}-{commit[:12]}"  # one per attempt: never forced
        push_side_ref(sub, ref, old.decode().strip(), commit, annex=annex)
        staged.append(Staged(path, sub, target, commit, ref))
    return staged


def settle(staged: list[Staged]) -> list[str]:
    """After the superdataset's push: fast-forward each subdataset's branch, drop the side
    ref. Returns what stayed on a side ref (the branch moved meanwhile), one sentence each."""
    kept: list[str] = []
    for item in staged:
        branch = f"refs/heads/{item.served.repo.branch}"
        try:
            transient_git(partial(push_refs, item.sub, [f"{item.commit}:{branch}"], atomic=False))()
        except (BranchMovedError, GitError, PublishError) as exc:
            kept.append(
                f"{item.path}: {item.commit[:8]} kept on {item.served.repo.name}'s {item.ref}"
                f" ({exc})"
            )
            continue
        transient_git(partial(push_refs, item.sub, [f":{item.ref}"], atomic=False))()
    return kept
