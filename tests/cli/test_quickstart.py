"""The README's quick start is a real script, and it works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import git
from service_helpers import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "quickstart.sh"


@pytest.mark.slow
def test_quickstart_script_lands_the_reruns(tmp_path: Path) -> None:
    """docs/quickstart.sh builds a lab, pushes a fix, and the two reruns land on main."""
    env = {
        **os.environ,
        "RERUND_PORT": str(free_port()),
        "RERUND": f"{sys.executable} -m rerund",
    }
    done = subprocess.run(
        ["sh", str(SCRIPT), str(tmp_path / "lab")],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )

    assert 0 == done.returncode, done.stderr
    subjects = git("log", "--format=%s", "-3", "main", cwd=tmp_path / "lab" / "lab.git")
    assert ["[DATALAD RUNCMD] count", "[DATALAD RUNCMD] clean", "fix raw data"] == (
        subjects.splitlines()
    )
    assert "succeeded" in done.stdout
