"""Reruns on paths the pipeline fixtures never take: no annex, directory outputs, `.`."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import Dataset, datalad, rerund, run


def test_rerun_in_a_plain_git_dataset_never_starts_git_annex(tmp_path: Path) -> None:
    """A `--no-annex` dataset reruns its record in git alone; DataLad then finds it identical."""
    datalad("create", "--no-annex", str(tmp_path / "plain"))
    ds = Dataset(tmp_path / "plain")
    ds.write("raw.txt", "3\n1\n2\n")
    ds.save("raw data")
    ds.run_step("sort", "raw.txt", "sorted.txt", "sort -n {inputs} > {outputs}")
    ds.write("raw.txt", "3\n1\n2\n0\n")
    fix = ds.save("more raw data")

    rerund("rerun", cwd=ds.path)

    assert "0\n1\n2\n3\n" == ds.read("sorted.txt")
    assert ["[DATALAD RUNCMD] sort"] == ds.subjects(f"{fix}..HEAD")
    assert ("", "") == (ds.status(), ds.git("branch", "--list", "git-annex"))
    assert not (ds.path / ".git" / "annex").exists()
    tip = ds.head()
    datalad("rerun", f"--since={fix}", cwd=ds.path)
    assert tip == ds.head()


def test_a_directory_output_loses_the_files_the_rerun_no_longer_writes(dataset: Dataset) -> None:
    """A declared output directory is emptied first: stale files in it do not survive the rerun."""
    ds = dataset
    ds.write("raw.txt", "a\nb\nc\n")
    ds.save("raw data")
    split = 'mkdir -p parts && while read n; do echo "$n" > "parts/$n.txt"; done < {inputs}'
    ds.run_step("split", "raw.txt", "parts", split)
    ds.write("raw.txt", "a\nd\n")
    fix = ds.save("new raw data")

    rerund("rerun", cwd=ds.path)

    assert ["a.txt", "d.txt"] == sorted(path.name for path in (ds.path / "parts").iterdir())
    assert ["[DATALAD RUNCMD] split"] == ds.subjects(f"{fix}..HEAD")
    assert "" == ds.status()
    tip = ds.head()
    datalad("rerun", f"--since={fix}", cwd=ds.path)
    assert tip == ds.head()


@pytest.mark.parametrize("annexed", [False, True], ids=["text2git", "annex"])
def test_the_dataset_root_as_output_keeps_every_file(tmp_path: Path, annexed: bool) -> None:
    """`-o .`: no file is deleted, and in an all-annex dataset every file ends locked."""
    datalad("create", *([] if annexed else ["-c", "text2git"]), str(tmp_path / "ds"))
    ds = Dataset(tmp_path / "ds")
    ds.write("raw.txt", "3\n1\n2\n")
    ds.write("notes.txt", "kept as it is\n")
    ds.save("raw data and notes")
    ds.run_step("sort", "raw.txt", ".", "sort -n raw.txt > sorted.txt")
    ds.write("raw.txt", "3\n1\n2\n0\n")
    fix = ds.save("more raw data")

    rerund("rerun", cwd=ds.path)

    assert "0\n1\n2\n3\n" == ds.read("sorted.txt")
    assert "kept as it is\n" == ds.read("notes.txt")
    assert ["sorted.txt"] == ds.git("diff", "--name-only", fix, "HEAD").splitlines()
    assert "" == ds.status()
    if annexed:
        files = ("raw.txt", "notes.txt", "sorted.txt")
        assert all((ds.path / name).is_symlink() for name in files)
        fsck = run("git", "annex", "fsck", "--fast", "--quiet", cwd=ds.path)
        assert "" == fsck.stdout.strip()
