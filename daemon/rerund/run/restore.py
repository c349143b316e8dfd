"""Put a work tree back to its last commit after a step failed or was stopped.

A failed step leaves unlocked outputs with new content, removed files and
new ones; left there, they would make the next ``rerund rerun`` refuse a
dirty tree and would look like results. What the step changed is moved
aside next to its log (``<log>.partial/``) for debugging, then the tracked
files are checked out as committed and the step's new files removed. The
tree was clean when the rerun began, so everything in it that differs from
HEAD came from the step.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rerund.core.gitrepo import WITHOUT_ANNEX_FILTER, GitRepo


def partial_dir(log_path: Path) -> Path:
    """Where the partial outputs of the step logged at ``log_path`` are kept."""
    return log_path.with_name(log_path.name.removesuffix(".log") + ".partial")


def restore_tree(repo: GitRepo, keep_in: Path) -> list[str]:
    """Move what differs from HEAD into ``keep_in``, then reset the tree to HEAD.

    Returns the paths that were moved aside (relative to the work tree).
    """
    changed = _changed_files(repo)
    if not changed:  # e.g. inputs could not be fetched: nothing ran, nothing to undo
        return []
    if keep_in.exists():
        shutil.rmtree(keep_in)
    kept: list[str] = []
    for path in changed:
        source = repo.path / path
        if not source.is_symlink() and not source.is_file():
            continue  # removed by the step: nothing partial to keep
        target = keep_in / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)  # a rename: no copy of large outputs
        kept.append(path)
    # With the user's own filters: an unlocked annexed file gets its content back,
    # not its pointer text; a locked one comes back as its symlink.
    repo.run("reset", "--quiet", "--hard", "HEAD")
    repo.run("clean", "-fdq")
    return kept


def _changed_files(repo: GitRepo) -> list[str]:
    out = repo.run(
        *WITHOUT_ANNEX_FILTER,
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--no-renames",
    )
    return [entry[3:] for entry in out.decode("utf-8").split("\0") if entry]
