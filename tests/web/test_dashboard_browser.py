"""The dashboard in a real Chromium (Debian's, driven by Playwright) against a real daemon."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import Dataset, datalad
from service_helpers import API_TOKEN, Daemon, Lab, make_lab, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )

TOKEN = {"Authorization": f"Bearer {API_TOKEN}"}
SLOW = """echo "reading $1"
i=0
while [ "$i" -lt "${SLOW_STEP_S:-0}" ]; do echo "tick $i"; sleep 1; i=$((i + 1)); done
echo "finished"
sort -n "$1" > "$2"
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def _screenshot(page: Any, name: str) -> None:
    """With RERUND_SCREENSHOTS=DIR set, keep a picture of the page (for the docs)."""
    folder = os.environ.get("RERUND_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _graph(page: Any) -> tuple[dict[str, tuple[str, str]], set[tuple[str, str]]]:
    """Nodes as summary -> (commit, state), and edges as (from, to) commits."""
    nodes = page.eval_on_selector_all(
        ".record-graph .node",
        "els => els.map(e => [e.querySelector('text.summary').textContent,"
        " e.dataset.commit, e.dataset.state])",
    )
    edges = page.eval_on_selector_all(
        ".record-graph .edge", "els => els.map(e => [e.dataset.from, e.dataset.to])"
    )
    return {name: (commit, state) for name, commit, state in nodes}, {tuple(e) for e in edges}


@pytest.fixture
def quiet_lab(tmp_path: Path, pipeline: Dataset) -> Iterator[tuple[Lab, Daemon]]:
    """A lab whose daemon hears of no pushes (no hook, no watching): staleness stays visible."""
    lab = make_lab(tmp_path, pipeline, hook=False, watch=False)
    daemon = Daemon(lab).start()
    wait_for(daemon.scanned, 60, "the start-up scan")
    yield lab, daemon
    daemon.stop()


def test_graph_shows_records_and_exactly_the_stale_ones_after_a_push(
    quiet_lab: tuple[Lab, Daemon], page: Any
) -> None:
    """One node per current record, edges reader<-writer; after a push only stale ones light up."""
    lab, daemon = quiet_lab
    user = lab.user
    commits = {name: user.record_commit(name) for name in ("clean", "stats", "report")}

    page.goto(f"{daemon.base}/repos/lab")
    nodes, edges = _graph(page)

    assert {name: (sha, "current") for name, sha in commits.items()} == nodes
    expected_edges = {
        (commits["clean"], commits["stats"]),
        (commits["stats"], commits["report"]),
    }
    assert expected_edges == edges

    user.write("code/stats.sh", 'awk \'{s += $1} END {print NR, s, s/NR}\' "$1" > "$2"\n')
    user.git("commit", "-qam", "report the mean too")
    user.git("push", "-q", "origin", "HEAD:main")
    page.reload()
    nodes, edges = _graph(page)

    assert {"clean": "current", "stats": "stale", "report": "stale"} == {
        name: state for name, (_, state) in nodes.items()
    }
    assert expected_edges == edges
    page.click(f'.node[data-commit="{commits["stats"]}"]')
    assert page.is_visible("#details")
    assert commits["stats"] == page.text_content("#d-commit")
    assert "code/stats.sh" in page.text_content("#d-reasons")
    assert "$ sh code/stats.sh {inputs} {outputs}" == page.text_content("#d-cmd")
    _screenshot(page, "dashboard-repo")


def test_badge_renders_after_a_verification(quiet_lab: tuple[Lab, Daemon], page: Any) -> None:
    """After a verification the repositories page shows the badge, and the graph marks verified."""
    _, daemon = quiet_lab
    daemon.post("/api/repos/lab/verify", b"", TOKEN)
    wait_for(lambda: daemon.get("/api/repos/lab/verification")["latest"], 120, "the verification")

    page.goto(f"{daemon.base}/")
    page.wait_for_function("document.querySelector('img.badge').complete")
    size = page.eval_on_selector("img.badge", "img => [img.naturalWidth, img.naturalHeight]")
    _screenshot(page, "dashboard-repos")
    page.goto(f"{daemon.base}/badge/lab.svg")
    label = page.get_attribute("svg", "aria-label")
    page.goto(f"{daemon.base}/repos/lab")
    nodes, _ = _graph(page)

    assert size[0] > 80 and size[1] == 20
    assert "reproducible: 3/3" == label
    assert {"verified"} == {state for _, state in nodes.values()}


def test_jobs_page_updates_live_and_job_page_streams_the_running_log(
    tmp_path: Path, dataset: Dataset, page: Any
) -> None:
    """A push shows up on the open jobs page; its job page streams the step's log as it runs."""
    dataset.write("raw/data.txt", "3\n1\n2\n")
    dataset.write("code/slow.sh", SLOW)
    dataset.save("raw data and code")
    datalad(
        "run", "-m", "slow sort", "-i", "raw/data.txt", "-o", "sorted.txt",
        "sh code/slow.sh {inputs} {outputs}", cwd=dataset.path,
    )  # fmt: skip
    lab = make_lab(tmp_path / "lab", dataset)
    daemon = Daemon(lab, env={"SLOW_STEP_S": "6"}).start()
    try:
        wait_for(daemon.scanned, 60, "the start-up scan")
        page.goto(f"{daemon.base}/jobs")
        known = page.eval_on_selector_all("#jobs tr[data-job]", "rows => rows.length")

        lab.push_fix("3\n1\n2\n10\n")
        page.wait_for_function(
            f"document.querySelectorAll('#jobs tr[data-job]').length > {known}", timeout=30_000
        )
        job_id = page.get_attribute("#jobs tr[data-job]", "data-job")
        page.wait_for_selector(f'#jobs tr[data-job="{job_id}"][data-state="running"]')
        _screenshot(page, "dashboard-jobs")

        page.goto(f"{daemon.base}/jobs/{job_id}")
        # The log grows while the step still runs: seen before the job finished.
        page.wait_for_function(
            "document.getElementById('log').textContent.includes('tick 2')"
            " && document.getElementById('job-state').textContent === 'running'",
            timeout=30_000,
        )
        running_bar = page.get_attribute(".timeline rect.bar", "data-state")
        page.wait_for_function("document.body.dataset.logComplete === 'true'", timeout=60_000)
        log = page.text_content("#log")
        state = page.text_content("#job-state")
        _screenshot(page, "dashboard-job")
    finally:
        daemon.stop()

    assert "running" == running_bar
    assert "succeeded" == state
    assert log.index("reading raw/data.txt") < log.index("tick 5") < log.index("finished")
    assert 1 == log.count("tick 0")
