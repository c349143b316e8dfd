"""Read files inside subdatasets at the commits their gitlinks name (SPEC §2, nested datasets).

A superdataset's history knows a subdataset only as a gitlink: a tree entry
(mode 160000) naming a commit of another repository. Whether a record's input
``inputs/raw/survey.csv`` changed is decided inside that repository, between
the commit the gitlink named at the record's commit and the one it names now.
Those commits are read from the subdataset's object store (an installed
subdataset's git directory, or whatever a :data:`Locator` maps the path to)
with one ``git diff-tree`` per pair of commits; nothing is checked out.
Identities follow annex keys, as in :mod:`rerund.core.history`.

When the objects cannot be read, the answer is :class:`Unavailable`, never
"no change": the planner reports such records as undecided.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rerund.core.gitrepo import NULL_SHA, GitRepo
from rerund.core.history import pointer_content_id
from rerund.errors import GitError

_GITLINK = "160000"
_SYMLINK = "120000"
_ANNEX_TARGET = re.compile(rb"annex/objects/(?:[^/]+/)*([^/]+)$")

Locator = Callable[[str], GitRepo | None]
"""Maps a subdataset's path (relative to the top dataset) to a repository holding its objects."""


@dataclass(frozen=True)
class FileChange:
    """A file (path relative to the top dataset) whose identity differs between two commits."""

    path: str
    old: str | None
    """Content id in the older commit; ``None`` when the file was not there."""
    new: str | None


@dataclass(frozen=True)
class Unavailable:
    """The objects of ``subdataset`` at ``commit`` cannot be read here."""

    subdataset: str
    commit: str

    def describe(self) -> str:
        return f"subdataset {self.subdataset} at {self.commit[:8]} is not available"


@dataclass(frozen=True)
class _Entry:
    path: str  # relative to the subdataset
    old_mode: str | None
    old: str | None
    new_mode: str | None
    new: str | None


def installed_locator(top: GitRepo) -> Locator:
    """Subdatasets installed in ``top``'s work tree, or absorbed into its ``modules``."""

    def locate(path: str) -> GitRepo | None:
        checkout = top.path / path
        if (checkout / ".git").exists():
            return GitRepo(checkout)
        absorbed = top.common_dir / "modules" / path
        if (absorbed / "HEAD").is_file():
            return GitRepo(absorbed)
        return None

    return locate


