"""Marks that a step reproduced its outputs identically, kept as git notes.

A rerun that changes nothing makes no commit, so the record's inputs still
differ from its own commit's — it would look stale after every later push.
rerund notes on the record's commit that it was reproduced at a given tip
(``refs/notes/rerund``, one ``reproduced-at <sha>`` line per time); the
planner treats a difference as explained when the input had the same content
at that tip.

Every clone must agree with the server about what is stale, and clones
fetch ``refs/heads/*`` but never ``refs/notes/*``. So the daemon publishes
the same notes commit also as the branch ``rerund-notes`` (as git-annex
keeps its own ``git-annex`` branch): ``git clone``, ``datalad clone``,
``git pull`` and ``datalad update`` bring it as ``origin/rerund-notes``
with no special fetch, and planning reads the union of the local notes and
every remote's copy — without a network call.
"""

from __future__ import annotations

from collections.abc import Mapping

from rerund.core.gitrepo import GitRepo

NOTES_REF = "refs/notes/rerund"
NOTES_BRANCH = "refs/heads/rerund-notes"
"""Where the daemon publishes the notes too, so that every clone fetches them."""
_PREFIX = "reproduced-at "


def mark_reproduced(repo: GitRepo, record_commit: str, at_commit: str) -> None:
    """Note that ``record_commit``'s step reproduced identically on ``at_commit``."""
    repo.run("notes", f"--ref={NOTES_REF}", "append", "-m", _PREFIX + at_commit, record_commit)


def reproductions(repo: GitRepo) -> Mapping[str, list[str]]:
    """Record commit -> the tips it was reproduced at, from every copy of the notes here."""
    refs = repo.run(
        "for-each-ref", "--format=%(objectname) %(refname)", NOTES_REF, NOTES_BRANCH, "refs/remotes"
    ).decode()
    tips = {
        sha
        for sha, _, name in (line.partition(" ") for line in refs.splitlines())
        if name in (NOTES_REF, NOTES_BRANCH) or name.endswith("/rerund-notes")
    }
    pairs: set[tuple[str, str]] = set()  # (note blob, annotated commit)
    for tip in sorted(tips):
        pairs.update(_notes_in(repo, tip))
    texts = repo.read_objects(blob for blob, _ in sorted(pairs))  # equal notes share one blob
    found: dict[str, list[str]] = {}
    for blob, commit in sorted(pairs):
        info = texts.get(blob)
        if info is not None:
            found.setdefault(commit, []).extend(
                line[len(_PREFIX) :].strip()
                for line in info.data.decode("utf-8", "replace").splitlines()
                if line.startswith(_PREFIX)
            )
    return found


def _notes_in(repo: GitRepo, notes_commit: str) -> list[tuple[str, str]]:
    """(note blob, annotated commit) pairs of one notes commit, whatever its fan-out."""
    out = repo.run("ls-tree", "-r", "-z", notes_commit).decode()
    pairs = []
    for entry in out.split("\0"):
        meta, _, path = entry.partition("\t")
        parts = meta.split()
        commit = path.replace("/", "")
        if len(parts) == 3 and parts[1] == "blob" and len(commit) in (40, 64):
            pairs.append((parts[2], commit))
    return pairs
