"""Hand-made records pushed through the real hook to a real daemon (issue 8, items 1, 6, 9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import Dataset, commit_sidecar_record, xz_bomb
from service_helpers import Daemon, Lab, make_lab, wait_for

RERUNS = ["[DATALAD RUNCMD] clean", "[DATALAD RUNCMD] stats", "[DATALAD RUNCMD] report"]

RERUN_SUBJECTS = [f"[DATALAD RUNCMD] {name}" for name in ("clean", "stats", "report")]


@pytest.fixture
def lab(_pipeline_template: Dataset, tmp_path: Path) -> Lab:
    return make_lab(tmp_path, _pipeline_template)


def _failed_job(daemon: Daemon) -> dict[str, Any] | None:
    return next((job for job in daemon.jobs() if job["state"] == "failed"), None)


def test_a_pushed_record_with_outputs_outside_deletes_nothing_there(
    lab: Lab, tmp_path: Path
) -> None:
    """Outputs through a committed link, ../.., and absolute paths: refused, victims survive."""
    victim = tmp_path / "victim"
    files = [victim / "linked" / "file", victim / "x", victim / "file", victim / "dir" / "inner"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("must survive\n", encoding="utf-8")
    outputs = [
        "lnk/file",
        "../" * 40 + str(victim / "x").lstrip("/"),
        str(victim / "file"),
        str(victim / "dir"),
    ]
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        user = lab.user
        (user.path / "lnk").symlink_to(victim / "linked")
        user.git("add", "lnk")
        user.git("commit", "-qm", "a link to elsewhere")
        fields = {"cmd": "exit 1", "inputs": ["raw/data.txt"], "outputs": outputs, "pwd": "."}
        bad = user.commit_record("escape", json.dumps(fields, indent=1))
        user.git("push", "-q", "origin", "HEAD:main")
        fix = lab.push_fix()

        job = wait_for(lambda: _failed_job(daemon), what="the job to fail")

        for path in files:
            assert "must survive\n" == path.read_text(encoding="utf-8")
        # The pipeline's reruns do not depend on the refused record: published (issue 10).
        assert RERUN_SUBJECTS == lab.subjects_since(fix)
        assert "lnk/file" in job["error"]
        assert bad[:12] in job["error"]
        steps = daemon.get(f"/api/jobs/{job['id']}")["steps"]
        assert "failed" == steps[-1]["state"]
        assert bad == steps[-1]["record"]
    finally:
        assert 0 == daemon.stop()


def test_a_pushed_lone_surrogate_is_a_notice_and_later_jobs_work(lab: Lab) -> None:
    """A record with "\\udcff" in its inputs: the plan endpoint answers, reruns still land."""
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        body = '{"cmd": "true", "inputs": ["\\udcff"], "outputs": [], "pwd": "."}'
        bad = lab.user.commit_record("unrepresentable", body)
        lab.user.git("push", "-q", "origin", "HEAD:main")
        wait_for(lambda: len(daemon.jobs()) >= 2 and daemon.idle(), what="the push's job")

        plan = daemon.get("/api/repos/lab/plan")

        assert [bad] == [notice["commit"] for notice in plan["notices"]]
        assert all(job["state"] == "succeeded" for job in daemon.jobs())
        fix = lab.push_fix()
        wait_for(lambda: RERUNS == lab.subjects_since(fix), what="the reruns to land")
    finally:
        assert 0 == daemon.stop()


def _peak_rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def test_an_xz_bomb_sidecar_costs_the_plan_endpoint_no_memory(lab: Lab) -> None:
    """GET /api/repos/lab/plan with a 200 MiB xz bomb pushed: a notice, the daemon stays small."""
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        bad = commit_sidecar_record(lab.user, xz_bomb(200), "bomb")
        lab.user.git("push", "-q", "origin", "HEAD:main")
        wait_for(lambda: len(daemon.jobs()) >= 2 and daemon.idle(), what="the push's job")

        plan = daemon.get("/api/repos/lab/plan")

        assert daemon.process is not None
        assert _peak_rss_bytes(daemon.process.pid) < 250 * 1024 * 1024
        assert [bad] == [notice["commit"] for notice in plan["notices"]]
        assert "expands to more than" in plan["notices"][0]["message"]
    finally:
        assert 0 == daemon.stop()
