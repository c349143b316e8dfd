"""Keep every path rerund touches on a record's behalf inside the work tree.

A run record is data: anyone who can push can write one. Before a step clears,
unlocks, globs, gets or saves anything, each path its record leads to is
resolved as the kernel will resolve it — component by component, following
every symlink on the way (committed ones included) — and must land inside the
work tree and outside its ``.git``. A lexical check (``normpath``) is not
enough: ``lnk/file`` with a committed ``lnk -> /elsewhere`` is lexically inside.

Annexed files are recognised the same way: a symlink is annexed only when its
target is a well-formed annex key that resolves into this repository's own
``.git/annex/objects``; a target whose text merely contains ``/annex/objects/``
is an ordinary symlink and is never followed to copy content.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path, PurePosixPath

from rerund.errors import RecordError
from rerund.run.subdatasets import holding_dataset

_MAX_LINK_HOPS = 40  # the kernel's own limit (MAXSYMLINKS)

# A git-annex key: BACKEND[-sSIZE][-mMTIME][-Sn][-Cn]--NAME, NAME without "/".
KEY = r"[A-Za-z0-9_]+(?:-[a-zA-Z][0-9]+)*--[^/\0]+"
# What `git annex add` writes: (../)*.git/annex/objects/<hash>/<hash>/KEY/KEY.
_LINK_TARGET = re.compile(
    r"(?:\.\./)*\.git/annex/objects/(?:[^/.][^/]*/){1,2}(" + KEY + r")/(" + KEY + r")"
)
_POINTER = re.compile(rb"/annex/objects/(" + KEY.encode() + rb")\n?")


class Confinement:
    """The work tree at ``root`` as the only place a record may lead rerund."""

    def __init__(self, root: Path, commit: str, git_dir: Path | None = None) -> None:
        self.root = root.resolve()
        self.commit = commit
        dirs = [self.root / ".git", *([git_dir] if git_dir is not None else [])]
        self._forbidden = list(dict.fromkeys(path.resolve() for path in dirs))
        self._annex_objects = [(path / "annex" / "objects").resolve() for path in self._forbidden]

    def check(
        self,
        path: str,
        what: str,
        *,
        base: Path | None = None,
        leaf: bool = True,
        shown: str | None = None,
    ) -> Path:
        """The real location of ``path`` (relative to ``base``, default the root).

        ``base`` must be a real directory, such as an earlier ``check`` returned.
        ``leaf=False`` leaves a symlink in the last component unfollowed: rerund
        only removes such a path or reads the link itself, never its target.
        Raises :class:`RecordError` naming ``shown`` (default ``path``) when the
        path leads outside.
        """
        try:
            real = _resolve(PurePosixPath(base or self.root), path, leaf=leaf)
        except SymlinkLoopError as exc:
            raise RecordError(
                self.commit, f"names {what} {shown or path!r}, which {exc}; refused"
            ) from exc
        if not self.contains(real):
            raise RecordError(
                self.commit,
                f"names {what} {shown or path!r}, which resolves to {real}, outside the"
                " dataset's work tree (or into .git); refused before anything ran",
            )
        return real

    def contains(self, real: Path) -> bool:
        """Whether the resolved ``real`` lies in the work tree and not in any ``.git``.

        A subdataset's ``.git`` is as much out of bounds as the dataset's own.
        """
        if not _within(real, self.root) or ".git" in real.relative_to(self.root).parts:
            return False
        return not any(_within(real, forbidden) for forbidden in self._forbidden)

    def inside(self, path: str, *, base: Path | None = None, leaf: bool = True) -> bool:
        """Whether ``path`` resolves inside (for words that merely might be paths)."""
        try:
            return self.contains(_resolve(PurePosixPath(base or self.root), path, leaf=leaf))
        except SymlinkLoopError:
            return False

    def is_annexed(self, path: Path) -> bool:
        """A locked annex link into our own object store, or an unlocked pointer file."""
        try:
            if path.is_symlink():
                return self.annex_object(path) is not None
            if not path.is_file() or path.stat().st_size > 1024:
                return False
            with path.open("rb") as handle:
                return _POINTER.fullmatch(handle.read(1025)) is not None
        except OSError:
            return False

    def annex_object(self, link: Path) -> Path | None:
        """Where the annex link ``link`` points in ``.git/annex/objects`` (present or not)."""
        target = str(link.readlink())
        match = _LINK_TARGET.fullmatch(target)
        if match is None or match.group(1) != match.group(2):
            return None
        try:
            real = _resolve(PurePosixPath(link.parent.resolve()), target, leaf=True)
        except SymlinkLoopError:
            return None
        # The annex of the dataset holding the link: ours, or an installed subdataset's.
        holder = holding_dataset(self.root, link)
        own = [(holder / ".git" / "annex" / "objects").resolve(), *self._annex_objects]
        if not any(_within(real, objects) for objects in own):
            return None
        return real


class SymlinkLoopError(ValueError):
    """Too many symlinks to follow: the kernel would answer ELOOP."""


def resolve(base: Path, path: str, *, leaf: bool = True) -> Path:
    """Resolve ``path`` against ``base`` as the kernel would, without requiring it to exist.

    Components that do not exist (or cannot be looked up, e.g. a name too long)
    are taken literally, and a later ".." removes them again. Raises
    :class:`SymlinkLoopError` after as many links as the kernel would follow.
    """
    return _resolve(PurePosixPath(base.resolve()), path, leaf=leaf)


def _resolve(real_base: PurePosixPath, path: str, *, leaf: bool) -> Path:
    """:func:`resolve` from a base that is already real (no links in it)."""
    current = PurePosixPath("/") if path.startswith("/") else real_base
    pending = _components(path)
    hops = 0
    while pending:
        name = pending.pop()
        if name == "..":
            current = current.parent
            continue
        candidate = current / name
        if not pending and not leaf:
            return Path(candidate)
        try:
            mode = Path(candidate).lstat().st_mode
        except OSError:
            current = candidate
            continue
        if not stat.S_ISLNK(mode):
            current = candidate
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS:
            raise SymlinkLoopError(f"leads into a symlink loop at {candidate}")
        target = str(Path(candidate).readlink())
        if target.startswith("/"):
            current = PurePosixPath("/")
        pending.extend(_components(target))
    return Path(current)


def _components(path: str) -> list[str]:
    """The names of ``path``, last first (a stack)."""
    return [name for name in reversed(path.split("/")) if name not in ("", ".")]


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
