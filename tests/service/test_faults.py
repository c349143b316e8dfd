"""Faults and bad input against the real daemon: real hook, real pushes, real processes.

Each test names what must survive (the daemon's exit status and health, the
branch, no double run) when one thing goes wrong on purpose (issue 8).
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import resource
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import Dataset, git
from service_helpers import API_TOKEN, Daemon, Lab, free_port, make_lab, rerund_cli, wait_for

RERUNS = ["[DATALAD RUNCMD] clean", "[DATALAD RUNCMD] stats", "[DATALAD RUNCMD] report"]


@pytest.fixture
def lab(_pipeline_template: Dataset, tmp_path: Path) -> Lab:
    return make_lab(tmp_path, _pipeline_template)


def _landed(lab: Lab, fix: str) -> bool:
    return lab.subjects_since(fix) == RERUNS


def _status(url: str) -> int:
    """GET ``url`` with the lab's API token (reads need it since the token guards reading)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _limits(lab: Lab, **values: int) -> None:
    """Add ``[limits]`` settings to the lab's configuration."""
    lines = "".join(f"{key} = {value}\n" for key, value in values.items())
    text = lab.config.read_text()
    lab.config.write_text(text.replace("[limits]\n", f"[limits]\n{lines}", 1))


def _unsandboxed(lab: Lab) -> None:
    """Run the lab's steps without bubblewrap, for faults the sandbox would prevent."""
    with lab.config.open("a") as config:
        config.write('[security]\nsandbox = "none"\n')


def _record(cmd: str, inputs: list[str], outputs: list[str]) -> str:
    record = {"cmd": cmd, "exit": 0, "chain": [], "inputs": inputs, "outputs": outputs}
    return json.dumps({**record, "extra_inputs": [], "pwd": "."}, indent=1)


# -- 3, 6.9: the spool -----------------------------------------------------------------------


def test_spool_junk_is_set_aside_and_intake_goes_on(lab: Lab) -> None:
    """A directory, a link to /dev/zero, a FIFO, a foreign repo, a bad ref, a huge file:
    each is moved to spool/rejected/ with a logged reason; the daemon stays up and a real
    push behind them is handled."""
    spool = lab.root / "state" / "spool"
    (spool / "0-dir.push").mkdir()
    (spool / "0-zero.push").symlink_to("/dev/zero")
    os.mkfifo(spool / "0-fifo.push")
    (spool / "0-foreign.push").write_text(f"repo /elsewhere.git\n{'a' * 40} {'b' * 40} x\n")
    bad_ref = f"repo {lab.bare}\n{'a' * 40} {'b' * 40} refs/heads/../../etc\n"
    (spool / "0-badref.push").write_text(bad_ref)
    (spool / "0-huge.push").write_bytes(b"repo " + b"x" * (2 * 1024 * 1024))
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan")
        fix = lab.push_fix()
        wait_for(lambda: _landed(lab, fix), what="the push behind the junk to be handled")

        assert "ok" == daemon.get("/healthz")["status"]
        # The watcher may land the push before intake has drained the hook's own file.
        wait_for(lambda: not list(spool.glob("*.push")), what="the spool to be drained")
        rejected = sorted(path.name.split(".push")[0] for path in (spool / "rejected").iterdir())
        assert ["0-badref", "0-dir", "0-fifo", "0-foreign", "0-huge", "0-zero"] == rejected
        reasons = [e["reason"] for e in daemon.events() if e["event"] == "spool entry refused"]
        assert 6 == len(reasons)
        assert any("a FIFO" in reason for reason in reasons)
    finally:
        assert 0 == daemon.stop()


def test_spool_is_writable_by_one_group_not_by_everyone(
    _pipeline_template: Dataset, tmp_path: Path
) -> None:
    """After `hooks install` the spool is 2770, in the repository's group or `spool_group`."""
    lab = make_lab(tmp_path, _pipeline_template)
    spool = lab.root / "state" / "spool"
    info = spool.stat()
    assert (0o2770, lab.bare.stat().st_gid) == (stat.S_IMODE(info.st_mode), info.st_gid)

    # Any group will do for root; anyone else can hand the spool only to their own groups.
    mine = [1] if os.geteuid() == 0 else [g for g in os.getgroups() if g != info.st_gid]
    if not mine:
        pytest.skip("this user belongs to one group only")
    other = grp.getgrgid(mine[0]).gr_name
    lab.config.write_text(f'spool_group = "{other}"\n' + lab.config.read_text())
    rerund_cli("hooks", "install", str(lab.bare), "--config", str(lab.config), cwd=lab.root)
    info = spool.stat()
    assert (0o2770, mine[0]) == (stat.S_IMODE(info.st_mode), info.st_gid)


