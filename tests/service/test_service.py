"""rerund serve, end to end: real pushes, real hooks, real HTTP, real reruns landing."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from forge_signing import forge_headers
from helpers import Dataset, git, run
from service_helpers import API_TOKEN, Daemon, Lab, free_port, make_lab, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
RERUNS = ["[DATALAD RUNCMD] clean", "[DATALAD RUNCMD] stats", "[DATALAD RUNCMD] report"]

pytestmark = pytest.mark.slow  # every test here starts `rerund serve`


@pytest.fixture
def lab(_pipeline_template: Dataset, tmp_path: Path) -> Lab:
    return make_lab(tmp_path, _pipeline_template)


def _landed(lab: Lab, fix: str) -> bool:
    return lab.subjects_since(fix) == RERUNS


def _assert_reruns_correct(lab: Lab, fix: str) -> None:
    """Three reruns in order on the branch, chained to the originals, content regenerated."""
    assert RERUNS == lab.subjects_since(fix)
    lab.user.git("pull", "-q", "--ff-only", "origin", "main")
    assert "1\n2\n3\n10\n" == lab.user.read("work/clean.txt")
    assert "rows and total: 4 16\n" == lab.user.read("report.txt")
    clean = lab.user.record("HEAD~2")
    assert [lab.user.record_commit("clean", fix)] == clean["chain"]


def test_push_through_the_hook_lands_three_reruns(lab: Lab) -> None:
    """A raw-data fix pushed through the installed hook comes back as three reruns."""
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        fix = lab.push_fix()

        wait_for(lambda: _landed(lab, fix), what="the reruns to land")

        _assert_reruns_correct(lab, fix)
        wait_for(daemon.idle, what="the job to record its end")  # it lands, then finishes
        jobs_after = daemon.jobs()
        tip = lab.tip()
        time.sleep(1.0)  # rerund's own push and the duplicate notifications must create nothing
        assert jobs_after == daemon.jobs()
        assert tip == lab.tip()
        outcomes = {e.get("outcome") for e in daemon.events() if e["event"] == "push noted"}
        assert "own-push" in outcomes
        steps = daemon.get(f"/api/jobs/{jobs_after[0]['id']}")["steps"]
        assert ["committed"] * 3 == [step["state"] for step in steps]
        assert "input raw/data.txt changed in" in steps[0]["reasons"][0]["text"]
    finally:
        assert 0 == daemon.stop()


def test_hook_never_fails_a_push_when_the_daemon_is_down(lab: Lab) -> None:
    """With no daemon running the push succeeds; the spooled push is handled at start."""
    fix = lab.push_fix()
    assert list((lab.root / "state" / "spool").glob("*.push"))

    daemon = Daemon(lab).start()
    try:
        wait_for(lambda: _landed(lab, fix), what="the spooled push to be handled")
        spool = lab.root / "state" / "spool"
        wait_for(lambda: not list(spool.glob("*.push")), what="the spool to be emptied")
    finally:
        daemon.stop()


def _github_body(fix: str, before: str) -> bytes:
    sample = json.loads((FIXTURES / "github-push-new-branch.json").read_text())
    sample.update(ref="refs/heads/main", before=before, after=fix, created=False)
    return json.dumps(sample).encode()


def _gitea_body(fix: str, before: str) -> bytes:
    sample = json.loads((FIXTURES / "gitea-push.json").read_text())
    sample.update(ref="refs/heads/main", before=before, after=fix)
    return json.dumps(sample).encode()


def _gitlab_body(fix: str, before: str) -> bytes:
    return json.dumps(
        {
            "object_kind": "push",
            "event_name": "push",
            "ref": "refs/heads/main",
            "before": before,
            "after": fix,
            "checkout_sha": fix,
            "project": {"path_with_namespace": "lab/pipeline"},
            "commits": [{"id": fix, "message": "fix raw data"}],
            "total_commits_count": 1,
        }
    ).encode()


BODIES = {"github": _github_body, "gitlab": _gitlab_body, "gitea": _gitea_body}


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_signed_webhook_delivery_lands_reruns(
    provider: str, _pipeline_template: Dataset, tmp_path: Path
) -> None:
    """A signed delivery from each forge (no hook, no watcher) triggers the reruns once."""
    lab = make_lab(tmp_path, _pipeline_template, hook=False, watch=False)
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        before = lab.tip()
        fix = lab.push_fix()
        body = BODIES[provider](fix, before)
        signature = forge_headers(provider, body, lab.secrets[provider])
        headers = {"Content-Type": "application/json", **signature}

        status, answer = daemon.post(f"/hooks/{provider}/lab", body, headers)
        again, repeated = daemon.post(f"/hooks/{provider}/lab", body, headers)

        assert (202, "queued") == (status, answer["outcome"])
        assert (202, "duplicate") == (again, repeated["outcome"])
        wait_for(lambda: _landed(lab, fix), what="the reruns to land")
        _assert_reruns_correct(lab, fix)
    finally:
        daemon.stop()


def test_watcher_alone_notices_a_push(_pipeline_template: Dataset, tmp_path: Path) -> None:
    """Without a hook, watching the bare repository's refs is enough."""
    lab = make_lab(tmp_path, _pipeline_template, hook=False, watch=True)
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        fix = lab.push_fix()
        wait_for(lambda: _landed(lab, fix), what="the watcher to notice the push")
        assert any(
            e.get("source") == "watch" and e.get("outcome") == "queued"
            for e in daemon.events()
            if e["event"] == "push noted"
        )
    finally:
        daemon.stop()


