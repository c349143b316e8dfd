"""Staleness rules of SPEC §2 on real datasets: drift, globs, directories, annex keys."""

from __future__ import annotations

from helpers import Dataset, datalad, rerund, run


def _kinds(step: dict[str, object]) -> list[object]:
    reasons = step["reasons"]
    assert isinstance(reasons, list)
    return [reason["kind"] for reason in reasons]


def test_hand_edited_output_drifts_and_is_rerun(pipeline: Dataset) -> None:
    """Editing an output by hand marks its record drifted and reruns it and what follows."""
    pipeline.write("work/stats.txt", "999 999\n")
    edit = pipeline.save("hand edit")

    steps = pipeline.plan()["steps"]

    assert [pipeline.record_commit("stats"), pipeline.record_commit("report")] == [
        s["commit"] for s in steps
    ]
    assert steps[0]["drifted"] is True
    assert {"kind": "drift", "path": "work/stats.txt", "commit": edit} == {
        key: steps[0]["reasons"][0][key] for key in ("kind", "path", "commit")
    }
    rerund("rerun", cwd=pipeline.path)
    assert "3 6\n" == pipeline.read("work/stats.txt")


def test_drift_can_be_report_only(pipeline: Dataset) -> None:
    """With drift set to report, the owner is only noted; downstream still sees its input."""
    pipeline.write("work/stats.txt", "999 999\n")
    pipeline.save("hand edit")
    pipeline.git("config", "rerund.drift", "report")

    plan = pipeline.plan()

    assert [pipeline.record_commit("report")] == [s["commit"] for s in plan["steps"]]
    assert ["input"] == _kinds(plan["steps"][0])
    assert "edited by hand" in plan["notices"][0]["message"]


def test_superseded_records_are_never_rerun(pipeline: Dataset) -> None:
    """A later record writing the same output replaces the earlier one as its owner."""
    datalad(
        "run", "-m", "clean v2", "-i", "raw/data.txt", "-o", "work/clean.txt",
        "sh code/clean.sh {inputs} {outputs}; echo end >> {outputs}",
        cwd=pipeline.path,
    )  # fmt: skip
    newer = pipeline.head()
    pipeline.write("raw/data.txt", "4\n")
    pipeline.save("fix")

    commits = [s["commit"] for s in pipeline.plan()["steps"]]

    assert pipeline.record_commit("clean") not in commits
    assert newer == commits[0]


def test_glob_input_sees_a_new_matching_file(dataset: Dataset) -> None:
    """A glob input is stale when the set of matching files grows."""
    dataset.write("raw/a.csv", "1\n")
    dataset.save("a")
    datalad("run", "-i", "raw/*.csv", "-o", "all.txt", "cat {inputs} > {outputs}", cwd=dataset.path)
    record = dataset.head()
    dataset.write("raw/b.csv", "2\n")
    dataset.write("raw/b.txt", "not matched\n")
    dataset.save("b")

    steps = dataset.plan()["steps"]

    assert [record] == [s["commit"] for s in steps]
    assert ["raw/b.csv"] == [r["path"] for r in steps[0]["reasons"]]


def test_directory_input_covers_everything_beneath(dataset: Dataset) -> None:
    """A directory input is stale when anything below it changes, and only then."""
    dataset.write("raw/deep/a.txt", "1\n")
    dataset.save("a")
    datalad("run", "-i", "raw", "-o", "n.txt", "find raw -type f | wc -l > n.txt", cwd=dataset.path)
    dataset.write("rawish.txt", "next to raw, not in it\n")
    dataset.save("sibling")
    assert [] == dataset.plan()["steps"]

    dataset.write("raw/deep/b.txt", "2\n")
    dataset.save("b")

    assert ["raw/deep/b.txt"] == [r["path"] for r in dataset.plan()["steps"][0]["reasons"]]


def test_annex_key_not_symlink_decides(annexed_pipeline: Dataset) -> None:
    """Unlocking an annexed input (same key, other blob) or dropping content is no change."""
    ds = annexed_pipeline
    run("git", "annex", "unlock", "raw/data.txt", cwd=ds.path)
    ds.save("unlock raw data")
    run("git", "annex", "drop", "--force", "work/clean.txt", cwd=ds.path)

    assert [] == ds.plan()["steps"]


def test_annexed_input_change_is_seen(annexed_pipeline: Dataset) -> None:
    """A new annex key for an input makes its record stale."""
    annexed_pipeline.write("raw/data.txt", "8\n")
    annexed_pipeline.save("fix")

    assert 3 == len(annexed_pipeline.plan()["steps"])


def test_independent_pipelines_keep_history_order(pipeline: Dataset) -> None:
    """Two independent chains are ordered by dependency, ties by history."""
    ds = pipeline
    ds.write("raw/other.txt", "1\n")
    ds.save("other raw")
    datalad(
        "run",
        "-m",
        "other",
        "-i",
        "raw/other.txt",
        "-o",
        "o.txt",
        "cp {inputs} {outputs}",
        cwd=ds.path,
    )
    ds.write("raw/other.txt", "2\n")
    ds.write("raw/data.txt", "9\n")
    ds.save("fix both")

    subjects = [ds.git("log", "-1", "--format=%s", s["commit"]) for s in ds.plan()["steps"]]

    assert ["clean", "stats", "report", "other"] == [s.split("] ")[1] for s in subjects]
