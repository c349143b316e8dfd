"""The identity of everything a step reads, at one commit (issue 10: least work).

A step's *fingerprint* at a commit is the sorted list of (path, content id)
of every tracked file its declared ``inputs`` and ``extra_inputs`` cover and
every tracked file its command names (implicit inputs), minus the files it
writes. Content ids are those of the history index: blob ids, an annexed
file's pointer id (so locked and unlocked copies of one key agree). A
subdataset on the way to an input contributes its gitlink, so a moved
subdataset never looks unchanged (conservative: it can only cost a run).

Two uses: *early cutoff* compares a step's fingerprint at the tip it would
run on with the one at its own record's commit; *reuse* looks an execution up
by a key made of the command and its fingerprint. No file content is hashed:
two ``git ls-tree`` calls per commit.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rerund.core.gitrepo import GitRepo
from rerund.core.globbing import SpecMatcher, spec_matcher
from rerund.core.history import pointer_content_id
from rerund.core.placeholders import command_text, format_io_specs, named_paths
from rerund.core.records import RunRecord

_GITLINK = "160000"
_SYMLINK = "120000"
_ANNEX_MARK = "/annex/objects/"


@dataclass(frozen=True)
class ReadSet:
    """What a record reads and writes, as matchers over tree paths."""

    reads: tuple[SpecMatcher, ...]
    named: tuple[str, ...]
    writes: tuple[SpecMatcher, ...]
    written: frozenset[str]
    """Files the record's own commit wrote (never inputs, even if the command names them)."""

    def pathspecs(self) -> list[str] | None:
        """Where to look in a tree: ``[]`` is everywhere, ``None`` nowhere."""
        prefixes = [m.literal_prefix for m in self.reads] + list(self.named)
        if not prefixes:
            return None
        return sorted(set(prefixes)) if all(prefixes) else []

    def wanted(self, path: str) -> bool:
        if path in self.written or any(m.covers(path) for m in self.writes):
            return False
        return path in self.named or any(m.covers(path) for m in self.reads)


def read_set(
    record: RunRecord,
    written: Iterable[str],
    substitutions: Mapping[str, str | tuple[str, ...]] | None = None,
) -> ReadSet:
    """The read set of ``record`` whose commit wrote ``written``."""
    mapping: dict[str, str | Sequence[str]] = dict(substitutions or {})
    for name, value in (
        ("inputs", record.inputs),
        ("outputs", record.outputs),
        ("extra_inputs", record.extra_inputs),
    ):
        if value:
            mapping[name] = value
    reads = [
        *format_io_specs(record.inputs, mapping),
        *format_io_specs(record.extra_inputs, mapping),
    ]
    writes = format_io_specs(record.outputs, mapping)
    return ReadSet(
        reads=tuple(spec_matcher(spec, record.pwd) for spec in reads),
        named=tuple(named_paths(command_text(record.cmd), record.pwd)),
        writes=tuple(spec_matcher(spec, record.pwd) for spec in writes),
        written=frozenset(written),
    )


Fingerprint = tuple[tuple[str, str], ...]


def fingerprint(repo: GitRepo, commit: str, reads: ReadSet) -> Fingerprint:
    """(path, content id) of everything ``reads`` covers in ``commit``'s tree."""
    specs = reads.pathspecs()
    if specs is None:
        return ()
    # .gitmodules rides along: without it there is no subdataset to look for.
    looked = [*specs, ".gitmodules"] if specs else specs
    entries = _ls_tree(repo, commit, looked, recursive=True)
    found = {path: ident for path, ident in entries.items() if reads.wanted(path)}
    # Inputs inside a subdataset: ls-tree stops at the gitlink; take the gitlink itself.
    ancestors = sorted({a for spec in specs for a in _ancestors(spec)})
    if ancestors and ".gitmodules" in entries:
        for path, ident in _ls_tree(repo, commit, ancestors, recursive=False).items():
            if ident.startswith("gitlink:"):
                found[path] = ident
    return tuple(sorted(found.items()))


def reuse_key(record: RunRecord, prints: Fingerprint, substitutions: Mapping[str, object]) -> str:
    """The command (placeholders and all, with what they expand from) and what it read."""
    text = json.dumps(
        {
            "cmd": command_text(record.cmd),
            "pwd": record.pwd,
            "inputs": record.inputs,
            "extra_inputs": record.extra_inputs,
            "outputs": record.outputs,
            "substitutions": {
                k: list(v) if isinstance(v, tuple) else v for k, v in sorted(substitutions.items())
            },
            "read": prints,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def written_by(repo: GitRepo, commit: str) -> list[str]:
    """Files ``commit`` added, modified or deleted against its first parent."""
    out = repo.run(
        "diff-tree", "--root", "-r", "-z", "--no-commit-id", "--no-renames", "--name-only",
        "-m", "--first-parent", commit,
    )  # fmt: skip
    return [path for path in out.decode("utf-8", "surrogateescape").split("\0") if path]


def written_by_each(repo: GitRepo, commits: Sequence[str]) -> dict[str, list[str]]:
    """:func:`written_by` of many commits with one ``git diff-tree --stdin``."""
    found: dict[str, list[str]] = {commit: [] for commit in commits}
    if not commits:
        return found
    out = repo.run(
        "diff-tree", "--stdin", "--root", "-r", "-z", "--no-renames", "--name-only",
        "-m", "--first-parent", stdin="".join(f"{c}\n" for c in commits).encode(),
    )  # fmt: skip
    current: list[str] | None = None
    for field in out.decode("utf-8", "surrogateescape").split("\0"):
        if field in found:  # each commit's paths follow its id
            current = found[field]
        elif field and current is not None:
            current.append(field)
    return found


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]


def _ls_tree(repo: GitRepo, commit: str, specs: list[str], *, recursive: bool) -> dict[str, str]:
    args = ["ls-tree", "-z", "--full-tree"] + (["-r"] if recursive else [])
    out = repo.run(*args, commit, "--", *specs, check=False)
    entries: dict[str, str] = {}
    links: dict[str, str] = {}
    for entry in out.decode("utf-8", "surrogateescape").split("\0"):
        meta, _, path = entry.partition("\t")
        parts = meta.split()
        if len(parts) != 3:
            continue
        mode, kind, oid = parts
        if mode == _GITLINK:
            entries[path] = f"gitlink:{oid}"
        elif kind == "blob":
            entries[path] = oid
            if mode == _SYMLINK:
                links[path] = oid
        elif not recursive:
            entries[path] = f"tree:{oid}"
    if links:  # an annexed file's identity is its key, however it is checked out
        texts = repo.read_objects(sorted(set(links.values())))
        for path, oid in links.items():
            info = texts.get(oid)
            target = info.data.decode("utf-8", "surrogateescape") if info else ""
            if _ANNEX_MARK in target:
                entries[path] = pointer_content_id(posixpath.basename(target))
    return entries
