"""The daemon's durable state: events, jobs and their steps, in one SQLite file (WAL).

Every write is one short transaction, so a crash leaves either the old or the
new state. Jobs are claimed with a lease; a job found ``running`` at start-up
(its process died) goes back to the queue and runs again from scratch, which
is safe because a job publishes with a single fast-forward push.

The methods are blocking: the service calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rerund.core.gitrepo import NULL_SHA
from rerund.service.sqlitetx import write_transaction

JobState = Literal["queued", "running", "succeeded", "failed", "superseded", "refused"]
StepState = Literal[
    "pending", "running", "committed", "identical", "cut-off", "reused", "failed", "not-run"
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, repo TEXT NOT NULL, branch TEXT NOT NULL,
    old TEXT NOT NULL, new TEXT NOT NULL, source TEXT NOT NULL,
    delivery_id TEXT UNIQUE, received_at REAL NOT NULL, outcome TEXT NOT NULL,
    job_id INTEGER
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, repo TEXT NOT NULL, branch TEXT NOT NULL, target TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, lease_until REAL,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL,
    error TEXT, published TEXT, side_ref TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
CREATE TABLE IF NOT EXISTS steps (
    job_id INTEGER NOT NULL, position INTEGER NOT NULL, record TEXT NOT NULL,
    summary TEXT NOT NULL, cmd TEXT NOT NULL, reasons TEXT NOT NULL, state TEXT NOT NULL,
    new_commit TEXT, started_at REAL, finished_at REAL, log_path TEXT, error TEXT,
    PRIMARY KEY (job_id, position)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pushers (
    event_id INTEGER PRIMARY KEY, pusher TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tips (
    repo TEXT NOT NULL, branch TEXT NOT NULL, handled TEXT, published TEXT,
    PRIMARY KEY (repo, branch)
);
"""

Outcome = Literal["queued", "coalesced", "duplicate", "handled", "own-push", "deleted"]


@dataclass(frozen=True)
class Notification:
    """One push as a door reported it: ``old`` and ``new`` tips of a branch."""

    repo: str
    branch: str
    old: str
    new: str
    source: str
    delivery_id: str | None = None
    force: bool = False
    """A manual trigger: plan even a tip that was handled already."""
    pusher: str | None = None
    """Who pushed, as the forge or the git server authenticated them (for ``trust``)."""
    cause: str | None = None
    """For a job propagated from a subdataset: the push that caused it (``raw@1a2b3c``)."""
    chain: str | None = None
    """The repositories that propagation came through, comma-separated."""


@dataclass(frozen=True)
class EventResult:
    outcome: Outcome
    job_id: int | None


@dataclass(frozen=True)
class Job:
    id: int
    repo: str
    branch: str
    target: str
    state: JobState
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    published: str | None
    side_ref: str | None
    cause: str | None = None
    """The push to a subdataset that caused this job (``raw@1a2b3c``); ``None``: a push here."""
    chain: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StepRow:
    position: int
    record: str
    summary: str
    cmd: str
    reasons: list[dict[str, Any]]
    state: StepState
    new_commit: str | None
    started_at: float | None
    finished_at: float | None
    log_path: str | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if self.started_at is not None and self.finished_at is not None:
            data["duration_s"] = round(self.finished_at - self.started_at, 3)
        return data


_JOB_COLUMNS = (
    "id, repo, branch, target, state, attempts, created_at, started_at, finished_at,"
    " error, published, side_ref, cause, chain"
)


