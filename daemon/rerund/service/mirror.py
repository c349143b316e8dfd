"""The plan endpoint's bare mirror of a repository: plans without touching a work tree.

The caller serialises access per mirror (one writer: concurrent fetches into one
bare repository corrupt it); a mirror git cannot use is deleted and cloned again.
Blocking: run it in a thread.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import structlog

from rerund.core.gitrepo import GitRepo
from rerund.core.plan import Plan
from rerund.errors import GitError
from rerund.service.jobs import compute_plan
from rerund.service.sources import served_locator, served_sources
from rerund.settings import RepoSettings, Settings

log = structlog.get_logger("rerund.service.mirror")


def mirror_plan(state_dir: Path, repo: RepoSettings, served: Settings | None = None) -> Plan:
    """The current stale plan, computed in a bare mirror so no job's work tree is touched.

    A mirror that git cannot use (a crash mid-clone, a corrupt object) is rebuilt once.
    Subdatasets' objects are read from the served repositories of ``served``.
    """
    sources = served_sources(served) if served is not None else {}
    mirror = state_dir / "mirrors" / (repo.slug + ".git")
    try:
        return _plan_in_mirror(mirror, repo, sources)
    except GitError as exc:
        log.warning("mirror unusable; rebuilding it", repo=repo.name, error=str(exc))
        shutil.rmtree(mirror, ignore_errors=True)
        return _plan_in_mirror(mirror, repo, sources)


def _plan_in_mirror(mirror: Path, repo: RepoSettings, sources: dict[str, str]) -> Plan:
    if not mirror.is_dir():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        GitRepo(mirror.parent).run("clone", "--quiet", "--bare", repo.remote, str(mirror))
    git = GitRepo(mirror)
    git.run(
        "fetch",
        "--quiet",
        "origin",
        f"+refs/heads/{repo.branch}:refs/heads/{repo.branch}",
        "+refs/notes/*:refs/notes/*",
    )
    git.run("symbolic-ref", "HEAD", f"refs/heads/{repo.branch}")
    tip = git.text("rev-parse", "HEAD")
    plan, _ = compute_plan(git, repo.branch, tip, repo, served_locator(git, tip, sources))
    return plan
