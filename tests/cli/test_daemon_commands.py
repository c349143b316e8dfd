"""The command line explains itself: --version, help with examples, `jobs` and `status` texts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import Dataset, git, rerund
from rerund import __version__
from service_helpers import Daemon, Lab, free_port, make_lab, wait_for

COMMANDS = ["plan", "rerun", "verify", "serve", "hooks", "jobs", "status"]


def test_version() -> None:
    """`rerund --version` prints the package's version."""
    done = rerund("--version", cwd=Path())
    assert f"rerund {__version__}\n" == done.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description_and_an_example(command: str) -> None:
    """`rerund COMMAND --help` says what it does and shows at least one real invocation."""
    out = rerund(command, "--help", cwd=Path()).stdout
    description = out.split("\n\n")[1]
    assert description.endswith(".") and len(description.split()) >= 4
    assert f"examples:\n  rerund {command}" in out


def test_serve_without_repositories_says_how_to_add_one(tmp_path: Path) -> None:
    """A daemon with nothing to serve logs a hint naming the settings to add."""
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "rerund", "serve", "--listen", f"127.0.0.1:{free_port()}"],
            cwd=tmp_path,
            stdout=sink,
            stderr=sink,
        )
    try:
        line = wait_for(
            lambda: next(
                (json.loads(t) for t in log.read_text().splitlines() if "no repositories" in t),
                None,
            ),
            what="the hint",
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert "warning" == line["level"]
    assert "add a [[repos]] table or repos_dir" in line["hint"]


@pytest.fixture
def lab(_pipeline_template: Dataset, tmp_path: Path) -> Lab:
    return make_lab(tmp_path, _pipeline_template)


def test_jobs_and_status_show_what_each_job_left(lab: Lab) -> None:
    """`rerund jobs` names the published commit and a failed job's side ref, never claiming
    that nothing was committed; `rerund status` counts jobs and events apart."""
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        lab.push_fix()
        wait_for(lambda: len(daemon.jobs()) == 2 and daemon.idle(), what="the reruns")
        published = lab.tip()
        lab.user.git("pull", "-q", "--ff-only")
        lab.user.write("code/report.sh", "exit 7\n")
        lab.user.git("commit", "-qam", "break the report")
        lab.push_fix("# measurements\n3\n1\n2\n10\n11\n")
        failed = wait_for(lambda: next((j for j in daemon.jobs() if j["state"] == "failed"), None))

        config = ("--config", str(lab.config))
        jobs = rerund("jobs", *config, cwd=lab.root).stdout
        status = rerund("status", *config, cwd=lab.root).stdout
    finally:
        daemon.stop()

    side_ref = f"refs/rerund/failed/{failed['id']}"
    assert side_ref in git("for-each-ref", "--format=%(refname)", "refs/rerund", cwd=lab.bare)
    failed_line = next(line for line in jobs.splitlines() if line.split()[1] == "failed")
    assert f"finished steps kept on {side_ref}" in failed_line
    assert f"the commits of the steps before it are on {side_ref}" in failed_line
    assert "nothing was committed" not in failed_line
    assert f"published {published[:8]}" in jobs
    assert status.startswith(f"rerund {__version__}: ok (jobs: failed 1, succeeded 2; ")
    assert status.rstrip().endswith("push event(s) received)")
