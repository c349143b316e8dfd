"""Steps on a real Slurm cluster (issue 13): real pushes, the real daemon, real sbatch."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from helpers import Dataset, git, run
from service_helpers import Daemon, Lab, make_lab, rerund_cli, wait_for
from slurm_cluster import SlurmCluster

RERUNS = ["[DATALAD RUNCMD] clean", "[DATALAD RUNCMD] stats", "[DATALAD RUNCMD] report"]


def slurm_lab(root: Path, template: Dataset, slurm: str = "") -> Lab:
    """A lab whose repository runs its steps on Slurm, polled every 0.2 s."""
    return make_lab(
        root,
        template,
        extra=f'executor = "slurm"\nslurm = {{ poll_interval_s = 0.2{slurm} }}\n',
    )


def finished_job(daemon: Daemon, target: str) -> dict[str, Any]:
    """The job for the push of ``target``, once it has finished."""
    done = ("queued", "running")
    job = wait_for(
        lambda: next(
            (j for j in daemon.jobs() if j["target"] == target and j["state"] not in done), None
        ),
        120,
        "the job to finish",
    )
    detail: dict[str, Any] = daemon.get(f"/api/jobs/{job['id']}")
    return detail


def push_script(lab: Lab, name: str, text: str, message: str) -> str:
    lab.user.git("pull", "-q", "--ff-only", "origin", "main")
    lab.user.write(f"code/{name}", text)
    lab.user.git("commit", "-qam", message)  # with anything else the caller wrote
    lab.user.git("push", "-q", "origin", "HEAD:main")
    return lab.user.head()


def submissions(state_dir: Path) -> list[tuple[str, str, str | None]]:
    """Every step the daemon handed to Slurm: (job name, state, slurm id)."""
    with sqlite3.connect(state_dir / "rerund.sqlite") as db:
        rows = db.execute("SELECT name, state, slurm_id FROM slurm_jobs").fetchall()
    return [(str(r[0]), str(r[1]), r[2]) for r in rows]


def test_pipeline_on_slurm_matches_a_local_run(
    slurm: SlurmCluster, pipeline: Dataset, tmp_path: Path
) -> None:
    """A push reruns the seed pipeline as Slurm jobs; the published tree equals a local run's."""
    local_lab = make_lab(tmp_path / "local", pipeline)
    lab = slurm_lab(tmp_path / "slurm", pipeline)
    trees = []
    for each in (local_lab, lab):
        daemon = Daemon(each, env=slurm.env).start()
        try:
            wait_for(daemon.scanned, 60, "the start-up scan")
            fix = each.push_fix()
            wait_for(lambda d=daemon, f=fix: d.idle() and len(d.jobs()) >= 2, 120, "the rerun")
            assert each.subjects_since(fix) == RERUNS
            trees.append(git("rev-parse", "refs/heads/main^{tree}", cwd=each.bare))
            detail = daemon.get(f"/api/jobs/{daemon.jobs()[0]['id']}")
            if each is lab:
                listing = rerund_cli("jobs", "--url", daemon.base, cwd=each.root).stdout
                log = daemon.get(f"/api/jobs/{detail['id']}/log?step=1")
        finally:
            daemon.stop()
    assert trees[0] == trees[1]
    steps = detail["steps"]
    assert [s["state"] for s in steps] == ["committed"] * 3
    ids = [s["slurm"]["slurm_id"] for s in steps]
    assert all(ids) and len(set(ids)) == 3
    assert all(s["slurm"]["state"] == "committed" and s["slurm"]["node"] for s in steps)
    assert all(s["slurm"]["queue_wait_s"] is not None for s in steps)
    assert f"slurm {ids[0]}" in listing
    assert f"Slurm job {ids[0]}" in log


def test_failing_step_on_slurm_fails_with_its_log(
    slurm: SlurmCluster, pipeline: Dataset, tmp_path: Path
) -> None:
    """A command exiting non-zero on Slurm fails its job; its output is in the step log."""
    lab = slurm_lab(tmp_path, pipeline)
    daemon = Daemon(lab, env=slurm.env).start()
    try:
        wait_for(daemon.scanned, 60, "the start-up scan")
        tip = push_script(lab, "stats.sh", "echo stats broke >&2\nexit 3\n", "break stats")
        job = finished_job(daemon, tip)
        assert job["state"] == "failed"
        assert "exited with 3" in job["error"]
        states = [s["state"] for s in job["steps"]]
        assert states == ["failed", "not-run"]
        assert job["steps"][0]["slurm"]["state"] == "failed"
        log = daemon.get(f"/api/jobs/{job['id']}/log?step=1")
        assert "stats broke" in log
        assert lab.tip() == tip  # nothing published
    finally:
        daemon.stop()


