"""Independent steps side by side in `rerund rerun -J N` (issue 10)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import Dataset, rerund, run
from pipelines import SUBJECT, SUBJECTS, build_subjects


@pytest.fixture(scope="module")
def _subjects_template(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return build_subjects(tmp_path_factory.mktemp("tpl") / "subjects")


@pytest.fixture
def subjects(_subjects_template: Dataset, tmp_path: Path) -> Dataset:
    shutil.copytree(_subjects_template.path, tmp_path / "subjects", symlinks=True)
    return Dataset(tmp_path / "subjects")


def _times(ds: Dataset, commit: str) -> tuple[float, float]:
    text = (ds.path / ".git" / "rerund" / "logs" / f"{commit[:12]}.log").read_text()
    marks = dict(line.split() for line in text.splitlines() if line.startswith(("start ", "end ")))
    return float(marks["start"]), float(marks.get("end", marks["start"]))


def _subject_steps(ds: Dataset) -> dict[str, str]:
    return {s: ds.record_commit(s) for s in SUBJECTS}


def test_independent_subject_steps_overlap_and_publish_what_sequential_gives(
    subjects: Dataset, tmp_path: Path
) -> None:
    """-J 4: subject steps overlap (from their logs), the group waits, trees equal -J 1's."""
    sequential = Dataset(tmp_path / "sequential")
    shutil.copytree(subjects.path, sequential.path, symlinks=True)
    subjects.write("code/subject.sh", SUBJECT.replace("wc -l <", "sort -rn"))
    sequential.write("code/subject.sh", SUBJECT.replace("wc -l <", "sort -rn"))
    for ds in (subjects, sequential):
        ds.git("commit", "-qam", "subjects sorted", "--date=2026-01-01T00:00:00")
    records = _subject_steps(subjects)
    group_record = subjects.record_commit("group")
    base = subjects.head()
    sequential_base = sequential.head()  # its own id: the committer dates may differ by a second

    rerund("rerun", "-J", "4", cwd=subjects.path)
    rerund("rerun", cwd=sequential.path)

    assert sequential.git("rev-parse", "HEAD^{tree}") == subjects.git("rev-parse", "HEAD^{tree}")
    assert sequential.subjects(f"{sequential_base}..HEAD") == subjects.subjects(f"{base}..HEAD")
    assert "" == subjects.git("rev-list", "--min-parents=2", f"{base}..HEAD")
    assert 9 == len(subjects.subjects(f"{base}..HEAD"))
    spans = [_times(subjects, commit) for commit in records.values()]
    most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert 3 <= most <= 4, spans
    group_start, _ = _times(subjects, group_record)
    assert group_start >= max(end for _, end in spans)
    assert "" == subjects.status()
    assert [] == subjects.plan()["steps"]
    run("datalad", "rerun", "HEAD~3", cwd=subjects.path)  # a subject's rerun commit


def test_a_failing_subject_stops_only_its_dependants(subjects: Dataset) -> None:
    """One subject fails: the other seven are committed, the group is not run; both stay stale."""
    subjects.write("raw/sub-03.txt", "1\nbad\n")
    for subject in SUBJECTS:
        if subject != "sub-03":
            subjects.write(f"raw/{subject}.txt", "1\n2\n3\n")
    base = subjects.save("new raw data")

    done = rerund("rerun", "-J", "4", cwd=subjects.path, check=False)

    assert 3 == done.returncode, done.stderr  # the failing command's own status, as DataLad
    made = subjects.subjects(f"{base}..HEAD")
    assert [f"[DATALAD RUNCMD] {s}" for s in SUBJECTS if s != "sub-03"] == made
    assert "" == subjects.status()
    stale = [step["summary"] for step in subjects.plan()["steps"]]
    assert ["sub-03", "group"] == stale


def test_annexed_steps_side_by_side_give_the_sequential_trees(tmp_path: Path) -> None:
    """Every file annexed: -J 4 and -J 1 commit the same trees, and the content is here."""
    side = build_subjects(tmp_path / "side", annex=True)
    side.write("code/subject.sh", SUBJECT.replace("wc -l <", "sort -rn"))
    side.save("subjects sorted")
    sequential = Dataset(tmp_path / "sequential")
    shutil.copytree(side.path, sequential.path, symlinks=True)
    base = side.head()

    rerund("rerun", "-J", "4", cwd=side.path)
    rerund("rerun", cwd=sequential.path)

    assert sequential.git("rev-parse", "HEAD^{tree}") == side.git("rev-parse", "HEAD^{tree}")
    assert 9 == len(side.subjects(f"{base}..HEAD"))
    assert (side.path / "derived" / "sub-05.txt").is_symlink()
    assert "2\n1\n" == side.read("derived/sub-05.txt")
    assert "" == side.status()
    run("git", "annex", "fsck", "--fast", "--quiet", cwd=side.path)
    run("datalad", "rerun", "HEAD~2", cwd=side.path)
