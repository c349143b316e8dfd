"""Which commit already ran a command on given inputs: an O(1) lookup (issue 10).

Every run record on the branch's first-parent chain — ``datalad run``'s, a
``datalad rerun``'s, rerund's — is filed under its *reuse key*
(:func:`rerund.core.fingerprint.reuse_key`: the command as recorded with what
its placeholders expand from, and the identity of every input it read at its
commit). The table lives beside the history index, in
``.git/rerund/reuse-<branch>.sqlite``, and is brought up to date incrementally:
only records newer than the last one filed are read (two ``git ls-tree`` each).

Records marked as not reusable are never filed (see :func:`reusable`).
"""

from __future__ import annotations

import fnmatch
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rerund.core.fingerprint import (
    fingerprint,
    read_set,
    reuse_key,
    written_by,
    written_by_each,
)
from rerund.core.gitrepo import GitRepo
from rerund.core.history import HistoryIndex
from rerund.core.placeholders import command_text
from rerund.core.records import RunRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, sha TEXT NOT NULL) WITHOUT ROWID;
"""
_VERSION = "1"

POLICY_FILE = ".rerund.toml"
"""Committed in the dataset: ``[reuse] never = ["python code/simulate.py*", ...]``."""


@dataclass(frozen=True)
class ReusePolicy:
    """Which records may have their results reused."""

    enabled: bool = True
    never: tuple[str, ...] = ()
    """Patterns (fnmatch) of command texts whose results are never reused."""

    def allows(self, record: RunRecord) -> bool:
        if not self.enabled:
            return False
        mark = record.fields.get("rerund")
        if isinstance(mark, dict) and mark.get("reuse") is False:
            return False
        text = command_text(record.cmd)
        return not any(fnmatch.fnmatchcase(text, pattern) for pattern in self.never)


def read_policy(root: Path, *, enabled: bool) -> ReusePolicy:
    """The policy of the dataset checked out at ``root`` (its ``.rerund.toml``)."""
    path = root / POLICY_FILE
    if not enabled or not path.is_file():
        return ReusePolicy(enabled=enabled)
    import tomllib  # noqa: PLC0415 - only datasets with the file pay for it

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return ReusePolicy(enabled=False)  # unreadable: reuse nothing rather than guess
    never = data.get("reuse", {}).get("never", []) if isinstance(data.get("reuse"), dict) else []
    return ReusePolicy(True, tuple(str(item) for item in never if isinstance(item, str)))


class ReuseIndex:
    def __init__(self, repo: GitRepo, db: sqlite3.Connection) -> None:
        self.repo = repo
        self._db = db

    @classmethod
    def open(cls, repo: GitRepo, branch: str) -> ReuseIndex:
        folder = repo.common_dir / "rerund"
        name = re.sub(r"[^A-Za-z0-9._-]", "_", branch) or "HEAD"
        try:
            folder.mkdir(exist_ok=True)
            # Steps run side by side file their commits from their threads (under a lock).
            db = sqlite3.connect(
                folder / f"reuse-{name}.sqlite", isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.OperationalError):
            db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.executescript(_SCHEMA)
        index = cls(repo, db)
        if index._meta("version") != _VERSION:
            db.execute("DELETE FROM runs")
            db.execute("DELETE FROM meta")
            index._set_meta("version", _VERSION)
        return index

    def close(self) -> None:
        self._db.close()

    def update(
        self,
        history: HistoryIndex,
        substitutions: Mapping[str, str | tuple[str, ...]],
        policy: ReusePolicy,
    ) -> int:
        """File the records ``history`` holds that are newer than the last filed; how many."""
        tip = history.tip or ""
        if self._meta("tip") == tip:
            return 0
        last = self._meta("seq")
        since = int(last) if last is not None and history.seq_of(self._meta("sha") or "") else -1
        if since < 0:
            self._db.execute("DELETE FROM runs")
        filed = 0
        usable = [
            rec
            for rec in history.records(since)
            if rec.record is not None and rec.error is None and policy.allows(rec.record)
        ]
        written = written_by_each(self.repo, [rec.commit for rec in usable])
        self._db.execute("BEGIN")
        try:
            for rec in usable:
                assert rec.record is not None  # noqa: S101 - filtered above, for mypy
                key = key_at(
                    self.repo, rec.record, rec.commit, substitutions, written=written[rec.commit]
                )
                self.add(key, rec.commit)
                filed += 1
            if history.tip_seq >= 0:
                self._set_meta("seq", str(history.tip_seq))
                self._set_meta("sha", history.commit_at(history.tip_seq))
            self._set_meta("tip", tip)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return filed

    def add(self, key: str, commit: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?)", (key, commit))

    def lookup(self, key: str) -> str | None:
        row = self._db.execute("SELECT sha FROM runs WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def key_at(
    repo: GitRepo,
    record: RunRecord,
    commit: str,
    substitutions: Mapping[str, str | tuple[str, ...]],
    *,
    content_at: str | None = None,
    written: Sequence[str] | None = None,
) -> str:
    """``record``'s reuse key with its inputs as at ``content_at`` (default: its ``commit``)."""
    reads = read_set(
        record, written if written is not None else written_by(repo, commit), substitutions
    )
    return reuse_key(record, fingerprint(repo, content_at or commit, reads), substitutions)
