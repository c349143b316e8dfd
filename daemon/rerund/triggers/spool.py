"""The post-receive hook's drop box: one small file per push, read by the daemon.

The hook (``hooks/post-receive``) writes ``repo <git dir>`` and the pushed
``<old> <new> <ref>`` lines to a temporary name and renames it into the spool
directory, so the daemon never reads half a file. Nothing is lost while the
daemon is down: files wait here until it starts.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from rerund.settings import RepoSettings

log = structlog.get_logger("rerund.spool")

SUFFIX = ".push"
MAX_FILE_BYTES = 1024 * 1024
_LINE = re.compile(r"([0-9a-f]{40}) ([0-9a-f]{40}) (refs/\S+)")


@dataclass(frozen=True)
class RefUpdate:
    repo: str
    branch: str
    old: str
    new: str
    pusher: str | None = None
    """The ``pusher`` line the hook wrote: who the git server says pushed."""


def pending(spool_dir: Path) -> list[Path]:
    """Spool files in arrival order (their names start with a timestamp)."""
    if not spool_dir.is_dir():
        return []
    return sorted(path for path in spool_dir.iterdir() if path.name.endswith(SUFFIX))


def read(path: Path, repos: tuple[RepoSettings, ...]) -> Iterator[RefUpdate]:
    """The configured branch updates in one spool file; anything else is logged and skipped."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            log.warning("spool file too large; ignored", file=path.name)
            return
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        log.warning("spool file unreadable", file=path.name, error=str(exc))
        return
    if not lines or not lines[0].startswith("repo "):
        log.warning("spool file malformed; ignored", file=path.name)
        return
    repo = _repo_at(Path(lines[0][5:]), repos)
    if repo is None:
        log.warning("push to a repository rerund does not serve", git_dir=lines[0][5:])
        return
    pusher = next((line[7:].strip() for line in lines[1:2] if line.startswith("pusher ")), None)
    for line in lines[1:]:
        match = _LINE.fullmatch(line.strip())
        if match is None:
            continue
        old, new, ref = match.groups()
        if ref == f"refs/heads/{repo.branch}":
            yield RefUpdate(repo.name, repo.branch, old, new, _vouched(path, repo, pusher))


def _vouched(path: Path, repo: RepoSettings, claimed: str | None) -> str | None:
    """Who pushed, as far as the spool file's owner can vouch for it.

    The spool is writable by every local user, so a claim is believed only from
    the account that owns the bare repository (a forge's service account, which
    sets ``GL_USERNAME`` or ``GITEA_PUSHER_NAME``) or root; anyone else's file
    names its owner, whatever it claims.
    """
    try:
        owner = path.stat().st_uid
        local = repo.local_path
        vouching = {0, local.stat().st_uid} if local is not None else {0}
    except OSError:
        return None
    if owner in vouching:
        return claimed or None
    try:
        return pwd.getpwuid(owner).pw_name
    except KeyError:
        return str(owner)


def _repo_at(git_dir: Path, repos: tuple[RepoSettings, ...]) -> RepoSettings | None:
    try:
        wanted = os.path.realpath(git_dir)
    except OSError:
        return None
    for repo in repos:
        local = repo.local_path
        if local is not None and os.path.realpath(local) == wanted:
            return repo
    return None


def prepare_spool(spool_dir: Path) -> None:
    """Create the spool so that the git server's user may drop files in it (sticky, 1777)."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    spool_dir.chmod(0o1777)
