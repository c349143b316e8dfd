"""Words of a command are only candidates for inputs: none can fail a step (issue 14, 2 and 3)."""

from __future__ import annotations

from pathlib import Path

from helpers import Dataset, datalad, rerund, run


def _annex_dataset(path: Path) -> Dataset:
    datalad("create", str(path))
    return Dataset(path)


def test_a_command_word_longer_than_a_file_name_is_not_a_path(tmp_path: Path) -> None:
    """A 300-byte word in an annex dataset's command is rerun, not an OSError."""
    ds = _annex_dataset(tmp_path / "ds")
    word = "w" * 300
    datalad("run", "-m", "long word", f"echo {word} > out", cwd=ds.path)
    record = ds.head()

    done = rerund("rerun", record, cwd=ds.path, check=False)

    assert "Traceback" not in done.stderr
    assert 0 == done.returncode, done.stderr
    assert "OSError" not in done.stderr
    assert f"{word}\n" == ds.read("out")
    assert "" == ds.status()


def _dropped_file_in_sub(ds: Dataset) -> None:
    ds.write("sub/big", "content nobody else has\n")
    ds.save("annexed file in sub")
    run("git", "annex", "drop", "--force", "--quiet", "sub/big", cwd=ds.path)
    assert not (ds.path / "sub" / "big").exists()


def test_a_directory_named_by_the_command_is_not_fetched(tmp_path: Path) -> None:
    """`cd .> out` from a subdirectory with dropped annexed content there reruns as in DataLad."""
    ds = _annex_dataset(tmp_path / "ds")
    _dropped_file_in_sub(ds)
    datalad("run", "-m", "cd dot", "cd .> out", cwd=ds.path / "sub")
    record = ds.head()
    assert "sub" == ds.record()["pwd"]

    done = rerund("rerun", record, cwd=ds.path, check=False)

    assert 0 == done.returncode, done.stderr
    assert "could not get" not in done.stderr
    assert record == ds.head()  # out is empty again: reproduced identically
    assert "" == ds.status()


def test_an_implicit_input_without_content_is_reported_not_fatal(tmp_path: Path) -> None:
    """A named file whose content nobody has: the step runs without it and says so."""
    ds = _annex_dataset(tmp_path / "ds")
    ds.write("sub/big", "content nobody else has\n")
    ds.save("annexed file in sub")
    datalad("run", "-m", "maybe copy", "cat big > copy || true", cwd=ds.path / "sub")
    record = ds.head()
    run("git", "annex", "drop", "--force", "--quiet", "sub/big", cwd=ds.path)

    done = rerund("rerun", record, cwd=ds.path, check=False)

    assert 0 == done.returncode, done.stderr
    assert "could not get the content of sub/big" in done.stderr
    assert record != ds.head()
    assert "" == ds.status()
