"""Decide which run records are stale and in which order to rerun them (SPEC §2).

The stale plan reads the directly stale records off a
:class:`~rerund.core.staleness.StalenessTracker`, adds everything downstream of them
and orders the lot; the ``--since`` plan mirrors ``datalad rerun --since``.
Only :func:`plan_tip` touches the repository (index, notes); the rest is
pure. No file content is hashed.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rerund.core.dsconfig import DriftPolicy
from rerund.core.gitrepo import GitRepo
from rerund.core.history import HistoryIndex, RangeCommit
from rerund.core.placeholders import command_text
from rerund.core.records import RunRecord
from rerund.core.staleness import Diff, StalenessTracker
from rerund.core.subdatasets import Locator, Unavailable, subdataset_name
from rerund.core.verified import reproductions

ReasonKind = Literal["input", "implicit-input", "drift", "upstream", "requested", "since"]


@dataclass(frozen=True)
class Reason:
    """Why a step is in the plan."""

    kind: ReasonKind
    path: str | None = None
    commit: str | None = None
    """The commit that changed ``path``, or the upstream step for ``upstream``."""
    subdataset: str | None = None
    """For a path inside a subdataset: the gitlink whose move changed it."""
    sub_from: str | None = None
    """The subdataset commit at the record's commit (``None``: no subdataset there)."""
    sub_to: str | None = None
    """The subdataset commit at the tip (``None``: removed)."""

    def describe(self) -> str:
        if self.subdataset is not None:
            return self._describe_in_subdataset(self.subdataset)
        return self._describe_here()

    def _describe_in_subdataset(self, subdataset: str) -> str:
        what = {"input": "input", "implicit-input": "implicit input"}.get(self.kind, "output")
        how = "was edited by hand" if self.kind == "drift" else "changed"
        before = (self.sub_from or "")[:8] or "(none)"
        after = (self.sub_to or "")[:8] or "removed"
        return f"{what} {self.path} {how}: {subdataset_name(subdataset)} {before} -> {after}"

    def _describe_here(self) -> str:
        short = (self.commit or "")[:8]
        if self.kind == "input":
            return f"input {self.path} changed in {short}"
        if self.kind == "implicit-input":
            return f"implicit input {self.path} (named by the command) changed in {short}"
        if self.kind == "drift":
            return f"output {self.path} was edited by hand in {short}"
        if self.kind == "upstream":
            through = f"reads {self.path} written by" if self.path else "depends on"
            return f"{through} stale step {short}"
        if self.kind == "since":
            return "selected by --since"
        return "requested"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "text": self.describe()}
        if self.path is not None:
            data["path"] = self.path
        if self.commit is not None:
            data["commit"] = self.commit
        if self.subdataset is not None:
            data["subdataset"] = {"path": self.subdataset, "from": self.sub_from, "to": self.sub_to}
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

    @property
    def may_cut_off(self) -> bool:
        """Stale only through upstream steps: skipped if they reproduce what it read."""
        return bool(self.reasons) and all(reason.kind == "upstream" for reason in self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "cmd": command_text(self.record.cmd),
            "summary": self.summary,
            "reasons": [reason.to_json() for reason in self.reasons],
            "after": list(self.after),
            "drifted": self.drifted,
            "may_cut_off": self.may_cut_off,
        }


@dataclass(frozen=True)
class Notice:
    """A record that is not run, and why (foreign, malformed, report-only drift)."""

    commit: str
    message: str


@dataclass(frozen=True)
class Undecided:
    """A record rerund cannot judge: a subdataset commit it needs is not readable here."""

    commit: str
    summary: str
    subdataset: str
    missing: str

    def describe(self) -> str:
        return f"cannot tell: subdataset {self.subdataset} at {self.missing[:8]} is not available"

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "summary": self.summary,
            "subdataset": self.subdataset,
            "missing": self.missing,
            "text": self.describe(),
        }


