"""Lay step commits made on different bases into one linear history (issue 10).

Steps run side by side each commit on the base it ran on. What is published
must be what running them one after another gives, so each commit's change
(its tree against its base) is applied, in plan order, onto the commit made
so far — in a private index, never touching a work tree — and committed with
the step's own message and author. Independent steps change disjoint paths;
a path that the chain so far holds differently from the step's base is a
conflict and raises: rerund never merges results.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rerund.core.gitrepo import NULL_SHA, GitRepo
from rerund.errors import RerundError


class ConflictError(RerundError):
    """Two steps run side by side changed the same path."""


@dataclass(frozen=True)
class Made:
    """A step's commit and the commit it was made on."""

    base: str
    commit: str


def linearize(repo: GitRepo, parent: str, made: Sequence[Made]) -> list[str]:
    """Re-make ``made`` one after another on ``parent``; the new commits, in order.

    A commit already made on the chain so far (its base is the chain's head)
    is kept as it is.
    """
    index_file = Path(tempfile.mkdtemp(prefix="rerund-index-", dir=repo.common_dir)) / "index"
    env = {"GIT_INDEX_FILE": str(index_file)}
    out: list[str] = []
    try:
        loaded = None
        for item in made:
            if item.base == parent:
                out.append(item.commit)
                parent, loaded = item.commit, None
                continue
            if loaded != parent:
                repo.run("read-tree", parent, env=env)
            parent = _apply(repo, parent, item, env)
            loaded = parent
            out.append(parent)
    finally:
        shutil.rmtree(index_file.parent, ignore_errors=True)
    return out


def _apply(repo: GitRepo, parent: str, item: Made, env: dict[str, str]) -> str:
    raw = repo.run("diff-tree", "-r", "-z", "--no-renames", "--raw", item.base, item.commit)
    fields = raw.decode("utf-8", "surrogateescape").split("\0")
    changes: list[tuple[str, str, str, str]] = []  # (path, old "mode oid", new mode, new oid)
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        parts = meta.lstrip(":").split()
        if len(parts) >= 5:
            changes.append((path, f"{parts[0]} {parts[2]}", parts[1], parts[3]))
    if changes:
        now = _entries(repo, parent, [path for path, *_ in changes])
        for path, old, mode, oid in changes:
            held = now.get(path, f"000000 {NULL_SHA}")
            if held not in (old, f"{mode} {oid}"):
                raise ConflictError(
                    f"steps run side by side both changed {path} ({item.commit[:8]});"
                    " run them one after another (-J 1)"
                )
        lines = [
            f"{mode} {oid}\t{path}" if mode != "000000" else f"0 {NULL_SHA}\t{path}"
            for path, _, mode, oid in changes
        ]
        repo.run(
            "update-index", "-z", "--index-info", stdin=("\0".join(lines) + "\0").encode(), env=env
        )
    tree = (
        repo.run("write-tree", env=env).decode().strip()
        if changes
        else repo.text("rev-parse", f"{parent}^{{tree}}")
    )
    return _commit_like(repo, item.commit, tree, parent)


def _entries(repo: GitRepo, commit: str, paths: list[str]) -> dict[str, str]:
    out = repo.run(
        "--literal-pathspecs", "ls-tree", "-r", "-z", "--full-tree", commit, "--", *paths
    )
    found: dict[str, str] = {}
    for entry in out.decode("utf-8", "surrogateescape").split("\0"):
        meta, _, path = entry.partition("\t")
        parts = meta.split()
        if len(parts) == 3:
            found[path] = f"{parts[0]} {parts[2]}"
    return found


def _commit_like(repo: GitRepo, original: str, tree: str, parent: str) -> str:
    """A commit of ``tree`` on ``parent`` with ``original``'s message (byte for byte) and author."""
    header, _, message = repo.run("cat-file", "commit", original).partition(b"\n\n")
    env: dict[str, str] = {}
    for line in header.decode("utf-8", "surrogateescape").splitlines():
        if line.startswith("author "):
            who, _, when = line[len("author ") :].rpartition("> ")
            name, _, email = who.partition(" <")
            env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": when}
    made = repo.run("commit-tree", tree, "-p", parent, "-F", "-", stdin=message, env=env)
    return made.decode().strip()
