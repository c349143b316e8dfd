"""Bare mirrors of served repositories, for reading history without a work clone.

The plan endpoint, verification and the dashboard's graph read the branch's
history and records in one bare mirror per repository in the state directory,
fetched before each use. One lock per mirror keeps its fetches and its history
index to one thread at a time (concurrent fetches into one bare repository
corrupt it); a mirror git cannot use (a crash mid-clone, a corrupt object) is
deleted and cloned again. Blocking: run it in a thread.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from rerund.core.gitrepo import GitRepo
from rerund.core.plan import Plan
from rerund.errors import GitError
from rerund.service.jobs import compute_plan
from rerund.service.sources import served_locator, served_sources
from rerund.settings import RepoSettings, Settings

log = structlog.get_logger("rerund.service.mirrors")

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def mirror(state_dir: Path, repo: RepoSettings) -> Iterator[GitRepo]:
    """The up-to-date mirror of ``repo``, held exclusively while in use."""
    path = state_dir / "mirrors" / f"{repo.slug}.git"
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(path, threading.Lock())
    with lock:
        try:
            git = _update(path, repo)
        except GitError as exc:
            log.warning("mirror unusable; rebuilding it", repo=repo.name, error=str(exc))
            shutil.rmtree(path, ignore_errors=True)
            git = _update(path, repo)
        yield git


def mirror_plan(state_dir: Path, repo: RepoSettings, served: Settings | None = None) -> Plan:
    """The current stale plan, computed in the mirror so no job's work tree is touched.

    Subdatasets' objects are read from the served repositories of ``served``.
    """
    sources = served_sources(served) if served is not None else {}
    with mirror(state_dir, repo) as git:
        git.run("symbolic-ref", "HEAD", f"refs/heads/{repo.branch}")
        tip = git.text("rev-parse", "HEAD")
        plan, _ = compute_plan(git, repo.branch, tip, repo, served_locator(git, tip, sources))
        return plan


def _update(path: Path, repo: RepoSettings) -> GitRepo:
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        GitRepo(path.parent).run("clone", "--quiet", "--bare", repo.remote, str(path))
    git = GitRepo(path)
    # rerund's notes (identical reproductions) explain differences away, as in planning.
    refspecs = [f"+refs/heads/{repo.branch}:refs/heads/{repo.branch}", "+refs/notes/*:refs/notes/*"]
    if git.run("ls-remote", "origin", "refs/heads/git-annex").strip():
        refspecs.append("+refs/heads/git-annex:refs/heads/git-annex")
    git.run("fetch", "--quiet", "origin", *refspecs)
    annexed = git.resolve("refs/heads/git-annex") is not None
    if annexed and not git.run("config", "--get", "annex.uuid", check=False).strip():
        git.annex("init", "--quiet", f"rerund mirror of {repo.name}")
    return git
