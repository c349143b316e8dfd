"""A throw-away checkout of one commit, beside (never inside) the user's repository.

A local clone borrows the source's objects (``--shared``), so it costs a few
git calls rather than a copy. A linked worktree would be cheaper still, but in
an annex dataset it shares the annex with the user's repository: content a
verification adds would land in the user's object store. The clone keeps
every write — commits, annex objects, the location log — to itself, and is
deleted with its directory.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rerund.core.gitrepo import WITHOUT_ANNEX_FILTER, GitRepo

IDENTITY = {
    "GIT_AUTHOR_NAME": "rerund verify",
    "GIT_AUTHOR_EMAIL": "rerund@localhost",
    "GIT_COMMITTER_NAME": "rerund verify",
    "GIT_COMMITTER_EMAIL": "rerund@localhost",
}


@contextmanager
def scratch_checkout(
    source: GitRepo, commit: str, *, annex: bool, origin: str | None = None
) -> Iterator[GitRepo]:
    """A clean detached checkout of ``commit`` in a temporary clone of ``source``.

    ``origin``, when given, becomes the clone's remote (where annexed content is
    fetched from) instead of ``source`` — e.g. the lab's server for a daemon's mirror.
    """
    parent = Path(tempfile.mkdtemp(prefix="rerund-verify-"))
    try:
        yield _clone(source, commit, parent / "ds", annex=annex, origin=origin)
    finally:
        remove_tree(parent)


def _clone(source: GitRepo, commit: str, path: Path, *, annex: bool, origin: str | None) -> GitRepo:
    runner = GitRepo(path.parent, env=IDENTITY)
    runner.run("clone", "--quiet", "--shared", "--no-checkout", str(source.path), str(path))
    repo = GitRepo(path, env=IDENTITY)
    if origin is not None:
        repo.run("remote", "set-url", "origin", origin)
    if annex:
        repo.annex("init", "--quiet", "rerund verification scratch")
        # `init` turns hard links on in a --shared clone; copy content instead, so a
        # command writing through an input can never reach the source's object store.
        repo.run("config", "annex.hardlink", "false")
    # git-annex's post-checkout hook and smudge filter would fill in unlocked files'
    # content; the executor fetches what a step needs itself.
    repo.run(
        *WITHOUT_ANNEX_FILTER,
        "-c",
        "core.hooksPath=/dev/null",
        "checkout",
        "--quiet",
        "--detach",
        commit,
    )
    return repo


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