class Store:
    """One SQLite database; safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a delivery answered 202 survives a power cut, not just a crash.
        # Writes are batched (see Service.record_event), so the sync is paid once per burst.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "not_before" not in columns:  # a store from before infrastructure retries
            self._db.execute("ALTER TABLE jobs ADD COLUMN not_before REAL")
        if "cause" not in columns:  # a store from before subdataset propagation
            self._db.execute("ALTER TABLE jobs ADD COLUMN cause TEXT")
            self._db.execute("ALTER TABLE jobs ADD COLUMN chain TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._lock)

    # -- intake -----------------------------------------------------------------------

    def record_event(self, note: Notification, *, now: float) -> EventResult:
        """Store one push notification and queue (or coalesce) the work it calls for."""
        return self.record_events([note], now=now)[0]

    def record_events(self, notes: Sequence[Notification], *, now: float) -> list[EventResult]:
        """Store many notifications in one transaction (one disk sync for the lot)."""
        results: list[EventResult] = []
        with self._write() as db:
            for note in notes:
                results.append(self._record(db, note, now))
        return results

    def _record(self, db: sqlite3.Connection, note: Notification, now: float) -> EventResult:
        if (
            note.delivery_id is not None
            and db.execute(
                "SELECT 1 FROM events WHERE delivery_id = ?", (note.delivery_id,)
            ).fetchone()
        ):
            return EventResult("duplicate", None)
        result = self._route(db, note, now)
        cursor = db.execute(
            "INSERT INTO events (repo, branch, old, new, source, delivery_id, received_at,"
            " outcome, job_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                note.repo,
                note.branch,
                note.old,
                note.new,
                note.source,
                note.delivery_id,
                now,
                result.outcome,
                result.job_id,
            ),
        )
        if note.pusher is not None:
            db.execute(
                "INSERT INTO pushers (event_id, pusher) VALUES (?, ?)",
                (cursor.lastrowid, note.pusher),
            )
        return result

    def _route(self, db: sqlite3.Connection, note: Notification, now: float) -> EventResult:
        repo, branch, new, force = note.repo, note.branch, note.new, note.force
        if new == NULL_SHA:
            return EventResult("deleted", None)
        tips = db.execute(
            "SELECT handled, published FROM tips WHERE repo = ? AND branch = ?", (repo, branch)
        ).fetchone()
        if tips is not None and new == tips[1] and not force:
            return EventResult("own-push", None)
        queued = db.execute(
            "SELECT id, target FROM jobs WHERE repo = ? AND branch = ? AND state = 'queued'",
            (repo, branch),
        ).fetchone()
        if queued is not None:
            # A newer push supersedes queued work for the branch: one job, newest tip.
            db.execute(
                "UPDATE jobs SET target = ?, cause = COALESCE(?, cause),"
                " chain = COALESCE(?, chain) WHERE id = ?",
                (new, note.cause, note.chain, queued[0]),
            )
            return EventResult("coalesced", int(queued[0]))
        running = db.execute(
            "SELECT target FROM jobs WHERE repo = ? AND branch = ? AND state = 'running'",
            (repo, branch),
        ).fetchone()
        handled = (tips is not None and new == tips[0]) or (
            running is not None and running[0] == new
        )
        if handled and not force:
            return EventResult("handled", None)
        cursor = db.execute(
            "INSERT INTO jobs (id, repo, branch, target, state, created_at, cause, chain)"
            " VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
            (self._next_job_id(db), repo, branch, new, now, note.cause, note.chain),
        )
        return EventResult("queued", cursor.lastrowid)

    def _next_job_id(self, db: sqlite3.Connection) -> int:
        highest = db.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()[0]
        floor = db.execute("SELECT value FROM meta WHERE key = 'job_id_floor'").fetchone()
        return max(int(highest) + 1, int(floor[0]) if floor else 1)

    def raise_job_id_floor(self, floor: int) -> None:
        """New job ids start at ``floor`` or above: ids never repeat across a lost store.

        Job ids name logs, kept work trees and ``refs/rerund/failed/<id>`` on remotes,
        which outlive this file; the caller passes a floor above every id seen there.
        """
        with self._write() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('job_id_floor', ?) ON CONFLICT (key)"
                " DO UPDATE SET value ="
                " MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                (str(floor),),
            )

    # -- workers ----------------------------------------------------------------------

    def recover(self, *, max_attempts: int) -> int:
        """At start-up: jobs left ``running`` by a dead process go back to the queue.

        A job that has already been tried ``max_attempts`` times fails instead, so
        a job that kills the daemon cannot do so forever. Returns how many requeued.
        """
        with self._write() as db:
            self._handle_exhausted(db, "state = 'running' AND attempts >= ?", (max_attempts,))
            db.execute(
                "UPDATE jobs SET state = 'failed', lease_until = NULL,"
                " error = 'the daemon stopped during every attempt'"
                " WHERE state = 'running' AND attempts >= ?",
                (max_attempts,),
            )
            cursor = db.execute(
                "UPDATE jobs SET state = 'queued', lease_until = NULL WHERE state = 'running'"
            )
            return cursor.rowcount

    def _handle_exhausted(
        self, db: sqlite3.Connection, where: str, params: tuple[Any, ...]
    ) -> None:
        """A job failed for good has its tip handled: only a new push queues it again."""
        db.execute(
            "INSERT INTO tips (repo, branch, handled) SELECT repo, branch, target FROM jobs"
            f" WHERE {where} ORDER BY id ON CONFLICT (repo, branch) DO UPDATE"
            " SET handled = excluded.handled",
            params,
        )

    def claim(self, *, now: float, lease_s: float, max_attempts: int) -> Job | None:
        """Take the oldest queued job of a repository with nothing running, under a lease."""
        with self._write() as db:
            self._expire_leases(db, now, max_attempts)
            row = db.execute(
                "SELECT id FROM jobs AS j WHERE state = 'queued'"
                " AND (not_before IS NULL OR not_before <= ?) AND NOT EXISTS ("
                " SELECT 1 FROM jobs AS r WHERE r.repo = j.repo AND r.state = 'running')"
                " ORDER BY id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = ?,"
                " started_at = ?, error = NULL, not_before = NULL WHERE id = ?",
                (now + lease_s, now, row[0]),
            )
            db.execute("DELETE FROM steps WHERE job_id = ?", (row[0],))
            return self._job(db, int(row[0]))

    def _expire_leases(self, db: sqlite3.Connection, now: float, max_attempts: int) -> None:
        self._handle_exhausted(
            db, "state = 'running' AND lease_until < ? AND attempts >= ?", (now, max_attempts)
        )
        db.execute(
            "UPDATE jobs SET state = CASE WHEN attempts >= ? THEN 'failed' ELSE 'queued' END,"
            " error = CASE WHEN attempts >= ? THEN 'lease expired too often' ELSE error END,"
            " lease_until = NULL WHERE state = 'running' AND lease_until < ?",
            (max_attempts, max_attempts, now),
        )

    def renew(self, job: Job, *, lease_s: float) -> bool:
        """Extend ``job``'s lease from the time of this write; ``False`` if it was lost.

        The time is read inside the transaction: a renewal that waited for a thread
        or for the lock must not write a deadline that is already in the past.
        """
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND state = 'running'"
                " AND attempts = ?",
                (time.time() + lease_s, job.id, job.attempts),
            )
            return cursor.rowcount == 1

    def retry_later(self, job: Job, *, now: float, delay_s: float, error: str) -> None:
        """An infrastructure failure: back to the queue after ``delay_s``, tip not handled."""
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET state = 'queued', lease_until = NULL, not_before = ?, error = ?"
                " WHERE id = ? AND state = 'running' AND attempts = ?",
                (now + delay_s, error, job.id, job.attempts),
            )

    def requeue(self, job_id: int) -> None:
        """Give a claimed job back (shutdown before it finished): it runs again later."""
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0),"
                " lease_until = NULL WHERE id = ? AND state = 'running'",
                (job_id,),
            )

    def finish(
        self,
        job: Job,
        state: JobState,
        *,
        now: float,
        handled: str,
        error: str | None = None,
        published: str | None = None,
        side_ref: str | None = None,
    ) -> bool:
        """Record a job's outcome, and which branch tip is now handled.

        Only the holder of the current claim may: ``False`` (nothing written) when
        the lease was lost and the job was requeued or claimed again meanwhile.
        """
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, error = ?, published = ?,"
                " side_ref = ?, lease_until = NULL WHERE id = ? AND state = 'running'"
                " AND attempts = ?",
                (state, now, error, published, side_ref, job.id, job.attempts),
            )
            if cursor.rowcount != 1:
                return False
            db.execute(
                "INSERT INTO tips (repo, branch, handled, published) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (repo, branch) DO UPDATE SET handled = excluded.handled,"
                " published = COALESCE(excluded.published, published)",
                (job.repo, job.branch, handled, published),
            )
            return True

    def note_publishing(self, repo: str, branch: str, sha: str) -> None:
        """Remember a tip rerund is about to push, so hearing of that push creates nothing."""
        with self._write() as db:
            db.execute(
                "INSERT INTO tips (repo, branch, published) VALUES (?, ?, ?)"
                " ON CONFLICT (repo, branch) DO UPDATE SET published = excluded.published",
                (repo, branch, sha),
            )

    # -- steps ------------------------------------------------------------------------

    def set_steps(self, job_id: int, steps: Sequence[dict[str, Any]]) -> None:
        with self._write() as db:
            db.execute("DELETE FROM steps WHERE job_id = ?", (job_id,))
            db.executemany(
                "INSERT INTO steps (job_id, position, record, summary, cmd, reasons, state)"
                " VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                [
                    (job_id, i, s["commit"], s["summary"], s["cmd"], json.dumps(s["reasons"]))
                    for i, s in enumerate(steps)
                ],
            )

    def update_step(self, job_id: int, position: int, **fields: object) -> None:
        allowed = {"state", "new_commit", "started_at", "finished_at", "log_path", "error"}
        if not fields or not set(fields) <= allowed:
            raise ValueError(f"cannot update step fields {sorted(set(fields) - allowed)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._write() as db:
            db.execute(
                f"UPDATE steps SET {assignments} WHERE job_id = ? AND position = ?",
                (*fields.values(), job_id, position),
            )

    # -- questions ----------------------------------------------------------------------

    def job(self, job_id: int) -> Job | None:
        with self._lock:
            return self._job(self._db, job_id)

    def _job(self, db: sqlite3.Connection, job_id: int) -> Job | None:
        row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job(*row) if row else None

    def jobs(
        self, *, repo: str | None = None, state: str | None = None, limit: int = 50
    ) -> list[Job]:
        where, params = [], []
        if repo is not None:
            where.append("repo = ?")
            params.append(repo)
        if state is not None:
            where.append("state = ?")
            params.append(state)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs {clause} ORDER BY id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [Job(*row) for row in rows]

    def steps(self, job_id: int) -> list[StepRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT position, record, summary, cmd, reasons, state, new_commit, started_at,"
                " finished_at, log_path, error FROM steps WHERE job_id = ? ORDER BY position",
                (job_id,),
            ).fetchall()
        return [StepRow(r[0], r[1], r[2], r[3], json.loads(r[4]), *r[5:]) for r in rows]

    def handled_tip(self, repo: str, branch: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT handled FROM tips WHERE repo = ? AND branch = ?", (repo, branch)
            ).fetchone()
        return str(row[0]) if row and row[0] else None

    def counts(self) -> dict[str, int]:
        """Jobs by state, and events stored (for health and metrics)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
            events = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        counts = {str(state): int(n) for state, n in rows}
        counts["events"] = int(events)
        return counts

    def prune_events(self, *, before: float) -> int:
        """Forget notifications received before ``before`` (deliveries are not retried
        that late, so their ids are no longer needed to spot duplicates)."""
        with self._write() as db:
            return db.execute("DELETE FROM events WHERE received_at < ?", (before,)).rowcount

    def event_count(self, delivery_id: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM events WHERE delivery_id = ?", (delivery_id,)
            ).fetchone()
        return int(row[0])

    # -- trust ------------------------------------------------------------------------

    def pushers_since_handled(self, repo: str, branch: str, tip: str) -> list[str | None]:
        """Who made each push of ``branch`` since a job last ran there, and of ``tip``.

        ``None`` stands for a push seen without an identity (watcher, scan, manual
        trigger); rerund's own pushes are left out.
        """
        with self._lock:
            last = self._db.execute(
                "SELECT MAX(finished_at) FROM jobs WHERE repo = ? AND branch = ?"
                " AND state = 'succeeded'",
                (repo, branch),
            ).fetchone()[0]
            rows = self._db.execute(
                "SELECT p.pusher FROM events AS e LEFT JOIN pushers AS p ON p.event_id = e.id"
                " WHERE e.repo = ? AND e.branch = ? AND e.outcome NOT IN ('own-push', 'deleted')"
                " AND (e.received_at > ? OR e.new = ?)",
                (repo, branch, last or 0.0, tip),
            ).fetchall()
        return [row[0] for row in rows]

    def own_commits(self, repo: str) -> set[str]:
        """Commits rerund itself wrote for ``repo`` (trusted: they are its own reruns)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT s.new_commit FROM steps AS s JOIN jobs AS j ON j.id = s.job_id"
                " WHERE j.repo = ? AND s.new_commit IS NOT NULL",
                (repo,),
            ).fetchall()
        return {str(row[0]) for row in rows}
