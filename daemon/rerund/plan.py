"""Decide which run records are stale and in which order to rerun them (SPEC §2).

Pure logic over a :class:`~rerund.history.HistoryIndex`: no process is started
here beyond the index's own SQLite lookups, and no file content is hashed —
git object ids (annex keys for annexed files) say whether an input changed.
"""

from __future__ import annotations

import bisect
import heapq
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rerund.dsconfig import DriftPolicy
from rerund.globbing import SpecMatcher, spec_matcher
from rerund.history import HistoryIndex, IndexedRecord, PathChange, RangeCommit
from rerund.placeholders import command_text, shell_words
from rerund.records import RunRecord

ReasonKind = Literal["input", "implicit-input", "drift", "upstream", "requested", "since"]


@dataclass(frozen=True)
class Reason:
    """Why a step is in the plan."""

    kind: ReasonKind
    path: str | None = None
    commit: str | None = None
    """The commit that changed ``path``, or the upstream step for ``upstream``."""

    def describe(self) -> str:
        short = (self.commit or "")[:8]
        if self.kind == "input":
            return f"input {self.path} changed in {short}"
        if self.kind == "implicit-input":
            return f"implicit input {self.path} (named by the command) changed in {short}"
        if self.kind == "drift":
            return f"output {self.path} was edited by hand in {short}"
        if self.kind == "upstream":
            return f"depends on stale step {short}"
        if self.kind == "since":
            return "selected by --since"
        return "requested"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "text": self.describe()}
        if self.path is not None:
            data["path"] = self.path
        if self.commit is not None:
            data["commit"] = self.commit
        return data


@dataclass(frozen=True)
class Step:
    """One record to rerun."""

    commit: str
    summary: str
    record: RunRecord
    reasons: tuple[Reason, ...]
    after: tuple[str, ...] = ()
    """Commits of earlier steps this one depends on."""
    drifted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "cmd": command_text(self.record.cmd),
            "summary": self.summary,
            "reasons": [reason.to_json() for reason in self.reasons],
            "after": list(self.after),
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class Notice:
    """A record that is not run, and why (foreign, malformed, report-only drift)."""

    commit: str
    message: str


@dataclass(frozen=True)
class Plan:
    head: str
    steps: tuple[Step, ...]
    notices: tuple[Notice, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "steps": [step.to_json() for step in self.steps],
            "notices": [{"commit": n.commit, "message": n.message} for n in self.notices],
        }


@dataclass(frozen=True)
class PlanOptions:
    implicit_inputs: bool = True
    drift: DriftPolicy = "rerun"


@dataclass
class _Candidate:
    """A current record while its staleness is being worked out."""

    indexed: IndexedRecord
    record: RunRecord
    owned: list[str] = field(default_factory=list)
    inputs: list[SpecMatcher] = field(default_factory=list)
    implicit: list[str] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    upstream: set[int] = field(default_factory=set)
    drifted: bool = False


def stale_plan(index: HistoryIndex, options: PlanOptions | None = None) -> Plan:
    """The stale records of the indexed branch tip, in dependency order."""
    options = options or PlanOptions()
    head = index.tip or ""
    usable, notices = _usable_records(index.records(), index.dataset_id)
    candidates = _current_records(usable)
    owners = _owner_table(candidates)
    for cand in candidates.values():
        cand.inputs = _input_matchers(cand.record)
        if options.implicit_inputs:
            cand.implicit = _implicit_inputs(index, cand)
        _find_changed_inputs(index, cand)
        _find_drift(index, cand, options.drift, notices)
        cand.upstream = _upstream_of(cand, owners)
    stale = _propagate(candidates)
    steps = _ordered_steps(candidates, stale)
    return Plan(head, tuple(steps), tuple(notices))


