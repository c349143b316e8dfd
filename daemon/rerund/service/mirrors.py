"""Bare mirrors of served repositories, for reading history without a work clone.

Verification and the dashboard's graph read the branch's history and records
in a bare mirror kept in the state directory, fetched before each use. One
lock per mirror keeps its fetches and its history index to one thread at a time.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rerund.core.gitrepo import GitRepo
from rerund.settings import RepoSettings

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def mirror(state_dir: Path, repo: RepoSettings) -> Iterator[GitRepo]:
    """The up-to-date mirror of ``repo``, held exclusively while in use."""
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", repo.name)
    path = state_dir / "verify" / f"{slug}.git"
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(path, threading.Lock())
    with lock:
        yield _update(path, repo)


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
