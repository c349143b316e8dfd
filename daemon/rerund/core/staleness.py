"""Which current records differ from the tip, kept up to date commit by commit (SPEC §2).

The tracker listens to the history index and maintains three tables beside it:

* ``owners``: every output path and the newest record that wrote it (its
  *current* record);
* ``inputs``: the input specs of every current record — declared ``inputs`` and
  ``extra_inputs``, and the *implicit* inputs (tracked files the command names);
* ``diffs``: for every current record, each input or owned output whose
  content at the tip differs from its content at the record's commit.

A new commit touches only the rows its changed paths lead to, so after a push
the planner reads a handful of rows instead of walking the history again.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from rerund.core.globbing import SpecMatcher, spec_matcher
from rerund.core.history import HistoryIndex, IndexedCommit, IndexedRecord
from rerund.core.placeholders import command_text, named_paths
from rerund.core.records import RunRecord

DiffKind = Literal["input", "implicit-input", "drift"]

TRACKER_VERSION = "2"
"""Bumped when the tables' meaning changes (2: a record owns what its commit deletes)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS owners (path TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS owners_by_seq ON owners (seq);
CREATE TABLE IF NOT EXISTS inputs (
    seq INTEGER NOT NULL, prefix TEXT NOT NULL, spec TEXT NOT NULL, pwd TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inputs_by_prefix ON inputs (prefix);
CREATE INDEX IF NOT EXISTS inputs_by_seq ON inputs (seq);
CREATE TABLE IF NOT EXISTS diffs (
    seq INTEGER NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL, changed_seq INTEGER NOT NULL,
    PRIMARY KEY (seq, path, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notices (seq INTEGER PRIMARY KEY, message TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Diff:
    """One reason a record is directly stale."""

    seq: int
    path: str
    kind: DiffKind
    changed_seq: int


@dataclass(frozen=True)
class InputRow:
    seq: int
    kind: DiffKind
    matcher: SpecMatcher


class StalenessTracker:
    """Keeps ``owners``, ``inputs`` and ``diffs`` in step with a :class:`HistoryIndex`."""

    def __init__(self, index: HistoryIndex) -> None:
        self.index = index
        self._db = index.db
        self._db.executescript(_SCHEMA)
        index.listener = self
        row = self._db.execute("SELECT value FROM meta WHERE key = 'tracked'").fetchone()
        if row is None or row[0] != TRACKER_VERSION:
            index.reset()  # tables from an older (or no) tracker: replay everything

    def update(self, tip: str) -> int:
        """Bring index and tables up to ``tip``; returns how many commits were read."""
        return self.index.update(tip)

    # -- IndexListener ------------------------------------------------------------------

    def reset(self) -> None:
        for table in ("owners", "inputs", "diffs", "notices"):
            self._db.execute(f"DELETE FROM {table}")
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('tracked', ?)", (TRACKER_VERSION,))

    def commit_added(self, commit: IndexedCommit) -> None:
        claimed: set[str] = set()
        rec = commit.record
        if rec is not None:
            notice = self._notice(rec)
            if notice is not None:
                self._db.execute("INSERT INTO notices VALUES (?, ?)", (rec.seq, notice))
            elif rec.record is not None:
                # What a run record's commit deletes is its command's doing too: never a
                # hand edit of an older record's output (a rerun may drop a file).
                deleted = {path for path, content in commit.changes if content is None}
                claimed = self._claim(rec, rec.record, deleted)
        for path, content in commit.changes:
            self._note_change(commit.seq, path, content, owned_here=path in claimed)

    # -- maintaining the tables ---------------------------------------------------------

    def _notice(self, rec: IndexedRecord) -> str | None:
        if rec.error is not None or rec.record is None:
            return rec.error or "unreadable run record"
        if len(rec.parents) > 2:
            return "has run information but is an octopus merge"
        if len(rec.parents) == 0:
            return "has run information but is a root commit (nothing to rerun on)"
        dsid = self.index.dataset_id
        if rec.record.dsid is not None and dsid is not None and rec.record.dsid != dsid:
            return "was run from a different dataset; not ours to run"
        return None

    def _claim(self, rec: IndexedRecord, record: RunRecord, deleted: set[str]) -> set[str]:
        """Make ``rec`` the current record of its effective outputs; returns them."""
        outputs = [spec_matcher(spec, record.pwd) for spec in record.outputs]
        paths = set(rec.changed) | deleted
        paths.update(m.literal_prefix for m in outputs if not m.is_glob and m.literal_prefix)
        paths.discard(rec.sidecar or "")
        losers: set[int] = set()
        for path in paths:
            # The path itself, and anything an older record owns beneath it.
            for (owner,) in self._db.execute(
                "SELECT seq FROM owners WHERE path = ? OR (path > ? AND path < ?)",
                (path, path + "/", path + "0"),
            ):
                losers.add(int(owner))
            self._db.execute(
                "DELETE FROM owners WHERE path > ? AND path < ?", (path + "/", path + "0")
            )
        for matcher in outputs:
            if matcher.is_glob:
                losers.update(self._release_matching(matcher))
        self._db.executemany(
            "INSERT OR REPLACE INTO owners VALUES (?, ?)", [(p, rec.seq) for p in paths]
        )
        for loser in losers:
            self._forget_lost_outputs(loser)
        self._db.executemany(
            "INSERT INTO inputs VALUES (?, ?, ?, ?, ?)",
            [(rec.seq, *row) for row in self._input_rows(rec, record, paths)],
        )
        return paths

    def _release_matching(self, matcher: SpecMatcher) -> set[int]:
        released: set[int] = set()
        prefix = matcher.literal_prefix
        for path, owner in list(self._owned_under(prefix)):
            if matcher.covers(path):
                self._db.execute("DELETE FROM owners WHERE path = ?", (path,))
                released.add(owner)
        return released

    def _owned_under(self, prefix: str) -> Iterator[tuple[str, int]]:
        if not prefix:
            rows = self._db.execute("SELECT path, seq FROM owners")
        else:
            rows = self._db.execute(
                "SELECT path, seq FROM owners WHERE path = ? OR (path > ? AND path < ?)",
                (prefix, prefix + "/", prefix + "0"),
            )
        for path, seq in rows:
            yield str(path), int(seq)

    def _forget_lost_outputs(self, seq: int) -> None:
        """Drop drift on paths ``seq`` no longer owns; forget it when it owns nothing."""
        self._db.execute(
            "DELETE FROM diffs WHERE seq = ? AND kind = 'drift'"
            " AND path NOT IN (SELECT path FROM owners WHERE seq = ?)",
            (seq, seq),
        )
        if self._db.execute("SELECT 1 FROM owners WHERE seq = ? LIMIT 1", (seq,)).fetchone():
            return
        self._db.execute("DELETE FROM inputs WHERE seq = ?", (seq,))
        self._db.execute("DELETE FROM diffs WHERE seq = ?", (seq,))

    def _input_rows(
        self, rec: IndexedRecord, record: RunRecord, owned: set[str]
    ) -> list[tuple[str, str, str, str]]:
        rows: list[tuple[str, str, str, str]] = []
        declared = [spec_matcher(s, record.pwd) for s in [*record.inputs, *record.extra_inputs]]
        for spec, matcher in zip([*record.inputs, *record.extra_inputs], declared, strict=True):
            rows.append((matcher.literal_prefix, spec, record.pwd, "input"))
        for path in named_paths(command_text(record.cmd), record.pwd):
            if path in owned or any(m.covers(path) for m in declared):
                continue
            if self.index.content_at(path, rec.seq) is not None:
                rows.append((path, path, ".", "implicit-input"))
        return rows

    def _note_change(self, seq: int, path: str, content: str | None, *, owned_here: bool) -> None:
        """Compare ``path``'s new content with what each reader and owner saw."""
        for row in self.readers_of(path, before=seq):
            self._record_diff(row.seq, path, row.kind, seq, content)
        if owned_here:
            return
        owner = self._db.execute("SELECT seq FROM owners WHERE path = ?", (path,)).fetchone()
        if owner is not None and owner[0] < seq:
            self._record_diff(int(owner[0]), path, "drift", seq, content)

    def _record_diff(
        self, seq: int, path: str, kind: DiffKind, changed_seq: int, content: str | None
    ) -> None:
        if self.index.content_at(path, seq) != content:
            self._db.execute(
                "INSERT OR REPLACE INTO diffs VALUES (?, ?, ?, ?)", (seq, path, kind, changed_seq)
            )
        else:  # changed back: a reverted change is no change
            self._db.execute(
                "DELETE FROM diffs WHERE seq = ? AND path = ? AND kind = ?", (seq, path, kind)
            )

    # -- questions the planner asks -----------------------------------------------------

    def readers_of(self, path: str, *, before: int | None = None) -> Iterator[InputRow]:
        """Current records with an input covering ``path`` (only older than ``before``)."""
        ancestors = _ancestors(path)
        marks = ",".join("?" * len(ancestors))
        rows = self._db.execute(
            f"SELECT seq, spec, pwd, kind FROM inputs WHERE prefix IN ({marks})",
            ancestors,
        )
        for seq, spec, pwd, kind in rows:
            if before is not None and seq >= before:
                continue
            matcher = _matcher(spec, pwd)
            if matcher.covers(path):
                yield InputRow(int(seq), kind, matcher)

    def diffs(self) -> list[Diff]:
        rows = self._db.execute("SELECT seq, path, kind, changed_seq FROM diffs ORDER BY seq")
        return [Diff(int(s), str(p), k, int(c)) for s, p, k, c in rows]

    def owned_by(self, seq: int) -> list[str]:
        rows = self._db.execute("SELECT path FROM owners WHERE seq = ? ORDER BY path", (seq,))
        return [str(path) for (path,) in rows]

    def notices(self) -> list[tuple[int, str]]:
        rows = self._db.execute("SELECT seq, message FROM notices ORDER BY seq")
        return [(int(seq), str(message)) for seq, message in rows]


def _ancestors(path: str) -> list[str]:
    found = [path]
    while path:
        path = posixpath.dirname(path)
        found.append(path)
    return found


@lru_cache(maxsize=4096)
def _matcher(spec: str, pwd: str) -> SpecMatcher:
    return spec_matcher(spec, pwd)
