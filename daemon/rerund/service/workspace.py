"""The work clone of one repository inside the state directory.

Plans run in a clean checkout of the pushed tip — never in the bare
repository and never in a user's clone. One clone per repository is reused
between jobs (one plan at a time per repository); a failed job's tree is moved
aside for inspection and the next job starts from a fresh clone.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import structlog

from rerund.core.gitrepo import WITHOUT_ANNEX_FILTER, GitRepo
from rerund.service.hygiene import NO_HOOKS
from rerund.service.retry import transient_git
from rerund.settings import RepoSettings

COMMITTER = {
    "GIT_AUTHOR_NAME": "rerund",
    "GIT_AUTHOR_EMAIL": "rerund@localhost",
    "GIT_COMMITTER_NAME": "rerund",
    "GIT_COMMITTER_EMAIL": "rerund@localhost",
    **NO_HOOKS,
}


log = structlog.get_logger("rerund.service.workspace")

KEEP_FAILED = 10
"""Kept failed work trees per repository; older ones beyond this are deleted."""
KEEP_FAILED_MAX_AGE_S = 14 * 24 * 3600

_checked_for_survivors: set[Path] = set()


def survivors(tree: Path) -> list[int]:
    """Processes (of any earlier daemon) whose working directory is inside ``tree``."""
    found = []
    root = os.path.realpath(tree)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdecimal():
            continue
        try:
            cwd = str((entry / "cwd").readlink())
        except OSError:  # gone, or not ours to look at
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            found.append(int(entry.name))
    return found


def prune_kept(failed_dir: Path, now: float) -> None:
    """Keep the newest ``KEEP_FAILED`` trees younger than ``KEEP_FAILED_MAX_AGE_S``."""
    trees = sorted(failed_dir.iterdir(), key=lambda path: path.stat().st_mtime, reverse=True)
    for position, tree in enumerate(trees):
        if position >= KEEP_FAILED or now - tree.stat().st_mtime > KEEP_FAILED_MAX_AGE_S:
            shutil.rmtree(tree, ignore_errors=True)


def read_remote_tip(settings: RepoSettings) -> str | None:
    """The branch tip at the remote now (read directly when it is a local bare repository)."""
    local = settings.local_path
    if local is not None and local.is_dir():
        return GitRepo(local).resolve(f"refs/heads/{settings.branch}")
    out = GitRepo(Path.cwd()).run("ls-remote", settings.remote, f"refs/heads/{settings.branch}")
    line = out.decode().split()
    return line[0] if line else None


def work_branch(branch: str) -> str:
    return f"rerund/{branch}"


class Workspace:
    def __init__(self, state_dir: Path, repo: RepoSettings) -> None:
        self.settings = repo
        self.path = state_dir / "work" / repo.slug
        self.failed_dir = state_dir / "failed" / repo.slug

    def prepare(self, fallback: str) -> tuple[GitRepo, str]:
        """A clean checkout of the remote branch's current tip; returns it with the repo.

        Planning at the current tip (not the pushed one, ``fallback``) lets one job
        cover every push that came in since, and publish with a fast-forward.
        """
        if self.path.exists() and self.path not in _checked_for_survivors:
            self._set_aside_if_in_use()
        _checked_for_survivors.add(self.path)
        if not (self.path / ".git").is_dir():
            self._clone()
        repo = GitRepo(self.path, env=COMMITTER)
        self.fetch(repo)
        target = self.tracked_tip(repo) or fallback
        if repo.resolve(target) is None:
            transient_git(lambda: repo.run("fetch", "--quiet", "origin", target))()
        # git-annex's post-checkout hook and smudge filter would only fill in unlocked
        # files' content, which the executor fetches itself when a step needs it.
        repo.run(
            *WITHOUT_ANNEX_FILTER,
            "-c",
            "core.hooksPath=/dev/null",
            "checkout",
            "--quiet",
            "--force",
            "-B",
            work_branch(self.settings.branch),
            target,
        )
        repo.run("clean", "-ffdxq")
        return repo, target

    def fetch(self, repo: GitRepo) -> None:
        branch = self.settings.branch
        # rerund's notes (identical reproductions) follow the remote: it is their home.
        refspecs = [
            f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
            "+refs/notes/*:refs/notes/*",
        ]
        if (self.path / ".git" / "annex").is_dir():
            refspecs.append("+refs/heads/git-annex:refs/remotes/origin/git-annex")
        transient_git(lambda: repo.run("fetch", "--quiet", "--no-tags", "origin", *refspecs))()

    def tracked_tip(self, repo: GitRepo) -> str | None:
        return repo.resolve(f"refs/remotes/origin/{self.settings.branch}")

    def quarantine(self, job_id: int | str) -> Path:
        """Move the tree aside (kept for inspection); the next job clones afresh."""
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        destination = self.failed_dir / f"job-{job_id}"
        if destination.exists():
            shutil.rmtree(destination)
        self.path.rename(destination)
        os.utime(destination)  # its age counts from being set aside
        prune_kept(self.failed_dir, time.time())
        return destination

    def _set_aside_if_in_use(self) -> None:
        """A tree that a process from a killed daemon still works in is never reused."""
        pids = survivors(self.path)
        if pids:
            kept = self.quarantine(f"survivors-{time.time_ns()}")
            log.warning("work tree still in use; set aside", pids=pids, work_tree=kept.name)

    def _clone(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        runner = GitRepo(self.path.parent, env=COMMITTER)
        transient_git(
            lambda: runner.run(
                "clone", "--quiet", "--no-checkout", "--origin", "origin",
                "--branch", self.settings.branch, self.settings.remote, str(self.path),
            )
        )()  # fmt: skip
        repo = GitRepo(self.path, env=COMMITTER)
        has_annex = repo.run("ls-remote", "origin", "refs/heads/git-annex", check=False).strip()
        if has_annex:
            repo.annex("init", "--quiet", f"rerund work clone of {self.settings.name}")
            # Content rerund produces is pushed to the remote; never keep the only copy.
            repo.run("config", "annex.autocommit", "false")
