"""DataLad's own rerun scenarios (reference §6), played against the real ``rerund``.

Each test names the scenario number of ``shared/reference/datalad-run-records.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import Dataset, datalad, rerund, run


def _datalad_run(ds: Dataset, *args: str) -> str:
    datalad("run", *args, cwd=ds.path)
    return ds.head()


def test_1_rerun_commit_is_a_datalad_record(dataset: Dataset) -> None:
    """Scenario 1: a rerun commit has the original subject, pwd '.', exit 0, chain [orig]."""
    original = _datalad_run(dataset, "-m", "TEST", "date +%s%N > stamp")

    rerund("rerun", original, cwd=dataset.path)

    assert ["[DATALAD RUNCMD] TEST"] == dataset.subjects(f"{original}..HEAD")
    record = dataset.record()
    assert (".", 0, [original]) == (record["pwd"], record["exit"], record["chain"])
    assert "date +%s%N > stamp" == record["cmd"]


def test_2_failing_command_commits_nothing(dataset: Dataset) -> None:
    """Scenario 2/19: a command recorded with exit 0 that now fails leaves HEAD unchanged."""
    dataset.write("flag", "ok\n")
    dataset.save("flag")
    original = _datalad_run(dataset, "-m", "check", "test -s flag && date +%s%N > out")
    dataset.write("flag", "")
    dataset.save("empty the flag")
    head = dataset.head()

    done = rerund("rerun", original, cwd=dataset.path, check=False)

    assert 1 == done.returncode
    assert f"step {original[:8]} exited with 1 (recorded: 0)" in done.stderr
    assert head == dataset.head()


def test_3_dirty_tree_is_refused_and_nothing_runs(pipeline: Dataset) -> None:
    """Scenario 3: an untracked file makes rerun refuse before executing anything."""
    pipeline.write("raw/data.txt", "7\n")
    pipeline.save("fix")
    pipeline.write("scratch.txt", "mine\n")
    head = pipeline.head()
    before = pipeline.read("work/clean.txt")

    done = rerund("rerun", cwd=pipeline.path, check=False)

    assert 1 == done.returncode
    assert "has uncommitted changes (?? scratch.txt)" in done.stderr
    assert (head, before) == (pipeline.head(), pipeline.read("work/clean.txt"))


def test_4_missing_input_is_refused_and_nothing_runs(pipeline: Dataset) -> None:
    """Scenario 4: an input that no longer exists is an error before the command runs."""
    first = pipeline.record_commit("clean")
    pipeline.git("rm", "-q", "raw/data.txt")
    pipeline.git("commit", "-qm", "drop raw data")
    head = pipeline.head()

    done = rerund("rerun", first, cwd=pipeline.path, check=False)

    assert 1 == done.returncode
    assert "input did not match an existing file: raw/data.txt" in done.stderr
    assert (head, "") == (pipeline.head(), pipeline.status())


def test_5_sidecar_records_are_read_and_written(dataset: Dataset) -> None:
    """Scenario 5: a DataLad sidecar record is rerun, and a sidecar rerun is DataLad-readable."""
    original = _datalad_run(dataset, "--sidecar", "yes", "-m", "side", "date +%s%N > side.txt")
    assert '"cmd"' not in dataset.git("log", "-1", "--format=%B")
    assert "side" == dataset.plan("--since=")["steps"][0]["summary"]

    dataset.git("config", "datalad.run.record-sidecar", "true")
    rerund("rerun", original, cwd=dataset.path)

    message = dataset.git("log", "-1", "--format=%B")
    assert '"cmd"' not in message and '"' in message
    report = json.loads(datalad("-f", "json", "rerun", "--report", cwd=dataset.path))
    assert [original] == report["run_info"]["chain"]
    assert "" == dataset.status()


def test_7_inputs_with_spaces_are_separate_arguments(dataset: Dataset) -> None:
    """Scenario 7: `{inputs}` quotes each file, so names with spaces stay one argument."""
    dataset.write("a b.txt", "1\n")
    dataset.write("c.txt", "2\n")
    dataset.save("inputs")
    original = _datalad_run(
        dataset,
        "-i",
        "a b.txt",
        "-i",
        "c.txt",
        "-o",
        "n.txt",
        "printf '%s|' {inputs} > {outputs}; cat {inputs} >> {outputs}",
    )
    dataset.write("c.txt", "3\n")
    dataset.save("change c")

    rerund("rerun", cwd=dataset.path)

    assert "a b.txt|c.txt|1\n3\n" == dataset.read("n.txt")
    assert [original] == dataset.record()["chain"]


def test_8_unmatched_output_glob_is_literal(dataset: Dataset) -> None:
    """Scenario 8: an output glob that matches nothing is passed literally."""
    original = _datalad_run(dataset, "-o", "foo*", "-o", "bar", "echo {outputs[1]} > {outputs[1]}")
    rerund("rerun", original, cwd=dataset.path)
    assert "bar\n" == dataset.read("bar")


def test_9_placeholders_pwd_dspath_and_escaped_braces(dataset: Dataset) -> None:
    """Scenario 9: {pwd} from a subdirectory, {dspath}, {{inputs}} and custom substitutions."""
    (dataset.path / "sub").mkdir()
    dataset.write("sub/.keep", "")
    dataset.save("sub")
    datalad("run", "echo {pwd} {dspath} > where; date +%N > stamp", cwd=dataset.path / "sub")
    subdir_run = dataset.head()
    dataset.git("config", "datalad.run.substitutions.license", "gpl3")
    lic = _datalad_run(dataset, "echo {license} > lic; echo x > {{inputs}}; date +%N > stamp")
    dataset.write("sub/where", "stale\n")
    dataset.write("lic", "stale\n")
    dataset.save("scribble")

    rerund("rerun", subdir_run, lic, cwd=dataset.path)

    assert f"{dataset.path}/sub {dataset.path}\n" == dataset.read("sub/where")
    assert "sub" == dataset.record("HEAD~1")["pwd"]
    assert "gpl3\n" == dataset.read("lic")
    assert "x\n" == dataset.read("{inputs}")


def test_9_unknown_placeholder_runs_nothing(dataset: Dataset) -> None:
    """Scenario 9: an unknown placeholder is a clear error and nothing is executed."""
    dataset.git("config", "datalad.run.substitutions.x", "1")
    original = _datalad_run(dataset, "echo {x} > marker")
    dataset.git("config", "--unset", "datalad.run.substitutions.x")
    dataset.git("rm", "-q", "marker")
    dataset.git("commit", "-qm", "remove marker")
    head = dataset.head()

    done = rerund("rerun", original, cwd=dataset.path, check=False)

    assert 1 == done.returncode
    assert "unrecognized placeholder: 'x'" in done.stderr
    assert (head, False) == (dataset.head(), (dataset.path / "marker").exists())


def test_10_io_spec_reuse_modifies_matches_in_place(dataset: Dataset) -> None:
    """Scenario 10: `-i '{outputs}' -o '*.t'` records the glob and edits matches in place."""
    dataset.write("a.t", "a\n")
    dataset.save("a.t")
    original = _datalad_run(dataset, "-i", "{outputs}", "-o", "*.t", "sed -i 's/$/!/' {outputs}")
    assert ["*.t"] == dataset.record()["inputs"]

    rerund("rerun", original, cwd=dataset.path)

    assert "a!!\n" == dataset.read("a.t")


def test_12_dropped_annexed_output_is_removed_and_directory_kept(
    annexed_pipeline: Dataset,
) -> None:
    """Scenario 12: an annexed output without content is removed (its directory stays)."""
    ds = annexed_pipeline
    run("git", "annex", "drop", "--force", "work/stats.txt", cwd=ds.path)
    stats = ds.record_commit("stats")

    rerund("rerun", stats, cwd=ds.path)

    assert "3 6\n" == ds.read("work/stats.txt")
    assert "" == ds.status()


def test_13_rerun_reads_its_own_output(dataset: Dataset) -> None:
    """Scenario 13: `echo x$(cat f) > f` grows on every rerun; --since replays ranges."""
    dataset.write("sub/sequence", "")
    dataset.save("seq")
    base = dataset.head()
    _datalad_run(dataset, "echo x$(cat sub/sequence) > sub/sequence")
    rerund("rerun", "HEAD", cwd=dataset.path)
    assert "xx\n" == dataset.read("sub/sequence")

    rerund("rerun", "--since", base, cwd=dataset.path)

    assert "xxxx\n" == dataset.read("sub/sequence")


def test_14_chain_grows_with_each_rerun_of_a_rerun(dataset: Dataset) -> None:
    """Scenario 14: reruns of reruns give chains [c0], [c0,c1], [c0,c1,c2]."""
    c0 = _datalad_run(dataset, "date +%s%N > stamp")
    rerund("rerun", "HEAD", cwd=dataset.path)
    c1 = dataset.head()
    rerund("rerun", "HEAD", cwd=dataset.path)
    c2 = dataset.head()
    rerund("rerun", "HEAD", cwd=dataset.path)

    chains = [dataset.record(rev)["chain"] for rev in (c1, c2, "HEAD")]
    assert [[c0], [c0, c1], [c0, c1, c2]] == chains
    rerund("rerun", c0, cwd=dataset.path)
    assert [c0] == dataset.record()["chain"]


def test_15_identical_rerun_makes_no_commit(pipeline: Dataset) -> None:
    """Scenario 15: a deterministic step rerun leaves HEAD where it was."""
    head = pipeline.head()
    done = rerund("rerun", "HEAD", cwd=pipeline.path)
    assert "identical" in done.stdout
    assert (head, "") == (pipeline.head(), pipeline.status())


def test_19_recorded_nonzero_exit_is_success_when_it_repeats(dataset: Dataset) -> None:
    """Scenario 19: a record saved with exit 3 reruns successfully when it exits 3 again."""
    done = run(
        "datalad", "run", "-m", "three", "date +%N > out; exit 3", cwd=dataset.path, check=False
    )
    assert 3 == done.returncode
    datalad("save", "-F", ".git/COMMIT_EDITMSG", cwd=dataset.path)
    original = dataset.head()
    assert 3 == dataset.record()["exit"]

    rerund("rerun", original, cwd=dataset.path)

    assert ([original], 3) == (dataset.record()["chain"], dataset.record()["exit"])


def test_20_foreign_records_are_not_run(dataset: Dataset) -> None:
    """Scenario 20: a record carrying another dataset's id is skipped, ours runs."""
    foreign = json.dumps({"cmd": "echo no > foreign", "dsid": "another-id", "pwd": ".", "exit": 0})
    dataset.commit_record("theirs", foreign)
    ours = _datalad_run(dataset, "date +%N > ours")

    plan = dataset.plan("--since=")

    assert [ours] == [step["commit"] for step in plan["steps"]]
    assert "different dataset" in plan["notices"][0]["message"]
    done = rerund("rerun", "HEAD~1", cwd=dataset.path, check=False)
    assert 1 == done.returncode and "different dataset" in done.stderr


