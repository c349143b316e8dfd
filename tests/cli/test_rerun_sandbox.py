"""`rerund rerun` runs steps as the user by default, and under bubblewrap with --sandbox."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import Dataset, datalad, rerund


def _escaping_record(ds: Dataset, outside: Path) -> str:
    record = {"chain": [], "cmd": f"touch {outside} && echo x > esc.txt", "exit": 0,
              "extra_inputs": [], "inputs": [], "outputs": ["esc.txt"], "pwd": "."}  # fmt: skip
    return ds.commit_record("escape", json.dumps(record, indent=1, sort_keys=True))


def test_sandbox_keeps_a_step_inside_its_work_tree(pipeline: Dataset, tmp_path: Path) -> None:
    """With --sandbox a write outside the dataset stays in the sandbox; the output is saved."""
    outside = tmp_path / "outside-sandboxed"
    sha = _escaping_record(pipeline, outside)
    rerund("rerun", "--sandbox", sha, cwd=pipeline.path)
    assert not outside.exists()
    assert "x\n" == pipeline.read("esc.txt")
    assert "" == pipeline.status()


def test_by_hand_the_step_runs_unsandboxed(pipeline: Dataset, tmp_path: Path) -> None:
    """Without --sandbox it is the user's own machine: the same step writes where it likes."""
    outside = tmp_path / "outside-by-hand"
    rerund("rerun", _escaping_record(pipeline, outside), cwd=pipeline.path)
    assert outside.exists()


def test_the_pipeline_reruns_identically_in_the_sandbox(pipeline: Dataset) -> None:
    """A real DataLad pipeline rerun with --sandbox gives the same results as without."""
    pipeline.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
    pipeline.save("fix raw data")
    rerund("rerun", "--sandbox", cwd=pipeline.path)
    assert "rows and total: 4 16\n" == pipeline.read("report.txt")


def test_git_directories_of_subdatasets_are_read_only_too(dataset: Dataset) -> None:
    """With --sandbox a step can write neither the dataset's .git nor a subdataset's."""
    datalad("create", "-d", ".", "sub", cwd=dataset.path)
    assert (dataset.path / "sub" / ".git").is_dir()
    for target in (".git/hooks/post-commit", "sub/.git/hooks/post-commit"):
        record = {"chain": [], "cmd": f"echo pwned > {target}; echo x > esc.txt", "exit": 0,
                  "extra_inputs": [], "inputs": [], "outputs": ["esc.txt"], "pwd": "."}  # fmt: skip
        sha = dataset.commit_record(target, json.dumps(record, indent=1, sort_keys=True))
        rerund("rerun", "--sandbox", sha, cwd=dataset.path)
        assert not (dataset.path / target).exists()
