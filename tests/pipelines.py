"""Pipelines built with the real ``datalad run`` for the least-work tests (issue 10)."""

from __future__ import annotations

from pathlib import Path

from helpers import Dataset, datalad

SUBJECTS = [f"sub-{n:02d}" for n in range(1, 9)]
# Prints when it started and ended, so the test can see steps overlap in their logs.
SUBJECT = (
    'echo "start $(date +%s.%N)"\nsleep 1\n'
    'grep -q bad "$1" && exit 3\n'
    'mkdir -p "$(dirname "$2")"\nwc -l < "$1" > "$2"\n'
    'echo "end $(date +%s.%N)"\n'
)


def build_subjects(path: Path, *, annex: bool = False) -> Dataset:
    """8 per-subject steps (raw/sub-XX -> derived/sub-XX) and a group step reading them all.

    With ``annex`` every file is annexed (``datalad create`` without text2git).
    """
    datalad("create", str(path)) if annex else datalad("create", "-c", "text2git", str(path))
    ds = Dataset(path)
    for subject in SUBJECTS:
        ds.write(f"raw/{subject}.txt", "1\n2\n")
    ds.write("code/subject.sh", SUBJECT.replace("sleep 1", "true"))
    datalad("save", "-m", "raw data and code", cwd=path)
    for subject in SUBJECTS:
        ds.run_step(
            subject,
            f"raw/{subject}.txt",
            f"derived/{subject}.txt",
            "sh code/subject.sh {inputs} {outputs}",
        )
    ds.run_step(
        "group",
        "derived",
        "group.txt",
        'echo "start $(date +%s.%N)"; cat derived/* | sort > group.txt',
    )
    ds.write("code/subject.sh", SUBJECT)
    ds.save("subjects take a second")
    return ds
