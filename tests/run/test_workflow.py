"""The updating workflow of a lab: fix raw data or code, rerun exactly what is stale."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import Dataset, rerund


def _stale_subjects(ds: Dataset) -> list[str]:
    plan = ds.plan()
    return [ds.git("log", "-1", "--format=%s", step["commit"]) for step in plan["steps"]]


def test_fresh_pipeline_has_nothing_stale(pipeline: Dataset) -> None:
    """Right after `datalad run` built it, nothing in the pipeline is stale."""
    assert [] == pipeline.plan()["steps"]


def test_raw_data_fix_makes_all_three_steps_stale_in_order(pipeline: Dataset) -> None:
    """A commit fixing the raw data puts the three steps in the plan, upstream first."""
    pipeline.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
    fix = pipeline.save("fix raw data")

    plan = pipeline.plan()

    assert fix == plan["head"]
    expected = ["[DATALAD RUNCMD] clean", "[DATALAD RUNCMD] stats", "[DATALAD RUNCMD] report"]
    assert expected == _stale_subjects(pipeline)
    first = plan["steps"][0]["reasons"][0]
    assert {"kind": "input", "path": "raw/data.txt", "commit": fix} == {
        key: first[key] for key in ("kind", "path", "commit")
    }
    assert ["upstream"] == [r["kind"] for r in plan["steps"][2]["reasons"]]


def test_rerun_regenerates_all_outputs_and_leaves_nothing_stale(pipeline: Dataset) -> None:
    """`rerund rerun` replays the stale plan, committing one rerun record per step."""
    pipeline.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
    fix = pipeline.save("fix raw data")

    rerund("rerun", cwd=pipeline.path)

    assert "1\n2\n3\n10\n" == pipeline.read("work/clean.txt")
    assert "4 16\n" == pipeline.read("work/stats.txt")
    assert "rows and total: 4 16\n" == pipeline.read("report.txt")
    expected = ["[DATALAD RUNCMD] clean", "[DATALAD RUNCMD] stats", "[DATALAD RUNCMD] report"]
    assert expected == pipeline.subjects(f"{fix}..HEAD")
    assert "" == pipeline.status()
    assert [] == pipeline.plan()["steps"]


def test_code_change_makes_only_that_step_and_downstream_stale(pipeline: Dataset) -> None:
    """Editing the stats script (an implicit input) makes stats and report stale, not clean."""
    pipeline.write("code/stats.sh", 'awk \'{s += $1} END {print NR, s, s/NR}\' "$1" > "$2"\n')
    change = pipeline.save("report the mean too")

    plan = pipeline.plan()

    assert ["[DATALAD RUNCMD] stats", "[DATALAD RUNCMD] report"] == _stale_subjects(pipeline)
    reason = plan["steps"][0]["reasons"][0]
    assert ("implicit-input", "code/stats.sh", change) == (
        reason["kind"],
        reason["path"],
        reason["commit"],
    )


def test_implicit_inputs_can_be_switched_off(pipeline: Dataset) -> None:
    """With implicit inputs off (flag or git config), a script change makes nothing stale."""
    pipeline.write("code/stats.sh", 'awk \'{s += $1} END {print NR, s, s/NR}\' "$1" > "$2"\n')
    pipeline.save("report the mean too")

    assert [] == pipeline.plan("--no-implicit-inputs")["steps"]
    pipeline.git("config", "rerund.implicit-inputs", "false")
    assert [] == pipeline.plan()["steps"]


def test_unrelated_change_makes_nothing_stale(pipeline: Dataset) -> None:
    """A commit touching no input of any record leaves the plan empty."""
    pipeline.write("notes/README.md", "what this dataset is\n")
    pipeline.save("add notes")

    assert [] == pipeline.plan()["steps"]


def test_reverted_change_is_no_change(pipeline: Dataset) -> None:
    """Changing raw data and changing it back leaves nothing stale: git ids are equal."""
    original = pipeline.read("raw/data.txt")
    pipeline.write("raw/data.txt", original + "99\n")
    pipeline.save("oops")
    pipeline.write("raw/data.txt", original)
    pipeline.save("revert oops")

    assert [] == pipeline.plan()["steps"]


def test_human_plan_names_step_command_and_reason(pipeline: Dataset) -> None:
    """`rerund plan` prints each step, why it is stale (through which path), and its command."""
    pipeline.write("raw/data.txt", "5\n")
    fix = pipeline.save("fix raw data")

    out = rerund("plan", cwd=pipeline.path).stdout.splitlines()

    clean, stats = pipeline.record_commit("clean"), pipeline.record_commit("stats")
    assert out[0].startswith("3 step(s) stale at ")
    assert "clean" in out[1] and f"input raw/data.txt changed in {fix[:8]}" in out[1]
    assert "       $ sh code/clean.sh {inputs} {outputs}" == out[2]
    assert out[3].endswith(f"<- reads work/clean.txt written by stale step {clean[:8]}")
    assert out[5].endswith(f"<- reads work/stats.txt written by stale step {stats[:8]}")
    assert "       $ sh code/report.sh {inputs} {outputs}" == out[6]
    assert 7 == len(out)


def test_named_records_are_requested_not_selected_by_since(pipeline: Dataset) -> None:
    """`rerund rerun COMMIT --dry-run` gives the reason "requested"; --since is not mentioned."""
    stats = pipeline.record_commit("stats")

    out = rerund("rerun", "--dry-run", stats, cwd=pipeline.path).stdout

    assert f"  1. {stats[:8]}  stats  <- requested\n" in out
    assert "--since" not in out


def test_plan_reads_a_bare_repository(pipeline: Dataset, tmp_path: Path) -> None:
    """`rerund plan -C server.git` works on the server's bare repository, as in a clone."""
    pipeline.write("raw/data.txt", "5\n")
    pipeline.save("fix raw data")
    bare = tmp_path / "server.git"
    pipeline.git("clone", "-q", "--bare", str(pipeline.path), str(bare))

    plan = json.loads(rerund("plan", "--json", "-C", str(bare), cwd=tmp_path).stdout)

    assert pipeline.plan() == plan
    assert 3 == len(plan["steps"])