@dataclass(frozen=True)
class Plan:
    head: str
    steps: tuple[Step, ...]
    notices: tuple[Notice, ...] = ()
    undecided: tuple[Undecided, ...] = ()
    """Records that may be stale, listed apart from the steps (never silently dropped)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "steps": [step.to_json() for step in self.steps],
            "notices": [{"commit": n.commit, "message": n.message} for n in self.notices],
            "undecided": [item.to_json() for item in self.undecided],
        }


@dataclass(frozen=True)
class PlanOptions:
    implicit_inputs: bool = True
    drift: DriftPolicy = "rerun"


def stale_plan(
    tracker: StalenessTracker,
    options: PlanOptions | None = None,
    reproduced: Mapping[str, Sequence[str]] | None = None,
) -> Plan:
    """The stale records at the tracked tip, in dependency order.

    ``reproduced`` maps a record's commit to tips where rerunning it changed
    nothing (see :mod:`rerund.core.verified`); a difference the newest such tip
    already had is explained, not stale.
    """
    options = options or PlanOptions()
    index = tracker.index
    diffs = [
        diff for diff in tracker.diffs() if options.implicit_inputs or diff.kind != "implicit-input"
    ]
    if reproduced:
        diffs = _unexplained(tracker, diffs, reproduced)
    direct = {diff.seq for diff in diffs if diff.kind != "drift" or options.drift == "rerun"}
    upstream = _propagate(tracker, set(direct), options)
    stale = direct | set(upstream)
    notes = tracker.notices()
    shas = index.commits_at(
        [*stale, *(d.changed_seq for d in diffs), *(d.seq for d in diffs), *(s for s, _ in notes)]
    )
    notices = [Notice(shas[seq], message) for seq, message in notes]
    reasons: dict[int, list[Reason]] = {}
    for diff in diffs:
        reason = _reason(tracker, diff, shas[diff.changed_seq])
        if diff.seq in direct:
            reasons.setdefault(diff.seq, []).append(reason)
        else:  # a drift the repository only wants reported
            notices.append(Notice(shas[diff.seq], reason.describe()))
    for child, parents in upstream.items():
        reasons.setdefault(child, []).extend(
            Reason("upstream", path=parents[parent], commit=shas[parent])
            for parent in sorted(parents)
        )
    drifted = {diff.seq for diff in diffs if diff.kind == "drift"}
    order = _topological(stale, upstream)
    records = index.records_at(order)
    steps = [
        Step(
            commit=records[seq].commit,
            summary=records[seq].summary,
            record=record,
            reasons=tuple(dict.fromkeys(reasons[seq])),
            after=tuple(shas[s] for s in sorted(upstream.get(seq, ()))),
            drifted=seq in drifted,
        )
        for seq in order
        if (record := records[seq].record) is not None  # the tracker lists only usable ones
    ]
    return Plan(index.tip or "", tuple(steps), tuple(notices), _undecided(tracker, stale))


def _reason(tracker: StalenessTracker, diff: Diff, commit: str) -> Reason:
    if not diff.via:
        return Reason(diff.kind, diff.path, commit)
    return Reason(
        diff.kind,
        diff.path,
        commit,
        subdataset=diff.via,
        sub_from=tracker.gitlink_at(diff.via, diff.seq),
        sub_to=tracker.gitlink_at(diff.via, tracker.index.tip_seq),
    )


def _undecided(tracker: StalenessTracker, stale: set[int]) -> tuple[Undecided, ...]:
    """Undecided records that are not stale for another reason anyway, oldest first."""
    rows = [row for row in tracker.undecided() if row.seq not in stale]
    records = tracker.index.records_at(sorted({row.seq for row in rows}))
    seen: set[int] = set()
    found: list[Undecided] = []
    for row in rows:
        if row.seq not in seen:  # one line per record: the first subdataset it lacks
            seen.add(row.seq)
            rec = records[row.seq]
            found.append(Undecided(rec.commit, rec.summary, row.subdataset, row.missing))
    return tuple(found)


def plan_tip(
    repo: GitRepo,
    index_name: str,
    tip: str,
    options: PlanOptions,
    locate: Locator | None = None,
) -> tuple[Plan, str | None]:
    """The stale plan of ``tip``, with the index kept under ``index_name``; and the dataset id.

    ``locate`` finds subdatasets' objects (default: those installed in ``repo``).
    """
    index = HistoryIndex.open(repo, index_name)
    try:
        tracker = StalenessTracker(index, locate)
        tracker.update(tip)
        return stale_plan(tracker, options, reproductions(repo)), index.dataset_id
    finally:
        index.close()


def _unexplained(
    tracker: StalenessTracker, diffs: list[Diff], reproduced: Mapping[str, Sequence[str]]
) -> list[Diff]:
    """Drop differences that a later identical reproduction already covered."""
    index = tracker.index
    shas = index.commits_at({diff.seq for diff in diffs})
    tip = index.tip_seq
    kept: list[Diff] = []
    for diff in diffs:
        seqs = [index.seq_of(sha) for sha in reproduced.get(shas[diff.seq], ())]
        latest = max((seq for seq in seqs if seq is not None), default=None)
        same = latest is not None and _same_content(tracker, diff, latest, tip)
        if not same:
            kept.append(diff)
    return kept


def _same_content(tracker: StalenessTracker, diff: Diff, seq: int, tip: int) -> bool:
    if not diff.via:
        return tracker.index.content_at(diff.path, seq) == tracker.index.content_at(diff.path, tip)
    before, now = tracker.content_at(diff.path, seq), tracker.content_at(diff.path, tip)
    return before == now and not isinstance(now, Unavailable)


def _propagate(
    tracker: StalenessTracker, stale: set[int], options: PlanOptions
) -> dict[int, dict[int, str]]:
    """Everything downstream of ``stale`` joins it.

    Returns each one's stale upstreams, each with the path it reads from them.
    """
    upstream: dict[int, dict[int, str]] = {}
    queue = sorted(stale)
    while queue:
        seq = queue.pop()
        for child, path in _readers_of_outputs(tracker, seq, options).items():
            upstream.setdefault(child, {})[seq] = path
            if child not in stale:
                stale.add(child)
                queue.append(child)
    return upstream


def _readers_of_outputs(
    tracker: StalenessTracker, seq: int, options: PlanOptions
) -> dict[int, str]:
    """The records reading an output of ``seq``, each with the first such path."""
    readers: dict[int, str] = {}
    for path in sorted(tracker.owned_by(seq)):
        for row in tracker.readers_of(path):
            if row.seq != seq and (options.implicit_inputs or row.kind != "implicit-input"):
                readers.setdefault(row.seq, path)
    return readers


def _topological(stale: set[int], upstream: Mapping[int, Iterable[int]]) -> list[int]:
    """Dependencies first; ties (and members of a cycle) keep history order."""
    waiting = {seq: set(upstream.get(seq, ())) & stale for seq in stale}
    children: dict[int, list[int]] = {}
    for seq, ups in waiting.items():
        for up in ups:
            children.setdefault(up, []).append(seq)
    ready = [seq for seq, ups in waiting.items() if not ups]
    heapq.heapify(ready)
    done: set[int] = set()
    order: list[int] = []
    while len(order) < len(waiting):
        if not ready:  # a dependency cycle: release its oldest member
            heapq.heappush(ready, min(seq for seq in waiting if seq not in done))
        seq = heapq.heappop(ready)
        if seq in done:
            continue
        done.add(seq)
        order.append(seq)
        for child in children.get(seq, []):
            waiting[child].discard(seq)
            if not waiting[child] and child not in done:
                heapq.heappush(ready, child)
    return order


def since_plan(
    head: str, commits: Sequence[RangeCommit], dsid: str | None, why: ReasonKind = "since"
) -> Plan:
    """Exactly the records ``datalad rerun --since`` would execute, in its order.

    ``commits`` are the run records of the range; commits without a record are
    never executed by a rerun onto the tip (DataLad lists and then skips them).
    ``why`` is ``"requested"`` when the user named the commits themselves.
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
            reason = Reason(why)
            steps.append(Step(item.commit, item.summary, item.record, (reason,)))
    return Plan(head, tuple(steps), tuple(notices))
