"""Reruns whose outputs lie in a subdataset are saved recursively, as `datalad run` does."""

from __future__ import annotations

from pathlib import Path

from helpers import Dataset, datalad, git, rerund


def _super_with_sub(path: Path, *, annexed: bool, sub_text2git: bool = False) -> Dataset:
    if annexed:
        datalad("create", str(path))
    else:
        datalad("create", "-c", "text2git", str(path))
    ds = Dataset(path)
    datalad("create", "-d", ".", *(["-c", "text2git"] if sub_text2git else []), "sub", cwd=path)
    ds.write("sub/sequence", "1\n")
    datalad("save", "-r", "-m", "start the sequence", cwd=path)
    return ds


def test_undeclared_output_in_a_subdataset_is_committed_not_identical(tmp_path: Path) -> None:
    """DataLad's own test: `echo x$(cat sub/sequence) > sub/sequence` reruns with two commits."""
    ds = _super_with_sub(tmp_path / "super", annexed=False, sub_text2git=True)
    datalad("run", "-m", "grow", "echo x$(cat sub/sequence) > sub/sequence", cwd=ds.path)
    record = ds.head()
    sub = Dataset(ds.path / "sub")
    sub_before = sub.head()

    done = rerund("rerun", record, cwd=ds.path)

    assert "committed" in done.stdout
    assert "xx1\n" == ds.read("sub/sequence")
    assert ["[DATALAD RUNCMD] grow"] == sub.subjects(f"{sub_before}..HEAD")
    assert sub.head() == git("rev-parse", "HEAD:sub", cwd=ds.path)
    assert [record] == ds.record()["chain"]
    assert "" == ds.git("status", "--porcelain", "--ignore-submodules=none")
    # sub/sequence is the rerun's output now (written inside sub), so the record is current.
    assert "nothing is stale" in rerund("plan", cwd=ds.path).stdout
    datalad("rerun", cwd=ds.path)  # DataLad reruns rerund's commit
    assert "xxx1\n" == ds.read("sub/sequence")


def test_annexed_output_in_a_subdataset_is_unlocked_and_annexed_again(tmp_path: Path) -> None:
    """An annexed output inside sub is never written through; it is annexed again in sub."""
    ds = _super_with_sub(tmp_path / "super", annexed=True)
    sub = Dataset(ds.path / "sub")
    datalad(
        "run", "-m", "grow", "-o", "sub/sequence", "echo x$(cat sub/sequence) > sub/sequence",
        cwd=ds.path,
    )  # fmt: skip
    record = ds.head()
    old_key = (ds.path / "sub/sequence").readlink().name

    rerund("rerun", record, cwd=ds.path)

    assert "xx1\n" == ds.read("sub/sequence")
    assert (ds.path / "sub/sequence").is_symlink()  # annexed again, locked
    assert old_key != (ds.path / "sub/sequence").readlink().name
    assert "" == ds.git("status", "--porcelain", "--ignore-submodules=none")
    git("annex", "fsck", "--quiet", cwd=sub.path)  # the old object still holds "x1"
    assert not list((sub.path / ".git/annex/bad").glob("*"))


def test_declared_output_in_a_subdataset_follows_its_input(tmp_path: Path) -> None:
    """A stale step writing sub/out.txt commits in sub, then the gitlink; then nothing is stale."""
    ds = _super_with_sub(tmp_path / "super", annexed=False)
    ds.write("in.txt", "a\n")
    ds.save("input")
    ds.run_step("copy", "in.txt", "sub/out.txt", "cp {inputs} {outputs}")
    ds.write("in.txt", "b\n")
    ds.save("new input")

    rerund("rerun", cwd=ds.path)

    assert "b\n" == ds.read("sub/out.txt")
    assert git("rev-parse", "HEAD:sub", cwd=ds.path) == Dataset(ds.path / "sub").head()
    assert ["[DATALAD RUNCMD] copy"] == ds.subjects("HEAD~1..HEAD")
    assert "nothing is stale" in rerund("plan", cwd=ds.path).stdout
    # A lab member's fresh clone with `datalad get -r` sees the new output.
    datalad("clone", str(ds.path), str(tmp_path / "member"))
    datalad("get", "-r", ".", cwd=tmp_path / "member")
    assert "b\n" == (tmp_path / "member/sub/out.txt").read_text(encoding="utf-8")


def test_output_two_levels_down_commits_every_dataset_bottom_up(tmp_path: Path) -> None:
    """An output in a/deep commits in a/deep, then a (its gitlink), then the top dataset."""
    ds = Dataset(tmp_path / "super")
    datalad("create", "-c", "text2git", str(ds.path))
    datalad("create", "-d", ".", "-c", "text2git", "a", cwd=ds.path)
    datalad("create", "-d", "a", "-c", "text2git", "a/deep", cwd=ds.path)
    datalad("save", "-r", "-m", "nest", cwd=ds.path)
    ds.write("in.txt", "1\n")
    ds.save("input")
    ds.run_step("copy", "in.txt", "a/deep/x", "cp {inputs} {outputs}")
    ds.write("in.txt", "2\n")
    ds.save("new input")
    a, deep = Dataset(ds.path / "a"), Dataset(ds.path / "a/deep")
    before = {d: d.head() for d in (ds, a, deep)}

    rerund("rerun", cwd=ds.path)

    for dataset in (ds, a, deep):
        assert ["[DATALAD RUNCMD] copy"] == dataset.subjects(f"{before[dataset]}..HEAD")
    assert deep.head() == git("rev-parse", "HEAD:deep", cwd=a.path)
    assert a.head() == git("rev-parse", "HEAD:a", cwd=ds.path)
    assert "2\n" == ds.read("a/deep/x")
    assert "" == ds.git("status", "--porcelain", "--ignore-submodules=none")
