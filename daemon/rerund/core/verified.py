"""Marks that a step reproduced its outputs identically, kept as git notes.

A rerun that changes nothing makes no commit, so the record's inputs still
differ from its own commit's — it would look stale after every later push.
rerund notes on the record's commit that it was reproduced at a given tip
(``refs/notes/rerund``, one ``reproduced-at <sha>`` line per time); the
planner treats a difference as explained when the input had the same content
at that tip. The notes travel with the branch, so every clone agrees.
"""

from __future__ import annotations

from collections.abc import Mapping

from rerund.core.gitrepo import GitRepo

NOTES_REF = "refs/notes/rerund"
_PREFIX = "reproduced-at "


def mark_reproduced(repo: GitRepo, record_commit: str, at_commit: str) -> None:
    """Note that ``record_commit``'s step reproduced identically on ``at_commit``."""
    repo.run("notes", f"--ref={NOTES_REF}", "append", "-m", _PREFIX + at_commit, record_commit)


def reproductions(repo: GitRepo) -> Mapping[str, list[str]]:
    """Record commit -> the tips it was reproduced at (empty when nothing was noted)."""
    if repo.resolve(NOTES_REF) is None:
        return {}
    listing = repo.run("notes", f"--ref={NOTES_REF}", "list").decode().split()
    pairs = list(zip(listing[0::2], listing[1::2], strict=True))  # (note blob, commit)
    texts = repo.read_objects(blob for blob, _ in pairs)  # equal notes share one blob
    found: dict[str, list[str]] = {}
    for blob, commit in pairs:
        info = texts.get(blob)
        if info is not None:
            found[commit] = [
                line[len(_PREFIX) :].strip()
                for line in info.data.decode("utf-8", "replace").splitlines()
                if line.startswith(_PREFIX)
            ]
    return found
