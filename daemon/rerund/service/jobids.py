"""Where job ids left traces outside the store, so a new store never reuses one.

A job id names ``logs/job-<id>``, ``failed/<repo>/job-<id>`` and, on the remote,
``refs/rerund/failed/<id>``. When the SQLite file is lost these outlive it; a new
store starts above the highest id any of them carries (blocking: run in a thread).
"""

from __future__ import annotations

import re
from pathlib import Path

import structlog

from rerund.core.gitrepo import GitRepo
from rerund.errors import GitError
from rerund.settings import Settings

log = structlog.get_logger("rerund.service.jobids")

_JOB_DIR = re.compile(r"job-([0-9]+)")
_FAILED_REF = re.compile(r"refs/rerund/failed/([0-9]+)")


def job_id_floor(settings: Settings) -> int:
    """One more than the highest job id found in the state directory and on the remotes."""
    seen = [0]
    state = settings.state_dir
    for pattern in ("logs/job-*", "failed/*/job-*"):
        seen.extend(_ids(path.name, _JOB_DIR) for path in state.glob(pattern))
    for repo in settings.all_repos():
        try:
            out = GitRepo(Path.cwd()).text("ls-remote", repo.remote, "refs/rerund/failed/*")
        except GitError as exc:  # an unreachable remote: the other traces still count
            log.warning("cannot list a remote's failed refs", repo=repo.name, error=str(exc))
            continue
        seen.extend(_ids(line.split()[-1], _FAILED_REF) for line in out.splitlines() if line)
    return max(seen) + 1


def _ids(text: str, pattern: re.Pattern[str]) -> int:
    match = pattern.fullmatch(text)
    return int(match.group(1)) if match else 0