class SubdatasetReader:
    """Compares subdataset commits for one planning pass, remembering what it read."""

    def __init__(self, locate: Locator) -> None:
        self._locate = locate
        self._repos: dict[str, GitRepo | None] = {}
        self._diffs: dict[tuple[str, str | None, str | None], list[_Entry] | Unavailable] = {}

    def changes(
        self, path: str, old: str | None, new: str | None, wanted: Callable[[str], bool]
    ) -> list[FileChange] | Unavailable:
        """Files below the subdataset ``path`` that differ between its commits ``old`` and ``new``.

        ``None`` stands for "no subdataset here". Nested subdatasets are
        followed only where ``wanted`` (a top-relative folder) says something
        below them matters, so an uninstalled subdataset nobody reads never
        makes the answer unavailable.
        """
        if old == new:
            return []
        entries = self._diff(path, old, new)
        if isinstance(entries, Unavailable):
            return entries
        found: list[FileChange] = []
        for entry in entries:
            full = f"{path}/{entry.path}"
            inner_old = entry.old if entry.old_mode == _GITLINK else None
            inner_new = entry.new if entry.new_mode == _GITLINK else None
            if (inner_old or inner_new) and wanted(full):
                nested = self.changes(full, inner_old, inner_new, wanted)
                if isinstance(nested, Unavailable):
                    return nested
                found.extend(nested)
            file_old = entry.old if entry.old_mode not in (None, _GITLINK) else None
            file_new = entry.new if entry.new_mode not in (None, _GITLINK) else None
            if file_old != file_new:
                found.append(FileChange(full, file_old, file_new))
        return found

    def identity(self, path: str, commit: str, inner: str) -> str | Unavailable | None:
        """Content id of ``inner`` (relative to the subdataset ``path``) at its ``commit``."""
        repo = self._repo(path)
        if repo is None:
            return Unavailable(path, commit)
        heads = [inner]
        while "/" in heads[-1]:
            heads.append(posixpath.dirname(heads[-1]))
        out = repo.run("ls-tree", "-z", commit, "--", *heads, check=False)
        if not out and repo.resolve(commit) is None:
            return Unavailable(path, commit)
        listed: dict[str, tuple[str, str]] = {}
        for item in out.split(b"\0"):
            if item:
                meta, _, name = item.decode("utf-8", "replace").partition("\t")
                mode, _, oid = meta.split(" ")
                listed[name] = (mode, oid)
        if inner in listed:
            mode, oid = listed[inner]
            return self._content_ids(repo, [(mode, oid)]).get(oid, oid)
        for head in heads[1:]:
            if listed.get(head, ("", ""))[0] == _GITLINK:
                rest = inner[len(head) + 1 :]
                return self.identity(f"{path}/{head}", listed[head][1], rest)
        return None

    # -- reading one repository ----------------------------------------------------------

    def _repo(self, path: str) -> GitRepo | None:
        if path not in self._repos:
            self._repos[path] = self._locate(path)
        return self._repos[path]

    def _diff(self, path: str, old: str | None, new: str | None) -> list[_Entry] | Unavailable:
        key = (path, old, new)
        if key not in self._diffs:
            self._diffs[key] = self._read_diff(path, old, new)
        return self._diffs[key]

    def _read_diff(self, path: str, old: str | None, new: str | None) -> list[_Entry] | Unavailable:
        repo = self._repo(path)
        if repo is None:
            return Unavailable(path, new or old or "")
        if old is not None and new is not None:
            args = ["diff-tree", "-r", "-z", "--no-renames", "--no-abbrev", old, new]
        else:
            args = ["ls-tree", "-r", "-z", "--full-tree", new or old or ""]
        try:
            out = repo.run(*args)
        except GitError:
            # Most often a commit that was never fetched here; ask only when it failed.
            for commit in (new, old):
                if commit is not None and repo.resolve(commit) is None:
                    return Unavailable(path, commit)
            raise
        if old is not None and new is not None:
            entries = _parse_diff_tree(out)
        else:
            side = _parse_ls_tree(out)
            entries = [
                _Entry(name, None, None, mode, oid)
                if old is None
                else _Entry(name, mode, oid, None, None)
                for name, mode, oid in side
            ]
        links = [
            (mode, oid)
            for entry in entries
            for mode, oid in ((entry.old_mode, entry.old), (entry.new_mode, entry.new))
            if mode == _SYMLINK and oid is not None
        ]
        ids = self._content_ids(repo, links)
        return [
            _Entry(
                e.path,
                e.old_mode,
                ids.get(e.old, e.old) if e.old else None,
                e.new_mode,
                ids.get(e.new, e.new) if e.new else None,
            )
            for e in entries
        ]

    @staticmethod
    def _content_ids(repo: GitRepo, entries: list[tuple[str, str]]) -> dict[str, str]:
        """Annex symlink blobs mapped to the id their unlocked pointer file would have."""
        links = {oid for mode, oid in entries if mode == _SYMLINK}
        ids: dict[str, str] = {}
        for oid, info in repo.read_objects(links).items():
            match = _ANNEX_TARGET.search(info.data) if info is not None else None
            if match:
                ids[oid] = pointer_content_id(match.group(1).decode("utf-8", "replace"))
        return ids


def subdataset_name(path: str) -> str:
    """How a reason names a subdataset: the last component of its path."""
    return Path(path).name or path


def _parse_diff_tree(raw: bytes) -> list[_Entry]:
    fields = raw.split(b"\0")
    entries: list[_Entry] = []
    for i in range(0, len(fields) - 1, 2):
        meta = fields[i].decode().lstrip(":").split(" ")
        if len(meta) < 5:
            continue
        old_mode, new_mode, old, new = meta[:4]
        entries.append(
            _Entry(
                fields[i + 1].decode("utf-8", "replace"),
                None if old == NULL_SHA else old_mode,
                None if old == NULL_SHA else old,
                None if new == NULL_SHA else new_mode,
                None if new == NULL_SHA else new,
            )
        )
    return entries


def _parse_ls_tree(raw: bytes) -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    for item in raw.split(b"\0"):
        if item:
            meta, _, name = item.decode("utf-8", "replace").partition("\t")
            mode, _, oid = meta.split(" ")
            found.append((name, mode, oid))
    return found
