"""The post-receive hook's drop box: one small file per push, read by the daemon.

The hook (``hooks/post-receive``) writes ``repo <git dir>`` and the pushed
``<old> <new> <ref>`` lines to a temporary name and renames it into the spool
directory, so the daemon never reads half a file. Nothing is lost while the
daemon is down: files wait here until it starts.

The spool is writable by one group (``spool_group``, or the repositories' own
group), not by everyone; still, whatever is in it is input from another user.
An entry is accepted only if it is a regular file (opened without following
links, without blocking), written by the daemon's user or by the owner of the
repository it names, at most ``MAX_FILE_BYTES`` long, naming a served
repository and holding only well-formed lines. Anything else is moved to
``rejected/`` with the reason logged; it never stops intake.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from rerund.settings import RepoSettings
from rerund.triggers.webhooks import ref_problem

log = structlog.get_logger("rerund.spool")

SUFFIX = ".push"
REJECTED = "rejected"
MAX_FILE_BYTES = 1024 * 1024
SPOOL_MODE = 0o2770  # setgid: files dropped in keep the spool's group
_LINE = re.compile(r"([0-9a-f]{40}) ([0-9a-f]{40}) (refs/\S+)")


@dataclass(frozen=True)
class RefUpdate:
    repo: str
    branch: str
    old: str
    new: str
    pusher: str | None = None
    """Who pushed, as far as the file's owner vouches for it (see :func:`_vouched`)."""


class SpoolRejectedError(Exception):
    """A spool entry that is not a push file rerund wrote or expects; ``str`` says why."""


def pending(spool_dir: Path) -> list[Path]:
    """Entries named ``*.push`` in arrival order (names start with a timestamp), any type."""
    try:
        with os.scandir(spool_dir) as entries:
            names = sorted(entry.name for entry in entries if entry.name.endswith(SUFFIX))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [spool_dir / name for name in names]


def read(path: Path, repos: tuple[RepoSettings, ...]) -> list[RefUpdate]:
    """The configured branch updates in one spool file, or :class:`SpoolRejectedError`."""
    data, owner = _read_regular_file(path)
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise SpoolRejectedError("not UTF-8 text") from None
    if not lines or not lines[0].startswith("repo "):
        raise SpoolRejectedError("does not start with a 'repo <git dir>' line")
    repo = _repo_at(lines[0][5:], repos)
    if repo is None:
        named = lines[0][5:][:200]
        raise SpoolRejectedError(f"names a repository rerund does not serve: {named!r}")
    pusher = _vouched(owner, repo, _claimed_pusher(lines))
    updates = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip() or (number == 2 and line.startswith("pusher ")):
            continue
        match = _LINE.fullmatch(line.strip())
        if match is None or ref_problem(match.group(3)) is not None:
            raise SpoolRejectedError(f"line {number} is not '<old> <new> <ref>': {line[:200]!r}")
        old, new, ref = match.groups()
        if ref == f"refs/heads/{repo.branch}":
            updates.append(RefUpdate(repo.name, repo.branch, old, new, pusher))
    return updates


def _claimed_pusher(lines: list[str]) -> str | None:
    """The hook's ``pusher NAME`` line (GL_USERNAME, GITEA_PUSHER_NAME or the Unix user)."""
    second = lines[1] if len(lines) > 1 else ""
    if not second.startswith("pusher "):
        return None
    return second[7:].strip()[:200] or None


def _vouched(owner: int, repo: RepoSettings, claimed: str | None) -> str | None:
    """Who pushed, as far as the spool file's owner can vouch for it.

    Every member of the spool's group can write a file, so a claim is believed
    only from rerund's own account, root, or the account that owns the bare
    repository (a forge's service account, which sets ``GL_USERNAME`` or
    ``GITEA_PUSHER_NAME``); anyone else's file names its owner, whatever it claims.
    """
    if owner in _vouching_owners(repo):
        return claimed
    try:
        return pwd.getpwuid(owner).pw_name
    except KeyError:
        return str(owner)


def _read_regular_file(path: Path) -> tuple[bytes, int]:
    """The content of a regular file (never a link, FIFO, device or directory), capped."""
    try:
        mode = path.lstat().st_mode
    except OSError as exc:
        raise SpoolRejectedError(f"cannot be examined: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise SpoolRejectedError(f"is not a regular file ({_kind(mode)})")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise SpoolRejectedError(f"cannot be opened: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())  # what was opened, not what was looked at
        if not stat.S_ISREG(info.st_mode):
            raise SpoolRejectedError(f"is not a regular file ({_kind(info.st_mode)})")
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise SpoolRejectedError(f"is larger than {MAX_FILE_BYTES} bytes")
    return data, info.st_uid


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISLNK: "a symbolic link",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a file")


def _vouching_owners(repo: RepoSettings) -> set[int]:
    owners = {0, os.geteuid()}
    if repo.local_path is not None:
        with contextlib.suppress(OSError):
            owners.add(repo.local_path.stat().st_uid)
    return owners


def _repo_at(git_dir: str, repos: tuple[RepoSettings, ...]) -> RepoSettings | None:
    try:
        wanted = os.path.realpath(git_dir)
    except (OSError, ValueError):
        return None
    for repo in repos:
        local = repo.local_path
        if local is not None and os.path.realpath(local) == wanted:
            return repo
    return None


def set_aside(path: Path, reason: str) -> Path | None:
    """Move a refused entry into ``rejected/`` (kept for the administrator); ``None`` if stuck."""
    rejected = path.parent / REJECTED
    destination = rejected / f"{path.name}.{time.time_ns()}"
    try:
        rejected.mkdir(mode=0o700, exist_ok=True)
        path.rename(destination)
    except OSError as exc:
        log.error("spool entry refused and cannot be moved", file=path.name, error=str(exc))
        return None
    log.warning("spool entry refused", file=path.name, reason=reason, kept=destination.name)
    return destination


def spool_gid(spool_group: str | None, repos: tuple[RepoSettings, ...]) -> int | None:
    """The group that may write the spool: ``spool_group``, else the repositories' one group."""
    if spool_group is not None:
        if spool_group.isdecimal():
            return int(spool_group)
        return grp.getgrnam(spool_group).gr_gid  # validated when settings are loaded
    groups = set()
    for repo in repos:
        local = repo.local_path
        if local is not None and local.is_dir():
            groups.add(local.stat().st_gid)
    return groups.pop() if len(groups) == 1 else None


def prepare_spool(spool_dir: Path, gid: int | None = None) -> None:
    """Create the spool writable by its owner and one group (setgid, 2770), never by all."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    info = spool_dir.stat()
    if info.st_uid != os.geteuid():  # set up by someone else (hooks install as root)
        if info.st_mode & stat.S_IWOTH:
            log.warning("the spool is writable by everyone; run `rerund hooks install` again")
        return
    if gid is not None and info.st_gid != gid:
        os.chown(spool_dir, -1, gid)
    spool_dir.chmod(SPOOL_MODE)
