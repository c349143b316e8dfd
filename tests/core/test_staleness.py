"""The incrementally kept staleness tables always agree with a rebuild from scratch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import Dataset, datalad, git, rerund, run
from rerund.core.gitrepo import GitRepo
from rerund.core.history import HistoryIndex
from rerund.core.plan import PlanOptions, stale_plan
from rerund.core.staleness import StalenessTracker
from yoda import Lab


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


def test_incremental_plan_equals_rebuilt_plan_through_subdatasets(
    yoda: Lab, tmp_path: Path
) -> None:
    """Gitlink moves (relevant, irrelevant, nested, backwards, removal) keep warm == cold."""
    ana = yoda.ana
    old = yoda.gitlink()

    def move_back() -> None:
        git("checkout", "-q", old, cwd=ana.path / "inputs/raw")
        ana.save("back to the old raw data")

    edits = [
        lambda: (yoda.fix_raw("fix", {"survey.csv": "id\n7\n"}), yoda.update()),
        lambda: (yoda.fix_raw("notes", {"notes.txt": "n\n"}), yoda.update()),
        lambda: rerund("rerun", cwd=ana.path),
        lambda: (
            yoda.fix_raw("deep", {"deep/x.csv": "x\n3\n", "sub-04/anat.nii.gz": "4\n"}),
            yoda.update(),
        ),
        move_back,
        lambda: datalad(
            "remove", "-d", ".", "--reckless", "availability", "inputs/raw", cwd=ana.path
        ),
    ]
    sizes = []
    for edit in edits:
        _plan(ana, persist=True, options=PlanOptions())
        edit()
        warm = _plan(ana, persist=True, options=PlanOptions())
        assert _plan(ana, persist=False, options=PlanOptions()) == warm
        sizes.append(len(warm["steps"]))
    # fix, notes, rerun, deep + glob, back (only the rerun of clean differs now), removed
    assert [1, 1, 0, 2, 1, 4] == sizes


def test_undecided_records_are_decided_incrementally_once_installed(
    yoda: Lab, tmp_path: Path
) -> None:
    """A warm index that found a subdataset missing agrees with a rebuild once it is installed."""
    yoda.fix_raw("fix", {"survey.csv": "id\n7\n"})
    yoda.update()
    clone = Dataset(tmp_path / "clone")
    datalad("clone", str(yoda.ana.path), str(clone.path))
    warm = _plan(clone, persist=True, options=PlanOptions())
    assert 4 == len(warm["undecided"])

    git("submodule", "init", "inputs/raw", cwd=clone.path)
    git("config", "submodule.inputs/raw.url", str(yoda.raw.path), cwd=clone.path)
    run("git", "-c", "protocol.file.allow=always", "submodule", "update", "-q", cwd=clone.path)

    warm = _plan(clone, persist=True, options=PlanOptions())
    assert _plan(clone, persist=False, options=PlanOptions()) == warm
    assert (1, 0) == (len(warm["steps"]), len(warm["undecided"]))


def test_tables_of_an_older_tracker_are_rebuilt(pipeline: Dataset) -> None:
    """An index file from the previous tracker version (no `via` column) is rebuilt, not misread."""
    index = HistoryIndex.open(GitRepo(pipeline.path), "main")
    index.db.executescript(
        "CREATE TABLE diffs (seq INTEGER NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL,"
        " changed_seq INTEGER NOT NULL, PRIMARY KEY (seq, path, kind)) WITHOUT ROWID;"
        "INSERT INTO meta VALUES ('tracked', '1');"
    )
    index.close()
    pipeline.write("raw/data.txt", "5\n6\n")
    pipeline.save("fix raw")

    plan = _plan(pipeline, persist=True, options=PlanOptions())

    assert 3 == len(plan["steps"])
