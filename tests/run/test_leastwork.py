"""Least work in `rerund rerun`: early cutoff and results reused from history (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import Dataset, datalad, rerund, run


def _counting_pipeline(path: Path, counter: Path, *, annex: bool) -> Dataset:
    """raw -> clean -> stats -> report; every command appends a line to ``counter``."""
    datalad("create", str(path)) if annex else datalad("create", "-c", "text2git", str(path))
    ds = Dataset(path)
    ds.write("raw/data.txt", "# measurements\n3\n1\n2\n")
    ds.write("code/clean.sh", 'grep -v \'^#\' "$1" | sort -n > "$2"\n')
    datalad("save", "-m", "raw data and code", cwd=path)
    count = f"echo run >> {counter}"
    ds.run_step(
        "clean", "raw/data.txt", "clean.txt", f"{count}; sh code/clean.sh {{inputs}} {{outputs}}"
    )
    ds.run_step("stats", "clean.txt", "stats.txt", f"{count}; wc -l < {{inputs}} > {{outputs}}")
    ds.run_step(
        "report", "stats.txt", "report.txt", f"{count}; sed 's/^/rows: /' {{inputs}} > {{outputs}}"
    )
    counter.unlink()
    return ds


def _runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_comment_only_change_runs_one_step_and_cuts_off_two(pipeline: Dataset) -> None:
    """A comment in the first script: it reruns identically, its two dependants are cut off."""
    pipeline.write("code/clean.sh", "# sorts the measurements\n" + pipeline.read("code/clean.sh"))
    change = pipeline.save("comment the cleaning script")
    steps = pipeline.plan()["steps"]
    assert [False, True, True] == [step["may_cut_off"] for step in steps]

    done = rerund("rerun", cwd=pipeline.path)

    assert change == pipeline.head()  # nothing changed, so nothing committed
    assert "1 identical, 2 cut-off" in done.stdout + done.stderr
    logs = pipeline.path / ".git" / "rerund" / "logs"
    for step in steps[1:]:
        assert "cut off" in (logs / f"{step['commit'][:12]}.log").read_text()
    assert [] == pipeline.plan()["steps"]  # the next plan agrees


def test_cutoff_does_not_skip_a_step_whose_input_changed(pipeline: Dataset) -> None:
    """A raw fix changes what every step reads: all three run, none is cut off."""
    pipeline.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
    fix = pipeline.save("fix raw data")

    rerund("rerun", cwd=pipeline.path)

    assert 3 == len(pipeline.subjects(f"{fix}..HEAD"))
    assert "rows and total: 4 16\n" == pipeline.read("report.txt")


@pytest.mark.parametrize("annex", [False, True], ids=["git", "annex"])
def test_revert_of_a_raw_fix_restores_every_output_and_runs_nothing(
    tmp_path: Path, annex: bool
) -> None:
    """Reverting a fix: every output comes back from history, no command runs, records say so."""
    counter = tmp_path / "counter"
    ds = _counting_pipeline(tmp_path / "ds", counter, annex=annex)
    before = {name: ds.read(name) for name in ("clean.txt", "stats.txt", "report.txt")}
    ds.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
    ds.save("fix raw data")
    rerund("rerun", cwd=ds.path)
    assert 3 == _runs(counter)
    ds.git("revert", "--no-edit", "HEAD~3")  # the fix only; the reruns' commits stay
    revert = ds.head()

    done = rerund("rerun", cwd=ds.path)

    assert 3 == _runs(counter), done.stderr  # no command ran
    assert before == {name: ds.read(name) for name in before}
    assert 3 == len(ds.subjects(f"{revert}..HEAD"))
    for rev in ("HEAD", "HEAD~1", "HEAD~2"):
        reused = ds.record(rev)["rerund"]["reused"]
        assert ds.git("rev-parse", f"{reused}^{{tree}}") != ""  # a real commit of the history
    assert "3 reused" in done.stdout + done.stderr
    assert [] == ds.plan()["steps"]
    assert "" == ds.status()


def test_reuse_can_be_switched_off(tmp_path: Path) -> None:
    """`--no-reuse` and `git config rerund.reuse false` run the commands again."""
    counter = tmp_path / "counter"
    ds = _counting_pipeline(tmp_path / "ds", counter, annex=False)
    ds.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
    ds.save("fix raw data")
    rerund("rerun", cwd=ds.path)
    ds.git("revert", "--no-edit", "HEAD~3")

    rerund("rerun", "--no-reuse", cwd=ds.path)

    assert 6 == _runs(counter)
    assert "rerund" not in ds.record()


def test_a_step_marked_not_reusable_always_runs(tmp_path: Path) -> None:
    """A command matched by `.rerund.toml`'s `[reuse] never` is run, even with a result at hand."""
    counter = tmp_path / "counter"
    ds = _counting_pipeline(tmp_path / "ds", counter, annex=False)
    ds.write(".rerund.toml", '[reuse]\nnever = ["*wc -l*"]\n')
    ds.save("stats are never reused")
    ds.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
    ds.save("fix raw data")
    rerund("rerun", cwd=ds.path)
    ds.git("revert", "--no-edit", "HEAD~3")

    rerund("rerun", cwd=ds.path)

    assert 4 == _runs(counter)  # 3 + the stats step, which ran again
    assert "reused" in ds.record("HEAD~2")["rerund"]  # clean
    assert "rerund" not in ds.record("HEAD~1")  # stats ran
    assert "reused" in ds.record("HEAD")["rerund"]  # report
    assert [] == ds.plan()["steps"]


