"""Unlocked annexed files a step leaves in place stay annexed in its commit."""

from __future__ import annotations

from pathlib import Path

from helpers import Dataset, datalad, git, rerund, run


def test_a_touched_unlocked_input_stays_an_annex_pointer(tmp_path: Path) -> None:
    """A step touching its unlocked annexed input commits no content of it into git."""
    datalad("create", str(tmp_path / "ds"))
    ds = Dataset(tmp_path / "ds")
    ds.write("data.txt", "3\n1\n2\n")
    ds.save("data")
    run("git", "annex", "unlock", "data.txt", cwd=ds.path)
    git("commit", "-qm", "unlock data", "data.txt", cwd=ds.path)
    pointer = git("rev-parse", "HEAD:data.txt", cwd=ds.path)
    # touch: the stat git kept no longer matches, so git must look at the content
    datalad("run", "-m", "count", "touch data.txt && wc -l < data.txt > n", cwd=ds.path)
    record = ds.head()

    done = rerund("rerun", "--no-reuse", record, cwd=ds.path, check=False)

    assert 0 == done.returncode, done.stderr
    assert pointer == git("rev-parse", "HEAD:data.txt", cwd=ds.path)
    assert record == ds.head()  # nothing but the touch: reproduced identically
    assert "3\n" == ds.read("n")
