"""``rerund jobs`` and ``rerund status``: ask a running daemon over its HTTP API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from rerund.errors import RerundError


def get_json(base_url: str, path: str) -> dict[str, Any]:
    url = base_url.rstrip("/") + path
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http(s) only
            data: dict[str, Any] = json.loads(response.read())
            return data
    except urllib.error.HTTPError as exc:
        raise RerundError(
            f"{url} answered {exc.code}: {exc.read().decode(errors='replace')}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise RerundError(f"no rerund daemon answers at {base_url} ({exc})") from exc


def format_jobs(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "no jobs"
    lines = [f"{'job':>5}  {'state':<10} {'repo':<20} {'branch':<12} target    outcome"]
    for job in jobs:
        lines.append(
            f"{job['id']:>5}  {job['state']:<10} {job['repo'][:20]:<20} {job['branch'][:12]:<12}"
            f" {job['target'][:8]}  {_outcome(job)}"
        )
    return "\n".join(lines)


def _outcome(job: dict[str, Any]) -> str:
    """What became of a job's work: the commit it published, the side ref, the error."""
    parts = []
    if job.get("cause"):
        parts.append(f"caused by a push to {job['cause']}")
    if job.get("published"):
        parts.append(f"published {job['published'][:8]}")
    if job.get("side_ref"):
        parts.append(f"finished steps kept on {job['side_ref']}")
    if job.get("error"):
        parts.append(str(job["error"]))
    parts.extend(_slurm(entry) for entry in job.get("slurm") or [])
    return "; ".join(parts)


def _slurm(entry: dict[str, Any]) -> str:
    """One step's Slurm job: ``step 1: slurm 42 RUNNING on node7, queued 3.1 s``."""
    text = f"step {entry['position']}: slurm {entry.get('slurm_id') or '-'} {entry['state']}"
    if entry.get("node"):
        text += f" on {entry['node']}"
    if entry.get("queue_wait_s") is not None:
        text += f", queued {entry['queue_wait_s']:.1f} s"
    return text


def format_status(health: dict[str, Any]) -> str:
    counts = dict(health.get("jobs", {}))
    events = counts.pop("events", None)  # the daemon counts stored events alongside jobs
    jobs = ", ".join(f"{state} {count}" for state, count in sorted(counts.items())) or "none"
    tail = f"; {events} push event(s) received" if events is not None else ""
    return f"rerund {health.get('version', '?')}: {health.get('status', '?')} (jobs: {jobs}{tail})"
