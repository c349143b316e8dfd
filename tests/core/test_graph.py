"""The record graph the dashboard draws: current records, who feeds whom, and why stale."""

from __future__ import annotations

from helpers import Dataset
from rerund.core.gitrepo import GitRepo
from rerund.core.graph import record_graph
from rerund.core.plan import PlanOptions


def _graph(
    ds: Dataset, options: PlanOptions | None = None
) -> tuple[dict[str, object], set[tuple[str, str]]]:
    graph = record_graph(GitRepo(ds.path), "graph-test", ds.head(), options or PlanOptions())
    names = {node.commit: node.summary for node in graph.nodes}
    nodes = {node.summary: (node.outputs, node.stale_reasons) for node in graph.nodes}
    return nodes, {(names[a], names[b]) for a, b in graph.edges}


def test_pipeline_graph_has_one_node_per_record_and_chain_edges(pipeline: Dataset) -> None:
    """clean -> stats -> report: three nodes with their outputs, two edges, nothing stale."""
    nodes, edges = _graph(pipeline)

    assert {
        "clean": (("work/clean.txt",), ()),
        "stats": (("work/stats.txt",), ()),
        "report": (("report.txt",), ()),
    } == nodes
    assert {("clean", "stats"), ("stats", "report")} == edges


def test_superseded_records_leave_the_graph_and_stale_ones_carry_reasons(
    pipeline: Dataset,
) -> None:
    """A re-recorded step replaces its old node; what reads its new output is stale, with why."""
    old_stats = pipeline.record_commit("stats")
    pipeline.write("code/stats.sh", 'awk \'{s += $1} END {print NR, s, s/NR}\' "$1" > "$2"\n')
    pipeline.save("report the mean too")
    new_stats = pipeline.run_step(
        "stats", "work/clean.txt", "work/stats.txt", "sh code/stats.sh {inputs} {outputs}"
    )

    graph = record_graph(GitRepo(pipeline.path), "graph-test", pipeline.head(), PlanOptions())
    nodes, edges = _graph(pipeline)

    commits = {node.commit for node in graph.nodes}
    assert (new_stats in commits, old_stats in commits) == (True, False)
    assert () == nodes["stats"][1]
    assert (f"input work/stats.txt changed in {new_stats[:8]}",) == nodes["report"][1]
    assert {("clean", "stats"), ("stats", "report")} == edges


def test_implicit_inputs_off_drops_their_staleness(pipeline: Dataset) -> None:
    """With implicit inputs off, a script change makes nothing stale in the graph."""
    pipeline.write("code/report.sh", 'printf \'total: %s\\n\' "$(cat "$1")" > "$2"\n')
    pipeline.save("shorter report")

    nodes, _ = _graph(pipeline, PlanOptions(implicit_inputs=False))

    assert all(reasons == () for _, reasons in nodes.values())
