"""A push to a served subdataset reruns its served superdatasets (issue 7, the daemon)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Dataset, datalad, git
from rerund.service.mirrors import mirror_plan
from rerund.settings import load
from served_chain import Chain, build_chain
from service_helpers import Daemon, rerund_cli, wait_for

SAVE = "[DATALAD] Save updated subdatasets"


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return build_chain(tmp_path)


@pytest.fixture
def daemon(chain: Chain) -> Iterator[Daemon]:
    started = Daemon(chain.lab).start()
    wait_for(started.scanned, 60, "the start-up scan")
    try:
        yield started
    finally:
        started.stop()


def _settled(daemon: Daemon, count: int) -> bool:
    jobs = daemon.jobs()
    return len(jobs) >= count and daemon.idle()


def test_raw_fix_regenerates_analysis_and_paper(chain: Chain, daemon: Daemon) -> None:
    """A raw fix pushed to raw.git ends with analysis and paper rerun and published once each."""
    before = {name: chain.tip(name) for name in ("analysis", "paper")}
    pushes = {name: chain.pushes(name) for name in ("analysis", "paper")}
    jobs_before = len(daemon.jobs())
    fix = chain.push_raw_fix("id,score\n3,9\n2,5\n1,3\n")

    wait_for(lambda: chain.tip("paper") != before["paper"], 120, "the paper to be published")
    wait_for(lambda: _settled(daemon, jobs_before + 3), 60, "every job to finish")

    assert chain.gitlink("analysis", "inputs/raw") == fix
    assert chain.show("analysis", "clean.csv") == "1,3\n2,5\n3,9\nid,score"
    assert chain.subjects("analysis", before["analysis"]) == [SAVE, "[DATALAD RUNCMD] clean"]
    assert chain.gitlink("paper", "inputs/analysis") == chain.tip("analysis")
    assert chain.show("paper", "figure.txt") == "4"
    assert chain.subjects("paper", before["paper"]) == [SAVE, "[DATALAD RUNCMD] figure"]
    assert {name: chain.pushes(name) - pushes[name] for name in pushes} == {
        "analysis": 1,
        "paper": 1,
    }
    jobs = {job["repo"]: job for job in daemon.jobs()[:3]}
    assert jobs["analysis"]["cause"] == f"raw@{fix[:12]}"
    assert jobs["paper"]["cause"].startswith("analysis@")
    assert all(job["state"] == "succeeded" for job in jobs.values()), jobs
    listing = rerund_cli("jobs", "--url", daemon.base, cwd=chain.root).stdout
    assert f"caused by a push to raw@{fix[:12]}" in listing


def test_fresh_clone_of_paper_sees_and_reruns_new_figures(chain: Chain, daemon: Daemon) -> None:
    """A lab member's datalad clone + get -r of paper.git sees the new outputs; rerun agrees."""
    before = chain.tip("paper")
    chain.push_raw_fix("id,score\n4,1\n3,9\n2,5\n1,3\n")
    wait_for(lambda: chain.tip("paper") != before, 120, "the paper to be published")
    wait_for(daemon.idle, 60, "every job to finish")

    member = chain.root / "member"
    datalad("clone", str(chain.bare("paper")), str(member))
    datalad("get", "-r", ".", cwd=member)
    ds = Dataset(member)
    assert ds.read("figure.txt") == "5\n"
    assert ds.read("inputs/analysis/clean.csv") == "1,3\n2,5\n3,9\n4,1\nid,score\n"
    assert ds.read("inputs/analysis/inputs/raw/survey.csv").startswith("id,score\n4,1")
    head = ds.head()
    datalad("rerun", "--since", before, cwd=member)
    assert ds.read("figure.txt") == "5\n"
    assert ds.head() == head  # the same outputs: nothing to commit
    assert ds.git("status", "--porcelain") == ""


def test_pinned_gitlink_is_reported_and_left_alone(chain: Chain, daemon: Daemon) -> None:
    """A gitlink pinned to a raw commit off raw's main is not moved, and the job says so."""
    side = chain.push_raw_fix("id,score\n7,7\n", branch="pinned")
    wait_for(daemon.idle, 60, "the side branch push to settle")
    user = chain.root / "ana-user"
    datalad("clone", str(chain.bare("analysis")), str(user))
    datalad("get", "-n", "inputs/raw", cwd=user)
    git("fetch", "-q", "origin", "pinned", cwd=user / "inputs/raw")
    git("checkout", "-q", side, cwd=user / "inputs/raw")
    datalad("save", "-m", "pin raw to the pinned side commit", cwd=user)
    git("push", "-q", "origin", "HEAD:main", cwd=user)
    wait_for(lambda: daemon.idle() and chain.gitlink("analysis", "inputs/raw") == side, 120)
    wait_for(daemon.idle, 120, "the pin's own jobs to finish")
    analysis_before = chain.tip("analysis")
    count = len(daemon.jobs())

    chain.push_raw_fix("id,score\n8,8\n")
    wait_for(lambda: _settled(daemon, count + 2), 120, "the raw job and the analysis job")

    assert chain.tip("analysis") == analysis_before
    assert chain.gitlink("analysis", "inputs/raw") == side
    analysis_job = next(job for job in daemon.jobs() if job["repo"] == "analysis")
    assert analysis_job["state"] == "succeeded"
    assert "inputs/raw left alone" in analysis_job["error"]
    assert "not an ancestor" in analysis_job["error"]


def test_mirror_plan_reads_subdataset_commits_from_the_served_repository(
    chain: Chain,
) -> None:
    """The plan endpoint's mirror has no subdataset installed: raw.git answers, not 'undecided'."""
    fix = chain.push_raw_fix("id,score\n5,5\n")
    user = chain.root / "ana-user"
    datalad("clone", str(chain.bare("analysis")), str(user))
    datalad("get", "-n", "inputs/raw", cwd=user)
    datalad("update", "-d", ".", "-r", "--how", "merge", cwd=user)
    git("push", "-q", "origin", "HEAD:main", cwd=user)
    settings = load(chain.lab.config)
    analysis = settings.repo("analysis")
    assert analysis is not None and chain.gitlink("analysis", "inputs/raw") == fix

    blind = mirror_plan(chain.root / "blind", analysis)
    plan = mirror_plan(chain.root / "served", analysis, settings)

    assert [] == list(blind.steps) and len(blind.undecided) == 1
    assert ["clean"] == [step.summary for step in plan.steps]
    assert "inputs/raw/survey.csv changed" in plan.steps[0].to_json()["reasons"][0]["text"]
    assert () == plan.undecided
