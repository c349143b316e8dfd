"""The graph of a branch's current run records: who reads what whom writes (SPEC §2).

Nodes are the current records (the newest producer of an output still in
the tree); an edge runs from a record to every current record with an input
under one of its outputs. Stale records carry the planner's reasons. Read off
the staleness tracker's tables, so a push costs what the planner already paid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rerund.core.gitrepo import GitRepo
from rerund.core.history import HistoryIndex
from rerund.core.placeholders import command_text
from rerund.core.plan import PlanOptions, stale_plan
from rerund.core.staleness import StalenessTracker
from rerund.core.verified import reproductions


@dataclass(frozen=True)
class GraphNode:
    commit: str
    summary: str
    cmd: str
    outputs: tuple[str, ...]
    """The paths it is the current record of."""
    stale_reasons: tuple[str, ...]
    """Why it is stale (empty when it is not)."""


@dataclass(frozen=True)
class RecordGraph:
    tip: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[tuple[str, str], ...]
    """(upstream commit, downstream commit) pairs."""


def current_seqs(tracker: StalenessTracker) -> list[int]:
    """The index positions of the current records at the tracked tip, oldest first.

    Records the planner would not run (foreign, malformed, root commits) are left out.
    """
    index = tracker.index
    tip = index.tip_seq
    owners = index.db.execute("SELECT path, seq FROM owners").fetchall()
    seqs = {int(seq) for path, seq in owners if index.content_at(str(path), tip) is not None}
    seqs -= {seq for seq, _ in tracker.notices()}
    return sorted(seqs)


def record_graph(repo: GitRepo, index_name: str, tip: str, options: PlanOptions) -> RecordGraph:
    """The current records at ``tip`` and their dependencies (index kept as ``index_name``)."""
    index = HistoryIndex.open(repo, index_name)
    try:
        tracker = StalenessTracker(index)
        tracker.update(tip)
        plan = stale_plan(tracker, options, reproductions(repo))
        reasons = {step.commit: [r.describe() for r in step.reasons] for step in plan.steps}
        return graph_of(tracker, options, reasons)
    finally:
        index.close()


def graph_of(
    tracker: StalenessTracker,
    options: PlanOptions,
    stale: Mapping[str, Sequence[str]],
) -> RecordGraph:
    """The graph from an up-to-date tracker; ``stale`` maps a commit to its reasons."""
    index = tracker.index
    seqs = current_seqs(tracker)
    records = index.records_at(seqs)
    tip = index.tip_seq
    nodes: list[GraphNode] = []
    edges: set[tuple[int, int]] = set()
    for seq in seqs:
        rec = records.get(seq)
        if rec is None or rec.record is None:
            continue
        owned = [path for path in tracker.owned_by(seq) if index.content_at(path, tip) is not None]
        for path in owned:
            for row in tracker.readers_of(path):
                wanted = options.implicit_inputs or row.kind != "implicit-input"
                if wanted and row.seq != seq and row.seq in records:
                    edges.add((seq, row.seq))
        nodes.append(
            GraphNode(
                commit=rec.commit,
                summary=rec.summary,
                cmd=command_text(rec.record.cmd),
                outputs=tuple(owned),
                stale_reasons=tuple(stale.get(rec.commit, ())),
            )
        )
    shas = {seq: records[seq].commit for seq in records}
    pairs = sorted((shas[a], shas[b]) for a, b in edges if a in shas and b in shas)
    return RecordGraph(index.tip or "", tuple(nodes), tuple(pairs))