def test_step_over_its_memory_limit_says_so(
    slurm: SlurmCluster, pipeline: Dataset, tmp_path: Path
) -> None:
    """Slurm killing a step for its memory (jobacct polling) fails it as 'memory limit'."""
    lab = slurm_lab(tmp_path, pipeline, ', mem = "50M"')
    daemon = Daemon(lab, env=slurm.env).start()
    try:
        wait_for(daemon.scanned, 60, "the start-up scan")
        hog = "python3 -c 'import time; x = bytearray(400 << 20); time.sleep(10)'\n"
        stats = (lab.user.path / "code" / "stats.sh").read_text()
        tip = push_script(lab, "stats.sh", hog + stats, "stats hogs memory")
        job = finished_job(daemon, tip)
        assert job["state"] == "failed"
        assert "memory limit" in job["error"]
    finally:
        daemon.stop()


def test_daemon_killed_while_step_runs_reattaches(
    slurm: SlurmCluster, pipeline: Dataset, tmp_path: Path
) -> None:
    """kill -9 while a step runs on Slurm: the restarted daemon re-attaches; one submission each,
    published once."""
    lab = slurm_lab(tmp_path, pipeline)
    env = {**slurm.env, "SLOW_STEP_S": "6"}
    daemon = Daemon(lab, env=env).start()
    wait_for(daemon.scanned, 60, "the start-up scan")
    fix = lab.push_fix()
    state_dir = lab.root / "state"
    wait_for(
        lambda: any(s[1] == "RUNNING" for s in submissions(state_dir)),
        60,
        "the first step to run on Slurm",
    )
    daemon.stop(signal.SIGKILL)
    running = submissions(state_dir)
    daemon = Daemon(lab, env=env).start()
    try:
        wait_for(lambda: lab.subjects_since(fix) == RERUNS and daemon.idle(), 120, "the rerun")
        done = submissions(state_dir)
        assert len(done) == 3
        assert {s[2] for s in running} <= {s[2] for s in done}  # the same Slurm job, re-attached
        assert all(s[1] == "committed" for s in done)
        names = slurm.run("squeue", "--noheader", "--states=all", "--format=%j").split()
        assert all(names.count(name) == 1 for name, _, _ in done)  # never submitted twice
        assert "slurm step re-attached" in daemon.log()
    finally:
        daemon.stop()
    assert lab.subjects_since(fix) == RERUNS  # published once


def test_newer_push_cancels_the_running_slurm_job(
    slurm: SlurmCluster, pipeline: Dataset, tmp_path: Path
) -> None:
    """A push while a step runs on Slurm supersedes it: scancel, and the newer tip is rerun."""
    lab = slurm_lab(tmp_path, pipeline)
    daemon = Daemon(lab, env=slurm.env).start()
    try:
        wait_for(daemon.scanned, 60, "the start-up scan")
        clean = (lab.user.path / "code" / "clean.sh").read_text()
        push_script(lab, "clean.sh", "sleep 60\n" + clean, "slow clean")
        state_dir = lab.root / "state"
        wait_for(
            lambda: any(s[1] == "RUNNING" for s in submissions(state_dir)),
            60,
            "the slow step to run on Slurm",
        )
        slurm_id = next(s[2] for s in submissions(state_dir) if s[1] == "RUNNING")
        lab.user.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
        newer = push_script(lab, "clean.sh", clean, "fast clean again, new data")
        wait_for(lambda: lab.subjects_since(newer) == RERUNS, 120, "the newer push's rerun")
        states = {job["state"] for job in daemon.jobs()}
        assert "superseded" in states
        shown = slurm.run("scontrol", "show", "job", "-o", str(slurm_id))
        assert "JobState=CANCELLED" in shown
    finally:
        daemon.stop()


@pytest.mark.slow
def test_step_over_its_time_limit_says_so(
    slurm: SlurmCluster, pipeline: Dataset, tmp_path: Path
) -> None:
    """Slurm stopping a step at its time limit (whole minutes) fails it as 'time limit'."""
    lab = slurm_lab(tmp_path, pipeline, ', time = "1"')
    daemon = Daemon(lab, env=slurm.env).start()
    try:
        wait_for(daemon.scanned, 60, "the start-up scan")
        push_script(lab, "stats.sh", "sleep 300\n", "stats takes too long")
        job = wait_for(
            lambda: next((j for j in daemon.jobs() if j["state"] == "failed"), None),
            240,
            "the step to time out",
        )
        assert "time limit (1)" in job["error"]
    finally:
        daemon.stop()


def running_slurm_id(state_dir: Path) -> str:
    """The Slurm id of a step the daemon sees running, once there is one."""
    found = wait_for(
        lambda: next((s[2] for s in submissions(state_dir) if s[1] == "RUNNING"), None),
        60,
        "a step to run on Slurm",
    )
    return str(found)


def test_step_cancelled_by_someone_else_fails_with_the_reason(
    slurm: SlurmCluster, pipeline: Dataset, tmp_path: Path
) -> None:
    """An scancel by someone else fails the step and says so; nothing is published."""
    lab = slurm_lab(tmp_path, pipeline)
    daemon = Daemon(lab, env={**slurm.env, "SLOW_STEP_S": "30"}).start()
    try:
        wait_for(daemon.scanned, 60, "the start-up scan")
        fix = lab.push_fix()
        slurm.run("scancel", running_slurm_id(lab.root / "state"))
        job = finished_job(daemon, fix)
        assert job["state"] == "failed"
        assert "cancelled on the cluster, not by rerund" in job["error"]
        assert lab.tip() == fix
    finally:
        daemon.stop()