def test_21_unavailable_annexed_input_fails_before_running(annexed_pipeline: Dataset) -> None:
    """Scenario 21: input content with no copy anywhere: error, nothing executed or committed."""
    ds = annexed_pipeline
    run("git", "annex", "drop", "--force", "raw/data.txt", cwd=ds.path)
    clean = ds.record_commit("clean")
    head = ds.head()

    done = rerund("rerun", clean, cwd=ds.path, check=False)

    assert 1 == done.returncode
    assert "could not get the content of its inputs" in done.stderr
    assert (head, "") == (ds.head(), ds.status())


def test_23_malformed_records_are_clear_errors(dataset: Dataset) -> None:
    """Scenario 23: no `cmd`, or broken JSON: one clear line naming the commit, nothing runs."""
    for body, problem in (('{"pwd": "."}', "has no command"), ("{broken", "is not valid JSON")):
        bad = dataset.commit_record("bad", body)
        for args in (("rerun", bad), ("plan", "--since=")):
            done = rerund(*args, cwd=dataset.path, check=False)
            assert 1 == done.returncode
            assert f"error: run record in commit {bad[:12]} {problem}" in done.stderr
            assert 1 == len(done.stderr.strip().splitlines())
        assert bad == dataset.head()
        assert problem in dataset.plan()["notices"][-1]["message"]
        dataset.git("reset", "-q", "--hard", "HEAD~1")


