"""The README's quick start is a real script, and the sequence the README shows works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import git
from service_helpers import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "quickstart.sh"
RERUND = f"{sys.executable} -m rerund"


def _quickstart(lab: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPT), str(lab)],
        capture_output=True,
        text=True,
        env={**os.environ, "RERUND": RERUND, **env},
        timeout=180,
        check=False,
    )


@pytest.mark.slow
def test_quickstart_script_lands_the_reruns_and_rerund_jobs_answers(tmp_path: Path) -> None:
    """docs/quickstart.sh lands the two reruns, then `rerund jobs --config` works as documented."""
    lab = tmp_path / "lab"
    done = _quickstart(lab, {"RERUND_PORT": str(free_port())})
    try:
        assert 0 == done.returncode, done.stderr
        subjects = git("log", "--format=%s", "-3", "main", cwd=lab / "lab.git")
        assert ["[DATALAD RUNCMD] count", "[DATALAD RUNCMD] clean", "fix raw data"] == (
            subjects.splitlines()
        )
        assert "succeeded" in done.stdout
        assert f"stop it with: kill $(cat {lab}/rerund.pid)" in done.stdout

        # The README's next line, run after the script has returned.
        jobs = subprocess.run(
            [sys.executable, "-m", "rerund", "jobs", "--config", str(lab / "rerund.toml")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (0, "") == (jobs.returncode, jobs.stderr)
        assert "succeeded" in jobs.stdout
    finally:
        pid_file = lab / "rerund.pid"
        if pid_file.is_file():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_quickstart_says_what_is_missing(tmp_path: Path) -> None:
    """Without datalad on PATH the script names it and how to install it, before doing anything."""
    done = _quickstart(tmp_path / "lab", {"PATH": "/usr/bin:/bin"})

    assert 127 == done.returncode
    assert "quickstart.sh: datalad is missing: python3 -m pip install -e '.[datalad]'\n" == (
        done.stderr
    )
    assert not (tmp_path / "lab").exists()
