"""The dashboard's view of a repository: its record graph with each node's state.

A node's state is the first that applies: ``stale`` (the planner would rerun
it), ``differs`` (its last verification differed or failed), ``cut-off`` or
``reused`` (so marked by the last job that planned it), ``verified`` (it
reproduced identically), else ``current``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rerund.core.gitrepo import GitRepo
from rerund.core.graph import RecordGraph, record_graph
from rerund.core.plan import PlanOptions
from rerund.service.mirrors import mirror
from rerund.settings import RepoSettings


@dataclass(frozen=True)
class GraphView:
    graph: RecordGraph
    states: dict[str, str]


def repo_graph(
    state_dir: Path,
    repo: RepoSettings,
    verdicts: Mapping[str, str],
    job_marks: Mapping[str, str],
) -> GraphView:
    """The graph at the remote's tip (blocking; run it in a thread).

    The graph is kept per repository while the remote's branch and notes stay
    put (one ``git`` call to check), so a page view between pushes costs no fetch.
    """
    options = PlanOptions(implicit_inputs=repo.implicit_inputs, drift=repo.drift)
    key = (_remote_refs(repo), options)
    cached = _GRAPHS.get(repo.name)
    if cached is not None and key[0] is not None and cached[0] == key:
        graph = cached[1]
    else:
        with mirror(state_dir, repo) as git:
            tip = git.text("rev-parse", f"refs/heads/{repo.branch}")
            graph = record_graph(git, f"graph-{repo.branch}", tip, options)
        _GRAPHS[repo.name] = (key, graph)
    return GraphView(graph, node_states(graph, verdicts, job_marks))


_GRAPHS: dict[str, tuple[tuple[str | None, PlanOptions], RecordGraph]] = {}


def _remote_refs(repo: RepoSettings) -> str | None:
    """The remote's branch and notes tips, read directly when it is on this disk."""
    local = repo.local_path
    if local is None or not local.is_dir():
        return None  # a network remote: fetch every time rather than ask it twice
    out = GitRepo(local).run(
        "for-each-ref", "--format=%(refname) %(objectname)", f"refs/heads/{repo.branch}",
        "refs/notes/",
    )  # fmt: skip
    return out.decode() or None


def node_states(
    graph: RecordGraph, verdicts: Mapping[str, str], job_marks: Mapping[str, str]
) -> dict[str, str]:
    states: dict[str, str] = {}
    for node in graph.nodes:
        verdict = verdicts.get(node.commit)
        if node.stale_reasons:
            states[node.commit] = "stale"
        elif verdict in ("differs", "failed"):
            states[node.commit] = "differs"
        elif job_marks.get(node.commit) in ("cut-off", "reused"):
            states[node.commit] = job_marks[node.commit]
        elif verdict == "identical":
            states[node.commit] = "verified"
        else:
            states[node.commit] = "current"
    return states