def test_24_undeclared_changes_of_the_original_are_outputs(dataset: Dataset) -> None:
    """Scenario 24: files the original commit modified are outputs even if undeclared."""
    original = _datalad_run(dataset, "date +%s%N > undeclared")
    before = dataset.read("undeclared")

    rerund("rerun", original, cwd=dataset.path)

    assert before != dataset.read("undeclared")
    assert ["undeclared"] == dataset.git("show", "--format=", "--name-only", "HEAD").split()


def test_26_script_lists_expanded_commands(pipeline: Dataset, tmp_path: Path) -> None:
    """Scenario 26: --script writes the expanded commands with their records, runs nothing."""
    script = tmp_path / "steps.sh"
    head = pipeline.head()

    rerund("rerun", "--since=", "--script", str(script), cwd=pipeline.path)

    text = script.read_text()
    clean = pipeline.record_commit("clean")
    assert text.startswith("#!/bin/sh\n#\n# This file was generated by running")
    assert f"\n# clean\n# (record: {clean})\nsh code/clean.sh raw/data.txt work/clean.txt\n" in text
    assert head == pipeline.head()
    stdout = rerund("rerun", "--since=", "--script", "-", cwd=pipeline.path).stdout
    assert text.splitlines()[7:] == stdout.splitlines()[7:]


