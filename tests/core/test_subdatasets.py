"""Staleness through subdatasets (SPEC §2 "Nested datasets", issue 7), on a real YODA yoda."""

from __future__ import annotations

from typing import Any

from helpers import Dataset, datalad, git, rerund, run
from yoda import Lab


def _steps(plan: dict[str, Any]) -> dict[str, list[str]]:
    """Each stale step's summary and the texts of its reasons."""
    return {s["summary"]: [r["text"] for r in s["reasons"]] for s in plan["steps"]}


def test_raw_fix_in_a_subdataset_makes_the_analysis_stale(yoda: Lab) -> None:
    """The issue's reproduction: after `datalad update -r --how merge`, clean is stale, and why."""
    before = yoda.gitlink()
    yoda.fix_raw("fix survey", {"survey.csv": "id,score\n2,6\n1,3\n"})
    after = yoda.update()

    plan = yoda.ana.plan()

    reason = f"input inputs/raw/survey.csv changed: raw {before[:8]} -> {after[:8]}"
    assert {"clean": [reason]} == _steps(plan)
    assert {"path": "inputs/raw", "from": before, "to": after} == (
        plan["steps"][0]["reasons"][0]["subdataset"]
    )
    assert [] == plan["undecided"]
    rerund("rerun", cwd=yoda.ana.path)
    assert "1,3\n2,6\nid,score\n" == yoda.ana.read("clean.csv")
    assert "nothing is stale" in rerund("plan", cwd=yoda.ana.path).stdout


def test_moved_gitlink_without_relevant_change_makes_nothing_stale(yoda: Lab) -> None:
    """A subdataset commit that touches none of a record's inputs changes nothing."""
    yoda.fix_raw("notes", {"notes.txt": "collected in June\n", "sub-01/extra.txt": "x\n"})
    before = yoda.ana.head()
    yoda.update()
    assert before != yoda.ana.head()  # the gitlink did move

    plan = yoda.ana.plan()

    assert ([], []) == (plan["steps"], plan["undecided"])


def test_glob_input_inside_a_subdataset(yoda: Lab) -> None:
    """A glob through a subdataset sees a new match there (and only its own record goes stale)."""
    yoda.fix_raw("third subject", {"sub-03/anat.nii.gz": "anat 3\n"})
    yoda.update()

    steps = _steps(yoda.ana.plan())

    assert ["anat"] == list(steps)
    assert ["inputs/raw/sub-03/anat.nii.gz"] == [text.split()[1] for text in steps["anat"]]


def test_annexed_raw_data_is_compared_by_annex_key(yoda: Lab) -> None:
    """An annexed input inside a subdataset is stale when its key changes, not when unlocked."""
    raw = yoda.raw
    git("annex", "unlock", "scan.bin", cwd=raw.path)
    git("commit", "-q", "-m", "unlock scan", "scan.bin", cwd=raw.path)
    assert "100644" == git("ls-tree", "HEAD", "scan.bin", cwd=raw.path).split()[0]
    yoda.update()
    assert [] == yoda.ana.plan()["steps"]  # same key, locked or not

    yoda.fix_raw("rescan", {"scan.bin": b"\x00\x02rescanned\xff"})
    yoda.update()

    assert ["scan"] == list(_steps(yoda.ana.plan()))
    rerund("rerun", cwd=yoda.ana.path)
    assert "12" == yoda.ana.read("scan.txt").strip()


def test_input_two_levels_deep(yoda: Lab) -> None:
    """A file in a subdataset of the subdataset is followed through both gitlinks."""
    yoda.fix_raw("deep fix", {"deep/x.csv": "x\n2\n"})
    before = yoda.gitlink()
    after = yoda.update()

    steps = _steps(yoda.ana.plan())

    assert {"deep": [f"input inputs/raw/deep/x.csv changed: raw {before[:8]} -> {after[:8]}"]} == (
        steps
    )


def test_gitlink_moved_back_is_no_change(yoda: Lab) -> None:
    """A fix that is undone by moving the gitlink back makes nothing stale any more."""
    before = yoda.gitlink()
    yoda.fix_raw("fix survey", {"survey.csv": "id,score\n9,9\n"})
    yoda.update()
    assert ["clean"] == list(_steps(yoda.ana.plan()))

    git("checkout", "-q", before, cwd=yoda.ana.path / "inputs/raw")
    yoda.ana.save("back to the old raw data")
    assert before == yoda.gitlink()

    assert [] == yoda.ana.plan()["steps"]