def test_bad_deliveries_are_refused_and_change_nothing(lab: Lab) -> None:
    """Forged, malformed, oversized or misdirected deliveries: an error status, nothing stored."""
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        stored = daemon.get("/healthz")["jobs"]
        body = _github_body("a" * 40, lab.tip())
        signed = forge_headers("github", body, lab.secrets["github"])
        forged = forge_headers("github", body, "not-the-secret")
        unsigned = {k: v for k, v in signed.items() if k.lower() != "x-hub-signature-256"}
        cases = [
            ("/hooks/github/lab", body, forged, 403),
            ("/hooks/github/lab", body, unsigned, 401),
            (
                "/hooks/gitlab/lab",
                body,
                {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "x"},
                403,
            ),
            (
                "/hooks/github/lab",
                b"{not json",
                forge_headers("github", b"{not json", "gh-secret"),
                400,
            ),
            (
                "/hooks/github/lab",
                b"x" * 70000,
                forge_headers("github", b"x" * 70000, "gh-secret"),
                413,
            ),
            ("/hooks/github/elsewhere", body, signed, 404),
            ("/hooks/bitbucket/lab", body, signed, 404),
        ]
        for path, payload, headers, expected in cases:
            status, answer = daemon.post(path, payload, headers)
            assert (expected, True) == (status, bool(answer.get("error"))), (path, answer)
        assert stored == daemon.get("/healthz")["jobs"]
        assert daemon.idle()
    finally:
        daemon.stop()


def test_failed_step_leaves_branch_untouched_and_keeps_work_aside(lab: Lab) -> None:
    """A step that exits non-zero: branch unchanged, finished commits on a side ref, log in API."""
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        lab.user.write("code/report.sh", "echo report exploded >&2; exit 7\n")
        lab.user.git("commit", "-qam", "break the report")
        fix = lab.push_fix()

        job = wait_for(lambda: next((j for j in daemon.jobs() if j["state"] == "failed"), None))

        assert fix == lab.tip()
        assert f"refs/rerund/failed/{job['id']}" == job["side_ref"]
        side = git("log", "--format=%s", f"{fix}..{job['side_ref']}", cwd=lab.bare).splitlines()
        assert ["[DATALAD RUNCMD] stats", "[DATALAD RUNCMD] clean"] == side
        detail = daemon.get(f"/api/jobs/{job['id']}")
        assert ["committed", "committed", "failed"] == [s["state"] for s in detail["steps"]]
        assert "exited with 7" in detail["steps"][2]["error"]
        assert "report exploded" in daemon.get(f"/api/jobs/{job['id']}/log")
    finally:
        daemon.stop()


def test_push_during_a_plan_is_kept_and_the_plan_redone(lab: Lab) -> None:
    """A person pushes while a step runs: their commit survives, reruns land on top, no force."""
    daemon = Daemon(lab, env={"SLOW_STEP_S": "2"}).start()
    try:
        wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
        fix = lab.push_fix()
        wait_for(lambda: any(j["state"] == "running" for j in daemon.jobs()), what="a running job")
        lab.user.write("notes.txt", "pushed while rerund was busy\n")
        lab.user.git("add", "notes.txt")
        lab.user.git("commit", "-qm", "a note from a person")
        lab.user.git("push", "-q", "origin", "HEAD:main")
        theirs = lab.user.head()

        wait_for(lambda: RERUNS == lab.subjects_since(theirs), timeout_s=90, what="reruns on top")
        wait_for(daemon.idle, what="the queue to drain")
        # The job re-planned on the moved branch; no job failed and left it to the next one.
        assert "failed" not in {job["state"] for job in daemon.jobs()}

        assert "" == git("merge-base", "--is-ancestor", theirs, "main", cwd=lab.bare)
        assert ["fix raw data", "a note from a person", *RERUNS] == lab.subjects_since(f"{fix}~1")
        # Every earlier tip of main is still in its history: nothing was force-pushed.
        earlier = git("reflog", "show", "--format=%H", "refs/heads/main", cwd=lab.bare).split()
        assert len(earlier) >= 4
        for old in earlier:
            is_ancestor = run("git", "merge-base", "--is-ancestor", old, "main", cwd=lab.bare)
            assert 0 == is_ancestor.returncode
    finally:
        daemon.stop()


