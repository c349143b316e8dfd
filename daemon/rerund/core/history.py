"""Walk a branch's first-parent history into a persistent, incremental index.

One ``git log`` process reads every commit's message and first-parent diff;
the result lands in a small SQLite file inside the repository's git directory,
so after new commits only those are read. The index holds

* ``commits``: the first-parent chain, numbered from the root (``seq``);
* ``changes``: every path each commit changed, with the content id it left;
* ``records``: every run record, already parsed (sidecars resolved).

A *content id* is the blob id, except for annexed files: a locked file (a
symlink) and an unlocked one (a pointer file) of the same annex key get the same
id, so staleness follows annex keys as the SPEC asks, and no content is hashed.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

from rerund.core.dsconfig import DatasetConfig
from rerund.core.gitrepo import NULL_SHA, GitRepo
from rerund.core.records import RunRecord, decode_sidecar, parse_message, record_from_json
from rerund.errors import GitError, RecordError, RevisionError

SCHEMA_VERSION = "4"
_SYMLINK_MODE = b"120000"
_ANNEX_TARGET = re.compile(rb"annex/objects/(?:[^/]+/)*([^/]+)$")

_RECORD_COLUMNS = "seq, sha, parents, summary, record, error, sidecar, changed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commits (seq INTEGER PRIMARY KEY, sha TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS changes (
    path TEXT NOT NULL, seq INTEGER NOT NULL, content TEXT NOT NULL,
    PRIMARY KEY (path, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS changes_by_seq ON changes (seq);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, sha TEXT NOT NULL, parents TEXT NOT NULL,
    summary TEXT NOT NULL, record TEXT, error TEXT, sidecar TEXT,
    changed TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class IndexedRecord:
    """A run-record commit on the first-parent chain, as the planner sees it."""

    seq: int
    commit: str
    parents: tuple[str, ...]
    summary: str
    record: RunRecord | None
    error: str | None
    sidecar: str | None
    changed: tuple[str, ...]
    """Paths the commit added or modified relative to its first parent."""


@dataclass(frozen=True)
class IndexedCommit:
    """A commit as it enters the index: what it changed and its record, if any."""

    seq: int
    commit: str
    changes: tuple[tuple[str, str | None], ...]
    """(path, content id) for every path changed; ``None`` for a deletion."""
    record: IndexedRecord | None
    gitlinks: frozenset[str] = frozenset()
    """The changed paths that are gitlinks (subdatasets) after this commit."""


class IndexListener(Protocol):
    """Something that keeps derived tables in step with the index, in its transactions."""

    def reset(self) -> None: ...

    def commit_added(self, commit: IndexedCommit) -> None: ...


@dataclass
class _ParsedCommit:
    sha: str
    parents: tuple[str, ...]
    message: str
    entries: list[tuple[bytes, str, str]]  # (new mode, new oid, path)


def pointer_content_id(key: str) -> str:
    """The blob id of the pointer file git-annex writes for an unlocked ``key``."""
    data = f"/annex/objects/{key}\n".encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class HistoryIndex:
    """The persistent index of one branch of one repository."""

    def __init__(self, repo: GitRepo, branch: str, db: sqlite3.Connection) -> None:
        self.repo = repo
        self.branch = branch
        self._db = db
        self.listener: IndexListener | None = None

    @classmethod
    def open(cls, repo: GitRepo, branch: str, *, persist: bool = True) -> HistoryIndex:
        """Open (creating if needed) the index of ``branch`` in ``repo``.

        Falls back to an in-memory index when the git directory is read-only.
        """
        db: sqlite3.Connection | None = None
        if persist:
            folder = repo.common_dir / "rerund"
            name = re.sub(r"[^A-Za-z0-9._-]", "_", branch) or "HEAD"
            try:
                folder.mkdir(exist_ok=True)
                db = sqlite3.connect(folder / f"index-{name}.sqlite", isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
            except (OSError, sqlite3.OperationalError):
                db = None
        if db is None:
            db = sqlite3.connect(":memory:", isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        index = cls(repo, branch, db)
        if index._meta("schema") != SCHEMA_VERSION:
            index._reset()
        return index

    def close(self) -> None:
        self._db.close()

    @property
    def db(self) -> sqlite3.Connection:
        """The index's SQLite connection, for companion tables kept in the same file."""
        return self._db

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction on the index's file, for companion tables."""
        return _transaction(self._db)

    # -- keeping up with the branch -------------------------------------------------

    @property
    def tip(self) -> str | None:
        return self._meta("tip")

    @property
    def tip_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM commits").fetchone()
        return int(row[0]) if row[0] is not None else -1

    def update(self, tip: str) -> int:
        """Bring the index up to ``tip``; returns how many commits were read."""
        stored = self.tip
        if stored == tip:
            return 0
        if stored is not None:
            commits = self._log(f"{stored}..{tip}")
            if commits and commits[0].parents[:1] == (stored,):
                self._append(commits, tip)
                return len(commits)
        # First use, or the branch was rewritten: read the whole chain again.
        commits = self._log(tip)
        self._reset()
        self._append(commits, tip)
        return len(commits)

    def _log(self, revision: str) -> list[_ParsedCommit]:
        raw = self.repo.run(
            "log",
            "--first-parent",
            "--diff-merges=first-parent",
            "--root",
            "--raw",
            "--no-renames",
            "--no-abbrev",
            "--no-ext-diff",
            "--no-color",
            "-z",
            "--reverse",
            "--format=%x1e%H %P%x1f%B%x1f",
            revision,
            "--",
        )
        return list(_parse_log(raw))

    def _append(self, commits: Sequence[_ParsedCommit], tip: str) -> None:
        content_ids = self._annex_content_ids(commits)
        dsid = self._dataset_id(tip)
        seq = self.tip_seq
        with _transaction(self._db):
            if dsid is not None:
                self._set_meta("dsid", dsid)
            for commit in commits:
                seq += 1
                self._db.execute("INSERT INTO commits VALUES (?, ?)", (seq, commit.sha))
                changed: list[str] = []
                changes: list[tuple[str, str | None]] = []
                for mode, oid, path in commit.entries:
                    content = None if oid == NULL_SHA else content_ids.get(oid, oid)
                    changes.append((path, content))
                    if content is not None and mode != b"160000":
                        changed.append(path)
                self._db.executemany(
                    "INSERT OR REPLACE INTO changes VALUES (?, ?, ?)",
                    [(path, seq, content or "") for path, content in changes],
                )
                record = self._index_record(seq, commit, changed)
                if self.listener is not None:
                    gitlinks = frozenset(p for mode, _, p in commit.entries if mode == b"160000")
                    self.listener.commit_added(
                        IndexedCommit(seq, commit.sha, tuple(changes), record, gitlinks)
                    )
            self._set_meta("tip", tip)

    def _index_record(
        self, seq: int, commit: _ParsedCommit, changed: list[str]
    ) -> IndexedRecord | None:
        record_json: str | None = None
        error: str | None = None
        sidecar: str | None = None
        try:
            message = parse_message(commit.message, commit.sha)
        except RecordError as exc:
            message, error = None, str(exc)
        if message is None and error is None:
            return None
        summary = ""
        record: RunRecord | None = None
        if message is not None:
            summary = message.summary
            record = message.record
            try:
                if message.sidecar_id is not None:
                    sidecar = f"{self._record_dir}/{message.sidecar_id}"
                    record = read_sidecar(self.repo, commit.sha, sidecar)
            except RecordError as exc:
                error = str(exc)
            if record is not None and error is None:
                record_json = json.dumps(dict(record.fields), ensure_ascii=False)
        indexed = IndexedRecord(
            seq=seq,
            commit=commit.sha,
            parents=commit.parents,
            summary=summary,
            record=record if error is None else None,
            error=error,
            sidecar=sidecar,
            changed=tuple(changed),
        )
        self._db.execute(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                commit.sha,
                " ".join(commit.parents),
                summary,
                record_json,
                error,
                sidecar,
                json.dumps(changed, ensure_ascii=False),
            ),
        )
        return indexed

    @cached_property
    def _record_dir(self) -> str:
        # DataLad looks sidecars up by the current config, not the commit's.
        return DatasetConfig.read(self.repo).record_dir

    def _annex_content_ids(self, commits: Sequence[_ParsedCommit]) -> dict[str, str]:
        """Map annex symlink blobs to the id their unlocked pointer file would have."""
        links = {oid for c in commits for mode, oid, _ in c.entries if mode == _SYMLINK_MODE}
        ids: dict[str, str] = {}
        for oid, info in self.repo.read_objects(links).items():
            if info is None:
                continue
            match = _ANNEX_TARGET.search(info.data)
            if match:
                ids[oid] = pointer_content_id(match.group(1).decode("utf-8", "replace"))
        return ids

    def _dataset_id(self, tip: str) -> str | None:
        return dataset_id(self.repo, tip)

    # -- questions the planner asks ---------------------------------------------------

    @property
    def dataset_id(self) -> str | None:
        return self._meta("dsid")

    def records_at(self, seqs: Sequence[int]) -> dict[int, IndexedRecord]:
        """Many run records by ``seq``, a few hundred per query."""
        rows = self._select_in("SELECT " + _RECORD_COLUMNS + " FROM records", seqs)
        return {int(str(row[0])): _record_from_row(row) for row in rows}

    def commits_at(self, seqs: Iterable[int]) -> dict[int, str]:
        """Many commit shas by ``seq``, a few hundred per query."""
        rows = self._select_in("SELECT seq, sha FROM commits", sorted(set(seqs)))
        return {int(str(seq)): str(sha) for seq, sha in rows}

    def _select_in(self, select: str, seqs: Sequence[int]) -> Iterator[tuple[object, ...]]:
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            marks = ",".join("?" * len(chunk))
            yield from self._db.execute(f"{select} WHERE seq IN ({marks})", chunk)

    def records(self, since_seq: int = -1) -> list[IndexedRecord]:
        """Run records on the chain after ``since_seq``, oldest first."""
        rows = self._db.execute(
            "SELECT " + _RECORD_COLUMNS + " FROM records WHERE seq > ? ORDER BY seq",
            (since_seq,),
        )
        return [_record_from_row(row) for row in rows]

    def seq_of(self, sha: str) -> int | None:
        """Where ``sha`` stands on the indexed chain, if it is there."""
        row = self._db.execute("SELECT seq FROM commits WHERE sha = ?", (sha,)).fetchone()
        return int(row[0]) if row else None

    def commit_at(self, seq: int) -> str:
        row = self._db.execute("SELECT sha FROM commits WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise RevisionError(f"no commit number {seq} on {self.branch}")
        return str(row[0])

    def content_at(self, path: str, seq: int) -> str | None:
        """Content id of ``path`` after commit ``seq``; ``None`` when absent there."""
        row = self._db.execute(
            "SELECT content FROM changes WHERE path = ? AND seq <= ? ORDER BY seq DESC LIMIT 1",
            (path, seq),
        ).fetchone()
        return row[0] or None if row else None

    # -- housekeeping -------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def reset(self) -> None:
        """Forget everything; the next update reads the whole chain again."""
        self._reset()

    def _reset(self) -> None:
        with _transaction(self._db):
            for table in ("meta", "commits", "changes", "records"):
                self._db.execute(f"DELETE FROM {table}")
            self._set_meta("schema", SCHEMA_VERSION)
            if self.listener is not None:
                self.listener.reset()


def dataset_id(repo: GitRepo, commit: str) -> str | None:
    """The DataLad dataset id committed in ``.datalad/config`` at ``commit``."""
    out = repo.run(
        "config", "--blob", f"{commit}:.datalad/config", "--get", "datalad.dataset.id", check=False
    )
    return out.decode().strip() or None


def read_sidecar(repo: GitRepo, commit: str, path: str) -> RunRecord:
    """The record stored in the sidecar file ``path`` of ``commit``'s tree.

    Annexed sidecars are fetched from wherever git-annex knows a copy.
    """
    info = repo.read_objects([f"{commit}:{path}"])[f"{commit}:{path}"]
    if info is None:
        raise RecordError(commit, f"names a sidecar file {path} that is not in its tree")
    # An annexed sidecar is a symlink or pointer file naming its key, not xz data.
    match = _ANNEX_TARGET.search(info.data.strip()) if len(info.data) < 512 else None
    if match is None:
        return decode_sidecar(info.data, commit)
    key = match.group(1).decode()
    location = _annex_content(repo, key)
    if location is None:
        raise RecordError(commit, f"has a sidecar file {path} whose annexed content is unavailable")
    return decode_sidecar(location.read_bytes(), commit)


def _annex_content(repo: GitRepo, key: str) -> Path | None:
    for attempt in range(2):
        out = repo.annex("contentlocation", key, check=False).decode().strip()
        if out:
            where = Path(out)
            return where if where.is_absolute() else repo.path / where
        if attempt == 0:
            try:
                repo.annex("get", "--key", key, "--quiet")
            except GitError:
                return None
    return None


def _parse_log(raw: bytes) -> Iterator[_ParsedCommit]:
    for chunk in raw.split(b"\x1e")[1:]:
        header, _, rest = chunk.partition(b"\x1f")
        body_end = rest.index(b"\x1f\x00") if b"\x1f\x00" in rest else rest.rindex(b"\x1f")
        message = rest[:body_end].decode("utf-8", "replace")
        shas = header.decode().split()
        fields = rest[body_end + 2 :].lstrip(b"\n").split(b"\x00")
        entries: list[tuple[bytes, str, str]] = []
        for i in range(0, len(fields) - 1, 2):
            meta = fields[i].split(b" ")
            if len(meta) < 5:
                continue
            entries.append((meta[1], meta[3].decode(), fields[i + 1].decode("utf-8", "replace")))
        yield _ParsedCommit(shas[0], tuple(shas[1:]), message, entries)


def _record_from_row(row: tuple[object, ...]) -> IndexedRecord:
    seq, sha, parents, summary, record_text, error, sidecar, changed = row
    record = None
    if isinstance(record_text, str):
        record = record_from_json(json.loads(record_text), str(sha))
    return IndexedRecord(
        seq=int(str(seq)),
        commit=str(sha),
        parents=tuple(str(parents).split()),
        summary=str(summary),
        record=record,
        error=str(error) if error is not None else None,
        sidecar=str(sidecar) if sidecar is not None else None,
        changed=tuple(json.loads(str(changed))),
    )


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN``/``COMMIT`` around a block, ``ROLLBACK`` when it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@dataclass(frozen=True)
class RangeCommit:
    """A commit of a ``git log`` range with its run record, if it has one."""

    commit: str
    parents: tuple[str, ...]
    summary: str
    record: RunRecord


def read_run_records(repo: GitRepo, revisions: Sequence[str]) -> list[RangeCommit]:
    """The run records of a range, oldest first in topological order, as DataLad lists them.

    git filters the messages (``--grep``) so only record commits cross the pipe;
    filtering does not change the relative topological order. Malformed records
    raise :class:`RecordError` before anything runs, as in DataLad.
    """
    raw = repo.run(
        "log",
        "--reverse",
        "--topo-order",
        "--grep=^\\[DATALAD RUNCMD\\] ",
        "--format=%x1e%H %P%x1f%B%x1f",
        *revisions,
        "--",
    )
    record_dir: str | None = None
    found: list[RangeCommit] = []
    for chunk in raw.split(b"\x1e")[1:]:
        header, _, rest = chunk.partition(b"\x1f")
        shas = header.decode().split()
        message = parse_message(rest[: rest.rindex(b"\x1f")].decode("utf-8", "replace"), shas[0])
        if message is None:  # the tag stood on a later line of the message
            continue
        if message.record is not None:
            record = message.record
        else:
            record_dir = record_dir or DatasetConfig.read(repo).record_dir
            record = read_sidecar(repo, shas[0], f"{record_dir}/{message.sidecar_id}")
        found.append(RangeCommit(shas[0], tuple(shas[1:]), message.summary, record))
    return found
