"""Continuous verification: is every current record still reproducible? (issue 11)

Verification jobs have their own small queue beside the rerun jobs: they
never publish, never touch a work clone, and may take long, so they must not
hold a rerun worker. One task runs them one at a time, each record in a scratch
clone of a bare mirror (see :mod:`rerund.run.verify`), with annexed content
fetched from the repository's remote. Verdicts are stored per record and
commit in ``verification.sqlite`` in the state directory; a job that was
running when the process died is queued again at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Gauge

from rerund.core.history import dataset_id
from rerund.errors import RerundError, StepCancelledError
from rerund.run.verify import VerifyOptions, current_steps, verify
from rerund.service.mirrors import mirror
from rerund.service.sqlitetx import write_transaction
from rerund.settings import RepoSettings, Settings

log = structlog.get_logger("rerund.service.verification")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verify_jobs (
    id INTEGER PRIMARY KEY, repo TEXT NOT NULL, state TEXT NOT NULL, source TEXT NOT NULL,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL, head TEXT,
    reproducible INTEGER, total INTEGER, error TEXT
);
CREATE INDEX IF NOT EXISTS verify_jobs_by_repo ON verify_jobs (repo, id);
CREATE TABLE IF NOT EXISTS verdicts (
    job INTEGER NOT NULL, repo TEXT NOT NULL, record TEXT NOT NULL, head TEXT NOT NULL,
    state TEXT NOT NULL, verified_at REAL NOT NULL, detail TEXT NOT NULL,
    PRIMARY KEY (job, record)
);
CREATE INDEX IF NOT EXISTS verdicts_by_record ON verdicts (repo, record, verified_at);
"""

_TICK_S = 30.0