# -- 4: a dead core task ---------------------------------------------------------------------

_CRASHING = """
import asyncio
import os
import sys
from pathlib import Path
from rerund.service.lifecycle import Service
from rerund.service.logs import configure
from rerund.settings import load
from rerund.web.api import make_app

class FaultyIntake(Service):
    async def _intake_once(self):
        if (self.settings.state_dir / "crash-intake").exists():
            raise RuntimeError("injected fault in intake")
        await super()._intake_once()

    async def shutdown(self):  # a slow drain: the window in which /healthz is asked
        await asyncio.sleep(float(os.environ.get("DRAIN_DELAY_S", "0")))
        await super().shutdown()

configure()
sys.exit(FaultyIntake(load(Path(sys.argv[1])), make_app).run())
"""


def test_a_core_task_that_dies_ends_the_daemon_with_a_failure_status(lab: Lab) -> None:
    """Intake dying of an unexpected error: /healthz answers 503 naming it until the
    daemon exits, with status 70, never 0."""
    log = (lab.root / "daemon.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", _CRASHING, str(lab.config)],
        stderr=log,
        cwd=lab.root,
        env={**os.environ, "DRAIN_DELAY_S": "3"},
    )
    try:
        base = f"http://127.0.0.1:{lab.port}/healthz"
        wait_for(lambda: _alive_status(base) == 200, 30, "the daemon to answer")
        (lab.root / "state" / "crash-intake").touch()
        lab.push_fix()  # the hook's spool file wakes intake

        wait_for(lambda: _alive_status(base) == 503, 10, "/healthz to say unhealthy")
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(base, timeout=10)
        assert ["intake"] == json.loads(answer.value.read())["down"]
        assert 70 == process.wait(timeout=30)
        died = [json.loads(line) for line in (lab.root / "daemon.log").read_text().splitlines()]
        assert any(e["event"] == "core task died" and e["task"] == "intake" for e in died)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()


def _alive_status(url: str) -> int | None:
    try:
        return _status(url)
    except OSError:
        return None


# -- 7: one daemon per state directory ------------------------------------------------------


def test_second_daemon_on_the_same_state_dir_exits_3_and_touches_nothing(lab: Lab) -> None:
    """A second `serve` exits 3 naming the holder; the first daemon's job runs once."""
    daemon = Daemon(lab, env={"SLOW_STEP_S": "3"}).start()
    try:
        wait_for(daemon.scanned, timeout_s=90, what="the start-up scan")
        fix = lab.push_fix()
        wait_for(lambda: any(j["state"] == "running" for j in daemon.jobs()), what="a running job")

        second = subprocess.run(
            [sys.executable, "-m", "rerund", "serve", "--config", str(lab.config),
             "--listen", f"127.0.0.1:{free_port()}"],
            cwd=lab.root, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

        assert 3 == second.returncode
        assert daemon.process is not None
        assert f"pid {daemon.process.pid}" in second.stderr
        wait_for(lambda: _landed(lab, fix), timeout_s=90, what="the reruns")
        wait_for(daemon.idle, what="the job to finish")
        assert 1 == daemon.jobs()[0]["attempts"]
        assert RERUNS == lab.subjects_since(fix)
    finally:
        assert 0 == daemon.stop()


# -- 8: steps, the thread pool and leases ---------------------------------------------------


def _more_repos(lab: Lab, count: int) -> list[Path]:
    bares = []
    with lab.config.open("a") as config:
        for number in range(count):
            bare = lab.root / "srv" / f"r{number}.git"
            git("clone", "-q", "--bare", str(lab.bare), str(bare), cwd=lab.root)
            config.write(f'[[repos]]\nname = "r{number}"\nremote = "{bare}"\nbranch = "main"\n')
            # As make_lab's repository: steps may run, and SLOW_STEP_S reaches them.
            config.write('trust = "any"\npass_env = ["SLOW_STEP_S"]\n')
            bares.append(bare)
    return bares


def test_running_steps_leave_health_and_leases_responsive(
    _pipeline_template: Dataset, tmp_path: Path
) -> None:
    """With more steps running than the default thread pool has threads, /healthz answers
    within a second, leases hold, and no job is claimed twice."""
    steps = (os.cpu_count() or 1) + 5  # the default pool holds min(32, cpus + 4) threads
    lab = make_lab(tmp_path, _pipeline_template)
    _limits(lab, max_concurrent_steps=steps, lease_s=3)
    bares = _more_repos(lab, steps - 1)
    daemon = Daemon(lab, env={"SLOW_STEP_S": "6"}).start()
    try:
        wait_for(lambda: len(daemon.jobs()) == steps and daemon.idle(), 120, "start-up scans")
        fix = lab.push_fix()
        for number, bare in enumerate(bares):
            lab.user.git("push", "-q", str(bare), f"{fix}:refs/heads/main")
            daemon.post(
                f"/api/repos/r{number}/trigger", b"", {"Authorization": f"Bearer {API_TOKEN}"}
            )
        wait_for(
            lambda: sum(j["state"] == "running" for j in daemon.jobs()) == steps,
            what="every repository's step to run",
        )
        slowest = 0.0
        for _ in range(20):
            started = time.monotonic()
            assert "ok" == daemon.get("/healthz")["status"]
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.1)

        assert slowest < 1.0
        wait_for(daemon.idle, 120, "every job to finish")
        for bare in [lab.bare, *bares]:
            subjects = git("log", "--reverse", "--format=%s", f"{fix}..main", cwd=bare)
            assert RERUNS == subjects.splitlines()
        assert all(j["attempts"] == 1 for j in daemon.jobs())
        assert not any(e["event"] == "lease lost; stopping the job" for e in daemon.events())
    finally:
        assert 0 == daemon.stop()


