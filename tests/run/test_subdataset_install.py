"""Steps install the subdatasets they need at the recorded gitlinks, as DataLad's rerun does."""

from __future__ import annotations

from pathlib import Path

from helpers import Dataset, datalad, git, rerund
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
