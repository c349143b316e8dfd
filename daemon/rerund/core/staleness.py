"""Which current records differ from the tip, kept up to date commit by commit (SPEC §2).

The tracker listens to the history index and maintains three tables beside it:

* ``owners``: every output path and the newest record that wrote it (its
  *current* record);
* ``inputs``: the input specs of every current record — declared ``inputs`` and
  ``extra_inputs``, and the *implicit* inputs (tracked files the command names);
* ``diffs``: for every current record, each input or owned output whose
  content at the tip differs from its content at the record's commit;
* ``gitlinks``: every commit that added, moved or removed a subdataset, and
  ``undecided``: the records whose inputs lie in a subdataset whose objects
  could not be read (:mod:`rerund.core.subdatasets`), retried on every update.

An input inside a subdataset is compared inside the subdataset commits the
gitlink names (file by file, nested subdatasets too): a gitlink that moved
without touching a record's inputs changes nothing.

A new commit touches only the rows its changed paths lead to, so after a push
the planner reads a handful of rows instead of walking the history again.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from rerund.core.globbing import SpecMatcher, spec_matcher
from rerund.core.history import HistoryIndex, IndexedCommit, IndexedRecord
from rerund.core.placeholders import command_text, named_paths
from rerund.core.records import RunRecord
from rerund.core.subdatasets import (
    Locator,
    SubdatasetReader,
    Unavailable,
    installed_locator,
)

DiffKind = Literal["input", "implicit-input", "drift"]

TRACKER_VERSION = "3"
"""Bumped when the tables' meaning or shape changes; they are dropped and rebuilt.
(2: a record owns what its commit deletes; 3: gitlinks and undecided records.)"""
_TABLES = ("owners", "inputs", "diffs", "notices", "gitlinks", "undecided")

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
    via TEXT NOT NULL,
    PRIMARY KEY (seq, path, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notices (seq INTEGER PRIMARY KEY, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gitlinks (
    path TEXT NOT NULL, seq INTEGER NOT NULL, sha TEXT NOT NULL, PRIMARY KEY (path, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS undecided (
    seq INTEGER NOT NULL, subdataset TEXT NOT NULL, changed_seq INTEGER NOT NULL,
    missing TEXT NOT NULL, PRIMARY KEY (seq, subdataset)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Diff:
    """One reason a record is directly stale."""

    seq: int
    path: str
    kind: DiffKind
    changed_seq: int
    via: str = ""
    """The subdataset (gitlink path) whose move made the difference; "" for none."""


@dataclass(frozen=True)
class UndecidedRow:
    """A record whose inputs in ``subdataset`` cannot be compared here."""

    seq: int
    subdataset: str
    missing: str
    """The subdataset commit whose objects are not available."""
    changed_seq: int


@dataclass(frozen=True)
class InputRow:
    seq: int
    kind: DiffKind
    matcher: SpecMatcher


class StalenessTracker:
    """Keeps ``owners``, ``inputs`` and ``diffs`` in step with a :class:`HistoryIndex`."""

    def __init__(self, index: HistoryIndex, locate: Locator | None = None) -> None:
        self.index = index
        self._db = index.db
        self.subdatasets = SubdatasetReader(locate or installed_locator(index.repo))
        tracked = self._db.execute("SELECT value FROM meta WHERE key = 'tracked'").fetchone()
        if tracked is not None and tracked[0] != TRACKER_VERSION:
            for table in _TABLES:
                self._db.execute(f"DROP TABLE IF EXISTS {table}")
        self._db.executescript(_SCHEMA)
        # Every path that was ever a subdataset: most commits touch none of them.
        self._link_paths = {str(p) for (p,) in self._db.execute("SELECT path FROM gitlinks")}
        index.listener = self
        if tracked is None or tracked[0] != TRACKER_VERSION:
            index.reset()  # tables from an older (or no) tracker: replay everything

    def update(self, tip: str) -> int:
        """Bring index and tables up to ``tip``; returns how many commits were read.

        Records left undecided are compared again: their subdataset may have
        been installed or fetched since.
        """
        read = self.index.update(tip)
        undecided = self.undecided()
        if undecided:
            with self.index.transaction():
                for row in undecided:
                    self._compare_through(row.seq, row.subdataset, row.changed_seq)
        return read

    # -- IndexListener ------------------------------------------------------------------

    def reset(self) -> None:
        for table in _TABLES:
            self._db.execute(f"DELETE FROM {table}")
        self._link_paths = set()
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
                claimed = self._claim(rec, rec.record, deleted | set(self._written_inside(commit)))
        for path, content in commit.changes:
            is_link = path in commit.gitlinks
            if is_link or (
                path in self._link_paths and self.gitlink_at(path, commit.seq - 1) is not None
            ):
                self._gitlink_moved(commit.seq, path, content if is_link else None)
                if is_link or content is None:
                    continue
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

    def _claim(self, rec: IndexedRecord, record: RunRecord, also: Iterable[str] = ()) -> set[str]:
        """Make ``rec`` the current record of its effective outputs; returns them.

        ``also``: what its commit deleted (its command's doing, never a hand edit of an
        older record's output) and the files it wrote inside subdatasets.
        """
        outputs = [spec_matcher(spec, record.pwd) for spec in record.outputs]
        paths = set(rec.changed) | set(also)
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
        self._db.execute("DELETE FROM undecided WHERE seq = ?", (seq,))

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
            tracked = self.index.content_at(path, rec.seq) is not None
            # Inside a subdataset: counted only if the file was there (see _compare_through).
            if tracked or self.subdataset_of(path, rec.seq) is not None:
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
                "INSERT OR REPLACE INTO diffs VALUES (?, ?, ?, ?, '')",
                (seq, path, kind, changed_seq),
            )
        else:  # changed back: a reverted change is no change
            self._db.execute(
                "DELETE FROM diffs WHERE seq = ? AND path = ? AND kind = ?", (seq, path, kind)
            )

    # -- subdatasets -------------------------------------------------------------------

    def _written_inside(self, commit: IndexedCommit) -> list[str]:
        """Files a record's commit added or changed inside the subdatasets it moved.

        Part of its effective outputs, as files its commit changed at the top
        level are. Where the subdataset's objects cannot be read, none are known.
        """
        found: list[str] = []
        for path, sha in commit.changes:
            if path in commit.gitlinks and sha is not None:
                old = self.gitlink_at(path, commit.seq - 1)
                changes = self.subdatasets.changes(path, old, sha, lambda _: True)
                if not isinstance(changes, Unavailable):
                    found.extend(change.path for change in changes if change.new is not None)
        return found

    def _gitlink_moved(self, seq: int, path: str, sha: str | None) -> None:
        """The subdataset at ``path`` now names ``sha`` (``None``: removed); compare readers."""
        self._db.execute("INSERT OR REPLACE INTO gitlinks VALUES (?, ?, ?)", (path, seq, sha or ""))
        self._link_paths.add(path)
        ancestors = _ancestors(path)
        marks = ",".join("?" * len(ancestors))
        rows = self._db.execute(
            f"SELECT seq FROM inputs WHERE (prefix IN ({marks}) OR (prefix > ? AND prefix < ?))"
            " AND seq < ?"
            " UNION SELECT seq FROM owners WHERE path > ? AND path < ? AND seq < ?",
            (*ancestors, path + "/", path + "0", seq, path + "/", path + "0", seq),
        )
        for (reader,) in rows.fetchall():
            self._compare_through(int(reader), path, seq)

    def _compare_through(self, seq: int, subdataset: str, changed_seq: int) -> None:
        """Recompute record ``seq``'s differences inside ``subdataset`` as of ``changed_seq``."""
        self._db.execute("DELETE FROM diffs WHERE seq = ? AND via = ?", (seq, subdataset))
        self._db.execute(
            "DELETE FROM undecided WHERE seq = ? AND subdataset = ?", (seq, subdataset)
        )
        readers = [
            (_matcher(str(spec), str(pwd)), str(kind))
            for spec, pwd, kind in self._db.execute(
                "SELECT spec, pwd, kind FROM inputs WHERE seq = ?", (seq,)
            )
        ]
        below = (subdataset + "/", subdataset + "0")
        owned = {
            str(path)
            for (path,) in self._db.execute(
                "SELECT path FROM owners WHERE seq = ? AND path > ? AND path < ?", (seq, *below)
            )
        }
        prefixes = [m.literal_prefix for m, _ in readers] + list(owned)

        def wanted(folder: str) -> bool:
            return any(
                not p or p == folder or p.startswith(folder + "/") or folder.startswith(p + "/")
                for p in prefixes
            )

        if not wanted(subdataset):
            return
        old = self.gitlink_at(subdataset, seq)
        new = self.gitlink_at(subdataset, changed_seq)
        found = self.subdatasets.changes(subdataset, old, new, wanted)
        rows: set[tuple[str, str]] = set()
        if isinstance(found, Unavailable) and new is not None:
            self._db.execute(
                "INSERT INTO undecided VALUES (?, ?, ?, ?)",
                (seq, subdataset, changed_seq, found.commit),
            )
            return
        if isinstance(found, Unavailable):
            rows = _gone(subdataset, readers, owned)
        else:
            for change in found:
                rows.update(
                    (change.path, kind)
                    for matcher, kind in readers
                    if matcher.covers(change.path) and (kind != "implicit-input" or change.old)
                )
                if change.path in owned:
                    rows.add((change.path, "drift"))
        self._db.executemany(
            "INSERT OR REPLACE INTO diffs VALUES (?, ?, ?, ?, ?)",
            [(seq, path, kind, changed_seq, subdataset) for path, kind in sorted(rows)],
        )

    def gitlink_at(self, path: str, seq: int) -> str | None:
        """The commit the subdataset at ``path`` names after commit ``seq``; ``None``: none."""
        row = self._db.execute(
            "SELECT sha FROM gitlinks WHERE path = ? AND seq <= ? ORDER BY seq DESC LIMIT 1",
            (path, seq),
        ).fetchone()
        return str(row[0]) or None if row else None

    def subdataset_of(self, path: str, seq: int) -> tuple[str, str] | None:
        """The innermost known subdataset holding ``path`` after ``seq``, and its commit."""
        for candidate in _ancestors(path)[1:-1]:  # innermost first
            if candidate not in self._link_paths:
                continue
            sha = self.gitlink_at(candidate, seq)
            if sha is not None:
                return candidate, sha
        return None

    def content_at(self, path: str, seq: int) -> str | Unavailable | None:
        """``path``'s content id after ``seq``, looking inside subdatasets where it lies in one."""
        holder = self.subdataset_of(path, seq)
        if holder is None:
            return self.index.content_at(path, seq)
        subdataset, sha = holder
        return self.subdatasets.identity(subdataset, sha, path[len(subdataset) + 1 :])

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
        rows = self._db.execute(
            "SELECT seq, path, kind, changed_seq, via FROM diffs ORDER BY seq, path, kind"
        )
        return [Diff(int(s), str(p), k, int(c), str(v)) for s, p, k, c, v in rows]

    def undecided(self) -> list[UndecidedRow]:
        rows = self._db.execute(
            "SELECT seq, subdataset, missing, changed_seq FROM undecided ORDER BY seq, subdataset"
        )
        return [UndecidedRow(int(s), str(p), str(m), int(c)) for s, p, m, c in rows]

    def owned_by(self, seq: int) -> list[str]:
        rows = self._db.execute("SELECT path FROM owners WHERE seq = ? ORDER BY path", (seq,))
        return [str(path) for (path,) in rows]

    def notices(self) -> list[tuple[int, str]]:
        rows = self._db.execute("SELECT seq, message FROM notices ORDER BY seq")
        return [(int(seq), str(message)) for seq, message in rows]


def _gone(
    subdataset: str, readers: list[tuple[SpecMatcher, str]], owned: set[str]
) -> set[tuple[str, str]]:
    """The differences a removed subdataset makes when its old commit cannot be listed.

    Whatever the record read or wrote there is gone; each input is named by
    its literal part, or by the subdataset when the input starts above it.
    """
    rows = {(path, "drift") for path in owned}
    for matcher, kind in readers:
        prefix = matcher.literal_prefix
        if prefix == subdataset or prefix.startswith(subdataset + "/"):
            rows.add((prefix, kind))
        elif not prefix or subdataset.startswith(prefix + "/"):
            rows.add((subdataset, kind))
    return rows


def _ancestors(path: str) -> list[str]:
    found = [path]
    while path:
        path = posixpath.dirname(path)
        found.append(path)
    return found


@lru_cache(maxsize=4096)
def _matcher(spec: str, pwd: str) -> SpecMatcher:
    return spec_matcher(spec, pwd)