def _usable_records(
    records: Iterable[IndexedRecord], dsid: str | None
) -> tuple[list[tuple[IndexedRecord, RunRecord]], list[Notice]]:
    usable: list[tuple[IndexedRecord, RunRecord]] = []
    notices: list[Notice] = []
    for rec in records:
        if rec.error is not None or rec.record is None:
            notices.append(Notice(rec.commit, rec.error or "unreadable run record"))
        elif len(rec.parents) > 2:
            notices.append(Notice(rec.commit, "has run information but is an octopus merge"))
        elif rec.record.dsid is not None and dsid is not None and rec.record.dsid != dsid:
            notices.append(Notice(rec.commit, "was run from a different dataset; not ours to run"))
        else:
            usable.append((rec, rec.record))
    return usable, notices


def _effective_outputs(rec: IndexedRecord, record: RunRecord) -> tuple[set[str], list[SpecMatcher]]:
    """Concrete output paths, and the declared output specs (which may be globs)."""
    matchers = [spec_matcher(spec, record.pwd) for spec in record.outputs]
    paths = set(rec.changed)
    paths.update(m.literal_prefix for m in matchers if not m.is_glob and m.literal_prefix)
    if rec.sidecar:
        paths.discard(rec.sidecar)
    return paths, matchers


def _current_records(
    records: Sequence[tuple[IndexedRecord, RunRecord]],
) -> dict[int, _Candidate]:
    """Records that are the newest writer of at least one of their outputs."""
    claimed: set[str] = set()
    claimed_specs: list[SpecMatcher] = []
    current: dict[int, _Candidate] = {}
    for rec, record in reversed(records):
        paths, matchers = _effective_outputs(rec, record)
        owned = sorted(p for p in paths if p not in claimed and not _covered(p, claimed_specs))
        if owned:
            current[rec.seq] = _Candidate(rec, record, owned=owned)
        claimed.update(paths)
        claimed_specs.extend(matchers)
    return current


def _covered(path: str, specs: Sequence[SpecMatcher]) -> bool:
    return any(spec.covers(path) for spec in specs)


def _owner_table(candidates: dict[int, _Candidate]) -> tuple[list[str], list[int]]:
    """Owned paths sorted, each with the ``seq`` of its current record."""
    pairs = sorted((p, seq) for seq, cand in candidates.items() for p in cand.owned)
    return [p for p, _ in pairs], [seq for _, seq in pairs]


def _input_matchers(record: RunRecord) -> list[SpecMatcher]:
    return [spec_matcher(spec, record.pwd) for spec in [*record.inputs, *record.extra_inputs]]


def _implicit_inputs(index: HistoryIndex, cand: _Candidate) -> list[str]:
    """Files tracked at the record's commit that its command names (e.g. a script)."""
    record = cand.record
    declared = cand.inputs
    found: list[str] = []
    for word in shell_words(command_text(record.cmd)):
        if "{" in word or word.startswith("-") or "\0" in word:
            continue
        path = posixpath.normpath(posixpath.join(record.pwd, word.removeprefix("./")))
        if path.startswith("../") or path in ("..", ".") or path in cand.owned or path in found:
            continue
        if any(m.covers(path) for m in declared):
            continue
        if index.content_at(path, cand.indexed.seq) is not None:
            found.append(path)
    return found


def _find_changed_inputs(index: HistoryIndex, cand: _Candidate) -> None:
    seen: set[str] = set()
    for matcher in cand.inputs:
        for change in index.changes_since(matcher.literal_prefix, cand.indexed.seq):
            if change.path not in seen and matcher.covers(change.path):
                seen.add(change.path)
                cand.reasons.append(_change_reason("input", index, change))
    for path in cand.implicit:
        for change in index.changes_since(path, cand.indexed.seq):
            if change.path == path and path not in seen:
                seen.add(path)
                cand.reasons.append(_change_reason("implicit-input", index, change))


def _find_drift(
    index: HistoryIndex, cand: _Candidate, policy: DriftPolicy, notices: list[Notice]
) -> None:
    for path in cand.owned:
        for change in index.changes_since(path, cand.indexed.seq):
            if change.path != path:
                continue
            cand.drifted = True
            reason = _change_reason("drift", index, change)
            if policy == "rerun":
                cand.reasons.append(reason)
            else:
                notices.append(Notice(cand.indexed.commit, reason.describe()))