@dataclass(frozen=True)
class VerifyJob:
    id: int
    repo: str
    state: str
    """``queued``, ``running``, ``done`` (every record judged) or ``failed`` (could not verify)."""
    source: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    head: str | None
    reproducible: int | None
    total: int | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class VerificationStore:
    """The verification queue and the verdicts, in their own SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._lock)

    def request(self, repo: str, *, source: str, now: float) -> tuple[int, bool]:
        """Queue a verification of ``repo``; a queued one absorbs the request.

        Returns the job id and whether it is new.
        """
        with self._write() as db:
            row = db.execute(
                "SELECT id FROM verify_jobs WHERE repo = ? AND state = 'queued'", (repo,)
            ).fetchone()
            if row is not None:
                return int(row[0]), False
            cursor = db.execute(
                "INSERT INTO verify_jobs (repo, state, source, created_at)"
                " VALUES (?, 'queued', ?, ?)",
                (repo, source, now),
            )
            return int(cursor.lastrowid or 0), True

    def recover(self) -> int:
        """Jobs that were running when the process died go back to the queue."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE verify_jobs SET state = 'queued', started_at = NULL WHERE state = 'running'"
            )
            return cursor.rowcount

    def claim(self, *, now: float) -> VerifyJob | None:
        with self._write() as db:
            row = db.execute(
                "SELECT id FROM verify_jobs WHERE state = 'queued' ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE verify_jobs SET state = 'running', started_at = ? WHERE id = ?",
                (now, row[0]),
            )
            return self._job(db, int(row[0]))

    def requeue(self, job_id: int) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE verify_jobs SET state = 'queued', started_at = NULL WHERE id = ?",
                (job_id,),
            )

    def finish(
        self,
        job_id: int,
        *,
        now: float,
        head: str | None,
        verdicts: list[dict[str, Any]],
        error: str | None = None,
    ) -> None:
        """Record a job's outcome and its verdicts in one transaction."""
        reproducible = sum(1 for verdict in verdicts if verdict["state"] == "identical")
        with self._write() as db:
            job = self._job(db, job_id)
            if job is None:
                return
            db.execute(
                "UPDATE verify_jobs SET state = ?, finished_at = ?, head = ?,"
                " reproducible = ?, total = ?, error = ? WHERE id = ?",
                (
                    "failed" if error else "done",
                    now,
                    head,
                    None if error else reproducible,
                    None if error else len(verdicts),
                    error,
                    job_id,
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (job_id, job.repo, v["commit"], head or "", v["state"], now, json.dumps(v))
                    for v in verdicts
                ],
            )

    def job(self, job_id: int) -> VerifyJob | None:
        with self._lock:
            return self._job(self._db, job_id)

    def _job(self, db: sqlite3.Connection, job_id: int) -> VerifyJob | None:
        row = db.execute("SELECT * FROM verify_jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else VerifyJob(*row)

    def jobs(self, repo: str, *, limit: int = 20) -> list[VerifyJob]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM verify_jobs WHERE repo = ? ORDER BY id DESC LIMIT ?", (repo, limit)
            ).fetchall()
        return [VerifyJob(*row) for row in rows]

    def latest_done(self, repo: str) -> VerifyJob | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM verify_jobs WHERE repo = ? AND state = 'done'"
                " ORDER BY id DESC LIMIT 1",
                (repo,),
            ).fetchone()
        return None if row is None else VerifyJob(*row)

    def verdicts(self, job_id: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT detail, verified_at, head FROM verdicts WHERE job = ? ORDER BY rowid",
                (job_id,),
            ).fetchall()
        return [{**json.loads(detail), "verified_at": at, "at": head} for detail, at, head in rows]

    def record_states(self, repo: str) -> dict[str, str]:
        """Each record's newest verdict (``identical``, ``differs``, ...)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record, state FROM verdicts WHERE repo = ? ORDER BY verified_at",
                (repo,),
            ).fetchall()
        return {str(record): str(state) for record, state in rows}

    def last_requested(self, repo: str) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(created_at) FROM verify_jobs WHERE repo = ?", (repo,)
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])


def due(settings: RepoSettings, last_requested: float | None, now: float) -> bool:
    """Whether ``verify_every`` calls for a new verification of this repository now."""
    every = settings.verify_every_s
    if every is None:
        return False
    return last_requested is None or now - last_requested >= every


class Verification:
    """The verification queue's owner: requests, the runner task, the gauges."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        registry: CollectorRegistry,
        *,
        max_parallel: int,
    ) -> None:
        self._settings = settings
        self.store = VerificationStore(settings().state_dir / "verification.sqlite")
        self._wake = asyncio.Event()
        self._cancel = threading.Event()
        self._max_parallel = max_parallel
        self.reproducible = Gauge(
            "rerund_reproducible_records",
            "Current records that reproduced identically at the last verification",
            ["repo"],
            registry=registry,
        )
        self.verified = Gauge(
            "rerund_verified_records",
            "Current records judged at the last verification",
            ["repo"],
            registry=registry,
        )
        for repo in settings().all_repos():
            self._publish_gauges(repo.name)

    def close(self) -> None:
        self.store.close()

    async def request(self, repo: str, *, source: str) -> tuple[int, bool]:
        job_id, new = await asyncio.to_thread(
            self.store.request, repo, source=source, now=time.time()
        )
        self._wake.set()
        return job_id, new

    async def run(self) -> None:
        """The runner: schedule due repositories, then verify queued jobs one at a time."""
        requeued = await asyncio.to_thread(self.store.recover)
        if requeued:
            log.info("verification jobs requeued", count=requeued)
        try:
            while True:
                await self._schedule()
                job = await asyncio.to_thread(self.store.claim, now=time.time())
                if job is None:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=_TICK_S)
                    continue
                await self._run_job(job)
        finally:
            self._cancel.set()  # a command still running in a thread stops now

    async def _schedule(self) -> None:
        now = time.time()
        for repo in self._settings().all_repos():
            if repo.verify_every_s is None:
                continue
            last = await asyncio.to_thread(self.store.last_requested, repo.name)
            if due(repo, last, now):
                await self.request(repo.name, source="schedule")

    async def _run_job(self, job: VerifyJob) -> None:
        repo = self._settings().repo(job.repo)
        started = time.monotonic()
        head: str | None = None
        verdicts: list[dict[str, Any]] = []
        error: str | None = f"repository {job.repo} is not configured" if repo is None else None
        try:
            if repo is not None:
                head, verdicts = await asyncio.to_thread(
                    _verify_repo, self._settings().state_dir, repo, self._options(job)
                )
        except StepCancelledError:
            await asyncio.shield(asyncio.to_thread(self.store.requeue, job.id))
            return
        except (RerundError, OSError) as exc:
            error = str(exc)
        await asyncio.shield(
            asyncio.to_thread(
                self.store.finish,
                job.id,
                now=time.time(),
                head=head,
                verdicts=verdicts,
                error=error,
            )
        )
        self._publish_gauges(job.repo)
        log.info(
            "verification finished",
            repo=job.repo,
            job=job.id,
            reproducible=sum(1 for v in verdicts if v["state"] == "identical"),
            total=len(verdicts),
            error=error,
            duration_s=round(time.monotonic() - started, 3),
        )

    def _options(self, job: VerifyJob) -> VerifyOptions:
        settings = self._settings()
        return VerifyOptions(
            jobs=self._max_parallel,
            timeout_s=settings.step_timeout_s,
            log_dir=settings.state_dir / "logs" / f"verify-{job.id}",
            cancel=self._cancel,
        )

    def _publish_gauges(self, repo: str) -> None:
        job = self.store.latest_done(repo)
        if job is not None:
            self.reproducible.labels(repo).set(job.reproducible or 0)
            self.verified.labels(repo).set(job.total or 0)


def _verify_repo(
    state_dir: Path, repo: RepoSettings, options: VerifyOptions
) -> tuple[str, list[dict[str, Any]]]:
    """Verify every current record at the remote's tip (blocking; run it in a thread)."""
    with mirror(state_dir, repo) as git:
        head = git.text("rev-parse", f"refs/heads/{repo.branch}")
        steps = current_steps(git, repo.branch, head)
        dsid = dataset_id(git, head)
    content = repo.remote if repo.local_path is None else str(repo.local_path)
    # The scratch clones borrow the mirror's objects; a later fetch only adds to them.
    report = verify(
        git,
        head,
        steps,
        dsid,
        options=replace(options, content_remote=content),
    )
    return head, [verdict.to_json() for verdict in report.verdicts]
