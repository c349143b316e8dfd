"""Hand-made records cannot lead rerund outside the work tree (issue 8, items 1 and 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import Dataset, datalad, rerund, run

SECRET = "webhook-secret-that-must-stay-home"  # noqa: S105 (a stand-in)


def _victims(root: Path) -> dict[str, Path]:
    """Files outside the dataset that a record names as outputs."""
    victim = root / "victim"
    (victim / "dir" / "deep").mkdir(parents=True)
    files = {
        "file": victim / "file",
        "dir": victim / "dir" / "deep" / "inner",
        "dotdot": victim / "x",
        "link": victim / "linked" / "file",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("must survive\n", encoding="utf-8")
    return files


def _escaping_outputs(victims: dict[str, Path]) -> dict[str, str]:
    # "../" far beyond the root still ends at "/": the spec reaches the victim from any depth.
    return {
        "file": str(victims["file"]),
        "dir": str(victims["dir"].parent.parent),
        "dotdot": "../" * 40 + str(victims["dotdot"]).lstrip("/"),
        "link": "lnk/file",
    }


def _record(outputs: list[str], *, cmd: str = "exit 1", inputs: list[str] | None = None) -> str:
    fields = {"cmd": cmd, "exit": 0, "inputs": inputs or [], "outputs": outputs, "pwd": "."}
    return json.dumps(fields, indent=1)


def _commit_escaping_link(ds: Dataset, target: Path) -> None:
    """A committed symlink ``lnk`` to a directory outside the dataset."""
    (ds.path / "lnk").symlink_to(target)
    ds.git("add", "lnk")
    ds.git("commit", "-qm", "a link to elsewhere")


@pytest.mark.parametrize("case", ["file", "dir", "dotdot", "link"])
def test_outputs_outside_the_work_tree_are_refused_and_survive(
    case: str, dataset: Dataset, tmp_path: Path
) -> None:
    """An output outside the tree is refused before anything runs; the file there survives."""
    victims = _victims(tmp_path)
    _commit_escaping_link(dataset, victims["link"].parent)
    spec = _escaping_outputs(victims)[case]
    record = dataset.commit_record("escape", _record([spec]))

    done = rerund("rerun", record, cwd=dataset.path, check=False)

    assert 1 == done.returncode
    assert "Traceback" not in done.stderr
    assert spec in done.stderr
    assert "outside the dataset's work tree" in done.stderr
    for path in victims.values():
        assert "must survive\n" == path.read_text(encoding="utf-8")
    assert "" == dataset.status()


def test_a_glob_through_a_committed_link_is_refused_before_listing(
    dataset: Dataset, tmp_path: Path
) -> None:
    """An output glob under a link to elsewhere is refused; nothing there is removed."""
    victims = _victims(tmp_path)
    _commit_escaping_link(dataset, victims["link"].parent)
    record = dataset.commit_record("glob", _record(["lnk/*"]))

    done = rerund("rerun", record, cwd=dataset.path, check=False)

    assert 1 == done.returncode
    assert "'lnk/*'" in done.stderr
    assert victims["link"].exists()


def test_pwd_through_a_committed_link_is_refused(dataset: Dataset, tmp_path: Path) -> None:
    """A working directory reached through a committed symlink is outside, and refused."""
    victims = _victims(tmp_path)
    _commit_escaping_link(dataset, victims["link"].parent)
    fields = {"cmd": "rm -f file", "exit": 0, "inputs": [], "outputs": [], "pwd": "lnk"}
    record = dataset.commit_record("elsewhere", json.dumps(fields))

    done = rerund("rerun", record, cwd=dataset.path, check=False)

    assert 1 == done.returncode
    assert "'lnk'" in done.stderr
    assert victims["link"].exists()


def test_links_inside_the_tree_still_work(dataset: Dataset) -> None:
    """An output reached through a symlink that stays inside the tree is rerun normally."""
    (dataset.path / "real").mkdir()
    dataset.write("real/out.txt", "old\n")
    (dataset.path / "alias").symlink_to("real")
    dataset.save("a directory and an alias for it")
    fields = _record(["alias/out.txt"], cmd="echo new > real/out.txt")
    record = dataset.commit_record("inside", fields)

    rerund("rerun", record, cwd=dataset.path)

    assert "new\n" == dataset.read("real/out.txt")
    assert "" == dataset.status()


def test_a_fake_annex_link_is_not_unlocked_so_no_secret_is_committed(tmp_path: Path) -> None:
    """A symlink whose target only mentions /annex/objects/ is not annex content to copy."""
    secret = tmp_path / "gh.secret"
    secret.write_text(SECRET, encoding="utf-8")
    ds_path = tmp_path / "ds"
    datalad("create", str(ds_path))
    ds = Dataset(ds_path)
    ds.write("x/annex/objects/keep", "so the link resolves\n")
    (ds_path / "leak").symlink_to("x/annex/objects/../../../../gh.secret")
    assert SECRET == (ds_path / "leak").read_text(encoding="utf-8")
    ds.git("add", "leak", "x")
    ds.git("commit", "-qm", "a link that looks annexed")
    record = ds.commit_record("publish it", _record(["leak"], cmd="true"))

    rerund("rerun", record, cwd=ds_path)

    assert SECRET not in ds.git("log", "-p", "--all", "--binary")
    annexed = [p for p in (ds_path / ".git" / "annex" / "objects").rglob("*") if p.is_file()]
    assert not [p for p in annexed if SECRET in p.read_text(encoding="utf-8", errors="replace")]
    assert "" == run("git", "annex", "find", "--include=*", cwd=ds_path).stdout
    assert not (ds_path / "leak").exists()
    assert secret.read_text(encoding="utf-8") == SECRET


def test_real_annexed_outputs_are_still_unlocked(annexed_pipeline: Dataset) -> None:
    """A genuine annex link into this repository's objects is unlocked and annexed again."""
    ds = annexed_pipeline
    record = ds.record_commit("report")
    ds.write("work/stats.txt", "5 20\n")
    ds.save("stats by hand")

    rerund("rerun", record, cwd=ds.path)

    assert (ds.path / "report.txt").is_symlink()
    assert "rows and total: 5 20\n" == ds.read("report.txt")
    assert ".git/annex/objects/" in str((ds.path / "report.txt").readlink())
