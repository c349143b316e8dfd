"""Lay step commits made on different bases into one linear history (issue 10).

Steps run side by side each commit on the base it ran on. What is published
must be what running them one after another gives, so each commit's change
(its tree against its base) is applied, in plan order, onto the commit made
so far, and committed with the step's own message (byte for byte) and
author. Independent steps change disjoint paths; a path that an earlier step
of the chain left differently from the step's base is a conflict and raises:
rerund never merges results.

Three git processes whatever the number of commits: one ``diff-tree
--stdin`` for every change, one ``cat-file --batch`` for the messages, one
``fast-import`` that writes the commits; no work tree or index is touched.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rerund.core.gitrepo import GitRepo
from rerund.errors import RerundError

_ABSENT = "000000"
_SCRATCH_REF = "refs/rerund/linearize"


class ConflictError(RerundError):
    """Two steps run side by side changed the same path."""


@dataclass(frozen=True)
class Made:
    """A step's commit and the commit it was made on."""

    base: str
    commit: str


@dataclass(frozen=True)
class _Change:
    path: str
    old: str
    """``"mode oid"`` at the step's base."""
    mode: str
    oid: str


def linearize(repo: GitRepo, parent: str, made: Sequence[Made]) -> list[str]:
    """Re-make ``made`` one after another on ``parent``; the new commits, in order.

    Commits already made on the chain so far (their base is its head) are kept.
    """
    remake = _to_remake(parent, made)
    if not remake:
        return [item.commit for item in made]
    changes = _changes(repo, made)  # the kept ones too: a later change may clash with them
    texts = repo.read_objects(made[i].commit for i in remake)
    stream: list[bytes] = []
    held: dict[str, str] = {}  # path -> "mode oid" as the chain so far leaves it
    tip: str = parent
    marks: dict[int, int] = {}
    made_count = 0
    ident = repo.text("var", "GIT_COMMITTER_IDENT")
    for position, item in enumerate(made):
        if position not in remake:
            tip = item.commit
            held.update((c.path, f"{c.mode} {c.oid}") for c in changes[item.commit])
            continue
        info = texts[item.commit]
        if info is None:
            raise RerundError(f"commit {item.commit} is missing")
        header, _, message = info.data.partition(b"\n\n")
        # A run-merge (the command committed by itself): its own commits are re-made
        # first, then the record merges them as it did.
        inner = _inner_commits(repo, item, header)
        inner_stream, inner_tip, made_count = _remake_inner(repo, inner, tip, ident, made_count)
        stream += inner_stream
        made_count += 1
        mark = made_count
        marks[position] = mark
        stream += [
            f"commit {_SCRATCH_REF}\nmark :{mark}\n".encode(),
            b"author " + _author(header) + b"\n",
            f"committer {ident}\n".encode(),
            b"data %d\n" % len(message) + message + b"\n",
            f"from {tip}\n".encode(),
            *([f"merge {inner_tip}\n".encode()] if inner else []),
        ]
        for change in changes[item.commit]:
            now = held.get(change.path)
            if now is not None and now not in (change.old, f"{change.mode} {change.oid}"):
                raise ConflictError(
                    f"steps run side by side both changed {change.path} ({item.commit[:8]});"
                    " run them one after another (-J 1)"
                )
            held[change.path] = f"{change.mode} {change.oid}"
            stream.append(_file_command(change))
        stream.append(b"\n")
        tip = f":{mark}"
    shas = _fast_import(repo, b"".join(stream), made_count)
    return [shas[marks[p]] if p in marks else item.commit for p, item in enumerate(made)]


def _author(header: bytes) -> bytes:
    return next(line for line in header.split(b"\n") if line.startswith(b"author ")).removeprefix(
        b"author "
    )