def test_a_job_that_lost_its_lease_stops_and_runs_once(lab: Lab) -> None:
    """A lease taken away mid-step: the old run stops, the new claim runs alone, once."""
    _limits(lab, max_concurrent_steps=2, lease_s=3)
    daemon = Daemon(lab, env={"SLOW_STEP_S": "4"}).start()
    try:
        wait_for(daemon.scanned, timeout_s=90, what="the start-up scan")
        fix = lab.push_fix()
        wait_for(lambda: any(j["state"] == "running" for j in daemon.jobs()), what="a running job")
        with sqlite3.connect(lab.root / "state" / "rerund.sqlite", timeout=10) as db:
            # What an expired lease comes to: the job is queued again for another claim.
            db.execute(
                "UPDATE jobs SET state = 'queued', lease_until = NULL WHERE state = 'running'"
            )

        wait_for(lambda: _landed(lab, fix), timeout_s=90, what="the reruns")
        wait_for(daemon.idle, what="the queue to drain")
        time.sleep(1)
        assert RERUNS == lab.subjects_since(fix)
        job = daemon.jobs()[0]
        assert ("succeeded", 2) == (job["state"], job["attempts"])
        events = [e["event"] for e in daemon.events()]
        assert "lease lost; stopping the job" in events
        assert "job abandoned" in events
    finally:
        assert 0 == daemon.stop()


# -- 5: a job that kills the daemon ---------------------------------------------------------


def test_a_job_that_kills_the_daemon_is_failed_after_max_attempts(
    _pipeline_template: Dataset, tmp_path: Path
) -> None:
    """`kill -9 $PPID` kills the daemon twice; then its tip is failed and handled, the
    daemon stays up, and only a new push queues work again."""
    lab = make_lab(tmp_path, _pipeline_template)
    _limits(lab, job_max_attempts=2)
    _unsandboxed(lab)  # in bubblewrap $PPID is not the daemon (test_isolation proves that)
    lab.user.commit_record("boom", _record("kill -9 $PPID", ["raw/data.txt"], ["boom.txt"]))
    fix = lab.push_fix()  # one push: the record and a change that makes it stale
    for _ in range(2):
        daemon = Daemon(lab).start()
        assert daemon.process is not None
        assert -signal.SIGKILL == daemon.process.wait(timeout=120)

    survivor = Daemon(lab).start()
    try:
        wait_for(survivor.idle, what="recovery")
        time.sleep(2)  # a start-up scan that requeued the tip would show by now
        assert survivor.process is not None and survivor.process.poll() is None
        jobs = survivor.jobs()
        assert [("failed", fix)] == [(j["state"], j["target"]) for j in jobs]
        assert "every attempt" in jobs[0]["error"]

        lab.user.write("notes.txt", "a new push\n")
        lab.user.git("add", "notes.txt")
        lab.user.git("commit", "-qm", "new push")
        lab.user.git("push", "-q", "origin", "HEAD:main")
        new = lab.user.head()
        wait_for(lambda: any(j["target"] == new for j in survivor.jobs()), what="a new job")
    finally:
        survivor.stop(signal.SIGKILL)


