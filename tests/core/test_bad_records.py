"""Records no program can use are notices, never a broken repository (issue 8, items 6, 9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import Dataset, commit_sidecar_record, rerund, xz_bomb

CLEAN_STEPS = ["[DATALAD RUNCMD] clean", "[DATALAD RUNCMD] stats", "[DATALAD RUNCMD] report"]

# A record whose only input is a lone surrogate: valid JSON, not representable as UTF-8.
SURROGATE_RECORD = (
    '{\n "cmd": "true",\n "exit": 0,\n "inputs": ["raw/\\udcff"],\n "outputs": [],\n "pwd": "."\n}'
)


def _subjects(ds: Dataset, plan: dict[str, object]) -> list[str]:
    steps = plan["steps"]
    assert isinstance(steps, list)
    return [ds.git("log", "-1", "--format=%s", step["commit"]) for step in steps]


def test_a_lone_surrogate_is_one_notice_and_the_rest_plans(pipeline: Dataset) -> None:
    """A record with "\\udcff" in its inputs is one notice; the history around it still plans."""
    bad = pipeline.commit_record("unrepresentable", SURROGATE_RECORD)
    pipeline.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
    fix = pipeline.save("fix raw data")

    text = rerund("plan", cwd=pipeline.path)
    plan = pipeline.plan()

    assert "Traceback" not in text.stderr
    assert f"{bad[:8]} " in text.stderr
    assert [bad] == [notice["commit"] for notice in plan["notices"]]
    assert "not valid Unicode" in plan["notices"][0]["message"]
    assert CLEAN_STEPS == _subjects(pipeline, plan)
    rerund("rerun", cwd=pipeline.path)
    assert CLEAN_STEPS == pipeline.subjects(f"{fix}..HEAD")
    assert [] == pipeline.plan()["steps"]


def _plan_with_peak_memory(ds: Dataset, tmp_path: Path) -> tuple[dict[str, object], int]:
    """``rerund plan --json`` as a real process, with its own peak resident size in bytes."""
    out_path = tmp_path / "plan.json"
    with out_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "rerund", "plan", "--json"], cwd=ds.path, stdout=out
        )
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    assert 0 == process.returncode
    plan: dict[str, object] = json.loads(out_path.read_bytes())
    return plan, usage.ru_maxrss * 1024


def test_an_xz_bomb_sidecar_is_a_notice_within_bounded_memory(
    pipeline: Dataset, tmp_path: Path
) -> None:
    """A 60 KB sidecar expanding to 200 MiB is refused as a notice; memory stays bounded."""
    bomb = xz_bomb(200)
    assert len(bomb) < 100_000
    bad = commit_sidecar_record(pipeline, bomb)
    pipeline.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
    pipeline.save("fix raw data")

    plan, peak = _plan_with_peak_memory(pipeline, tmp_path)

    assert peak < 250 * 1024 * 1024
    notices = plan["notices"]
    assert isinstance(notices, list)
    assert [bad] == [notice["commit"] for notice in notices]
    assert "expands to more than" in notices[0]["message"]
    assert CLEAN_STEPS == _subjects(pipeline, plan)
