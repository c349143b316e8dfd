"""A push to a served dataset reaches the served datasets that use it (issue 7).

When a job for dataset D finishes, every served dataset S whose branch has D
as a subdataset (``.gitmodules``: ``datalad-id``, else URL) and follows
subdatasets gets a job, caused by D's push. That job moves S's gitlink to D's
new tip the way ``datalad update -r --how merge`` + save does (one commit,
``[DATALAD] Save updated subdatasets``), plans, reruns and publishes in one
push; its own finish then reaches S's users in turn (raw -> analysis -> paper).

A gitlink that is not an ancestor of D's tip was pinned on purpose: it is
reported and left alone. Each job carries the chain of repositories it came
through; none of them gets a job again, so datasets that use each other do not
loop. Of D's users, one that also uses another user of D waits for that one's
push, so every repository is pushed once per change.

Blocking: run these in a thread.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from rerund.core.gitrepo import WITHOUT_ANNEX_FILTER, GitRepo
from rerund.service.sources import Served, served_datasets, submodules_at
from rerund.service.store import Job, Notification, Store
from rerund.settings import Settings

SAVE_MESSAGE = "[DATALAD] Save updated subdatasets"
"""What ``datalad update -r --how merge`` commits (reference: nested datasets §3)."""


@dataclass(frozen=True)
class Moved:
    """The result of following subdatasets in one work tree."""

    head: str
    moved: tuple[str, ...]
    left_alone: tuple[str, ...]
    """Why a gitlink was not moved, one sentence each."""


def uses(entry: dict[str, str], served: Served) -> bool:
    """Whether a ``.gitmodules`` entry names ``served``: by datalad id, else by URL."""
    if entry.get("datalad-id") and served.dsid:
        return entry["datalad-id"] == served.dsid
    wanted = str(served.path).rstrip("/")
    return any(
        entry.get(key, "").removeprefix("file://").rstrip("/") == wanted
        for key in ("datalad-url", "url")
    )


def _users(served: list[Served]) -> dict[str, set[str]]:
    """Served name -> the served names it has as subdatasets (on its branch tip)."""
    found: dict[str, set[str]] = {}
    for s in served:
        if s.tip is None or not s.repo.follow_subdatasets:
            continue
        entries = submodules_at(GitRepo(s.path), s.tip).values()
        found[s.repo.name] = {
            d.repo.name
            for d in served
            if d.repo.name != s.repo.name and any(uses(e, d) for e in entries)
        }
    return found


def _downstream(start: str, subs: dict[str, set[str]]) -> set[str]:
    """Every served dataset that uses ``start``, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        for user, used in subs.items():
            if name in used and user not in seen:
                seen.add(user)
                todo.append(user)
    return seen


def dependents(settings: Settings, name: str, chain: tuple[str, ...]) -> list[Served]:
    """The served datasets to notify after ``name`` changed, having come through ``chain``."""
    served = served_datasets(settings)
    subs = _users(served)
    visited = {*chain, name}
    direct = {user for user, used in subs.items() if name in used and user not in visited}
    reach = {user: _downstream(user, subs) for user in direct}
    # A user of another user of `name` hears of it through that one (unless both use each other).
    first = {
        user
        for user in direct
        if not any(user in reach[other] and other not in reach[user] for other in direct)
    }
    return [s for s in served if s.repo.name in first]


def notify_dependents(
    settings: Settings, store: Store, job: Job, tip: str, now: float
) -> list[str]:
    """Queue a job for each served user of ``job``'s dataset; the names queued."""
    chain = (*filter(None, (job.chain or "").split(",")), job.repo)
    notes = [
        Notification(
            s.repo.name,
            s.repo.branch,
            s.tip or "",
            s.tip or "",
            "subdataset",
            force=True,
            cause=f"{job.repo}@{tip[:12]}",
            chain=",".join(chain),
        )
        for s in dependents(settings, job.repo, chain[:-1])
        if s.tip is not None
    ]
    results = store.record_events(notes, now=now) if notes else []
    return [n.repo for n, r in zip(notes, results, strict=True) if r.job_id is not None]


def follow_subdatasets(repo: GitRepo, tip: str, settings: Settings, own: str) -> Moved:
    """Move every gitlink of a served subdataset in ``repo`` (checked out at ``tip``) to
    that dataset's tip when it is an ancestor of it, and commit the move."""
    served = [s for s in served_datasets(settings) if s.repo.name != own and s.tip]
    moved: list[str] = []
    left: list[str] = []
    for path, entry in sorted(submodules_at(repo, tip).items()):
        source = next((s for s in served if uses(entry, s)), None)
        # The gitlink's commit is another repository's: name it without looking it up.
        out = repo.run("rev-parse", "--verify", "--quiet", f"{tip}:{path}", check=False)
        pinned = out.decode().strip() or None
        if source is None or source.tip is None or pinned is None or pinned == source.tip:
            continue
        origin = GitRepo(source.path)
        if not origin.succeeds("merge-base", "--is-ancestor", pinned, source.tip):
            left.append(
                f"{path} left alone: it pins {pinned[:8]}, which is not an ancestor of"
                f" {source.repo.name}'s {source.repo.branch} ({source.tip[:8]})"
            )
            continue
        repo.run("update-index", "--cacheinfo", f"160000,{source.tip},{path}")
        installed = repo.path / path
        if (installed / ".git").exists():  # an old checkout: installed again at the new commit
            shutil.rmtree(installed)
            installed.mkdir()
        moved.append(path)
    if not moved:
        return Moved(tip, (), tuple(left))
    repo.run(*WITHOUT_ANNEX_FILTER, "commit", "--quiet", "--no-verify", "-m", SAVE_MESSAGE)
    return Moved(repo.text("rev-parse", "HEAD"), tuple(moved), tuple(left))
