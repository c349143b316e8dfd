"""The Slurm journal: every step handed to Slurm, in the daemon's SQLite file.

A row is written before the daemon waits on a job and updated as Slurm reports
on it, so a restarted daemon finds its jobs again (see ``rerund.run.slurm``),
and the API, ``rerund jobs`` and ``/metrics`` can show them.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path
from typing import Any

from rerund.run.slurm import SlurmEntry, queue_wait_s

_SCHEMA = """
CREATE TABLE IF NOT EXISTS slurm_jobs (
    repo TEXT NOT NULL, record TEXT NOT NULL, head TEXT NOT NULL,
    job_id INTEGER NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL,
    work_tree TEXT NOT NULL, out_path TEXT NOT NULL, prepared TEXT NOT NULL,
    state TEXT NOT NULL, slurm_id TEXT, node TEXT, reason TEXT,
    submitted_at REAL, started_at REAL, finished_at REAL, retries INTEGER NOT NULL,
    new_commit TEXT, error TEXT,
    PRIMARY KEY (repo, record, head)
);
CREATE INDEX IF NOT EXISTS slurm_jobs_by_job ON slurm_jobs (job_id, position);
"""
_FIELDS = [field.name for field in dataclasses.fields(SlurmEntry)]


class SlurmJournalStore:
    """The journal on its own connection to the store's file (WAL: they do not block)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA synchronous=FULL")  # a submitted job id must survive a crash
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def load(self, repo: str, record: str, head: str) -> SlurmEntry | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(_FIELDS)} FROM slurm_jobs"
                " WHERE repo = ? AND record = ? AND head = ?",
                (repo, record, head),
            ).fetchone()
        return SlurmEntry(*row) if row else None

    def save(self, entry: SlurmEntry) -> None:
        values = dataclasses.astuple(entry)
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO slurm_jobs ({', '.join(_FIELDS)})"
                f" VALUES ({', '.join('?' * len(_FIELDS))})",
                values,
            )

    def for_jobs(self, job_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """What Slurm did for each of these jobs' steps, newest submission per step."""
        if not job_ids:
            return {}
        marks = ", ".join("?" * len(job_ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_FIELDS)} FROM slurm_jobs WHERE job_id IN ({marks})"
                " ORDER BY submitted_at",
                job_ids,
            ).fetchall()
        found: dict[int, dict[int, dict[str, Any]]] = {}
        for row in rows:
            entry = SlurmEntry(*row)
            found.setdefault(entry.job_id, {})[entry.position] = describe(entry)
        return {
            job: [by_position[p] for p in sorted(by_position)] for job, by_position in found.items()
        }

    def pending(self) -> int:
        """Steps waiting in Slurm's queue now."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM slurm_jobs WHERE state IN ('submitting', 'PENDING')"
            ).fetchone()
        return int(row[0])


def describe(entry: SlurmEntry) -> dict[str, Any]:
    """The public face of one Slurm-run step (no server paths)."""
    wait = queue_wait_s(entry)
    return {
        "position": entry.position,
        "slurm_id": entry.slurm_id,
        "state": entry.state,
        "node": entry.node,
        "reason": entry.reason,
        "retries": entry.retries,
        "queue_wait_s": None if wait is None else round(wait, 3),
    }
