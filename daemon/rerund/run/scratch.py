"""Throw-away checkouts of commits, beside (never inside) the user's repository.

A local clone borrows the source's objects (``--shared``), so it costs a few
git calls rather than a copy. A linked worktree would be cheaper still, but in
an annex dataset it shares the annex with the user's repository: content a
verification adds would land in the user's object store. The clone keeps
every write — commits, annex objects, the location log — to itself, and is
deleted with its directory.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rerund.core.gitrepo import WITHOUT_ANNEX_FILTER, GitRepo

IDENTITY = {
    "GIT_AUTHOR_NAME": "rerund verify",
    "GIT_AUTHOR_EMAIL": "rerund@localhost",
    "GIT_COMMITTER_NAME": "rerund verify",
    "GIT_COMMITTER_EMAIL": "rerund@localhost",
}


class ScratchClones:
    """Scratch clones of ``source``, one per worker thread, reused from record to record.

    Each :meth:`checkout` gives a clean detached checkout of a commit: the first
    in a thread clones (and, in an annex dataset, initialises git-annex, the
    dearest part); later ones check out with ``--force`` and remove every
    untracked file. ``origin``, when given, becomes the clones' remote (where
    annexed content is fetched from) — e.g. the lab's server for a daemon's mirror.
    """

    def __init__(self, source: GitRepo, *, annex: bool, origin: str | None = None) -> None:
        self._source = source
        self._annex = annex
        self._origin = origin
        self._local = threading.local()
        self._lock = threading.Lock()
        self._dirs: list[Path] = []

    def checkout(self, commit: str) -> GitRepo:
        repo: GitRepo | None = getattr(self._local, "repo", None)
        if repo is None:
            parent = Path(tempfile.mkdtemp(prefix="rerund-verify-"))
            with self._lock:
                self._dirs.append(parent)
            repo = _clone(self._source, parent / "ds", annex=self._annex, origin=self._origin)
            self._local.repo = repo
        _check_out(repo, commit)
        return repo

    def close(self) -> None:
        with self._lock:
            dirs, self._dirs = self._dirs, []
        for path in dirs:
            remove_tree(path)

    def __enter__(self) -> ScratchClones:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _clone(source: GitRepo, path: Path, *, annex: bool, origin: str | None) -> GitRepo:
    runner = GitRepo(path.parent, env=IDENTITY)
    source_path = str(source.path.resolve())
    runner.run("clone", "--quiet", "--shared", "--no-checkout", source_path, str(path))
    repo = GitRepo(path, env=IDENTITY)
    if origin is not None:
        repo.run("remote", "set-url", "origin", origin)
    elif annex:
        _borrow_remotes(source, repo)
    if annex:
        repo.annex("init", "--quiet", "rerund verification scratch")
        # `init` turns hard links on in a --shared clone; copy content instead, so a
        # command writing through an input can never reach the source's object store.
        repo.run("config", "annex.hardlink", "false")
    return repo


def _borrow_remotes(source: GitRepo, repo: GitRepo) -> None:
    """The source's remotes, as ``source-<name>``: content the source lacks may be there.

    Their annex UUIDs come along, so git-annex knows what each holds without asking.
    """
    out = source.run("config", "-z", "--get-regexp", r"^remote\..*\.(url|annex-uuid)$", check=False)
    settings: dict[str, dict[str, str]] = {}
    for entry in out.decode("utf-8", "replace").split("\0"):
        key, _, value = entry.partition("\n")
        name, _, field = key.removeprefix("remote.").rpartition(".")
        if name:
            settings.setdefault(name, {})[field] = value
    for name, values in settings.items():
        url = values.get("url")
        if not url:
            continue
        if "://" not in url and not re.match(r"^[^/]+@?[^/]*:", url):
            url = str((source.path / url).resolve())  # a path, maybe relative to the source
        repo.run("remote", "add", f"source-{name}", url)
        if "annex-uuid" in values:
            repo.run("config", f"remote.source-{name}.annex-uuid", values["annex-uuid"])


def _check_out(repo: GitRepo, commit: str) -> None:
    """``commit``, clean: whatever an earlier record left behind is gone."""
    # git-annex's post-checkout hook and smudge filter would fill in unlocked files'
    # content; the executor fetches what a step needs itself.
    repo.run(
        *WITHOUT_ANNEX_FILTER,
        "-c",
        "core.hooksPath=/dev/null",
        "checkout",
        "--quiet",
        "--force",
        "--detach",
        commit,
    )
    repo.run("clean", "-ffdxq")


def remove_tree(path: Path) -> None:
    """``rm -rf``, including git-annex's write-protected object directories."""

    def make_writable(
        function: Callable[..., Any], target: str, _exc: object
    ) -> None:  # pragma: no cover - only on protected entries
        os.chmod(os.path.dirname(target), stat.S_IRWXU)  # noqa: PTH101, PTH120
        if not os.path.islink(target) and os.path.isdir(target):  # noqa: PTH112, PTH114
            os.chmod(target, stat.S_IRWXU)  # noqa: PTH101
        function(target)

    if path.exists():
        shutil.rmtree(path, onerror=make_writable)