def _inner_commits(repo: GitRepo, item: Made, header: bytes) -> list[Made]:
    """A run-merge's own commits (its second parent's line since its base), oldest first."""
    parents = [line[7:].decode() for line in header.split(b"\n") if line.startswith(b"parent ")]
    if len(parents) != 2 or parents[0] != item.base:
        return []
    listed = repo.text("rev-list", "--reverse", "--parents", f"{item.base}..{parents[1]}")
    inner = []
    for line in listed.splitlines():
        commit, *its_parents = line.split()
        if len(its_parents) != 1:
            raise RerundError(f"rerund cannot lay out the merge {commit[:8]}; run with -J 1")
        inner.append(Made(base=its_parents[0], commit=commit))
    return inner


def _remake_inner(
    repo: GitRepo, inner: list[Made], tip: str, ident: str, count: int
) -> tuple[list[bytes], str, int]:
    """fast-import commands re-making ``inner`` on ``tip``: the stream, its tip, the count."""
    if not inner:
        return [], tip, count
    changes = _changes(repo, inner)
    texts = repo.read_objects(item.commit for item in inner)
    stream: list[bytes] = []
    for item in inner:
        info = texts[item.commit]
        if info is None:
            raise RerundError(f"commit {item.commit} is missing")
        header, _, message = info.data.partition(b"\n\n")
        count += 1
        stream += [
            f"commit {_SCRATCH_REF}\nmark :{count}\n".encode(),
            b"author " + _author(header) + b"\n",
            f"committer {ident}\n".encode(),
            b"data %d\n" % len(message) + message + b"\n",
            f"from {tip}\n".encode(),
            *(_file_command(change) for change in changes[item.commit]),
            b"\n",
        ]
        tip = f":{count}"
    return stream, tip, count


def _to_remake(parent: str, made: Sequence[Made]) -> set[int]:
    """Positions whose commit is not already on the chain (base = the head so far)."""
    remake: set[int] = set()
    tip = parent
    for position, item in enumerate(made):
        if item.base == tip and not remake:
            tip = item.commit
        else:
            remake.add(position)
    return remake


def _changes(repo: GitRepo, made: Sequence[Made]) -> dict[str, list[_Change]]:
    """Each commit's changes against its base, from one ``diff-tree --stdin``."""
    request = "".join(f"{item.commit} {item.base}\n" for item in made).encode()
    raw = repo.run("diff-tree", "--stdin", "-r", "-z", "--no-renames", "--raw", stdin=request)
    found: dict[str, list[_Change]] = {item.commit: [] for item in made}
    fields = raw.decode("utf-8", "surrogateescape").split("\0")
    current: list[_Change] | None = None
    position = 0
    while position < len(fields):
        field = fields[position]
        if field.startswith(":"):
            parts = field[1:].split()
            path = fields[position + 1]
            if current is not None:
                current.append(_Change(path, f"{parts[0]} {parts[2]}", parts[1], parts[3]))
            position += 2
            continue
        words = field.split()
        if words and len(words[0]) >= 40:  # "<commit> <base>" heads each commit's diff
            current = found.get(words[0])
        position += 1
    return found


def _file_command(change: _Change) -> bytes:
    path = change.path
    if path.startswith('"') or "\n" in path:
        raise RerundError(f"rerund cannot lay out a commit changing {path!r}; run with -J 1")
    if change.mode == _ABSENT:
        return f"D {path}\n".encode("utf-8", "surrogateescape")
    return f"M {change.mode} {change.oid} {path}\n".encode("utf-8", "surrogateescape")


def _fast_import(repo: GitRepo, stream: bytes, count: int) -> dict[int, str]:
    folder = Path(tempfile.mkdtemp(prefix="rerund-marks-", dir=repo.common_dir))
    marks = folder / "marks"
    try:
        repo.run(
            "fast-import", "--quiet", "--force", "--date-format=raw",
            f"--export-marks={marks}", stdin=stream,
        )  # fmt: skip
        shas = {
            int(mark.lstrip(":")): sha
            for mark, sha in (line.split() for line in marks.read_text().splitlines())
        }
    finally:
        repo.run("update-ref", "-d", _SCRATCH_REF, check=False)
        shutil.rmtree(folder, ignore_errors=True)
    if len(shas) != count:
        raise RerundError("git fast-import made fewer commits than asked")
    return shas