def test_datalad_reruns_a_reused_commit_by_running_its_command(tmp_path: Path) -> None:
    """`datalad rerun` of a commit whose outputs were reused runs the command as usual."""
    counter = tmp_path / "counter"
    ds = _counting_pipeline(tmp_path / "ds", counter, annex=False)
    ds.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
    ds.save("fix raw data")
    rerund("rerun", cwd=ds.path)
    ds.git("revert", "--no-edit", "HEAD~3")
    rerund("rerun", cwd=ds.path)
    first_reused = ds.git("rev-parse", "HEAD~2")
    assert "reused" in ds.record(first_reused)["rerund"]

    run("datalad", "rerun", first_reused, cwd=ds.path)

    assert 4 == _runs(counter)
    assert "" == ds.status()


def _noisy_pipeline(path: Path, counter: Path) -> Dataset:
    """raw -> clean -> noisy (adds a random number) -> final; commands count their runs."""
    datalad("create", "-c", "text2git", str(path))
    ds = Dataset(path)
    ds.write("raw/data.txt", "3\n1\n")
    datalad("save", "-m", "raw data", cwd=path)
    count = f"echo run >> {counter}"
    ds.run_step("clean", "raw/data.txt", "clean.txt", f"{count}; sort -n {{inputs}} > {{outputs}}")
    noisy = f"{count}; (cat {{inputs}}; od -An -N8 -tu8 /dev/urandom) > {{outputs}}"
    ds.run_step("noisy", "clean.txt", "noisy.txt", noisy)
    ds.run_step("final", "noisy.txt", "final.txt", f"{count}; wc -c < {{inputs}} > {{outputs}}")
    ds.write(".rerund.toml", '[reuse]\nnever = ["*/dev/urandom*"]\n')
    ds.save("the noisy step is never reused")
    counter.unlink()
    return ds


def test_a_non_deterministic_step_is_rerun_and_its_dependants_are_not_cut_off(
    tmp_path: Path,
) -> None:
    """A step marked non-reusable runs on a revert; its new output makes its dependant run."""
    counter = tmp_path / "counter"
    ds = _noisy_pipeline(tmp_path / "ds", counter)
    ds.write("raw/data.txt", "3\n1\n2\n")
    ds.save("fix raw data")
    rerund("rerun", cwd=ds.path)
    assert 3 == _runs(counter)
    noisy_before = ds.read("noisy.txt")
    ds.git("revert", "--no-edit", "HEAD~3")
    revert = ds.head()

    rerund("rerun", cwd=ds.path)

    assert 5 == _runs(counter)  # clean reused; noisy and final ran
    assert ["clean", "noisy", "final"] == [
        s.removeprefix("[DATALAD RUNCMD] ") for s in ds.subjects(f"{revert}..HEAD")
    ]
    assert "reused" in ds.record("HEAD~2")["rerund"]
    assert "rerund" not in ds.record("HEAD~1")
    assert "rerund" not in ds.record("HEAD")
    assert noisy_before != ds.read("noisy.txt")
    assert [] == ds.plan()["steps"]