def test_job_killed_mid_step_finishes_exactly_once_after_restart(lab: Lab) -> None:
    """SIGKILL in the middle of a step; after a restart the job completes once, no duplicates."""
    daemon = Daemon(lab, env={"SLOW_STEP_S": "3"}).start()
    wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
    fix = lab.push_fix()
    wait_for(lambda: any(j["state"] == "running" for j in daemon.jobs()), what="a running job")
    time.sleep(0.5)
    assert -signal.SIGKILL == daemon.stop(signal.SIGKILL)
    assert fix == lab.tip()

    restarted = Daemon(lab, env={"SLOW_STEP_S": "0"}).start()
    try:
        wait_for(lambda: _landed(lab, fix), timeout_s=90, what="the requeued job to finish")
        wait_for(restarted.idle, what="the queue to drain")
        time.sleep(0.5)
        assert RERUNS == lab.subjects_since(fix)
        job = restarted.get(f"/api/jobs/{restarted.jobs()[0]['id']}")
        assert ("succeeded", 2) == (job["state"], job["attempts"])
    finally:
        restarted.stop()


def test_sigterm_drains_and_exits_cleanly(lab: Lab) -> None:
    """SIGTERM while idle: the daemon stops within a second or two with exit code 0."""
    daemon = Daemon(lab).start()
    wait_for(daemon.scanned, what="the start-up scan to finish")
    started = time.monotonic()
    assert 0 == daemon.stop()
    assert time.monotonic() - started < 5
    assert "stopped" == daemon.events()[-1]["event"]


def test_api_trigger_needs_the_token_and_plan_and_metrics_answer(lab: Lab) -> None:
    """The manual trigger needs the bearer token; plan and metrics are readable."""
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        assert 401 == daemon.post("/api/repos/lab/trigger", b"", {})[0]
        assert 403 == daemon.post("/api/repos/lab/trigger", b"", {"Authorization": "Bearer no"})[0]
        status, answer = daemon.post(
            "/api/repos/lab/trigger", b"", {"Authorization": f"Bearer {API_TOKEN}"}
        )
        assert (202, "queued") == (status, answer["outcome"])
        wait_for(daemon.idle, what="the triggered job")
        assert {"head": lab.tip(), "steps": [], "notices": [], "undecided": []} == daemon.get(
            "/api/repos/lab/plan"
        )
        metrics = daemon.get("/metrics")
        assert 'rerund_jobs_finished_total{state="succeeded"}' in metrics
        assert "rerund_push_events_total" in metrics
    finally:
        daemon.stop()


def test_invalid_settings_refuse_to_start(tmp_path: Path) -> None:
    """A bad setting stops start-up with exit code 3 and a message naming the key."""
    config = tmp_path / "bad.toml"
    config.write_text('[[repos]]\nname = "lab"\nremote = "/srv/x.git"\ndrift = "sometimes"\n')
    serve = (sys.executable, "-m", "rerund.cli.main", "serve", "--config", str(config))
    done = run(*serve, cwd=tmp_path, check=False)
    assert 3 == done.returncode
    assert "repos[0].drift must be 'rerun' or 'report'" in done.stderr


def test_annexed_outputs_reach_the_remote_before_the_branch(
    _annex_pipeline_template: Dataset, tmp_path: Path
) -> None:
    """In an all-annex dataset the regenerated content is in the bare repository and gettable."""
    lab = make_lab(tmp_path, _annex_pipeline_template, annex_remote=True)
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        user = lab.user
        (user.path / "raw" / "data.txt").unlink()
        user.write("raw/data.txt", "# measurements\n3\n1\n2\n10\n")
        run("git", "annex", "add", "--quiet", "raw/data.txt", cwd=user.path)
        user.git("commit", "-qm", "fix raw data")
        run("git", "annex", "copy", "--quiet", "--to", "origin", "raw/data.txt", cwd=user.path)
        user.git("push", "-q", "origin", "HEAD:main")
        run("git", "annex", "sync", "--quiet", "--only-annex", "--no-content", cwd=user.path)
        fix = user.head()

        wait_for(lambda: _landed(lab, fix), timeout_s=90, what="the reruns to land")

        key = Path(git("cat-file", "-p", "main:report.txt", cwd=lab.bare)).name
        stored = run("git", "annex", "contentlocation", key, cwd=lab.bare).stdout.strip()
        assert "rows and total: 4 16\n" == (lab.bare / stored).read_text()
        fresh = tmp_path / "fresh"
        run("datalad", "clone", str(lab.bare), str(fresh))
        run("datalad", "get", "report.txt", cwd=fresh)
        assert "rows and total: 4 16\n" == (fresh / "report.txt").read_text()
        assert (fresh / "report.txt").is_symlink()
    finally:
        daemon.stop()


