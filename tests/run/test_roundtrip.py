"""rerund and `datalad rerun` replay each other's commits, both ways."""

from __future__ import annotations

import json

from helpers import Dataset, datalad, rerund, run


def _fix_raw(ds: Dataset) -> str:
    ds.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
    return ds.save("fix raw data")


def test_datalad_reruns_rerund_commits_identically(pipeline: Dataset) -> None:
    """`datalad rerun` of rerund's three commits reproduces them: no new commit, clean tree."""
    fix = _fix_raw(pipeline)
    rerund("rerun", cwd=pipeline.path)
    tip = pipeline.head()

    datalad("rerun", f"--since={fix}", cwd=pipeline.path)

    assert (tip, "") == (pipeline.head(), pipeline.status())


def test_datalad_report_reads_rerund_records(pipeline: Dataset) -> None:
    """DataLad parses rerund's records: same commands, chains pointing at the originals."""
    fix = _fix_raw(pipeline)
    originals = [pipeline.record_commit(s) for s in ("clean", "stats", "report")]
    rerund("rerun", cwd=pipeline.path)

    lines = datalad("-f", "json", "rerun", "--report", f"--since={fix}", cwd=pipeline.path)
    reports = [json.loads(line) for line in lines.splitlines()]

    assert [[sha] for sha in originals] == [r["run_info"]["chain"] for r in reports]
    assert ["clean", "stats", "report"] == [r["run_message"] for r in reports]


def test_after_datalads_own_rerun_nothing_is_stale(pipeline: Dataset) -> None:
    """DataLad's rerun commits supersede the originals, so rerund sees nothing stale."""
    base = pipeline.git("rev-parse", f"{pipeline.record_commit('clean')}~1")
    _fix_raw(pipeline)
    assert 3 == len(pipeline.plan()["steps"])

    datalad("rerun", f"--since={base}", cwd=pipeline.path)

    assert [] == pipeline.plan()["steps"]


def test_annexed_outputs_are_regenerated_and_relocked(annexed_pipeline: Dataset) -> None:
    """In an all-annex dataset the reruns commit annexed, locked outputs and a clean tree."""
    ds = annexed_pipeline
    ds.write("raw/data.txt", "5\n4\n")
    fix = ds.save("fix raw data")

    rerund("rerun", cwd=ds.path)

    assert "rows and total: 2 9\n" == ds.read("report.txt")
    assert (ds.path / "report.txt").is_symlink()
    assert "" == ds.status()
    assert 3 == len(ds.subjects(f"{fix}..HEAD"))
    tip = ds.head()
    datalad("rerun", f"--since={fix}", cwd=ds.path)
    assert tip == ds.head()
    fsck = run("git", "annex", "fsck", "--fast", "--quiet", cwd=ds.path)
    assert "" == fsck.stdout.strip()


def test_since_selects_what_datalad_rerun_since_selects(pipeline: Dataset) -> None:
    """`--since` lists the same records as `datalad rerun --report --since`, in its order."""
    ds = pipeline
    base = ds.record_commit("clean")
    ds.git("checkout", "-q", "-b", "side")
    datalad("run", "-m", "side step", "date +%N > side.txt", cwd=ds.path)
    ds.git("checkout", "-q", "-")
    datalad("run", "-m", "main step", "date +%N > main.txt", cwd=ds.path)
    ds.git("merge", "-q", "--no-ff", "-m", "merge side", "side")

    for since in (base, ""):
        ours = [s["commit"] for s in ds.plan(f"--since={since}")["steps"]]
        lines = datalad("-f", "json", "rerun", "--report", f"--since={since}", cwd=ds.path)
        theirs = [
            r["commit"]
            for r in map(json.loads, lines.splitlines())
            if r.get("rerun_action") == "run"
        ]
        assert theirs == ours


def test_unlocked_input_checked_out_as_its_pointer_is_read_with_its_content(
    annexed_pipeline: Dataset,
) -> None:
    """An unlocked input checked out as pointer text (content present) is read as its content.

    In a user's clone git-annex's filter fills the file in on the way (a `git status`
    suffices); tests/service/test_annex_inputs.py covers the daemon's filter-less
    clones, where only rerund's own fill-in does.
    """
    ds = annexed_pipeline
    run("git", "annex", "unlock", "raw/data.txt", cwd=ds.path)
    ds.write("raw/data.txt", "5\n4\n")
    run("git", "-c", "annex.addunlocked=true", "annex", "add", "-q", "raw/data.txt", cwd=ds.path)
    ds.git("commit", "-q", "-m", "fix raw data, unlocked")
    assert ds.git("cat-file", "-p", "HEAD:raw/data.txt").startswith("/annex/objects/")
    (ds.path / "raw" / "data.txt").unlink()
    # As rerund's work clones check out: without git-annex's filter and hooks.
    no_annex = [
        "-c",
        "filter.annex.process=",
        "-c",
        "filter.annex.smudge=",
        "-c",
        "core.hooksPath=/dev/null",
    ]
    ds.git(*no_annex, "checkout", "--", "raw/data.txt")
    assert ds.read("raw/data.txt").startswith("/annex/objects/")

    rerund("rerun", cwd=ds.path)

    assert "4\n5\n" == ds.read("work/clean.txt")
    assert "rows and total: 2 9\n" == ds.read("report.txt")