# -- 13: storage and infrastructure failures ------------------------------------------------


def test_an_unreachable_remote_keeps_the_push_pending_and_retries(lab: Lab) -> None:
    """The remote gone when the job runs: the job is retried with backoff, not failed and
    not handled; once the remote is back, the reruns land."""
    fix = lab.push_fix()  # spooled: the daemon is not running
    away = lab.bare.with_name("lab.git.away")
    lab.bare.rename(away)
    daemon = Daemon(lab).start()
    try:
        job = wait_for(
            lambda: next((j for j in daemon.jobs() if "will retry" in (j["error"] or "")), None),
            what="a failed attempt",
        )
        assert "queued" == job["state"]
        away.rename(lab.bare)

        wait_for(lambda: _landed(lab, fix), timeout_s=90, what="the retried job")
        wait_for(daemon.idle, what="the queue to drain")
        done = daemon.get(f"/api/jobs/{job['id']}")
        assert ("succeeded", None) == (done["state"], done["error"])
    finally:
        assert 0 == daemon.stop()


def test_a_full_disk_stops_intake_from_recording_but_never_kills_it(lab: Lab) -> None:
    """The state directory cannot be written (file size limit 1 byte: EFBIG, as ENOSPC):
    the spooled push waits in the spool; once writes work again it is handled."""
    log_path = lab.root / "daemon.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "rerund", "serve", "--config", str(lab.config)],
        cwd=lab.root,
        stderr=subprocess.PIPE,  # a pipe: the file size limit must not hit the log
    )
    assert process.stderr is not None
    copier = threading.Thread(target=_copy_stream, args=(process.stderr, log_path), daemon=True)
    copier.start()
    try:
        base = f"http://127.0.0.1:{lab.port}"
        wait_for(lambda: _alive_status(base + "/healthz") == 200, 30, "the daemon to answer")
        wait_for(lambda: _jobs_idle(base), 60, "the start-up scan")
        soft, hard = resource.prlimit(process.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (1, hard))
        fix = lab.push_fix()
        spool = lab.root / "state" / "spool"
        wait_for(lambda: "storage error" in log_path.read_text() or process.poll() is not None)
        time.sleep(1)

        assert process.poll() is None, f"exited {process.returncode}"
        assert list(spool.glob("*.push"))
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (soft, hard))
        wait_for(lambda: _landed(lab, fix), timeout_s=90, what="the push to be handled")
        assert not list(spool.glob("*.push"))
    finally:
        process.send_signal(signal.SIGTERM)
        assert 0 == process.wait(timeout=30)
        copier.join(timeout=10)
        process.stderr.close()


def _copy_stream(stream: object, path: Path) -> None:
    with path.open("ab") as out:
        for line in stream:  # type: ignore[attr-defined]
            out.write(line)
            out.flush()


def _jobs_idle(base: str) -> bool:
    with urllib.request.urlopen(base + "/api/jobs", timeout=10) as response:
        jobs = json.loads(response.read())["jobs"]
    return bool(jobs) and not any(j["state"] in ("queued", "running") for j in jobs)


def test_kept_failed_trees_are_pruned_by_count(lab: Lab) -> None:
    """Kept work trees beyond the newest ten, or a month old, are deleted when a job fails."""
    kept = lab.root / "state" / "failed" / "lab"
    kept.mkdir(parents=True)
    now = time.time()
    for number in range(12):
        (kept / f"job-old{number}").mkdir()
        os.utime(kept / f"job-old{number}", (now - 100 + number, now - 100 + number))
    (kept / "job-ancient").mkdir()
    os.utime(kept / "job-ancient", (now - 30 * 86400, now - 30 * 86400))
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan")
        lab.user.write("code/report.sh", "exit 7\n")
        lab.user.git("commit", "-qam", "break the report")
        lab.push_fix()
        wait_for(lambda: any(j["state"] == "failed" for j in daemon.jobs()), what="a failure")

        names = sorted(path.name for path in kept.iterdir())
        assert 10 == len(names)
        assert {f"job-old{number}" for number in range(3, 12)} < set(names)
        assert any(name.startswith("job-") and "old" not in name for name in names)
    finally:
        daemon.stop()