def test_step_lost_with_its_node_is_submitted_again(
    slurm: SlurmCluster, pipeline: Dataset, tmp_path: Path
) -> None:
    """A job ended NODE_FAIL (its node went down) is resubmitted once the node is back."""
    lab = slurm_lab(tmp_path, pipeline)
    daemon = Daemon(lab, env={**slurm.env, "SLOW_STEP_S": "5"}).start()
    try:
        wait_for(daemon.scanned, 60, "the start-up scan")
        fix = lab.push_fix()
        first = running_slurm_id(lab.root / "state")
        node = f"nodename={slurm.node}"
        slurm.run("scontrol", "update", node, "state=down", "reason=rerund-test")
        try:
            wait_for(
                lambda: "JobState=NODE_FAIL" in slurm.run("scontrol", "show", "job", "-o", first),
                30,
                "the job to be lost with its node",
            )
        finally:
            # ReturnToService=2 may have brought it back already: resuming may be refused.
            slurm.run("scontrol", "update", node, "state=resume", check=False)
        job = finished_job(daemon, fix)
        assert job["state"] == "succeeded", job
        assert lab.subjects_since(fix) == RERUNS
        clean = job["steps"][0]["slurm"]
        assert clean["retries"] == 1 and clean["slurm_id"] != first
    finally:
        daemon.stop()


def test_annexed_pipeline_on_slurm_matches_a_local_run(
    slurm: SlurmCluster, annexed_pipeline: Dataset, tmp_path: Path
) -> None:
    """Every file annexed: the Slurm steps' worktrees share the annex; same tree as locally."""
    trees = []
    for name, extra in (
        ("local", ""),
        ("slurm", 'executor = "slurm"\nslurm = { poll_interval_s = 0.2 }\n'),
    ):
        lab = make_lab(tmp_path / name, annexed_pipeline, annex_remote=True, extra=extra)
        daemon = Daemon(lab, env=slurm.env).start()
        try:
            wait_for(daemon.scanned, 60, "the start-up scan")
            user = lab.user
            user.git("pull", "-q", "--ff-only", "origin", "main")
            user.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
            user.git("commit", "-qam", "fix raw data")
            # The content first, as a user's `datalad push` would, then the branch.
            run("git", "annex", "copy", "-q", "--to", "origin", ".", cwd=user.path)
            user.git("push", "-q", "origin", "HEAD:main")
            fix = user.head()
            job = finished_job(daemon, fix)
            assert job["state"] == "succeeded", job
            assert lab.subjects_since(fix) == RERUNS
            trees.append(git("rev-parse", "refs/heads/main^{tree}", cwd=lab.bare))
        finally:
            daemon.stop()
        clone = tmp_path / f"{name}-clone"
        git("clone", "-q", str(lab.bare), str(clone), cwd=tmp_path)
        run("git", "annex", "get", "-q", "report.txt", cwd=clone)
        assert "rows and total: 4 16" in (clone / "report.txt").read_text()
    assert trees[0] == trees[1]


def test_step_waiting_in_the_queue_is_visible(
    slurm: SlurmCluster, pipeline: Dataset, tmp_path: Path
) -> None:
    """A step pending in Slurm shows in /metrics, the job's JSON and `rerund jobs`, then runs."""
    lab = slurm_lab(tmp_path, pipeline)
    daemon = Daemon(lab, env=slurm.env).start()
    node = f"nodename={slurm.node}"
    try:
        wait_for(daemon.scanned, 60, "the start-up scan")
        slurm.run("scontrol", "update", node, "state=drain", "reason=rerund-test")
        try:
            fix = lab.push_fix()
            wait_for(
                lambda: any(s[1] == "PENDING" for s in submissions(lab.root / "state")),
                60,
                "the step to wait in Slurm's queue",
            )
            assert "rerund_slurm_steps_pending 1.0" in daemon.get("/metrics")
            job = next(j for j in daemon.jobs() if j["target"] == fix)
            pending = job["slurm"][0]
            assert pending["state"] == "PENDING" and pending["node"] is None
            wait_for(
                lambda: (
                    daemon.get(f"/api/jobs/{job['id']}")["steps"][0]["slurm"]["queue_wait_s"] > 0.5
                ),
                10,
                "the queue wait to grow",
            )
            listing = rerund_cli("jobs", "--url", daemon.base, cwd=lab.root).stdout
            assert f"slurm {pending['slurm_id']} PENDING, queued" in listing
        finally:
            slurm.run("scontrol", "update", node, "state=resume", check=False)
        assert finished_job(daemon, fix)["state"] == "succeeded"
        assert "rerund_slurm_steps_pending 0.0" in daemon.get("/metrics")
    finally:
        daemon.stop()
