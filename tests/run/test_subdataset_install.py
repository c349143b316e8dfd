"""Steps install the subdatasets they need at the recorded gitlinks, as DataLad's rerun does."""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers import Dataset, datalad, git, rerund
from rerund.run.install import install_for
from yoda import Lab


def test_fresh_clone_reruns_since_with_inputs_in_uninstalled_subdatasets(
    yoda: Lab, tmp_path: Path
) -> None:
    """--since in a fresh clone installs inputs/raw (and deep, for globs too), gets, reruns."""
    clone = Dataset(tmp_path / "clone")
    datalad("clone", str(yoda.ana.path), str(clone.path))
    assert not (clone.path / "inputs/raw/.git").exists()
    base = git("rev-parse", f"{yoda.ana.record_commit('clean')}^", cwd=clone.path)
    head = clone.head()

    done = rerund("rerun", f"--since={base}", cwd=clone.path)

    assert 4 == done.stdout.count("identical"), done.stdout
    assert head == clone.head()
    raw = Dataset(clone.path / "inputs/raw")
    assert git("rev-parse", "HEAD:inputs/raw", cwd=clone.path) == raw.head()
    assert git("rev-parse", "HEAD:deep", cwd=raw.path) == Dataset(raw.path / "deep").head()
    assert "\x00\x01scan\xff".encode("latin-1") == (clone.path / "inputs/raw/scan.bin").read_bytes()
    assert "" == clone.git("status", "--porcelain", "--ignore-submodules=none")


def test_output_in_an_uninstalled_subdataset_is_installed_and_saved(tmp_path: Path) -> None:
    """A declared output inside a subdataset that a clone lacks: installed, written, saved."""
    origin = Dataset(tmp_path / "super")
    datalad("create", "-c", "text2git", str(origin.path))
    datalad("create", "-d", ".", "-c", "text2git", "sub", cwd=origin.path)
    origin.write("in.txt", "a\n")
    origin.save("input")
    origin.run_step("copy", "in.txt", "sub/out.txt", "cp {inputs} {outputs}")
    origin.write("in.txt", "b\n")
    origin.save("new input")
    clone = Dataset(tmp_path / "clone")
    datalad("clone", str(origin.path), str(clone.path))

    rerund("rerun", cwd=clone.path)

    assert "b\n" == clone.read("sub/out.txt")
    assert git("rev-parse", "HEAD:sub", cwd=clone.path) == Dataset(clone.path / "sub").head()
    assert ["[DATALAD RUNCMD] copy"] == clone.subjects("HEAD~1..HEAD")


def test_glob_through_uninstalled_subdatasets_installs_level_by_level(tmp_path: Path) -> None:
    """`s0/s1_*/s2/*.dat` in a fresh clone: s0, both s1_*, both s2 installed, .dat files got."""
    origin = Dataset(tmp_path / "super")
    datalad("create", str(origin.path))
    for sub in ("s0", "s0/s1_a", "s0/s1_b", "s0/s1_a/s2", "s0/s1_b/s2"):
        parent = sub.rpartition("/")[0] or "."
        datalad("create", "-d", parent, sub, cwd=origin.path)
    for leaf in ("s0/s1_a/s2", "s0/s1_b/s2"):
        for name in ("x.dat", "y.dat", "z.txt"):
            origin.write(f"{leaf}/{name}", f"{leaf} {name}\n")
    datalad("save", "-r", "-m", "data", cwd=origin.path)
    record = origin.run_step("glob", "s0/s1_*/s2/*.dat", "out.txt", "cat {inputs} > {outputs}")
    clone = Dataset(tmp_path / "clone")
    datalad("clone", str(origin.path), str(clone.path))

    done = rerund("rerun", record, cwd=clone.path)

    assert "identical" in done.stdout
    for leaf in ("s0/s1_a/s2", "s0/s1_b/s2"):
        assert f"{leaf} x.dat\n" == clone.read(f"{leaf}/x.dat")  # content got
        assert not (clone.path / leaf / "z.txt").exists()  # not matched: not got
    assert "" == clone.git("status", "--porcelain", "--ignore-submodules=none")


def test_a_configured_local_source_is_tried_first(tmp_path: Path) -> None:
    """A subdataset whose recorded URLs are gone installs from rerund-source.<datalad id>.path."""
    raw = Dataset(tmp_path / "raw")
    datalad("create", "-c", "text2git", str(raw.path))
    raw.write("survey.csv", "a\n")
    raw.save("raw data")
    origin = Dataset(tmp_path / "super")
    datalad("create", "-c", "text2git", str(origin.path))
    datalad("clone", "-d", ".", str(raw.path), "inputs/raw", cwd=origin.path)
    origin.run_step("copy", "inputs/raw/survey.csv", "out.txt", "cp {inputs} {outputs}")
    clone = Dataset(tmp_path / "clone")
    datalad("clone", str(origin.path), str(clone.path))
    moved = tmp_path / "server" / "raw.git"
    git("clone", "-q", "--bare", str(raw.path), str(moved), cwd=tmp_path)
    shutil.rmtree(raw.path)  # every URL in .gitmodules now leads nowhere
    dsid = git("config", "-f", ".gitmodules", "submodule.inputs/raw.datalad-id", cwd=clone.path)
    clone.git("config", f"rerund-source.{dsid}.path", str(moved))

    installed = install_for(clone.path, ["inputs/raw/survey.csv"], ".")

    assert ["inputs/raw"] == installed
    assert "a\n" == clone.read("inputs/raw/survey.csv")
