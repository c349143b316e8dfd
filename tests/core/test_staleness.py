"""The incrementally kept staleness tables always agree with a rebuild from scratch."""

from __future__ import annotations

from typing import Any

from helpers import Dataset, datalad, rerund
from rerund.core.gitrepo import GitRepo
from rerund.core.history import HistoryIndex
from rerund.core.plan import PlanOptions, stale_plan
from rerund.core.staleness import StalenessTracker


def _plan(ds: Dataset, *, persist: bool, options: PlanOptions) -> dict[str, Any]:
    index = HistoryIndex.open(GitRepo(ds.path), "main", persist=persist)
    try:
        tracker = StalenessTracker(index)
        tracker.update(ds.head())
        return stale_plan(tracker, options).to_json()
    finally:
        index.close()


def test_incremental_plan_equals_rebuilt_plan_after_every_commit(pipeline: Dataset) -> None:
    """After each kind of commit, the warm (incremental) plan equals a cold rebuild."""
    ds = pipeline
    edits = [
        lambda: (ds.write("raw/data.txt", "5\n6\n"), ds.save("fix raw")),
        lambda: (ds.write("work/stats.txt", "by hand\n"), ds.save("hand edit")),
        lambda: datalad(
            "run",
            "-m",
            "clean v2",
            "-i",
            "raw/data.txt",
            "-o",
            "work/clean.txt",
            "sh code/clean.sh {inputs} {outputs}; echo v2 >> {outputs}",
            cwd=ds.path,
        ),
        lambda: (ds.write("raw/data.txt", "# measurements\n3\n1\n2\n"), ds.save("revert raw")),
        lambda: (ds.write("code/report.sh", 'cat "$1" > "$2"\n'), ds.save("new report")),
        lambda: rerund("rerun", cwd=ds.path),
        lambda: (ds.write("notes.txt", "n\n"), ds.save("unrelated")),
    ]
    variants = [PlanOptions(), PlanOptions(implicit_inputs=False, drift="report")]
    sizes = []
    for edit in edits:
        _plan(ds, persist=True, options=variants[0])  # keep the on-disk index warm
        edit()
        for options in variants:
            warm = _plan(ds, persist=True, options=options)
            cold = _plan(ds, persist=False, options=options)
            assert cold == warm
            sizes.append(len(warm["steps"]))
    # fix raw, hand edit, superseding clean v2, revert raw, new script, rerun, unrelated
    assert [3, 3, 3, 3, 2, 2, 3, 3, 3, 3, 0, 0, 0, 0] == sizes