# -- 12: a remote that refuses --------------------------------------------------------------

_REFUSE_RERUND = """#!/bin/sh
while read old new ref; do
  case "$ref" in refs/heads/*)
    if git log --format=%an "$old..$new" | grep -qx rerund; then
      echo "policy: robots may not push to branches" >&2; exit 1
    fi;;
  esac
done
exit 0
"""


def test_a_remote_that_refuses_is_a_failure_with_its_words_and_no_replans(lab: Lab) -> None:
    """A pre-receive hook refusing rerund: job failed with the remote's message, commits
    on refs/rerund/failed/<id>, work tree kept, each step run once."""
    hook = lab.bare / "hooks" / "pre-receive"
    hook.write_text(_REFUSE_RERUND)
    hook.chmod(0o755)
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan")
        fix = lab.push_fix()
        job = wait_for(lambda: next((j for j in daemon.jobs() if j["state"] == "failed"), None))

        assert fix == lab.tip()
        assert "policy: robots may not push to branches" in job["error"]
        assert f"refs/rerund/failed/{job['id']}" == job["side_ref"]
        side = git("log", "--format=%s", f"{fix}..{job['side_ref']}", cwd=lab.bare)
        assert list(reversed(RERUNS)) == side.splitlines()
        assert (lab.root / "state" / "failed" / "lab" / f"job-{job['id']}").is_dir()
        planned = [
            e for e in daemon.events() if e["event"] == "planned" and e.get("job") == job["id"]
        ]
        assert 1 == len(planned)
    finally:
        daemon.stop()


# -- 10: logs -------------------------------------------------------------------------------


def test_a_step_log_is_capped_and_streamed_with_a_tail(lab: Lab) -> None:
    """A step flooding its log is stopped at max_log_bytes; the log endpoint streams it,
    ?tail= returns only its end and ?offset= what follows a point."""
    _limits(lab, max_log_bytes=4096)
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan")
        lab.user.write("code/report.sh", "yes flood | head -c 50000000\n")
        lab.user.git("commit", "-qam", "a chatty report")
        lab.push_fix()
        job = wait_for(lambda: next((j for j in daemon.jobs() if j["state"] == "failed"), None))

        assert "wrote more than 4096 bytes" in job["error"]
        whole = daemon.get(f"/api/jobs/{job['id']}/log")
        assert len(whole) < 3 * 4096 + 1000
        tail = daemon.get(f"/api/jobs/{job['id']}/log?step=3&tail=60")
        assert tail.startswith("=== step 3 ")
        assert "rerund: stopped after writing more than 4096 bytes" in tail
        assert len(tail) < 60 + 100
        assert 400 == _status(f"{daemon.base}/api/jobs/{job['id']}/log?tail=-1")
        rest = daemon.get(f"/api/jobs/{job['id']}/log?step=3&offset=4090")
        assert rest.startswith("=== step 3 ") and len(rest) < 200
    finally:
        daemon.stop()


# -- 11: repository names -------------------------------------------------------------------


def test_names_that_differ_only_by_slash_and_underscore_keep_apart(lab: Lab) -> None:
    """`grp/x` and `grp_x` each get their own work clone and their own reruns."""
    first = lab.root / "srv" / "grp-x-1.git"
    second = lab.root / "srv" / "grp-x-2.git"
    for bare in (first, second):
        git("clone", "-q", "--bare", str(lab.bare), str(bare), cwd=lab.root)
    with lab.config.open("a") as config:
        for name, bare in (("grp/x", first), ("grp_x", second)):
            config.write(f'[[repos]]\nname = "{name}"\nremote = "{bare}"\nbranch = "main"\n')
            config.write('trust = "any"\n')  # without a trust policy nothing would run
    fix = lab.push_fix()
    for bare in (first, second):
        lab.user.git("push", "-q", str(bare), f"{fix}:refs/heads/main")
    daemon = Daemon(lab).start()
    try:
        wait_for(lambda: len(daemon.jobs()) == 3 and daemon.idle(), 120, "three jobs")
        for bare in (lab.bare, first, second):
            subjects = git("log", "--reverse", "--format=%s", f"{fix}..main", cwd=bare)
            assert RERUNS == subjects.splitlines()
        work = sorted(path.name for path in (lab.root / "state" / "work").iterdir())
        assert ["grp+x", "grp_x", "lab"] == work
    finally:
        assert 0 == daemon.stop()