def test_22_empty_since_selection_exits_1_in_datalads_words(dataset: Dataset) -> None:
    """Scenario 22 / issue 14.4: --since selecting no record exits 1; stale mode exits 0."""
    _datalad_run(dataset, "date +%N > stamp")

    for args in (("rerun", "--since=HEAD"), ("plan", "--since=HEAD")):
        done = rerund(*args, cwd=dataset.path, check=False)
        assert 1 == done.returncode
        assert "No run commits found in range HEAD..master" in done.stderr

    done = rerund("rerun", cwd=dataset.path)
    assert "nothing is stale" in done.stdout


def test_25_run_merge_record_reruns_stacked_on_head(dataset: Dataset) -> None:
    """Issue 14.1: a command that commits itself is rerun as a new run-merge on HEAD."""
    original = _datalad_run(
        dataset, "-m", "M", "echo x >> foo && git add foo && git commit -qm inner"
    )
    _datalad_run(dataset, "echo b > b")
    head = dataset.head()

    rerund("rerun", original, cwd=dataset.path)

    assert [head, f"{head} inner"] == [
        dataset.git("rev-parse", "HEAD^1"),
        dataset.git("log", "-1", "--format=%P %s", "HEAD^2"),
    ]
    assert ("[DATALAD RUNCMD] M", [original]) == (
        dataset.git("log", "-1", "--format=%s"),
        dataset.record()["chain"],
    )
    assert ("x\nx\n", "") == (dataset.read("foo"), dataset.status())


def test_5_sidecar_goes_where_annex_largefiles_sends_it(dataset: Dataset) -> None:
    """Issue 14.5: a binary sidecar is annexed in a text2git dataset, as DataLad stores it."""
    dataset.git("config", "datalad.run.record-sidecar", "true")
    original = _datalad_run(dataset, "date +%s%N > side.txt")
    assert "120000" == dataset.git("ls-tree", original, ".datalad/runinfo/").split()[0]

    rerund("rerun", original, cwd=dataset.path)

    added = dataset.git("show", "--format=", "--raw", "HEAD", "--", ".datalad/runinfo/")
    assert added.split()[1] == "120000"


_NO_ANNEX_FILTER = (
    "-c",
    "filter.annex.process=",
    "-c",
    "filter.annex.smudge=",
    "-c",
    "core.hooksPath=/dev/null",
)


def test_24_unlocked_output_holding_its_pointer_gets_its_content(tmp_path: Path) -> None:
    """An unlocked annexed output checked out as pointer text (as in rerund's clones) is
    filled in before the command appends to it, and stays annexed and unlocked."""
    datalad("create", str(tmp_path / "ds"))
    ds = Dataset(tmp_path / "ds")
    ds.git("config", "annex.addunlocked", "true")
    original = _datalad_run(ds, "-o", "out", "echo x >> out")
    (ds.path / "out").unlink()
    ds.git(*_NO_ANNEX_FILTER, "checkout", "--", "out")
    assert ds.read("out").startswith("/annex/objects/")

    rerund("rerun", original, cwd=ds.path)

    assert "x\nx\n" == ds.read("out")
    assert ds.git("cat-file", "-p", "HEAD:out").startswith("/annex/objects/")
    assert "" == ds.status()