def test_rerun_at_the_new_gitlink_then_moved_back_is_stale(yoda: Lab) -> None:
    """After a rerun at the fixed data, moving the gitlink backwards makes the rerun stale."""
    old = yoda.gitlink()
    yoda.fix_raw("fix survey", {"survey.csv": "id,score\n9,9\n"})
    new = yoda.update()
    rerund("rerun", cwd=yoda.ana.path)
    git("checkout", "-q", old, cwd=yoda.ana.path / "inputs/raw")
    yoda.ana.save("pin the old raw data")

    steps = _steps(yoda.ana.plan())

    assert {"clean": [f"input inputs/raw/survey.csv changed: raw {new[:8]} -> {old[:8]}"]} == steps


def test_removed_subdataset_makes_its_readers_stale(yoda: Lab) -> None:
    """Removing the subdataset removes every input inside it."""
    datalad("remove", "-d", ".", "--reckless", "availability", "inputs/raw", cwd=yoda.ana.path)

    steps = _steps(yoda.ana.plan())

    assert ["anat", "clean", "deep", "scan"] == sorted(steps)
    assert any(text.endswith("-> removed") for text in steps["clean"])


def test_uninstalled_subdataset_is_undecided_until_installed(yoda: Lab, tmp_path: Any) -> None:
    """A clone without the subdataset cannot tell, and says so; installing it decides."""
    yoda.fix_raw("fix survey", {"survey.csv": "id,score\n2,7\n"})
    after = yoda.update()
    clone = Dataset(tmp_path / "clone")
    datalad("clone", str(yoda.ana.path), str(clone.path))

    plan = clone.plan()
    text = rerund("plan", cwd=clone.path).stdout

    assert [] == plan["steps"]
    undecided = {item["summary"]: item["text"] for item in plan["undecided"]}
    expected = f"cannot tell: subdataset inputs/raw at {after[:8]} is not available"
    assert dict.fromkeys(["anat", "clean", "deep", "scan"], expected) == undecided
    assert "nothing is stale" not in text
    assert expected in text

    # Installed by plain git (objects absorbed into .git/modules), the records are decided.
    git("submodule", "init", "inputs/raw", cwd=clone.path)
    git("config", "submodule.inputs/raw.url", str(yoda.raw.path), cwd=clone.path)
    run("git", "-c", "protocol.file.allow=always", "submodule", "update", "-q", cwd=clone.path)
    assert (clone.path / "inputs/raw/.git").is_file()

    plan = clone.plan()

    assert (["clean"], []) == (list(_steps(plan)), plan["undecided"])


def test_installed_subdataset_missing_the_new_commit_is_undecided(yoda: Lab, tmp_path: Any) -> None:
    """A subdataset installed at the old commit lacks the new one: undecided, naming it."""
    clone = Dataset(tmp_path / "clone")
    datalad("clone", str(yoda.ana.path), str(clone.path))
    datalad("get", "-n", "inputs/raw", cwd=clone.path)
    yoda.fix_raw("fix survey", {"survey.csv": "id,score\n2,7\n"})
    after = yoda.update()
    # The superdataset only: its gitlink now names a commit the subdataset lacks.
    git("pull", "-q", "--no-recurse-submodules", "origin", "master", cwd=clone.path)

    plan = clone.plan()

    assert [] == plan["steps"]
    assert {f"cannot tell: subdataset inputs/raw at {after[:8]} is not available"} == {
        item["text"] for item in plan["undecided"]
    }
    git("fetch", "-q", str(yoda.raw.path), cwd=clone.path / "inputs/raw")
    assert ["clean"] == list(_steps(clone.plan()))


def test_since_compatibility_with_inputs_in_subdatasets(yoda: Lab) -> None:
    """--since selects what `datalad rerun --since` selects, and the reruns are DataLad-readable."""
    first = yoda.ana.record_commit("clean")
    base = git("rev-parse", f"{first}^", cwd=yoda.ana.path)
    yoda.fix_raw("fix survey", {"survey.csv": "id,score\n4,4\n"})
    yoda.update()
    report = datalad("-f", "json", "rerun", "--report", f"--since={base}", cwd=yoda.ana.path)
    expected = [line for line in report.splitlines() if '"run"' in line.split('"rerun_action"')[-1]]

    plan = yoda.ana.plan("--since", base)

    assert ["clean", "anat", "scan", "deep"] == [s["summary"] for s in plan["steps"]]
    assert len(expected) == len(plan["steps"])
    head = yoda.ana.head()
    rerund("rerun", f"--since={base}", cwd=yoda.ana.path)
    assert "4,4\nid,score\n" == yoda.ana.read("clean.csv")
    assert ["[DATALAD RUNCMD] clean"] == yoda.ana.subjects(f"{head}..HEAD")  # the rest identical
    datalad("rerun", cwd=yoda.ana.path)  # DataLad reruns rerund's commit
    assert "" == yoda.ana.status()