def _change_reason(kind: ReasonKind, index: HistoryIndex, change: PathChange) -> Reason:
    return Reason(kind, change.path, index.commit_at(change.last_seq))


def _upstream_of(cand: _Candidate, owners: tuple[list[str], list[int]]) -> set[int]:
    """Records that currently own something this record reads."""
    paths, seqs = owners
    upstream: set[int] = set()
    for matcher in cand.inputs:
        prefix = matcher.literal_prefix
        start = bisect.bisect_left(paths, prefix)
        for i in range(start, len(paths)):
            if prefix and not (paths[i] == prefix or paths[i].startswith(prefix + "/")):
                break
            if matcher.covers(paths[i]):
                upstream.add(seqs[i])
    for path in cand.implicit:
        i = bisect.bisect_left(paths, path)
        if i < len(paths) and paths[i] == path:
            upstream.add(seqs[i])
    upstream.discard(cand.indexed.seq)
    return upstream


def _propagate(candidates: dict[int, _Candidate]) -> set[int]:
    """Directly stale records plus everything downstream of them."""
    downstream: dict[int, list[int]] = {}
    for seq, cand in candidates.items():
        for up in cand.upstream:
            downstream.setdefault(up, []).append(seq)
    stale = {seq for seq, cand in candidates.items() if cand.reasons}
    queue = sorted(stale)
    while queue:
        seq = queue.pop()
        for child in downstream.get(seq, []):
            cand = candidates[child]
            cand.reasons.append(Reason("upstream", commit=candidates[seq].indexed.commit))
            if child not in stale:
                stale.add(child)
                queue.append(child)
    return stale


def _ordered_steps(candidates: dict[int, _Candidate], stale: set[int]) -> list[Step]:
    """Topological order over the stale records; ties (and cycles) keep history order."""
    waiting = {seq: candidates[seq].upstream & stale for seq in stale}
    ready = [seq for seq, ups in waiting.items() if not ups]
    heapq.heapify(ready)
    order: list[int] = []
    while len(order) < len(waiting):
        if not ready:  # a dependency cycle: release its oldest member
            heapq.heappush(ready, min(seq for seq in waiting if seq not in order))
        seq = heapq.heappop(ready)
        if seq in order:
            continue
        order.append(seq)
        for other, ups in waiting.items():
            if seq in ups:
                ups.discard(seq)
                if not ups and other not in order:
                    heapq.heappush(ready, other)
    return [_step(candidates[seq], candidates) for seq in order]


def _step(cand: _Candidate, candidates: dict[int, _Candidate]) -> Step:
    reasons = tuple(dict.fromkeys(cand.reasons))
    after = tuple(candidates[s].indexed.commit for s in sorted(cand.upstream) if s in candidates)
    return Step(
        commit=cand.indexed.commit,
        summary=cand.indexed.summary,
        record=cand.record,
        reasons=reasons,
        after=after,
        drifted=cand.drifted,
    )


def since_plan(head: str, commits: Sequence[RangeCommit], dsid: str | None) -> Plan:
    """Exactly the records ``datalad rerun --since`` would execute, in its order.

    ``commits`` are the run records of the range; commits without a record are
    never executed by a rerun onto the tip (DataLad lists and then skips them).
    """
    steps: list[Step] = []
    notices: list[Notice] = []
    for item in commits:
        if len(item.parents) == 0 or len(item.parents) > 2:
            notices.append(
                Notice(item.commit, "has run information but is a root or octopus commit")
            )
        elif item.record.dsid is not None and dsid is not None and item.record.dsid != dsid:
            notices.append(Notice(item.commit, "was run from a different dataset; not ours to run"))
        else:
            reason = Reason("since")
            steps.append(Step(item.commit, item.summary, item.record, (reason,)))
    return Plan(head, tuple(steps), tuple(notices))
