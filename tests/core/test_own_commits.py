"""A run record's commit is never a hand edit, not even when it deletes (issue 8, item 18)."""

from __future__ import annotations

from helpers import Dataset, rerund

# Writes b only while the input holds an x; otherwise removes it.
MAKE = "cat in > a; if grep -q x in; then echo b > b; else rm -f b; fi"


def _made(dataset: Dataset) -> Dataset:
    dataset.write("in", "x\n")
    dataset.save("input")
    dataset.run_step("make", "in", "a", MAKE)
    assert "b\n" == dataset.read("b")
    return dataset


def test_a_rerun_that_deletes_a_file_the_record_added_is_not_stale_again(
    dataset: Dataset,
) -> None:
    """After a rerun that drops b, nothing is stale: rerund's own deletion is no hand edit."""
    ds = _made(dataset)
    ds.write("in", "y\n")
    ds.save("input without x")

    rerund("rerun", cwd=ds.path)

    assert not (ds.path / "b").exists()
    assert "D\tb" in ds.git("show", "--name-status", "--format=", "HEAD")
    plan = ds.plan()
    assert [] == plan["steps"]
    assert [] == plan["notices"]


def test_deleting_an_output_by_hand_is_still_drift(dataset: Dataset) -> None:
    """A plain commit deleting an output is a hand edit: its record is rerun."""
    ds = _made(dataset)
    ds.git("rm", "-q", "b")
    deletion = ds.save("drop b by hand")

    plan = ds.plan()

    reasons = [reason for step in plan["steps"] for reason in step["reasons"]]
    assert [("drift", "b", deletion)] == [(r["kind"], r["path"], r["commit"]) for r in reasons]