# -- 16: job ids ----------------------------------------------------------------------------


def test_job_ids_do_not_repeat_after_the_store_is_lost(lab: Lab) -> None:
    """With rerund.sqlite deleted, the next failed job gets a new id: the old side ref,
    log and kept tree stay as they were."""
    lab.user.write("code/report.sh", "exit 7\n")
    lab.user.git("commit", "-qam", "break the report")
    lab.push_fix()
    daemon = Daemon(lab).start()
    try:
        first = wait_for(lambda: next((j for j in daemon.jobs() if j["state"] == "failed"), None))
    finally:
        daemon.stop()
    old_ref = git("rev-parse", first["side_ref"], cwd=lab.bare)
    for path in (lab.root / "state").glob("rerund.sqlite*"):
        path.unlink()
    lab.push_fix("# measurements\n3\n1\n2\n11\n")
    restarted = Daemon(lab).start()
    try:
        second = wait_for(
            lambda: next((j for j in restarted.jobs() if j["state"] == "failed"), None)
        )
        assert second["id"] > first["id"]
        assert old_ref == git("rev-parse", first["side_ref"], cwd=lab.bare)
    finally:
        restarted.stop()


# -- 17: survivors of a killed daemon -------------------------------------------------------


def test_a_work_tree_with_a_surviving_step_is_not_reused(lab: Lab) -> None:
    """After kill -9 mid-step the step's process lives on; the restarted daemon sets the
    tree aside and reruns in a fresh clone."""
    _unsandboxed(lab)  # bubblewrap's --die-with-parent ends a sandboxed step with the daemon
    daemon = Daemon(lab, env={"SLOW_STEP_S": "30"}).start()
    wait_for(daemon.scanned, timeout_s=90, what="the start-up scan")
    fix = lab.push_fix()
    wait_for(lambda: any(j["state"] == "running" for j in daemon.jobs()), what="a running job")
    time.sleep(1)
    daemon.stop(signal.SIGKILL)
    restarted = Daemon(lab, env={"SLOW_STEP_S": "0"}).start()
    pids: list[int] = []
    try:
        wait_for(lambda: _landed(lab, fix), timeout_s=90, what="the requeued job")
        aside = [e for e in restarted.events() if e["event"] == "work tree still in use; set aside"]
        assert 1 == len(aside)
        pids = aside[0]["pids"]
        assert pids
        assert (lab.root / "state" / "failed" / "lab" / aside[0]["work_tree"]).is_dir()
    finally:
        restarted.stop()
        for pid in pids:
            with_suppressed_kill(pid)


def with_suppressed_kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def test_the_unit_file_stops_the_steps_with_the_daemon() -> None:
    """systemd's KillMode takes the steps' process groups along with the daemon."""
    unit = (Path(__file__).resolve().parents[2] / "systemd" / "rerund.service").read_text()
    modes = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("KillMode=")]
    assert modes in (["mixed"], ["control-group"])


# -- 14: the plan mirror --------------------------------------------------------------------