def test_the_subdataset_itself_as_input(yoda: Lab) -> None:
    """`-i inputs/raw` covers every file inside; a move that changes no file is no change."""
    ana = yoda.ana
    ana.run_step("listing", "inputs/raw", "listing.txt", "cat inputs/raw/notes.txt > {outputs}")
    git("commit", "-q", "--allow-empty", "-m", "nothing", cwd=yoda.raw.path)
    yoda.update()
    assert [] == ana.plan()["steps"]

    yoda.fix_raw("notes", {"notes.txt": "collected in June\n"})
    yoda.update()

    assert {"listing": ["input inputs/raw/notes.txt changed: raw"]} == {
        name: [text.rsplit(" ", 3)[0] for text in texts]
        for name, texts in _steps(ana.plan()).items()
    }


def test_implicit_input_inside_a_subdataset(yoda: Lab) -> None:
    """A file inside a subdataset that the command names is an implicit input."""
    ana = yoda.ana
    datalad("run", "-m", "copy notes", "-o", "n.txt", "cp inputs/raw/notes.txt n.txt", cwd=ana.path)
    yoda.fix_raw("notes", {"notes.txt": "collected in June\n"})
    yoda.update()

    plan = ana.plan()

    assert ["copy notes"] == [s["summary"] for s in plan["steps"]]
    assert ["implicit-input"] == [r["kind"] for r in plan["steps"][0]["reasons"]]
    assert plan["steps"][0]["reasons"][0]["text"].startswith(
        "implicit input inputs/raw/notes.txt changed: raw "
    )
    assert [] == ana.plan("--no-implicit-inputs")["steps"]


def test_identical_reproduction_through_a_subdataset_is_not_stale_again(yoda: Lab) -> None:
    """A rerun that reproduced identically after a gitlink move leaves nothing stale."""
    yoda.fix_raw("reorder", {"survey.csv": "id,score\n1,3\n2,5\n"})  # same rows, sorted the same
    yoda.update()
    assert ["clean"] == list(_steps(yoda.ana.plan()))

    done = rerund("rerun", cwd=yoda.ana.path)

    assert "identical" in done.stdout
    assert [] == yoda.ana.plan()["steps"]
    yoda.fix_raw("notes", {"notes.txt": "again\n"})
    yoda.update()
    assert [] == yoda.ana.plan()["steps"]  # survey.csv is still what was reproduced
    yoda.fix_raw("real fix", {"survey.csv": "id,score\n1,4\n2,5\n"})
    yoda.update()
    assert ["clean"] == list(_steps(yoda.ana.plan()))  # a new change is not explained by it


def test_hand_edit_of_an_output_inside_a_subdataset_is_drift(dataset: Dataset) -> None:
    """An output in sub/ edited by hand (the gitlink moves) marks its record drifted."""
    datalad("create", "-d", ".", "-c", "text2git", "sub", cwd=dataset.path)
    dataset.write("in.txt", "a\n")
    dataset.save("input")
    record = dataset.run_step("copy", "in.txt", "sub/out.txt", "cp {inputs} {outputs}")
    dataset.write("sub/notes.txt", "unrelated\n")
    datalad("save", "-r", "-m", "unrelated file in sub", cwd=dataset.path)
    assert [] == dataset.plan()["steps"]

    dataset.write("sub/out.txt", "by hand\n")
    datalad("save", "-r", "-m", "hand edit", cwd=dataset.path)
    edit = dataset.head()

    steps = dataset.plan()["steps"]

    assert [(record, True)] == [(s["commit"], s["drifted"]) for s in steps]
    assert [("drift", "sub/out.txt", edit)] == [
        (r["kind"], r["path"], r["commit"]) for r in steps[0]["reasons"]
    ]
    assert steps[0]["reasons"][0]["text"].startswith("output sub/out.txt was edited by hand: sub ")
