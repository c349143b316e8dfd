"""The SQLite store: coalescing, deduplication, leases and recovery, on a real database file."""

from __future__ import annotations

import time
from pathlib import Path

from rerund.service.store import Notification, Store

A, B, C = "a" * 40, "b" * 40, "c" * 40


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state" / "rerund.sqlite")


def test_newer_push_supersedes_queued_work_and_duplicates_are_recognised(tmp_path: Path) -> None:
    """A second push to a branch updates the queued job; a repeated delivery id stores nothing."""
    store = _store(tmp_path)
    first = store.record_event(Notification("lab", "main", A, B, "github", "d1"), now=1.0)
    second = store.record_event(Notification("lab", "main", B, C, "github", "d2"), now=2.0)
    again = store.record_event(Notification("lab", "main", B, C, "github", "d2"), now=3.0)

    assert ("queued", "coalesced", "duplicate") == (first.outcome, second.outcome, again.outcome)
    assert first.job_id == second.job_id
    job = store.job(first.job_id or 0)
    assert job is not None and C == job.target
    assert {"queued": 1, "events": 2} == store.counts()


def test_one_job_per_repository_runs_at_a_time_under_a_lease(tmp_path: Path) -> None:
    """While a repository's job runs, its next job waits; an expired lease requeues the job."""
    store = _store(tmp_path)
    store.record_event(Notification("lab", "main", A, B, "hook"), now=1.0)
    claimed = store.claim(now=10.0, lease_s=5.0, max_attempts=3)
    store.record_event(Notification("lab", "main", B, C, "hook"), now=11.0)

    assert claimed is not None
    assert None is store.claim(now=12.0, lease_s=5.0, max_attempts=3)
    again = store.claim(now=16.0, lease_s=5.0, max_attempts=3)  # the lease ran out at 15
    assert again is not None and claimed.id == again.id and 2 == again.attempts


def test_recovery_requeues_running_jobs_but_not_forever(tmp_path: Path) -> None:
    """After a crash a running job is queued again, unless it used up its attempts."""
    store = _store(tmp_path)
    store.record_event(Notification("lab", "main", A, B, "hook"), now=1.0)
    store.record_event(Notification("other", "main", A, C, "hook"), now=1.0)
    first = store.claim(now=2.0, lease_s=60.0, max_attempts=2)
    second = store.claim(now=2.0, lease_s=60.0, max_attempts=2)
    assert first is not None and second is not None
    assert 2 == store.recover(max_attempts=2)
    store.claim(now=3.0, lease_s=60.0, max_attempts=2)  # the first job's second attempt

    assert 0 == store.recover(max_attempts=2)  # it died again: failed, not requeued
    states = {job.repo: (job.state, job.attempts) for job in store.jobs()}
    assert {"lab": ("failed", 2), "other": ("queued", 1)} == states


def test_own_push_and_handled_tips_create_no_job(tmp_path: Path) -> None:
    """A tip rerund published, or one already handled, is noted without new work."""
    store = _store(tmp_path)
    store.record_event(Notification("lab", "main", A, B, "hook"), now=1.0)
    job = store.claim(now=2.0, lease_s=60.0, max_attempts=3)
    assert job is not None
    store.note_publishing("lab", "main", C)
    store.finish(job, "succeeded", now=3.0, handled=C, published=C)

    own = store.record_event(Notification("lab", "main", B, C, "watch"), now=4.0)
    forced = store.record_event(Notification("lab", "main", C, C, "manual", force=True), now=5.0)

    assert ("own-push", "queued") == (own.outcome, forced.outcome)


def test_old_events_are_pruned(tmp_path: Path) -> None:
    """Notifications older than the cut-off are deleted; newer ones and their ids stay."""
    store = Store(tmp_path / "rerund.sqlite")
    for number, received_at in enumerate((10.0, 20.0, 30.0)):
        note = Notification("lab", "main", "0" * 40, f"{number + 1:040d}", "hook", f"d{number}")
        store.record_event(note, now=received_at)
    assert 2 == store.prune_events(before=25.0)
    assert (0, 1) == (store.event_count("d0"), store.event_count("d2"))
    store.close()


def test_a_renewed_lease_keeps_its_job_running(tmp_path: Path) -> None:
    """Renewing extends the lease from the time of the write: no second attempt starts."""
    store = _store(tmp_path)
    store.record_event(Notification("lab", "main", A, B, "hook"), now=1.0)
    start = time.time()
    claimed = store.claim(now=start - 4.0, lease_s=5.0, max_attempts=3)  # good until start + 1
    assert claimed is not None
    assert store.renew(claimed, lease_s=5.0)  # good until at least start + 5

    assert None is store.claim(now=start + 4.0, lease_s=5.0, max_attempts=3)
    job = store.job(claimed.id)
    assert job is not None and ("running", 1) == (job.state, job.attempts)
    again = store.claim(now=time.time() + 6.0, lease_s=5.0, max_attempts=3)  # ran out unrenewed
    assert again is not None and (claimed.id, 2) == (again.id, again.attempts)


def test_a_job_whose_lease_ran_out_on_every_attempt_fails(tmp_path: Path) -> None:
    """After max_attempts expired leases the job is failed, not offered again."""
    store = _store(tmp_path)
    store.record_event(Notification("lab", "main", A, B, "hook"), now=1.0)
    first = store.claim(now=10.0, lease_s=5.0, max_attempts=2)
    second = store.claim(now=16.0, lease_s=5.0, max_attempts=2)
    assert first is not None and second is not None and 2 == second.attempts

    assert None is store.claim(now=22.0, lease_s=5.0, max_attempts=2)
    job = store.job(first.id)
    assert job is not None
    assert ("failed", "lease expired too often", 2) == (job.state, job.error, job.attempts)
    # The branch's next push is new work, not blocked by the failed job.
    later = store.record_event(Notification("lab", "main", B, C, "hook"), now=23.0)
    assert "queued" == later.outcome
