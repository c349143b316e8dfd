"""The daemon does the least work: cutoff, independent steps at once, on_failure (issue 10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import Dataset, git, run
from pipelines import SUBJECTS, build_subjects
from service_helpers import Daemon, Lab, make_lab, wait_for


@pytest.fixture(scope="module")
def _subjects_template(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return build_subjects(tmp_path_factory.mktemp("tpl") / "subjects")


def _subjects_lab(root: Path, template: Dataset, extra: str = "") -> Lab:
    lab = make_lab(root, template, extra=extra)
    text = lab.config.read_text().replace("[limits]\n", "[limits]\nmax_concurrent_steps = 4\n")
    lab.config.write_text(text)
    return lab


def _push(lab: Lab, files: dict[str, str], message: str) -> str:
    lab.user.git("pull", "-q", "--ff-only", "origin", "main")
    for path, text in files.items():
        lab.user.write(path, text)
    lab.user.git("add", "-A")
    lab.user.git("commit", "-qm", message)
    lab.user.git("push", "-q", "origin", "HEAD:main")
    return lab.user.head()


def _finished_job(daemon: Daemon, pushed: str) -> dict[str, Any]:
    """The finished job that handled the push of ``pushed``."""
    job: dict[str, Any] = wait_for(
        lambda: next(
            (
                j
                for j in daemon.jobs()
                if j["target"] == pushed and j["state"] in ("failed", "succeeded")
            ),
            None,
        ),
        timeout_s=120,
        what="the job to finish",
    )
    detail: dict[str, Any] = daemon.get(f"/api/jobs/{job['id']}")
    return detail


def _bad_sub03() -> dict[str, str]:
    files = {f"raw/{s}.txt": "1\n2\n3\n" for s in SUBJECTS}
    files["raw/sub-03.txt"] = "1\nbad\n"
    return files


def test_comment_only_change_runs_one_step_and_cuts_off_two(lab_pipeline: Lab) -> None:
    """The daemon reruns the commented script's step; stats and report are cut off, no push."""
    lab = lab_pipeline
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan")
        script = (lab.user.path / "code/clean.sh").read_text()
        pushed = _push(lab, {"code/clean.sh": "# sorts\n" + script}, "comment the script")

        job = _finished_job(daemon, pushed)

        assert "succeeded" == job["state"]
        assert ["identical", "cut-off", "cut-off"] == [s["state"] for s in job["steps"]]
        assert pushed == lab.tip()
        assert [] == daemon.get("/api/repos/lab/plan")["steps"]
    finally:
        daemon.stop()


@pytest.fixture
def lab_pipeline(_pipeline_template: Dataset, tmp_path: Path) -> Lab:
    return make_lab(tmp_path, _pipeline_template)


def test_independent_steps_overlap_and_the_failure_spares_them(
    _subjects_template: Dataset, tmp_path: Path
) -> None:
    """4 slots: subject steps overlap; sub-03 fails; the other 7 are published, group not run."""
    lab = _subjects_lab(tmp_path, _subjects_template)
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan")
        pushed = _push(lab, _bad_sub03(), "new raw data")

        job = _finished_job(daemon, pushed)
    finally:
        daemon.stop()

    states = {s["summary"]: s["state"] for s in job["steps"]}
    assert "failed" == job["state"]
    assert {**dict.fromkeys(SUBJECTS, "committed"), "sub-03": "failed", "group": "not-run"} == (
        states
    )
    published = [f"[DATALAD RUNCMD] {s}" for s in SUBJECTS if s != "sub-03"]
    assert published == lab.subjects_since(pushed)
    side = git("log", "--reverse", "--format=%s", f"{pushed}..{job['side_ref']}", cwd=lab.bare)
    assert published == side.splitlines()
    spans = sorted(
        (s["started_at"], s["finished_at"]) for s in job["steps"] if s["summary"] in SUBJECTS
    )
    most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert most >= 3, spans


def test_publish_nothing_keeps_the_finished_steps_on_the_side_ref(
    _subjects_template: Dataset, tmp_path: Path
) -> None:
    """on_failure = "publish-nothing": the branch stays where the user left it."""
    lab = _subjects_lab(tmp_path, _subjects_template, extra='on_failure = "publish-nothing"\n')
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan")
        pushed = _push(lab, _bad_sub03(), "new raw data")

        job = _finished_job(daemon, pushed)
    finally:
        daemon.stop()

    assert "failed" == job["state"]
    assert pushed == lab.tip()
    side = git("log", "--reverse", "--format=%s", f"{pushed}..{job['side_ref']}", cwd=lab.bare)
    assert [f"[DATALAD RUNCMD] {s}" for s in SUBJECTS if s != "sub-03"] == side.splitlines()


def test_annexed_steps_side_by_side_are_published_with_their_content(tmp_path: Path) -> None:
    """Every file annexed, 4 slots: the daemon publishes 9 commits and their annexed content."""
    template = build_subjects(tmp_path / "template", annex=True)
    lab = make_lab(tmp_path / "server", template, annex_remote=True)
    text = lab.config.read_text().replace("[limits]\n", "[limits]\nmax_concurrent_steps = 4\n")
    lab.config.write_text(text)
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan")
        files = {f"raw/{s}.txt": "1\n2\n3\n" for s in SUBJECTS}
        pushed = _push_annexed(lab, files)

        job = _finished_job(daemon, pushed)
    finally:
        daemon.stop()

    assert "succeeded" == job["state"], job.get("error")
    assert 9 == len(lab.subjects_since(pushed))
    lab.user.git("pull", "-q", "--ff-only", "origin", "main")
    lab.user.git("fetch", "-q", "origin")  # the server's git-annex branch: where content is
    run("git", "annex", "get", "--quiet", "derived", "group.txt", cwd=lab.user.path)
    assert "3\n" == lab.user.read("derived/sub-08.txt")
    assert "3\n" * 8 == lab.user.read("group.txt")


def _push_annexed(lab: Lab, files: dict[str, str]) -> str:
    lab.user.git("pull", "-q", "--ff-only", "origin", "main")
    for path, text in files.items():
        lab.user.write(path, text)
    run("datalad", "save", "-m", "new raw data", cwd=lab.user.path)
    run("git", "annex", "copy", "--quiet", "--to", "origin", "raw", cwd=lab.user.path)
    run(
        "git",
        "annex",
        "sync",
        "--quiet",
        "--only-annex",
        "--no-content",
        "origin",
        cwd=lab.user.path,
    )
    lab.user.git("push", "-q", "origin", "HEAD:main")  # content first, then the push rerund hears
    return lab.user.head()


def test_a_reverted_fix_is_published_from_history_without_running(lab_pipeline: Lab) -> None:
    """Push a fix, then its revert: the second job restores every output, runs nothing."""
    lab = lab_pipeline
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan")
        before = lab.tip()
        fix = lab.push_fix()
        first = _finished_job(daemon, fix)
        lab.user.git("pull", "-q", "--ff-only", "origin", "main")
        lab.user.git("revert", "--no-edit", fix)
        lab.user.git("push", "-q", "origin", "HEAD:main")
        revert = lab.user.head()

        second = _finished_job(daemon, revert)
    finally:
        daemon.stop()

    assert ["committed"] * 3 == [s["state"] for s in first["steps"]]
    assert ["reused"] * 3 == [s["state"] for s in second["steps"]]
    assert git("rev-parse", f"{before}^{{tree}}", cwd=lab.bare) == git(
        "rev-parse", "main^{tree}", cwd=lab.bare
    )
    message = git("log", "-1", "--format=%B", "main", cwd=lab.bare)
    assert '"reused": "' in message