def test_embedded_defaults_start_with_state_in_var(tmp_path: Path) -> None:
    """`rerund serve` with no settings file keeps its SQLite state in ./var and answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "rerund", "serve", "--listen", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
    )
    try:
        health = wait_for(lambda: _health(port), timeout_s=30, what="the daemon to answer")
        assert {"status": "ok", "jobs": {"events": 0}} == {
            "status": health["status"],
            "jobs": health["jobs"],
        }
        assert (tmp_path / "var" / "rerund.sqlite").is_file()
    finally:
        process.send_signal(signal.SIGTERM)
        assert 0 == process.wait(timeout=30)


def _health(port: int) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            health: dict[str, object] = json.loads(response.read())
            return health
    except OSError:
        return None


def test_systemd_hears_ready_watchdog_and_stopping(lab: Lab, tmp_path: Path) -> None:
    """Under Type=notify the daemon reports READY=1, pings WATCHDOG=1, and says STOPPING=1."""
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(address)
        systemd.settimeout(10)
        daemon = Daemon(lab, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}).start()
        heard = [systemd.recv(64).decode() for _ in range(3)]
        assert 0 == daemon.stop()
        while "STOPPING=1" not in heard:
            heard.append(systemd.recv(64).decode())
    assert "READY=1" == heard[0]
    assert "WATCHDOG=1" in heard[1:3]


def test_sighup_reloads_the_repository_list(lab: Lab, tmp_path: Path) -> None:
    """Adding a repository to the settings and sending SIGHUP serves it without a restart."""
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        second = tmp_path / "srv" / "second.git"
        git("clone", "-q", "--bare", str(lab.bare), str(second), cwd=tmp_path)
        with lab.config.open("a") as config:
            config.write(f'[[repos]]\nname = "second"\nremote = "{second}"\nbranch = "main"\n')
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)

        wait_for(lambda: len(daemon.get("/api/repos")["repos"]) == 2, what="the reload")
        wait_for(lambda: any(j["repo"] == "second" for j in daemon.jobs()), what="a scan of it")
    finally:
        daemon.stop()


def test_sigterm_mid_step_requeues_the_job_within_the_deadline(
    _pipeline_template: Dataset, tmp_path: Path
) -> None:
    """SIGTERM past the drain deadline stops the step, requeues its job; a restart finishes it."""
    lab = make_lab(tmp_path, _pipeline_template, shutdown_timeout_s=1)
    daemon = Daemon(lab, env={"SLOW_STEP_S": "30"}).start()
    wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
    fix = lab.push_fix()
    wait_for(lambda: any(j["state"] == "running" for j in daemon.jobs()), what="a running job")

    started = time.monotonic()
    assert 0 == daemon.stop()
    assert time.monotonic() - started < 15
    assert fix == lab.tip()

    assert any(e["event"] == "job requeued" for e in daemon.events())
    restarted = Daemon(lab).start()
    try:
        wait_for(lambda: _landed(lab, fix), timeout_s=90, what="the requeued job to finish")
        finished = wait_for(
            lambda: [e for e in restarted.events() if e["event"] == "job finished"],
            what="the restarted daemon to log the job's end",
        )
        assert ["succeeded"] == [e["outcome"] for e in finished]
        assert not any(e["event"] == "job requeued" for e in restarted.events())
    finally:
        restarted.stop()


def test_identical_reproduction_is_published_as_a_note_and_not_rerun_again(lab: Lab) -> None:
    """Steps that reproduce identically leave a note on the remote; later pushes rerun nothing."""
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        fix = lab.push_fix("# measured again, same values\n3\n1\n2\n")
        wait_for(lambda: len(daemon.jobs()) == 2 and daemon.idle(), what="the identical reruns")
        job = daemon.get(f"/api/jobs/{daemon.jobs()[0]['id']}")
        assert ["identical", "cut-off", "cut-off"] == [step["state"] for step in job["steps"]]
        assert fix == lab.tip()
        notes = git("notes", "--ref=refs/notes/rerund", "list", cwd=lab.bare).splitlines()
        assert 3 == len(notes)
        assert [] == daemon.get("/api/repos/lab/plan")["steps"]

        lab.user.write("notes.txt", "unrelated\n")
        lab.user.git("add", "notes.txt")
        lab.user.git("commit", "-qm", "unrelated")
        lab.user.git("push", "-q", "origin", "HEAD:main")
        wait_for(lambda: len(daemon.jobs()) == 3 and daemon.idle(), what="the next job")

        assert [] == daemon.get(f"/api/jobs/{daemon.jobs()[0]['id']}")["steps"]
    finally:
        daemon.stop()