def test_concurrent_plans_share_one_mirror_and_a_broken_mirror_is_rebuilt(lab: Lab) -> None:
    """Ten plan requests at once all answer with the tip; a mirror with its objects gone
    is rebuilt on the next request."""
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan")
        answers: list[object] = []

        def ask() -> None:
            try:
                answers.append(daemon.get("/api/repos/lab/plan")["head"])
            except OSError as exc:
                answers.append(repr(exc))

        threads = [threading.Thread(target=ask) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [lab.tip()] * 10 == answers

        mirror = lab.root / "state" / "mirrors" / "lab.git"
        for pack in (mirror / "objects" / "pack").iterdir():
            pack.unlink()
        assert lab.tip() == daemon.get("/api/repos/lab/plan")["head"]
    finally:
        daemon.stop()


# -- 19, 20: API and webhook input ----------------------------------------------------------


def test_api_refuses_odd_numbers_and_shows_no_server_paths(lab: Lab) -> None:
    """Negative limits, huge or non-ASCII ids are refused; no answer holds a server path."""
    lab.user.write("code/report.sh", "exit 7\n")
    lab.user.git("commit", "-qam", "break the report")
    lab.push_fix()
    daemon = Daemon(lab).start()
    try:
        job = wait_for(lambda: next((j for j in daemon.jobs() if j["state"] == "failed"), None))
        base = daemon.base
        assert 400 == _status(f"{base}/api/jobs?limit=-1")
        assert 400 == _status(f"{base}/api/jobs?limit=100000")
        assert 404 == _status(f"{base}/api/jobs/99999999999999999999999")
        assert 400 == _status(f"{base}/api/jobs/%D9%A1")  # ARABIC-INDIC DIGIT ONE
        answers = [daemon.get("/api/repos"), daemon.get(f"/api/jobs/{job['id']}")]
        text = json.dumps(answers)
        assert str(lab.root) not in text
        assert "logs/job-" in text
    finally:
        daemon.stop()


def test_a_text_plain_webhook_body_is_refused(lab: Lab) -> None:
    """A correctly signed delivery sent as text/plain is refused with 415, nothing stored."""
    from rerund.triggers.webhooks import sign  # noqa: PLC0415

    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan")
        body = json.dumps({"ref": "refs/heads/main", "before": "a" * 40, "after": "b" * 40})
        headers = {**sign("github", body.encode(), "gh-secret"), "Content-Type": "text/plain"}
        status, answer = daemon.post("/hooks/github/lab", body.encode(), headers)
        assert (415, True) == (status, "error" in answer)
        assert 1 == len(daemon.jobs())
    finally:
        daemon.stop()


def test_a_delivery_about_another_repository_is_refused(lab: Lab) -> None:
    """Two repositories share a secret: a delivery naming one, sent to the other, is 409."""
    from rerund.triggers.webhooks import sign  # noqa: PLC0415

    other = lab.root / "srv" / "other.git"
    git("clone", "-q", "--bare", str(lab.bare), str(other), cwd=lab.root)
    with lab.config.open("a") as config:
        config.write(
            f'[[repos]]\nname = "other"\nremote = "{other}"\ngithub_secret = "gh-secret"\n'
        )
    daemon = Daemon(lab).start()
    try:
        wait_for(lambda: len(daemon.jobs()) == 2 and daemon.idle(), what="the start-up scans")
        payload = {"ref": "refs/heads/main", "before": "a" * 40, "after": "b" * 40}
        answers = {}
        for named in ("other", "lab"):
            body = json.dumps({**payload, "repository": {"full_name": named}}).encode()
            answers[named] = daemon.post(
                "/hooks/github/lab", body, sign("github", body, "gh-secret")
            )
        assert 409 == answers["other"][0]
        assert "not 'lab'" in answers["other"][1]["error"]
        assert 202 == answers["lab"][0]
    finally:
        daemon.stop()


# -- 15: repos_dir discovery ----------------------------------------------------------------


def test_repos_dir_is_walked_off_the_loop_and_a_miss_looks_again(
    _pipeline_template: Dataset, tmp_path: Path
) -> None:
    """Under repos_dir, 50 deliveries to an unknown name leave /healthz fast; a repository
    created after start is found by the next delivery without a restart."""
    lab = make_lab(tmp_path, _pipeline_template, hook=False, watch=False)
    junk = lab.root / "srv" / "junk"
    for top in range(60):  # a big tree: walking it takes long enough to see
        (junk / str(top)).mkdir(parents=True)
        for leaf in range(1000):
            (junk / str(top) / f"f{leaf}").touch()
    lab.config.write_text(
        f'state_dir = "state"\nrepos_dir = "srv"\n[http]\nlisten = "127.0.0.1:{lab.port}"\n'
    )
    daemon = Daemon(lab).start()
    try:
        body = b'{"zen": "hi"}'
        headers = {"X-GitHub-Event": "ping", "Content-Type": "application/json"}
        assert 404 == daemon.post("/hooks/github/new/one", body, headers)[0]
        latencies: list[float] = []

        def flood() -> None:
            for _ in range(25):
                daemon.post("/hooks/github/nobody", body, headers)

        threads = [threading.Thread(target=flood) for _ in range(2)]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            started = time.monotonic()
            daemon.get("/healthz")
            latencies.append(time.monotonic() - started)
        for thread in threads:
            thread.join()
        assert max(latencies) < 0.5, max(latencies)

        git("init", "-q", "--bare", str(lab.root / "srv" / "new" / "one.git"), cwd=lab.root)
        time.sleep(1.1)
        status, answer = daemon.post("/hooks/github/new/one", body, headers)
        assert (403, "repository new/one has no github secret configured") == (
            status,
            answer["error"],
        )
    finally:
        daemon.stop()