def test_identical_reproduction_is_noted_and_then_nothing_is_stale(pipeline: Dataset) -> None:
    """A raw change that changes no output: the rerun commits nothing, notes it, plan is empty."""
    pipeline.write("raw/data.txt", "# measured again, same values\n3\n1\n2\n")
    change = pipeline.save("reword the comment")
    assert 3 == len(pipeline.plan()["steps"])

    done = rerund("rerun", cwd=pipeline.path)

    # The first step reproduces its output; the two reading it are cut off (issue 10).
    assert (1, 2) == (done.stdout.count("identical"), done.stdout.count("cut-off"))
    assert change == pipeline.head()
    assert [] == pipeline.plan()["steps"]
    note = pipeline.git("notes", "--ref=refs/notes/rerund", "show", pipeline.record_commit("clean"))
    assert f"reproduced-at {change}" == note
    pipeline.write("raw/data.txt", "# measured again, same values\n3\n1\n2\n4\n")
    pipeline.save("a real change")
    assert 3 == len(pipeline.plan()["steps"])


def test_an_unwritable_note_is_a_warning_not_a_failure(pipeline: Dataset) -> None:
    """If the note cannot be written the rerun still succeeds, and says what was lost."""
    pipeline.write("raw/data.txt", "# measured again, same values\n3\n1\n2\n")
    change = pipeline.save("reword the comment")
    (pipeline.path / ".git" / "refs" / "notes").write_text("in the way\n")  # no ref can go here

    done = rerund("rerun", cwd=pipeline.path)

    assert (1, 2) == (done.stdout.count("identical"), done.stdout.count("cut-off"))
    assert "rerund: warning: could not note" in done.stderr
    assert change == pipeline.head()
